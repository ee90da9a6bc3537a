"""SRW: SRU 1.1/1.2 requests and responses in a SOAP 1.1 envelope (what ZOOM clients send by default).

The request element (`searchRetrieveRequest`, `scanRequest`, `explainRequest` in the SRW
namespace) carries the same parameters as the URL form, as child elements; `parse_soap` turns
it into that parameter mapping so the rest of the server handles one form only.
"""
from __future__ import annotations

from lxml import etree

from protocols.sru.diagnostics import SRUDiagnostic

SOAP_ENV_NS = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP_CONTENT_TYPES = ("text/xml", "application/soap+xml", "application/xml")
_OPERATIONS = {"searchRetrieveRequest": "searchRetrieve", "scanRequest": "scan", "explainRequest": "explain"}
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)


def parse_soap(body: bytes) -> dict[str, list[str]]:
    try:
        root = etree.fromstring(body, _PARSER)
    except etree.XMLSyntaxError as error:
        raise SRUDiagnostic(1, f"SOAP request is not well-formed XML: {error}") from None
    if root.tag != f"{{{SOAP_ENV_NS}}}Envelope":
        raise SRUDiagnostic(1, "a SOAP request needs a SOAP 1.1 Envelope")
    body_element = root.find(f"{{{SOAP_ENV_NS}}}Body")
    request = next((child for child in body_element if isinstance(child.tag, str)), None) if body_element is not None else None
    if request is None:
        raise SRUDiagnostic(1, "the SOAP Body holds no SRU request")
    name = etree.QName(request).localname
    operation = _OPERATIONS.get(name)
    if operation is None:
        raise SRUDiagnostic(4, name, f"Unsupported operation {name}")
    params: dict[str, list[str]] = {"operation": [operation]}
    for child in request:
        if not isinstance(child.tag, str):
            continue
        local = etree.QName(child).localname
        if local in ("extraRequestData", "xQuery"):
            continue
        params.setdefault(local, []).append((child.text or "").strip())
    return params


def soap_envelope(response: bytes) -> bytes:
    """Wrap a serialized SRU response (with or without an XML declaration) in a SOAP envelope."""
    document = etree.fromstring(response, _PARSER)
    envelope = etree.Element(f"{{{SOAP_ENV_NS}}}Envelope", nsmap={"SOAP-ENV": SOAP_ENV_NS})
    etree.SubElement(envelope, f"{{{SOAP_ENV_NS}}}Body").append(document)
    return etree.tostring(envelope, encoding="UTF-8", xml_declaration=True)

"""SRU response writers: searchRetrieve, scan, explain and diagnostics, per version.

SRU 1.1 and 1.2 use the `http://www.loc.gov/zing/srw/` namespace with diagnostics in
`http://www.loc.gov/zing/srw/diagnostic/`; SRU 2.0 uses the OASIS namespaces
(`.../sruResponse`, `.../diagnostic`, `.../scan`, `.../facetedResults`, `.../xcql`).
The writers take plain data and return the serialized document (UTF-8 bytes).
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Sequence

from lxml import etree

from protocols.records.marcxml import xml_text
from protocols.sru.diagnostics import SRUDiagnostic

SRW_NS = "http://www.loc.gov/zing/srw/"
DIAG1_NS = "http://www.loc.gov/zing/srw/diagnostic/"
XCQL1_NS = "http://www.loc.gov/zing/cql/xcql/"
SRU2_NS = "http://docs.oasis-open.org/ns/search-ws/sruResponse"
DIAG2_NS = "http://docs.oasis-open.org/ns/search-ws/diagnostic"
SCAN2_NS = "http://docs.oasis-open.org/ns/search-ws/scan"
FACET2_NS = "http://docs.oasis-open.org/ns/search-ws/facetedResults"
XCQL2_NS = "http://docs.oasis-open.org/ns/search-ws/xcql"
RECORD_ID_NS = "urn:union-federation:record-1.0"
DIAGNOSTIC_SCHEMA = "info:srw/schema/1/diagnostics-v1.1"


@dataclass
class ResponseRecord:
    """One record of a response: `data` is the recordData XML, as an element or as the bytes of
    one element serialized on its own (UTF-8, no declaration: what a server caches), and
    `identifier` the union id."""

    schema: str
    data: etree._Element | bytes
    position: int
    identifier: str = ""
    extra: list[etree._Element] = field(default_factory=list)


@dataclass
class SurrogateRecord:
    """A record that could not be sent: a diagnostic in its place."""

    position: int
    diagnostic: SRUDiagnostic


@dataclass
class FacetTerm:
    term: str
    count: int
    query: str = ""


@dataclass
class FacetResult:
    index: str
    label: str
    terms: list[FacetTerm]


@dataclass
class SearchRetrieveResult:
    number_of_records: int
    records: list[ResponseRecord | SurrogateRecord] = field(default_factory=list)
    next_record_position: int | None = None
    diagnostics: list[SRUDiagnostic] = field(default_factory=list)
    facets: list[FacetResult] = field(default_factory=list)
    result_set_id: str | None = None
    result_set_ttl: int | None = None
    result_count_precision: str | None = None  # 2.0 only: exact | estimate | ...
    extra_response_data: list[etree._Element] = field(default_factory=list)


@dataclass
class EchoedSearchRetrieve:
    """What the server echoes of the request (every parameter it was given that the version knows)."""

    query: str | None
    query_type: str | None = None
    xquery: etree._Element | None = None   # XCQL (any namespace; re-namespaced per version)
    start_record: int | None = None
    maximum_records: int | None = None
    record_packing: str | None = None
    record_xml_escaping: str | None = None
    record_schema: str | None = None
    result_set_ttl: int | None = None
    sort_keys: str | None = None
    stylesheet: str | None = None
    http_accept: str | None = None
    facet_parameters: list[str] = field(default_factory=list)
    extra: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class ScanTermResult:
    value: str
    number_of_records: int
    display_term: str = ""
    where_in_list: str | None = None   # first | last | only | inner


@dataclass
class EchoedScan:
    scan_clause: str
    response_position: int | None = None
    maximum_terms: int | None = None
    stylesheet: str | None = None
    xscan_clause: etree._Element | None = None


class _Writer:
    def __init__(self, version: str):
        self.version = version
        self.v2 = version == "2.0"
        self.ns = SRU2_NS if self.v2 else SRW_NS
        self.diag_ns = DIAG2_NS if self.v2 else DIAG1_NS
        self.prefix = "sruResponse" if self.v2 else "zs"
        # Records given as bytes are spliced into the serialized document in place of a marker:
        # copying cached elements into the tree and serializing them again cost more than
        # everything else in a response of ten records.
        self.splice_token = uuid.uuid4().hex
        self.splices: list[tuple[bytes, bytes]] = []

    def root(self, name: str, namespace: str | None = None, prefix: str | None = None) -> etree._Element:
        namespace = namespace or self.ns
        return etree.Element(f"{{{namespace}}}{name}", nsmap={prefix or self.prefix: namespace})

    def sub(self, parent: etree._Element, name: str, text: object | None = None, namespace: str | None = None) -> etree._Element:
        element = etree.SubElement(parent, f"{{{namespace or self.ns}}}{name}")
        if text is not None:
            element.text = xml_text(str(text))
        return element

    def diagnostic(self, parent: etree._Element, diagnostic: SRUDiagnostic) -> etree._Element:
        element = etree.SubElement(parent, f"{{{self.diag_ns}}}diagnostic", nsmap={"diag": self.diag_ns})
        etree.SubElement(element, f"{{{self.diag_ns}}}uri").text = diagnostic.uri
        if diagnostic.details:
            etree.SubElement(element, f"{{{self.diag_ns}}}details").text = xml_text(diagnostic.details)
        if diagnostic.message:
            etree.SubElement(element, f"{{{self.diag_ns}}}message").text = xml_text(diagnostic.message)
        return element

    def diagnostics(self, parent: etree._Element, diagnostics: Sequence[SRUDiagnostic]) -> None:
        if diagnostics:
            holder = self.sub(parent, "diagnostics")
            for diagnostic in diagnostics:
                self.diagnostic(holder, diagnostic)

    def record(self, parent: etree._Element, schema: str, data: etree._Element | bytes, escaping: str,
               position: int | None, extra: Sequence[etree._Element], identifier: str = "") -> None:
        """A record; its identifier goes into extraRecordData (1.x) or, in 2.0, follows it as the
        record's own `recordIdentifier` (the 2.0 record allows elements of other namespaces there)."""
        if identifier and not self.v2:
            extra = [_identifier(identifier), *extra]
        record = self.sub(parent, "record")
        self.sub(record, "recordSchema", schema)
        if self.v2:
            self.sub(record, "recordXMLEscaping", escaping)
        else:
            self.sub(record, "recordPacking", escaping)
        holder = self.sub(record, "recordData")
        if isinstance(data, bytes):
            if escaping == "string":
                holder.text = data.decode("utf-8")
            else:
                marker = f"splice-{self.splice_token}-{len(self.splices)}"
                holder.text = marker
                self.splices.append((marker.encode("ascii"), data))
        elif escaping == "string":
            holder.text = etree.tostring(data, encoding="unicode")
        else:
            holder.append(data)
        if position is not None:
            self.sub(record, "recordPosition", position)
        if extra:
            extra_holder = self.sub(record, "extraRecordData")
            for element in extra:
                extra_holder.append(element)
        if identifier and self.v2:
            record.append(_identifier(identifier))

    def version_element(self, parent: etree._Element) -> None:
        if not self.v2:
            self.sub(parent, "version", self.version)


def _document(root: etree._Element, stylesheet: str | None, splices: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    body = etree.tostring(root, encoding="UTF-8", xml_declaration=False)
    if splices:
        parts = []
        start = 0
        for marker, content in splices:  # in document order: each marker once, after the last
            at = body.index(marker, start)
            parts += [body[start:at], content]
            start = at + len(marker)
        parts.append(body[start:])
        body = b"".join(parts)
    head = b'<?xml version="1.0" encoding="UTF-8"?>\n'
    if stylesheet:
        escaped = xml_text(stylesheet).replace("?>", "").replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
        head += f'<?xml-stylesheet type="text/xsl" href="{escaped}"?>\n'.encode("utf-8")
    return head + body + b"\n"


def renamespace(element: etree._Element, namespace: str) -> etree._Element:
    """A copy of an XML tree with every element moved into `namespace` (XCQL's namespace differs per version)."""

    def copy(node: etree._Element, parent: etree._Element | None) -> etree._Element:
        name = f"{{{namespace}}}{etree.QName(node).localname}"
        new = etree.Element(name, nsmap={None: namespace}) if parent is None else etree.SubElement(parent, name)
        new.text = node.text
        new.tail = node.tail
        for key, value in node.attrib.items():
            new.set(key, value)
        for child in node:
            if isinstance(child.tag, str):
                copy(child, new)
        return new

    return copy(element, None)


def write_search_retrieve(version: str, result: SearchRetrieveResult, echoed: EchoedSearchRetrieve | None,
                          *, escaping: str = "xml", stylesheet: str | None = None) -> bytes:
    w = _Writer(version)
    root = w.root("searchRetrieveResponse")
    w.version_element(root)
    w.sub(root, "numberOfRecords", result.number_of_records)
    if result.result_set_id:
        w.sub(root, "resultSetId", result.result_set_id)
        if not w.v2 and result.result_set_ttl:
            w.sub(root, "resultSetIdleTime", result.result_set_ttl)
    if result.records:
        records = w.sub(root, "records")
        for entry in result.records:
            if isinstance(entry, SurrogateRecord):
                holder = etree.Element("holder")
                diagnostic = w.diagnostic(holder, entry.diagnostic)
                w.record(records, DIAGNOSTIC_SCHEMA, diagnostic, "xml", entry.position, ())
            else:
                w.record(records, entry.schema, entry.data, escaping, entry.position, entry.extra, entry.identifier)
    if result.next_record_position is not None:
        w.sub(root, "nextRecordPosition", result.next_record_position)
    if echoed is not None:
        _echo_search_retrieve(w, root, echoed)
    w.diagnostics(root, result.diagnostics)
    if result.extra_response_data:
        extra = w.sub(root, "extraResponseData")
        for element in result.extra_response_data:
            extra.append(element)
    if w.v2:
        if result.result_set_id and result.result_set_ttl is not None:
            w.sub(root, "resultSetTTL", result.result_set_ttl)
        if result.result_count_precision:
            w.sub(root, "resultCountPrecision", result.result_count_precision)
        if result.facets:
            root.append(_faceted_results(result.facets))
    return _document(root, stylesheet, w.splices)


def _identifier(identifier: str) -> etree._Element:
    element = etree.Element(f"{{{RECORD_ID_NS}}}recordIdentifier", nsmap={"u": RECORD_ID_NS})
    element.text = identifier
    return element


def _echo_search_retrieve(w: _Writer, root: etree._Element, echoed: EchoedSearchRetrieve) -> None:
    echo = w.sub(root, "echoedSearchRetrieveRequest")
    w.version_element(echo)
    if w.v2 and echoed.query_type:
        w.sub(echo, "queryType", echoed.query_type)
    if echoed.query is not None:
        w.sub(echo, "query", echoed.query)
    if echoed.xquery is not None:
        holder = w.sub(echo, "xQuery")
        holder.append(renamespace(echoed.xquery, XCQL2_NS if w.v2 else XCQL1_NS))
    if echoed.start_record is not None:
        w.sub(echo, "startRecord", echoed.start_record)
    if echoed.maximum_records is not None:
        w.sub(echo, "maximumRecords", echoed.maximum_records)
    if w.v2:
        if echoed.record_xml_escaping:
            w.sub(echo, "recordXMLEscaping", echoed.record_xml_escaping)
        if echoed.record_packing:
            w.sub(echo, "recordPacking", echoed.record_packing)
    elif echoed.record_packing:
        w.sub(echo, "recordPacking", echoed.record_packing)
    if echoed.record_schema:
        w.sub(echo, "recordSchema", echoed.record_schema)
    if w.v2 and echoed.facet_parameters:
        w.sub(echo, "facetParameters", " ".join(echoed.facet_parameters))
    if echoed.result_set_ttl is not None:
        w.sub(echo, "resultSetTTL", echoed.result_set_ttl)
    if echoed.sort_keys and w.version != "1.2":
        w.sub(echo, "sortKeys", echoed.sort_keys)
    if echoed.stylesheet:
        w.sub(echo, "stylesheet", echoed.stylesheet)
    if w.v2:
        for name, value in echoed.extra:
            w.sub(echo, "extraRequestParameter", f"{name}={value}")
        if echoed.http_accept:
            w.sub(echo, "httpAccept", echoed.http_accept)
    elif echoed.extra:
        extra = w.sub(echo, "extraRequestData")
        for name, value in echoed.extra:
            element = etree.SubElement(extra, f"{{{RECORD_ID_NS}}}parameter", nsmap={"u": RECORD_ID_NS},
                                       name=xml_text(name))
            element.text = xml_text(value)


def _faceted_results(facets: Sequence[FacetResult]) -> etree._Element:
    def sub(parent: etree._Element, name: str, text: object | None = None) -> etree._Element:
        element = etree.SubElement(parent, f"{{{FACET2_NS}}}{name}")
        if text is not None:
            element.text = str(text)
        return element

    # The element is of the sruResponse namespace; its content of the facetedResults namespace.
    root = etree.Element(f"{{{SRU2_NS}}}facetedResults", nsmap={"facet": FACET2_NS})
    for facet in facets:
        element = sub(root, "facet")
        sub(element, "displayLabel", facet.label)
        sub(element, "index", facet.index)
        terms = sub(element, "terms")
        for term in facet.terms:
            entry = sub(terms, "term")
            sub(entry, "actualTerm", term.term)
            if term.query:
                sub(entry, "query", term.query)
            sub(entry, "count", term.count)
    return root


def write_scan(version: str, terms: Sequence[ScanTermResult], echoed: EchoedScan | None,
               diagnostics: Sequence[SRUDiagnostic] = (), *, stylesheet: str | None = None) -> bytes:
    w = _Writer(version)
    # SRU 2.0: the root is sruResponse:scanResponse, its content in the scan namespace.
    ns = SCAN2_NS if w.v2 else SRW_NS
    root = w.root("scanResponse")
    if w.v2:
        root = etree.Element(f"{{{SRU2_NS}}}scanResponse", nsmap={"sruResponse": SRU2_NS, "scan": SCAN2_NS})
    if not w.v2:
        w.sub(root, "version", version, ns)
    if terms:
        holder = w.sub(root, "terms", None, ns)
        for term in terms:
            entry = w.sub(holder, "term", None, ns)
            w.sub(entry, "value", term.value, ns)
            w.sub(entry, "numberOfRecords", term.number_of_records, ns)
            if term.display_term:
                w.sub(entry, "displayTerm", term.display_term, ns)
            if term.where_in_list:
                w.sub(entry, "whereInList", term.where_in_list, ns)
    if echoed is not None:
        echo = w.sub(root, "echoedScanRequest", None, ns)
        if not w.v2:
            w.sub(echo, "version", version, ns)
        w.sub(echo, "scanClause", echoed.scan_clause, ns)
        if echoed.response_position is not None:
            w.sub(echo, "responsePosition", echoed.response_position, ns)
        if echoed.maximum_terms is not None:
            w.sub(echo, "maximumTerms", echoed.maximum_terms, ns)
        if echoed.stylesheet:
            w.sub(echo, "stylesheet", echoed.stylesheet, ns)
    if diagnostics:
        holder = w.sub(root, "diagnostics", None, ns)
        for diagnostic in diagnostics:
            w.diagnostic(holder, diagnostic)
    return _document(root, stylesheet)


def write_explain(version: str, zeerex: etree._Element | None, diagnostics: Sequence[SRUDiagnostic] = (),
                  *, escaping: str = "xml", stylesheet: str | None = None) -> bytes:
    w = _Writer(version)
    root = w.root("explainResponse")
    w.version_element(root)
    if zeerex is not None:
        w.record(root, "http://explain.z3950.org/dtd/2.0/", zeerex, escaping, None, ())
    w.diagnostics(root, diagnostics)
    return _document(root, stylesheet)


def write_diagnostic(version: str, operation: str, diagnostic: SRUDiagnostic,
                     echoed: EchoedSearchRetrieve | None = None) -> bytes:
    """A response carrying one fatal diagnostic, in the envelope of the operation asked for."""
    if operation == "scan":
        return write_scan(version, (), None, [diagnostic])
    if operation == "explain":
        return write_explain(version, None, [diagnostic])
    return write_search_retrieve(version, SearchRetrieveResult(0, diagnostics=[diagnostic]), echoed)


def content_type(version: str, http_accept: str | None = None) -> str:
    """SRU 2.0 answers `application/sru+xml` unless the client asked for another XML type."""
    if http_accept in ("text/xml", "application/xml"):
        return f"{http_accept}; charset=utf-8"
    if version == "2.0":
        return "application/sru+xml; charset=utf-8"
    return "text/xml; charset=utf-8"

"""SRU request parsing per version (protocols.sru.request) and SRW/SOAP envelopes, without a server."""
from __future__ import annotations

import pytest
from lxml import etree

from protocols.sru import FacetSpec, ScanRequest, SearchRetrieveRequest, SRUDiagnostic, parse_request, version_for
from protocols.sru.request import ExplainRequest, SortKeySpec
from protocols.sru.soap import parse_soap, soap_envelope


def params(**values: str) -> dict[str, list[str]]:
    return {k.replace("_", "-") if k.startswith("x_") else k: [v] for k, v in values.items()}


def refused(values: dict[str, list[str]]) -> SRUDiagnostic:
    with pytest.raises(SRUDiagnostic) as caught:
        parse_request(values)
    return caught.value


def test_version_and_operation_negotiation():
    assert version_for(params(query="x")) == "2.0"
    assert version_for(params(operation="searchRetrieve", query="x")) == "1.2"
    assert version_for(params(version="1.1")) == "1.1"
    assert version_for(params(version="1.0")) == "1.2" and version_for(params(version="3")) == "2.0"
    assert isinstance(parse_request(params(query="x")), SearchRetrieveRequest)
    assert isinstance(parse_request(params(scanClause="dc.title=a")), ScanRequest)
    assert isinstance(parse_request({}), ExplainRequest)
    assert (refused(params(version="1.0", operation="explain")).code, refused(params(version="1.0")).details) == (5, "2.0")


def test_search_retrieve_parameters():
    request = parse_request(params(
        version="2.0", query="dc.title=x", startRecord="11", maximumRecords="5", recordSchema="dc",
        recordXMLEscaping="string", resultSetTTL="300", sortKeys="dc.date,,0 dc.title", stylesheet="/a.xsl",
        facetLimit="10:net.library,3:dc.date", facetStart="2:dc.date", facetSort="alphanumeric:dc.date",
        httpAccept="text/xml", x_client="opac"))
    assert (request.start_record, request.maximum_records, request.record_schema) == (11, 5, "dc")
    assert (request.record_packing, request.record_xml_escaping, request.result_set_ttl) == ("packed", "string", 300)
    assert request.sort_keys == (SortKeySpec("dc.date", "", False), SortKeySpec("dc.title"))
    assert request.facets == (FacetSpec("net.library", 10), FacetSpec("dc.date", 3, 2, "alphanumeric"))
    assert (request.http_accept, request.stylesheet, request.extra) == ("text/xml", "/a.xsl", (("x-client", "opac"),))
    old = parse_request(params(version="1.1", operation="searchRetrieve", query="x", recordPacking="string",
                               sortKeys="dc.title,,1"))
    assert (old.record_packing, old.record_xml_escaping, old.sort_keys) == ("string", "string", (SortKeySpec("dc.title"),))


@pytest.mark.parametrize("values, code, details", [
    (params(version="1.2", operation="searchRetrieve"), 7, "query"),
    (params(version="1.2", operation="searchRetrieve", query="x", sortKeys="dc.title"), 8, "sortKeys"),
    (params(version="1.2", operation="searchRetrieve", query="x", facetLimit="1:dc.date"), 8, "facetLimit"),
    (params(version="1.2", operation="searchRetrieve", query="x", recordXPath="/a"), 72, "recordXPath"),
    (params(version="1.1", operation="searchRetrieve", query="x", recordXPath="/a"), 72, "recordXPath"),
    (params(version="2.0", query="x", recordXPath="/a"), 8, "recordXPath"),
    (params(version="1.2", operation="searchRetrieve", query="x", recordPacking="packed"), 71, "packed"),
    (params(version="2.0", query="x", recordPacking="unpacked"), 6, "recordPacking"),
    (params(version="2.0", query="x", startRecord="0"), 6, "startRecord"),
    (params(version="2.0", query="x", maximumRecords="ten"), 6, "maximumRecords"),
    (params(version="2.0", query="x", maximumRecords="99999999999999"), 6, "maximumRecords"),
    (params(version="2.0", query="x", queryType="pqf"), 11, "pqf"),
    (params(version="2.0", query="x", facetStart="1:dc.date"), 6, "facetStart"),
    (params(version="2.0", query="x", facetLimit="1:dc.date", facetSort="random:dc.date"), 6, "facetSort"),
    (params(version="2.0", query="x", resultCountPrecision="roughly"), 6, "resultCountPrecision"),
    (params(version="2.0", query="x", sortKeys="dc.title,,up"), 6, "sortKeys"),
    (params(version="1.2", operation="scan"), 7, "scanClause"),
    (params(version="1.2", operation="scan", scanClause="a", responsePosition="-1"), 6, "responsePosition"),
    (params(version="1.2", operation="scan", scanClause="a", maximumTerms="0"), 6, "maximumTerms"),
    (params(version="1.2", operation="explain", recordPacking="zip"), 71, "zip"),
    (params(version="1.2", operation="browse"), 4, "browse"),
    ({"query": ["a", "b"]}, 6, "query"),
])
def test_refusals(values, code, details):
    diagnostic = refused(values)
    assert (diagnostic.code, diagnostic.details) == (code, details)
    assert diagnostic.uri == f"info:srw/diagnostic/1/{code}"


SOAP = """<?xml version="1.0"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/">
 <SOAP-ENV:Body><srw:searchRetrieveRequest xmlns:srw="http://www.loc.gov/zing/srw/">
  <srw:version>1.1</srw:version><srw:query>dc.title=图书馆</srw:query><srw:maximumRecords>3</srw:maximumRecords>
 </srw:searchRetrieveRequest></SOAP-ENV:Body></SOAP-ENV:Envelope>""".encode("utf-8")


def test_soap_requests_and_envelopes():
    values = parse_soap(SOAP)
    assert values == {"operation": ["searchRetrieve"], "version": ["1.1"], "query": ["dc.title=图书馆"],
                      "maximumRecords": ["3"]}
    assert parse_request(values).maximum_records == 3
    wrapped = etree.fromstring(soap_envelope(b'<?xml version="1.0"?><a xmlns="urn:x">1</a>'))
    assert wrapped.find("{*}Body/{urn:x}a").text == "1"
    for body, code in ((b"<not xml", 1), (b"<a/>", 1), (SOAP.replace(b"searchRetrieveRequest", b"updateRequest"), 4),
                       (b'<!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]><a>&e;</a>', 1)):
        with pytest.raises(SRUDiagnostic) as caught:
            parse_soap(body)
        assert caught.value.code == code


@pytest.mark.parametrize("version", ["1.1", "1.2", "2.0"])
@pytest.mark.parametrize("escaping", ["xml", "string"])
def test_records_given_as_bytes_make_the_same_document_as_elements(version: str, escaping: str):
    """A server hands the writer cached records as serialized bytes, spliced into the document:
    the response must be the very document the elements would have made."""
    from protocols.sru.response import ResponseRecord, SearchRetrieveResult, write_search_retrieve

    def marc(title: str) -> etree._Element:
        record = etree.Element("{http://www.loc.gov/MARC21/slim}record", nsmap={None: "http://www.loc.gov/MARC21/slim"})
        field = etree.SubElement(record, "{http://www.loc.gov/MARC21/slim}datafield", tag="245", ind1="0", ind2="0")
        etree.SubElement(field, "{http://www.loc.gov/MARC21/slim}subfield", code="a").text = title
        return record

    titles = ["图书馆学基础 & <一>", "Second record", "splice-0"]
    as_elements = SearchRetrieveResult(3, [ResponseRecord("marcxml", marc(t), n + 1, f"u{n}") for n, t in enumerate(titles)])
    as_bytes = SearchRetrieveResult(3, [ResponseRecord("marcxml", etree.tostring(marc(t), encoding="UTF-8"), n + 1, f"u{n}")
                                        for n, t in enumerate(titles)])
    expected = write_search_retrieve(version, as_elements, None, escaping=escaping)
    spliced = write_search_retrieve(version, as_bytes, None, escaping=escaping)
    assert etree.tostring(etree.fromstring(spliced), method="c14n") == etree.tostring(etree.fromstring(expected), method="c14n")
    records = etree.fromstring(spliced).findall(".//{*}recordData")
    if escaping == "xml":
        assert [r.find(".//{*}subfield").text for r in records] == titles
    else:
        assert [etree.fromstring(r.text.encode()).find(".//{*}subfield").text for r in records] == titles

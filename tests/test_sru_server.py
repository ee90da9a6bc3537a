"""The SRU server end to end over HTTP: a real catalogue (demo exports + real CNMARC/MARC21
fixtures through the ingest pipeline into the embedded store), real requests on loopback.
Expected counts come from the input files (tests/sru_support.py), not from the store."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
from lxml import etree

from federation.rules import SRULimits
from indexer.model import Availability, ItemStatusUpdate
from sru_support import (NS, SRUServer, diagnostics, fetch, index_table, input_records, library_tiers, rule_set,
                         sru, shared_catalogue)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    return shared_catalogue(tmp_path_factory)


@pytest.fixture(scope="module")
def server(catalogue):
    with SRUServer(catalogue) as running:
        yield running


@pytest.fixture(scope="module")
def inputs(catalogue):
    return input_records(catalogue)


def count(root: etree._Element) -> int:
    return int(root.findtext("{*}numberOfRecords"))


def records(root: etree._Element) -> list[etree._Element]:
    return root.findall("{*}records/{*}record")


def record_ids(root: etree._Element) -> list[str]:
    """The union ids: in extraRecordData (SRU 1.x) or the record's recordIdentifier (2.0)."""
    return [r.findtext("{*}extraRecordData/u:recordIdentifier", namespaces=NS) or r.findtext("u:recordIdentifier", namespaces=NS)
            for r in records(root)]


# -- searchRetrieve -------------------------------------------------------------------------

def test_chinese_title_search_in_every_version(server, inputs):
    expected = {r.work for r in inputs if "图书馆" in r.title}
    assert expected, "the demo catalogue has library-science titles"
    for version in ("1.1", "1.2", "2.0"):
        answer = sru(server, {"version": version, "operation": "searchRetrieve", "query": "dc.title=图书馆",
                              "maximumRecords": 50})
        assert answer.status == 200
        root = answer.xml
        namespace = NS["sru2"] if version == "2.0" else NS["srw"]
        assert root.tag == f"{{{namespace}}}searchRetrieveResponse"
        assert count(root) == len(expected)
        assert len(records(root)) == len(expected)
        ids = record_ids(root)
        assert all(ids) and len(set(ids)) == len(ids)
        for record in records(root):
            data = record.find("{*}recordData")[0]
            titles = [sf.text for sf in data.iterfind("{*}datafield[@tag='200']/{*}subfield[@code='a']")] + \
                     [sf.text for sf in data.iterfind("{*}datafield[@tag='245']/{*}subfield[@code='a']")]
            assert any("图书馆" in t for t in titles)
    assert "application/sru+xml" in answer.content_type


def test_records_carry_union_id_and_holdings_with_availability(server, inputs):
    root = sru(server, {"version": "1.2", "operation": "searchRetrieve", "query": "dc.title=图书馆",
                        "maximumRecords": 5}).xml
    for record, union_id in zip(records(root), record_ids(root)):
        data = record.find("{*}recordData")[0]
        assert data.findtext("{*}controlfield[@tag='001']") == union_id
        unimarc = data.tag.startswith("{%s}" % NS["unimarc"])
        holdings = data.findall("{*}datafield[@tag='905']" if unimarc else "{*}datafield[@tag='852']")
        assert holdings, "every demo record is held somewhere"
        for field in holdings:
            statuses = [sf.text for sf in field.iterfind("{*}subfield[@code='z']")]
            assert statuses[0] in {a.value for a in Availability}
    # The 852/905 count is the number of items the inputs gave for these works.
    first = records(root)[0].find("{*}recordData")[0]
    title = first.findtext("{*}datafield[@tag='200']/{*}subfield[@code='a']") or \
        first.findtext("{*}datafield[@tag='245']/{*}subfield[@code='a']")
    isbn_field = first.findtext("{*}datafield[@tag='010']/{*}subfield[@code='a']") or \
        first.findtext("{*}datafield[@tag='020']/{*}subfield[@code='a']")
    work = next(r.work for r in inputs if r.title.strip(" /:;,.") == title.strip(" /:;,.") and
                (isbn_field is None or r.work[0] == "isbn"))
    items = sum(len(r.holdings_libraries) for r in inputs if r.work == work)
    shown = len(first.findall("{*}datafield[@tag='905']")) + len(first.findall("{*}datafield[@tag='852']"))
    assert shown == items


def test_library_and_tier_databases_scope_records_and_holdings(server, inputs):
    for code in ("GR-DW", "GR-XZBM", "GR-LD"):
        works = {r.work for r in inputs if code in r.holdings_libraries}
        root = sru(server, {"version": "1.2", "operation": "searchRetrieve", "query": "cql.allRecords=1",
                            "maximumRecords": 100}, database=code).xml
        assert count(root) == len(works) > 0
        for record in records(root):
            data = record.find("{*}recordData")[0]
            libraries = {sf.text for sf in data.iterfind("{*}datafield[@tag='905']/{*}subfield[@code='a']")} | \
                        {sf.text for sf in data.iterfind("{*}datafield[@tag='852']/{*}subfield[@code='b']")}
            assert libraries == {code}
    mobile = {"GR-LD"}
    works = {r.work for r in inputs if mobile & set(r.holdings_libraries)}
    root = sru(server, {"version": "2.0", "query": "cql.allRecords=1", "maximumRecords": 0}, database="mobile").xml
    assert count(root) == len(works)
    union_total = len({r.work for r in inputs})
    assert count(sru(server, {"query": "cql.allRecords=1", "maximumRecords": 0}, database="union").xml) == union_total
    assert count(sru(server, {"query": "cql.allRecords=1", "maximumRecords": 0}, database="").xml) == union_total


def test_unknown_database_is_404_with_a_diagnostic(server):
    answer = sru(server, {"version": "1.2", "operation": "searchRetrieve", "query": "x"}, database="nowhere")
    assert answer.status == 404
    assert diagnostics(answer.xml)[0][0] == 1


def test_paging_covers_every_hit_once(server, inputs):
    expected = len({r.work for r in inputs if "图书馆" in r.title})
    seen: list[str] = []
    start = 1
    while True:
        root = sru(server, {"version": "1.2", "operation": "searchRetrieve", "query": "dc.title=图书馆",
                            "startRecord": start, "maximumRecords": 2}).xml
        seen += record_ids(root)
        positions = [int(r.findtext("{*}recordPosition")) for r in records(root)]
        assert positions == list(range(start, start + len(positions)))
        following = root.findtext("{*}nextRecordPosition")
        if following is None:
            break
        start = int(following)
    assert len(seen) == len(set(seen)) == expected


def test_sort_by_date_descending_and_sru11_sort_keys(server):
    root = sru(server, {"version": "1.2", "operation": "searchRetrieve", "maximumRecords": 30,
                        "query": "cql.allRecords=1 sortBy dc.date/sort.descending", "recordSchema": "json"}).xml
    years = [json.loads(r.find("{*}recordData")[0].text)["fields"].get("date", [""])[0] for r in records(root)]
    present = [int(y) for y in years if y]
    assert present == sorted(present, reverse=True) and len(present) >= 10
    root = sru(server, {"version": "1.1", "operation": "searchRetrieve", "maximumRecords": 30,
                        "query": "cql.allRecords=1", "sortKeys": "dc.date,,1", "recordSchema": "json"}).xml
    years = [json.loads(r.find("{*}recordData")[0].text)["fields"].get("date", [""])[0] for r in records(root)]
    present = [int(y) for y in years if y]
    assert present == sorted(present) and len(present) >= 10


def test_record_schemas(server, inputs):
    base = {"version": "1.2", "operation": "searchRetrieve", "query": "dc.title=图书馆", "maximumRecords": 1}
    dc = sru(server, {**base, "recordSchema": "dc"}).xml
    assert "图书馆" in dc.find(".//dc:title", NS).text
    assert any(i.text.startswith("union:") for i in dc.iterfind(".//dc:identifier", NS))
    held = sru(server, {**base, "recordSchema": "isohold"}).xml
    holding = held.find(".//hold:holding", NS)
    assert holding.findtext("hold:institutionIdentifier/hold:value", namespaces=NS).startswith("GR")
    assert int(holding.findtext(".//hold:copiesCount", namespaces=NS)) >= 1
    union = json.loads(sru(server, {**base, "recordSchema": "json"}).xml.find(".//{*}recordData")[0].text)
    assert union["holdings"] and union["marc"]["fields"][0]["001"] == union["id"]
    loc = next(r for r in inputs if r.path.name.startswith("loc-"))
    marc21 = sru(server, {**base, "query": f'net.controlNumber="{loc.record["001"].data}"', "recordSchema": "unimarcxml"}).xml
    assert count(marc21) >= 1
    assert diagnostics(marc21)[0][0] == 67   # a MARC21 record is not available as UNIMARC XML: a surrogate


def test_record_packing_string(server):
    for params in ({"version": "1.2", "operation": "searchRetrieve", "recordPacking": "string"},
                   {"version": "2.0", "recordXMLEscaping": "string"}):
        root = sru(server, {**params, "query": "dc.title=图书馆", "maximumRecords": 1}).xml
        data = records(root)[0].find("{*}recordData")
        assert len(data) == 0
        assert etree.fromstring(data.text.encode()).find("{*}controlfield[@tag='001']") is not None


def test_echo_with_xquery_stylesheet_and_extension_parameters(server):
    answer = sru(server, {"version": "1.2", "operation": "searchRetrieve", "query": "dc.title=图书馆 and dc.date>1990",
                          "maximumRecords": 1, "stylesheet": "/static/sru.xsl", "x-client": "opac"})
    assert b'<?xml-stylesheet type="text/xsl" href="/static/sru.xsl"?>' in answer.body
    echo = answer.xml.find("{*}echoedSearchRetrieveRequest")
    assert echo.findtext("{*}query") == "dc.title=图书馆 and dc.date>1990"
    assert echo.find("{*}xQuery/xcql1:triple/xcql1:boolean/xcql1:value", NS).text == "and"
    assert echo.findtext("{*}stylesheet") == "/static/sru.xsl"


def test_sru20_search_terms_and_echoed_parameters(server):
    words = "图书馆 教程"
    as_cql = sru(server, {"version": "2.0", "query": f'cql.anywhere all "{words}"', "maximumRecords": 0}).xml
    answer = sru(server, {
        "version": "2.0", "query": words, "queryType": "searchTerms", "maximumRecords": 1, "resultSetTTL": 300,
        "resultCountPrecision": "exact", "httpAccept": "application/sru+xml", "recordXMLEscaping": "string",
        "x-client": "opac", "extraRequestData": "abc"})
    assert answer.status == 200 and answer.content_type.startswith("application/sru+xml")
    root = answer.xml
    assert 0 < count(root) == count(as_cql)
    (record,) = records(root)
    assert record.findtext("sru2:recordXMLEscaping", namespaces=NS) == "string"
    assert etree.fromstring(record.findtext("sru2:recordData", namespaces=NS).encode()).tag.endswith("record")
    assert root.findtext("sru2:resultCountPrecision", namespaces=NS) == "info:srw/vocabulary/resultCountPrecision/1/exact"
    echo = root.find("sru2:echoedSearchRetrieveRequest", NS)
    assert (echo.findtext("sru2:queryType", namespaces=NS), echo.findtext("sru2:query", namespaces=NS)) == ("searchTerms", words)
    assert echo.findtext("sru2:resultSetTTL", namespaces=NS) == "300"
    assert echo.findtext("sru2:httpAccept", namespaces=NS) == "application/sru+xml"
    assert [e.text for e in echo.findall("sru2:extraRequestParameter", NS)] == ["x-client=opac", "extraRequestData=abc"]
    empty = sru(server, {"version": "2.0", "query": " ", "queryType": "searchTerms"}).xml
    assert diagnostics(empty)[0][0] == 27


def test_sru12_echoes_ttl_and_extra_request_data(server):
    root = sru(server, {"version": "1.2", "operation": "searchRetrieve", "query": "dc.title=图书馆", "maximumRecords": 0,
                        "resultSetTTL": 300, "x-client": "opac", "extraRequestData": "abc"}).xml
    echo = root.find("srw:echoedSearchRetrieveRequest", NS)
    assert echo.findtext("srw:resultSetTTL", namespaces=NS) == "300"
    extra = {p.get("name"): p.text for p in echo.find("srw:extraRequestData", NS)}
    assert extra == {"x-client": "opac", "extraRequestData": "abc"}


def test_post_form(server, inputs):
    expected = len({r.work for r in inputs if "图书馆" in r.title})
    answer = sru(server, {"version": "1.1", "operation": "searchRetrieve", "query": "dc.title=图书馆"}, post=True)
    assert answer.status == 200 and count(answer.xml) == expected
    not_soap = fetch(f"{server.base}/union", b"<soap/>", {"Content-Type": "text/xml"})
    assert not_soap.status == 200 and not_soap.xml.tag == "{http://schemas.xmlsoap.org/soap/envelope/}Envelope"
    assert diagnostics(not_soap.xml)[0][0] == 1
    json_body = fetch(f"{server.base}/union", b'{"query": "x"}', {"Content-Type": "application/json"})
    assert json_body.status == 415 and diagnostics(json_body.xml)[0][0] == 1


def test_facets_sru20(server, inputs):
    root = sru(server, {"version": "2.0", "query": "cql.allRecords=1", "maximumRecords": 0,
                        "facetLimit": "5:net.library,3:dc.date", "facetSort": "alphanumeric:dc.date"}).xml
    facets = root.findall("sru2:facetedResults/facet:facet", NS)
    assert [f.findtext("facet:index", namespaces=NS) for f in facets] == ["net.library", "dc.date"]
    libraries = {t.findtext("facet:actualTerm", namespaces=NS): int(t.findtext("facet:count", namespaces=NS))
                 for t in facets[0].iterfind("facet:terms/facet:term", NS)}
    assert len(libraries) == 5
    for code, n in libraries.items():
        assert n == len({r.work for r in inputs if code in r.holdings_libraries})
    years = [t.findtext("facet:actualTerm", namespaces=NS) for t in facets[1].iterfind("facet:terms/facet:term", NS)]
    assert years == sorted(years) and len(years) == 3


def facet_terms(root: etree._Element) -> list[tuple[str, int]]:
    (facet,) = root.findall("sru2:facetedResults/facet:facet", NS)
    return [(t.findtext("facet:actualTerm", namespaces=NS), int(t.findtext("facet:count", namespaces=NS)))
            for t in facet.iterfind("facet:terms/facet:term", NS)]


def test_facet_start_shifts_the_terms(server, inputs):
    """facetStart=N starts the facet's list at its N-th term (1 is the first), in either order."""
    held = {code for r in inputs for code in r.holdings_libraries}
    works = {code: len({r.work for r in inputs if code in r.holdings_libraries}) for code in held}
    assert len(held) >= 5
    base = {"version": "2.0", "query": "cql.allRecords=1", "maximumRecords": 0}
    alphabetical = {"facetSort": "alphanumeric:net.library"}
    first = facet_terms(sru(server, {**base, **alphabetical, "facetLimit": "4:net.library"}).xml)
    second = facet_terms(sru(server, {**base, **alphabetical, "facetLimit": "3:net.library",
                                      "facetStart": "2:net.library"}).xml)
    expected = [(code, works[code]) for code in sorted(held)]
    assert first == expected[:4]
    assert second == expected[1:4] == first[1:]
    # By record count (the default order): the same shift of the same list.
    by_count = facet_terms(sru(server, {**base, "facetLimit": "4:net.library"}).xml)
    shifted = facet_terms(sru(server, {**base, "facetLimit": "3:net.library", "facetStart": "2:net.library"}).xml)
    assert [n for _, n in by_count] == sorted((works.values()), reverse=True)[:4]
    assert shifted == by_count[1:] and shifted[0] != by_count[0]
    # Starting past the last term leaves the facet without terms.
    beyond = facet_terms(sru(server, {**base, "facetLimit": "3:net.library",
                                      "facetStart": f"{len(held) + 1}:net.library"}).xml)
    assert beyond == []


def test_scan(server):
    for version in ("1.2", "2.0"):
        root = sru(server, {"version": version, "operation": "scan", "scanClause": "dc.title=中", "maximumTerms": 5}).xml
        terms = root.findall(".//{*}terms/{*}term")
        assert len(terms) == 5
        values = [t.findtext("{*}value") for t in terms]
        assert values == sorted(values) and values[0] >= "中"
        for term in terms[:2]:
            hits = sru(server, {"version": "1.2", "operation": "searchRetrieve", "maximumRecords": 0,
                                "query": f'dc.title=="{term.findtext("{*}value")}"'}).xml
            assert count(hits) == int(term.findtext("{*}numberOfRecords"))
    root = sru(server, {"version": "1.2", "operation": "scan", "scanClause": "dc.title=中", "maximumTerms": 5,
                        "responsePosition": 3}).xml
    values = [t.findtext("{*}value") for t in root.findall(".//{*}terms/{*}term")]
    assert len(values) == 5 and values[1] < "中" <= values[2]
    assert [t.findtext("{*}whereInList") for t in root.findall(".//{*}terms/{*}term")] == ["inner"] * 5
    after = sru(server, {"version": "1.2", "operation": "scan", "scanClause": f'dc.title="{values[2]}"',
                         "maximumTerms": 2, "responsePosition": 0}).xml
    assert [t.findtext("{*}value") for t in after.findall(".//{*}terms/{*}term")] == values[3:5]
    # The ends of the index: the first keys (an empty start) and past the last one.
    start = sru(server, {"version": "2.0", "operation": "scan", "scanClause": 'net.library=""', "maximumTerms": 3,
                         "responsePosition": 2}).xml
    assert start.find(".//{*}terms/{*}term/{*}whereInList").text == "first"
    end = sru(server, {"version": "2.0", "operation": "scan", "scanClause": "net.library=zz", "maximumTerms": 3,
                       "responsePosition": 2}).xml
    where = [t.findtext("{*}whereInList") for t in end.findall(".//{*}terms/{*}term")]
    assert where == ["last"] and end.findtext(".//{*}terms/{*}term/{*}value") == "gr-xzbm"


def test_explain_describes_indexes_schemas_and_databases(server):
    for version, path in (("1.2", "/union"), ("2.0", ""), ("1.1", "/GR")):
        answer = fetch(f"{server.base}{path}?version={version}&operation=explain")
        root = answer.xml
        explain = root.find(".//zr:explain", NS)
        assert explain is not None
        names = {(n.get("set"), n.text) for n in explain.iterfind(".//zr:index/zr:map/zr:name", NS)}
        assert ("dc", "title") in names and ("net", "library") in names and ("bath", "isbn") in names
        title = next(i for i in explain.iterfind(".//zr:index", NS) if i.get("id") == "title")
        assert {a.text for a in title.iterfind("zr:map/zr:attr", NS)} == {"4", "6", "33"}
        assert title.get("sort") == "true" and title.get("scan") == "true"
        assert {s.get("name") for s in explain.iterfind(".//zr:schema", NS)} >= {"marcxml", "dc", "isohold", "json"}
        assert explain.findtext(".//zr:setting[@type='maximumRecords']", namespaces=NS) == "100"
        assert explain.findtext(".//zr:default[@type='numberOfRecords']", namespaces=NS) == "10"
        # Facet capability per index, from config/indexes.yaml.
        facets = {i.get("id") for i in explain.iterfind(".//zr:index", NS)
                  if i.find("zr:configInfo/zr:supports[@type='facet']", NS) is not None}
        assert "library" in facets and "title" not in facets
    databases = [s.text for s in explain.iterfind(".//zr:configInfo/zr:supports[@type='database']", NS)]
    assert any(d.startswith("union:") for d in databases) and any(d.startswith("hub:") for d in databases)


def test_explain_lists_every_database_and_every_index_of_the_table(server):
    """Explain names every library and tier database of the rule set and every index of
    config/indexes.yaml with all its CQL names and Bib-1 use attributes (both read as plain YAML)."""
    tiers = library_tiers()
    for database, version in (("union", "1.2"), ("GR-DW", "2.0"), ("branch", "1.1")):
        explain = sru(server, {"version": version, "operation": "explain"}, database=database).xml.find(".//zr:explain", NS)
        listed = {s.text.split(":", 1)[0]: s.text.split(": ", 1)[1]
                  for s in explain.iterfind("zr:configInfo/zr:supports[@type='database']", NS)}
        expected = ({"union"} | set(tiers) | set(tiers.values())) - {database}
        assert set(listed) == expected, set(listed) ^ expected
        names = {library["code"]: library["names"]["zh"] for library in rule_set()["libraries"]}
        assert all(listed[code] == names[code] for code in tiers if code != database)
        assert all(listed.values())
        assert explain.findtext("zr:serverInfo/zr:database", namespaces=NS) == f"sru/{database}"
        indexes = {i.get("id"): i for i in explain.iterfind("zr:indexInfo/zr:index", NS)}
        for entry in index_table():
            index = indexes.get(entry["name"])
            assert index is not None, entry["name"]
            names = [f"{n.get('set')}.{n.text}" for n in index.iterfind("zr:map/zr:name", NS)]
            assert names == entry["cql"], entry["name"]
            primary = index.find("zr:map[@primary='true']/zr:name", NS)
            assert f"{primary.get('set')}.{primary.text}" == entry["cql"][0]
            uses = [int(a.text) for a in index.iterfind("zr:map/zr:attr[@set='bib1'][@type='1']", NS)]
            assert uses == entry.get("bib1", []), entry["name"]
            assert index.get("sort") == str(bool(entry.get("sortable"))).lower()
            assert index.get("scan") == str(bool(entry.get("scannable"))).lower()
        assert set(indexes) == {e["name"] for e in index_table()} | {"allRecords"}


def test_live_status_update_is_visible_at_once(server):
    root = sru(server, {"version": "1.2", "operation": "searchRetrieve", "maximumRecords": 1,
                        "query": "net.availability=available and net.library=GR"}).xml
    data = records(root)[0].find("{*}recordData")[0]
    field = next(f for f in data.iterfind("{*}datafield[@tag='905']") if f.findtext("{*}subfield[@code='a']") == "GR")
    barcode = field.findtext("{*}subfield[@code='b']")
    outcomes = server.call(server.service.update_items([
        ItemStatusUpdate(barcode, Availability.ON_LOAN, status="借出", due_date="2026-12-24")]))
    assert outcomes[0].applied
    hits = sru(server, {"version": "2.0", "query": f"net.barcode={barcode}"}).xml
    data = records(hits)[0].find("{*}recordData")[0]
    field = next(f for f in data.iterfind("{*}datafield[@tag='905']") if f.findtext("{*}subfield[@code='b']") == barcode)
    assert field.findtext("{*}subfield[@code='z']") == "on_loan"
    assert field.findtext("{*}subfield[@code='y']") == "2026-12-24"
    gone = sru(server, {"version": "1.2", "operation": "searchRetrieve", "maximumRecords": 0,
                        "query": f"net.barcode={barcode} and net.availability=available"}).xml
    assert count(gone) == 0


# -- diagnostics ----------------------------------------------------------------------------

SEARCH = {"operation": "searchRetrieve", "version": "1.2"}


@pytest.mark.parametrize("params, code", [
    ({**SEARCH, "query": "dc.nothing=cat"}, 16),
    ({**SEARCH, "query": "foo.title=cat"}, 15),
    ({**SEARCH, "query": "dc.title encloses cat"}, 19),
    ({**SEARCH, "query": "dc.title =/respectCase cat"}, 20),
    ({**SEARCH, "query": "dc.date=soon"}, 36),
    ({**SEARCH, "query": "dc.date>99999999999999999999999"}, 48),     # beyond the store's numbers
    ({**SEARCH, "query": "dc.title=cat", "recordSchema": "mods"}, 66),
    ({"operation": "searchRetrieve", "version": "3.0", "query": "x"}, 5),
    ({**SEARCH, "query": "x", "startRecord": "0"}, 6),
    ({**SEARCH, "query": "x", "startRecord": "first"}, 6),
    ({**SEARCH, "query": "x", "maximumRecords": "-1"}, 6),
    ({**SEARCH, "query": "dc.title=图书馆", "startRecord": "9999"}, 61),
    ({**SEARCH, "query": "dc.title=cat and"}, 10),
    ({**SEARCH, "query": "(dc.title=cat"}, 13),
    ({**SEARCH, "query": "dc.title=\"cat"}, 14),
    ({**SEARCH, "query": "x", "foo": "bar"}, 8),
    ({**SEARCH, "query": "x", "sortKeys": "dc.title"}, 8),
    ({**SEARCH, "query": "x", "recordXPath": "/record"}, 72),
    ({"version": "1.1", "operation": "searchRetrieve", "query": "x", "recordXPath": "/record"}, 72),
    ({"version": "2.0", "query": "x", "recordXPath": "/record"}, 8),      # no 2.0 parameter
    ({**SEARCH, "query": "x", "recordPacking": "json"}, 71),
    ({"version": "2.0", "query": "x", "recordXMLEscaping": "json"}, 71),
    ({"version": "2.0", "query": "x", "queryType": "sparql"}, 11),
    ({"version": "2.0", "query": "x", "httpAccept": "application/json"}, 6),
    ({"version": "2.0", "query": "x", "facetLimit": "5:dc.title"}, 6),
    ({"version": "2.0", "query": "x", "facetLimit": "five"}, 6),
    ({"version": "1.1", "operation": "searchRetrieve", "query": "x sortBy dc.title", "sortKeys": "dc.date"}, 96),
    ({"operation": "update", "version": "1.2"}, 4),
    ({"operation": "searchRetrieve", "version": "1.2"}, 7),
    ({**SEARCH, "query": "dc.title=x sortBy dc.subject"}, 88),
    ({"operation": "scan", "version": "1.2"}, 7),
    ({"operation": "scan", "version": "1.2", "scanClause": "dc.title=a", "maximumTerms": "1000"}, 121),
    ({"operation": "scan", "version": "1.2", "scanClause": "dc.title=a", "maximumTerms": "5",
      "responsePosition": "9"}, 120),
    ({"operation": "scan", "version": "1.2", "scanClause": "net.barcode=GR"}, 16),
    ({"operation": "scan", "version": "2.0", "scanClause": "dc.title any a"}, 19),
])
def test_every_diagnostic(server, params, code):
    answer = sru(server, params)
    assert answer.status == 200
    found = diagnostics(answer.xml)
    assert found and found[0][0] == code, found


def test_parameters_that_are_not_utf8_are_named(server):
    # %FF%FE is no UTF-8; it must not become U+FFFD U+FFFD, a term without words that matches everything.
    for raw, name in (("query=%FF%FE", "query"), ("query=dc.title%3Da&x-note=%C3", "x-note")):
        answer = fetch(f"{server.base}/union?version=1.2&operation=searchRetrieve&{raw}")
        assert answer.status == 200
        assert diagnostics(answer.xml) == [(6, name)]
    fine = fetch(f"{server.base}/union?version=1.2&operation=searchRetrieve&query=dc.title%3D%E5%9B%BE%E4%B9%A6%E9%A6%86+x")
    assert diagnostics(fine.xml) == []      # real UTF-8 escapes and + for space pass


def test_too_long_query(server):
    answer = sru(server, {**SEARCH, "query": "a" * 9000}, post=True)
    assert diagnostics(answer.xml) == [(12, "8192")]


def test_diagnostic_envelopes_follow_the_version(server):
    old = sru(server, {"version": "1.2", "operation": "searchRetrieve", "query": "dc.nothing=x"}).xml
    assert old.tag == "{%s}searchRetrieveResponse" % NS["srw"] and old.findtext("srw:version", namespaces=NS) == "1.2"
    assert old.find(".//diag1:diagnostic/diag1:details", NS).text == "dc.nothing"
    new = sru(server, {"version": "2.0", "query": "dc.nothing=x"}).xml
    assert new.tag == "{%s}searchRetrieveResponse" % NS["sru2"]
    assert new.find(".//diag2:diagnostic/diag2:uri", NS).text == "info:srw/diagnostic/1/16"
    unsupported = sru(server, {"version": "9.9", "operation": "searchRetrieve", "query": "x"}).xml
    assert unsupported.tag == "{%s}searchRetrieveResponse" % NS["sru2"]
    assert diagnostics(unsupported) == [(5, "2.0")]


def test_failed_query_still_echoes_its_xquery(server):
    root = sru(server, {"version": "1.2", "operation": "searchRetrieve", "query": "dc.nothing=cat"}).xml
    assert root.find("srw:echoedSearchRetrieveRequest/srw:xQuery/xcql1:searchClause/xcql1:index", NS).text == "dc.nothing"


def xquery_namespaces(root: etree._Element) -> set[str]:
    (xquery,) = root.iterfind("{*}echoedSearchRetrieveRequest/{*}xQuery")
    return {etree.QName(e).namespace for e in xquery.iterdescendants() if isinstance(e.tag, str)}


def test_sru20_echoes_xquery_in_the_oasis_xcql_namespace(server):
    """SRU 2.0 (OASIS searchRetrieve Part 3, sruResponse.xsd) echoes the request with xQuery in
    http://docs.oasis-open.org/ns/search-ws/xcql; 1.x keeps http://www.loc.gov/zing/cql/xcql/."""
    query = "dc.title=图书馆 and dc.date>1990"
    new = sru(server, {"version": "2.0", "query": query, "maximumRecords": 0}).xml
    echo = new.find("sru2:echoedSearchRetrieveRequest", NS)
    assert echo.findtext("sru2:query", namespaces=NS) == query
    triple = echo.find("sru2:xQuery/xcql2:triple", NS)
    assert triple.findtext("xcql2:boolean/xcql2:value", namespaces=NS) == "and"
    left = triple.find("xcql2:leftOperand/xcql2:searchClause", NS)
    assert (left.findtext("xcql2:index", namespaces=NS), left.findtext("xcql2:relation/xcql2:value", namespaces=NS),
            left.findtext("xcql2:term", namespaces=NS)) == ("dc.title", "=", "图书馆")
    right = triple.find("xcql2:rightOperand/xcql2:searchClause", NS)
    assert right.findtext("xcql2:index", namespaces=NS) == "dc.date" and right.findtext("xcql2:term", namespaces=NS) == "1990"
    assert xquery_namespaces(new) == {NS["xcql2"]}
    old = sru(server, {"version": "1.2", "operation": "searchRetrieve", "query": query, "maximumRecords": 0}).xml
    assert xquery_namespaces(old) == {NS["xcql1"]}
    # A 2.0 query that parses and then fails (unknown index) still echoes it, in the same namespace.
    failed = sru(server, {"version": "2.0", "query": "dc.nothing=cat"}).xml
    assert diagnostics(failed) == [(16, "dc.nothing")]
    clause = failed.find("sru2:echoedSearchRetrieveRequest/sru2:xQuery/xcql2:searchClause", NS)
    assert clause.findtext("xcql2:index", namespaces=NS) == "dc.nothing"
    assert clause.findtext("xcql2:term", namespaces=NS) == "cat"
    assert xquery_namespaces(failed) == {NS["xcql2"]}
    # One that does not parse has no XCQL to echo: the query alone.
    broken = sru(server, {"version": "2.0", "query": "dc.title=cat and"}).xml
    assert diagnostics(broken)[0][0] == 10
    echo = broken.find("sru2:echoedSearchRetrieveRequest", NS)
    assert echo.findtext("sru2:query", namespaces=NS) == "dc.title=cat and" and echo.find("sru2:xQuery", NS) is None


def test_maximum_records_is_capped_with_a_warning(server):
    root = sru(server, {"version": "1.2", "operation": "searchRetrieve", "query": "cql.allRecords=1",
                        "maximumRecords": 500}).xml
    assert len(records(root)) == 100
    assert diagnostics(root) == [(6, "maximumRecords")]


def test_limits_come_from_the_rule_set(catalogue):
    limits = SRULimits(default_records=3, maximum_records=7, maximum_terms=4, max_query_length=40, max_start_record=20)
    with SRUServer(catalogue, network_hook=lambda network: replace(network, sru=limits)) as limited:
        everything = {"version": "1.2", "operation": "searchRetrieve", "query": "cql.allRecords=1"}
        assert count(sru(limited, everything).xml) > 7
        assert len(records(sru(limited, everything).xml)) == 3
        capped = sru(limited, {**everything, "maximumRecords": 8}).xml
        assert len(records(capped)) == 7 and diagnostics(capped) == [(6, "maximumRecords")]
        assert diagnostics(sru(limited, {**everything, "startRecord": 21}).xml) == [(61, "21")]
        assert diagnostics(sru(limited, {**everything, "query": "dc.title=" + "x" * 40}).xml) == [(12, "40")]
        scan = sru(limited, {"version": "1.2", "operation": "scan", "scanClause": "dc.title=a", "maximumTerms": 5}).xml
        assert diagnostics(scan) == [(121, "5")]
        explain = sru(limited, {"version": "1.2", "operation": "explain"}).xml
        assert explain.findtext(".//zr:setting[@type='maximumRecords']", namespaces=NS) == "7"
        assert explain.findtext(".//zr:default[@type='numberOfRecords']", namespaces=NS) == "3"


def test_unexpected_errors_become_diagnostic_1(server, monkeypatch):
    async def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(server.service.store, "search", broken)
    answer = sru(server, {"version": "1.2", "operation": "searchRetrieve", "query": "dc.title=x"})
    assert answer.status == 200
    assert diagnostics(answer.xml)[0][0] == 1
    assert b"disk on fire" not in answer.body

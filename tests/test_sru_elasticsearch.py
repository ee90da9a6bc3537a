"""The same SRU answers over the Elasticsearch store (the osmem stand-in, or a real cluster via
ELASTICSEARCH_URL): the SRU layer does not depend on which store serves the network."""
from __future__ import annotations

import json

import pytest

from indexer.model import Availability, ItemStatusUpdate
from sru_support import NS, SRUServer, diagnostics, input_records, shared_catalogue, sru

pytestmark = [pytest.mark.elasticsearch, pytest.mark.slow]


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    return shared_catalogue(tmp_path_factory)


@pytest.fixture(scope="module")
def server(catalogue):
    with SRUServer(catalogue, elasticsearch=True) as running:
        yield running


def count(root) -> int:
    return int(root.findtext("{*}numberOfRecords"))


def test_counts_match_the_inputs(server, catalogue):
    inputs = input_records(catalogue)
    library_titles = len({r.work for r in inputs if "图书馆" in r.title})
    for version in ("1.2", "2.0"):
        root = sru(server, {"version": version, "operation": "searchRetrieve", "query": "dc.title=图书馆"}).xml
        assert count(root) == library_titles
    assert count(sru(server, {"query": "cql.allRecords=1", "maximumRecords": 0}).xml) == len({r.work for r in inputs})
    for code in ("GR-DW", "GR-XZBM"):
        root = sru(server, {"query": "cql.allRecords=1", "maximumRecords": 0}, database=code).xml
        assert count(root) == len({r.work for r in inputs if code in r.holdings_libraries})


def test_sort_facets_scan_and_diagnostics(server, catalogue):
    inputs = input_records(catalogue)
    root = sru(server, {"version": "2.0", "query": "cql.allRecords=1 sortBy dc.date/sort.descending",
                        "maximumRecords": 20, "facetLimit": "3:net.library", "recordSchema": "json"}).xml
    years = [int(json.loads(r.findtext("{*}recordData/{*}json"))["fields"]["date"][0])
             for r in root.iterfind("{*}records/{*}record")]
    assert len(years) == 20 and years == sorted(years, reverse=True)
    terms = root.findall("sru2:facetedResults/facet:facet/facet:terms/facet:term", NS)
    for term in terms:
        code = term.findtext("facet:actualTerm", namespaces=NS)
        assert int(term.findtext("facet:count", namespaces=NS)) == len({r.work for r in inputs if code in r.holdings_libraries})
    scan = sru(server, {"version": "1.2", "operation": "scan", "scanClause": "net.library=GR", "maximumTerms": 3}).xml
    assert [t.findtext("{*}value") for t in scan.iterfind(".//{*}term")][0] == "gr"
    assert diagnostics(sru(server, {"version": "1.2", "operation": "searchRetrieve", "query": "dc.nothing=x"}).xml)[0][0] == 16


def test_live_status_over_elasticsearch(server):
    root = sru(server, {"version": "1.2", "operation": "searchRetrieve", "maximumRecords": 1,
                        "query": "net.library=GR-DW and net.availability=available"}).xml
    field = next(f for f in root.iterfind(".//{*}datafield[@tag='905']") if f.findtext("{*}subfield[@code='a']") == "GR-DW")
    barcode = field.findtext("{*}subfield[@code='b']")
    [outcome] = server.call(server.service.update_items([ItemStatusUpdate(barcode, Availability.IN_TRANSIT)]))
    assert outcome.applied
    after = sru(server, {"version": "2.0", "query": f"net.barcode={barcode} and net.availability=in_transit"}).xml
    assert count(after) == 1

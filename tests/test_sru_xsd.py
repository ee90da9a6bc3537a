"""Every kind of SRU response validates against the SRU 1.2 and 2.0 schemas (tests/data/xsd)."""
from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from sru_support import SRUServer, shared_catalogue, sru

XSD = Path(__file__).resolve().parent / "data" / "xsd"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with SRUServer(shared_catalogue(tmp_path_factory)) as running:
        yield running


@pytest.fixture(scope="module")
def schemas():
    return {
        "1": etree.XMLSchema(etree.parse(str(XSD / "sru-1.2" / "sru.xsd"))),
        "2": etree.XMLSchema(etree.parse(str(XSD / "sru-2.0" / "sruResponse.xsd"))),
    }


SEARCH_CASES = [
    {"query": "dc.title=图书馆", "maximumRecords": 3},
    {"query": "dc.title=图书馆", "maximumRecords": 2, "recordSchema": "dc"},
    {"query": "dc.title=图书馆", "maximumRecords": 2, "recordSchema": "isohold"},
    {"query": "dc.title=图书馆", "maximumRecords": 2, "recordSchema": "json", "stylesheet": "/s.xsl"},
    {"query": "dc.title=图书馆", "maximumRecords": 2, "recordSchema": "unimarcxml"},
    {"query": "cql.allRecords=1 sortBy dc.date", "maximumRecords": 200, "startRecord": 3, "resultSetTTL": 60},
    {"query": "net.controlNumber=7115963", "recordSchema": "unimarcxml"},
    {"query": "dc.nothing=x"},
    {"query": "dc.title=("},
    {"query": "dc.title=图书馆", "startRecord": 5000},
    {"query": "dc.title=x", "recordSchema": "mods"},
    {"query": "x", "x-info": "1"},
]


@pytest.mark.parametrize("version", ["1.1", "1.2", "2.0"])
@pytest.mark.parametrize("case", range(len(SEARCH_CASES)))
def test_search_retrieve_validates(server, schemas, version, case):
    params = {"version": version, "operation": "searchRetrieve", **SEARCH_CASES[case]}
    root = sru(server, params).xml
    schema = schemas[version[0]]
    assert schema.validate(root), schema.error_log


def test_string_packing_and_facets_validate(server, schemas):
    one = sru(server, {"version": "1.2", "operation": "searchRetrieve", "query": "dc.title=图书馆",
                       "recordPacking": "string", "maximumRecords": 2}).xml
    assert schemas["1"].validate(one), schemas["1"].error_log
    two = sru(server, {"version": "2.0", "query": "dc.title=图书馆", "recordXMLEscaping": "string",
                       "maximumRecords": 2, "facetLimit": "5:net.library,5:dc.date,3:net.materialType",
                       "facetStart": "2:net.library", "httpAccept": "application/sru+xml"}).xml
    assert two.find("{*}facetedResults") is not None
    assert schemas["2"].validate(two), schemas["2"].error_log


@pytest.mark.parametrize("version", ["1.1", "1.2", "2.0"])
@pytest.mark.parametrize("params", [
    {"scanClause": "dc.title=中", "maximumTerms": 5},
    {"scanClause": "net.library=GR", "maximumTerms": 3, "responsePosition": 2},
    {"scanClause": "dc.nothing=x"},
    {"scanClause": "dc.title any x"},
])
def test_scan_validates(server, schemas, version, params):
    root = sru(server, {"version": version, "operation": "scan", **params}).xml
    schema = schemas[version[0]]
    assert schema.validate(root), schema.error_log


@pytest.mark.parametrize("version", ["1.1", "1.2", "2.0"])
@pytest.mark.parametrize("database", ["union", "GR", "branch"])
def test_explain_validates(server, schemas, version, database):
    root = sru(server, {"version": version, "operation": "explain"}, database=database).xml
    assert root.find(".//{http://explain.z3950.org/dtd/2.0/}explain") is not None
    schema = schemas[version[0]]
    assert schema.validate(root), schema.error_log


@pytest.mark.parametrize("params, major", [
    ({"version": "4.0", "operation": "searchRetrieve", "query": "x"}, "2"),
    ({"version": "1.7", "operation": "searchRetrieve", "query": "x"}, "1"),
    ({"version": "1.2", "operation": "delete"}, "1"),
    ({"version": "1.2", "operation": "explain", "recordPacking": "zip"}, "1"),
    ({"version": "2.0", "operation": "explain", "query": "x"}, "2"),
])
def test_diagnostic_only_responses_validate(server, schemas, params, major):
    root = sru(server, params).xml
    assert schemas[major].validate(root), schemas[major].error_log

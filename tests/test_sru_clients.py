"""Real SRU clients against the server: yaz-client in SRU mode (GET 1.2, POST 1.1, GET 2.0),
zoomsh (SRW/SOAP, its default, and GET), and Python's sruthi. Hit counts are computed from the
input files."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import sruthi

from sru_support import SRUServer, input_records, shared_catalogue


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    return shared_catalogue(tmp_path_factory)


@pytest.fixture(scope="module")
def server(catalogue):
    with SRUServer(catalogue) as running:
        yield running


@pytest.fixture(scope="module")
def library_titles(catalogue):
    return len({r.work for r in input_records(catalogue) if "图书馆" in r.title})


def run(command: list[str], stdin: str = "") -> str:
    assert shutil.which(command[0]), f"{command[0]} is not installed (Debian package yaz)"
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=60)
    return done.stdout + done.stderr


def yaz_client(url: str, *commands: str) -> str:
    return run(["yaz-client"], "\n".join([f"open {url}", *commands, "quit"]) + "\n")


def yaz_hits(output: str) -> list[int]:
    """Every hit count yaz-client printed, as whole numbers ("Number of hits: 15" is 15, never 5)."""
    return [int(n) for n in re.findall(r"^Number of hits: (\d+)\b", output, re.M)]


def zoomsh_hits(output: str) -> list[int]:
    """Every hit count zoomsh printed ("URL: 15 hits"), as whole numbers."""
    return [int(n) for n in re.findall(r": (\d+) hits$", output, re.M)]


@pytest.mark.parametrize("mode", ["sru get 1.2", "sru post 1.1", "sru get 2.0"])
def test_yaz_client_search_and_show(server, library_titles, mode):
    output = yaz_client(f"{server.base}/union", mode, "f dc.title=图书馆", "show 1")
    # `show` in SRU mode is a second searchRetrieve, and yaz-client prints its count too.
    assert yaz_hits(output) == [library_titles, library_titles]
    record = re.search(r"pos=1 schema=marcxml\n(<record .*?</record>)", output, re.S)
    assert record is not None, output
    assert "图书馆" in record.group(1) and 'tag="905"' in record.group(1)


def test_yaz_client_library_database_scan_and_diagnostic(server, catalogue):
    held_at_dw = len({r.work for r in input_records(catalogue) if "GR-DW" in r.holdings_libraries})
    output = yaz_client(f"{server.base}/GR-DW", "sru get 1.2", "f cql.allRecords=1", "scan dc.title=中",
                        "f dc.nothing=x")
    assert yaz_hits(output) == [held_at_dw, 0]   # the failing search reports 0 with its diagnostic
    assert "Received SRW Scan Response" in output
    terms = re.findall(r"^(\S.*?): (\d+) ", output, re.M)
    assert len(terms) >= 3
    assert "info:srw/diagnostic/1/16" in output or "Unsupported index" in output


def test_zoomsh_soap_and_get(server, library_titles):
    url = f"{server.base}/union"
    soap = run(["zoomsh", f"connect {url}", "search cql:dc.title=图书馆", "show 0 1", "quit"])
    assert zoomsh_hits(soap) == [library_titles]
    assert "unimarcxml" in soap or "MARC21/slim" in soap
    get = run(["zoomsh", "set sru get", "set sru_version 1.2", f"connect {url}", "search cql:dc.title=图书馆",
               "search cql:dc.nothing=x", "quit"])
    assert zoomsh_hits(get) == [library_titles]   # the failing search prints a diagnostic, no count
    assert "info:srw/diagnostic/1:16" in get


def test_sruthi(server, catalogue, library_titles):
    url = f"{server.base}/union"
    found = sruthi.searchretrieve(url, query="dc.title=图书馆", record_schema="dc")
    assert found.count == library_titles
    records = list(found)
    assert len(records) == library_titles
    for record in records:
        titles = record["title"] if isinstance(record["title"], list) else [record["title"]]
        assert any("图书馆" in t for t in titles)
        assert record["extra"]["urn:union-federation:record-1.0:recordIdentifier"]
    everything = sruthi.searchretrieve(url, query="cql.allRecords=1", sru_version="1.1", maximum_records=100)
    assert everything.count == len({r.work for r in input_records(catalogue)})
    assert sum(1 for _ in everything) == everything.count   # sruthi pages with startRecord/nextRecordPosition
    explained = sruthi.explain(url)
    assert explained.server["database"] == "sru/union" and explained.database["title"] == "广饶县图书馆总分馆"
    assert "title" in explained.index["dc"]
    with pytest.raises(sruthi.errors.SruError, match="info:srw/diagnostic/1/16"):
        sruthi.searchretrieve(url, query="dc.nothing=x")

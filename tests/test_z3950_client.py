"""The project's Z39.50 client against real targets: Debian's yaz-ztest and zebrasrv."""
from __future__ import annotations

import asyncio
import gzip
import re
import subprocess
from pathlib import Path

import pymarc
import pytest

from protocols.z3950 import pdu as P
from protocols.z3950.client import Z3950Client
from peers import start_yaz_ztest, start_zebra

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ZEBRA_SAMPLE = FIXTURES / "idzebra" / "marc21" / "sample-marc.gz"


async def yaz_client_hits(address: str, query: str) -> int:
    """The hit count yaz-client itself reports for a query (the reference origin)."""
    process = await asyncio.create_subprocess_exec(
        "yaz-client", f"{address}/Default",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(f"find {query}\nquit\n".encode()), 20)
    match = re.search(r"Number of hits: (\d+)", output.decode(errors="replace"))
    assert match, output.decode(errors="replace")
    return int(match.group(1))


@pytest.fixture
async def ztest(tmp_path):
    async with start_yaz_ztest(tmp_path / "ztest") as peer:
        yield peer


async def test_init_accepts_a_private_charset_answer(ztest):
    async with Z3950Client(ztest.host, ztest.port, charset="UTF-8") as client:
        response = client.init_response
        assert response is not None and response.result
        assert response.implementation_name == "GFS/YAZ"
        assert {P.Option.SEARCH, P.Option.PRESENT, P.Option.SCAN, P.Option.SORT} <= client.options
        # yaz-ztest answers a UTF-8 proposal with private ISO-8859-1.
        assert response.charset_response is not None
        assert response.charset_response.charset == "ISO-8859-1"
        assert client.charset == "latin-1"


async def test_init_without_negotiation(ztest):
    async with Z3950Client(ztest.host, ztest.port, charset=None) as client:
        assert client.init_response.charset_response is None
        assert client.charset == "utf-8"


@pytest.mark.parametrize("query", [
    "@attr 1=4 computer",
    "@attr 1=4 @attr 4=1 @attr 5=1 comput",
    "@and @attr 1=4 abc @not @attr 1=1003 x y",
    "@or @attr 1=7 0262011530 @attr 1=8 1234-5678",
])
async def test_search_counts_match_yaz_client(ztest, query):
    expected = await yaz_client_hits(ztest.address, query)
    async with Z3950Client(ztest.host, ztest.port, charset=None) as client:
        result = await client.search(query)
        assert result.diagnostics == []
        assert result.count == expected


async def test_present_in_every_syntax(ztest):
    async with Z3950Client(ztest.host, ztest.port) as client:
        result = await client.search("@attr 1=4 computer")
        assert result.count > 2
        marc = await client.present(result.result_set, 1, 2, syntax=P.RecordSyntax.USMARC.value)
        assert marc.number_of_records_returned == 2 and marc.next_result_set_position == 3
        for entry in marc.records:
            record = pymarc.Record(data=entry.record.content)
            assert record["245"]["a"]
        opac = await client.present(result.result_set, 2, 1, syntax=P.RecordSyntax.OPAC.value)
        content = opac.records[0].record.content
        assert isinstance(content, P.OpacRecord)
        assert content.holdings and content.holdings[0].circulation[0].item_id
        sutrs = await client.present(result.result_set, 1, 1, syntax=P.RecordSyntax.SUTRS.value)
        assert isinstance(sutrs.records[0].record.content, str)
        xml = await client.present(result.result_set, 1, 1, syntax=P.RecordSyntax.XML.value, element_set=None)
        assert xml.records[0].record.content.lstrip().startswith(b"<")


async def test_piggybacked_records(ztest):
    async with Z3950Client(ztest.host, ztest.port) as client:
        result = await client.search("@attr 1=4 computer", piggyback=3, preferred_syntax=P.RecordSyntax.USMARC.value, element_set="F")
        count = result.count
        assert count > 0
        returned = result.response.number_of_records_returned
        assert returned == min(3, count) and len(result.response.records or []) == returned


async def test_sort_and_delete(ztest):
    async with Z3950Client(ztest.host, ztest.port) as client:
        first = await client.search("@attr 1=4 computer")
        second = await client.search("@attr 1=4 library")
        assert first.result_set != second.result_set
        sort = await client.sort([first.result_set], "sorted", [P.SortKeySpec(attributes=(P.Attribute(1, 4),))])
        assert sort.status is P.SortStatus.SUCCESS
        delete = await client.delete_result_sets([first.result_set])
        assert delete.status is P.DeleteSetStatus.SUCCESS


async def test_timeouts_and_refused_connections(tmp_path):
    from peers import free_port

    with pytest.raises(P.Z3950Error, match="cannot connect"):
        await Z3950Client("127.0.0.1", free_port(), timeout=2).connect()

    # A listener that never answers: the init times out.
    async def silent(reader, writer):
        await reader.read(100000)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(P.Z3950Error, match="no answer"):
            await Z3950Client("127.0.0.1", port, timeout=0.3).connect()
    finally:
        server.close()
        await server.wait_closed()


# -- zebrasrv with the fixtures' MARC21 sample -------------------------------------------------

def fixture_records() -> list[pymarc.Record]:
    with gzip.open(ZEBRA_SAMPLE) as handle:
        return [r for r in pymarc.MARCReader(handle, to_unicode=True, force_utf8=True) if r is not None]


def count_word(tags: list[str], word: str) -> int:
    def words(record: pymarc.Record) -> set[str]:
        found: set[str] = set()
        for field in record.get_fields(*tags):
            found |= set(re.findall(r"\w+", field.value().lower()))
        return found
    return sum(word in words(r) for r in fixture_records())


@pytest.fixture
async def zebra(tmp_path):
    marc = tmp_path / "sample.mrc"
    marc.write_bytes(gzip.decompress(ZEBRA_SAMPLE.read_bytes()))
    async with start_zebra(tmp_path / "zebra", [marc]) as peer:
        yield peer


@pytest.mark.slow
async def test_zebra_searches_match_the_fixture(zebra):
    async with Z3950Client(zebra.host, zebra.port) as client:
        title = await client.search("@attr 1=4 computer")
        assert title.count == count_word(["245"], "computer") > 0
        author = await client.search("@attr 1=1003 collins")
        assert author.count == count_word(["100", "110", "700"], "collins") > 0
        both = await client.search(f"@and @set {title.result_set} @set {author.result_set}")
        assert both.count <= min(title.count, author.count)
        none = await client.search("@attr 1=4 图书馆")
        assert none.count == 0 and none.diagnostics == []

        page = await client.present(title.result_set, 1, title.count, syntax=P.RecordSyntax.USMARC.value)
        assert page.number_of_records_returned == title.count
        for entry in page.records:
            record = pymarc.Record(data=entry.record.content, force_utf8=True)
            assert "computer" in record["245"].value().lower()

        scan = await client.scan("@attr 1=4 comput", count=5)
        assert scan.entries and scan.entries[0].term.startswith("comput")
        assert scan.entries[0].occurrences == count_word(["245"], scan.entries[0].term)

        out_of_range = await client.present(title.result_set, title.count + 5, 1)
        assert out_of_range.diagnostics or out_of_range.present_status is not P.PresentStatus.SUCCESS

        unsupported = await client.search("@attr 1=9999 x")
        assert unsupported.count == 0 and unsupported.diagnostics[0].code == 114


# Every Bib-1 attribute type the server tests use, with operators and failures, as yaz-client sends them.
ATTRIBUTE_QUERIES = [
    "@attr 1=4 computer", "@attr 1=1003 collins", "@attr 1=4 图书馆",
    "@attr 1=30 @attr 2=1 1990", "@attr 1=30 @attr 2=2 1990", "@attr 1=30 @attr 2=3 1990",
    "@attr 1=30 @attr 2=4 1990", "@attr 1=30 @attr 2=5 1990", "@attr 1=30 @attr 2=6 1990",
    "@attr 1=4 @attr 3=1 computer", "@attr 1=4 @attr 3=3 computer",
    '@attr 1=4 @attr 4=1 "computer science"', "@attr 1=4 @attr 4=2 computer", '@attr 1=4 @attr 4=6 "computer science"',
    "@attr 1=4 @attr 5=1 comput", "@attr 1=4 @attr 5=2 puter", "@attr 1=4 @attr 5=3 mpute",
    "@attr 1=4 @attr 5=100 computer", "@attr 1=4 @attr 5=101 comp#ter", "@attr 1=4 @attr 5=104 comp?ter",
    "@attr 1=4 @attr 6=1 computer", "@attr 1=4 @attr 6=3 computer",
    "@and @attr 1=4 computer @attr 1=4 science", "@or @attr 1=4 computer @attr 1=4 science",
    "@not @attr 1=4 computer @attr 1=4 science",
    "@attr 1=9999 x", "@attr 2=100 @attr 1=4 x",
]


def yaz_client_answers(address: str, queries: list[str]) -> list[tuple[int, list[int]]]:
    """(hits, diagnostic codes) per query as yaz-client, the reference origin, reports them."""
    commands = "".join(f"find {q}\n" for q in queries) + "quit\n"
    done = subprocess.run(["yaz-client", f"{address}/Default"], input=commands, capture_output=True, text=True,
                          errors="replace", timeout=60)
    answers = []
    for part in done.stdout.split("Sent searchRequest.")[1:]:
        hits = re.search(r"Number of hits: (\d+)", part)
        answers.append((int(hits.group(1)) if hits else 0, [int(c) for c in re.findall(r"^\s*\[(\d+)\]", part, re.M)]))
    return answers


async def test_every_attribute_type_against_zebra_matches_yaz_client(zebra):
    expected = yaz_client_answers(zebra.address, ATTRIBUTE_QUERIES)
    assert len(expected) == len(ATTRIBUTE_QUERIES)
    assert sum(1 for hits, codes in expected if hits and not codes) >= 15    # most queries find something
    async with Z3950Client(zebra.host, zebra.port) as client:
        for query, (hits, codes) in zip(ATTRIBUTE_QUERIES, expected):
            found = await client.search(query)
            assert (found.count, [d.code for d in found.diagnostics]) == (hits, codes), query
    # The fixture itself agrees where it can be counted independently.
    assert expected[0][0] == count_word(["245"], "computer") and expected[1][0] == count_word(["100", "110", "700"], "collins")



async def test_every_attribute_type_against_yaz_ztest_matches_yaz_client(ztest):
    expected = yaz_client_answers(ztest.address, ATTRIBUTE_QUERIES)
    assert len(expected) == len(ATTRIBUTE_QUERIES)
    async with Z3950Client(ztest.host, ztest.port, charset=None) as client:
        for query, (hits, codes) in zip(ATTRIBUTE_QUERIES, expected):
            found = await client.search(query)
            assert (found.count, [d.code for d in found.diagnostics]) == (hits, codes), query

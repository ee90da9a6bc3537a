"""The `federated` database against real peers on loopback.

The union catalogue (embedded store) holds two thirds of the Library of Congress sample
(records 0, 1, 3, 4, ... as the Guangrao court reading room GR-FY, items in 852); a city joint
library runs zebrasrv over another two thirds (records 1, 2, 4, 5, ..., items in 852 at its
own branches) and is configured twice, as a Z39.50 target and as an SRU target on the same
server. Every third record is on both sides, so the same work arrives up to three times and
must come out once, with the holdings of every source. yaz-ztest is a third target; a CNMARC
neighbour county and the project's own SRU and Z39.50 servers serve as targets too.

Expected counts are computed from the input files with pymarc: the records whose title
(245 $a$b$n$p) has the word, grouped into works by ISBN, else title, author and year
(`sru_support.InputRecord.work`); per target hit counts, and yaz-ztest's records, come from
yaz-client.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import re
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from lxml import etree
from pymarc import Field, Record, Subfield

from federation.app import create_app
from federation.federated import FederatedSearch, FederationSettings
from federation.rules import Target, load_network
from federation.search import SearchService
from federation.targets import QueryNotTranslatable, RecordReader, query_to_cql, query_to_rpn
from federation.z3950service import start_z3950_server
from federation_peers import refused_port, start_slow_proxy, start_zebra_sru
from indexer.embedded import EmbeddedStore
from indexer.indexes import load_index_table
from indexer.ingest import IngestOptions, ingest
from indexer.model import MarcFormat
from indexer.policy import HoldingsMapping
from indexer.extract import analyse
from indexer.analysis import exact_key
from indexer.query import And, AndNot, Clause, FacetRequest, MatchAll, Or, Relation, SearchRequest, SortKey
from indexer.readers import read_records
from peers import start_yaz_ztest
from protocols.sru import SearchRetrieveResult, SRUDiagnostic, write_search_retrieve
from protocols.sru.client import SRUClient, SRUClientError, parse_search_retrieve
from protocols.z3950 import pdu as P
from protocols.z3950.client import Z3950Client
from protocols.z3950.pqf import to_pqf
from sru_support import InputRecord

ROOT = Path(__file__).resolve().parent.parent
LOC = ROOT / "fixtures" / "marc21" / "loc-bibliographic-386.mrc"
NETWORK = ROOT / "config" / "networks" / "guangrao.yaml"
SRU_RESPONSES = ROOT / "fixtures" / "sru-responses"
LOCAL_LIBRARY = "GR-FY"           # keeps MARC21 with items in 852 (b library, p barcode, h call number)
CITY_BRANCHES = ("CITY-MAIN", "CITY-EAST")
WORDS = ("economics", "religion", "sonata", "directory")


def on_local_side(n: int) -> bool:
    return n % 3 != 2


def on_city_side(n: int) -> bool:
    return n % 3 != 0


def title_words(record: Record) -> set[str]:
    text = " ".join(" ".join(f.get_subfields("a", "b", "n", "p")) for f in record.get_fields("245"))
    return set(re.findall(r"[a-z]+", text.lower()))


def with_item(record: Record, library: str, barcode: str) -> bytes:
    record.add_field(Field("852", [" ", " "], [Subfield("b", library), Subfield("p", barcode), Subfield("h", "QA76")]))
    try:
        return record.as_marc()
    finally:
        record.remove_fields("852")


@dataclasses.dataclass
class Setup:
    directory: Path
    store_dir: Path
    city_file: Path
    records: list[Record]

    def hits(self, word: str, side) -> list[int]:
        return [n for n, r in enumerate(self.records) if side(n) and word in title_words(r)]

    def expected_works(self, word: str, *, local: bool = True, city: bool = True) -> set[tuple]:
        numbers = set(self.hits(word, on_local_side) if local else []) | set(self.hits(word, on_city_side) if city else [])
        return {InputRecord(LOC, False, self.records[n]).work for n in numbers}


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Setup:
    directory = tmp_path_factory.mktemp("federation")
    records = [r.record for r in read_records(LOC) if r.record is not None]
    for record in records:
        record.force_utf8 = True    # written out as the UTF-8 it was read as (leader/09 'a')
    local_file, city_file = directory / "court.mrc", directory / "city.mrc"
    with open(local_file, "wb") as local, open(city_file, "wb") as city:
        for n, record in enumerate(records):
            if on_local_side(n):
                local.write(with_item(record, LOCAL_LIBRARY, f"GR12{n:06d}"))
            if on_city_side(n):
                city.write(with_item(record, CITY_BRANCHES[n % 2], f"CT{n:06d}"))
    table = load_index_table()
    policy = load_network(NETWORK).to_ingest_policy()
    store_dir = directory / "store"

    async def load() -> None:
        store = EmbeddedStore(store_dir, table)
        await store.open()
        try:
            report = await ingest([local_file], store, table, policy,
                                  IngestOptions(quarantine_path=directory / "quarantine.jsonl", library=LOCAL_LIBRARY))
            assert report.reconciled and report.quarantined == 0
        finally:
            await store.close()

    asyncio.run(load())
    return Setup(directory, store_dir, city_file, records)


@pytest.fixture
async def store(setup):
    opened = EmbeddedStore(setup.store_dir, load_index_table())
    await opened.open()
    yield opened
    await opened.close()


@pytest.fixture
async def zebra(setup, tmp_path):
    async with start_zebra_sru(tmp_path / "zebra", [setup.city_file]) as peer:
        yield peer


def city_targets(zebra, **options) -> list[Target]:
    return [
        Target("DYZ", "东营市图书馆 (Z39.50)", "z3950", zebra.z3950_url, timeout=5, **options),
        Target("DYS", "东营市图书馆 (SRU)", "sru", zebra.sru_url, timeout=5, record_schema="marcxml", **options),
    ]


def federation(store, targets, **settings) -> FederatedSearch:
    network = dataclasses.replace(load_network(NETWORK), targets=targets)
    return FederatedSearch(network, load_index_table(), store, settings=FederationSettings(**settings))


async def yaz_client_hits(url: str, query: str) -> int:
    process = await asyncio.create_subprocess_exec(
        "yaz-client", url, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(f"find {query}\nquit\n".encode()), 20)
    match = re.search(r"Number of hits: (\d+)", output.decode(errors="replace"))
    assert match, output.decode(errors="replace")
    return int(match.group(1))


def title(word: str) -> Clause:
    return Clause("title", Relation.PHRASE, word)


def by_code(outcome) -> dict[str, dict]:
    """Per-source status of a federated outcome, by source code."""
    return {s["code"]: s for s in outcome.extra["targets"]}


# -- the merged answer ------------------------------------------------------------------------


@pytest.mark.parametrize("word", WORDS)
async def test_union_and_city_merge_into_exact_deduplicated_counts(setup, store, zebra, word):
    fed = federation(store, city_targets(zebra))
    try:
        outcome = await fed.search(title(word), limit=1000)
    finally:
        await fed.aclose()
    expected = setup.expected_works(word)
    assert outcome.total == len(expected) == len(outcome.records)
    assert outcome.precision == "exact" and outcome.warnings == []
    statuses = {s["code"]: s for s in outcome.extra["targets"]}
    city_hits = await yaz_client_hits(zebra.z3950_url, f"@attr 1=4 {word}")
    assert city_hits == len(setup.hits(word, on_city_side))
    assert statuses["DYZ"]["state"] == statuses["DYS"]["state"] == "ok"
    assert statuses["DYZ"]["hits"] == statuses["DYS"]["hits"] == city_hits
    assert statuses["DYZ"]["fetched"] == city_hits
    assert statuses["union"]["hits"] == len({InputRecord(LOC, False, setup.records[n]).work
                                             for n in setup.hits(word, on_local_side)})
    assert len({r.id for r in outcome.records}) == len(outcome.records)


async def test_a_work_on_both_sides_shows_every_sources_holdings(setup, store, zebra):
    fed = federation(store, city_targets(zebra))
    try:
        outcome = await fed.search(title("religion"), limit=100)
    finally:
        await fed.aclose()
    by_barcode = {item.barcode: record for record in outcome.records for item in record.items}
    for n in setup.hits("religion", lambda n: True):
        local = by_barcode.get(f"GR12{n:06d}")
        city = by_barcode.get(f"CT{n:06d}")
        assert (local is not None) == on_local_side(n)
        assert (city is not None) == on_city_side(n)
        if local is not None and city is not None:
            assert local is city
            copies = {(i.library, i.barcode, i.source_library) for i in local.items}
            # The city's copy reached us twice (Z39.50 and SRU), from the branch its record names.
            branch = CITY_BRANCHES[n % 2]
            assert {(LOCAL_LIBRARY, f"GR12{n:06d}", LOCAL_LIBRARY), ("DYZ", f"CT{n:06d}", branch),
                    ("DYS", f"CT{n:06d}", branch)} <= copies
            assert {c.library for c in local.contributions} == {LOCAL_LIBRARY, "DYZ", "DYS"}


async def test_relevance_is_one_ranking_over_all_sources(store, zebra):
    fed = federation(store, city_targets(zebra))
    query = Or(title("religion"), Clause("title", Relation.ALL, "religion and society"))
    try:
        outcome = await fed.search(query, limit=200)
        clauses = [title("religion"), Clause("title", Relation.ALL, "religion and society")]
        scores = [fed.relevance(r, clauses) for r in outcome.records]
    finally:
        await fed.aclose()
    assert scores == sorted(scores, reverse=True)
    sources = ["local" if any(c.library == LOCAL_LIBRARY for c in r.contributions) else "city" for r in outcome.records]
    # Both kinds are spread through the ranking rather than one block after the other.
    first_city, last_local = sources.index("city"), len(sources) - 1 - sources[::-1].index("local")
    assert first_city < last_local


async def test_sort_keys_order_the_merged_records(store, zebra):
    fed = federation(store, city_targets(zebra))
    sort = (SortKey("date", ascending=False), SortKey("title"))
    try:
        outcome = await fed.search(title("religion"), sort=sort, limit=100)
        unsorted = await fed.search(title("religion"), limit=100)
    finally:
        await fed.aclose()
    assert outcome.extra["result_set_id"] != unsorted.extra["result_set_id"]
    assert sorted(r.id for r in outcome.records) == sorted(r.id for r in unsorted.records)
    years = [int(r.fields["date"][0]) if r.fields.get("date") else None for r in outcome.records]
    dated = [y for y in years if y is not None]
    assert dated == sorted(dated, reverse=True) and years[:len(dated)] == dated   # undated last
    for first, second in zip(outcome.records, outcome.records[1:]):
        if first.fields.get("date") == second.fields.get("date"):
            assert exact_key(first.fields["title"][0]) <= exact_key(second.fields["title"][0])


async def test_pages_come_from_one_cached_result_set(setup, store, zebra):
    fed = federation(store, city_targets(zebra), result_set_ttl=60)
    try:
        first = await fed.search(title("economics"), offset=0, limit=7)
        pages = [first]
        while sum(len(p.records) for p in pages) < first.total:
            pages.append(await fed.search(title("economics"), offset=7 * len(pages), limit=7))
        ids = [r.id for page in pages for r in page.records]
        assert len(ids) == len(set(ids)) == first.total == len(setup.expected_works("economics"))
        assert {p.extra["result_set_id"] for p in pages} == {first.extra["result_set_id"]}
        assert fed.result_set(first.extra["result_set_id"]) is not None
        fetched = await fed.fetch(ids[:3])
        assert [r.id for r in fetched] == ids[:3]
    finally:
        await fed.aclose()


async def test_result_sets_expire_after_their_ttl(store, zebra):
    now = [1000.0]
    network = dataclasses.replace(load_network(NETWORK), targets=city_targets(zebra))
    fed = FederatedSearch(network, load_index_table(), store, settings=FederationSettings(result_set_ttl=30),
                          clock=lambda: now[0])
    try:
        first = await fed.search(title("sonata"), limit=5)
        now[0] += 20
        assert (await fed.search(title("sonata"), limit=5)).extra["result_set_id"] == first.extra["result_set_id"]
        now[0] += 31
        assert fed.result_set(first.extra["result_set_id"]) is None
        again = await fed.search(title("sonata"), limit=5)
        assert again.extra["result_set_id"] != first.extra["result_set_id"]
        assert again.total == first.total
    finally:
        await fed.aclose()


async def test_the_cache_is_bounded_by_sets_and_records(setup, store, zebra):
    fed = federation(store, city_targets(zebra), max_result_sets=3, max_cached_records=60)
    try:
        ids = {}
        for word in WORDS:
            ids[word] = (await fed.search(title(word), limit=1)).extra["result_set_id"]
        sizes = {word: len(setup.expected_works(word)) for word in WORDS}
        kept = [word for word in WORDS if fed.result_set(ids[word]) is not None]
        # Newest first, while the bounds allow: at most 3 sets, at most 60 records (the newest always).
        expected, total = [], 0
        for word in reversed(WORDS):
            if expected and (len(expected) == 3 or total + sizes[word] > 60):
                break
            expected.append(word)
            total += sizes[word]
        assert sorted(kept) == sorted(expected) and WORDS[-1] in kept
    finally:
        await fed.aclose()


async def test_beyond_the_fetch_limit_the_count_is_an_estimate(setup, store, zebra):
    fed = federation(store, city_targets(zebra, fetch_limit=5))
    try:
        outcome = await fed.search(title("economics"), limit=100)
    finally:
        await fed.aclose()
    statuses = {s["code"]: s for s in outcome.extra["targets"]}
    city_hits = len(setup.hits("economics", on_city_side))
    assert statuses["DYZ"]["hits"] == statuses["DYS"]["hits"] == city_hits
    assert statuses["DYZ"]["fetched"] == statuses["DYS"]["fetched"] == 5
    assert outcome.precision == "estimate"
    exact = len(setup.expected_works("economics"))
    assert len(outcome.records) < exact
    assert len(outcome.records) <= outcome.total <= exact + city_hits


async def test_an_index_one_target_lacks_is_a_diagnostic_for_that_target_only(store, zebra):
    # `place` has Bib-1 use 59 but only the network's own CQL name (net.place): the SRU target cannot take it.
    fed = federation(store, city_targets(zebra))
    try:
        outcome = await fed.search(And(title("religion"), Clause("place", Relation.PHRASE, "london")), limit=50)
    finally:
        await fed.aclose()
    statuses = {s["code"]: s for s in outcome.extra["targets"]}
    assert statuses["DYS"]["state"] == "unsupported" and "place" in statuses["DYS"]["error"]
    assert statuses["DYZ"]["state"] == "ok" and statuses["union"]["state"] == "ok"
    assert outcome.precision == "minimum"
    assert [code for code, _ in outcome.warnings] == [16]
    assert "DYS" in outcome.warnings[0][1] and "place" in outcome.warnings[0][1]


async def test_an_index_the_target_itself_rejects_is_reported_for_that_target(store, zebra):
    # Zebra's stock MARC21 profile has no subject index (Bib-1 114 over Z39.50, the same through SRU).
    fed = federation(store, city_targets(zebra))
    try:
        outcome = await fed.search(Clause("subject", Relation.PHRASE, "religion"), limit=10)
    finally:
        await fed.aclose()
    statuses = by_code(outcome)
    for code in ("DYZ", "DYS"):
        assert statuses[code]["state"] == "unsupported", statuses[code]
    assert "114" in statuses["DYZ"]["error"]
    assert statuses["union"]["state"] == "ok" and outcome.total == statuses["union"]["hits"] > 0
    assert sorted(outcome.warnings) == sorted((16, f"target {c} ({n}): unsupported: {statuses[c]['error']}")
                                              for c, n in (("DYZ", statuses["DYZ"]["name"]), ("DYS", statuses["DYS"]["name"])))


async def yaz_client_records(url: str, query: str, count: int, directory: Path) -> list[Record]:
    """The records yaz-client itself retrieves for a query (the reference origin)."""
    marc_file = directory / "yaz-client.mrc"
    process = await asyncio.create_subprocess_exec(
        "yaz-client", "-m", str(marc_file), url, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.wait_for(process.communicate(f"find {query}\nshow 1+{count}\nquit\n".encode()), 20)
    return [r.record for r in read_records(marc_file) if r.record is not None]


async def test_yaz_ztest_as_a_third_target(setup, store, zebra, tmp_path):
    async with start_yaz_ztest(tmp_path / "ztest") as ztest:
        url = f"{ztest.address}/Default"
        targets = [*city_targets(zebra), Target("ZT", "YAZ test target", "z3950", url, timeout=5)]
        fed = federation(store, targets)
        try:
            outcome = await fed.search(title("religion"), limit=500)
        finally:
            await fed.aclose()
        hits = await yaz_client_hits(url, "@attr 1=4 religion")
        reference = await yaz_client_records(url, "@attr 1=4 religion", hits, tmp_path)
    status = by_code(outcome)["ZT"]
    assert status["state"] == "ok" and status["hits"] == status["fetched"] == hits == len(reference)
    ztest_works = {InputRecord(LOC, False, record).work for record in reference}
    assert outcome.total == len(setup.expected_works("religion") | ztest_works) and outcome.precision == "exact"
    from_ztest = [r for r in outcome.records if {c.library for c in r.contributions} == {"ZT"}]
    assert len(from_ztest) == len(ztest_works)
    assert all([(i.library, i.barcode) for i in r.items] == [("ZT", "")] for r in from_ztest)


# -- the federated database through the servers ------------------------------------------------


async def test_federated_database_over_sru_and_z3950(setup, store, tmp_path):
    """Through the real servers: counts, a failing target named in a non-fatal diagnostic, and pages
    that stay stable after the city's server has gone away (they come from the cached result set)."""
    table = load_index_table()
    expected = len(setup.expected_works("religion"))
    async with contextlib.AsyncExitStack() as cleanup:
        city_server = contextlib.AsyncExitStack()
        cleanup.push_async_callback(city_server.aclose)
        city = await city_server.enter_async_context(start_zebra_sru(tmp_path / "zebra", [setup.city_file]))
        gone = Target("GONE", "关闭的目标", "z3950", f"tcp:127.0.0.1:{refused_port()}/db", retries=0)
        network = dataclasses.replace(load_network(NETWORK), targets=[*city_targets(city), gone])
        service = SearchService(network, table, store)
        fed = FederatedSearch(network, table, store)
        cleanup.push_async_callback(fed.aclose)
        fed.register(service)
        client = TestClient(TestServer(create_app(service)))
        await client.start_server()
        cleanup.push_async_callback(client.close)
        z3950 = await start_z3950_server(service, "127.0.0.1", 0)
        cleanup.push_async_callback(z3950.wait_closed)
        cleanup.callback(z3950.close)
        origin = Z3950Client("127.0.0.1", z3950.port, database="federated")
        await origin.connect()
        cleanup.push_async_callback(origin.close)

        async def sru_page(version: str, start: int):
            response = await client.get("/sru/federated", params={
                "version": version, "operation": "searchRetrieve", "query": "dc.title = religion",
                "startRecord": str(start), "maximumRecords": "10"})
            assert response.status == 200
            return parse_search_retrieve(etree.fromstring(await response.read()))

        first = await sru_page("2.0", 1)
        assert first.number_of_records == expected and len(first.records) == 10
        assert first.result_count_precision.endswith("/minimum")
        assert [d.code for d in first.diagnostics] == [58]
        assert "GONE" in first.diagnostics[0].details and "cannot connect" in first.diagnostics[0].details
        [status] = first.extra_response_data
        assert status.get("resultSetId") == first.result_set_id and status.get("precision") == "minimum"
        sources = {e.get("code"): e for e in status}
        assert list(sources) == ["union", "DYZ", "DYS", "GONE"]
        assert sources["DYZ"].get("state") == "ok" and int(sources["DYZ"].get("hits")) == len(setup.hits(
            "religion", on_city_side))
        assert sources["GONE"].get("state") == "failed" and "cannot connect" in sources["GONE"].text
        # Each source's time is there and plausible: within the deadline and the whole search's time.
        deadline, overall = network.federation.deadline, float(status.get("seconds"))
        assert 0 < overall <= deadline
        for code, source in sources.items():
            assert 0 <= float(source.get("seconds")) <= overall, (code, source.get("seconds"), overall)
        assert first.result_set_ttl == 30      # a source failed: kept briefly
        found = await origin.search("@attr 1=4 religion")
        assert found.count == expected

        await city_server.aclose()      # the city's server goes away; the pages do not change
        ids = [r.identifier for r in first.records]
        for start in range(11, expected + 1, 10):
            page = await sru_page("1.2", start)
            assert page.number_of_records == expected and page.result_set_id == first.result_set_id
            ids.extend(r.identifier for r in page.records)
        assert len(ids) == len(set(ids)) == expected
        marc_ids = []
        for position in range(1, expected + 1, 10):
            page = await origin.present(found.result_set, position, min(10, expected - position + 1),
                                        syntax=P.RecordSyntax.USMARC.value)
            marc_ids.extend(Record(data=entry.record.content)["001"].data for entry in page.records)
        assert marc_ids == ids


async def yaz_client_output(url: str, commands: str) -> str:
    """What yaz-client prints for these commands (UTF-8 negotiated, as a Chinese library's client would)."""
    process = await asyncio.create_subprocess_exec(
        "yaz-client", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(f"charset UTF-8\nopen {url}\n{commands}\nquit\n".encode()), 20)
    return output.decode("utf-8", errors="replace")


@contextlib.asynccontextmanager
async def federated_z3950(store, targets, **settings):
    """The project's Z39.50 server with a `federated` database over these targets."""
    table = load_index_table()
    network = dataclasses.replace(load_network(NETWORK), targets=targets)
    service = SearchService(network, table, store)
    fed = FederatedSearch(network, table, store, settings=FederationSettings(**settings))
    fed.register(service)
    server = await start_z3950_server(service, "127.0.0.1", 0)
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()
        await fed.aclose()


async def test_z3950_search_response_names_each_source_and_a_failed_targets_reason(setup, store, zebra):
    """Over Z39.50 the per-source status is in additionalSearchInfo: a searchResult-1 report that
    yaz-client prints (one entry per source) and a characterInfo text per failed source; the
    count's precision is resultSetStatus."""
    closed = refused_port()
    gone = Target("GONE", "关闭的目标", "z3950", f"tcp:127.0.0.1:{closed}/db", retries=0)
    city = len(setup.hits("religion", on_city_side))
    async with federated_z3950(store, [city_targets(zebra)[0], gone]) as server:
        url = f"tcp:127.0.0.1:{server.port}/federated"
        printed = await yaz_client_output(url, "find @attr 1=4 religion")
        async with Z3950Client("127.0.0.1", server.port, database="federated") as origin:
            found = await origin.search("@attr 1=4 religion")

    # yaz-client: "SearchResult-1: term=ok interpretation=... cnt=N id=union , term=ok ... id=DYZ , term=failed ..."
    assert f"Number of hits: {len(setup.expected_works('religion'))}" in printed, printed
    assert "Result Set Status: subset" in printed, printed
    [line] = [line for line in printed.splitlines() if line.startswith("SearchResult-1:")]
    entries = [entry.strip() for entry in line.removeprefix("SearchResult-1:").split(" , ")]
    assert [entry.rsplit(" id=", 1)[1] for entry in entries] == ["union", "DYZ", "GONE"], line
    assert entries[1].startswith("term=ok interpretation=") and f"cnt={city} " in entries[1] + " "
    assert entries[2].startswith(f"term=failed interpretation=cannot connect to 127.0.0.1:{closed}"), line
    assert " cnt=" not in entries[2]                # it never said how many it had

    # The project's client decodes the same report, and the characterInfo text naming the target.
    response = found.response
    assert found.count == len(setup.expected_works("religion"))
    assert response.result_set_status == P.ResultSetStatus.SUBSET
    reports = {r.subquery_id: r for r in response.search_info}
    assert list(reports) == ["union", "DYZ", "GONE"] and not any(r.full_query for r in reports.values())
    assert reports["DYZ"].expression == P.QueryTerm("ok", "东营市图书馆 (Z39.50)") and reports["DYZ"].count == city
    assert reports["DYZ"].interpretation is not None
    assert reports["DYZ"].interpretation.term.startswith(f"{city} of {city} fetched; ")
    assert reports["GONE"].expression == P.QueryTerm("failed", "关闭的目标") and reports["GONE"].count is None
    assert "cannot connect" in reports["GONE"].interpretation.term
    [text] = response.search_info_texts
    assert text.startswith("target GONE (关闭的目标): failed: cannot connect to 127.0.0.1:")


async def test_z3950_says_when_the_count_is_an_estimate(setup, store, zebra):
    async with federated_z3950(store, [city_targets(zebra, fetch_limit=5)[0]]) as server:
        printed = await yaz_client_output(f"tcp:127.0.0.1:{server.port}/federated", "find @attr 1=4 economics")
        async with Z3950Client("127.0.0.1", server.port, database="federated") as origin:
            found = await origin.search("@attr 1=4 economics")
            union = await origin.search("@attr 1=4 economics", databases=["union"])
    assert "Result Set Status: estimate" in printed, printed
    assert found.response.result_set_status == P.ResultSetStatus.ESTIMATE
    assert found.response.search_info_texts == []          # every source answered
    dyz = {r.subquery_id: r for r in found.response.search_info}["DYZ"]
    city = len(setup.hits("economics", on_city_side))
    assert dyz.count == city and dyz.interpretation.term.startswith(f"5 of {city} fetched; ")
    # A database without sources to report sends nothing of the kind.
    assert union.response.result_set_status is None and union.response.search_info == []


# -- translation and records (no network) -----------------------------------------------------


def test_query_translation_to_cql_and_bib1():
    table = load_index_table()
    sru = Target("S", "s", "sru", "http://127.0.0.1:1/db", index_map={"subject": "local.topic"})
    z = Target("Z", "z", "z3950", "tcp:127.0.0.1:1/db", bib1_map={"title": 1})
    query = AndNot(Or(Clause("title", Relation.ALL, "河 流"), Clause("subject", Relation.PHRASE, 'a "q" b*')),
                   Clause("date", Relation.WITHIN, "1990", "1999"))
    assert query_to_cql(query, table, sru) == \
        '((dc.title all "河 流" or local.topic = "a \\"q\\" b*") not dc.date within "1990 1999")'
    assert to_pqf(query_to_rpn(query, table, z)) == (
        '@not @or @and @attr 1=1 @attr 2=3 @attr 4=2 @attr 5=100 河 @attr 1=1 @attr 2=3 @attr 4=2 @attr 5=100 流 '
        '@attr 1=21 @attr 2=3 @attr 4=1 @attr 5=1 "a \\"q\\" b" '
        '@and @attr 1=31 @attr 2=4 @attr 5=100 1990 @attr 1=31 @attr 2=2 @attr 5=100 1999')


@pytest.mark.parametrize("query, reason", [
    (Clause("id", Relation.EXACT, "uabc"), "this network's own identifiers"),
    (Clause("library", Relation.EXACT, "GR"), "holdings index 'library'"),
    (Clause("place", Relation.PHRASE, "london"), "no CQL name"),
])
def test_what_a_target_cannot_be_asked(query, reason):
    table = load_index_table()
    sru = Target("S", "s", "sru", "http://127.0.0.1:1/db")
    with pytest.raises(QueryNotTranslatable, match=reason):
        query_to_cql(And(title("x"), query), table, sru)
    assert query_to_cql(MatchAll(), table, sru) == "cql.allRecords = 1"
    assert query_to_cql(Clause("library", Relation.EXACT, "GR"), table,
                        Target("S", "s", "sru", "http://127.0.0.1:1/db", index_map={"library": "bath.possessingInstitution"})) \
        == "bath.possessingInstitution == GR"


async def test_match_all_fetches_up_to_the_limit_and_estimates(setup, store, zebra):
    fed = federation(store, city_targets(zebra, fetch_limit=20), local_fetch_limit=30)
    try:
        outcome = await fed.search(MatchAll(), limit=10)
    finally:
        await fed.aclose()
    statuses = by_code(outcome)
    city = sum(1 for n in range(len(setup.records)) if on_city_side(n))
    assert statuses["DYZ"]["hits"] == statuses["DYS"]["hits"] == city
    assert statuses["DYZ"]["fetched"] == 20 and statuses["union"]["fetched"] == 30
    assert outcome.precision == "estimate"
    assert len(outcome.records) == 10 and outcome.total > 30


def test_remote_items_keep_mapped_and_unmapped_library_codes():
    table = load_index_table()
    network = load_network(NETWORK)
    target = Target("DYZ", "city", "z3950", "tcp:127.0.0.1:1/db", library_map={"CITY-DW": "GR-DW"})
    reader = RecordReader(target, table, network.to_ingest_policy())
    record = next(r.record for r in read_records(LOC) if r.record is not None)
    for library, barcode in (("CITY-DW", "CT1"), ("CITY-MAIN", "CT2")):
        record.add_field(Field("852", [" ", " "], [Subfield("b", library), Subfield("p", barcode)]))
    remote = reader.from_iso2709(1, record.as_marc())
    assert remote.error == ""
    items = {i.barcode: i for i in remote.incoming.contribution.items}
    assert (items["CT1"].library, items["CT1"].tier, items["CT1"].source_library) == ("GR-DW", "branch", "CITY-DW")
    assert (items["CT2"].library, items["CT2"].source_library) == ("DYZ", "CITY-MAIN")
    bare = reader.from_iso2709(2, next(r.record for r in read_records(LOC) if r.record is not None).as_marc())
    assert [(i.library, i.barcode) for i in bare.incoming.contribution.items] == [("DYZ", "")]
    broken = reader.from_iso2709(3, b"this is not a MARC record\x1e\x1d")
    assert broken.incoming is None and broken.error.startswith("record 3:")
    assert remote.incoming.contribution.format is MarcFormat.MARC21


def test_recorded_sru_responses_parse():
    single = parse_search_retrieve(etree.parse(str(SRU_RESPONSES / "response_single_sru11.xml")).getroot())
    assert single.version == "1.1" and single.number_of_records == 8985 and len(single.records) == 1
    assert single.records[0].data is not None
    many = parse_search_retrieve(etree.parse(str(SRU_RESPONSES / "test_searchretrieve_warning.xml")).getroot())
    assert many.number_of_records == 10 and len(many.records) == 10 and not many.fatal
    for version in ("1.2", "2.0"):
        failed = parse_search_retrieve(etree.fromstring(write_search_retrieve(
            version, SearchRetrieveResult(0, diagnostics=[SRUDiagnostic(16, "net.place")]), None)))
        assert failed.fatal and [d.code for d in failed.diagnostics] == [16]
        assert failed.diagnostics[0].details == "net.place"


# -- concurrency --------------------------------------------------------------------------------


async def test_identical_concurrent_searches_share_one_fan_out(setup, store, zebra):
    async with start_slow_proxy(zebra.host, zebra.port, 0.1) as slow:
        fed = federation(store, [Target("SLOW", "city via a slow link", "z3950", f"tcp:{slow.address}/Default")])
        try:
            outcomes = await asyncio.gather(*(fed.search(title("sonata"), offset=n, limit=1) for n in range(4)))
        finally:
            await fed.aclose()
        assert slow.connections == 1
    assert len({o.extra["result_set_id"] for o in outcomes}) == 1
    assert len({o.records[0].id for o in outcomes}) == 4


@pytest.mark.parametrize("limit", [1, 2])
async def test_requests_per_target_are_limited(store, zebra, limit):
    async with start_slow_proxy(zebra.host, zebra.port, 0.1) as slow:
        target = Target("SLOW", "city via a slow link", "z3950", f"tcp:{slow.address}/Default", max_concurrent=limit)
        fed = federation(store, [target])
        try:
            outcomes = await asyncio.gather(*(fed.search(title(word), limit=1) for word in WORDS))
        finally:
            await fed.aclose()
        assert slow.connections == len(WORDS)
        assert slow.most_active == limit
    assert all(o.extra["targets"][1]["state"] == "ok" for o in outcomes)


# -- the SRU client against two servers ------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.1", "1.2", "2.0"])
async def test_sru_client_against_the_projects_own_server(store, version):
    table = load_index_table()
    service = SearchService(load_network(NETWORK), table, store)
    expected = await store.search(SearchRequest(title("economics"), limit=100))
    server = TestServer(create_app(service))
    await server.start_server()
    try:
        url = str(server.make_url("/sru/union"))
        async with SRUClient(url, version=version) as client:
            ids: list[str] = []
            start = 1
            while True:
                page = await client.search_retrieve("dc.title = economics", start_record=start, maximum_records=7,
                                                    record_packing="string" if start > 1 else "xml")
                assert page.version == version and page.number_of_records == expected.total
                assert all(r.data is not None and etree.QName(r.data).localname == "record" for r in page.records)
                ids.extend(r.identifier for r in page.records)
                if page.next_record_position is None:
                    break
                start = page.next_record_position
            assert ids == expected.ids
            failed = await client.search_retrieve("dc.title = ")
            assert failed.fatal and failed.diagnostics[0].code == 10
            scan = await client.scan("dc.title = economics", maximum_terms=3)
            assert scan.terms and scan.terms[0].value.startswith("economics")
            assert etree.QName(await client.explain()).localname == "explainResponse"
    finally:
        await server.close()


async def test_sru_client_against_zebra(setup, zebra):
    async with SRUClient(zebra.sru_url, version="1.2") as client:
        answer = await client.search_retrieve("dc.title = religion", maximum_records=3, record_schema="marcxml")
        assert answer.number_of_records == len(setup.hits("religion", on_city_side))
        assert [r.position for r in answer.records] == [1, 2, 3]
        scan = await client.scan("dc.title = religion", maximum_terms=5)
        assert any(term.value == "religion" and term.number_of_records for term in scan.terms)
    async with SRUClient(f"http://{zebra.host}:{zebra.port}/nosuchdb", timeout=0.5) as client:
        with pytest.raises(SRUClientError):
            await client.search_retrieve("dc.title = religion")


# -- record decoding per target encoding -------------------------------------------------------------


def gb18030_iso2709(record: Record) -> bytes:
    """A record as a GB18030 ISO 2709 export writes it (what Chinese library systems send)."""
    directory, data = b"", b""
    for field in record.get_fields():
        if field.is_control_field():
            body = field.data.encode("gb18030") + b"\x1e"
        else:
            body = "".join(field.indicators).encode("gb18030") + b"".join(
                b"\x1f" + sub.code.encode("ascii") + sub.value.encode("gb18030") for sub in field.subfields) + b"\x1e"
        directory += field.tag.encode("ascii") + b"%04d%05d" % (len(body), len(data))
        data += body
    directory += b"\x1e"
    leader = str(record.leader)
    base = 24 + len(directory)
    total = base + len(data) + 1
    return f"{total:05d}{leader[5:9]} 22{base:05d}{leader[17:20]}4500".encode("ascii") + directory + data + b"\x1d"


@pytest.mark.parametrize("source, encoding, fmt", [
    ("marc21/one-marc8.mrc", "marc8", "marc21"),
    ("cnmarc/dp2_sru_sample_cnmarcxml.iso", "utf-8", "cnmarc"),
    ("cnmarc/dp2_sru_sample_cnmarcxml.iso", "gb18030", "cnmarc"),
])
def test_remote_records_are_read_like_ingested_ones(source, encoding, fmt):
    table = load_index_table()
    reader = RecordReader(Target("DYZ", "city", "z3950", "tcp:127.0.0.1:1/db", format=fmt, encoding=encoding),
                          table, load_network(NETWORK).to_ingest_policy())
    for result in read_records(ROOT / "fixtures" / source):
        data = gb18030_iso2709(result.record) if encoding == "gb18030" else result.raw
        remote = reader.from_iso2709(result.position, data)
        assert remote.error == "", remote.error
        ingested = analyse(result.record, result.format, table)
        assert remote.incoming.analysis == ingested
        assert remote.incoming.contribution.marc["fields"] == result.record.as_dict()["fields"]
        assert remote.incoming.contribution.format.value == fmt


# -- facets, result-set lifetime after failures, credentials ---------------------------------------


async def test_facets_count_merged_works(setup, store, zebra):
    fed = federation(store, city_targets(zebra))
    try:
        outcome = await fed.search(title("religion"), limit=0, facets=[FacetRequest("library", limit=10)])
    finally:
        await fed.aclose()
    counts = {v.value: v.count for v in outcome.facets[0].values}
    assert counts[LOCAL_LIBRARY] == len(setup.expected_works("religion", city=False))
    assert counts["DYZ"] == counts["DYS"] == len(setup.expected_works("religion", local=False))
    assert outcome.records == [] and outcome.total == len(setup.expected_works("religion"))


async def test_a_result_set_with_a_failed_target_is_kept_briefly(store, zebra):
    now = [0.0]
    network = dataclasses.replace(load_network(NETWORK), targets=[
        *city_targets(zebra), Target("GONE", "refuses", "z3950", f"tcp:127.0.0.1:{refused_port()}/db", retries=0)])
    fed = FederatedSearch(network, load_index_table(), store, clock=lambda: now[0],
                          settings=FederationSettings(result_set_ttl=300, incomplete_result_set_ttl=20))
    try:
        first = await fed.search(title("sonata"), limit=5)
        assert first.extra["result_set_ttl"] == 20
        now[0] += 15
        assert (await fed.search(title("sonata"), offset=5, limit=5)).extra["result_set_id"] == first.extra["result_set_id"]
        now[0] += 21
        assert (await fed.search(title("sonata"), limit=5)).extra["result_set_id"] != first.extra["result_set_id"]
    finally:
        await fed.aclose()


@pytest.mark.parametrize("token, state", [("example-token-GR", "ok"), ("not-the-token", "failed")])
async def test_credentials_reach_a_z3950_target(setup, store, token, state):
    """The project's own Z39.50 server, requiring authentication, as a target: the union records come
    back as USMARC with 852 holdings and merge into themselves."""
    table = load_index_table()
    network = load_network(NETWORK)
    server = await start_z3950_server(SearchService(network, table, store), "127.0.0.1", 0,
                                      require_authentication=True)
    try:
        target = Target("GRZ", "our own Z39.50", "z3950", f"tcp:127.0.0.1:{server.port}/union", username="GR",
                        password_env="FED_TEST_TOKEN", library_map={LOCAL_LIBRARY: LOCAL_LIBRARY})
        fed = FederatedSearch(dataclasses.replace(network, targets=[target]), table, store,
                              environ={"FED_TEST_TOKEN": token})
        try:
            outcome = await fed.search(title("religion"), limit=100)
        finally:
            await fed.aclose()
    finally:
        server.close()
        await server.wait_closed()
    status = by_code(outcome)["GRZ"]
    local_works = len(setup.expected_works("religion", city=False))
    assert status["state"] == state
    assert outcome.total == local_works
    if state == "ok":
        assert status["hits"] == status["fetched"] == local_works
        for record in outcome.records:
            assert {c.library for c in record.contributions} == {LOCAL_LIBRARY, "GRZ"}
            # The same copies seen through the gateway are shown once.
            local_copies = [i.barcode for c in record.contributions if c.library == LOCAL_LIBRARY for i in c.items]
            assert sorted(i.barcode for i in record.items) == sorted(local_copies)
            assert {i.library for i in record.items} == {LOCAL_LIBRARY}
    else:
        assert "rejected" in status["error"] and outcome.precision == "minimum"



# -- a target's own holdings layout -----------------------------------------------------------------


KOHA_LAYOUT = HoldingsMapping(tag="952", library="a", barcode="p", call_number="o", location="c", due_date="q")


def koha_items(n: int) -> list[Field]:
    """Koha-style 952 items of record n: one at a branch the network maps to its own Dawang
    branch, one at the city's main library (unmapped), the second on loan."""
    return [
        Field("952", [" ", " "], [Subfield("a", "CITY-DW"), Subfield("p", f"KH{n:06d}"), Subfield("o", f"BL{n}.A1"),
                                  Subfield("c", "STACKS")]),
        Field("952", [" ", " "], [Subfield("a", "CITY-MAIN"), Subfield("p", f"KM{n:06d}"), Subfield("o", f"BL{n}.A2"),
                                  Subfield("c", "CHILDREN"), Subfield("q", "2031-05-01")]),
    ]


@pytest.mark.parametrize("protocol", ["z3950", "sru"])
async def test_a_targets_own_holdings_mapping_reads_its_items(setup, store, tmp_path, protocol):
    """zebrasrv serving records whose items are in Koha's 952 (not MARC21's usual 852): the target
    configured with that layout gives items with the mapped barcode, call number, location and
    library; the same records through a target left on the default layout show only that it holds them."""
    religion = setup.hits("religion", lambda n: True)
    koha_file = tmp_path / "koha.mrc"
    with open(koha_file, "wb") as out:
        for n in religion:
            record = setup.records[n]
            for field in koha_items(n):
                record.add_field(field)
            try:
                out.write(record.as_marc())
            finally:
                record.remove_fields("952")
    async with start_zebra_sru(tmp_path / "koha", [koha_file]) as koha:
        url = koha.z3950_url if protocol == "z3950" else koha.sru_url
        extra = {"record_schema": "marcxml"} if protocol == "sru" else {}
        mapped = Target("KOHA", "县外 Koha 馆", protocol, url, holdings=KOHA_LAYOUT,
                        library_map={"CITY-DW": "GR-DW"}, **extra)
        plain = Target("PLAIN", "same, default layout", protocol, url, **extra)
        fed = federation(store, [mapped, plain])
        try:
            outcome = await fed.search(title("religion"), limit=500)
        finally:
            await fed.aclose()
    statuses = by_code(outcome)
    assert statuses["KOHA"]["state"] == statuses["PLAIN"]["state"] == "ok"
    assert statuses["KOHA"]["hits"] == statuses["KOHA"]["fetched"] == len(religion)
    seen = set()
    for record in outcome.records:
        # 852 is the MARC21 default: through PLAIN the records only show that it holds the work
        # (one line per work, even when two of its records merged into one).
        plain = [(i.library, i.barcode) for c in record.contributions if c.library == "PLAIN" for i in c.items]
        assert plain == [("PLAIN", "")]
        for contribution in record.contributions:
            if contribution.library != "KOHA":
                continue
            n = int(next(i.barcode for i in contribution.items if i.barcode.startswith("KH"))[2:])
            seen.add(n)
            items = {i.barcode: i for i in contribution.items}
            assert set(items) == {f"KH{n:06d}", f"KM{n:06d}"}
            dawang, main = items[f"KH{n:06d}"], items[f"KM{n:06d}"]
            assert (dawang.library, dawang.tier, dawang.source_library) == ("GR-DW", "branch", "CITY-DW")
            assert (dawang.call_number, dawang.location, dawang.due_date) == (f"BL{n}.A1", "STACKS", "")
            assert (main.library, main.source_library) == ("KOHA", "CITY-MAIN")
            assert (main.call_number, main.location, main.due_date) == (f"BL{n}.A2", "CHILDREN", "2031-05-01")
            # The mapped copies are the record's items, next to the union catalogue's own.
            assert {f"KH{n:06d}", f"KM{n:06d}"} <= {i.barcode for i in record.items}
    assert seen == set(religion)


# -- a CNMARC neighbour over SRU, behind HTTP basic authentication ------------------------------------


CNMARC_FIXTURE = ROOT / "fixtures" / "cnmarc" / "dp2_sru_sample_cnmarcxml.iso"


def basic_auth(user: str, password: str):
    """An extension for the project's SRU app: every request must carry these credentials."""
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    @web.middleware
    async def check(request: web.Request, handler):
        if request.headers.get("Authorization") != expected:
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Basic realm="sru"'})
        return await handler(request)

    return lambda app: app.middlewares.append(check)


@pytest.fixture
async def neighbour(tmp_path):
    """Another county's catalogue (the dp2 CNMARC sample) behind the project's own SRU server."""
    table = load_index_table()
    network = load_network(NETWORK)
    neighbour_store = EmbeddedStore(tmp_path / "neighbour", table)
    await neighbour_store.open()
    report = await ingest([CNMARC_FIXTURE], neighbour_store, table, network.to_ingest_policy(),
                          IngestOptions(quarantine_path=tmp_path / "quarantine.jsonl", library="GR"))
    assert report.quarantined == 0
    server = TestServer(create_app(SearchService(network, table, neighbour_store),
                                   extensions=[basic_auth("guangrao", "s3cret")]))
    await server.start_server()
    try:
        yield str(server.make_url("/sru/union"))
    finally:
        await server.close()
        await neighbour_store.close()


@pytest.mark.parametrize("password, state", [("s3cret", "ok"), ("wrong", "failed")])
async def test_a_cnmarc_neighbour_over_sru_with_credentials(store, neighbour, password, state):
    target = Target("NBR", "邻县图书馆", "sru", neighbour, format="cnmarc", sru_version="2.0",
                    username="guangrao", password_env="NBR_PASSWORD")
    network = dataclasses.replace(load_network(NETWORK), targets=[target])
    fed = FederatedSearch(network, load_index_table(), store, environ={"NBR_PASSWORD": password})
    try:
        outcome = await fed.search(Clause("title", Relation.PHRASE, "中国发展报告"), limit=50)
    finally:
        await fed.aclose()
    status = by_code(outcome)["NBR"]
    assert status["state"] == state, status
    if state == "failed":
        assert "401" in status["error"] and outcome.total == 0
        return
    inputs = [InputRecord(CNMARC_FIXTURE, True, r.record) for r in read_records(CNMARC_FIXTURE)]
    works = {i.work for i in inputs if "中国发展报告" in i.title}
    assert outcome.total == status["hits"] == len(works) and outcome.precision == "exact"
    for record in outcome.records:
        assert record.master_contribution.format is MarcFormat.CNMARC
        assert "中国发展报告" in record.fields["title"][0]
        assert [(i.library, i.barcode) for i in record.items] == [("NBR", "")]


async def test_records_a_target_sends_in_a_form_we_cannot_read_are_reported(store):
    """A target configured with a record schema that carries no MARC (Dublin Core)."""
    table = load_index_table()
    server = TestServer(create_app(SearchService(load_network(NETWORK), table, store)))
    await server.start_server()
    try:
        target = Target("DC", "只有都柏林核心", "sru", str(server.make_url("/sru/union")), record_schema="dc")
        fed = federation(store, [target])
        try:
            outcome = await fed.search(title("sonata"), limit=100)
        finally:
            await fed.aclose()
    finally:
        await server.close()
    status = by_code(outcome)["DC"]
    assert status["state"] == "ok" and status["hits"] == status["fetched"] == status["unreadable"] > 0
    assert "no MARC record" in status["first_unreadable"]
    assert outcome.precision == "minimum" and outcome.total == by_code(outcome)["union"]["hits"]
    [(code, text)] = outcome.warnings
    assert code == 58 and text.startswith(f"target DC (只有都柏林核心): {status['unreadable']} of {status['fetched']} records")


@pytest.mark.parametrize("syntax", ["usmarc", "xml"])
async def test_z3950_record_syntaxes(setup, store, syntax):
    """The project's own Z39.50 server as a target, asked for ISO 2709 or for MARCXML."""
    table = load_index_table()
    network = load_network(NETWORK)
    server = await start_z3950_server(SearchService(network, table, store), "127.0.0.1", 0)
    try:
        target = Target("GRZ", "our own Z39.50", "z3950", f"tcp:127.0.0.1:{server.port}/union", record_syntax=syntax)
        fed = federation(store, [target])
        try:
            outcome = await fed.search(title("economics"), limit=100)
        finally:
            await fed.aclose()
    finally:
        server.close()
        await server.wait_closed()
    status = by_code(outcome)["GRZ"]
    local_works = len(setup.expected_works("economics", city=False))
    assert status["state"] == "ok" and status["hits"] == status["fetched"] == local_works
    assert status["unreadable"] == 0 and outcome.total == local_works and outcome.precision == "exact"
    assert all({c.library for c in r.contributions} == {LOCAL_LIBRARY, "GRZ"} for r in outcome.records)

"""What only the Elasticsearch / OpenSearch store does: its generated mapping, the analysis it
relies on, bulk errors, alias-swap rebuilds, live item updates, cursors past the result window and
the OpenSearch flavor. Query semantics shared with the embedded store are proven by
tests/test_store_conformance.py.

Runs on the osmem-server stand-in, or unchanged on a real cluster when ELASTICSEARCH_URL is set
(see docs/elasticsearch.md).
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from elasticsearch import UnsupportedProductError

from es_support import es_endpoint, es_store, shared_endpoint  # noqa: F401  (es_endpoint: used by pytestmark)
from indexer.analysis import normalize_isbn
from indexer.elastic import ElasticsearchStore, connect
from indexer.elastic_mapping import MAX_RESULT_WINDOW
from indexer.elastic_query import QueryCompiler
from indexer.indexes import DEFAULT_INDEX_TABLE, IndexLevel, IndexTable, IndexType, load_index_table
from indexer.model import Availability, Contribution, Item, ItemStatusUpdate, MarcFormat, UnionRecord
from indexer.query import (
    And,
    AndNot,
    Clause,
    FacetRequest,
    ItemMatch,
    MatchAll,
    Or,
    Relation,
    SearchRequest,
    SortKey,
)
from indexer.store import QueryNotSupported, StoreError

# es_endpoint stops the stand-in (or cleans the real cluster) when the session ends.
pytestmark = [pytest.mark.elasticsearch, pytest.mark.usefixtures("es_endpoint")]

TABLE = load_index_table()
REPO = Path(__file__).resolve().parent.parent
FEDERATION = REPO / ".venv" / "bin" / "federation"
GUANGRAO = REPO / "config" / "networks" / "guangrao.yaml"


def book(
    number: int,
    title: str,
    *,
    creator: str = "",
    isbn: str = "",
    year: str = "",
    items: tuple[tuple[str, str, str, Availability], ...] = (),
    **other_fields: list[str],
) -> UnionRecord:
    """A union record as ingestion stores it: extracted fields plus items (barcode, library, tier, status)."""
    fields: dict[str, list[str]] = {"title": [title], **other_fields}
    if creator:
        fields["creator"] = [creator]
    if isbn:
        fields["isbn"] = [normalize_isbn(isbn) or isbn]
    if year:
        fields["date"] = [year]
    source_id = f"{number:06d}"
    contribution = Contribution(
        library="GR", source_id=source_id, format=MarcFormat.CNMARC,
        marc={"leader": "     nam0 22        4500", "fields": [{"001": source_id}]},
        items=[Item(barcode=b, library=lib, tier=tier, availability=a, call_number=f"G250/{number}")
               for b, lib, tier, a in items],
    )
    return UnionRecord(id=f"u{number:06d}", contributions=[contribution], master=("GR", source_id),
                       fields=fields, match_keys=[f"isbn:{fields['isbn'][0]}"] if isbn else [])


def hub_item(barcode: str, availability: Availability = Availability.AVAILABLE) -> tuple[str, str, str, Availability]:
    return (barcode, "GR", "hub", availability)


async def hits(store: ElasticsearchStore, query, **request) -> list[str]:
    """The ids of every hit, sorted (relevance order is not what these tests are about)."""
    result = await store.search(SearchRequest(query, limit=100, **request))
    assert result.total == len(result.ids)
    return sorted(result.ids)


def phrase(index: str, term: str) -> Clause:
    return Clause(index, Relation.PHRASE, term)


# -- the mapping ---------------------------------------------------------------------------------

async def test_mapping_is_generated_from_the_index_table() -> None:
    async with es_store(TABLE) as store:
        (name, body), = (await store.client.indices.get_mapping(index=store.alias)).body.items()
        assert name.startswith(store.alias + "-")  # a concrete index behind the alias
        mappings = body["mappings"]
        assert mappings["dynamic"] == "strict"
        assert mappings["_meta"]["fingerprint"] == store.mapping["_meta"]["fingerprint"]
        props = mappings["properties"]
        items = props["items"]
        assert items["type"] == "nested"
        checked = 0
        for definition in TABLE:
            where = items["properties"] if definition.level is IndexLevel.ITEM else props
            groups = {group: where.get(group, {}).get("properties", {}) for group in ("tok", "phr", "key", "num")}
            if definition.type in (IndexType.NUMBER, IndexType.DATE):
                assert groups["num"][definition.name]["type"] == "long"
                assert definition.name not in groups["key"]
            else:
                assert groups["key"][definition.name]["type"] == "keyword"
            if definition.type is IndexType.TEXT:
                assert groups["tok"][definition.name]["type"] == "text"
                assert groups["tok"][definition.name]["analyzer"] == "pretokenized"
                assert groups["phr"][definition.name]["type"] == "keyword"
            else:
                assert definition.name not in groups["tok"]
            if definition.facet:
                assert props["facet"]["properties"][definition.name]["type"] == "keyword"
            if definition.sortable:
                assert props["sort"]["properties"][definition.name]["type"] in ("keyword", "long")
            checked += 1
        assert checked == len(TABLE.indexes) > 20
        assert props["sort"]["properties"]["date"]["type"] == "long"  # years sort as numbers
        settings = (await store.client.indices.get_settings(index=name)).body[name]["settings"]["index"]
        assert int(settings["max_result_window"]) == MAX_RESULT_WINDOW
        assert set(settings["analysis"]["analyzer"]) == {"pretokenized", "cjk_text"}


async def test_cjk_text_analyzer_makes_bigrams_and_folds_width_and_case() -> None:
    async with es_store(TABLE) as store:
        async def tokens(text: str) -> list[str]:
            response = await store.client.indices.analyze(index=store.alias, analyzer="cjk_text", text=text)
            return [t["token"] for t in response.body["tokens"]]

        assert await tokens("图书馆学基础") == ["图书", "书馆", "馆学", "学基", "基础"]
        assert await tokens("Ｐｙｔｈｏｎ程序") == ["python", "程序"]


async def test_an_index_built_for_another_table_is_flagged_and_a_rebuild_brings_it_current() -> None:
    data = yaml.safe_load(DEFAULT_INDEX_TABLE.read_text(encoding="utf-8"))
    for entry in data["indexes"]:
        if entry["name"] == "publisher":
            entry["facet"] = True
    changed = IndexTable.from_data(data)
    endpoint = shared_endpoint()
    async with es_store(TABLE) as old:
        await old.upsert([book(1, "县域经济研究", publisher=["清华大学出版社"]), book(2, "乡村振兴实务")])
        store = ElasticsearchStore(endpoint.url, changed, index_prefix=old.alias, flavor=endpoint.flavor)
        try:
            await store.open()
            assert store.mapping_current is False
            # The live index refuses the field it does not know, record by record.
            result = await store.upsert([book(3, "家庭农场指南", publisher=["中国农业出版社"]), book(4, "果树栽培技术")])
            assert result.succeeded == 1
            [(failed_id, reason)] = result.failed
            assert failed_id == "u000003" and "strict" in reason and "publisher" in reason
            rebuilt = await store.rebuild()
            assert rebuilt.succeeded == 3 and not rebuilt.failed
            assert store.mapping_current is True
            await store.upsert([book(3, "家庭农场指南", publisher=["中国农业出版社"])])
            await store.refresh()
            result = await store.search(SearchRequest(MatchAll(), facets=(FacetRequest("publisher"),)))
            assert result.total == 4
            assert {(v.value, v.count) for v in result.facets[0].values} == {("清华大学出版社", 1), ("中国农业出版社", 1)}
        finally:
            await store.close()


async def test_a_concrete_index_where_the_alias_should_be_is_refused() -> None:
    endpoint = shared_endpoint()
    name = f"{endpoint.prefix}-concrete"
    client = connect(endpoint.url, endpoint.flavor)
    try:
        await client.indices.create(index=name)
        store = ElasticsearchStore(endpoint.url, TABLE, index_prefix=name, flavor=endpoint.flavor)
        with pytest.raises(StoreError, match="is a concrete index, not an alias"):
            await store.open()
        await store.close()
    finally:
        await client.indices.delete(index=name)
        await client.close()


# -- query nesting --------------------------------------------------------------------------------

# Elasticsearch 8 refuses a query nested deeper than indices.query.bool.max_nested_depth (default
# 30, counting every query object on the way down); the stand-in does not check it.
ES_MAX_NESTED_DEPTH = 30
_COMPOUND_CHILDREN = {"bool": ("must", "should", "filter", "must_not"), "nested": ("query",)}
_LEAVES = {"term", "wildcard", "regexp", "range", "match_phrase", "exists", "match_all", "match_none"}


def nesting_depth(query: dict) -> int:
    """How deep Elasticsearch's parser counts a query: 1 per query object on the longest path."""
    (name, body), = query.items()
    if name in _LEAVES:
        return 1
    assert name in _COMPOUND_CHILDREN, f"a query type this count does not know: {name}"
    children = []
    for key in _COMPOUND_CHILDREN[name]:
        value = body.get(key, [])
        children += value if isinstance(value, list) else [value]
    return 1 + max((nesting_depth(child) for child in children), default=0)


def _left_deep(operators: list, operands: list) -> object:
    query = operands[0]
    for operator, operand in zip(operators, operands[1:]):
        query = operator(query, operand)
    return query


def _right_deep(operators: list, operands: list) -> object:
    query = operands[-1]
    for operator, operand in zip(operators, reversed(operands[:-1])):
        query = operator(operand, query)
    return query


WORDS = [phrase("title", f"word{n}") for n in range(150)]
LIBRARIES = [Clause("library", Relation.EXACT, f"LIB{n}") for n in range(150)]
# (name, query, item scope): chains of 150 operands as CQL (left-associative) and RPN may nest them.
# Only left-deep chains of `not`: `a not (b not c)` alternates and / not, it is no chain.
CHAINS = [
    (f"{shape.__name__.strip('_').replace('_', '-')} {name}", query, scope)
    for shape in (_left_deep, _right_deep)
    for name, query, scope in [
        ("or", shape([Or] * 149, WORDS), None),
        ("and", shape([And] * 149, WORDS), None),
        ("or of item clauses", shape([Or] * 149, LIBRARIES), None),
        ("or inside one item", ItemMatch(shape([Or] * 149, LIBRARIES)), None),
        ("and inside one item", ItemMatch(shape([And] * 149, LIBRARIES)), None),
        ("item scope", phrase("title", "x"), shape([Or] * 149, LIBRARIES)),
    ]
] + [
    ("left-deep and-not", _left_deep([AndNot] * 150, [MatchAll(), *WORDS]), None),
    ("left-deep and mixed with and-not", _left_deep([And, AndNot] * 75, WORDS), None),
    ("left-deep and-not of ors", _left_deep([AndNot] * 149, [WORDS[0], *(Or(w, w) for w in WORDS[1:])]), None),
    ("left-deep and-not inside one item", ItemMatch(_left_deep([AndNot] * 149, LIBRARIES)), None),
]


@pytest.mark.parametrize("name, query, scope", CHAINS, ids=[name for name, _, _ in CHAINS])
def test_long_boolean_chains_compile_to_a_flat_query(name: str, query, scope) -> None:
    # bool > nested > bool > term at most; 151 levels before chains were flattened
    assert nesting_depth(QueryCompiler(TABLE).compile(query, item_scope=scope)) <= 4


def test_a_query_that_nests_by_itself_keeps_its_own_depth() -> None:
    alternating = phrase("title", "x")
    for n in range(10):
        alternating = (And if n % 2 else Or)(phrase("title", f"w{n}"), alternating)
    assert nesting_depth(QueryCompiler(TABLE).compile(alternating)) == 11


def test_a_flattened_chain_keeps_every_operand_in_its_place() -> None:
    compile_ = QueryCompiler(TABLE).compile
    chi, eng, ger, fre = (Clause("language", Relation.EXACT, code) for code in ("chi", "eng", "ger", "fre"))

    def term(code: str) -> dict:
        return {"term": {"key.language": code}}

    # chi and (eng not (ger or fre)) not (fre or ger): two required, four excluded
    compiled = compile_(AndNot(And(chi, AndNot(eng, Or(ger, fre))), Or(fre, ger)))
    assert compiled["bool"]["must"] == [term("chi"), term("eng")]
    assert sorted(json.dumps(q) for q in compiled["bool"]["must_not"]) == sorted(
        json.dumps(term(code)) for code in ("ger", "fre", "fre", "ger"))
    assert compile_(Or(Or(chi, eng), Or(ger, fre))) == {
        "bool": {"should": [term(code) for code in ("chi", "eng", "ger", "fre")], "minimum_should_match": 1}}
    # An Or under an And stays one level down: flattening never crosses operators.
    assert compile_(And(chi, Or(eng, ger))) == {"bool": {"must": [
        term("chi"), {"bool": {"should": [term("eng"), term("ger")], "minimum_should_match": 1}}]}}


# -- analysis as the store applies it -----------------------------------------------------------

async def test_chinese_words_latin_folding_and_both_isbn_forms() -> None:
    async with es_store(TABLE) as store:
        await store.upsert([
            book(1, "图书馆学基础", creator="吴慰慈", isbn="978-7-5013-3019-5", year="2019"),
            book(2, "图书馆", creator="王建国", isbn="7-5037-1744-0"),
            book(3, "Über die Bibliothek", creator="Müller, Jürgen", isbn="0-19-953556-6"),
            book(4, "基础会计学", creator="李明"),
        ])
        await store.refresh()
        assert await hits(store, phrase("title", "图书馆")) == ["u000001", "u000002"]
        assert await hits(store, phrase("title", "图书馆学基础")) == ["u000001"]
        assert await hits(store, phrase("title", "馆学")) == ["u000001"]
        assert await hits(store, phrase("title", "基础图书")) == []
        assert await hits(store, Clause("title", Relation.ALL, "基础 图书馆")) == ["u000001"]
        assert await hits(store, phrase("title", "ÜBER")) == ["u000003"]
        assert await hits(store, phrase("creator", "muller")) == ["u000003"]
        assert await hits(store, phrase("title", "ｂｉｂｌｉｏｔｈｅｋ")) == ["u000003"]
        # the same book by its ISBN-13 and its ISBN-10, with or without hyphens
        for form in ("9787501330195", "978-7-5013-3019-5", "7501330190", "7-5013-3019-0"):
            assert await hits(store, Clause("isbn", Relation.EXACT, form)) == ["u000001"], form
        assert await hits(store, Clause("isbn", Relation.PHRASE, "0199535566")) == ["u000003"]
        assert await hits(store, Clause("isbn", Relation.EXACT, "9787503717444")) == ["u000002"]
        assert await hits(store, Clause("isbn", Relation.EXACT, "9780199535569")) == ["u000003"]


# -- bulk -----------------------------------------------------------------------------------------

async def test_a_search_can_bring_its_page_of_records() -> None:
    """with_records: the page's payloads come with the search itself, the same records get() reads."""
    async with es_store(TABLE) as store:
        await store.upsert([book(n, f"图书馆 第{n}卷", creator="吴慰慈", year=str(2000 + n)) for n in range(1, 8)])
        await store.refresh()
        request = SearchRequest(phrase("title", "图书馆"), offset=2, limit=3)
        plain = await store.search(request)
        assert plain.records is None and len(plain.ids) == 3
        fetched = await store.search(dataclasses.replace(request, with_records=True))
        assert fetched.ids == plain.ids and fetched.records is not None
        assert [r.to_dict() for r in fetched.records] == [r.to_dict() for r in await store.get(plain.ids)]


async def test_bulk_reports_each_failed_record_and_writes_the_rest() -> None:
    async with es_store(TABLE, bulk_chunk_size=50) as store:
        records = [book(n, f"农村经济研究 第{n}辑", items=(hub_item(f"GR{n:08d}"),)) for n in range(1, 121)]
        oversized = book(999, "长标识符")
        oversized.id = "x" * 600  # over Elasticsearch's 512-byte _id limit
        result = await store.upsert(records[:60] + [oversized] + records[60:])
        assert result.succeeded == 120
        assert result.failed == [("x" * 600, "the id must have 1 to 512 bytes")]
        await store.refresh()
        assert (await store.search(SearchRequest(MatchAll(), limit=0))).total == 120
        deleted = await store.delete(["u000001", "u000002", "u999999"])  # an absent id is not an error
        assert deleted.succeeded == 3 and not deleted.failed
        await store.refresh()
        assert (await store.search(SearchRequest(MatchAll(), limit=0))).total == 118
        assert (await store.stats()).items == 118


# -- zero-downtime rebuild ------------------------------------------------------------------------

async def test_rebuild_swaps_the_alias_while_searches_keep_answering() -> None:
    async with es_store(TABLE, bulk_chunk_size=100) as store:
        records = [book(n, f"乡村振兴实务 {n}", year=str(2000 + n % 20), items=(hub_item(f"GR{n:08d}"),))
                   for n in range(1, 401)]
        await store.upsert(records)
        await store.refresh()
        [before] = await store.concrete_indexes()
        query = phrase("title", "乡村振兴")
        totals: list[int] = []
        done = asyncio.Event()

        async def keep_searching() -> None:
            while not done.is_set():
                totals.append((await store.search(SearchRequest(query, limit=5))).total)
                await asyncio.sleep(0)

        searcher = asyncio.create_task(keep_searching())
        try:
            result = await store.rebuild()
        finally:
            done.set()
            await searcher
        assert result.succeeded == 400 and not result.failed
        [after] = await store.concrete_indexes()
        assert after != before
        assert not await store.client.indices.exists(index=before)
        assert len(totals) >= 2 and set(totals) == {400}
        assert (await store.search(SearchRequest(query, limit=0))).total == 400


async def test_writes_during_a_rebuild_reach_the_new_index() -> None:
    async with es_store(TABLE, bulk_chunk_size=20) as store:
        await store.upsert([book(n, f"蔬菜栽培技术 {n}", items=(hub_item(f"GR{n:08d}"),)) for n in range(1, 301)])
        await store.refresh()
        [live] = await store.concrete_indexes()
        wrote_during_rebuild = False

        async def ingest_while_rebuilding() -> None:
            nonlocal wrote_during_rebuild
            while len((await store.client.indices.get(index=f"{store.alias}-*")).body) < 2:
                await asyncio.sleep(0.002)
            await store.upsert([book(301, "大棚蔬菜种植问答"), book(7, "果树栽培技术")])
            await store.delete(["u000001", "u000300"])
            [outcome] = await store.update_items([ItemStatusUpdate("GR00000150", Availability.LOST)])
            assert outcome.applied
            wrote_during_rebuild = len(await store.concrete_indexes()) == 1 and \
                len((await store.client.indices.get(index=f"{store.alias}-*")).body) == 2

        writer = asyncio.create_task(ingest_while_rebuilding())
        result = await store.rebuild()
        await writer
        assert wrote_during_rebuild and not result.failed
        assert await store.concrete_indexes() != [live]
        await store.refresh()
        ids = (await store.search(SearchRequest(MatchAll(), limit=0))).total
        assert ids == 299
        assert await store.get(["u000001", "u000300"]) == [None, None]
        [changed, added] = await store.get(["u000007", "u000301"])
        assert changed is not None and changed.fields["title"] == ["果树栽培技术"]
        assert added is not None
        assert await hits(store, Clause("availability", Relation.EXACT, "lost")) == ["u000150"]


async def test_a_failed_rebuild_keeps_the_old_index() -> None:
    async with es_store(TABLE) as store:
        await store.upsert([book(1, "中医养生入门"), book(2, "四季养生百问")])
        await store.refresh()
        [before] = await store.concrete_indexes()

        def failing_source():
            yield book(3, "本草图解")
            raise OSError("export file vanished")

        with pytest.raises(OSError, match="vanished"):
            await store.rebuild(failing_source())
        assert await store.concrete_indexes() == [before]
        indexes = (await store.client.indices.get(index=f"{store.alias}-*")).body
        assert list(indexes) == [before]  # the half-built index is gone
        assert (await store.search(SearchRequest(MatchAll(), limit=0))).total == 2


# -- live item status ---------------------------------------------------------------------------

async def test_item_status_update_is_visible_to_the_next_search() -> None:
    async with es_store(TABLE) as store:
        await store.upsert([
            book(1, "民法典释义", items=(hub_item("GR00000001"), ("GR01000001", "GR-DW", "branch", Availability.AVAILABLE))),
            book(2, "合同法实务", items=(hub_item("GR00000002"),)),
        ])
        await store.refresh()
        on_loan_at_hub = ItemMatch(And(Clause("library", Relation.EXACT, "GR"),
                                       Clause("availability", Relation.EXACT, "on_loan")))
        assert await hits(store, on_loan_at_hub) == []
        outcomes = await store.update_items([
            ItemStatusUpdate("GR00000001", Availability.ON_LOAN, status="借出", due_date="2026-12-01"),
            ItemStatusUpdate("XX99999999", Availability.ON_LOAN),
        ])
        assert [(o.applied, o.record_id) for o in outcomes] == [(True, "u000001"), (False, None)]
        assert outcomes[1].reason == "unknown barcode"
        # no refresh in between: the store refreshed before answering
        assert await hits(store, on_loan_at_hub) == ["u000001"]
        # the other copy of the same book is untouched, and the record kept its bibliographic part
        [record] = await store.get(["u000001"])
        assert record is not None and record.fields["title"] == ["民法典释义"]
        assert {i.barcode: i.availability for i in record.items} == {
            "GR00000001": Availability.ON_LOAN, "GR01000001": Availability.AVAILABLE}
        assert record.items[0].due_date == "2026-12-01"


async def test_concurrent_updates_of_one_record_are_all_kept() -> None:
    async with es_store(TABLE) as store:
        barcodes = [f"GR{n:08d}" for n in range(1, 9)]
        await store.upsert([book(1, "儿童小说精选", items=tuple(hub_item(b) for b in barcodes))])
        await store.refresh()
        outcomes = await asyncio.gather(*(
            store.update_items([ItemStatusUpdate(b, Availability.ON_LOAN)]) for b in barcodes
        ))
        assert all(o.applied for [o] in outcomes)
        [record] = await store.get(["u000001"])
        assert record is not None and {i.availability for i in record.items} == {Availability.ON_LOAN}


# -- deep paging ----------------------------------------------------------------------------------

async def test_cursor_and_offset_paging_past_the_result_window() -> None:
    window = 500  # the index's max_result_window: from/size cannot reach past it
    count = window + 150
    async with es_store(TABLE, result_window=window) as store:
        assert not (await store.upsert([book(n, f"书 {n:05d}", year=str(1980 + n % 45))
                                        for n in range(1, count + 1)])).failed
        await store.refresh()
        settings = (await store.client.indices.get_settings(index=store.alias)).body
        assert [int(s["settings"]["index"]["max_result_window"]) for s in settings.values()] == [window]
        sort = (SortKey("date", ascending=False), SortKey("title"))
        expected = [f"u{n:06d}" for n in sorted(range(1, count + 1), key=lambda n: (-(1980 + n % 45), n))]
        # an offset past the window still lands on the right hit
        deep = await store.search(SearchRequest(MatchAll(), sort=sort, offset=window + 100, limit=10))
        assert deep.total == count and deep.ids == expected[window + 100:window + 110]
        across = await store.search(SearchRequest(MatchAll(), sort=sort, offset=window - 5, limit=10))
        assert across.ids == expected[window - 5:window + 5]
        # a cursor walks the whole result in order, page by page
        seen: list[str] = []
        cursor = None
        while True:
            page = await store.search(SearchRequest(MatchAll(), sort=sort, limit=120, after=cursor))
            seen.extend(page.ids)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == expected
        past_the_end = await store.search(SearchRequest(MatchAll(), sort=sort, offset=count + 5, limit=10))
        assert past_the_end.ids == [] and past_the_end.total == count
        # a store attaching to the index takes the window from the index
        endpoint = shared_endpoint()
        attached = ElasticsearchStore(endpoint.url, TABLE, index_prefix=store.alias, flavor=endpoint.flavor)
        try:
            await attached.open()
            assert attached.result_window == window
            again = await attached.search(SearchRequest(MatchAll(), sort=sort, offset=window + 100, limit=10))
            assert again.ids == deep.ids
        finally:
            await attached.close()


async def test_a_cursor_belongs_to_its_sort_order() -> None:
    async with es_store(TABLE) as store:
        await store.upsert([book(n, f"散文集 {n}", year=str(2000 + n)) for n in range(1, 8)])
        await store.refresh()
        first = await store.search(SearchRequest(MatchAll(), sort=(SortKey("date"),), limit=3))
        assert first.next_cursor is not None
        second = await store.search(SearchRequest(MatchAll(), sort=(SortKey("date"),), limit=3, after=first.next_cursor))
        assert second.ids == ["u000004", "u000005", "u000006"]
        with pytest.raises(QueryNotSupported, match="cursor"):
            await store.search(SearchRequest(MatchAll(), sort=(SortKey("title"),), limit=3, after=first.next_cursor))
        with pytest.raises(QueryNotSupported, match="cursor"):
            await store.search(SearchRequest(MatchAll(), sort=(SortKey("date"),), limit=3, after="not-a-cursor"))


# -- flavors ----------------------------------------------------------------------------------------

class _RecordingServer:
    """A loopback HTTP server that answers like an OpenSearch node and records request headers."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append({"method": request.method, "path": request.path,
                              "content-type": request.headers.get("Content-Type", ""),
                              "accept": request.headers.get("Accept", "")})
        if request.headers.get("Content-Type", "").startswith("application/vnd.elasticsearch"):
            return web.json_response({"error": "Content-Type header is not supported", "status": 406}, status=406)
        if request.path == "/":
            return web.json_response({"version": {"number": "2.19.0", "distribution": "opensearch"},
                                      "tagline": "The OpenSearch Project: https://opensearch.org/"})
        return web.json_response({"took": 1, "timed_out": False, "hits": {"total": {"value": 0, "relation": "eq"},
                                                                          "hits": []}})

    async def __aenter__(self) -> "_RecordingServer":
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def test_opensearch_flavor_sends_plain_json_and_passes_the_product_check() -> None:
    async with _RecordingServer() as server:
        client = connect(server.url, "opensearch")
        try:
            response = await client.search(index="catalogue", query={"match_all": {}})
            assert response.body["hits"]["total"]["value"] == 0
        finally:
            await client.close()
        sent = [r for r in server.requests if r["path"] == "/catalogue/_search"]
        assert sent and sent[0]["content-type"] == "application/json"
        assert sent[0]["accept"] == "application/json"


async def test_elasticsearch_flavor_refuses_a_server_that_is_not_elasticsearch() -> None:
    async with _RecordingServer() as server:
        client = connect(server.url, "elasticsearch")
        try:
            with pytest.raises(UnsupportedProductError):
                await client.info()
        finally:
            await client.close()
        # it spoke Elasticsearch 8's compatibility media type
        assert any(r["accept"].startswith("application/vnd.elasticsearch+json") for r in server.requests)


def test_flavor_and_index_prefix_are_checked() -> None:
    with pytest.raises(ValueError, match="flavor must be one of elasticsearch, opensearch"):
        ElasticsearchStore("http://127.0.0.1:9200", TABLE, flavor="solr")
    with pytest.raises(ValueError, match="index_prefix"):
        ElasticsearchStore("http://127.0.0.1:9200", TABLE, index_prefix="Union")


async def test_an_unreachable_cluster_is_a_store_error() -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = ElasticsearchStore(f"http://127.0.0.1:{port}", TABLE, flavor="opensearch", request_timeout=2.0,
                               max_retries=0)
    try:
        assert await store.ping() is False
        with pytest.raises(StoreError, match="unreachable"):
            await store.open()
    finally:
        await store.close()


async def test_stats_count_records_and_items_per_library_and_tier() -> None:
    async with es_store(TABLE) as store:
        await store.upsert([
            book(1, "山东旅游指南", items=(hub_item("GR00000001"), hub_item("GR00000002"),
                                      ("GR01000001", "GR-DW", "branch", Availability.AVAILABLE))),
            book(2, "黄河三角洲风物志", items=(("GR01000002", "GR-DW", "branch", Availability.ON_LOAN),)),
            book(3, "鲁菜大全"),
        ])
        await store.refresh()
        stats = await store.stats()
        assert (stats.records, stats.items) == (3, 4)
        assert stats.by_library == {"GR": {"records": 1, "items": 2}, "GR-DW": {"records": 2, "items": 2}}
        assert stats.by_tier == {"hub": {"records": 1, "items": 2}, "branch": {"records": 2, "items": 2}}


async def test_a_rebuild_that_cannot_write_every_record_keeps_the_old_index() -> None:
    async with es_store(TABLE) as store:
        await store.upsert([book(1, "中国历史十讲"), book(2, "明清史话")])
        await store.refresh()
        [before] = await store.concrete_indexes()
        oversized = book(3, "丝绸之路简史")
        oversized.id = "y" * 600
        with pytest.raises(StoreError, match=r"rebuild abandoned.*1 records could not be written.*512 bytes"):
            await store.rebuild([book(1, "中国历史十讲"), oversized, book(4, "唐宋通识")])
        assert await store.concrete_indexes() == [before]
        assert list((await store.client.indices.get(index=f"{store.alias}-*")).body) == [before]
        assert await hits(store, MatchAll()) == ["u000001", "u000002"]


async def test_rebuild_index_command_swaps_in_a_new_index(tmp_path) -> None:
    endpoint = shared_endpoint()
    async with es_store(TABLE) as store:
        await store.upsert([book(n, f"家常菜大全 {n}") for n in range(1, 26)])
        await store.refresh()
        [before] = await store.concrete_indexes()
        rule_set = GUANGRAO.read_text(encoding="utf-8")
        embedded = "store:\n  kind: embedded\n  path: var/guangrao\n"
        assert embedded in rule_set
        config = tmp_path / "guangrao-es.yaml"
        config.write_text(rule_set.replace(embedded, (
            f"store:\n  kind: elasticsearch\n  url: \"{endpoint.url}\"\n"
            f"  index_prefix: {store.alias}\n  flavor: {endpoint.flavor}\n")), encoding="utf-8")
        environment = {k: v for k, v in os.environ.items() if not k.startswith("ELASTICSEARCH_")}
        process = await asyncio.create_subprocess_exec(
            str(FEDERATION), "rebuild-index", "--config", str(config), env=environment,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0, stderr.decode()
        [after] = await store.concrete_indexes()
        assert after != before
        assert stdout.decode().startswith(f"{store.alias}: 25 records re-indexed into {after} in ")
        assert f"(was {before}, deleted)" in stdout.decode()
        assert len(await hits(store, phrase("title", "家常菜"))) == 25


# -- a busy cluster ---------------------------------------------------------------------------------


class _BusyCluster:
    """A loopback proxy in front of the cluster that behaves like an overloaded node: it answers
    the first bulk request with HTTP 429, and of the second it passes on the first half of the
    actions and rejects the rest one by one (item status 429, es_rejected_execution_exception).
    Everything else goes through unchanged."""

    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.bulk_ids: list[list[str]] = []      # the record ids of each bulk request received
        self.rejected: list[str] = []            # the ids rejected item by item
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._session = None

    async def __aenter__(self) -> "_BusyCluster":
        import aiohttp

        self._session = aiohttp.ClientSession()
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()
        await self._session.close()

    async def _forward(self, request: web.Request, body: bytes) -> tuple[int, str, bytes]:
        headers = {k: v for k, v in request.headers.items() if k.lower() in ("content-type", "accept", "authorization")}
        async with self._session.request(request.method, self.upstream + request.path_qs, data=body,
                                         headers=headers) as response:
            return response.status, response.headers.get("Content-Type", "application/json"), await response.read()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not request.path.endswith("/_bulk"):
            status, content_type, answer = await self._forward(request, body)
            return web.Response(status=status, body=answer, headers={"Content-Type": content_type})
        # NDJSON: an action line, then a source line unless the action is a delete.
        lines = [line for line in body.split(b"\n") if line.strip()]
        actions: list[tuple[str, dict, list[bytes]]] = []
        index = 0
        while index < len(lines):
            ((operation, meta),) = json.loads(lines[index]).items()
            width = 1 if operation == "delete" else 2
            actions.append((operation, meta, lines[index:index + width]))
            index += width
        self.bulk_ids.append([meta["_id"] for _, meta, _ in actions])
        if len(self.bulk_ids) == 1:
            error = {"error": {"type": "es_rejected_execution_exception", "reason": "rejected execution of bulk"},
                     "status": 429}
            return web.json_response(error, status=429)
        if len(self.bulk_ids) > 2:
            status, content_type, answer = await self._forward(request, body)
            return web.Response(status=status, body=answer, headers={"Content-Type": content_type})
        passed, rejected = actions[:len(actions) // 2], actions[len(actions) // 2:]
        forwarded = b"".join(line + b"\n" for _, _, pair in passed for line in pair)
        status, _, answer = await self._forward(request, forwarded)
        assert status == 200, answer
        items = json.loads(answer)["items"]
        for operation, meta, _ in rejected:
            self.rejected.append(meta["_id"])
            items.append({operation: {"_index": meta["_index"], "_id": meta["_id"], "status": 429, "error": {
                "type": "es_rejected_execution_exception", "reason": "rejected execution (queue capacity 200)"}}})
        return web.json_response({"took": 1, "errors": True, "items": items})


async def test_bulk_retries_what_a_busy_cluster_rejects_and_loses_nothing() -> None:
    endpoint = shared_endpoint()
    async with _BusyCluster(endpoint.url) as busy:
        store = ElasticsearchStore(busy.url, TABLE, index_prefix=f"{endpoint.prefix}-busy", flavor=endpoint.flavor,
                                   bulk_chunk_size=500)
        await store.open()
        try:
            records = [book(n, f"农村经济研究 第{n}辑", items=(hub_item(f"GR{n:08d}"),)) for n in range(1, 41)]
            result = await store.upsert(records)
            assert (result.succeeded, result.failed) == (40, [])
            ids = [r.id for r in records]
            # The whole request again after the 429; then only the items rejected one by one.
            assert busy.bulk_ids[:2] == [ids, ids]
            assert busy.rejected == ids[20:]
            assert busy.bulk_ids[2:] == [ids[20:]]
            await store.refresh()
            assert await hits(store, MatchAll()) == ids
            assert [r.to_dict() for r in await store.get(ids)] == [r.to_dict() for r in records]
        finally:
            for index in await store.concrete_indexes():
                await store.client.indices.delete(index=index)
            await store.close()

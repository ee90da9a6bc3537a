"""The embedded store's result cache: a repeated search, or the next page of one, is answered
from the kept head of its hit order, and the answer is always the one the store would compute
now — after a write through this store, through another store on the same file, or through
another process."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import pytest_asyncio

from corpus import make_record, small_corpus
from federation.rules import load_network
from federation.stores import create_store
from indexer.embedded import EmbeddedStore
from indexer.indexes import load_index_table
from indexer.query import Clause, FacetRequest, MatchAll, Relation, SearchRequest, SortKey
from indexer.resultcache import CACHED_ROWS, DEFAULT_RESULT_CACHE
from sru_support import NETWORK

pytestmark = pytest.mark.asyncio(loop_scope="module")

TABLE = load_index_table()
ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "embedded_worker.py"
QUERIES = [
    SearchRequest(MatchAll(), limit=7, facets=(FacetRequest("library"),)),
    SearchRequest(Clause("anywhere", Relation.ALL, "library"), limit=5),       # ranked
    SearchRequest(Clause("title", Relation.ALL, "county"), limit=3, sort=(SortKey("date", ascending=False),)),
    SearchRequest(MatchAll(), limit=10, item_scope=Clause("library", Relation.EXACT, "BR02")),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stores(tmp_path_factory):
    """The same catalogue through a caching store and a store that keeps nothing."""
    directory = tmp_path_factory.mktemp("result-cache")
    cached, uncached = EmbeddedStore(directory, TABLE), EmbeddedStore(directory, TABLE)
    await cached.open()
    await uncached.open()
    uncached.results.capacity = 0
    assert (await cached.upsert(small_corpus())).succeeded
    yield cached, uncached
    await uncached.close()
    await cached.close()


async def every_page(store: EmbeddedStore, request: SearchRequest) -> list[tuple]:
    """Every page of `request` by offset, and the first pages again by cursor."""
    pages = []
    offset = 0
    while True:
        result = await store.search(SearchRequest(**{**request.__dict__, "offset": offset}))
        pages.append((offset, result.total, result.ids, [f.values for f in result.facets], result.next_cursor))
        offset += request.limit
        if not result.ids or offset >= CACHED_ROWS + 3 * request.limit:
            break
    cursor = (await store.search(request)).next_cursor
    for _ in range(3):
        if cursor is None:
            break
        result = await store.search(SearchRequest(**{**request.__dict__, "after": cursor}))
        pages.append(("after", result.total, result.ids, result.next_cursor))
        cursor = result.next_cursor
    return pages


async def test_pages_from_the_cache_are_the_pages_the_store_computes(stores):
    cached, uncached = stores
    for request in QUERIES:
        expected = await every_page(uncached, request)
        assert expected[0][1] > request.limit, f"{request.query} should have several pages"
        first = await every_page(cached, request)
        hits_before = cached.results.hits
        again = await every_page(cached, request)
        assert first == expected and again == expected
        assert cached.results.hits > hits_before, "the repeated pages were computed again"


async def test_next_pages_of_one_search_are_one_store_evaluation(stores):
    cached, _ = stores
    request = SearchRequest(Clause("anywhere", Relation.ALL, "history"), limit=10)
    cached.results.clear()
    misses = cached.results.misses
    totals = {(await cached.search(SearchRequest(**{**request.__dict__, "offset": n * 10}))).total for n in range(4)}
    assert len(totals) == 1 and totals.pop() > 0
    assert cached.results.misses == misses + 1


async def test_a_write_through_this_or_another_store_is_seen_at_once(stores):
    cached, uncached = stores
    query = SearchRequest(Clause("title", Relation.PHRASE, "cache invalidation primer"), limit=5)
    assert (await cached.search(query)).total == 0
    record = make_record("cache-probe-1", {"title": ["Cache invalidation primer"]})

    await cached.upsert([record])
    assert (await cached.search(query)).ids == ["cache-probe-1"]
    await uncached.delete(["cache-probe-1"])            # the other connection writes
    assert (await cached.search(query)).total == 0
    await uncached.upsert([record])
    assert (await cached.search(query)).ids == ["cache-probe-1"]
    await cached.delete(["cache-probe-1"])
    assert (await cached.search(query)).total == 0


async def test_a_write_by_another_process_is_seen_at_once(tmp_path):
    store = EmbeddedStore(tmp_path, TABLE)
    await store.open()
    try:
        everything = SearchRequest(MatchAll(), limit=10)
        assert (await store.search(everything)).total == 0
        assert (await store.search(everything)).total == 0   # now kept
        loaded = subprocess.run([sys.executable, str(WORKER), "load", str(tmp_path), "100"], cwd=ROOT,
                                capture_output=True, text=True, timeout=300)
        assert loaded.returncode == 0, loaded.stderr
        result = await store.search(everything)
        assert result.total == len(small_corpus()) and len(result.ids) == 10
    finally:
        await store.close()


async def test_result_cache_size_comes_from_the_store_settings(tmp_path):
    settings = replace(load_network(NETWORK).store_settings({}, data_dir=str(tmp_path)), result_cache=0)
    store = create_store(settings, TABLE)
    await store.open()
    try:
        assert isinstance(store, EmbeddedStore) and store.results.capacity == 0
        await store.upsert([make_record("kept-nothing", {"title": ["Nothing kept"]})])
        request = SearchRequest(Clause("title", Relation.PHRASE, "nothing kept"))
        assert (await store.search(request)).ids == ["kept-nothing"]
        assert (await store.search(request)).ids == ["kept-nothing"] and len(store.results) == 0
    finally:
        await store.close()
    default = load_network(NETWORK).store_settings({}, data_dir=str(tmp_path))
    assert default.result_cache == DEFAULT_RESULT_CACHE > 0

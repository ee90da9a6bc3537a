"""SearchService over a real catalogue: the databases of a network, scoping by library and tier
(records and the items shown), fetch and scan in scope."""
from __future__ import annotations

import pytest
import pytest_asyncio

from federation.rules import load_network
from federation.search import SearchService, UnknownDatabase
from indexer.embedded import EmbeddedStore
from indexer.indexes import load_index_table
from indexer.query import MatchAll, ScanRequest
from sru_support import NETWORK, input_records, shared_catalogue

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    return shared_catalogue(tmp_path_factory)


@pytest.fixture(scope="module")
def inputs(catalogue):
    return input_records(catalogue)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def service(catalogue):
    table = load_index_table()
    store = EmbeddedStore(catalogue.store_dir, table)
    await store.open()
    yield SearchService(load_network(NETWORK), table, store)
    await store.close()


async def test_databases_of_the_network(service):
    network = service.network
    names = [d.name for d in service.databases()]
    assert names[0] == "union"
    assert set(network.libraries) <= set(names)
    assert {"hub", "branch", "reading_room", "mobile"} <= set(names)
    hub = service.database("hub")
    assert hub.kind == "tier" and hub.libraries == frozenset({network.hub})
    assert service.database("GR-DW").title_zh == network.libraries["GR-DW"].names.zh
    assert service.database("nowhere") is None
    with pytest.raises(UnknownDatabase):
        await service.search("nowhere", MatchAll())


async def test_library_scope_limits_records_and_items(service, inputs):
    for code in ("GR", "GR-DW", "GR-FY"):
        expected = {r.work for r in inputs if code in r.holdings_libraries}
        outcome = await service.search(code, MatchAll(), limit=200)
        assert outcome.total == len(expected) == len(outcome.records)
        for record in outcome.records:
            assert record.items and {i.library for i in record.items} == {code}
        items = sum(len(r.holdings_libraries) for r in inputs if code in r.holdings_libraries)
        assert sum(len(r.items) for r in outcome.records) == items


async def test_tier_scope(service, inputs):
    branches = {c for c, lib in service.network.libraries.items() if lib.tier == "branch"}
    expected = {r.work for r in inputs if branches & set(r.holdings_libraries)}
    outcome = await service.search("branch", MatchAll(), limit=500)
    assert outcome.total == len(expected)
    assert all({i.library for i in r.items} <= branches for r in outcome.records)
    union = await service.search("union", MatchAll(), limit=0)
    assert union.total == len({r.work for r in inputs})


async def test_fetch_in_scope_and_out_of_scope(service, inputs):
    at_dw = await service.search("GR-DW", MatchAll(), limit=1)
    record_id = at_dw.records[0].id
    whole, scoped, elsewhere, missing = (
        (await service.fetch("union", [record_id]))[0],
        (await service.fetch("GR-DW", [record_id]))[0],
        (await service.fetch("GR-FY", [record_id])),
        (await service.fetch("union", ["no-such-id"]))[0],
    )
    assert len(whole.items) >= len(scoped.items) and {i.library for i in scoped.items} == {"GR-DW"}
    assert missing is None
    fy_ids = {r.id for r in (await service.search("GR-FY", MatchAll(), limit=500)).records}
    assert (elsewhere[0] is None) == (record_id not in fy_ids)


async def test_scan_counts_only_the_scope(service):
    everywhere = await service.scan("union", ScanRequest("library", "", count=50))
    counts = {t.key: t.count for t in everywhere}
    assert counts["gr-dw"] == (await service.search("GR-DW", MatchAll(), limit=0)).total
    in_dw = await service.scan("GR-DW", ScanRequest("title", "", count=500))
    assert sum(t.count for t in in_dw) >= (await service.search("GR-DW", MatchAll(), limit=0)).total

"""The read path's caches over a real catalogue: decoded records shared while their stored form
is unchanged, renderings kept per revision, and a Z39.50 present that reads the ids its search
remembered. Each cache must be invisible except in cost: after a live status change the next
answer shows it, and nothing the read path does changes a shared record."""
from __future__ import annotations

import pytest
import pytest_asyncio

from federation.rules import load_network
from federation.search import SearchService
from federation.z3950service import FIRST_PAGE, UnionBackend
from indexer.embedded import EmbeddedStore
from indexer.indexes import load_index_table
from indexer.model import Availability, ItemStatusUpdate
from indexer.query import MatchAll
from protocols.z3950 import pdu as P
from protocols.z3950.pqf import parse_pqf
from protocols.z3950.server import SessionInfo
from sru_support import NETWORK, build_catalogue

pytestmark = pytest.mark.asyncio(loop_scope="module")

SESSION = SessionInfo(peer="test")


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    # Its own copy: these tests change item status.
    return build_catalogue(tmp_path_factory.mktemp("read-caches"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def store(catalogue):
    store = EmbeddedStore(catalogue.store_dir, load_index_table())
    await store.open()
    yield store
    await store.close()


@pytest.fixture(scope="module")
def service(store):
    return SearchService(load_network(NETWORK), store.table, store)


async def a_record_with_items(service: SearchService, library: str):
    outcome = await service.search(library, MatchAll(), limit=1)
    assert outcome.records, f"no record held at {library}"
    return outcome.records[0]


async def test_shared_reads_are_one_object_until_the_payload_changes(service, store):
    record = await a_record_with_items(service, "GR")
    first, again = await store.get([record.id], shared=True), await store.get([record.id], shared=True)
    assert first[0] is again[0] and first[0].revision
    owned = (await store.get([record.id]))[0]
    assert owned is not first[0] and owned == first[0] and owned.revision == ""

    barcode = next(i.barcode for i in first[0].items if i.library == "GR" and i.barcode)
    outcome = (await store.update_items([ItemStatusUpdate(barcode, Availability.ON_LOAN, status="借出")]))[0]
    assert outcome.applied
    changed = (await store.get([record.id], shared=True))[0]
    assert changed is not first[0] and changed.revision != first[0].revision
    assert next(i for i in changed.items if i.barcode == barcode).availability == Availability.ON_LOAN
    # The record handed out before the change is left as it was (somebody may still render it).
    assert next(i for i in first[0].items if i.barcode == barcode).availability != Availability.ON_LOAN


async def test_scoping_copies_and_leaves_the_shared_record_whole(service, store):
    scoped = await a_record_with_items(service, "GR-DW")
    whole = (await store.get([scoped.id], shared=True))[0]
    libraries = {i.library for i in whole.items}
    assert {i.library for i in scoped.items} == {"GR-DW"}
    await service.search("GR-DW", MatchAll(), limit=50)
    await service.fetch("GR-DW", [scoped.id])
    assert {i.library for i in (await store.get([scoped.id], shared=True))[0].items} == libraries
    assert {i.library for i in whole.items} == libraries


def counting_searches(store, monkeypatch) -> list[int]:
    calls: list[int] = []
    real = store.search

    async def search(request):
        calls.append(request.limit)
        return await real(request)

    monkeypatch.setattr(store, "search", search)
    return calls


async def test_present_after_search_reads_the_remembered_ids(service, store, monkeypatch):
    backend = UnionBackend(service)
    expected = await service.search("union", MatchAll(), limit=FIRST_PAGE + 5)
    assert expected.total > FIRST_PAGE, "the catalogue is too small to page past the first ids"
    calls = counting_searches(store, monkeypatch)
    rpn = parse_pqf("@attr 1=1016 @attr 2=103 x")
    result_set = await backend.search(["union"], rpn, {}, SESSION)
    assert len(calls) == 1 and len(result_set.first_ids) == min(FIRST_PAGE, result_set.size)

    shown = await backend.present(result_set, 1, 10, P.RecordSyntax.USMARC.value, "F", SESSION)
    assert len(calls) == 1, "a present within the first ids ran the query again"
    assert len(shown) == 10
    # The last remembered ids, and a page that ends the result set, are read without a search too.
    tail = await backend._page(result_set, FIRST_PAGE - 2, 2)
    assert len(calls) == 1 and [r.id for r in tail] == list(result_set.first_ids[FIRST_PAGE - 3:FIRST_PAGE - 1])

    # Beyond what the search remembered, the store is asked for that page.
    beyond = await backend._page(result_set, FIRST_PAGE + 1, 3)
    assert len(calls) == 2 and len(beyond) == min(3, result_set.size - FIRST_PAGE)


async def test_present_asks_again_when_a_remembered_record_left_the_scope(service, store, monkeypatch):
    backend = UnionBackend(service)
    rpn = parse_pqf("@attr 1=1016 @attr 2=103 x")
    result_set = await backend.search(["GR-DW"], rpn, {}, SESSION)
    assert result_set.first_ids
    calls = counting_searches(store, monkeypatch)
    gone = result_set.first_ids[0]
    fetch = service.fetch

    async def without_first(database, ids):
        return [None if i == gone else r for i, r in zip(ids, await fetch(database, ids))]

    monkeypatch.setattr(service, "fetch", without_first)
    page = await backend._page(result_set, 1, 1)
    assert len(calls) == 1 and len(page) == 1


async def test_rendered_records_follow_a_status_change(service, store):
    backend = UnionBackend(service)
    rpn = parse_pqf("@attr 1=1016 @attr 2=103 x")
    result_set = await backend.search(["GR"], rpn, {}, SESSION)
    before = (await backend.present(result_set, 1, 1, P.RecordSyntax.OPAC.value, "F", SESSION))[0]
    again = (await backend.present(result_set, 1, 1, P.RecordSyntax.OPAC.value, "F", SESSION))[0]
    assert backend.rendered.hits >= 1 and again.record == before.record

    record = (await service.fetch("GR", [result_set.first_ids[0]]))[0]
    barcode = next(i.barcode for i in record.items if i.barcode and i.availability != Availability.LOST)
    outcome = (await service.update_items([ItemStatusUpdate(barcode, Availability.LOST, status="丢失")]))[0]
    assert outcome.applied
    after = (await backend.present(result_set, 1, 1, P.RecordSyntax.OPAC.value, "F", SESSION))[0]
    assert after.record != before.record

"""The embedded store rewrites a stored record by changing only the rows that differ: after any
sequence of upserts its tables hold exactly the rows a single upsert of the last version
writes (item row ids aside), and queries answer as the reference evaluator says. A bulk load
leaves the index rows to its end and then holds the same rows."""
from __future__ import annotations

import copy
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from corpus import small_corpus
from indexer import embedded
from indexer.embedded import DATABASE_NAME, EmbeddedStore
from indexer.indexes import load_index_table
from indexer.model import Availability, Item, UnionRecord
from indexer.query import Clause, ItemMatch, MatchAll, Relation, SearchRequest
from indexer.store import StoreError
from reference import Reference

TABLE = load_index_table()
EVERYTHING = SearchRequest(MatchAll(), limit=5_000)


def first_contribution_only(record: UnionRecord) -> UnionRecord:
    """What the store held before the other libraries' contributions arrived."""
    first = copy.deepcopy(record.contributions[0])
    fields = {name: values[:1] for name, values in record.fields.items()}
    return UnionRecord(record.id, [first], (first.library, first.source_id), fields, record.match_keys[:1])


def reshuffled(record: UnionRecord) -> UnionRecord:
    """Items in another order, one more item, another title and a changed status."""
    changed = copy.deepcopy(record)
    for contribution in changed.contributions:
        contribution.items.reverse()
        for item in contribution.items:
            item.availability = Availability.ON_LOAN
    changed.contributions[0].items.append(Item(f"{record.id}-extra", "GR", tier="hub", location="书库"))
    changed.fields["title"] = ["rewritten title 重写"]
    return changed


def rows(directory: Path) -> dict[str, Counter]:
    """Every row of every table, record and item row ids replaced by what they stand for."""
    with sqlite3.connect(directory / DATABASE_NAME) as connection:
        record_of = dict(connection.execute("SELECT rid, id FROM records"))
        item_of = {item: (record_of[rid], barcode, library, tier)
                   for item, rid, barcode, library, tier in connection.execute("SELECT * FROM items")}
        item_of[0] = None
        tables: dict[str, Counter] = {"items": Counter(item_of.values())}
        for table in ("match_keys", "contributions", "vals", "toks", "facets", "sorts"):
            cursor = connection.execute(f"SELECT * FROM {table}")
            names = [d[0] for d in cursor.description]
            tables[table] = Counter(
                tuple(record_of[v] if n == "rid" else item_of[v] if n == "item" else v for n, v in zip(names, row))
                for row in cursor
            )
        return tables


async def load(directory: Path, *batches: list[UnionRecord]) -> EmbeddedStore:
    store = EmbeddedStore(directory, TABLE)
    await store.open()
    for batch in batches:
        result = await store.upsert(batch)
        assert result.succeeded == len(batch) and not result.failed
    return store


async def test_rewritten_records_have_the_rows_of_a_fresh_write(tmp_path: Path) -> None:
    records = [r for r in small_corpus() if r.items]
    # Half grow (first contribution, then reshuffled, then whole); half shrink back.
    final = [r if n % 2 == 0 else first_contribution_only(r) for n, r in enumerate(records)]
    rewritten = await load(
        tmp_path / "rewritten",
        [first_contribution_only(r) for r in records],
        [reshuffled(r) for r in records],
        final,
    )
    fresh = await load(tmp_path / "fresh", final)
    try:
        assert rows(tmp_path / "rewritten") == rows(tmp_path / "fresh")
        reference = Reference(TABLE, final)
        queries = [
            Clause("title", Relation.PHRASE, "rewritten"),
            Clause("title", Relation.PHRASE, "图书馆"),
            ItemMatch(Clause("availability", Relation.EXACT, "on_loan")),
            ItemMatch(Clause("location", Relation.PHRASE, "书库")),
            ItemMatch(Clause("library", Relation.EXACT, "GR")),
        ]
        for query in queries:
            expected = sorted(reference.matches(query))
            for store in (rewritten, fresh):
                result = await store.search(SearchRequest(query, limit=5_000))
                assert sorted(result.ids) == expected, query
        assert [r.to_dict() for r in await rewritten.get([r.id for r in final])] == [r.to_dict() for r in final]
    finally:
        await rewritten.close()
        await fresh.close()


def unindexed(directory: Path) -> int:
    with sqlite3.connect(directory / DATABASE_NAME) as connection:
        return connection.execute("SELECT COUNT(*) FROM unindexed").fetchone()[0]


TITLE_QUERIES = [
    Clause("title", Relation.PHRASE, "rewritten"),
    Clause("title", Relation.PHRASE, "图书馆"),
    Clause("anywhere", Relation.ANY, "history 小麦"),
    ItemMatch(Clause("availability", Relation.EXACT, "on_loan")),
    ItemMatch(Clause("library", Relation.EXACT, "GR")),
]


@pytest.mark.parametrize("processes", [1, 2])
async def test_a_bulk_load_indexes_its_records_once_at_its_end(tmp_path: Path, processes: int, monkeypatch) -> None:
    # With 2 processes an index helper makes the rows, 7 records a message, whatever their number.
    monkeypatch.setattr(embedded, "_INDEX_HELPER_MINIMUM", 0)
    monkeypatch.setattr(embedded, "_INDEX_HELPER_CHUNK", 7)
    records = [r for r in small_corpus() if r.items]
    before = records[: len(records) // 3]   # indexed before the load, then rewritten in it
    final = [r if n % 2 == 0 else first_contribution_only(r) for n, r in enumerate(records)]
    gone, kept = final[-3:], final[:-3]     # the last three are deleted in the load
    store = await load(tmp_path / "bulk", before)
    fresh = await load(tmp_path / "fresh", kept)
    told: list[tuple[int, int]] = []
    try:
        async with store.bulk_load(indexed=lambda done, total: told.append((done, total)), processes=processes):
            for batch in ([first_contribution_only(r) for r in records], [reshuffled(r) for r in records], final):
                result = await store.upsert(batch)
                assert result.succeeded == len(batch) and not result.failed
            await store.delete([r.id for r in gone])
            # Searches find what was indexed before the load (less what it deleted) ...
            still = Reference(TABLE, [r for r in before if r.id not in {g.id for g in gone}])
            for query in TITLE_QUERIES:
                found = await store.search(SearchRequest(query, limit=5_000))
                assert sorted(found.ids) == sorted(still.matches(query)), query
            # ... while reads by id and the write path's lookups see every write at once.
            new = kept[-1]
            assert new not in before
            assert [r.to_dict() for r in await store.get([new.id])] == [new.to_dict()]
            assert (await store.find_by_match_keys(new.match_keys[:1])) == {new.match_keys[0]: [new.id]}
            first = new.contributions[0]
            assert await store.find_by_contribution(first.library, [first.source_id]) == {first.source_id: new.id}
            assert await store.find_by_barcode([new.items[0].barcode]) == {new.items[0].barcode: new.id}
            assert unindexed(tmp_path / "bulk") == len(kept)
        assert unindexed(tmp_path / "bulk") == 0
        assert told and told[-1] == (len(kept), len(kept)) and told == sorted(told)
        assert len(told) >= (len(kept) // 7 if processes > 1 else 1)
        assert rows(tmp_path / "bulk") == rows(tmp_path / "fresh")
        reference = Reference(TABLE, kept)
        for query in TITLE_QUERIES:
            found = await store.search(SearchRequest(query, limit=5_000))
            assert sorted(found.ids) == sorted(reference.matches(query)), query
    finally:
        await store.close()
        await fresh.close()


async def test_a_record_that_cannot_be_indexed_is_refused_alone_in_a_bulk_load(tmp_path: Path) -> None:
    good = [r for r in small_corpus() if r.items][:3]
    bad = UnionRecord.from_dict(good[0].to_dict())
    bad.id = "bad"
    bad.fields["title"] = ["fine", 12345]  # type: ignore[list-item]  (not a string: extraction never does this)
    store = await load(tmp_path)
    try:
        async with store.bulk_load():
            result = await store.upsert([good[0], bad, *good[1:]])
            assert result.succeeded == 3
            assert [record_id for record_id, _ in result.failed] == ["bad"]
            assert "is not text" in result.failed[0][1]
        assert await store.get(["bad"]) == [None]
        assert sorted((await store.search(EVERYTHING)).ids) == sorted(r.id for r in good)
    finally:
        await store.close()


async def test_a_stored_record_that_cannot_be_indexed_is_named_and_the_others_are_indexed(tmp_path: Path) -> None:
    records = [r for r in small_corpus() if r.items][:3]
    store = await load(tmp_path)
    try:
        with pytest.raises(StoreError, match=f"1 stored record.*{records[1].id}"):
            async with store.bulk_load():
                await store.upsert(records)
                # The stored payload damaged on disk behind the store's back.
                with sqlite3.connect(tmp_path / DATABASE_NAME) as connection:
                    connection.execute("UPDATE records SET payload = ? WHERE id = ?", (b"not zlib", records[1].id))
        for record in (records[0], records[2]):
            found = await store.search(SearchRequest(Clause("id", Relation.EXACT, record.id)))
            assert found.ids == [record.id]
        assert (await store.search(SearchRequest(Clause("id", Relation.EXACT, records[1].id)))).total == 0
        assert unindexed(tmp_path) == 1  # it waits: the next bulk load tries again
    finally:
        await store.close()


async def test_an_interrupted_bulk_load_leaves_its_indexing_to_the_next(tmp_path: Path) -> None:
    records = [r for r in small_corpus() if r.items][:20]
    store = await load(tmp_path)
    try:
        with pytest.raises(KeyboardInterrupt):
            async with store.bulk_load():
                await store.upsert(records)
                raise KeyboardInterrupt  # Ctrl-C: stop now, not after indexing
        assert unindexed(tmp_path) == len(records)
        assert len([r for r in await store.get([r.id for r in records]) if r is not None]) == len(records)
        query = Clause("title", Relation.PHRASE, "图书馆")
        assert (await store.search(SearchRequest(query, limit=5_000))).total == 0
        await store.index_waiting()
        assert unindexed(tmp_path) == 0
        assert sorted((await store.search(SearchRequest(query, limit=5_000))).ids) == sorted(Reference(TABLE, records).matches(query))
    finally:
        await store.close()


async def test_a_bulk_load_indexes_everything_itself_when_its_index_helper_fails(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(embedded, "_INDEX_HELPER_MINIMUM", 0)
    monkeypatch.setattr(embedded, "_INDEX_HELPER", ("indexer.embedded", "_no_such_function"))  # dies at once
    records = [r for r in small_corpus() if r.items][:40]
    store = await load(tmp_path / "bulk")
    fresh = await load(tmp_path / "fresh", records)
    try:
        async with store.bulk_load(processes=2):
            await store.upsert(records)
        assert unindexed(tmp_path / "bulk") == 0
        assert rows(tmp_path / "bulk") == rows(tmp_path / "fresh")
    finally:
        await store.close()
        await fresh.close()

"""The embedded store rewrites a stored record by changing only the rows that differ: after any
sequence of upserts its tables hold exactly the rows a single upsert of the last version
writes (item row ids aside), and queries answer as the reference evaluator says."""
from __future__ import annotations

import copy
import sqlite3
from collections import Counter
from pathlib import Path

from corpus import small_corpus
from indexer.embedded import DATABASE_NAME, EmbeddedStore
from indexer.indexes import load_index_table
from indexer.model import Availability, Item, UnionRecord
from indexer.query import Clause, ItemMatch, MatchAll, Relation, SearchRequest
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

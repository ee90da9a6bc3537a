"""The embedded store's own guarantees: durability across a killed process, atomic batches,
readers in other processes while one writes, replacing and deleting records, live item
status, and rebuilding its index rows when the index table changes.

(Query semantics are in test_store_conformance.py, against an independent evaluator; the
Chinese, folding and ISBN promises are also checked here with literal answers.)
"""
from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pymarc
import pytest

from corpus import generated_records, handmade_records, small_corpus
from indexer.embedded import DATABASE_NAME, EmbeddedStore
from indexer.extract import analyse
from indexer.indexes import IndexTable, load_index_table
from indexer.model import Availability, Contribution, Item, ItemStatusUpdate, MarcFormat, UnionRecord
from indexer.query import (
    And,
    Clause,
    ItemMatch,
    MatchAll,
    Relation,
    ScanRequest,
    SearchRequest,
    SortKey,
)
from indexer.store import QueryNotSupported, StoreError
from reference import Reference

TABLE = load_index_table()
WORKER = Path(__file__).resolve().parent / "embedded_worker.py"
ROOT = Path(__file__).resolve().parent.parent
EVERYTHING = SearchRequest(MatchAll(), limit=5_000)


def worker(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def catalogue(directory: Path, table: IndexTable = TABLE) -> dict[str, dict]:
    """Every stored record as a dict, by id (through search and get, as a client sees them)."""
    store = EmbeddedStore(directory, table)
    await store.open()
    try:
        result = await store.search(EVERYTHING)
        assert result.total == len(result.ids)
        records = await store.get(result.ids)
        return {record.id: record.to_dict() for record in records if record is not None}
    finally:
        await store.close()


def integrity(directory: Path) -> str:
    connection = sqlite3.connect(directory / DATABASE_NAME)
    try:
        return connection.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        connection.close()


@pytest.mark.slow
async def test_killed_bulk_load_keeps_acknowledged_batches_and_rerun_completes(tmp_path: Path) -> None:
    records = small_corpus()
    expected = {record.id: record.to_dict() for record in records}
    batch = 100
    loader = worker("load", str(tmp_path), str(batch))
    assert loader.stdout is not None
    acknowledged = 0
    for line in loader.stdout:
        acknowledged = int(line.split()[1])
        if acknowledged >= batch:
            # The next batch of 100 records is being written now: kill it mid-transaction.
            loader.send_signal(signal.SIGKILL)
            break
    assert loader.wait(timeout=30) == -signal.SIGKILL, loader.stderr.read() if loader.stderr else ""
    assert acknowledged == batch

    assert integrity(tmp_path) == "ok"
    survived = await catalogue(tmp_path)
    # Nothing acknowledged is lost; a batch is all or nothing; what is there is whole.
    assert set(survived) >= {r.id for r in records[:acknowledged]}
    assert len(survived) % batch == 0 and len(survived) < len(records)
    assert all(survived[record_id] == expected[record_id] for record_id in survived)

    rerun = worker("load", str(tmp_path), str(batch))
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err
    assert out.split()[-1] == str(len(records))
    assert await catalogue(tmp_path) == expected
    # The indexes are exactly those of a clean load, not a mix with the interrupted one.
    store = EmbeddedStore(tmp_path, TABLE)
    await store.open()
    try:
        reference = Reference(TABLE, records)
        for query in (
            Clause("title", Relation.PHRASE, "图书馆"),
            Clause("anywhere", Relation.ANY, "history 小麦"),
            ItemMatch(And(Clause("tier", Relation.EXACT, "branch"), Clause("availability", Relation.EXACT, "available"))),
            Clause("date", Relation.WITHIN, "1990", "2000"),
        ):
            result = await store.search(SearchRequest(query, limit=5_000))
            assert set(result.ids) == reference.matches(query)
        stats = await store.stats()
        assert (stats.records, stats.items) == (len(records), sum(len(r.items) for r in records))
    finally:
        await store.close()


@pytest.mark.slow
async def test_what_a_killed_bulk_load_wrote_is_indexed_by_the_next_one(tmp_path: Path) -> None:
    records = small_corpus()
    batch = 100
    loader = worker("bulk", str(tmp_path), str(batch))
    assert loader.stdout is not None and loader.stdin is not None
    for line in loader.stdout:
        if int(line.split()[1]) >= 2 * batch:
            loader.send_signal(signal.SIGKILL)  # it waits inside the load: its end has indexed nothing
            break
        loader.stdin.write("\n")
        loader.stdin.flush()
    assert loader.wait(timeout=30) == -signal.SIGKILL, loader.stderr.read() if loader.stderr else ""
    assert integrity(tmp_path) == "ok"

    store = EmbeddedStore(tmp_path, TABLE)
    await store.open()
    try:
        stored = [r for r in await store.get([r.id for r in records]) if r is not None]
        assert len(stored) == 2 * batch
        expected = {r.id: r.to_dict() for r in records}
        assert all(r.to_dict() == expected[r.id] for r in stored)  # acknowledged and whole
        query = Clause("title", Relation.PHRASE, "图书馆")
        assert Reference(TABLE, stored).matches(query)
        assert (await store.search(SearchRequest(query, limit=5_000))).total == 0  # not indexed yet
        await store.index_waiting()
        reference = Reference(TABLE, stored)
        for query in (query, Clause("anywhere", Relation.ANY, "history 小麦"), Clause("date", Relation.WITHIN, "1990", "2000"),
                      ItemMatch(Clause("tier", Relation.EXACT, "branch"))):
            result = await store.search(SearchRequest(query, limit=5_000))
            assert set(result.ids) == reference.matches(query), query
    finally:
        await store.close()


@pytest.mark.slow
async def test_readers_in_other_processes_see_only_whole_batches(tmp_path: Path) -> None:
    # Create the database first so that readers never race its creation.
    store = EmbeddedStore(tmp_path, TABLE)
    await store.open()
    await store.close()
    batch = 20
    total = len(small_corpus())
    readers = [worker("read", str(tmp_path), "3") for _ in range(2)]
    loader = worker("load", str(tmp_path), str(batch))
    out, err = loader.communicate(timeout=120)
    assert loader.returncode == 0, err
    for reader in readers:
        reader_out, reader_err = reader.communicate(timeout=60)
        assert reader.returncode == 0, reader_err
        totals = [int(line.split()[1]) for line in reader_out.splitlines()]
        assert totals, reader_err
        assert totals == sorted(totals)  # never goes back
        assert all(t % batch == 0 or t == total for t in totals)  # never half a batch
    assert out.split()[-1] == str(total)


async def test_reopened_store_has_every_record(tmp_path: Path) -> None:
    records = handmade_records()
    store = EmbeddedStore(tmp_path, TABLE)
    await store.open()
    await store.upsert(records)
    await store.close()
    assert await catalogue(tmp_path) == {r.id: r.to_dict() for r in records}


async def test_path_may_name_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "network.sqlite3"
    store = EmbeddedStore(path, TABLE)
    await store.open()
    try:
        await store.upsert(handmade_records()[:2])
        assert path.is_file()
        assert (await store.search(EVERYTHING)).total == 2
        assert await store.ping()
    finally:
        await store.close()
    assert not await store.ping()


def _record(record_id: str = "h01") -> UnionRecord:
    return next(r for r in handmade_records() if r.id == record_id)


async def test_upsert_replaces_the_whole_record(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, TABLE)
    await store.open()
    try:
        original = _record("h01")
        await store.upsert([original, _record("h05")])
        changed = UnionRecord.from_dict(original.to_dict())
        changed.fields["title"] = ["乡村图书馆"]
        changed.match_keys = ["work:changed"]
        changed.contributions[0].items = [Item("NEW0001", "SP01", "service_point", availability=Availability.AVAILABLE)]
        await store.upsert([changed])

        async def ids(query) -> list[str]:
            return (await store.search(SearchRequest(query, limit=100))).ids

        assert await ids(Clause("title", Relation.PHRASE, "图书馆学基础")) == []
        assert await ids(Clause("title", Relation.PHRASE, "乡村")) == ["h01"]
        assert await ids(Clause("barcode", Relation.EXACT, "HUB0000001")) == []
        assert await ids(Clause("library", Relation.EXACT, "SP01")) == ["h01"]
        assert await store.find_by_match_keys(original.match_keys) == {}
        assert await store.find_by_match_keys(["work:changed"]) == {"work:changed": ["h01"]}
        assert await store.find_by_barcode(["HUB0000001", "NEW0001"]) == {"NEW0001": "h01"}
        assert (await store.get(["h01"]))[0] == changed
        stats = await store.stats()
        assert (stats.records, stats.items) == (2, len(changed.items) + len(_record("h05").items))
    finally:
        await store.close()


async def test_delete_removes_record_and_its_index_rows(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, TABLE)
    await store.open()
    try:
        await store.upsert(handmade_records())
        result = await store.delete(["h01", "h01", "no-such-id"])
        assert result.failed == []
        assert await store.get(["h01"]) == [None]
        assert (await store.search(SearchRequest(Clause("isbn", Relation.EXACT, "9787040239812")))).total == 0
        assert await store.find_by_barcode(["HUB0000001"]) == {}
        assert await store.find_by_contribution("HUB", ["h01"]) == {}
        assert (await store.search(EVERYTHING)).total == len(handmade_records()) - 1
    finally:
        await store.close()


async def test_a_bad_record_fails_alone_and_leaves_no_rows(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, TABLE)
    await store.open()
    try:
        bad = UnionRecord.from_dict(_record("h02").to_dict())
        bad.id = "bad"
        bad.fields["title"] = ["fine", 12345]  # type: ignore[list-item]  (not a string: extraction never does this)
        empty_id = UnionRecord.from_dict(_record("h03").to_dict())
        empty_id.id = ""
        result = await store.upsert([_record("h01"), bad, empty_id, _record("h05")])
        assert result.succeeded == 2
        assert [record_id for record_id, _ in result.failed] == ["bad", ""]
        assert "cannot store the record" in result.failed[0][1]
        assert sorted((await store.search(EVERYTHING)).ids) == ["h01", "h05"]
        assert (await store.search(SearchRequest(Clause("title", Relation.PHRASE, "fine")))).total == 0
        assert await store.find_by_barcode([i.barcode for i in bad.items]) == {}
    finally:
        await store.close()


async def test_item_status_update_is_visible_at_once_and_durable(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, TABLE)
    await store.open()
    on_loan_at_hub = SearchRequest(ItemMatch(And(
        Clause("library", Relation.EXACT, "HUB"), Clause("availability", Relation.EXACT, "on_loan"))))
    try:
        await store.upsert(handmade_records())
        before = set((await store.search(on_loan_at_hub)).ids)
        assert "h01" not in before
        outcomes = await store.update_items([
            ItemStatusUpdate("HUB0000001", Availability.ON_LOAN, status="charged", due_date="2026-12-24"),
        ])
        assert outcomes[0].applied and outcomes[0].record_id == "h01"
        assert set((await store.search(on_loan_at_hub)).ids) == before | {"h01"}
    finally:
        await store.close()
    stored = (await catalogue(tmp_path))["h01"]
    item = next(i for c in stored["contributions"] for i in c["items"] if i["barcode"] == "HUB0000001")
    assert (item["availability"], item["status"], item["due_date"]) == ("on_loan", "charged", "2026-12-24")
    assert item["location"] == "中文图书借阅区"  # location None: unchanged


async def test_a_search_can_bring_its_page_of_records(tmp_path: Path) -> None:
    """with_records: the page's records come with the search (one read, one snapshot), the same
    records `get` returns; without it, none."""
    store = EmbeddedStore(tmp_path, TABLE)
    await store.open()
    try:
        await store.upsert(handmade_records() + generated_records(60))
        for request in (SearchRequest(MatchAll(), limit=7, offset=3),
                        SearchRequest(Clause("title", Relation.PHRASE, "图书馆"), limit=5),
                        SearchRequest(MatchAll(), sort=(SortKey("date", False),), limit=4)):
            plain = await store.search(request)
            assert plain.records is None and plain.ids
            fetched = await store.search(dataclasses.replace(request, with_records=True))
            assert fetched.ids == plain.ids and fetched.total == plain.total
            assert fetched.records is not None
            assert [r.to_dict() for r in fetched.records] == [r.to_dict() for r in await store.get(plain.ids)]
        nothing = await store.search(SearchRequest(Clause("title", Relation.PHRASE, "zzzzqqq"), with_records=True))
        assert nothing.ids == [] and nothing.records == []
    finally:
        await store.close()


async def test_searches_run_while_a_bulk_load_writes(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, TABLE)
    await store.open()
    records = small_corpus()
    try:
        load = asyncio.ensure_future(store.upsert(records))
        totals = []
        while not load.done():
            results = await asyncio.gather(*(store.search(SearchRequest(MatchAll(), limit=1)) for _ in range(4)))
            totals += [r.total for r in results]
        assert (await load).succeeded == len(records)
        assert set(totals) <= {0, len(records)}  # one upsert call is one transaction
        assert (await store.search(SearchRequest(MatchAll(), limit=0))).total == len(records)
    finally:
        await store.close()


async def test_a_changed_index_table_rebuilds_the_index_rows(tmp_path: Path) -> None:
    records = small_corpus() + generated_records(200, seed=5)  # more than one page of the rebuild
    store = EmbeddedStore(tmp_path, TABLE)
    await store.open()
    await store.upsert(records)
    by_subject = SearchRequest(MatchAll(), sort=(SortKey("subject"),), limit=5_000)
    with pytest.raises(QueryNotSupported):
        await store.search(by_subject)
    await store.close()

    sortable_subject = dataclasses.replace(
        TABLE, indexes=tuple(dataclasses.replace(d, sortable=True) if d.name == "subject" else d for d in TABLE.indexes)
    )
    reopened = EmbeddedStore(tmp_path, sortable_subject)
    await reopened.open()
    try:
        result = await reopened.search(by_subject)
        reference = Reference(sortable_subject, records)
        assert result.ids == reference.ordered({r.id for r in records}, by_subject.sort)
        history = Clause("subject", Relation.PHRASE, "history")
        assert set((await reopened.search(SearchRequest(history, limit=5_000))).ids) == reference.matches(history)
    finally:
        await reopened.close()


async def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / DATABASE_NAME).write_bytes(b"this is not SQLite\n" * 100)
    store = EmbeddedStore(tmp_path, TABLE)
    with pytest.raises(StoreError, match="cannot open the embedded store"):
        await store.open()
    await store.close()


async def test_using_a_closed_store_is_a_store_error(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, TABLE)
    with pytest.raises(StoreError, match="not open"):
        await store.search(EVERYTHING)
    with pytest.raises(StoreError, match="not open"):
        await store.upsert(handmade_records())


def test_database_is_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    async def create() -> EmbeddedStore:
        store = EmbeddedStore(tmp_path, TABLE)
        await store.open()
        return store

    async def check() -> None:
        store = await create()
        try:
            assert store._writer is not None
            assert store._writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert store._writer.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        finally:
            await store.close()

    asyncio.run(check())
    assert os.path.exists(tmp_path / DATABASE_NAME)


def catalogued(record_id: str, marc_format: MarcFormat, *fields: tuple[str, str, str]) -> UnionRecord:
    """A union record of one library's MARC record (tag, subfield code, value), extracted as ingest does."""
    leader = "     nam0 22        450 " if marc_format is MarcFormat.CNMARC else "     nam a22        4500"
    marc = pymarc.Record(force_utf8=True, leader=leader)
    for tag, code, value in fields:
        marc.add_field(pymarc.Field(tag=tag, indicators=pymarc.Indicators("1", "0"), subfields=[pymarc.Subfield(code, value)]))
    analysis = analyse(marc, marc_format, TABLE)
    contribution = Contribution("HUB", record_id, marc_format, marc.as_dict())
    return UnionRecord(record_id, [contribution], ("HUB", record_id), fields=analysis.fields,
                       match_keys=list(analysis.match_keys))


async def test_chinese_words_latin_folding_and_both_isbn_forms(tmp_path: Path) -> None:
    """Issue 4's literal promises, as a reader would type them, on records extracted from MARC."""
    store = EmbeddedStore(tmp_path, TABLE)
    await store.open()
    try:
        await store.upsert([
            catalogued("c1", MarcFormat.CNMARC, ("010", "a", "978-7-5013-3019-5"), ("200", "a", "图书馆学基础"),
                       ("700", "a", "吴慰慈")),
            catalogued("c2", MarcFormat.CNMARC, ("010", "a", "7-5037-1744-0"), ("200", "a", "图书馆")),
            catalogued("m3", MarcFormat.MARC21, ("020", "a", "0-19-953556-6 (pbk.)"), ("100", "a", "Müller, Jürgen."),
                       ("245", "a", "Über die Bibliothek /")),
            catalogued("c4", MarcFormat.CNMARC, ("200", "a", "基础会计学"), ("700", "a", "李明")),
        ])

        async def hits(index: str, relation: Relation, term: str) -> list[str]:
            result = await store.search(SearchRequest(Clause(index, relation, term), limit=100))
            assert result.total == len(result.ids)
            return sorted(result.ids)

        assert await hits("title", Relation.PHRASE, "图书馆") == ["c1", "c2"]
        assert await hits("title", Relation.PHRASE, "图书馆学基础") == ["c1"]
        assert await hits("title", Relation.PHRASE, "馆学") == ["c1"]
        assert await hits("title", Relation.PHRASE, "基础") == ["c1", "c4"]
        assert await hits("title", Relation.PHRASE, "基础图书") == []
        assert await hits("title", Relation.ALL, "基础 图书馆") == ["c1"]
        assert await hits("anywhere", Relation.PHRASE, "图书馆") == ["c1", "c2"]
        # Latin case and diacritics fold both ways; full-width letters fold too.
        for term in ("Muller", "muller", "MÜLLER", "müller", "MULLER"):
            assert await hits("creator", Relation.PHRASE, term) == ["m3"], term
        assert await hits("creator", Relation.PHRASE, "jurgen muller") == []  # the order of the value
        assert await hits("title", Relation.PHRASE, "uber die") == ["m3"]
        assert await hits("title", Relation.PHRASE, "ｂｉｂｌｉｏｔｈｅｋ") == ["m3"]
        assert await hits("title", Relation.EXACT, "UBER DIE BIBLIOTHEK") == ["m3"]
        # One book by its ISBN-13 and its ISBN-10, with or without hyphens, whichever the record held.
        for form in ("9787501330195", "978-7-5013-3019-5", "7501330190", "7-5013-3019-0"):
            assert await hits("isbn", Relation.EXACT, form) == ["c1"], form
        for form in ("7503717440", "7-5037-1744-0", "9787503717444", "978-7-5037-1744-4"):
            assert await hits("isbn", Relation.EXACT, form) == ["c2"], form
        assert await hits("isbn", Relation.PHRASE, "0199535566") == ["m3"]
        assert await hits("isbn", Relation.EXACT, "9780199535569") == ["m3"]
        assert await hits("isbn", Relation.EXACT, "7501330191") == []  # a wrong check digit finds nothing
    finally:
        await store.close()


async def test_relevance_puts_title_matches_first(tmp_path: Path) -> None:
    def record(record_id: str, **fields: list[str]) -> UnionRecord:
        return UnionRecord(record_id, [], ("HUB", record_id), fields=dict(fields))

    records = [
        record("a-notes", title=["Farming handbook"], notes=["Covers wheat and maize"]),
        record("b-subject", title=["Field crops"], subject=["Wheat"]),
        record("c-title", title=["Growing wheat in the north"]),
        record("d-exact", title=["Wheat."]),
        record("e-creator", title=["Essays"], creator=["Wheat, Anna"]),
        record("f-none", title=["Maize"]),
    ]
    store = EmbeddedStore(tmp_path, TABLE)
    await store.open()
    try:
        await store.upsert(records)
        result = await store.search(SearchRequest(Clause("anywhere", Relation.PHRASE, "wheat")))
        assert result.ids == ["d-exact", "c-title", "e-creator", "b-subject", "a-notes"]
        # The cursor walks the same order.
        first = await store.search(SearchRequest(Clause("anywhere", Relation.PHRASE, "wheat"), limit=2))
        rest = await store.search(SearchRequest(Clause("anywhere", Relation.PHRASE, "wheat"), limit=10,
                                                after=first.next_cursor))
        assert first.ids + rest.ids == result.ids
        # Sort keys replace relevance.
        by_title = await store.search(SearchRequest(Clause("anywhere", Relation.PHRASE, "wheat"), sort=(SortKey("title"),)))
        assert by_title.ids == ["e-creator", "a-notes", "b-subject", "c-title", "d-exact"]
    finally:
        await store.close()


async def test_a_term_that_is_not_unicode_text_is_query_not_supported(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, TABLE)
    await store.open()
    try:
        await store.upsert(handmade_records())
        with pytest.raises(QueryNotSupported, match="not valid Unicode"):
            await store.search(SearchRequest(Clause("title", Relation.EXACT, "abc\udc80def")))
        with pytest.raises(QueryNotSupported, match="not valid Unicode"):
            await store.scan(ScanRequest("title", "\udc80"))
        assert (await store.search(SearchRequest(Clause("creator", Relation.EXACT, "[s.n*")))).ids == ["h12"]
    finally:
        await store.close()


async def test_close_lets_running_searches_finish_and_refuses_new_ones(tmp_path: Path) -> None:
    store = EmbeddedStore(tmp_path, TABLE)
    await store.open()
    await store.upsert(small_corpus())
    running = [asyncio.ensure_future(store.search(SearchRequest(Clause("anywhere", Relation.ANY, "history 图书馆 小麦"))))
               for _ in range(6)]
    await asyncio.sleep(0)  # the searches are submitted to the reader threads
    await store.close()
    assert all(result.total > 0 for result in await asyncio.gather(*running))
    with pytest.raises(StoreError, match="not open"):
        await store.search(EVERYTHING)


async def test_a_scan_is_the_first_thing_a_fresh_store_does(tmp_path: Path) -> None:
    """A union-wide scan on a reader connection that never searched (regression: its temporary
    tables did not exist yet)."""
    loading = EmbeddedStore(tmp_path, TABLE)
    await loading.open()
    await loading.upsert(handmade_records())
    await loading.close()
    store = EmbeddedStore(tmp_path, TABLE, reader_threads=4)
    await store.open()
    try:
        scans = await asyncio.gather(*(store.scan(ScanRequest("library", "", count=5)) for _ in range(8)))
        assert all(scan == scans[0] for scan in scans)
        assert [term.key for term in scans[0]] == ["br01", "br02", "bus1", "hub", "rr01"]
    finally:
        await store.close()

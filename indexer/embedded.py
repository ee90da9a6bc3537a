"""The embedded store: the union catalogue in one SQLite file, no server.

Layout (all in one database, WAL journal):

  records(rid, id, payload)          the union record as zlib-compressed JSON (`UnionRecord.to_dict()`)
  items(item, rid, barcode, library, tier)
  match_keys(key, rid), contributions(library, source_id, rid)   the write path's lookups
  vals(idx, key, num, rid, item, vord, ntok)
                                     every value a record (item = 0) or an item holds in an
                                     index: its exact_key (text, keyword) or integer (number,
                                     date), its ordinal and its token count
  toks(idx, token, rid, item, vord, pos)
                                     the postings of text indexes: `indexer.analysis` tokens
                                     with their position inside one value
  facets(idx, value, rid), sorts(idx, rid, skey)
                                     facet values as stored, one per record, and the sort key
  bibsig(rid, sig)                   a digest of the values of each record-level index, so that a
                                     rewrite touches only the indexes whose values changed
  unindexed(rid)                     records a bulk load wrote whose index rows wait for its end
  meta(key, value)                   the index table's fingerprint and the catalogue's generation,
                                     which every write transaction increases (the result cache's key)

The store analyses nothing itself: tokens and keys come from `indexer.analysis`, the same
code the Elasticsearch store uses, and queries compile to set operations on these tables
(INTERSECT / UNION / EXCEPT of record or item row ids), which is the canonical semantics of
`indexer.query` almost word for word. SQLite's FTS5 is not used: its tokenizers cannot be
given pre-made tokens with our positions without a C extension, and its phrase and prefix
queries cannot express masking inside a token (`wom?n`) or the `==` / ordering relations.

Durability: `journal_mode=WAL` with `synchronous=FULL`. Every write method runs in one
transaction and returns after COMMIT, and with FULL the WAL is fsynced at every commit, so an
acknowledged write survives a killed process and a power loss; a killed process mid-batch
leaves the last committed state (SQLite rolls back the unfinished transaction on the next
open). NORMAL would also survive a killed process (the WAL is in the OS before COMMIT returns)
but not a power loss; bulk loads commit per `upsert` call, which amortizes the fsync.

Concurrency: one writer connection (writes are serialized through one thread) and one reader
connection per reader thread. WAL lets readers in this and other processes run while one
process writes; a second writing process waits for the lock (`busy_timeout`). Every read runs
in one read transaction, so a page, its total and its facets come from the same snapshot.
Repeated searches and their next pages are answered from `indexer.resultcache`, keyed by the
generation read in the same snapshot, so a write by any process is seen by the next search.

Bulk loads (`bulk_load`, what an ingest runs in): upserts write the payload, items and lookup
rows and list the record in `unindexed`; its index rows are made when the load ends, once per
record, the rows of 2,000 records per transaction. A union record rewritten as each library's
file brings its copy (3.4 times on average in the benchmark's load) is thus indexed once.
"""
from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import contextlib
import hashlib
import itertools
import json
import signal
import sqlite3
import threading
import time
import zlib
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterable, Sequence, TypeVar, Union

from indexer.analysis import QueryToken, exact_key, index_tokens, query_tokens, query_words
from indexer.children import Child
from indexer.indexes import IndexDefinition, IndexLevel, IndexTable, IndexType
from indexer.model import ItemStatusUpdate, ItemUpdateOutcome, UnionRecord
from indexer.recordcache import DecodedRecords
from indexer.resultcache import DEFAULT_RESULT_CACHE, CachedResult, ResultCache, rows_to_fetch
from indexer.query import (
    And,
    AndNot,
    Clause,
    Facet,
    FacetRequest,
    ItemMatch,
    MatchAll,
    Or,
    Query,
    Relation,
    ScanRequest,
    ScanTerm,
    SearchRequest,
    SearchResult,
    SortKey,
)
from indexer.store import BulkResult, CacheCounts, IndexingProgress, QueryNotSupported, Store, StoreError, StoreStats
from indexer.values import INT64_MAX, INT64_MIN, facet_value, item_value, numeric_value, ordered_facet, record_values

SCHEMA_VERSION = 2
DATABASE_NAME = "catalogue.sqlite3"
_READER_THREADS = 4
_BUSY_TIMEOUT_MS = 30_000
_WRITER_CACHE_KIB = 65_536
_READER_CACHE_KIB = 16_384
# Phrase tokens after the first this many are checked with correlated EXISTS instead of joins:
# SQLite joins at most 64 tables, and planning a join of dozens of tables (a long CJK title is
# one token per character) takes longer than running it.
_MAX_PHRASE_JOINS = 8
_CHUNK = 500  # ids per IN (...) list
_ANALYSIS_CACHE_VALUES = 50_000  # values whose analysis the writer remembers (a few tens of MB)
_COMPOUND_TERMS = 400
_INDEX_CHUNK = 2_000  # records a bulk load indexes per transaction at its end
_INDEX_ROWS_HELD = 20_000  # index rows made before they are written (memory stays flat)

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, payload BLOB NOT NULL);
-- rid -> id without touching the payload pages: ordering a page of hits by id looks up the id
-- of every hit, and a lookup in the table itself reads a page per record (payloads are large).
CREATE INDEX IF NOT EXISTS records_rid_id ON records (rid, id);
CREATE TABLE IF NOT EXISTS items (
    item INTEGER PRIMARY KEY, rid INTEGER NOT NULL, barcode TEXT NOT NULL, library TEXT NOT NULL, tier TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS items_rid ON items (rid);
CREATE INDEX IF NOT EXISTS items_barcode ON items (barcode);
CREATE TABLE IF NOT EXISTS match_keys (key TEXT NOT NULL, rid INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS match_keys_key ON match_keys (key);
CREATE INDEX IF NOT EXISTS match_keys_rid ON match_keys (rid);
CREATE TABLE IF NOT EXISTS contributions (library TEXT NOT NULL, source_id TEXT NOT NULL, rid INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS contributions_source ON contributions (library, source_id);
CREATE INDEX IF NOT EXISTS contributions_rid ON contributions (rid);
-- WITHOUT ROWID, keyed by the owner: deleting a record's rows and checking the next token of
-- a phrase are primary-key lookups, and the secondary indexes carry the key (rid, item, ...).
CREATE TABLE IF NOT EXISTS vals (
    rid INTEGER NOT NULL, item INTEGER NOT NULL, idx TEXT NOT NULL, vord INTEGER NOT NULL,
    key TEXT, num INTEGER, ntok INTEGER NOT NULL,
    PRIMARY KEY (rid, item, idx, vord)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS vals_key ON vals (idx, key);
CREATE INDEX IF NOT EXISTS vals_num ON vals (idx, num) WHERE num IS NOT NULL;
-- The records with more than one number in an index (few: most records have one date), which a
-- range of two bounds must look at apart (see _Compiler._numeric_ranges).
CREATE INDEX IF NOT EXISTS vals_multi ON vals (idx, rid) WHERE vord > 0 AND num IS NOT NULL;
CREATE TABLE IF NOT EXISTS toks (
    rid INTEGER NOT NULL, item INTEGER NOT NULL, idx TEXT NOT NULL, vord INTEGER NOT NULL,
    pos INTEGER NOT NULL, token TEXT NOT NULL,
    PRIMARY KEY (rid, item, idx, vord, pos)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS toks_token ON toks (idx, token);
CREATE TABLE IF NOT EXISTS facets (idx TEXT NOT NULL, value TEXT NOT NULL, rid INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS facets_owner ON facets (rid, idx, value);
CREATE INDEX IF NOT EXISTS facets_value ON facets (idx, value, rid);
CREATE TABLE IF NOT EXISTS sorts (idx TEXT NOT NULL, rid INTEGER NOT NULL, skey, PRIMARY KEY (idx, rid)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sorts_rid ON sorts (rid);
-- A digest of a record's record-level index values: the rows they make (vals and toks with
-- item 0, their facets, sorts) need no rewriting while it is unchanged (see _replace_rows).
CREATE TABLE IF NOT EXISTS bibsig (rid INTEGER PRIMARY KEY, sig BLOB NOT NULL);
-- Records a bulk load wrote without their index rows (vals, toks, facets, sorts), to be indexed
-- when it ends (EmbeddedStore.bulk_load).
CREATE TABLE IF NOT EXISTS unindexed (rid INTEGER PRIMARY KEY);
"""
_DEPENDENT_TABLES = ("items", "match_keys", "contributions", "vals", "toks", "facets", "sorts", "bibsig", "unindexed")


class _RowSql:
    """A dependent table's rows of one record: selected and inserted in one column order, and
    one deleted by the columns that identify it (its primary key, or all its columns)."""

    def __init__(self, table: str, columns: tuple[str, ...], identity: tuple[str, ...]):
        self.table = table
        self.select = f"SELECT {', '.join(columns)} FROM {table} WHERE rid = ?"
        self.insert = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        self.delete = f"DELETE FROM {table} WHERE {' AND '.join(f'{c} = ?' for c in identity)}"
        self._positions = [columns.index(c) for c in identity]

    def key(self, row: tuple) -> tuple:
        return tuple(row[i] for i in self._positions)


_ROW_SQL = {
    sql.table: sql
    for sql in (
        _RowSql("match_keys", ("key", "rid"), ("key", "rid")),
        _RowSql("contributions", ("library", "source_id", "rid"), ("library", "source_id", "rid")),
        _RowSql("vals", ("idx", "key", "num", "rid", "item", "vord", "ntok"), ("rid", "item", "idx", "vord")),
        _RowSql("toks", ("idx", "token", "rid", "item", "vord", "pos"), ("rid", "item", "idx", "vord", "pos")),
        _RowSql("facets", ("idx", "value", "rid"), ("idx", "value", "rid")),
        _RowSql("sorts", ("idx", "rid", "skey"), ("idx", "rid")),
    )
}


def table_fingerprint(table: IndexTable) -> str:
    """A hash of everything in the index table that changes what the store indexes."""
    content = [
        (d.name, d.type.value, d.level.value, d.copy_from, d.sortable, d.facet)
        for d in table.indexes
    ]
    return hashlib.sha256(json.dumps([SCHEMA_VERSION, content]).encode()).hexdigest()[:16]


class _ValueAnalysis:
    """exact_key and index_tokens of values, each made once while it is remembered: copy_from
    indexes (`anywhere`) repeat most values of a record, records share publishers, places and
    subjects, and a bulk load rewrites a union record as its contributions arrive. Bounded:
    forgets everything when full. Used by the one writer thread only."""

    def __init__(self, limit: int = _ANALYSIS_CACHE_VALUES) -> None:
        self._limit = limit
        self._keys: dict[str, str] = {}
        self._tokens: dict[str, list[str]] = {}

    def key(self, value: str) -> str:
        key = self._keys.get(value)
        if key is None:
            if len(self._keys) >= self._limit:
                self._keys.clear()
            key = self._keys[value] = exact_key(value)
        return key

    def tokens(self, value: str) -> list[str]:
        tokens = self._tokens.get(value)
        if tokens is None:
            if len(self._tokens) >= self._limit:
                self._tokens.clear()
            tokens = self._tokens[value] = index_tokens(value)
        return tokens


@dataclass
class _Rows:
    """The index rows of one record (or of several), ready for executemany."""

    vals: list[tuple] = field(default_factory=list)
    toks: list[tuple] = field(default_factory=list)
    facets: list[tuple] = field(default_factory=list)
    sorts: list[tuple] = field(default_factory=list)

    def extend(self, other: "_Rows") -> None:
        self.vals.extend(other.vals)
        self.toks.extend(other.toks)
        self.facets.extend(other.facets)
        self.sorts.extend(other.sorts)


@dataclass
class _MadeRows:
    """The index rows of some records waiting in `unindexed`, with each one's bibsig."""

    rows: _Rows = field(default_factory=_Rows)
    signatures: list[tuple[int, bytes]] = field(default_factory=list)   # (rid, bibsig)


# -- SQL fragments -----------------------------------------------------------------------------

def glob_pattern(masked: str) -> str:
    """A CQL-masked string as a GLOB pattern: `*` and `?` stay, `[` is made literal."""
    return masked.replace("[", "[[]")


def _is_masked(text: str) -> bool:
    return "*" in text or "?" in text


@dataclass
class _Sql:
    """A SELECT of one column of row ids (records' rid or items' item) and its parameters.

    `text` ends in its WHERE clause, so that `restricted()` can add a condition on the record
    id column `rid_column` (every leaf, item leaves too, knows the record of each row).
    """

    text: str
    params: list[Any]
    rid_column: str = "rid"
    yields_items: bool = False
    # Item leaves: the same SELECT of the items' record ids (an ItemMatch of one condition).
    records_text: str | None = None
    # Records found through their items (a library's holdings can be most of the catalogue).
    from_items: bool = False

    @classmethod
    def leaf(cls, owner: str, rid_column: str, from_where: str, params: list[Any]) -> "_Sql":
        """`SELECT <owner> <from_where>` of a record-level (owner rid) or item-level (owner item) leaf."""
        items = owner.endswith("item")
        return cls(f"SELECT {owner} {from_where}", params, rid_column, yields_items=items,
                   records_text=f"SELECT {rid_column} {from_where}" if items else None)

    def restricted(self, records_node: int) -> tuple[str, list[Any]]:
        """The same SELECT limited to the records stored under `records_node` in temp.qsets."""
        return (
            f"{self.text} AND {self.rid_column} IN (SELECT id FROM temp.qsets WHERE node = ?)",
            [*self.params, records_node],
        )


@dataclass
class _SetOperation:
    """`parts[0] operator parts[1] operator ...`, evaluated left to right."""

    operator: str  # INTERSECT, UNION, EXCEPT
    parts: list["_Plan"]


@dataclass
class _ItemsToRecords:
    """The records holding at least one of a set of items."""

    items: "_Plan"


# A compiled query: a tree evaluated bottom-up into a temporary table (`_Evaluation`), one
# flat statement per node; SQLite's parser overflows on a few levels of nested compound
# SELECTs, which a query of ten ORs already needs.
_Plan = Union[_Sql, _SetOperation, _ItemsToRecords]
_ALL_RECORDS = "SELECT rid FROM records WHERE 1"
_ALL_ITEMS = "SELECT item FROM items WHERE 1"
_ALL_DISTINCT_HOLDERS = "SELECT DISTINCT rid FROM items WHERE 1"


def _all_records() -> _Sql:
    return _Sql(_ALL_RECORDS, [])


def _all_items() -> _Sql:
    return _Sql(_ALL_ITEMS, [], yields_items=True, records_text=_ALL_DISTINCT_HOLDERS)


def _yields_items(plan: "_Plan") -> bool:
    if isinstance(plan, _Sql):
        return plan.yields_items
    if isinstance(plan, _SetOperation):
        return _yields_items(plan.parts[0])
    return False


def _intersect_order(plan: "_Plan") -> int:
    """Which parts of a record-level INTERSECT to evaluate first: the selective ones, so that
    the others are evaluated only over their hits (a library's holdings, NE's complement and
    MatchAll are large)."""
    if isinstance(plan, _Sql):
        if plan.text in (_ALL_RECORDS, _ALL_DISTINCT_HOLDERS):
            return 3
        return 2 if plan.from_items else 0
    if isinstance(plan, _SetOperation):
        return 1
    return 2


class _Compiler:
    """Canonical queries to SQL over the store's tables."""

    def __init__(self, table: IndexTable, frequency: Callable[[str, str], int] | None = None):
        self.table = table
        # Postings of a token in an index (an estimate is enough): which token drives a phrase.
        self.frequency = frequency

    def definition(self, name: str) -> IndexDefinition:
        definition = self.table.get(name)
        if definition is None:
            raise QueryNotSupported(f"unknown index {name!r}")
        return definition

    def records(self, query: Query, item_scope: Query | None = None) -> _Plan:
        plan = self._node(query, in_item=False)
        if item_scope is not None:
            scope = self._item_to_records(self._node(item_scope, in_item=True))
            plan = scope if isinstance(query, MatchAll) else _combine("INTERSECT", plan, scope)
        return plan

    def _node(self, query: Query, in_item: bool) -> _Plan:
        if isinstance(query, MatchAll):
            return _all_items() if in_item else _all_records()
        if isinstance(query, And):
            ranges = None if in_item else self._numeric_ranges(query)
            if ranges is not None:
                return ranges
            if isinstance(query.left, MatchAll):
                return self._node(query.right, in_item)
            if isinstance(query.right, MatchAll):
                return self._node(query.left, in_item)
            return _combine("INTERSECT", self._node(query.left, in_item), self._node(query.right, in_item))
        if isinstance(query, Or):
            return _combine("UNION", self._node(query.left, in_item), self._node(query.right, in_item))
        if isinstance(query, AndNot):
            return _combine("EXCEPT", self._node(query.left, in_item), self._node(query.right, in_item))
        if isinstance(query, ItemMatch):
            inner = self._node(query.query, in_item=True)
            return inner if in_item else self._item_to_records(inner)
        if isinstance(query, Clause):
            return self._clause(query, in_item)
        raise QueryNotSupported(f"unknown query node {type(query).__name__}")

    @staticmethod
    def _item_to_records(items: _Plan) -> _Plan:
        if isinstance(items, _Sql) and items.records_text is not None:
            return _Sql(items.records_text, items.params, items.rid_column, from_items=True)
        return _ItemsToRecords(items)

    def _clause(self, clause: Clause, in_item: bool) -> _Plan:
        definition = self.definition(clause.index)
        item_level = definition.level is IndexLevel.ITEM
        if in_item and not item_level:
            raise QueryNotSupported(f"index {clause.index!r} is not an item index: it cannot be used for one item")
        if item_level and not in_item:
            if clause.relation is Relation.NE:
                positive = self._clause(Clause(clause.index, Relation.EXACT, clause.term), in_item=True)
                return _combine("EXCEPT", _all_records(), self._item_to_records(positive))
            return self._item_to_records(self._clause(clause, in_item=True))
        owner = "item" if in_item else "rid"
        scope = "item != 0" if in_item else "item = 0"
        universe = _all_items() if in_item else _all_records()
        if definition.numeric:
            return self._numeric(definition, clause, owner, scope, universe)
        return self._textual(definition, clause, owner, scope, universe)

    def _numeric_ranges(self, query: And) -> _Plan | None:
        """An AND whose conjuncts bound one record-level number index more than once (`date >= 2016
        and date <= 2019`), with each such group as one leaf; None if there is no such group.

        Evaluated apart, each bound selects most of the catalogue. Together they are one index
        range, for a record whose value lies inside it. A record with several numbers in the
        index may meet each bound with another number (dates 2010 and 2025), so the records
        with more than one number (`vals_multi`: few) are checked bound by bound as well, each
        bound a primary-key lookup (the unary + keeps SQLite, which has no statistics, from
        scanning `vals_num` for it instead).
        """
        conjuncts: list[Query] = []
        pending: list[Query] = [query]
        while pending:
            node = pending.pop()
            if isinstance(node, And):
                pending += [node.right, node.left]
            elif not isinstance(node, MatchAll):
                conjuncts.append(node)
        groups: dict[str, list[Clause]] = {}
        for node in conjuncts:
            if isinstance(node, Clause) and (node.relation in _ORDERING or node.relation is Relation.WITHIN):
                definition = self.table.get(node.index)
                if definition is not None and definition.numeric and definition.level is IndexLevel.RECORD:
                    groups.setdefault(definition.name, []).append(node)
        groups = {name: clauses for name, clauses in groups.items() if len(clauses) > 1}
        if not groups:
            return None
        grouped = {id(clause) for clauses in groups.values() for clause in clauses}
        parts = [self._node(node, in_item=False) for node in conjuncts if id(node) not in grouped]
        for name, clauses in groups.items():
            definition = self.definition(name)
            bounds: list[tuple[str, int]] = []
            for clause in clauses:
                if clause.relation is Relation.WITHIN:
                    if clause.term_high is None:
                        raise QueryNotSupported("within needs two terms")
                    bounds += [(">=", _number(definition, clause.term)), ("<=", _number(definition, clause.term_high))]
                else:
                    bounds.append((_ORDERING[clause.relation], _number(definition, clause.term)))
            inside = " AND ".join(f"num {operator} ?" for operator, _ in bounds)
            each = " AND ".join(
                "EXISTS (SELECT 1 FROM vals v WHERE v.rid = m.rid AND v.item = 0 AND v.idx = m.idx "
                f"AND +v.num {operator} ?)" for operator, _ in bounds
            )
            numbers = [number for _, number in bounds]
            parts.append(_Sql(
                f"SELECT rid FROM (SELECT rid FROM vals WHERE idx = ? AND item = 0 AND {inside} UNION ALL "
                f"SELECT m.rid AS rid FROM vals m INDEXED BY vals_multi WHERE m.idx = ? AND m.item = 0 AND m.vord > 0 "
                f"AND m.num IS NOT NULL AND {each}) WHERE 1",
                [name, *numbers, name, *numbers],
            ))
        return _combine_all("INTERSECT", parts)

    def _numeric(self, definition: IndexDefinition, clause: Clause, owner: str, scope: str, universe: _Sql) -> _Plan:
        def number(term: str | None) -> int:
            return _number(definition, term)

        def where(condition: str, *params: Any) -> _Sql:
            return _Sql.leaf(owner, "rid", f"FROM vals WHERE idx = ? AND {scope} AND {condition}",
                             [definition.name, *params])

        relation = clause.relation
        if relation in (Relation.PHRASE, Relation.EXACT):
            return where("num = ?", number(clause.term))
        if relation in (Relation.ALL, Relation.ANY):
            words = query_words(clause.term) or [clause.term]
            parts = [where("num = ?", number(w)) for w in words]
            return _combine_all("INTERSECT" if relation is Relation.ALL else "UNION", parts)
        if relation is Relation.NE:
            return _combine("EXCEPT", universe, where("num = ?", number(clause.term)))
        if relation in _ORDERING:
            return where(f"num {_ORDERING[relation]} ?", number(clause.term))
        if relation is Relation.WITHIN:
            if clause.term_high is None:
                raise QueryNotSupported("within needs two terms")
            return where("num BETWEEN ? AND ?", number(clause.term), number(clause.term_high))
        raise QueryNotSupported(f"relation {relation.value} is not supported on {definition.name!r}")

    def _textual(self, definition: IndexDefinition, clause: Clause, owner: str, scope: str, universe: _Sql) -> _Plan:
        relation = clause.relation
        text = definition.type is IndexType.TEXT

        def where(condition: str, *params: Any) -> _Sql:
            return _Sql.leaf(owner, "rid", f"FROM vals WHERE idx = ? AND {scope} AND {condition}",
                             [definition.name, *params])

        def key_match(term: str) -> _Plan:
            key = definition.query_key(term)
            if _is_masked(key):
                return where("key GLOB ?", glob_pattern(key))
            return where("key = ?", key)

        if relation is Relation.PHRASE:
            if text:
                return self._phrase(definition, owner, scope, clause.term, clause.anchor_start, clause.anchor_end)
            return key_match(clause.term)
        if relation in (Relation.ALL, Relation.ANY):
            words = query_words(clause.term) or [clause.term]
            if text:
                parts = [self._phrase(definition, owner, scope, w, False, False) for w in words]
            else:
                parts = [key_match(w) for w in words]
            return _combine_all("INTERSECT" if relation is Relation.ALL else "UNION", parts)
        if relation is Relation.EXACT:
            return key_match(clause.term)
        if relation is Relation.NE:
            return _combine("EXCEPT", universe, key_match(clause.term))
        if relation in _ORDERING:
            return where(f"key {_ORDERING[relation]} ?", definition.query_key(clause.term))
        if relation is Relation.WITHIN:
            if clause.term_high is None:
                raise QueryNotSupported("within needs two terms")
            return where("key BETWEEN ? AND ?", definition.query_key(clause.term), definition.query_key(clause.term_high))
        raise QueryNotSupported(f"relation {relation.value} is not supported on {definition.name!r}")

    def _phrase(
        self, definition: IndexDefinition, owner: str, scope: str, term: str, anchor_start: bool, anchor_end: bool
    ) -> _Sql:
        """Tokens at consecutive positions of one value (token n at position p + n).

        The loop is driven by the token with the fewest postings (a CJK phrase's middle bigram,
        which crosses a word boundary, is often rarer than its words): every other token is a
        primary-key probe from each of its postings."""
        tokens = query_tokens(term)
        if not tokens:
            return _Sql.leaf(owner, "rid", f"FROM vals WHERE idx = ? AND {scope}", [definition.name])

        def token_condition(alias: str, token: QueryToken) -> tuple[str, Any]:
            if token.pattern:
                return f"{alias}.token GLOB ?", glob_pattern(token.text)
            return f"{alias}.token = ?", token.text

        k = 0
        if self.frequency is not None and len(tokens) > 1:
            counts = [_PATTERN_FREQUENCY if t.pattern else self.frequency(definition.name, t.text) for t in tokens]
            k = counts.index(min(counts))
        lead = f"t{k}"
        joins: list[str] = []
        join_params: list[Any] = []
        first, first_param = token_condition(lead, tokens[k])
        conditions = [f"{lead}.idx = ?", f"{lead}.{scope}", first]
        where_params: list[Any] = [definition.name, first_param]
        if anchor_start:
            conditions.append(f"{lead}.pos = {k}")
        others = [n for n in range(len(tokens)) if n != k]
        for joined, n in enumerate(others, start=1):
            alias = f"t{n}"
            same_place = (
                f"{alias}.rid = {lead}.rid AND {alias}.item = {lead}.item AND {alias}.idx = {lead}.idx "
                f"AND {alias}.vord = {lead}.vord AND {alias}.pos = {lead}.pos + ({n - k})"
            )
            condition, param = token_condition(alias, tokens[n])
            if joined <= _MAX_PHRASE_JOINS:
                # CROSS JOIN: SQLite has no statistics and would otherwise pick its own outer loop.
                joins.append(f"CROSS JOIN toks {alias} ON {same_place} AND {condition}")
                join_params.append(param)
            else:
                conditions.append(f"EXISTS (SELECT 1 FROM toks {alias} WHERE {same_place} AND {condition})")
                where_params.append(param)
        if anchor_end:
            conditions.append(
                f"EXISTS (SELECT 1 FROM vals v WHERE v.rid = {lead}.rid AND v.item = {lead}.item AND v.idx = {lead}.idx "
                f"AND v.vord = {lead}.vord AND v.ntok = {lead}.pos + {len(tokens) - k})"
            )
        from_where = f"FROM toks {lead} {' '.join(joins)} WHERE {' AND '.join(conditions)}"
        return _Sql.leaf(f"{lead}.{owner}", f"{lead}.rid", from_where, join_params + where_params)

    # -- relevance ----------------------------------------------------------------------------
    def relevance(self, query: Query) -> list[tuple[int, _Sql]]:
        """(weight, records matching) pairs whose weights add up to a hit's relevance score.

        Every positive text condition of the query (not under NOT, not NE) adds, for each index
        it searches (a copy_from index like `anywhere`: each source index), its weight if the
        phrase occurs there, and a title bonus when the phrase starts the title or is all of it.
        """
        scores: list[tuple[int, _Sql]] = []
        required = self._required_phrases(query)
        for index, term in self._positive_phrases(query)[:_RELEVANCE_PHRASES]:
            definition = self.definition(index)
            for name in definition.copy_from or (definition.name,):
                source = self.table.get(name)
                if source is None or source.type is not IndexType.TEXT or source.level is not IndexLevel.RECORD:
                    continue
                weight = _RELEVANCE_WEIGHTS.get(name, 1)
                if (name, term) not in required:  # every hit has it: the same weight for all
                    scores.append((weight, self._phrase(source, "rid", "item = 0", term, False, False)))
                if name == "title":
                    scores.append((_TITLE_START_BONUS, self._phrase(source, "rid", "item = 0", term, True, False)))
                    scores.append((_TITLE_EXACT_BONUS, _Sql(
                        "SELECT rid FROM vals WHERE idx = ? AND item = 0 AND key = ?", [name, exact_key(term)])))
        return scores

    def _required_phrases(self, query: Query) -> set[tuple[str, str]]:
        """(index, phrase) pairs that every hit of `query` has in that very index: the phrases
        of the clauses ANDed at its top (an anchored or exact phrase implies the plain one)."""
        if isinstance(query, And):
            return self._required_phrases(query.left) | self._required_phrases(query.right)
        if isinstance(query, AndNot):
            return self._required_phrases(query.left)
        if not isinstance(query, Clause):
            return set()
        definition = self.table.get(query.index)
        if definition is None or definition.type is not IndexType.TEXT or definition.level is not IndexLevel.RECORD:
            return set()
        if query.relation is Relation.PHRASE:
            return {(definition.name, query.term)}
        if query.relation is Relation.ALL:
            return {(definition.name, word) for word in query_words(query.term)}
        return set()

    def _positive_phrases(self, query: Query) -> list[tuple[str, str]]:
        if isinstance(query, (And, Or)):
            return self._positive_phrases(query.left) + self._positive_phrases(query.right)
        if isinstance(query, AndNot):
            return self._positive_phrases(query.left)
        if not isinstance(query, Clause):
            return []
        definition = self.table.get(query.index)
        if definition is None or definition.type is not IndexType.TEXT or definition.level is not IndexLevel.RECORD:
            return []
        if query.relation in (Relation.PHRASE, Relation.EXACT):
            return [(query.index, query.term)] if query_tokens(query.term) else []
        if query.relation in (Relation.ALL, Relation.ANY):
            return [(query.index, word) for word in query_words(query.term) if query_tokens(word)]
        return []

    # -- sort -------------------------------------------------------------------------------
    def sort_definitions(self, keys: tuple[SortKey, ...]) -> list[IndexDefinition]:
        definitions = []
        for key in keys:
            definition = self.definition(key.index)
            if definition.level is not IndexLevel.RECORD or not definition.sortable:
                raise QueryNotSupported(f"index {key.index!r} is not sortable")
            definitions.append(definition)
        return definitions


_ORDERING = {Relation.LT: "<", Relation.LE: "<=", Relation.GT: ">", Relation.GE: ">="}


def _number(definition: IndexDefinition, term: str | None) -> int:
    """A query term of a number index as the integer stored values are compared with."""
    try:
        value = int(str(term).strip())
    except ValueError:
        raise QueryNotSupported(f"index {definition.name!r} needs a number, not {term!r}") from None
    if not INT64_MIN <= value <= INT64_MAX:
        raise QueryNotSupported(f"index {definition.name!r}: {term!r} is out of the 64-bit range")
    return value

# Relevance (the order of hits without sort keys): what a reader searching a catalogue expects
# first is a match in the title, then in the author, then in the subject headings.
_RELEVANCE_WEIGHTS = {"title": 8, "creator": 5, "subject": 4, "series": 2, "publisher": 2}
_TITLE_START_BONUS = 3
_TITLE_EXACT_BONUS = 8
_RELEVANCE_PHRASES = 8  # phrases of one query that are scored (a long `any` list ranks by its first ones)
_PATTERN_FREQUENCY = 1 << 62  # a masked token's postings are not counted: never the one that drives
_FREQUENCY_CAP = 20_000  # postings counted per token at most (enough to tell rare from common)
_FREQUENCIES_KEPT = 100_000
_SIGNATURE_BYTES = 8  # per record-level index in bibsig


def _combine(operator: str, left: _Plan, right: _Plan) -> _Plan:
    """`left operator right`, flattening chains of one operator (no deep trees to evaluate)."""
    parts = left.parts if isinstance(left, _SetOperation) and left.operator == operator else [left]
    if operator != "EXCEPT" and isinstance(right, _SetOperation) and right.operator == operator:
        return _SetOperation(operator, [*parts, *right.parts])  # INTERSECT and UNION are associative
    return _SetOperation(operator, [*parts, right])


def _combine_all(operator: str, parts: list[_Plan]) -> _Plan:
    result = parts[0]
    for part in parts[1:]:
        result = _combine(operator, result, part)
    return result


class _Evaluation:
    """Evaluates a plan on one connection into `temp.qsets` (node, id); `clear()` after use."""

    def __init__(self, connection: sqlite3.Connection):
        self.connection = connection
        self.nodes = 0
        connection.execute(
            "CREATE TEMP TABLE IF NOT EXISTS qsets (node INTEGER NOT NULL, id INTEGER NOT NULL, "
            "PRIMARY KEY (node, id)) WITHOUT ROWID"
        )
        connection.execute("CREATE TEMP TABLE IF NOT EXISTS hits (rid INTEGER PRIMARY KEY)")
        connection.execute("CREATE TEMP TABLE IF NOT EXISTS scores (rid INTEGER PRIMARY KEY, score INTEGER NOT NULL)")

    def run(self, plan: _Plan, within: int | None = None) -> int:
        """Evaluates `plan`, limited to the records under node `within` if given; returns the
        node number its ids are stored under."""
        if isinstance(plan, _Sql):
            text, params = (plan.text, plan.params) if within is None else plan.restricted(within)
            node = self._node()
            self.connection.execute(
                f"INSERT OR IGNORE INTO temp.qsets (node, id) SELECT ?, * FROM ({text})", [node, *params]
            )
            return node
        if isinstance(plan, _ItemsToRecords):
            items = self.run(plan.items, within)
            node = self._node()
            self.connection.execute(
                "INSERT OR IGNORE INTO temp.qsets (node, id) SELECT ?, i.rid FROM temp.qsets q "
                "JOIN items i ON i.item = q.id WHERE q.node = ?",
                (node, items),
            )
            return node
        if plan.operator == "INTERSECT" and not _yields_items(plan):
            # Each part only over the records that passed the parts before it: the last
            # result is the intersection.
            for part in sorted(plan.parts, key=_intersect_order):
                within = self.run(part, within)
            assert within is not None
            return within
        parts = [self.run(part, within) for part in plan.parts]
        while True:
            # SQLite allows at most 500 terms in one compound SELECT: go on from the partial result.
            node = self._node()
            chain = f" {plan.operator} ".join("SELECT id FROM temp.qsets WHERE node = ?" for _ in parts[:_COMPOUND_TERMS])
            self.connection.execute(
                f"INSERT INTO temp.qsets (node, id) SELECT ?, id FROM ({chain})", [node, *parts[:_COMPOUND_TERMS]]
            )
            if len(parts) <= _COMPOUND_TERMS:
                return node
            parts = [node, *parts[_COMPOUND_TERMS:]]

    def _node(self) -> int:
        self.nodes += 1
        return self.nodes

    def into_hits(self, plan: _Plan) -> None:
        """Evaluates `plan` into `temp.hits` (rid)."""
        self.connection.execute("DELETE FROM temp.hits")
        if isinstance(plan, _Sql):
            self.connection.execute(f"INSERT OR IGNORE INTO temp.hits (rid) SELECT * FROM ({plan.text})", plan.params)
            return
        node = self.run(plan)
        self.connection.execute("INSERT INTO temp.hits (rid) SELECT id FROM temp.qsets WHERE node = ?", (node,))

    def clear(self) -> None:
        for table in ("qsets", "hits", "scores"):
            self.connection.execute(f"DELETE FROM temp.{table}")


class _TokenFrequencies:
    """How many postings a token has in an index, counted up to `_FREQUENCY_CAP` and kept for a
    few minutes: only the order of a phrase's joins depends on it, never its answer."""

    def __init__(self, ttl: float = 300.0):
        self.ttl = ttl
        self._counts: dict[tuple[str, str], tuple[int, float]] = {}
        self._lock = threading.Lock()

    def get(self, connection: sqlite3.Connection, index: str, token: str) -> int:
        now = time.monotonic()
        with self._lock:
            kept = self._counts.get((index, token))
        if kept is not None and now - kept[1] < self.ttl:
            return kept[0]
        count = connection.execute(
            "SELECT COUNT(*) FROM (SELECT 1 FROM toks WHERE idx = ? AND token = ? LIMIT ?)",
            (index, token, _FREQUENCY_CAP),
        ).fetchone()[0]
        with self._lock:
            if len(self._counts) >= _FREQUENCIES_KEPT:
                self._counts.clear()
            self._counts[(index, token)] = (count, now)
        return count


# -- cursors -------------------------------------------------------------------------------------

def _signature(keys: tuple[SortKey, ...]) -> str:
    raw = json.dumps([[k.index, k.ascending, k.missing_first] for k in keys])
    return hashlib.sha256(raw.encode()).hexdigest()[:12]


def _encode_cursor(values: list[Any], signature: str) -> str:
    raw = json.dumps({"s": signature, "v": values}, ensure_ascii=False, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, signature: str, length: int) -> list[Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        values = data["v"]
        if data["s"] != signature or not isinstance(values, list) or len(values) != length:
            raise ValueError
        if not all(isinstance(v, (str, int, float)) for v in values):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise QueryNotSupported("the cursor does not belong to this query's sort order") from None
    return values


# -- the store -----------------------------------------------------------------------------------

class EmbeddedStore(Store):
    """A `Store` in one SQLite database.

    `path` is a directory (the database is `catalogue.sqlite3` in it) or a file ending in
    `.sqlite3` / `.sqlite` / `.db`; it is created when missing.
    """

    def __init__(self, path: str | Path, table: IndexTable, *, reader_threads: int = _READER_THREADS,
                 result_cache: int = DEFAULT_RESULT_CACHE):
        path = Path(path)
        self.path = path if path.suffix in (".sqlite3", ".sqlite", ".db") else path / DATABASE_NAME
        self.table = table
        self.compiler = _Compiler(table)
        self._reader_threads = reader_threads
        self._writer: sqlite3.Connection | None = None
        self._write_executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._read_executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._open_lock = asyncio.Lock()
        self._analysed = _ValueAnalysis()
        self.decoded_records = DecodedRecords(_decode_payload)
        self.results = ResultCache(result_cache)
        self._frequencies = _TokenFrequencies()
        self._item_facets = tuple(d.name for d in table.item_indexes() if d.facet)
        self._deferred = False  # inside bulk_load: upserts leave their index rows for its end

    # -- connections ----------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_MS / 1000)
        connection.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        connection.execute("PRAGMA synchronous = FULL")
        connection.execute("PRAGMA foreign_keys = OFF")
        # The query evaluation's temporary tables stay in memory.
        connection.execute("PRAGMA temp_store = MEMORY")
        return connection

    def _reader(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            connection.execute(f"PRAGMA cache_size = -{_READER_CACHE_KIB}")
            self._local.connection = connection
            with self._readers_lock:
                self._readers.append(connection)
        return connection

    async def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._writer is None or self._write_executor is None:
            raise StoreError(f"{self.path}: the store is not open")
        writer = self._writer

        def run() -> T:
            writer.execute("BEGIN IMMEDIATE")
            try:
                result = work(writer)
                _next_generation(writer)
            except BaseException:
                writer.execute("ROLLBACK")
                raise
            writer.execute("COMMIT")
            return result

        return await asyncio.get_running_loop().run_in_executor(self._write_executor, run)

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if self._read_executor is None:
            raise StoreError(f"{self.path}: the store is not open")

        def run() -> T:
            reader = self._reader()
            reader.execute("BEGIN")
            try:
                return work(reader)
            finally:
                reader.execute("COMMIT")

        return await asyncio.get_running_loop().run_in_executor(self._read_executor, run)

    # -- lifecycle --------------------------------------------------------------------------
    async def open(self) -> None:
        async with self._open_lock:
            if self._writer is not None:
                return
            self._write_executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="embedded-write")
            self._read_executor = concurrent.futures.ThreadPoolExecutor(
                self._reader_threads, thread_name_prefix="embedded-read"
            )
            loop = asyncio.get_running_loop()
            try:
                self._writer = await loop.run_in_executor(self._write_executor, self._open_writer)
            except (sqlite3.Error, OSError) as error:
                self._shutdown_executors()
                raise StoreError(f"{self.path}: cannot open the embedded store: {error}") from error
            except BaseException:
                self._shutdown_executors()
                raise

    def _open_writer(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = self._connect()
        try:
            # Bulk loads insert into large indexes in key order of tokens, not of records: a
            # larger page cache keeps their upper levels in memory.
            connection.execute(f"PRAGMA cache_size = -{_WRITER_CACHE_KIB}")
            mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"{self.path}: SQLite refused WAL mode (journal_mode={mode})")
            connection.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
            connection.execute("BEGIN IMMEDIATE")
            connection.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', '0')")
            fingerprint = table_fingerprint(self.table)
            row = connection.execute("SELECT value FROM meta WHERE key = 'index_table'").fetchone()
            if row is None or row[0] != fingerprint:
                self._reindex_all(connection)
                connection.execute(
                    "INSERT INTO meta (key, value) VALUES ('index_table', ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (fingerprint,),
                )
                _next_generation(connection)
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            connection.close()
            raise
        return connection

    def _reindex_all(self, connection: sqlite3.Connection) -> None:
        """Rebuild every index row from the stored payloads (the index table changed)."""
        for table in _DEPENDENT_TABLES:
            connection.execute(f"DELETE FROM {table}")
        last = 0
        while True:  # in pages: the payloads of a large catalogue do not fit in memory
            page = connection.execute(
                "SELECT rid, payload FROM records WHERE rid > ? ORDER BY rid LIMIT ?", (last, _CHUNK)
            ).fetchall()
            if not page:
                return
            for rid, payload in page:
                self._insert_rows(connection, rid, _decode_payload(payload))
            last = page[-1][0]

    def _shutdown_executors(self) -> None:
        executors = (self._write_executor, self._read_executor)
        self._write_executor = self._read_executor = None  # new calls now fail as "not open"
        _shutdown(executors)

    async def close(self) -> None:
        """Waits for running reads and writes (in a thread: the event loop keeps serving)."""
        writer, self._writer = self._writer, None
        executors = (self._write_executor, self._read_executor)
        self._write_executor = self._read_executor = None  # new calls now fail as "not open"
        await asyncio.to_thread(_shutdown, executors)
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for connection in readers:
            connection.close()
        self._local = threading.local()
        if writer is not None:
            writer.close()

    async def ping(self) -> bool:
        try:
            return await self._read(lambda c: c.execute("SELECT 1").fetchone()[0] == 1)
        except (StoreError, sqlite3.Error):
            return False

    # -- write path -------------------------------------------------------------------------
    def _bib_values(self, record: UnionRecord) -> list[tuple[IndexDefinition, list[str]]]:
        """The record's values in each record-level index: all its record-level rows come from these."""
        return [(definition, record_values(record, definition)) for definition in self.table.record_indexes()]

    @staticmethod
    def _bib_signature(bib: list[tuple[IndexDefinition, list[str]]]) -> bytes:
        """A digest of each record-level index's values, in the table's order, one after another."""
        return b"".join(
            hashlib.blake2b(repr(values).encode("utf-8", "surrogatepass"), digest_size=_SIGNATURE_BYTES).digest()
            for _, values in bib
        )

    def _index_rows(self, rid: int, record: UnionRecord, item_ids: list[int],
                    bib: list[tuple[IndexDefinition, list[str]]]) -> _Rows:
        """The record's rows in vals, toks, facets and sorts: its items', and those of the
        record-level indexes in `bib` (with the values it holds in each)."""
        rows = _Rows()
        analysed = self._analysed
        for definition, values in bib:
            self._value_rows(rows, definition, values, rid, 0, analysed)
            if definition.facet:
                for value in dict.fromkeys(f for f in (facet_value(definition, v) for v in values) if f is not None):
                    rows.facets.append((definition.name, value, rid))
            if definition.sortable:
                key: Any = None
                if definition.numeric:
                    key = next((n for n in (numeric_value(definition, v) for v in values) if n is not None), None)
                elif values:
                    key = exact_key(values[0])
                if key is not None:
                    rows.sorts.append((definition.name, rid, key))
        items = record.items
        for definition in self.table.item_indexes():
            facet_values: dict[str, None] = {}
            for item, item_id in zip(items, item_ids):
                value = item_value(item, definition)
                if value is None:
                    continue
                self._value_rows(rows, definition, [value], rid, item_id, analysed)
                if definition.facet:
                    facet = facet_value(definition, value)
                    if facet is not None:
                        facet_values[facet] = None
            rows.facets.extend((definition.name, value, rid) for value in facet_values)
        return rows

    @staticmethod
    def _value_rows(
        rows: _Rows,
        definition: IndexDefinition,
        values: list[str],
        rid: int,
        item: int,
        analysed: "_ValueAnalysis",
    ) -> None:
        if definition.numeric:
            numbers = dict.fromkeys(n for n in (numeric_value(definition, v) for v in values) if n is not None)
            rows.vals.extend((definition.name, None, n, rid, item, vord, 0) for vord, n in enumerate(numbers))
            return
        text = definition.type is IndexType.TEXT
        for vord, value in enumerate(values):
            tokens = analysed.tokens(value) if text else []
            rows.vals.append((definition.name, analysed.key(value), None, rid, item, vord, len(tokens)))
            rows.toks.extend((definition.name, token, rid, item, vord, pos) for pos, token in enumerate(tokens))

    @staticmethod
    def _owner_rows(rid: int, record: UnionRecord) -> dict[str, list[tuple]]:
        return {
            "match_keys": [(k, rid) for k in dict.fromkeys(record.match_keys)],
            "contributions": [(c.library, c.source_id, rid) for c in record.contributions],
        }

    def _all_rows(self, rid: int, record: UnionRecord, item_ids: list[int],
                  bib: list[tuple[IndexDefinition, list[str]]]) -> dict[str, list[tuple]]:
        """The record's rows in the dependent tables but items and bibsig, by table: those of
        its items and of the record-level indexes in `bib`."""
        rows = self._index_rows(rid, record, item_ids, bib)
        return {**self._owner_rows(rid, record), "vals": rows.vals, "toks": rows.toks, "facets": rows.facets,
                "sorts": rows.sorts}

    def _insert_rows(self, connection: sqlite3.Connection, rid: int, record: UnionRecord) -> None:
        item_ids = []
        for item in record.items:
            cursor = connection.execute(
                "INSERT INTO items (rid, barcode, library, tier) VALUES (?, ?, ?, ?)",
                (rid, item.barcode, item.library, item.tier),
            )
            item_ids.append(cursor.lastrowid)
        bib = self._bib_values(record)
        for table, rows in self._all_rows(rid, record, item_ids, bib).items():
            connection.executemany(_ROW_SQL[table].insert, rows)
        connection.execute("INSERT INTO bibsig (rid, sig) VALUES (?, ?)", (rid, self._bib_signature(bib)))

    @staticmethod
    def _stored_items(connection: sqlite3.Connection, rid: int) -> dict[tuple[str, str, str], list[int]]:
        """The record's item rows: (barcode, library, tier) -> item row ids, in row order."""
        stored_items: dict[tuple[str, str, str], list[int]] = {}
        for item_id, barcode, library, tier in connection.execute(
            "SELECT item, barcode, library, tier FROM items WHERE rid = ? ORDER BY item", (rid,)
        ):
            stored_items.setdefault((barcode, library, tier), []).append(item_id)
        return stored_items

    def _item_ids(self, connection: sqlite3.Connection, rid: int, record: UnionRecord) -> list[int]:
        """The item row ids of the record's items, in its order: the stored rows of the same
        items kept (their index rows stay valid), rows added for new items, rows of items the
        record no longer has deleted."""
        stored_items = self._stored_items(connection, rid)
        item_ids = []
        for item in record.items:
            same = stored_items.get((item.barcode, item.library, item.tier))
            if same:
                item_ids.append(same.pop(0))
            else:
                cursor = connection.execute(
                    "INSERT INTO items (rid, barcode, library, tier) VALUES (?, ?, ?, ?)",
                    (rid, item.barcode, item.library, item.tier),
                )
                item_ids.append(cursor.lastrowid)
        gone = [(item_id,) for ids in stored_items.values() for item_id in ids]
        if gone:
            connection.executemany("DELETE FROM items WHERE item = ?", gone)
        return item_ids

    @staticmethod
    def _sync_rows(connection: sqlite3.Connection, rid: int, table: str, rows: list[tuple],
                   where: str = "", parameters: tuple = ()) -> None:
        """Make the record's rows of `table` (those `where` selects) equal to `rows`, touching
        only the rows that differ."""
        sql = _ROW_SQL[table]
        wanted = dict.fromkeys(rows)
        stored = dict.fromkeys(connection.execute(sql.select + where, (rid, *parameters)))
        gone = [sql.key(row) for row in stored if row not in wanted]
        if gone:
            connection.executemany(sql.delete, gone)
        new = [row for row in wanted if row not in stored]
        if new:
            connection.executemany(sql.insert, new)

    def _replace_rows(self, connection: sqlite3.Connection, rid: int, record: UnionRecord) -> None:
        """Bring a stored record's rows to what `record` needs, touching only the rows that
        differ. A bulk load rewrites a union record each time another library's contribution
        arrives, mostly adding items: rewriting all its rows cost most of the load time."""
        item_ids = self._item_ids(connection, rid, record)
        # A new contribution mostly brings items and a few values (its control number): the
        # rows of the record-level indexes whose values are the same (most of a record's rows)
        # are left as they are.
        bib = self._bib_values(record)
        signature = self._bib_signature(bib)
        row = connection.execute("SELECT sig FROM bibsig WHERE rid = ?", (rid,)).fetchone()
        stored_signature = row[0] if row is not None and len(row[0]) == len(signature) else None
        changed = [
            (definition, values) for n, (definition, values) in enumerate(bib)
            if stored_signature is None
            or signature[n * _SIGNATURE_BYTES:(n + 1) * _SIGNATURE_BYTES]
            != stored_signature[n * _SIGNATURE_BYTES:(n + 1) * _SIGNATURE_BYTES]
        ]
        rewritten = tuple(definition.name for definition, _ in changed)
        for table, rows in self._all_rows(rid, record, item_ids, changed).items():
            if table in ("vals", "toks"):
                self._sync_rows(connection, rid, table, rows,
                                f" AND (item != 0 OR idx IN ({','.join('?' * len(rewritten))}))", rewritten)
            elif table in ("facets", "sorts"):
                names = rewritten + self._item_facets if table == "facets" else rewritten
                self._sync_rows(connection, rid, table, rows, f" AND idx IN ({','.join('?' * len(names))})", names)
            else:
                self._sync_rows(connection, rid, table, rows)
        if changed:
            connection.execute("INSERT INTO bibsig (rid, sig) VALUES (?, ?) ON CONFLICT (rid) DO UPDATE SET sig = excluded.sig",
                               (rid, signature))
        connection.execute("DELETE FROM unindexed WHERE rid = ?", (rid,))

    @staticmethod
    def _delete_rows(connection: sqlite3.Connection, rid: int) -> None:
        for table in _DEPENDENT_TABLES:
            connection.execute(f"DELETE FROM {table} WHERE rid = ?", (rid,))

    def _put(self, connection: sqlite3.Connection, record: UnionRecord, *, deferred: bool = False) -> None:
        """Store the record whole with its rows; `deferred`: only its payload, items and the
        write path's lookup rows, its index rows left to `_index_unindexed`."""
        payload = _encode_payload(record)
        row = connection.execute("SELECT rid FROM records WHERE id = ?", (record.id,)).fetchone()
        if row is None:
            rid = connection.execute("INSERT INTO records (id, payload) VALUES (?, ?)", (record.id, payload)).lastrowid
            assert rid is not None
            if not deferred:
                self._insert_rows(connection, rid, record)
                return
        else:
            rid = row[0]
            connection.execute("UPDATE records SET payload = ? WHERE rid = ?", (payload, rid))
            if not deferred:
                self._replace_rows(connection, rid, record)
                return
        # What would fail to index must fail now, alone, as it does when indexed at once.
        for name, values in record.fields.items():
            for value in values:
                if not isinstance(value, str):
                    raise TypeError(f"the value {value!r} of index {name} is not text")
        self._item_ids(connection, rid, record)
        for table, rows in self._owner_rows(rid, record).items():
            self._sync_rows(connection, rid, table, rows)
        connection.execute("INSERT OR IGNORE INTO unindexed (rid) VALUES (?)", (rid,))

    def _make_rows(self, made: _MadeRows, rid: int, record: UnionRecord, item_ids: list[int]) -> None:
        """Add the record's index rows and bibsig to `made`."""
        bib = self._bib_values(record)
        made.rows.extend(self._index_rows(rid, record, item_ids, bib))
        made.signatures.append((rid, self._bib_signature(bib)))

    @staticmethod
    def _write_made(connection: sqlite3.Connection, made: _MadeRows) -> None:
        """Write made rows and bibsigs, replacing the records' rows from before the load (a
        record indexed, then rewritten in it)."""
        done = [(rid,) for rid, _ in made.signatures]
        for table in ("vals", "toks", "facets", "sorts"):
            connection.executemany(f"DELETE FROM {table} WHERE rid = ?", done)
            connection.executemany(_ROW_SQL[table].insert, getattr(made.rows, table))
        connection.executemany(
            "INSERT INTO bibsig (rid, sig) VALUES (?, ?) ON CONFLICT (rid) DO UPDATE SET sig = excluded.sig",
            made.signatures)

    @staticmethod
    def _forget_indexed(connection: sqlite3.Connection, signatures: list[tuple[int, bytes]]) -> None:
        connection.executemany("DELETE FROM unindexed WHERE rid = ?", [(rid,) for rid, _ in signatures])

    def _index_some_unindexed(self, connection: sqlite3.Connection, after: int,
                              failures: dict[str, str]) -> tuple[int | None, int]:
        """Index the next `_INDEX_CHUNK` records written deferred (rid > `after`): the last rid
        looked at (None when none was left) and how many were indexed. A record whose rows
        cannot be made is named in `failures` and stays waiting."""
        # Read as they are indexed: the payloads of a chunk are not all held at once.
        page = connection.execute(
            "SELECT u.rid, r.id, r.payload FROM unindexed u JOIN records r ON r.rid = u.rid "
            "WHERE u.rid > ? ORDER BY u.rid LIMIT ?", (after, _INDEX_CHUNK)
        )
        last: int | None = None
        made = _MadeRows()
        indexed: list[tuple[int, bytes]] = []
        for rid, record_id, payload in page:
            last = rid
            try:
                record = _decode_payload(payload)
                self._make_rows(made, rid, record, self._item_ids(connection, rid, record))
            except (zlib.error, ValueError, TypeError, AttributeError, LookupError, sqlite3.Error) as error:
                failures[record_id] = f"cannot index the record: {error!r}"
                continue
            if len(made.rows.vals) + len(made.rows.toks) >= _INDEX_ROWS_HELD:
                self._write_made(connection, made)
                indexed += made.signatures
                made = _MadeRows()
        self._write_made(connection, made)
        indexed += made.signatures
        # Once the page is read: its statement is still stepping through `unindexed` until then.
        self._forget_indexed(connection, indexed)
        if last is None:
            connection.execute("DELETE FROM unindexed WHERE rid NOT IN (SELECT rid FROM records)")
        return last, len(indexed)

    def _stored_item_ids(self, connection: sqlite3.Connection, rid: int, record: UnionRecord) -> list[int] | None:
        """`_item_ids` without writing: None when the stored items are not the record's."""
        stored_items = self._stored_items(connection, rid)
        item_ids = []
        for item in record.items:
            same = stored_items.get((item.barcode, item.library, item.tier))
            if not same:
                return None
            item_ids.append(same.pop(0))
        return item_ids if not any(stored_items.values()) else None

    def _insert_made(self, connection: sqlite3.Connection, made: _MadeRows) -> None:
        self._write_made(connection, made)
        self._forget_indexed(connection, made.signatures)

    async def _index_with_helper(self, indexed: IndexingProgress | None, total: int) -> int:
        """Let another process make the index rows (decoding each record and making its rows
        is most of the indexing's Python work) while this one writes them; how many it did.
        What it leaves (records it could not do; everything, if it fails) is for
        `_index_unindexed`'s own loop."""
        done = 0
        helper = Child.start(*_INDEX_HELPER, (str(self.path), self.table, _INDEX_HELPER_CHUNK))
        try:
            while (made := await asyncio.to_thread(helper.receive)) is not None:
                await self._write(lambda connection: self._insert_made(connection, made))
                done += len(made.signatures)
                if indexed is not None:
                    indexed(done, total)
        finally:
            helper.close()
        return done

    async def _index_unindexed(self, indexed: IndexingProgress | None = None, processes: int = 1) -> int:
        """Index every record written deferred (also those a killed bulk load left), a chunk
        per transaction: a search sees each chunk as it is committed; how many were waiting."""
        failures: dict[str, str] = {}
        total = await self._read(lambda connection: connection.execute("SELECT COUNT(*) FROM unindexed").fetchone()[0])
        done = 0
        if processes > 1 and total >= _INDEX_HELPER_MINIMUM:
            done = await self._index_with_helper(indexed, total)
        last: int | None = 0
        while last is not None:
            after = last
            last, count = await self._write(lambda connection: self._index_some_unindexed(connection, after, failures))
            done += count
            if indexed is not None and total:
                indexed(done, total)
        if failures:
            named = "; ".join(f"{record_id}: {reason}" for record_id, reason in itertools.islice(failures.items(), 5))
            raise StoreError(f"{self.path}: {len(failures)} stored record(s) could not be indexed, "
                             f"so searches do not find them ({named})")
        return total

    async def index_waiting(self, indexed: IndexingProgress | None = None) -> int:
        """Index now the records a stopped bulk load left waiting (the end of any bulk load
        does it too); how many there were."""
        return await self._index_unindexed(indexed)

    @contextlib.asynccontextmanager
    async def bulk_load(self, indexed: IndexingProgress | None = None, processes: int = 1) -> AsyncIterator[None]:
        """Upserts write each record's payload, items and lookup rows and leave its index rows
        to the end of the block: a record rewritten as each library's contribution arrives is
        then indexed once, the rows of many records at once. Until then, searches find the
        records as they were before (new ones not at all); `get` and the lookups see them now.
        The list of records waiting is in the database (`unindexed`): what a killed or
        interrupted load leaves is indexed at the end of the next bulk load. With `processes`
        > 1, another process makes the index rows while this one writes them."""
        if self._deferred:  # nested: the outer block indexes
            yield
            return
        self._deferred = True
        try:
            yield
        except Exception:
            self._deferred = False
            await self._index_unindexed(indexed, processes)  # what was written before the error is searched too
            raise
        except BaseException:
            self._deferred = False  # interrupted (Ctrl-C, cancelled): the next bulk load indexes it
            raise
        self._deferred = False
        await self._index_unindexed(indexed, processes)

    async def upsert(self, records: Sequence[UnionRecord]) -> BulkResult:
        deferred = self._deferred

        def work(connection: sqlite3.Connection) -> BulkResult:
            result = BulkResult()
            for record in records:
                if not record.id:
                    result.failed.append((record.id, "the id must not be empty"))
                    continue
                connection.execute("SAVEPOINT record")
                try:
                    self._put(connection, record, deferred=deferred)
                except (sqlite3.Error, ValueError, TypeError, AttributeError, LookupError) as error:
                    # One bad record must not stop the batch: undo its partial rows only.
                    connection.execute("ROLLBACK TO record")
                    connection.execute("RELEASE record")
                    result.failed.append((record.id, f"cannot store the record: {error!r}"))
                    continue
                connection.execute("RELEASE record")
                result.succeeded += 1
            return result

        return await self._write(work)

    async def delete(self, ids: Sequence[str]) -> BulkResult:
        def work(connection: sqlite3.Connection) -> BulkResult:
            for record_id in ids:
                row = connection.execute("SELECT rid FROM records WHERE id = ?", (record_id,)).fetchone()
                if row is not None:
                    self._delete_rows(connection, row[0])
                    connection.execute("DELETE FROM records WHERE rid = ?", (row[0],))
            # Deleting an absent record leaves the store as asked: not a failure.
            return BulkResult(succeeded=len(dict.fromkeys(ids)))

        return await self._write(work)

    async def update_items(self, updates: Sequence[ItemStatusUpdate]) -> list[ItemUpdateOutcome]:
        """Rewrites the affected records' payload and item rows in one transaction; the
        bibliographic rows are rewritten from the stored extraction, never re-extracted."""

        def work(connection: sqlite3.Connection) -> list[ItemUpdateOutcome]:
            outcomes: list[ItemUpdateOutcome] = []
            changed: dict[int, UnionRecord] = {}
            ids: dict[int, str] = {}
            for update in updates:
                row = connection.execute(
                    "SELECT r.rid, r.id FROM items i JOIN records r ON r.rid = i.rid WHERE i.barcode = ? "
                    "ORDER BY r.id LIMIT 1",
                    (update.barcode,),
                ).fetchone()
                if row is None:
                    outcomes.append(ItemUpdateOutcome(update.barcode, False, None, "unknown barcode"))
                    continue
                rid, record_id = row
                record = changed.get(rid)
                if record is None:
                    payload = connection.execute("SELECT payload FROM records WHERE rid = ?", (rid,)).fetchone()[0]
                    record = changed[rid] = _decode_payload(payload)
                    ids[rid] = record_id
                record.apply_status(update)
                outcomes.append(ItemUpdateOutcome(update.barcode, True, record_id))
            for rid, record in changed.items():
                self._put(connection, record)
            return outcomes

        return await self._write(work)

    async def refresh(self) -> None:
        """Every committed write is visible to the next read transaction (inside `bulk_load`,
        to reads by id and the write path's lookups, search at its end): nothing to do."""

    # -- lookups for the write path -----------------------------------------------------------
    async def find_by_match_keys(self, keys: Sequence[str]) -> dict[str, list[str]]:
        def work(connection: sqlite3.Connection) -> dict[str, list[str]]:
            found: dict[str, set[str]] = {}
            for chunk in _chunks(list(dict.fromkeys(keys))):
                marks = ",".join("?" * len(chunk))
                for key, record_id in connection.execute(
                    f"SELECT m.key, r.id FROM match_keys m JOIN records r ON r.rid = m.rid WHERE m.key IN ({marks})", chunk
                ):
                    found.setdefault(key, set()).add(record_id)
            return {key: sorted(ids) for key, ids in found.items()}

        return await self._read(work)

    async def find_by_contribution(self, library: str, source_ids: Sequence[str]) -> dict[str, str]:
        def work(connection: sqlite3.Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            for chunk in _chunks(list(dict.fromkeys(source_ids))):
                marks = ",".join("?" * len(chunk))
                for source_id, record_id in connection.execute(
                    f"SELECT c.source_id, MIN(r.id) FROM contributions c JOIN records r ON r.rid = c.rid "
                    f"WHERE c.library = ? AND c.source_id IN ({marks}) GROUP BY c.source_id",
                    [library, *chunk],
                ):
                    found[source_id] = record_id
            return found

        return await self._read(work)

    async def ids_of_library(self, library: str) -> list[str]:
        return await self._read(
            lambda c: [
                row[0]
                for row in c.execute(
                    "SELECT DISTINCT r.id FROM contributions c JOIN records r ON r.rid = c.rid "
                    "WHERE c.library = ? ORDER BY r.id",
                    (library,),
                )
            ]
        )

    async def find_by_barcode(self, barcodes: Sequence[str]) -> dict[str, str]:
        def work(connection: sqlite3.Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            for chunk in _chunks(list(dict.fromkeys(barcodes))):
                marks = ",".join("?" * len(chunk))
                for barcode, record_id in connection.execute(
                    f"SELECT i.barcode, MIN(r.id) FROM items i JOIN records r ON r.rid = i.rid "
                    f"WHERE i.barcode IN ({marks}) GROUP BY i.barcode",
                    chunk,
                ):
                    found[barcode] = record_id
            return found

        return await self._read(work)

    # -- read path --------------------------------------------------------------------------
    async def get(self, ids: Sequence[str], *, shared: bool = False) -> list[UnionRecord | None]:
        payloads = await self._read(lambda connection: _payloads(connection, ids))
        return self._records(ids, payloads, shared)

    def _records(self, ids: Sequence[str], payloads: dict[str, bytes | str], shared: bool) -> list[UnionRecord | None]:
        if shared:
            return [self.decoded_records.shared(i, payloads[i]) if i in payloads else None for i in ids]
        return [_decode_payload(payloads[i]) if i in payloads else None for i in ids]

    async def search(self, request: SearchRequest) -> SearchResult:
        sort_definitions = self.compiler.sort_definitions(request.sort)
        facet_definitions = [self._facet_definition(f) for f in request.facets]
        signature = _signature(request.sort)
        # Cursor values: (present, key) per sort key and the id; or the relevance score and the id.
        cursor_length = 2 * len(request.sort) + 1 if request.sort else 2
        after = _decode_cursor(request.after, signature, cursor_length) if request.after is not None else None
        limit = max(request.limit, 0)
        offset = 0 if after is not None else max(request.offset, 0)

        kept = rows_to_fetch(offset, limit) if after is None and self.results.capacity > 0 else None

        def work(connection: sqlite3.Connection) -> tuple[SearchResult, dict[str, bytes | str] | None]:
            generation = _generation(connection) if kept is not None else None
            fetch = kept if generation is not None else None
            if fetch is not None:
                key = (generation, request.query, request.item_scope, request.sort, request.facets)
                cached = self.results.get(key)
                if cached is not None and cached.answers(offset, limit):
                    result = _page(cached.total, cached.rows[offset:], limit, cached.facets, signature)
                    return result, _payloads(connection, result.ids) if request.with_records else None
            compiler = self._reading_compiler(connection)
            hits = self._compile(request.query, request.item_scope, compiler)
            evaluation = _Evaluation(connection)
            try:
                evaluation.into_hits(hits)
                if fetch is None:
                    total, rows, facets = self._search_in(connection, compiler, request, sort_definitions,
                                                          facet_definitions, after, offset, limit)
                    result = _page(total, rows, limit, facets, signature)
                else:
                    # From the first hit on, a few pages at once: the next pages come from the cache.
                    total, rows, facets = self._search_in(connection, compiler, request, sort_definitions,
                                                          facet_definitions, None, 0, max(fetch - 1, 0))
                    self.results.put(key, CachedResult(total, tuple(rows), len(rows) < fetch, tuple(facets)))
                    result = _page(total, rows[offset:], limit, facets, signature)
            finally:
                evaluation.clear()
            # The page's records from the same snapshot, without a second trip to a reader thread.
            return result, _payloads(connection, result.ids) if request.with_records else None

        result, payloads = await self._query(work)
        if payloads is not None:
            result.records = self._records(result.ids, payloads, shared=True)
        return result

    async def _query(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """A read that runs a compiled query: what SQLite refuses is the query's fault."""
        try:
            return await self._read(work)
        except sqlite3.OperationalError as error:
            raise QueryNotSupported(f"the embedded store cannot run this query: {error}") from error
        except RecursionError:
            raise QueryNotSupported("the query is nested too deeply") from None
        except UnicodeEncodeError as error:
            raise QueryNotSupported(f"the query is not valid Unicode text: {error.reason}") from None

    def _reading_compiler(self, connection: sqlite3.Connection) -> "_Compiler":
        """A compiler that orders phrase joins by the postings `connection` sees."""
        return _Compiler(self.table, lambda index, token: self._frequencies.get(connection, index, token))

    def _compile(self, query: Query, item_scope: Query | None = None, compiler: "_Compiler | None" = None) -> _Plan:
        try:
            return (compiler or self.compiler).records(query, item_scope)
        except RecursionError:
            raise QueryNotSupported("the query is nested too deeply") from None

    def _search_in(
        self,
        connection: sqlite3.Connection,
        compiler: "_Compiler",
        request: SearchRequest,
        sort_definitions: list[IndexDefinition],
        facet_definitions: list[IndexDefinition],
        after: list[Any] | None,
        offset: int,
        limit: int,
    ) -> tuple[int, list[tuple[Any, ...]], list[Facet]]:
        """The number of hits, the rows (cursor values, id last) of up to `limit` + 1 hits in
        order from `offset` or after the cursor values `after`, and the facets."""
        total = connection.execute("SELECT COUNT(*) FROM temp.hits").fetchone()[0]
        columns = []
        joins = []
        params: list[Any] = []
        order = []
        if not request.sort:
            scoring = compiler.relevance(request.query) if limit and total > 1 else []
            if scoring:
                self._score(connection, scoring)
                joins.append("JOIN temp.scores sc ON sc.rid = h.rid")
                columns.append("sc.score AS score")
            else:
                columns.append("0 AS score")  # nothing to rank by (MatchAll, keys only): id order
            order.append(("score", False))
        for n, (key, definition) in enumerate(zip(request.sort, sort_definitions)):
            joins.append(f"LEFT JOIN sorts s{n} ON s{n}.idx = ? AND s{n}.rid = h.rid")
            params.append(definition.name)
            placeholder = "0" if definition.numeric else "''"
            columns.append(f"(s{n}.skey IS NOT NULL) AS p{n}")
            columns.append(f"COALESCE(s{n}.skey, {placeholder}) AS k{n}")
            order.append((f"p{n}", key.missing_first))  # present (1) first unless missing_first
            order.append((f"k{n}", key.ascending))
        columns.append("r.id AS rid_key")
        order.append(("rid_key", True))
        select = (
            f"SELECT {', '.join(columns)} FROM temp.hits h CROSS JOIN records r INDEXED BY records_rid_id "
            f"ON r.rid = h.rid {' '.join(joins)}"
        )
        # About the number of records, read once: it decides both the page walk and the facet plan.
        largest_rid = self._largest_rid(connection) if (not joins and after is None) or facet_definitions else 0
        walk_ids = not joins and after is None and total * total > (offset + limit + 1) * largest_rid
        where = ""
        if after is not None:
            conditions = []
            for n, (name, ascending) in enumerate(order):
                equal = [f"{order[m][0]} = ?" for m in range(n)]
                params_needed = after[:n]
                conditions.append(
                    "(" + " AND ".join(equal + [f"{name} {'>' if ascending else '<'} ?"]) + ")"
                )
                params.extend(params_needed)
                params.append(after[n])
            where = " WHERE " + " OR ".join(conditions)
        order_by = ", ".join(f"{name} {'ASC' if ascending else 'DESC'}" for name, ascending in order)
        rows = []
        if limit and walk_ids:
            # Unranked, and most records are hits: walk the ids in order and stop after the page
            # (about (offset + limit) * records / total probes) instead of sorting every hit. The
            # unary + keeps SQLite from driving the loop by rid, which would sort every hit again.
            rows = connection.execute(
                "SELECT 0 AS score, r.id AS rid_key FROM records r WHERE +r.rid IN (SELECT rid FROM temp.hits) "
                "ORDER BY r.id LIMIT ? OFFSET ?", [limit + 1, offset]
            ).fetchall()
        elif limit:
            rows = connection.execute(
                f"SELECT * FROM ({select}){where} ORDER BY {order_by} LIMIT ? OFFSET ?", [*params, limit + 1, offset]
            ).fetchall()
        facets = []
        if facet_definitions:
            # Most of the catalogue matched: walk each facet's values and test membership,
            # rather than looking up the values of every hit.
            broad = total * 3 >= largest_rid
            facets = [
                self._facet(connection, definition, facet_request, broad)
                for definition, facet_request in zip(facet_definitions, request.facets)
            ]
        return total, rows, facets

    @staticmethod
    def _largest_rid(connection: sqlite3.Connection) -> int:
        """About the number of records (rids are not reused much): what decides whether a hit
        set is broad."""
        return connection.execute("SELECT COALESCE(MAX(rid), 0) FROM records").fetchone()[0]

    @staticmethod
    def _score(connection: sqlite3.Connection, scoring: list[tuple[int, _Sql]]) -> None:
        """Fill `temp.scores` (made by `_Evaluation`) with the relevance score of every hit."""
        connection.execute("DELETE FROM temp.scores")
        connection.execute("INSERT INTO temp.scores (rid, score) SELECT rid, 0 FROM temp.hits")
        for weight, matching in scoring:
            connection.execute(
                f"UPDATE temp.scores SET score = score + ? WHERE rid IN ({matching.text})", [weight, *matching.params]
            )

    def _facet_definition(self, request: FacetRequest) -> IndexDefinition:
        definition = self.compiler.definition(request.index)
        if not definition.facet:
            raise QueryNotSupported(f"index {request.index!r} has no facet")
        if request.order not in ("count", "value"):
            raise QueryNotSupported(f"facet order {request.order!r} (expected count or value)")
        return definition

    @staticmethod
    def _facet(connection: sqlite3.Connection, definition: IndexDefinition, request: FacetRequest, broad: bool) -> Facet:
        if broad:
            sql = ("SELECT value, COUNT(*) FROM facets WHERE idx = ? AND rid IN (SELECT rid FROM temp.hits) "
                   "GROUP BY value")
        else:
            # Driven from the hits (CROSS JOIN fixes the order): a few hits cost a few lookups.
            sql = ("SELECT f.value, COUNT(*) FROM temp.hits h CROSS JOIN facets f ON f.rid = h.rid AND f.idx = ? "
                   "GROUP BY f.value")
        counts = dict(connection.execute(sql, (definition.name,)).fetchall())
        return ordered_facet(definition, request, counts)

    async def scan(self, request: ScanRequest) -> list[ScanTerm]:
        definition = self.compiler.definition(request.index)
        if definition.numeric:
            raise QueryNotSupported(f"index {request.index!r} is numeric and cannot be scanned")
        if request.count <= 0:
            return []
        scope = self._compile(request.query)
        start = definition.query_key(request.start)
        before_wanted = min(max(request.position - 1, 0), request.count)
        skip = max(1 - request.position, 0)

        def work(connection: sqlite3.Connection) -> list[ScanTerm]:
            evaluation = _Evaluation(connection)
            try:
                if not isinstance(request.query, MatchAll):
                    evaluation.into_hits(scope)
                source = "vals v" if isinstance(request.query, MatchAll) else "vals v JOIN temp.hits h ON h.rid = v.rid"
                counted = f"SELECT v.key, COUNT(DISTINCT v.rid) FROM {source} WHERE v.idx = ? AND v.key {{}} ? GROUP BY v.key"
                before = connection.execute(
                    counted.format("<") + " ORDER BY v.key DESC LIMIT ?", (definition.name, start, before_wanted)
                ).fetchall() if before_wanted else []
                onward = connection.execute(
                    counted.format(">=") + " ORDER BY v.key LIMIT ?", (definition.name, start, request.count + skip)
                ).fetchall()
            finally:
                evaluation.clear()
            terms = [ScanTerm(key, count) for key, count in reversed(before)]
            return terms + [ScanTerm(key, count) for key, count in onward[skip:]][: request.count - len(terms)]

        return await self._query(work)

    def caches(self) -> dict[str, CacheCounts]:
        results = self.results
        return {"search_results": CacheCounts(results.hits, results.misses, len(results), results.capacity)}

    async def stats(self) -> StoreStats:
        def work(connection: sqlite3.Connection) -> StoreStats:
            records = connection.execute("SELECT COUNT(*) FROM records").fetchone()[0]
            items = connection.execute("SELECT COUNT(*) FROM items").fetchone()[0]

            def by(column: str) -> dict[str, dict[str, int]]:
                return {
                    value: {"records": record_count, "items": item_count}
                    for value, record_count, item_count in connection.execute(
                        f"SELECT {column}, COUNT(DISTINCT rid), COUNT(*) FROM items GROUP BY {column}"
                    )
                }

            unindexed = connection.execute("SELECT COUNT(*) FROM unindexed").fetchone()[0]
            return StoreStats(records=records, items=items, by_library=by("library"), by_tier=by("tier"),
                              unindexed=unindexed)

        return await self._read(work)


def _page(total: int, rows: Sequence[tuple[Any, ...]], limit: int, facets: Iterable[Facet], signature: str) -> SearchResult:
    """The page of the first `limit` rows; a cursor when a row follows it."""
    page = rows[:limit]
    cursor = _encode_cursor(list(page[-1]), signature) if len(rows) > limit and page else None
    return SearchResult(total=total, ids=[row[-1] for row in page], facets=list(facets), next_cursor=cursor)


def _generation(connection: sqlite3.Connection) -> int | None:
    """The catalogue's generation in this read's snapshot: every write transaction increases it."""
    row = connection.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
    return int(row[0]) if row is not None else None


def _next_generation(connection: sqlite3.Connection) -> None:
    connection.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")


def _payloads(connection: sqlite3.Connection, ids: Sequence[str]) -> dict[str, bytes | str]:
    """The stored payloads of the records `ids` names, by id (absent ones left out)."""
    payloads: dict[str, bytes | str] = {}
    for chunk in _chunks(list(dict.fromkeys(ids))):
        marks = ",".join("?" * len(chunk))
        payloads.update(connection.execute(f"SELECT id, payload FROM records WHERE id IN ({marks})", chunk))
    return payloads


def _encode_payload(record: UnionRecord) -> bytes:
    # MARC-in-JSON compresses about 4:1, and the payloads are most of the database.
    return zlib.compress(json.dumps(record.to_dict(marc_as_json=True), ensure_ascii=False,
                                    separators=(",", ":")).encode(), 6)


def _decode_payload(payload: bytes | str) -> UnionRecord:
    """A stored record (schema 1 stored plain JSON text)."""
    text = zlib.decompress(payload) if isinstance(payload, bytes) else payload
    return UnionRecord.from_dict(json.loads(text))


# The function an index helper process runs (`indexer.children`).
_INDEX_HELPER = ("indexer.embedded", "_index_helper_main")
_INDEX_HELPER_CHUNK = 500      # records per message: a few MB of rows
_INDEX_HELPER_MINIMUM = 2_000  # fewer records waiting are indexed without starting a process


def _index_helper_main(work: tuple[str, IndexTable, int], out: Connection) -> int:
    """An index helper process: reads the records waiting in `unindexed` (a reader beside the
    writer, in WAL mode) in rid order and sends their rows, `chunk` records a message, ahead of
    the writer by what its pipe holds."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the writer's process handles Ctrl-C and stops this one
    path, table, chunk = work
    store = EmbeddedStore(path, table)  # not opened: for its row making only
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=_BUSY_TIMEOUT_MS / 1000)
    last = 0
    try:
        while True:
            connection.execute("BEGIN")
            try:
                page = connection.execute(
                    "SELECT u.rid, r.payload FROM unindexed u JOIN records r ON r.rid = u.rid "
                    "WHERE u.rid > ? ORDER BY u.rid LIMIT ?", (last, chunk)).fetchall()
                made = _MadeRows()
                for rid, payload in page:
                    try:
                        record = _decode_payload(payload)
                        item_ids = store._stored_item_ids(connection, rid, record)
                        if item_ids is not None:  # else the writer's own loop does it
                            store._make_rows(made, rid, record, item_ids)
                    except (zlib.error, ValueError, TypeError, AttributeError, LookupError):
                        continue  # the writer's own loop names it
            finally:
                connection.execute("COMMIT")
            if not page:
                return 0
            out.send(made)
            last = page[-1][0]
    except (BrokenPipeError, ConnectionResetError):
        return 0  # the writer stopped listening
    finally:
        out.close()
        connection.close()


def _shutdown(executors: Iterable[concurrent.futures.ThreadPoolExecutor | None]) -> None:
    """Waits for the work already submitted to the executors, then stops their threads."""
    for executor in executors:
        if executor is not None:
            executor.shutdown(wait=True)


def _chunks(values: list[Any], size: int = _CHUNK) -> Iterable[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]

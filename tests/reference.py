"""An independent evaluator of the canonical query semantics, for computing expected answers.

Written from the `indexer.query` docstring, record by record in plain Python, sharing no code
with either store: it uses only the analysis functions the docstring names as the contract
(`index_tokens`, `query_tokens`, `query_words`, `exact_key`, `year_of`) and the index table's
`query_key`. It is slow (a full scan per query) and meant for test corpora of a few thousand
records.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Iterable

from indexer.analysis import exact_key as _exact_key
from indexer.analysis import index_tokens as _index_tokens
from indexer.analysis import query_words, year_of
from indexer.analysis import query_tokens as _query_tokens
from indexer.indexes import IndexDefinition, IndexLevel, IndexTable, IndexType
from indexer.model import Item, UnionRecord
from indexer.query import (
    And,
    AndNot,
    Clause,
    Facet,
    FacetRequest,
    FacetValue,
    ItemMatch,
    MatchAll,
    Or,
    Query,
    Relation,
    ScanRequest,
    ScanTerm,
    SearchRequest,
    SortKey,
)


# Caches only: the reference re-evaluates every record for every query.
@functools.lru_cache(maxsize=200_000)
def index_tokens(value: str) -> tuple[str, ...]:
    return tuple(_index_tokens(value))


@functools.lru_cache(maxsize=200_000)
def token_set(value: str) -> frozenset[str]:
    return frozenset(index_tokens(value))


@functools.lru_cache(maxsize=200_000)
def exact_key(value: str) -> str:
    return _exact_key(value)


@functools.lru_cache(maxsize=10_000)
def query_tokens(term: str) -> tuple:
    return tuple(_query_tokens(term))


@functools.lru_cache(maxsize=10_000)
def _mask_regex(masked: str) -> re.Pattern[str]:
    """`*` any run of characters, `?` exactly one; everything else literal."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in masked), re.DOTALL)


def _key_matches(key: str, wanted: str) -> bool:
    if "*" in wanted or "?" in wanted:
        return _mask_regex(wanted).fullmatch(key) is not None
    return key == wanted


def _as_integer(value: str) -> int | None:
    text = value.strip()
    body = text[1:] if text[:1] in "+-" else text
    return int(text) if body.isdigit() and body.isascii() else None


@dataclass
class _Prepared:
    """A record's values per index, computed once."""

    record: UnionRecord
    values: dict[str, list[str]] = field(default_factory=dict)   # record-level raw values
    items: list[Item] = field(default_factory=list)


class Reference:
    """Answers queries over a list of union records exactly as `indexer.query` defines them."""

    def __init__(self, table: IndexTable, records: Iterable[UnionRecord]):
        self.table = table
        self.records: dict[str, _Prepared] = {}
        self._answers: dict[tuple[Query, Query | None], frozenset[str]] = {}
        for record in records:
            prepared = _Prepared(record, items=list(record.items))
            for definition in table.record_indexes():
                values = list(record.fields.get(definition.name, []))
                for source in definition.copy_from:
                    values += record.fields.get(source, [])
                if definition.name == "id":
                    values.append(record.id)
                prepared.values[definition.name] = values
            self.records[record.id] = prepared

    # -- values ---------------------------------------------------------------------------
    def _item_values(self, item: Item, definition: IndexDefinition) -> list[str]:
        value = getattr(item, definition.name)
        if hasattr(value, "value"):
            value = value.value
        return [value] if value else []

    def _values(self, prepared: _Prepared, definition: IndexDefinition, item: Item | None) -> list[str]:
        if definition.level is IndexLevel.ITEM:
            assert item is not None
            return self._item_values(item, definition)
        return prepared.values[definition.name]

    @staticmethod
    def _numbers(definition: IndexDefinition, values: list[str]) -> list[int]:
        convert = year_of if definition.type is IndexType.DATE else _as_integer
        return [n for n in (convert(v) for v in values) if n is not None]

    # -- matching -------------------------------------------------------------------------
    def matches(self, query: Query, item_scope: Query | None = None) -> set[str]:
        key = (query, item_scope)
        if key not in self._answers:
            self._answers[key] = self._matches(query, item_scope)
        return set(self._answers[key])

    def _matches(self, query: Query, item_scope: Query | None) -> frozenset[str]:
        hits = {rid for rid, prepared in self.records.items() if self._record(prepared, query)}
        if item_scope is not None:
            hits = {rid for rid in hits if self._record(self.records[rid], ItemMatch(item_scope))}
        return frozenset(hits)

    def _record(self, prepared: _Prepared, query: Query) -> bool:
        if isinstance(query, MatchAll):
            return True
        if isinstance(query, And):
            return self._record(prepared, query.left) and self._record(prepared, query.right)
        if isinstance(query, Or):
            return self._record(prepared, query.left) or self._record(prepared, query.right)
        if isinstance(query, AndNot):
            return self._record(prepared, query.left) and not self._record(prepared, query.right)
        if isinstance(query, ItemMatch):
            return any(self._item(prepared, item, query.query) for item in prepared.items)
        assert isinstance(query, Clause)
        definition = self.table[query.index]
        if definition.level is IndexLevel.ITEM:
            if query.relation is Relation.NE:
                positive = Clause(query.index, Relation.EXACT, query.term)
                return not any(self._item(prepared, item, positive) for item in prepared.items)
            return any(self._item(prepared, item, query) for item in prepared.items)
        return self._clause(definition, query, self._values(prepared, definition, None))

    def _item(self, prepared: _Prepared, item: Item, query: Query) -> bool:
        if isinstance(query, MatchAll):
            return True
        if isinstance(query, And):
            return self._item(prepared, item, query.left) and self._item(prepared, item, query.right)
        if isinstance(query, Or):
            return self._item(prepared, item, query.left) or self._item(prepared, item, query.right)
        if isinstance(query, AndNot):
            return self._item(prepared, item, query.left) and not self._item(prepared, item, query.right)
        if isinstance(query, ItemMatch):
            return self._item(prepared, item, query.query)
        assert isinstance(query, Clause)
        definition = self.table[query.index]
        if definition.level is not IndexLevel.ITEM:
            raise ValueError(f"{query.index} is not an item index")
        return self._clause(definition, query, self._values(prepared, definition, item))

    def _clause(self, definition: IndexDefinition, clause: Clause, values: list[str]) -> bool:
        relation = clause.relation
        if relation is Relation.NE:
            return not self._clause(definition, Clause(clause.index, Relation.EXACT, clause.term), values)
        if definition.numeric:
            numbers = self._numbers(definition, values)
            if relation in (Relation.PHRASE, Relation.EXACT):
                return int(clause.term) in numbers
            if relation is Relation.ALL:
                return all(int(w) in numbers for w in query_words(clause.term))
            if relation is Relation.ANY:
                return any(int(w) in numbers for w in query_words(clause.term))
            if relation is Relation.WITHIN:
                return any(int(clause.term) <= n <= int(clause.term_high or "") for n in numbers)
            return any(_compare(relation, n, int(clause.term)) for n in numbers)
        keys = [exact_key(v) for v in values]
        if relation is Relation.EXACT or (relation is Relation.PHRASE and definition.type is IndexType.KEYWORD):
            wanted = definition.query_key(clause.term)
            return any(_key_matches(key, wanted) for key in keys)
        if relation in (Relation.ALL, Relation.ANY):
            # A term without any word is one word without a query token (see the PHRASE rule).
            words = query_words(clause.term) or [clause.term]
            if definition.type is IndexType.TEXT:
                found = [self._phrase(values, w, False, False) for w in words]
            else:
                found = [any(_key_matches(key, definition.query_key(w)) for key in keys) for w in words]
            return all(found) if relation is Relation.ALL else any(found)
        if relation is Relation.PHRASE:
            return self._phrase(values, clause.term, clause.anchor_start, clause.anchor_end)
        if relation is Relation.WITHIN:
            low, high = definition.query_key(clause.term), definition.query_key(clause.term_high or "")
            return any(low <= key <= high for key in keys)
        term_key = definition.query_key(clause.term)
        return any(_compare(relation, key, term_key) for key in keys)

    @staticmethod
    def _phrase(values: list[str], term: str, anchor_start: bool, anchor_end: bool) -> bool:
        wanted = query_tokens(term)
        if not wanted:
            return bool(values)
        for value in values:
            if not wanted[0].pattern and wanted[0].text not in token_set(value):
                continue
            tokens = index_tokens(value)
            starts = [0] if anchor_start else range(len(tokens) - len(wanted) + 1)
            for start in starts:
                if start + len(wanted) > len(tokens):
                    continue
                if anchor_end and start + len(wanted) != len(tokens):
                    continue
                if all(
                    _key_matches(tokens[start + n], q.text) if q.pattern else tokens[start + n] == q.text
                    for n, q in enumerate(wanted)
                ):
                    return True
        return False

    # -- search ---------------------------------------------------------------------------
    def sort_key_of(self, record_id: str, key: SortKey) -> str | int | None:
        prepared = self.records[record_id]
        definition = self.table[key.index]
        values = prepared.values[definition.name]
        if definition.numeric:
            numbers = self._numbers(definition, values)
            return numbers[0] if numbers else None
        return exact_key(values[0]) if values else None

    def ordered(self, ids: Iterable[str], keys: tuple[SortKey, ...]) -> list[str]:
        """Ids by the sort keys in turn (missing values last, or first when asked), then by id."""

        def compare(a: str, b: str) -> int:
            for key in keys:
                va, vb = self.sort_key_of(a, key), self.sort_key_of(b, key)
                if va is None and vb is None:
                    continue
                if va is None or vb is None:
                    a_first = (va is None) == key.missing_first
                    return -1 if a_first else 1
                if va != vb:
                    less = va < vb  # type: ignore[operator]
                    return (-1 if less else 1) * (1 if key.ascending else -1)
            return -1 if a < b else (1 if a > b else 0)

        return sorted(ids, key=functools.cmp_to_key(compare))

    def facet(self, hits: set[str], request: FacetRequest) -> Facet:
        definition = self.table[request.index]
        counts: dict[str, int] = {}
        for record_id in hits:
            prepared = self.records[record_id]
            if definition.level is IndexLevel.ITEM:
                values = [v for item in prepared.items for v in self._item_values(item, definition)]
            else:
                values = prepared.values[definition.name]
            if definition.numeric:
                values = [str(n) for n in self._numbers(definition, values)]
            for value in set(values):
                counts[value] = counts.get(value, 0) + 1

        def by_value(value: str):
            return int(value) if definition.numeric else value

        if request.order == "value":
            ordered = sorted(counts, key=by_value)
        else:
            ordered = sorted(counts, key=lambda v: (-counts[v], by_value(v)))
        return Facet(request.index, tuple(FacetValue(v, counts[v]) for v in ordered[: request.limit]))

    def search(self, request: SearchRequest) -> tuple[int, list[str], list[Facet]]:
        """(total, the page of ids, facets); without sort keys the page is in id order (the
        stores' relevance order is theirs to define: compare those pages as sets)."""
        hits = self.matches(request.query, request.item_scope)
        ordered = self.ordered(hits, request.sort)
        page = ordered[request.offset : request.offset + request.limit]
        return len(hits), page, [self.facet(hits, f) for f in request.facets]

    # -- scan -----------------------------------------------------------------------------
    def scan(self, request: ScanRequest) -> list[ScanTerm]:
        definition = self.table[request.index]
        hits = self.matches(request.query)
        counts: dict[str, int] = {}
        for record_id in hits:
            prepared = self.records[record_id]
            if definition.level is IndexLevel.ITEM:
                values = [v for item in prepared.items for v in self._item_values(item, definition)]
            else:
                values = prepared.values[definition.name]
            for key in {exact_key(v) for v in values}:
                counts[key] = counts.get(key, 0) + 1
        keys = sorted(counts)
        start = definition.query_key(request.start)
        first = next((n for n, key in enumerate(keys) if key >= start), len(keys))
        before = keys[max(first - min(max(request.position - 1, 0), request.count), 0) : first]
        onward = keys[first : first + request.count - len(before)]
        return [ScanTerm(key, counts[key]) for key in before + onward]


def _compare(relation: Relation, left, right) -> bool:
    if relation is Relation.LT:
        return left < right
    if relation is Relation.LE:
        return left <= right
    if relation is Relation.GT:
        return left > right
    if relation is Relation.GE:
        return left >= right
    raise ValueError(f"not an ordering relation: {relation}")

"""Canonical queries (`indexer.query`) compiled to the Elasticsearch / OpenSearch query DSL.

Every query token and key is made by `indexer.analysis`, exactly as for the stored values (see
`indexer.elastic_mapping`), so a compiled query means what the canonical model says:

  PHRASE       `match_phrase` on tok.<name> (whitespace analyzer, slop 0); a single masked token
               is a `wildcard` on tok.<name>; masked multi-token phrases and anchored phrases are
               a `regexp` over the value's token string phr.<name> (no expansion limit, unlike
               span_multi or intervals, which fail once a pattern matches too many tokens)
  ALL / ANY    a bool must / should of one PHRASE per word
  And, AndNot  one bool per chain: every conjunct of a chain of And / AndNot, however the
               binary tree nests, in one must list, every negated side in its must_not list
  Or           one bool should list (minimum_should_match 1) per chain of Or
  EXACT, keyword equality
               `term` on key.<name>, `wildcard` when the key is masked
  ranges       `range` on key.<name> (code point order: Lucene compares UTF-8 bytes) or num.<name>
  NE           bool must_not
  ItemMatch    `nested` on items; an item-scope likewise

Chains are flattened because Elasticsearch refuses a query nested deeper than
`indices.query.bool.max_nested_depth` (30 in 8.x, counting every query object on the path,
leaves and `nested` included; OpenSearch 3 has `index.query.max_nested_depth`, 20): one bool
per binary node made a CQL `or` of 150 terms 150 levels deep. Only a query whose own and/or
alternation is that deep can still exceed the limit.
"""
from __future__ import annotations

from typing import Any

from indexer.analysis import QueryToken, query_tokens, query_words
from indexer.elastic_mapping import MAX_TOKEN_CHARS, clip_term
from indexer.indexes import IndexDefinition, IndexLevel, IndexTable, IndexType
from indexer.query import (
    And,
    AndNot,
    Clause,
    FacetRequest,
    ItemMatch,
    MatchAll,
    Or,
    Query,
    Relation,
    SortKey,
)
from indexer.store import QueryNotSupported

ITEMS = "items"
_RANGE_OPERATORS = {Relation.LT: "lt", Relation.LE: "lte", Relation.GT: "gt", Relation.GE: "gte"}
_EQUALITY = (Relation.PHRASE, Relation.EXACT)


def _bool(**clauses: Any) -> dict[str, Any]:
    return {"bool": clauses}


def _must_not(query: dict[str, Any]) -> dict[str, Any]:
    return _bool(must_not=[query])


def _any_of(queries: list[dict[str, Any]]) -> dict[str, Any]:
    return queries[0] if len(queries) == 1 else _bool(should=queries, minimum_should_match=1)


def _all_of(queries: list[dict[str, Any]]) -> dict[str, Any]:
    return queries[0] if len(queries) == 1 else _bool(must=queries)


def wildcard_pattern(key: str) -> str:
    """A masked key as a Lucene wildcard: `*` and `?` stay, a backslash is escaped."""
    return key.replace("\\", "\\\\")


def _regexp_literal(text: str) -> str:
    return "".join(c if c.isalnum() else "\\" + c for c in text)


def _regexp_token(token: QueryToken) -> str:
    text = token.text[:MAX_TOKEN_CHARS]
    if not token.pattern:
        return _regexp_literal(text)
    parts = []
    for char in text:
        if char == "*":
            parts.append("[^ ]*")
        elif char == "?":
            parts.append("[^ ]")
        else:
            parts.append(_regexp_literal(char))
    return "".join(parts)


def phrase_regexp(tokens: list[QueryToken], anchor_start: bool, anchor_end: bool) -> str:
    """A Lucene regexp over a value's token string for a phrase: tokens at consecutive positions."""
    body = " ".join(_regexp_token(t) for t in tokens)
    return ("" if anchor_start else "(.* )?") + body + ("" if anchor_end else "( .*)?")


def _disjuncts(query: Query) -> list[Query]:
    """The operands of a chain of Or, left to right, however the binary tree nests."""
    operands: list[Query] = []
    stack = [query]
    while stack:
        node = stack.pop()
        if isinstance(node, Or):
            stack.extend((node.right, node.left))
        else:
            operands.append(node)
    return operands


def _conjunction(query: And | AndNot) -> tuple[list[Query], list[Query]]:
    """A chain of And / AndNot as (conditions that must hold, conditions that must not).

    `a and not b` requires a and excludes b wherever it sits in the chain, and excluding an
    Or excludes each of its operands (not (b or c) = not b and not c), so both lists are flat.
    """
    included: list[Query] = []
    excluded: list[Query] = []
    stack: list[Query] = [query]
    while stack:
        node = stack.pop()
        if isinstance(node, And):
            stack.extend((node.right, node.left))
        elif isinstance(node, AndNot):
            excluded.extend(_disjuncts(node.right))
            stack.append(node.left)
        else:
            included.append(node)
    return included, excluded


class QueryCompiler:
    """Compiles canonical queries, sort keys and facet requests for one index table."""

    def __init__(self, table: IndexTable):
        self.table = table

    # -- queries ----------------------------------------------------------------------------
    def compile(self, query: Query, item_scope: Query | None = None) -> dict[str, Any]:
        compiled = self._node(query, in_item=False)
        if item_scope is None:
            return compiled
        scope = self._nested(self._node(item_scope, in_item=True))
        if compiled == {"match_all": {}}:
            return _bool(filter=[scope])
        return _bool(must=[compiled], filter=[scope])

    def _node(self, query: Query, in_item: bool) -> dict[str, Any]:
        if isinstance(query, MatchAll):
            return {"match_all": {}}
        if isinstance(query, (And, AndNot)):
            included, excluded = _conjunction(query)
            must = [self._node(q, in_item) for q in included]
            must_not = [self._node(q, in_item) for q in excluded]
            return _bool(must=must, must_not=must_not) if must_not else _bool(must=must)
        if isinstance(query, Or):
            return _any_of([self._node(q, in_item) for q in _disjuncts(query)])
        if isinstance(query, ItemMatch):
            inner = self._node(query.query, in_item=True)
            return inner if in_item else self._nested(inner)
        if isinstance(query, Clause):
            return self._clause(query, in_item)
        raise QueryNotSupported(f"unknown query node {type(query).__name__}")

    @staticmethod
    def _nested(query: dict[str, Any]) -> dict[str, Any]:
        return {"nested": {"path": ITEMS, "query": query, "score_mode": "max"}}

    def definition(self, name: str) -> IndexDefinition:
        definition = self.table.get(name)
        if definition is None:
            raise QueryNotSupported(f"unknown index {name!r}")
        return definition

    def _clause(self, clause: Clause, in_item: bool) -> dict[str, Any]:
        definition = self.definition(clause.index)
        item_level = definition.level is IndexLevel.ITEM
        if in_item and not item_level:
            raise QueryNotSupported(f"index {clause.index!r} is not an item index: it cannot be used for one item")
        if item_level and not in_item:
            if clause.relation is Relation.NE:
                positive = Clause(clause.index, Relation.EXACT, clause.term)
                return _must_not(self._nested(self._clause(positive, in_item=True)))
            return self._nested(self._clause(clause, in_item=True))
        prefix = f"{ITEMS}." if in_item else ""
        if definition.numeric:
            return self._numeric(definition, clause, f"{prefix}num.{definition.name}")
        return self._textual(definition, clause, prefix)

    def _numeric(self, definition: IndexDefinition, clause: Clause, field: str) -> dict[str, Any]:
        relation = clause.relation

        def number(term: str | None) -> int:
            try:
                return int(str(term).strip())
            except ValueError:
                raise QueryNotSupported(f"index {definition.name!r} needs a number, not {term!r}") from None

        if relation in _EQUALITY:
            return {"term": {field: number(clause.term)}}
        if relation in (Relation.ALL, Relation.ANY):
            terms = [{"term": {field: number(w)}} for w in query_words(clause.term)] or [
                {"term": {field: number(clause.term)}}
            ]
            return _all_of(terms) if relation is Relation.ALL else _any_of(terms)
        if relation is Relation.NE:
            return _must_not({"term": {field: number(clause.term)}})
        if relation in _RANGE_OPERATORS:
            return {"range": {field: {_RANGE_OPERATORS[relation]: number(clause.term)}}}
        if relation is Relation.WITHIN:
            if clause.term_high is None:
                raise QueryNotSupported("within needs two terms")
            return {"range": {field: {"gte": number(clause.term), "lte": number(clause.term_high)}}}
        raise QueryNotSupported(f"relation {relation.value} is not supported on {definition.name!r}")

    def _textual(self, definition: IndexDefinition, clause: Clause, prefix: str) -> dict[str, Any]:
        relation = clause.relation
        key_field = f"{prefix}key.{definition.name}"
        text = definition.type is IndexType.TEXT

        def key_match(term: str) -> dict[str, Any]:
            key = clip_term(definition.query_key(term))
            if "*" in key or "?" in key:
                return {"wildcard": {key_field: {"value": wildcard_pattern(key)}}}
            return {"term": {key_field: key}}

        if relation is Relation.PHRASE:
            if text:
                return self._phrase(definition, prefix, clause.term, clause.anchor_start, clause.anchor_end)
            return key_match(clause.term)
        if relation in (Relation.ALL, Relation.ANY):
            words = query_words(clause.term) or [clause.term]
            if text:
                parts = [self._phrase(definition, prefix, w, False, False) for w in words]
            else:
                parts = [key_match(w) for w in words]
            return _all_of(parts) if relation is Relation.ALL else _any_of(parts)
        if relation is Relation.EXACT:
            return key_match(clause.term)
        if relation is Relation.NE:
            return _must_not(key_match(clause.term))
        # Elasticsearch reads an empty string as a bound as no bound at all, but a term that
        # normalizes to the empty key (":", " ") is a bound: nothing is below it, only "" is at it.
        if relation in _RANGE_OPERATORS:
            key = clip_term(definition.query_key(clause.term))
            if key == "" and relation is Relation.LT:
                return {"match_none": {}}
            if key == "" and relation is Relation.LE:
                return {"term": {key_field: ""}}
            return {"range": {key_field: {_RANGE_OPERATORS[relation]: key}}}
        if relation is Relation.WITHIN:
            if clause.term_high is None:
                raise QueryNotSupported("within needs two terms")
            low = clip_term(definition.query_key(clause.term))
            high = clip_term(definition.query_key(clause.term_high))
            if high == "":
                return {"term": {key_field: ""}} if low == "" else {"match_none": {}}
            return {"range": {key_field: {"gte": low, "lte": high}}}
        raise QueryNotSupported(f"relation {relation.value} is not supported on {definition.name!r}")

    @staticmethod
    def _phrase(definition: IndexDefinition, prefix: str, term: str, anchor_start: bool, anchor_end: bool) -> dict[str, Any]:
        tokens = query_tokens(term)
        name = definition.name
        if not tokens:
            return {"exists": {"field": f"{prefix}key.{name}"}}
        masked = any(t.pattern for t in tokens)
        if not (anchor_start or anchor_end):
            if not masked:
                return {"match_phrase": {f"{prefix}tok.{name}": " ".join(t.text[:MAX_TOKEN_CHARS] for t in tokens)}}
            if len(tokens) == 1:
                return {"wildcard": {f"{prefix}tok.{name}": {"value": wildcard_pattern(tokens[0].text[:MAX_TOKEN_CHARS])}}}
        return {"regexp": {f"{prefix}phr.{name}": {"value": phrase_regexp(tokens, anchor_start, anchor_end)}}}

    # -- sort and facets --------------------------------------------------------------------
    def sort(self, keys: tuple[SortKey, ...]) -> list[dict[str, Any]]:
        """Sort clauses: by the keys (missing values last unless asked), then by id; relevance without keys."""
        if not keys:
            return [{"_score": {"order": "desc"}}, {"id": {"order": "asc"}}]
        clauses: list[dict[str, Any]] = []
        for key in keys:
            definition = self.definition(key.index)
            if definition.level is not IndexLevel.RECORD or not definition.sortable:
                raise QueryNotSupported(f"index {key.index!r} is not sortable")
            clauses.append({f"sort_present.{definition.name}": {"order": "asc" if key.missing_first else "desc"}})
            clauses.append({f"sort.{definition.name}": {"order": "asc" if key.ascending else "desc"}})
        clauses.append({"id": {"order": "asc"}})
        return clauses

    def facet_field(self, request: FacetRequest) -> tuple[IndexDefinition, str]:
        definition = self.definition(request.index)
        if not definition.facet:
            raise QueryNotSupported(f"index {request.index!r} has no facet")
        if request.order not in ("count", "value"):
            raise QueryNotSupported(f"facet order {request.order!r} (expected count or value)")
        return definition, f"facet.{definition.name}"

    def scan_field(self, name: str) -> tuple[IndexDefinition, str]:
        definition = self.definition(name)
        if definition.numeric:
            raise QueryNotSupported(f"index {name!r} is numeric and cannot be scanned")
        return definition, f"key.{definition.name}"

"""CQL (protocols.cql parse trees) -> the canonical query model, through the index table.

Every problem is an `SRUDiagnostic` with the number the SRU diagnostics list gives it, so the
SRU layer can answer it as is (and the Z39.50 side can map the same numbers if it wants).

Indexes: a prefixed name (`dc.title`) is looked up with its prefix; a prefix bound in the query
(`>dc="info:srw/cql-context-set/1/dc-v1.1"`) is resolved through its URI to the prefix the index
table uses for that context set, so any prefix name works for a known set. An unprefixed name is
looked up in the table's `unprefixed_order` (or in the set of an unnamed `>"uri"` assignment).
`cql.allRecords` matches every record.

Relations: `=` and `adj` -> PHRASE on text indexes and equality on keyword ones; `==` (and CQL
1.1 `exact`) -> EXACT; `all`, `any`, `<>`, `<`, `<=`, `>`, `>=`, `within` (two terms) as named;
`scr` as `=`. `encloses` and anything else -> diagnostic 19.

Relation modifiers: `/string` turns `=`/`adj`/`all`/`any` on a text index into EXACT (the whole
value); `/word` keeps word matching (and turns `==` into PHRASE); `/masked` (the default) keeps
`*` and `?` as masking characters; `/unmasked` makes them ordinary characters, which the text
analysis drops, so they are removed; `/ignoreCase`, `/ignoreAccents`, `/relevant` state what the
server does anyway; `/respectCase`, `/respectAccents` and every other modifier -> diagnostic 20;
contradictory pairs -> 21.

Terms: backslash escapes are resolved (`\\*` is a literal star, which the analysis drops like
any punctuation); unescaped `^` at the start or end anchors a phrase (elsewhere: 32; with a
relation other than a phrase on a text index: 31); a term of a number or date index must be an
integer (36).

Holdings: a subtree of two or more clauses on item-level indexes (`net.library`, `net.tier`,
`net.availability`, ...) joined by booleans becomes one `ItemMatch`, so
`net.library=GR01 and net.availability=available` asks for a copy at GR01 that is on the shelf,
not for any copy at GR01 and any available copy elsewhere.

Sorting: CQL `sortBy` keys and SRU 1.1/2.0 `sortKeys` become `SortKey`s; the index must be
sortable (88 otherwise), `sort.respectCase` -> 91, `sort.missingFail` / a missing value other
than high/low -> 92; `sort.missingHigh` / `sort.missingLow` place records without a value.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from indexer.indexes import IndexDefinition, IndexLevel, IndexTable, IndexType
from indexer.query import And, AndNot, Clause, ItemMatch, MatchAll, Or, Query, Relation, SortKey
from protocols import cql
from protocols.cql import SyntaxProblem
from protocols.sru import SortKeySpec, SRUDiagnostic

ALL_RECORDS = ("cql", "allrecords")

_RELATIONS = {
    "=": "=", "scr": "=", "adj": "adj", "==": "==", "exact": "==", "all": "all", "any": "any",
    "<>": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">=", "within": "within",
}
_ORDERING = {"<": Relation.LT, "<=": Relation.LE, ">": Relation.GT, ">=": Relation.GE}
_ACCEPTED_MODIFIERS = {"string", "word", "masked", "unmasked", "ignorecase", "ignoreaccents", "relevant"}
_CONFLICTS = (("string", "word"), ("masked", "unmasked"))


@dataclass(frozen=True)
class MappedQuery:
    query: Query
    sort: tuple[SortKey, ...] = ()


class CQLMapper:
    """Maps parsed CQL onto the canonical model for one index table."""

    def __init__(self, table: IndexTable):
        self.table = table
        self._prefix_by_uri = {uri.lower(): prefix for prefix, uri in table.context_sets.items()}

    # -- entry points ---------------------------------------------------------------------
    def map_text(self, text: str, *, max_depth: int = cql.DEFAULT_MAX_DEPTH) -> MappedQuery:
        """Parse and map; a syntax error is diagnostic 10 with the position in the details."""
        return self.map(parse_cql(text, max_depth=max_depth))

    def map(self, query: cql.Query) -> MappedQuery:
        root = self._node(query.root, query.prefixes)
        sort = tuple(self._sort_key(key, qualified) for key, qualified in cql.sort_keys_in_scope(query))
        return MappedQuery(root, sort)

    def sort_keys(self, specs: Sequence[SortKeySpec]) -> tuple[SortKey, ...]:
        """SRU 1.1 / 2.0 `sortKeys`: the path is a CQL index name."""
        keys = []
        for spec in specs:
            if spec.case_sensitive:
                raise SRUDiagnostic(91, spec.path, "case-sensitive sorting is not supported")
            if spec.missing_value not in ("highValue", "lowValue"):
                raise SRUDiagnostic(92, spec.missing_value, "missingValue must be highValue or lowValue")
            definition = self.resolve(cql.qualify(spec.path, ()), spec.path)
            self._check_sortable(definition, spec.path)
            keys.append(SortKey(definition.name, spec.ascending,
                                _missing_first(spec.ascending, spec.missing_value == "lowValue")))
        return tuple(keys)

    def index(self, name: str) -> IndexDefinition:
        """A CQL index name as written in a scan clause or facet parameter -> its definition (16 if unknown)."""
        return self.resolve(cql.qualify(name, ()), name)

    # -- the tree -------------------------------------------------------------------------
    def _node(self, node: cql.Node, scope: tuple[cql.PrefixAssignment, ...]) -> Query:
        scope = scope + node.prefixes
        if isinstance(node, cql.SearchClause):
            return self._clause(node, scope)
        if node.op == "prox":
            raise SRUDiagnostic(39, "prox", "Proximity not supported")
        if node.modifiers:
            raise SRUDiagnostic(46, node.modifiers[0].name, f"Unsupported boolean modifier /{node.modifiers[0].name}")
        left = self._node(node.left, scope)
        right = self._node(node.right, scope)
        if node.op == "and":
            return self._conjunction(_conjuncts(left) + _conjuncts(right))
        if node.op == "or":
            combined: Query = Or(left, right)
        elif node.op == "not":
            combined = AndNot(left, right)
        else:
            raise SRUDiagnostic(37, node.op, f"Unsupported boolean operator {node.op}")
        if self._item_only(left) and self._item_only(right):
            return ItemMatch(_unwrap(combined))
        return combined

    def _conjunction(self, operands: list[Query]) -> Query:
        """AND the operands, with every item-level one gathered into one ItemMatch (same copy)."""
        items = [o for o in operands if self._item_only(o)]
        others = [o for o in operands if not self._item_only(o)]
        if len(items) >= 2:
            others.append(ItemMatch(_unwrap(_chain(items))))
        else:
            others.extend(items)
        return _chain(others)

    def _item_only(self, query: Query) -> bool:
        if isinstance(query, ItemMatch):
            return True
        if isinstance(query, Clause):
            definition = self.table.get(query.index)
            return definition is not None and definition.level is IndexLevel.ITEM
        return False

    def _clause(self, clause: cql.SearchClause, scope: tuple[cql.PrefixAssignment, ...]) -> Query:
        qualified = cql.qualify(clause.index, scope)
        if self._canonical_prefix(qualified, clause.index) == "cql" and qualified.name.lower() == "allrecords":
            return MatchAll()
        definition = self.resolve(qualified, clause.index)
        relation_name = _RELATIONS.get(clause.relation.base)
        if relation_name is None:
            raise SRUDiagnostic(19, clause.relation.name, f"Unsupported relation {clause.relation.name!r}")
        modifiers = self._modifiers(clause.relation)
        masked = "unmasked" not in modifiers
        term, anchor_start, anchor_end = _unescape(clause.term, masked)
        text = definition.type is IndexType.TEXT
        if relation_name == "within":
            parts = term.split()
            if len(parts) != 2:
                raise SRUDiagnostic(36, clause.term, "within needs two terms: low and high")
            self._check_term(definition, parts[0], "within")
            self._check_term(definition, parts[1], "within")
            low, high = parts
            if definition.numeric and int(low) > int(high):
                low, high = high, low
            return self._anchorless(Clause(definition.name, Relation.WITHIN, low, term_high=high), anchor_start or anchor_end)
        self._check_term(definition, term, relation_name)
        if relation_name in ("=", "adj"):
            relation = Relation.EXACT if text and "string" in modifiers else Relation.PHRASE
        elif relation_name == "==":
            relation = Relation.PHRASE if text and "word" in modifiers else Relation.EXACT
        elif relation_name == "all":
            relation = Relation.EXACT if text and "string" in modifiers else Relation.ALL
        elif relation_name == "any":
            relation = Relation.EXACT if text and "string" in modifiers else Relation.ANY
        elif relation_name == "<>":
            relation = Relation.NE
        else:
            relation = _ORDERING[relation_name]
        if anchor_start or anchor_end:
            if relation is Relation.PHRASE and text:
                return Clause(definition.name, relation, term, anchor_start=anchor_start, anchor_end=anchor_end)
            if relation in (Relation.EXACT, Relation.PHRASE):
                return Clause(definition.name, relation, term)   # a whole-value match is anchored already
            raise SRUDiagnostic(31, clause.term, f"anchoring is not supported with {clause.relation.name}")
        return Clause(definition.name, relation, term)

    @staticmethod
    def _anchorless(clause: Clause, anchored: bool) -> Clause:
        if anchored:
            raise SRUDiagnostic(31, clause.term, "anchoring is not supported with within")
        return clause

    def _modifiers(self, relation: cql.Relation) -> set[str]:
        names: set[str] = set()
        for modifier in relation.modifiers:
            name = modifier.name.lower()
            if "." in name:
                prefix, _, bare = name.partition(".")
                if prefix != "cql" and self.table.context_sets.get(prefix) != self.table.context_sets.get("cql"):
                    raise SRUDiagnostic(20, modifier.name, f"Unsupported relation modifier /{modifier.name}")
                name = bare
            if name not in _ACCEPTED_MODIFIERS or modifier.comparison is not None:
                raise SRUDiagnostic(20, modifier.name, f"Unsupported relation modifier /{modifier.name}")
            names.add(name)
        for a, b in _CONFLICTS:
            if a in names and b in names:
                raise SRUDiagnostic(21, f"{a}/{b}", f"relation modifiers /{a} and /{b} contradict each other")
        return names

    def _check_term(self, definition: IndexDefinition, term: str, relation: str) -> None:
        if definition.numeric:
            value = term.strip()
            if not value.lstrip("-").isdigit():
                raise SRUDiagnostic(36, term, f"{definition.name} takes a whole number (a year), not {term!r}")

    # -- index names ----------------------------------------------------------------------
    def _canonical_prefix(self, qualified: cql.QualifiedIndex, written: str) -> str | None:
        """The index table's prefix for the context set the clause means (None: unprefixed)."""
        if qualified.context_set is not None:
            prefix = self._prefix_by_uri.get(qualified.context_set.lower())
            if prefix is None:
                raise SRUDiagnostic(15, qualified.context_set, f"Unsupported context set {qualified.context_set}")
            return prefix
        if qualified.prefix is None:
            return None
        prefix = qualified.prefix.lower()
        if prefix not in self.table.context_sets:
            raise SRUDiagnostic(15, qualified.prefix, f"Unsupported context set prefix {qualified.prefix!r} in {written}")
        return prefix

    def resolve(self, qualified: cql.QualifiedIndex, written: str) -> IndexDefinition:
        prefix = self._canonical_prefix(qualified, written)
        if prefix is None:
            definition = self.table.by_cql(qualified.name)
        else:
            definition = self.table.by_cql(f"{prefix}.{qualified.name}")
        if definition is None:
            raise SRUDiagnostic(16, written, f"Unsupported index {written}")
        return definition

    # -- sorting --------------------------------------------------------------------------
    def _sort_key(self, key: cql.SortKey, qualified: cql.QualifiedIndex) -> SortKey:
        definition = self.resolve(qualified, key.index)
        self._check_sortable(definition, key.index)
        ascending = True
        missing_low: bool | None = None
        for modifier in key.modifiers:
            name = modifier.name.lower().removeprefix("sort.")
            if name == "ascending":
                ascending = True
            elif name == "descending":
                ascending = False
            elif name == "missinghigh":
                missing_low = False
            elif name == "missinglow":
                missing_low = True
            elif name == "ignorecase":
                continue
            elif name == "respectcase":
                raise SRUDiagnostic(91, key.index, "case-sensitive sorting is not supported")
            elif name in ("missingfail", "missingomit", "missingvalue"):
                raise SRUDiagnostic(92, modifier.name, "records without a value always sort (missingHigh/missingLow)")
            else:
                raise SRUDiagnostic(82, modifier.name, f"Unsupported sort modifier /{modifier.name}")
        return SortKey(definition.name, ascending, _missing_first(ascending, missing_low))

    @staticmethod
    def _check_sortable(definition: IndexDefinition, written: str) -> None:
        if not definition.sortable:
            raise SRUDiagnostic(88, written, f"{written} cannot be sorted on")


_SYNTAX_DIAGNOSTICS = {
    SyntaxProblem.PARENTHESES: 13,
    SyntaxProblem.QUOTES: 14,
}


def parse_cql(text: str, *, max_depth: int = cql.DEFAULT_MAX_DEPTH) -> cql.Query:
    """`protocols.cql.parse` with syntax errors as diagnostics: 13 parentheses, 14 quotes, else 10."""
    try:
        return cql.parse(text, max_depth=max_depth)
    except cql.CQLSyntaxError as error:
        code = _SYNTAX_DIAGNOSTICS.get(error.problem, 10)
        raise SRUDiagnostic(code, f"{error.message} at character {error.position}") from None


def _missing_first(ascending: bool, missing_low: bool | None) -> bool:
    """`SortKey.missing_first` from CQL's missingHigh / missingLow (None: the default, last)."""
    if missing_low is None:
        return False
    return missing_low == ascending


def _conjuncts(query: Query) -> list[Query]:
    if isinstance(query, And):
        return _conjuncts(query.left) + _conjuncts(query.right)
    return [query]


def _chain(operands: list[Query]) -> Query:
    result = operands[0]
    for operand in operands[1:]:
        result = And(result, operand)
    return result


def _unwrap(query: Query) -> Query:
    """Remove ItemMatch wrappers inside a subtree that is being wrapped as a whole."""
    if isinstance(query, ItemMatch):
        return _unwrap(query.query)
    if isinstance(query, (And, Or, AndNot)):
        return type(query)(_unwrap(query.left), _unwrap(query.right))
    return query


def _unescape(term: str, masked: bool) -> tuple[str, bool, bool]:
    """Resolve CQL escapes; return (term in the canonical model's masking syntax, anchor start, anchor end).

    Literal `*` / `?` (escaped, or any under /unmasked) cannot be searched for: the analysis drops
    them from indexed text, so they become spaces here.
    """
    out: list[str] = []
    anchor_start = anchor_end = False
    i = 0
    length = len(term)
    while i < length:
        char = term[i]
        if char == "\\" and i + 1 < length:
            escaped = term[i + 1]
            out.append(" " if escaped in "*?" else escaped)
            i += 2
            continue
        if char == "^":
            if i == 0:
                anchor_start = True
            elif i == length - 1:
                anchor_end = True
            else:
                raise SRUDiagnostic(32, term, "^ anchors only at the start or end of a term")
        elif char in "*?":
            out.append(char if masked else " ")
        else:
            out.append(char)
        i += 1
    return "".join(out), anchor_start, anchor_end

"""Type-1 (RPN) queries with Bib-1 attributes -> the canonical query model.

Use attributes resolve through the index table (`IndexTable.by_bib1`; a string use value is
an index name, canonical or CQL). The other attribute types shape the clause:

  relation (2)     1 <, 2 <=, 3 = (default), 4 >=, 5 >, 6 <>; 102 relevance is treated as =;
                   103 AlwaysMatches matches every record
  position (3)     1 first in field and 2 first in subfield anchor a phrase at the start of a
                   value; 3 any position (default)
  structure (4)    1 phrase; 2 word, 6 word list, 105 free-form and 106 document text: every
                   word (ALL); 3 key, 104 urx, 107 local number, 108 string: the whole value
                   (EXACT); 4 year, 5/100 date, 109 numeric string: a number, for date and
                   number indexes; 101/102 name: phrase. Default: ALL for text, equality else.
  truncation (5)   1 right, 2 left, 3 both, 100 none (default), 101 `#` masks any run of
                   characters, 104 (Z39.58) `?` / `?n` any run and `#` one character
  completeness (6) 1 incomplete subfield (default); 2 complete subfield and 3 complete field:
                   the whole value (EXACT)

Anything else raises `Bib1Diagnostic` with the Bib-1 code for that attribute type and the
offending value as addinfo. Item-level clauses ANDed together are gathered into one
`ItemMatch` (one and the same item), as CQL mapping does.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Sequence

from indexer.indexes import IndexDefinition, IndexLevel, IndexTable, IndexType
from indexer.query import And, AndNot, Clause, ItemMatch, MatchAll, Or, Query, Relation, SortKey
from protocols.z3950 import diagnostics as D
from protocols.z3950.diagnostics import Bib1Diagnostic
from protocols.z3950.pdu import (
    BIB1_ATTRIBUTE_SET,
    Attribute,
    AttrTerm,
    Operator,
    ResultSetRef,
    RpnNode,
    RpnOp,
    RpnQuery,
    SortKeySpec,
)

USE, RELATION, POSITION, STRUCTURE, TRUNCATION, COMPLETENESS = 1, 2, 3, 4, 5, 6

_ORDERING = {1: Relation.LT, 2: Relation.LE, 4: Relation.GE, 5: Relation.GT}
_EQUAL_RELATIONS = {3, 102}
_ALWAYS_MATCHES = 103
_TEXT_STRUCTURES = {1: Relation.PHRASE, 2: Relation.ALL, 6: Relation.ALL, 105: Relation.ALL, 106: Relation.ALL,
                    101: Relation.PHRASE, 102: Relation.PHRASE}
_WHOLE_VALUE_STRUCTURES = {3, 104, 107, 108}
_NUMERIC_STRUCTURES = {4, 5, 100, 109}
_TYPE_CODES = {
    RELATION: D.UNSUPPORTED_RELATION_ATTRIBUTE,
    POSITION: D.UNSUPPORTED_POSITION_ATTRIBUTE,
    STRUCTURE: D.UNSUPPORTED_STRUCTURE_ATTRIBUTE,
    TRUNCATION: D.UNSUPPORTED_TRUNCATION_ATTRIBUTE,
    COMPLETENESS: D.UNSUPPORTED_COMPLETENESS_ATTRIBUTE,
}


@dataclass(frozen=True)
class Attributes:
    """The Bib-1 attributes of one operand, validated (None where not given)."""

    use: int | str | None = None
    relation: int = 3
    position: int = 3
    structure: int | None = None
    truncation: int = 100
    completeness: int = 1


def read_attributes(attributes: Sequence[Attribute], default_set: str = BIB1_ATTRIBUTE_SET) -> Attributes:
    """Validate attribute sets, types and value kinds; the first of each type counts."""
    if default_set != BIB1_ATTRIBUTE_SET:
        raise Bib1Diagnostic(D.UNSUPPORTED_ATTRIBUTE_SET, default_set)
    values: dict[int, int | str] = {}
    for attribute in attributes:
        if attribute.attribute_set not in (None, BIB1_ATTRIBUTE_SET):
            raise Bib1Diagnostic(D.UNSUPPORTED_ATTRIBUTE_SET, attribute.attribute_set)
        if attribute.type not in (USE, RELATION, POSITION, STRUCTURE, TRUNCATION, COMPLETENESS):
            raise Bib1Diagnostic(D.UNSUPPORTED_ATTRIBUTE_TYPE, str(attribute.type))
        value = attribute.value
        if isinstance(value, tuple):
            raise Bib1Diagnostic(_TYPE_CODES.get(attribute.type, D.UNSUPPORTED_USE_ATTRIBUTE), ",".join(map(str, value)))
        if isinstance(value, str) and attribute.type != USE:
            raise Bib1Diagnostic(_TYPE_CODES[attribute.type], value)
        values.setdefault(attribute.type, value)
    return Attributes(
        use=values.get(USE),
        relation=int(values.get(RELATION, 3)),
        position=int(values.get(POSITION, 3)),
        structure=int(values[STRUCTURE]) if STRUCTURE in values else None,
        truncation=int(values.get(TRUNCATION, 100)),
        completeness=int(values.get(COMPLETENESS, 1)),
    )


def resolve_use(use: int | str | None, table: IndexTable) -> IndexDefinition:
    """The index a use attribute names; no use attribute means the default (any) index."""
    if use is None:
        return table[table.default_index]
    definition = table.by_bib1(use) if isinstance(use, int) else (table.get(use) or table.by_cql(use))
    if definition is None:
        raise Bib1Diagnostic(D.UNSUPPORTED_USE_ATTRIBUTE, str(use))
    return definition


def rpn_to_query(rpn: RpnQuery, table: IndexTable, *, result_sets: Mapping[str, Query] | None = None) -> Query:
    """Map a Type-1 query; `result_sets` gives the canonical query of each named result set a
    query may refer to (`@set name`)."""
    mapper = _Mapper(table, rpn.attribute_set, result_sets)
    return mapper.node(rpn.root)


class _Mapper:
    def __init__(self, table: IndexTable, attribute_set: str, result_sets: Mapping[str, Query] | None):
        self.table = table
        self.attribute_set = attribute_set
        self.result_sets = result_sets

    def node(self, node: RpnNode) -> Query:
        # Iterative post-order walk (RPN trees from the wire may be deep): operands' queries
        # are pushed on `values`; an operator pops its two.
        values: list[Query] = []
        stack: list[tuple[RpnNode, bool]] = [(node, False)]
        while stack:
            current, expanded = stack.pop()
            if isinstance(current, RpnOp) and not expanded:
                if current.op is Operator.PROX:
                    raise Bib1Diagnostic(D.OPERATOR_UNSUPPORTED, "prox")
                stack.append((current, True))
                stack.append((current.right, False))
                stack.append((current.left, False))
            elif isinstance(current, RpnOp):
                right = values.pop()
                left = values.pop()
                if current.op is Operator.AND:
                    values.append(self._conjunction(left, right))
                elif current.op is Operator.OR:
                    values.append(Or(left, right))
                else:
                    values.append(AndNot(left, right))
            elif isinstance(current, ResultSetRef):
                values.append(self._result_set(current))
            else:
                values.append(self.operand(current))
        return values[0]

    def _result_set(self, ref: ResultSetRef) -> Query:
        if self.result_sets is None:
            raise Bib1Diagnostic(D.RESULT_SET_NOT_SUPPORTED_AS_SEARCH_TERM, ref.name)
        if ref.attributes:
            raise Bib1Diagnostic(D.RESULT_SET_NOT_SUPPORTED_AS_SEARCH_TERM, f"{ref.name} with attributes")
        query = self.result_sets.get(ref.name)
        if query is None:
            raise Bib1Diagnostic(D.RESULT_SET_DOES_NOT_EXIST, ref.name)
        return query

    def _item_level(self, query: Query) -> bool:
        if isinstance(query, ItemMatch):
            return True
        if isinstance(query, Clause):
            definition = self.table.get(query.index)
            return definition is not None and definition.level is IndexLevel.ITEM
        return False

    def _conjunction(self, left: Query, right: Query) -> Query:
        if self._item_level(left) and self._item_level(right):
            inner_left = left.query if isinstance(left, ItemMatch) else left
            inner_right = right.query if isinstance(right, ItemMatch) else right
            return ItemMatch(And(inner_left, inner_right))
        return And(left, right)

    def operand(self, operand: AttrTerm) -> Query:
        attributes = read_attributes(operand.attributes, self.attribute_set)
        definition = resolve_use(attributes.use, self.table)
        return clause_for(definition, attributes, str(operand.term))


def clause_for(definition: IndexDefinition, attributes: Attributes, raw_term: str) -> Query:
    """One operand's clause from its index and validated attributes."""
    relation_value = attributes.relation
    if relation_value == _ALWAYS_MATCHES:
        return MatchAll()
    if relation_value not in _ORDERING and relation_value not in _EQUAL_RELATIONS and relation_value != 6:
        raise Bib1Diagnostic(D.UNSUPPORTED_RELATION_ATTRIBUTE, str(relation_value))
    if attributes.position not in (1, 2, 3):
        raise Bib1Diagnostic(D.UNSUPPORTED_POSITION_ATTRIBUTE, str(attributes.position))
    if attributes.completeness not in (1, 2, 3):
        raise Bib1Diagnostic(D.UNSUPPORTED_COMPLETENESS_ATTRIBUTE, str(attributes.completeness))
    structure = attributes.structure
    if structure is not None and structure not in _TEXT_STRUCTURES and structure not in _WHOLE_VALUE_STRUCTURES \
            and structure not in _NUMERIC_STRUCTURES:
        raise Bib1Diagnostic(D.UNSUPPORTED_STRUCTURE_ATTRIBUTE, str(structure))
    numeric = definition.numeric
    if structure in _NUMERIC_STRUCTURES and not numeric and structure != 109:
        raise Bib1Diagnostic(D.UNSUPPORTED_ATTRIBUTE_COMBINATION, f"structure {structure} with use {definition.name}")

    term = _masked_term(raw_term, attributes.truncation, numeric)
    if numeric:
        value = term.strip()
        if not re.fullmatch(r"-?\d+", value):
            raise Bib1Diagnostic(D.MALFORMED_SEARCH_TERM, raw_term)
        # Canonical digits without int(): Python refuses to convert more than 4300 digits, and a
        # number beyond the store's range is the store's to refuse (QueryNotSupported).
        negative, digits = value.startswith("-"), value.lstrip("-").lstrip("0") or "0"
        term = "-" + digits if negative and digits != "0" else digits

    if relation_value in _ORDERING:
        return Clause(definition.name, _ORDERING[relation_value], term)
    if relation_value == 6:
        return Clause(definition.name, Relation.NE, term)

    anchored = attributes.position in (1, 2)
    if definition.type is not IndexType.TEXT:
        # keyword, number, date: equality on the whole value whatever the structure.
        return Clause(definition.name, Relation.EXACT if not numeric else Relation.PHRASE, term)
    if attributes.completeness in (2, 3) or structure in _WHOLE_VALUE_STRUCTURES:
        return Clause(definition.name, Relation.EXACT, term)
    if structure == 109:
        return Clause(definition.name, Relation.PHRASE, term)
    relation = _TEXT_STRUCTURES.get(structure, Relation.ALL) if structure is not None else Relation.ALL
    if anchored:
        # Anchoring applies to a phrase; a single word anchored is a one-word phrase.
        return Clause(definition.name, Relation.PHRASE, term, anchor_start=True)
    return Clause(definition.name, relation, term)


def _masked_term(term: str, truncation: int, numeric: bool) -> str:
    """The term with truncation turned into the model's masking (`*` any run, `?` one char).
    Literal `*` and `?` in an untruncated term are not masks; they are dropped."""
    if truncation == 100:
        return re.sub(r"[*?]+", " ", term).strip() if not numeric else term
    if numeric:
        raise Bib1Diagnostic(D.UNSUPPORTED_TRUNCATION_ATTRIBUTE, str(truncation))
    plain = re.sub(r"[*?]+", " ", term).strip()
    if truncation == 1:
        return plain + "*"
    if truncation == 2:
        return "*" + plain
    if truncation == 3:
        return "*" + plain + "*"
    if truncation == 101:
        return re.sub(r"[*?]+", " ", term).replace("#", "*").strip()
    if truncation == 104:
        masked = re.sub(r"\?\d*", "*", term.replace("*", " "))
        return masked.replace("#", "?").strip()
    raise Bib1Diagnostic(D.UNSUPPORTED_TRUNCATION_ATTRIBUTE, str(truncation))


# -- scan and sort ----------------------------------------------------------------------------

def scan_index(attributes: Sequence[Attribute], table: IndexTable, attribute_set: str | None = None) -> IndexDefinition:
    """The scannable index a scan's attributes name (a use attribute is required)."""
    parsed = read_attributes(attributes, attribute_set or BIB1_ATTRIBUTE_SET)
    if parsed.use is None:
        raise Bib1Diagnostic(D.USE_ATTRIBUTE_REQUIRED, "scan needs a use attribute")
    definition = resolve_use(parsed.use, table)
    if not definition.scannable:
        raise Bib1Diagnostic(D.UNSUPPORTED_USE_ATTRIBUTE, f"{parsed.use} ({definition.name} cannot be scanned)")
    if parsed.relation not in (3, 4, 102):
        raise Bib1Diagnostic(D.UNSUPPORTED_RELATION_ATTRIBUTE, str(parsed.relation))
    if parsed.truncation != 100:
        raise Bib1Diagnostic(D.UNSUPPORTED_TRUNCATION_ATTRIBUTE, str(parsed.truncation))
    return definition


def sort_keys(specs: Sequence[SortKeySpec], table: IndexTable) -> tuple[SortKey, ...]:
    """Sort request keys -> canonical sort keys over sortable indexes."""
    keys = []
    for spec in specs:
        if spec.sort_field is not None:
            definition = table.get(spec.sort_field) or table.by_cql(spec.sort_field)
            written = spec.sort_field
        else:
            parsed = read_attributes(spec.attributes, spec.attribute_set)
            if parsed.use is None:
                raise Bib1Diagnostic(D.CANNOT_SORT, "a sort key needs a use attribute")
            definition = table.by_bib1(parsed.use) if isinstance(parsed.use, int) else (
                table.get(parsed.use) or table.by_cql(parsed.use))
            written = str(parsed.use)
        if definition is None or not definition.sortable:
            raise Bib1Diagnostic(D.CANNOT_SORT, f"{written} is not a sort key")
        keys.append(SortKey(definition.name, spec.ascending))
    return tuple(keys)

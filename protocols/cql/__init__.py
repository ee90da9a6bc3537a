"""CQL 1.2: parser, parse tree and XCQL serializer. No knowledge of indexes or storage.

>>> query = parse('dc.title any/stem "fish chips" sortby dc.date/sort.descending')
>>> query.root.index, query.root.relation.base, query.root.term
('dc.title', 'any', 'fish chips')
"""

from .ast import (
    DEFAULT_RELATION,
    SERVER_CHOICE,
    Boolean,
    Modifier,
    Node,
    PrefixAssignment,
    QualifiedIndex,
    Query,
    Relation,
    SearchClause,
    SortKey,
    clauses_in_scope,
    qualify,
    sort_keys_in_scope,
)
from .parser import DEFAULT_MAX_DEPTH, CQLSyntaxError, SyntaxProblem, parse, tokenize
from .render import map_clauses, quote, to_cql
from .xcql import XCQL_NS, to_xcql, xcql_element

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_RELATION",
    "SERVER_CHOICE",
    "XCQL_NS",
    "Boolean",
    "CQLSyntaxError",
    "Modifier",
    "Node",
    "PrefixAssignment",
    "QualifiedIndex",
    "Query",
    "Relation",
    "SearchClause",
    "SortKey",
    "SyntaxProblem",
    "clauses_in_scope",
    "map_clauses",
    "parse",
    "qualify",
    "quote",
    "sort_keys_in_scope",
    "to_cql",
    "to_xcql",
    "tokenize",
]

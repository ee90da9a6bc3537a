"""CQL 1.2: parser, parse tree, XCQL and CQL serializers. No knowledge of indexes or storage.

- ``parse(text, max_depth=...) -> Query``; errors are ``CQLSyntaxError(message, position, problem)``.
- ``clauses_in_scope`` / ``sort_keys_in_scope`` / ``qualify`` resolve index prefixes through the
  prefix assignments in scope (``QualifiedIndex.key`` = (context-set URI or prefix, name)).
- ``to_xcql`` / ``xcql_element`` give cql-java's XCQL; ``to_cql`` canonical CQL text; ``map_clauses``
  rewrites clauses (index renaming for remote targets).

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

"""The CQL 1.2 parse tree.

The shapes follow cql-java, the reference parser, closely enough that its XCQL can be reproduced exactly:

- prefix assignments (``>dc="uri"``) scope over the query that follows them. cql-java keeps them as
  wrapper nodes and, when rendering, hands the accumulated list to the first search clause or boolean
  below; here they are stored directly on that node (``prefixes``, outermost first). Assignments made
  before the whole query are kept on :class:`Query` instead, because they also scope over the sort keys.
- a boolean carries the operator (lower case) and its modifiers; ``prox`` is just another operator.
- terms keep backslash escapes and masking characters (``*``, ``?``, ``^``) exactly as written: what
  they mean depends on the consumer.
- a bare term gets the index ``cql.serverChoice`` and relation ``=``; ``SearchClause.implicit`` records
  that neither was written.

Every node is a frozen dataclass; source positions are carried but take no part in equality.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

SERVER_CHOICE = "cql.serverChoice"
DEFAULT_RELATION = "="


@dataclass(frozen=True)
class Modifier:
    """A relation, boolean or sort modifier: ``/stem`` or ``/distance<3``.

    ``name`` is lower-cased as cql-java does; ``comparison`` and ``value`` are both None or both set.
    """

    name: str
    comparison: str | None = None
    value: str | None = None


@dataclass(frozen=True)
class Relation:
    """A relation as written (``=``, ``any``, ``Any``, ``<>``...) with its modifiers."""

    name: str
    modifiers: tuple[Modifier, ...] = ()

    @property
    def base(self) -> str:
        """The relation name lower-cased: relations are case-insensitive."""
        return self.name.lower()

    def modifier(self, name: str) -> Modifier | None:
        """The last modifier with this (case-insensitive) name, or None."""
        wanted = name.lower()
        for modifier in reversed(self.modifiers):
            if modifier.name == wanted:
                return modifier
        return None


@dataclass(frozen=True)
class PrefixAssignment:
    """``>name="identifier"``; ``name`` is None for ``>"identifier"`` (sets the default context set)."""

    name: str | None
    identifier: str


@dataclass(frozen=True)
class SearchClause:
    index: str
    relation: Relation
    term: str
    prefixes: tuple[PrefixAssignment, ...] = ()
    implicit: bool = False
    """True when neither index nor relation was written (``cat`` rather than ``title = cat``)."""
    position: int = field(default=0, compare=False)
    """Character offset of the term in the query text."""


@dataclass(frozen=True)
class Boolean:
    op: str
    """``and``, ``or``, ``not`` or ``prox`` (lower case whatever the query said)."""
    left: Node
    right: Node
    modifiers: tuple[Modifier, ...] = ()
    prefixes: tuple[PrefixAssignment, ...] = ()
    position: int = field(default=0, compare=False)
    """Character offset of the operator in the query text."""


Node = SearchClause | Boolean


@dataclass(frozen=True)
class SortKey:
    """One key of ``sortby``: an index with modifiers such as ``sort.descending``."""

    index: str
    modifiers: tuple[Modifier, ...] = ()
    position: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Query:
    """A whole CQL query: the prefix assignments made before it, the tree and its sort keys."""

    root: Node
    sort_keys: tuple[SortKey, ...] = ()
    prefixes: tuple[PrefixAssignment, ...] = ()
    text: str = field(default="", compare=False)


@dataclass(frozen=True)
class QualifiedIndex:
    """An index name split at its prefix and looked up in the prefix assignments in scope.

    ``dc.title`` under ``>dc="info:srw/cql-context-set/1/dc-v1.1"`` gives prefix ``dc``, name ``title``
    and that identifier as ``context_set``. With no assignment for the prefix ``context_set`` is None
    and the consumer applies its own idea of what ``dc`` means. An unprefixed index takes the identifier
    of an unnamed assignment (``>"uri"``) if one is in scope.
    """

    prefix: str | None
    name: str
    context_set: str | None

    @property
    def key(self) -> tuple[str | None, str]:
        """(context-set identifier if assigned, else the prefix as written, index name)."""
        return (self.context_set if self.context_set is not None else self.prefix, self.name)


def qualify(index: str, prefixes: Sequence[PrefixAssignment]) -> QualifiedIndex:
    """Split ``index`` and resolve its prefix through ``prefixes`` (outermost first; inner ones win).

    Prefix names compare case-insensitively, as CQL context-set names do.
    """
    prefix, dot, name = index.partition(".")
    if not dot or not prefix or not name:
        prefix_key: str | None = None
        name = index
        prefix_out: str | None = None
    else:
        prefix_key = prefix.lower()
        prefix_out = prefix
    for assignment in reversed(prefixes):
        assigned = assignment.name.lower() if assignment.name is not None else None
        if assigned == prefix_key:
            return QualifiedIndex(prefix_out, name, assignment.identifier)
    return QualifiedIndex(prefix_out, name, None)


def clauses_in_scope(query: Query) -> Iterator[tuple[SearchClause, QualifiedIndex]]:
    """Every search clause, left to right, with its index qualified by the assignments around it."""
    stack: list[tuple[Node, tuple[PrefixAssignment, ...]]] = [(query.root, query.prefixes)]
    while stack:
        node, scope = stack.pop()
        scope = scope + node.prefixes
        if isinstance(node, SearchClause):
            yield node, qualify(node.index, scope)
        else:
            stack.append((node.right, scope))
            stack.append((node.left, scope))


def sort_keys_in_scope(query: Query) -> Iterator[tuple[SortKey, QualifiedIndex]]:
    """The sort keys with their indexes qualified by the query's top-level prefix assignments."""
    for key in query.sort_keys:
        yield key, qualify(key.index, query.prefixes)

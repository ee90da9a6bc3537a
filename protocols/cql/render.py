"""CQL text from a parse tree, and tree rewriting: what a gateway needs to pass a query on.

``to_cql(parse(text))`` is a canonical form of ``text``: parsing it again gives an equal tree. The one
exception is spelling with no exact quoted form: a term of several words one of which holds a bare
``"`` (``ab"c d``), or one that must be quoted and ends in a lone backslash. Those come back with the
character escaped, which CQL defines to mean the same thing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from .ast import Modifier, Node, PrefixAssignment, QualifiedIndex, Query, SearchClause, qualify

_BARE_STOP = frozenset("()/<>= \t\r\n")


def quote(symbol: str) -> str:
    """``symbol`` as a CQL word if it can be one, else as a quoted string that lexes back to it.

    Backslash escapes already in the symbol are kept (the tree stores them verbatim); an unescaped
    ``"`` or a final lone backslash is escaped.
    """
    if symbol and symbol[0] != '"' and not any(c in _BARE_STOP for c in symbol):
        return symbol
    out: list[str] = []
    i, n = 0, len(symbol)
    while i < n:
        c = symbol[i]
        if c == "\\":
            if i + 1 < n:
                out.append(symbol[i : i + 2])
                i += 2
                continue
            out.append("\\\\")
        elif c == '"':
            out.append('\\"')
        else:
            out.append(c)
        i += 1
    return '"' + "".join(out) + '"'


def _modifiers(modifiers: tuple[Modifier, ...]) -> str:
    parts = []
    for modifier in modifiers:
        if modifier.comparison is None:
            parts.append(f"/{modifier.name}")
        else:
            parts.append(f"/{modifier.name}{modifier.comparison}{quote(modifier.value or '')}")
    return "".join(parts)


def _prefixes(prefixes: tuple[PrefixAssignment, ...]) -> str:
    parts = []
    for assignment in prefixes:
        if assignment.name is None:
            parts.append(f">{quote(assignment.identifier)} ")
        else:
            parts.append(f">{quote(assignment.name)}={quote(assignment.identifier)} ")
    return "".join(parts)


def _node(node: Node, *, right_operand: bool = False) -> str:
    # Booleans have no precedence and associate to the left, so only a right-hand boolean needs
    # parentheses; assignments on a node go inside parentheses so they scope over just that node
    # (outside any, at the start, they would become the query's top-level assignments).
    if isinstance(node, SearchClause):
        relation = node.relation.name + _modifiers(node.relation.modifiers)
        body = quote(node.term) if node.implicit else f"{quote(node.index)} {relation} {quote(node.term)}"
        needs_parentheses = bool(node.prefixes)
    else:
        left = _node(node.left)
        right = _node(node.right, right_operand=True)
        body = f"{left} {node.op}{_modifiers(node.modifiers)} {right}"
        needs_parentheses = right_operand or bool(node.prefixes)
    text = _prefixes(node.prefixes) + body
    return f"({text})" if needs_parentheses else text


def to_cql(query: Query) -> str:
    """The query as canonical CQL text (single spaces, quoting only where needed)."""
    text = _prefixes(query.prefixes) + _node(query.root)
    if query.sort_keys:
        keys = " ".join(quote(key.index) + _modifiers(key.modifiers) for key in query.sort_keys)
        text += f" sortby {keys}"
    return text


def map_clauses(query: Query, rewrite: Callable[[SearchClause, QualifiedIndex], SearchClause]) -> Query:
    """A copy of ``query`` with every search clause replaced by ``rewrite(clause, qualified_index)``.

    ``qualified_index`` resolves the clause's index through the prefix assignments in scope, so a
    gateway can rename indexes for a remote target (and drop the prefixes it no longer needs).
    """

    def walk(node: Node, scope: tuple[PrefixAssignment, ...]) -> Node:
        scope = scope + node.prefixes
        if isinstance(node, SearchClause):
            return rewrite(node, qualify(node.index, scope))
        return replace(node, left=walk(node.left, scope), right=walk(node.right, scope))

    return replace(query, root=walk(query.root, query.prefixes))

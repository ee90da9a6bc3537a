"""XCQL: the XML form of a parsed CQL query, element for element as cql-java writes it.

SRU puts it in ``echoedSearchRetrieveRequest/xQuery``; there the elements belong to the XCQL namespace
(:data:`XCQL_NS`), so :func:`xcql_element` takes the namespace to use. :func:`to_xcql` gives cql-java's
plain, namespace-free text.
"""

from __future__ import annotations

from collections.abc import Sequence

from lxml import etree

from .ast import Modifier, Node, PrefixAssignment, Query, SearchClause, SortKey

XCQL_NS = "http://www.loc.gov/zing/cql/xcql/"


class _Builder:
    def __init__(self, namespace: str | None) -> None:
        self.prefix = f"{{{namespace}}}" if namespace else ""
        self.nsmap = {None: namespace} if namespace else None

    def element(self, parent: etree._Element | None, tag: str, text: str | None = None) -> etree._Element:
        name = self.prefix + tag
        if parent is None:
            element = etree.Element(name, nsmap=self.nsmap)
        else:
            element = etree.SubElement(parent, name)
        if text is not None:
            element.text = text
        return element

    def node(
        self,
        parent: etree._Element | None,
        node: Node,
        outer_prefixes: tuple[PrefixAssignment, ...],
        sort_keys: Sequence[SortKey],
    ) -> etree._Element:
        prefixes = outer_prefixes + node.prefixes
        if isinstance(node, SearchClause):
            element = self.element(parent, "searchClause")
            self.prefixes(element, prefixes)
            self.element(element, "index", node.index)
            relation = self.element(element, "relation")
            self.element(relation, "value", node.relation.name)
            self.modifiers(relation, node.relation.modifiers)
            self.element(element, "term", node.term)
        else:
            element = self.element(parent, "triple")
            self.prefixes(element, prefixes)
            boolean = self.element(element, "boolean")
            self.element(boolean, "value", node.op)
            self.modifiers(boolean, node.modifiers)
            self.node(self.element(element, "leftOperand"), node.left, (), ())
            self.node(self.element(element, "rightOperand"), node.right, (), ())
        if sort_keys:
            keys = self.element(element, "sortKeys")
            for key in sort_keys:
                key_element = self.element(keys, "key")
                self.element(key_element, "index", key.index)
                self.modifiers(key_element, key.modifiers)
        return element

    def prefixes(self, parent: etree._Element, prefixes: tuple[PrefixAssignment, ...]) -> None:
        if not prefixes:
            return
        container = self.element(parent, "prefixes")
        for assignment in prefixes:
            prefix = self.element(container, "prefix")
            if assignment.name is not None:
                self.element(prefix, "name", assignment.name)
            self.element(prefix, "identifier", assignment.identifier)

    def modifiers(self, parent: etree._Element, modifiers: tuple[Modifier, ...]) -> None:
        if not modifiers:
            return
        container = self.element(parent, "modifiers")
        for modifier in modifiers:
            element = self.element(container, "modifier")
            self.element(element, "type", modifier.name)
            if modifier.comparison is not None:
                self.element(element, "comparison", modifier.comparison)
                self.element(element, "value", modifier.value)


def xcql_element(query: Query, *, namespace: str | None = None) -> etree._Element:
    """The query as an XCQL element tree (a ``searchClause`` or ``triple`` root)."""
    # Recursing is safe: parse() caps the tree depth far below the recursion limit.
    return _Builder(namespace).node(None, query.root, query.prefixes, query.sort_keys)


def to_xcql(query: Query, *, namespace: str | None = None) -> str:
    """The query as indented XCQL text, the way cql-java prints it."""
    return etree.tostring(xcql_element(query, namespace=namespace), encoding="unicode", pretty_print=True)

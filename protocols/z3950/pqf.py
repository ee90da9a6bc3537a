"""Prefix Query Format (YAZ's PQF) to and from `RpnQuery`.

Grammar (as yaz-client and zoomsh accept it):
    query    ::= ['@attrset' set] node
    node     ::= attr* (term | '@set' name) | op node node
    op       ::= '@and' | '@or' | '@not' | '@prox' excl dist ordered relation which unit
    attr     ::= '@attr' [set] type '=' value[',' value ...]
    term     ::= ['@term' (general|numeric|string|oid|datetime|null)] word-or-"quoted string"
`@not` is and-not. Values that are not integers are string attribute values (complex).
"""
from __future__ import annotations

from protocols.z3950.pdu import (
    BIB1_ATTRIBUTE_SET,
    Attribute,
    AttrTerm,
    Operator,
    Proximity,
    ResultSetRef,
    RpnNode,
    RpnOp,
    RpnQuery,
    TermKind,
)

ATTRIBUTE_SETS = {
    "bib-1": BIB1_ATTRIBUTE_SET,
    "bib1": BIB1_ATTRIBUTE_SET,
    "exp-1": "1.2.840.10003.3.2",
    "ext-1": "1.2.840.10003.3.3",
    "ccl-1": "1.2.840.10003.3.4",
    "gils": "1.2.840.10003.3.5",
    "stas": "1.2.840.10003.3.6",
    "collections-1": "1.2.840.10003.3.7",
    "cimi-1": "1.2.840.10003.3.8",
    "geo-1": "1.2.840.10003.3.9",
    "zbig": "1.2.840.10003.3.10",
    "util": "1.2.840.10003.3.11",
    "xd-1": "1.2.840.10003.3.12",
    "zthes": "1.2.840.10003.3.13",
    "fin-1": "1.2.840.10003.3.14",
    "dan-1": "1.2.840.10003.3.15",
    "holdings": "1.2.840.10003.3.16",
    "marc": "1.2.840.10003.3.17",
    "bib-2": "1.2.840.10003.3.18",
    "zeerex": "1.2.840.10003.3.19",
}
_SET_NAMES = {oid: name for name, oid in reversed(list(ATTRIBUTE_SETS.items()))}
_TERM_KINDS = {
    "general": TermKind.GENERAL,
    "numeric": TermKind.NUMERIC,
    "string": TermKind.CHARACTER_STRING,
    "oid": TermKind.OID,
    "datetime": TermKind.DATE_TIME,
    "null": TermKind.NULL,
}
_OPERATORS = {"@and": Operator.AND, "@or": Operator.OR, "@not": Operator.AND_NOT}
MAX_DEPTH = 100


class PqfError(ValueError):
    """A PQF string that does not parse; `position` is the offset of the offending token."""

    def __init__(self, message: str, position: int):
        super().__init__(f"{message} at position {position}")
        self.position = position


def _attribute_set(name: str) -> str:
    lowered = name.lower()
    if lowered in ATTRIBUTE_SETS:
        return ATTRIBUTE_SETS[lowered]
    if all(part.isdigit() for part in name.split(".")) and "." in name:
        return name
    raise ValueError(f"unknown attribute set {name!r}")


class _Tokens:
    def __init__(self, text: str):
        self.tokens: list[tuple[str, int, bool]] = []  # (text, position, was_quoted)
        index = 0
        while index < len(text):
            char = text[index]
            if char.isspace():
                index += 1
                continue
            start = index
            if char == '"':
                index += 1
                chars = []
                while index < len(text) and text[index] != '"':
                    if text[index] == "\\" and index + 1 < len(text):
                        index += 1
                    chars.append(text[index])
                    index += 1
                if index >= len(text):
                    raise PqfError("unterminated quoted term", start)
                index += 1
                self.tokens.append(("".join(chars), start, True))
            else:
                while index < len(text) and not text[index].isspace():
                    index += 1
                self.tokens.append((text[start:index], start, False))
        self.index = 0
        self.end = len(text)

    def peek(self) -> tuple[str, int, bool] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self, what: str) -> tuple[str, int, bool]:
        token = self.peek()
        if token is None:
            raise PqfError(f"expected {what}, found the end of the query", self.end)
        self.index += 1
        return token

    def take_int(self, what: str) -> int:
        text, position, _ = self.take(what)
        try:
            return int(text)
        except ValueError:
            raise PqfError(f"expected {what} (an integer), found {text!r}", position) from None


def parse_pqf(text: str) -> RpnQuery:
    """Parse a PQF query; raises `PqfError` with the position of the problem."""
    tokens = _Tokens(text)
    attribute_set = BIB1_ATTRIBUTE_SET
    token = tokens.peek()
    if token is not None and token[0] == "@attrset" and not token[2]:
        tokens.take("@attrset")
        name, position, _ = tokens.take("an attribute set name")
        try:
            attribute_set = _attribute_set(name)
        except ValueError as error:
            raise PqfError(str(error), position) from None
    root = _parse_node(tokens, 1)
    leftover = tokens.peek()
    if leftover is not None:
        raise PqfError(f"unexpected {leftover[0]!r} after the end of the query", leftover[1])
    return RpnQuery(root, attribute_set)


def _parse_node(tokens: _Tokens, depth: int) -> RpnNode:
    if depth > MAX_DEPTH:
        token = tokens.peek()
        raise PqfError(f"query nested deeper than {MAX_DEPTH}", token[1] if token else tokens.end)
    attributes: list[Attribute] = []
    kind = TermKind.GENERAL
    while True:
        text, position, quoted = tokens.take("a term or operator")
        if quoted:
            return AttrTerm(tuple(attributes), text, kind)
        if text in _OPERATORS and not attributes:
            left = _parse_node(tokens, depth + 1)
            right = _parse_node(tokens, depth + 1)
            return RpnOp(_OPERATORS[text], left, right)
        if text == "@prox" and not attributes:
            proximity = Proximity(
                exclusion=bool(tokens.take_int("exclusion (0/1)")),
                distance=tokens.take_int("distance"),
                ordered=bool(tokens.take_int("ordered (0/1)")),
                relation_type=tokens.take_int("relation type"),
                private_unit=_which(tokens),
                unit=tokens.take_int("proximity unit"),
            )
            left = _parse_node(tokens, depth + 1)
            right = _parse_node(tokens, depth + 1)
            return RpnOp(Operator.PROX, left, right, proximity)
        if text == "@attr":
            attributes.append(_parse_attribute(tokens))
            continue
        if text == "@term":
            name, name_position, _ = tokens.take("a term type")
            if name.lower() not in _TERM_KINDS:
                raise PqfError(f"unknown term type {name!r}", name_position)
            kind = _TERM_KINDS[name.lower()]
            continue
        if text == "@set":
            name, _, _ = tokens.take("a result set name")
            return ResultSetRef(name, tuple(attributes))
        if text.startswith("@"):
            raise PqfError(f"unknown operator {text!r}" if not attributes else f"{text!r} cannot follow @attr", position)
        if kind is TermKind.NUMERIC:
            try:
                return AttrTerm(tuple(attributes), int(text), kind)
            except ValueError:
                raise PqfError(f"numeric term expected, found {text!r}", position) from None
        return AttrTerm(tuple(attributes), text, kind)


def _which(tokens: _Tokens) -> bool:
    text, position, _ = tokens.take("proximity unit kind (k or p)")
    if text.lower() in ("k", "known", "0"):
        return False
    if text.lower() in ("p", "private", "1"):
        return True
    raise PqfError(f"expected k or p for the proximity unit kind, found {text!r}", position)


def _parse_attribute(tokens: _Tokens) -> Attribute:
    text, position, _ = tokens.take("type=value")
    attribute_set = None
    if "=" not in text:
        try:
            attribute_set = _attribute_set(text)
        except ValueError as error:
            raise PqfError(str(error), position) from None
        text, position, _ = tokens.take("type=value")
    type_text, equals, value_text = text.partition("=")
    if not equals or not value_text:
        raise PqfError(f"expected type=value after @attr, found {text!r}", position)
    try:
        attribute_type = int(type_text)
    except ValueError:
        raise PqfError(f"attribute type must be an integer, found {type_text!r}", position) from None
    parts = value_text.split(",")
    values = tuple(int(p) if p.lstrip("-").isdigit() else p for p in parts)
    value = values[0] if len(values) == 1 else values
    return Attribute(attribute_type, value, attribute_set)


def _quote(term: str) -> str:
    if term and not any(c.isspace() or c in '"\\' for c in term) and not term.startswith("@"):
        return term
    return '"' + term.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _format_attribute(attribute: Attribute) -> str:
    values = attribute.value if isinstance(attribute.value, tuple) else (attribute.value,)
    text = f"{attribute.type}={','.join(str(v) for v in values)}"
    if attribute.attribute_set:
        text = f"{_SET_NAMES.get(attribute.attribute_set, attribute.attribute_set)} {text}"
    return f"@attr {text}"


def to_pqf(query: RpnQuery) -> str:
    """The PQF text of a query (parse_pqf(to_pqf(q)) == q)."""
    parts: list[str] = []
    if query.attribute_set != BIB1_ATTRIBUTE_SET:
        parts.append(f"@attrset {_SET_NAMES.get(query.attribute_set, query.attribute_set)}")
    stack: list[RpnNode] = [query.root]
    while stack:
        node = stack.pop()
        if isinstance(node, RpnOp):
            if node.op is Operator.PROX:
                prox = node.proximity
                if prox is None:
                    raise ValueError("a prox operator needs its proximity parameters")
                parts.append(
                    f"@prox {int(bool(prox.exclusion))} {prox.distance} {int(prox.ordered)} "
                    f"{prox.relation_type} {'p' if prox.private_unit else 'k'} {prox.unit}"
                )
            else:
                parts.append({Operator.AND: "@and", Operator.OR: "@or", Operator.AND_NOT: "@not"}[node.op])
            stack.append(node.right)
            stack.append(node.left)
            continue
        parts.extend(_format_attribute(a) for a in node.attributes)
        if isinstance(node, ResultSetRef):
            parts.append(f"@set {_quote(node.name)}")
            continue
        if node.kind is not TermKind.GENERAL:
            name = next(k for k, v in _TERM_KINDS.items() if v is node.kind)
            parts.append(f"@term {name}")
        parts.append(_quote(str(node.term)))
    return " ".join(parts)

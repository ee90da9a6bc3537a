"""A CQL 1.2 parser that accepts and rejects what cql-java (the reference implementation) does.

Grammar, as cql-java implements it::

    query       ::= prefix* scoped [ "sortby" sortKey+ ]
    scoped      ::= term ( boolean modifier* term )*          (left-associative, no precedence)
    term        ::= "(" scoped ")" | prefix scoped | [ index relation modifier* ] words
    prefix      ::= ">" [ name "=" ] identifier
    sortKey     ::= symbol modifier*
    modifier    ::= "/" word [ comparitor symbol ]

Quirks kept on purpose because the regression suite pins them down:

- keywords (and, or, not, prox, sortby) are accepted unquoted wherever a symbol is expected;
- several unquoted words in a row form one term joined by single spaces (``all contains any``);
  a relation after such a run is an error;
- a word containing a dot, or any/all/within/encloses/adj, is a relation when it follows the first
  word of a clause;
- ``term`` inside parentheses or after a prefix inherits the enclosing index and relation
  (``title=(a or b)``);
- backslash escapes are kept verbatim in terms; a backslash only stops ``"`` ending a string.

Unlike cql-java, an unterminated quoted string is always an error (cql-java silently drops it when it
comes last), errors carry the offset where the offending token starts, and nesting is capped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import Enum

from .ast import (
    DEFAULT_RELATION,
    SERVER_CHOICE,
    Boolean,
    Modifier,
    Node,
    PrefixAssignment,
    Query,
    Relation,
    SearchClause,
    SortKey,
)

DEFAULT_MAX_DEPTH = 100
"""Deepest tree (booleans plus parentheses and prefix scopes) parse() builds by default.

Each level is two elements deep in XCQL, and libxml2-based clients refuse documents nested more than
256 elements deep, so this keeps an SRU response echoing the query as xQuery readable (and keeps
recursive tree walkers far from Python's recursion limit). Callers may raise it."""


class SyntaxProblem(Enum):
    """What kind of mistake a syntax error is, for protocols that distinguish them.

    SRU maps PARENTHESES to diagnostic 13, QUOTES to 14 and the rest to 10."""

    SYNTAX = "syntax"
    PARENTHESES = "parentheses"
    """A missing, extra, empty or misplaced parenthesis."""
    QUOTES = "quotes"
    """An unterminated string, or a quoted string where only a word may stand (a modifier name)."""
    TOO_DEEP = "too-deep"
    CHARACTER = "character"
    """A character XML cannot carry (control characters, lone surrogates)."""


class CQLSyntaxError(ValueError):
    """The query is not CQL. ``position`` is the 0-based character offset of the problem."""

    def __init__(self, message: str, position: int, problem: SyntaxProblem = SyntaxProblem.SYNTAX) -> None:
        super().__init__(f"{message} (at character {position})")
        self.message = message
        self.position = position
        self.problem = problem


class Kind(Enum):
    EOF = "EOF"
    WORD = "word"
    STRING = "string"
    AND = "and"
    OR = "or"
    NOT = "not"
    PROX = "prox"
    SORTBY = "sortby"
    LPAREN = "("
    RPAREN = ")"
    SLASH = "/"
    LT = "<"
    GT = ">"
    EQ = "="
    LE = "<="
    GE = ">="
    NE = "<>"
    EQEQ = "=="


_KEYWORDS = {
    "and": Kind.AND,
    "or": Kind.OR,
    "not": Kind.NOT,
    "prox": Kind.PROX,
    "sortby": Kind.SORTBY,
}
_BOOLEANS = frozenset({Kind.AND, Kind.OR, Kind.NOT, Kind.PROX})
_SYMBOLIC_RELATIONS = frozenset({Kind.LT, Kind.GT, Kind.EQ, Kind.LE, Kind.GE, Kind.NE, Kind.EQEQ})
_WORD_RELATIONS = frozenset({"any", "all", "within", "encloses", "adj"})
_SYMBOL_KINDS = frozenset({Kind.WORD, Kind.STRING}) | frozenset(_KEYWORDS.values())
_TWO_CHAR_COMPARITORS = {"==": Kind.EQEQ, "<=": Kind.LE, ">=": Kind.GE, "<>": Kind.NE}
_WHITESPACE = " \t\r\n"
_WORD_STOP = "()/<>=" + _WHITESPACE
# Characters XML 1.0 cannot carry: a query containing one could never be echoed as XCQL or in an SRU
# response, so it is rejected up front rather than failing later in a serializer.
_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass(frozen=True)
class Token:
    kind: Kind
    value: str
    """The text: the word as written, a string's contents without the quotes, or the operator."""
    start: int

    def render(self) -> str:
        """How cql-java names the token in its error messages."""
        if self.kind is Kind.EOF:
            return "EOF"
        if self.kind is Kind.WORD:
            return f"word: '{self.value}'"
        if self.kind is Kind.STRING:
            return f'string: "{self.value}"'
        return _describe(self.kind)


def _describe(kind: Kind) -> str:
    """cql-java's name for a keyword or operator token: one-character ones quoted."""
    return f"'{kind.value}'" if len(kind.value) == 1 else kind.value


def tokenize(text: str) -> list[Token]:
    """Split a query into tokens, ending with one EOF token."""
    bad = _NOT_XML_CHAR.search(text)
    if bad is not None:
        raise CQLSyntaxError(
            f"character U+{ord(bad.group()):04X} is not allowed in a query", bad.start(), SyntaxProblem.CHARACTER
        )
    tokens: list[Token] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in _WHITESPACE:
            i += 1
        if i == n:
            tokens.append(Token(Kind.EOF, "", n))
            return tokens
        start, c = i, text[i]
        if c in "()/":
            tokens.append(Token(Kind(c), c, start))
            i += 1
        elif c in "<>=":
            pair = text[i : i + 2]
            if pair in _TWO_CHAR_COMPARITORS:
                tokens.append(Token(_TWO_CHAR_COMPARITORS[pair], pair, start))
                i += 2
            else:
                tokens.append(Token(Kind(c), c, start))
                i += 1
        elif c == '"':
            i += 1
            chars: list[str] = []
            while i < n and text[i] != '"':
                if text[i] == "\\":
                    chars.append("\\")
                    i += 1
                    if i == n:
                        break
                chars.append(text[i])
                i += 1
            if i >= n:
                raise CQLSyntaxError("unterminated string", start, SyntaxProblem.QUOTES)
            i += 1
            tokens.append(Token(Kind.STRING, "".join(chars), start))
        else:
            while i < n and text[i] not in _WORD_STOP:
                i += 1
            word = text[start:i]
            tokens.append(Token(_KEYWORDS.get(word.lower(), Kind.WORD), word, start))


class _Parser:
    def __init__(self, text: str, max_depth: int) -> None:
        self.tokens = tokenize(text)
        self.index = 0
        self.max_depth = max_depth
        self.nesting = 0
        self.open_parentheses = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind is not Kind.EOF:
            self.index += 1
        return token

    def error(self, message: str, token: Token, *, wanted: Kind | None = None) -> CQLSyntaxError:
        """A syntax error at ``token``, classified by the token the parser stumbled on or wanted."""
        unclosed = token.kind is Kind.EOF and self.open_parentheses > 0
        if unclosed or token.kind in (Kind.LPAREN, Kind.RPAREN) or wanted in (Kind.LPAREN, Kind.RPAREN):
            problem = SyntaxProblem.PARENTHESES
        elif token.kind is Kind.STRING:
            problem = SyntaxProblem.QUOTES
        else:
            problem = SyntaxProblem.SYNTAX
        return CQLSyntaxError(message, token.start, problem)

    def expect(self, kind: Kind) -> Token:
        if self.token.kind is not kind:
            raise self.error(f"expected {_describe(kind)}, got {self.token.render()}", self.token, wanted=kind)
        return self.advance()

    def symbol(self, expected: str) -> Token:
        if self.token.kind not in _SYMBOL_KINDS:
            raise self.error(f"expected {expected}, got {self.token.render()}", self.token)
        return self.advance()

    def is_relation(self) -> bool:
        token = self.token
        if token.kind is Kind.WORD:
            return "." in token.value or token.value.lower() in _WORD_RELATIONS
        return token.kind in _SYMBOLIC_RELATIONS

    def check_depth(self, height: int, token: Token) -> None:
        if height > self.max_depth or self.nesting > self.max_depth:
            raise CQLSyntaxError(
                f"query nested more than {self.max_depth} levels deep", token.start, SyntaxProblem.TOO_DEEP
            )

    # query ::= prefix* scoped [ sortby sortKey+ ]
    def parse_query(self, text: str) -> Query:
        prefixes: list[PrefixAssignment] = []
        while self.token.kind is Kind.GT:
            prefixes.append(self.prefix())
        root, _ = self.scoped(SERVER_CHOICE, Relation(DEFAULT_RELATION), True)
        sort_keys: list[SortKey] = []
        if self.token.kind is Kind.SORTBY:
            self.advance()
            while self.token.kind is not Kind.EOF:
                index = self.symbol("sort index")
                sort_keys.append(SortKey(index.value, self.modifiers(), index.start))
            if not sort_keys:
                raise self.error("no sort keys", self.token)
        if self.token.kind is not Kind.EOF:
            raise self.error(f"junk after end: {self.token.render()}", self.token)
        return Query(root, tuple(sort_keys), tuple(prefixes), text)

    def prefix(self) -> PrefixAssignment:
        self.expect(Kind.GT)
        identifier = self.symbol("prefix-name").value
        if self.token.kind is Kind.EQ:
            self.advance()
            return PrefixAssignment(identifier, self.symbol("prefix-identifier").value)
        return PrefixAssignment(None, identifier)

    def modifiers(self) -> tuple[Modifier, ...]:
        found: list[Modifier] = []
        while self.token.kind is Kind.SLASH:
            self.advance()
            if self.token.kind is not Kind.WORD:
                raise self.error(f"expected modifier, got {self.token.render()}", self.token)
            name = self.advance().value.lower()
            if self.token.kind in _SYMBOLIC_RELATIONS:
                comparison = self.advance().value
                found.append(Modifier(name, comparison, self.symbol("modifier value").value))
            else:
                found.append(Modifier(name))
        return tuple(found)

    # scoped ::= term ( boolean modifier* term )*
    def scoped(self, index: str, relation: Relation, implicit: bool) -> tuple[Node, int]:
        self.nesting += 1
        self.check_depth(0, self.token)
        node, height = self.term(index, relation, implicit)
        while self.token.kind not in (Kind.EOF, Kind.RPAREN, Kind.SORTBY):
            operator = self.token
            if operator.kind not in _BOOLEANS:
                raise self.error(f"expected boolean, got {operator.render()}", operator)
            self.advance()
            modifiers = self.modifiers()
            right, right_height = self.term(index, relation, implicit)
            height = max(height, right_height) + 1
            self.check_depth(height, operator)
            node = Boolean(operator.kind.value, node, right, modifiers, position=operator.start)
        self.nesting -= 1
        return node, height

    def term(self, index: str, relation: Relation, implicit: bool) -> tuple[Node, int]:
        while True:
            if self.token.kind is Kind.LPAREN:
                self.advance()
                self.open_parentheses += 1
                node, height = self.scoped(index, relation, implicit)
                self.expect(Kind.RPAREN)
                self.open_parentheses -= 1
                return node, height + 1
            if self.token.kind is Kind.GT:
                assignment = self.prefix()
                node, height = self.scoped(index, relation, implicit)
                return replace(node, prefixes=(assignment,) + node.prefixes), height + 1
            first = self.symbol("index or term")
            words = [first.value]
            while self.token.kind in (Kind.WORD, Kind.STRING) and (len(words) > 1 or not self.is_relation()):
                words.append(self.advance().value)
            if not self.is_relation():
                return SearchClause(index, relation, " ".join(words), implicit=implicit, position=first.start), 0
            if len(words) > 1:
                raise self.error(f"unexpected relation '{self.token.value}'", self.token)
            index, implicit = first.value, False
            name = self.advance().value
            relation = Relation(name, self.modifiers())


def parse(text: str, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Query:
    """Parse a CQL query; raise :class:`CQLSyntaxError` for anything that is not CQL.

    ``max_depth`` bounds how deep the tree may grow (booleans, parentheses and prefix scopes all count),
    so hostile input gets a syntax error instead of exhausting the stack of whoever walks the tree.
    """
    return _Parser(text, max_depth).parse_query(text)

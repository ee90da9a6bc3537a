"""The canonical query model: what every protocol maps into and every store compiles from.

A query is a tree of `Clause` leaves joined by `And` / `Or` / `AndNot`, with `ItemMatch`
nodes for holdings conditions that must hold for one and the same item. Index names are the
canonical names of `config/indexes.yaml` (`title`, `creator`, `isbn`, `library`, ...), never
protocol names: CQL's `dc.title` and Bib-1 use 4 both become `title` before a store sees them.

Matching semantics (identical in every store; `indexer.analysis` makes the tokens and keys):

text indexes (type text):
  PHRASE   the term's query tokens occur at consecutive positions in one value
           (CQL `=` and `adj`; Bib-1 structure phrase). A one-token term is a word search.
  ALL      every white-space separated word of the term matches as a PHRASE, each in any
           value of the index, in any order (CQL `all`; Bib-1 word list)
  ANY      at least one word matches as a PHRASE (CQL `any`)
  EXACT    the exact_key of a value equals the term's exact_key; masking applies to the
           whole key (CQL `==`, Bib-1 completeness complete-field)
  LT LE GT GE  some value's exact_key compares so with the term's exact_key (code point order)
  NE       the record does not match EXACT (no value equals the term)
  WITHIN   some value's exact_key lies between two terms' keys, inclusive
keyword indexes (type keyword): values are compared by exact_key only; PHRASE, EXACT mean
  equality (masking allowed), ALL / ANY split the term into words and require all / any of
  them to equal some value, ordering relations and WITHIN compare keys, NE negates equality.
number and date indexes (type number | date; a date is stored as its year): the term is an
  integer (WITHIN: two integers, low and high inclusive); PHRASE, EXACT, ALL, ANY mean
  equality, ordering relations compare numbers, NE negates equality. A term that is not a
  number is a query error raised by the protocol mapping, never by a store.

Masking: in `term`, `*` matches any run of characters and `?` exactly one character, within a
token (text PHRASE/ALL/ANY) or within the whole key (EXACT, keyword). A literal `*` or `?`
cannot be searched for (the analysis drops such characters from indexed text anyway).
`anchor_start` / `anchor_end` (CQL `^`) require a PHRASE to start at the first or end at the
last token of a value.

A record matches NE, and `AndNot`'s right side, only by failing the positive condition;
records without any value in the index match NE.

`ItemMatch(query)` matches a record if at least one of its items satisfies `query`, where
`query` may only use item-level indexes (library, tier, availability, barcode, call_number,
location, status, ...). `MatchAll` matches every record.
A Clause on an item-level index outside an ItemMatch means `ItemMatch(clause)`, except NE,
which then means that no item equals the term (the record fails `ItemMatch(EXACT)`); inside an
ItemMatch, NE holds for an item whose value differs or that has none.

The values a record holds in an index (every store indexes exactly these):
  record level: `UnionRecord.fields[name]`, then the values of each index in the definition's
  `copy_from` (the store adds these copies); the index named `id` also holds the record id.
  Values are used as extraction stored them; a number index uses the values that are
  integers, a date index `year_of(value)`.
  item level: the `Item` attribute of the same name (`availability` as its enum value), if
  not empty.
A PHRASE term, or an ALL / ANY word, without any query token (`*`, punctuation) matches every
record that has a value in the index; an ALL / ANY term with no words at all (empty or blank)
means the same. Anchors apply to PHRASE only.

Sort: a record's key for a SortKey is the exact_key of its first value in the index (number
and date indexes: its first numeric value); code point order.
Facets count matching records: a record counts once for every distinct value it holds (for an
item-level index, the values of all its items, whichever items matched). Values are reported
as stored (date: the year in decimal digits); `order="value"` is numeric for number and date.
Scan lists exact_keys of values (item level: of all items) with the number of matching records
holding each; the start term is normalized with the index's `IndexDefinition.query_key`. The
list holds the up to `min(position - 1, count)` keys just before the start that exist, then
keys from the start on until it holds `count` keys or the index ends.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Union

if TYPE_CHECKING:
    from indexer.model import UnionRecord


class Relation(str, enum.Enum):
    PHRASE = "phrase"
    ALL = "all"
    ANY = "any"
    EXACT = "exact"
    NE = "ne"
    LT = "lt"
    LE = "le"
    GT = "gt"
    GE = "ge"
    WITHIN = "within"


@dataclass(frozen=True)
class Clause:
    index: str
    relation: Relation
    term: str
    # WITHIN only: the upper bound (`term` is the lower bound).
    term_high: str | None = None
    anchor_start: bool = False
    anchor_end: bool = False


@dataclass(frozen=True)
class And:
    left: "Query"
    right: "Query"


@dataclass(frozen=True)
class Or:
    left: "Query"
    right: "Query"


@dataclass(frozen=True)
class AndNot:
    left: "Query"
    right: "Query"


@dataclass(frozen=True)
class ItemMatch:
    query: "Query"


@dataclass(frozen=True)
class MatchAll:
    pass


Query = Union[Clause, And, Or, AndNot, ItemMatch, MatchAll]


@dataclass(frozen=True)
class SortKey:
    index: str
    ascending: bool = True
    # Records without a value sort last in both directions unless this is True.
    missing_first: bool = False


@dataclass(frozen=True)
class FacetRequest:
    index: str
    limit: int = 10
    # "count": by record count descending, then value ascending; "value": by value ascending.
    order: str = "count"


@dataclass(frozen=True)
class SearchRequest:
    """One search: matches, in order, from `offset` (0-based) up to `limit` ids.

    Without `sort`, hits come in relevance order (store-defined, ties broken by id); with
    `sort`, by the keys in turn and then by id ascending, in every store.
    `after` is a cursor returned by a previous page of the same query and sort: it replaces
    `offset` for deep paging.
    """

    query: Query
    sort: tuple[SortKey, ...] = ()
    offset: int = 0
    limit: int = 10
    facets: tuple[FacetRequest, ...] = ()
    after: str | None = None
    # Holdings scope: when set, only records with at least one item matching it are hits
    # (it is ANDed with `query` as an ItemMatch) — used for per-library and per-tier databases.
    item_scope: Query | None = None
    # Also read the page's records (shared, read-only: `Store.get(..., shared=True)`), in the same
    # read as the search where the store can: `SearchResult.records`, else None.
    with_records: bool = False


@dataclass(frozen=True)
class FacetValue:
    value: str
    count: int


@dataclass(frozen=True)
class Facet:
    index: str
    values: tuple[FacetValue, ...]


@dataclass
class SearchResult:
    total: int
    ids: list[str]
    facets: list[Facet] = field(default_factory=list)
    # A cursor for the page after this one (same query and sort), or None at the end.
    next_cursor: str | None = None
    # The records of `ids`, in order (None where one vanished), when asked for with
    # `SearchRequest.with_records` and the store read them with the search; None otherwise.
    records: list["UnionRecord | None"] | None = None


@dataclass(frozen=True)
class ScanRequest:
    """Browse the keys of an index in order, starting at `start` (normalized with exact_key).

    `position` is 1-based, as in SRU and Z39.50: the term at or just after `start` is placed
    at that position, so `position - 1` keys before it are included when they exist.
    `query` restricts counting to matching records (a database's scope), MatchAll by default.
    """

    index: str
    start: str
    count: int = 20
    position: int = 1
    query: Query = field(default_factory=MatchAll)


@dataclass(frozen=True)
class ScanTerm:
    key: str
    count: int


def walk(query: Query):
    """Every node of a query tree, depth first."""
    stack: list[Query] = [query]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, (And, Or, AndNot)):
            stack.extend((node.right, node.left))
        elif isinstance(node, ItemMatch):
            stack.append(node.query)

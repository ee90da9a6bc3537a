"""Answers of repeated searches, kept while the catalogue is unchanged.

An OPAC asks the same query again for its next page, and a popular query comes from many
readers; each time the store would find, rank and count every hit again. A store keeps here
the head of each query's hit order (the rows its page cursor is made of), the total and the
facet counts, under a key that includes the catalogue's *generation*: a number every write
transaction increases, read in the same snapshot as the search. A key of an older generation
is never asked for again and ages out, so no answer is ever stale, whichever process wrote.
(Solr's queryResultCache does the same for the same reason; Zebra keeps result sets only
within one Z39.50 session.)
"""
from __future__ import annotations

import collections
import threading
from dataclasses import dataclass
from typing import Any, Hashable

from indexer.query import Facet

# The rows kept per query: a few pages of the common page sizes. A request reaching further
# is answered by the store and not kept.
CACHED_ROWS = 200
DEFAULT_RESULT_CACHE = 2_000  # searches kept (each a few kB)
_ROUND = 50  # rows are fetched in steps of this many, so the next pages come from the cache


@dataclass(frozen=True)
class CachedResult:
    total: int
    rows: tuple[tuple[Any, ...], ...]  # the first rows of the hit order, from offset 0
    exhausted: bool                    # `rows` are all the hits
    facets: tuple[Facet, ...]

    def answers(self, offset: int, limit: int) -> bool:
        """Whether the page (and whether another follows it) can be told from the kept rows."""
        return limit == 0 or self.exhausted or offset + limit < len(self.rows)


def rows_to_fetch(offset: int, limit: int) -> int | None:
    """How many rows from offset 0 to read for a page that will be kept; None: too deep to keep."""
    if limit == 0:
        return 0
    needed = offset + limit + 1  # one more than the page: is there a next one?
    if needed > CACHED_ROWS:
        return None
    return min(-(-needed // _ROUND) * _ROUND, CACHED_ROWS)


class ResultCache:
    """A thread-safe LRU of `CachedResult` (a store's reader threads share it)."""

    def __init__(self, capacity: int = DEFAULT_RESULT_CACHE):
        self.capacity = capacity
        self._entries: collections.OrderedDict[Hashable, CachedResult] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> CachedResult | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def put(self, key: Hashable, entry: CachedResult) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

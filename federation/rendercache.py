"""Rendered records, kept while the record they came from is unchanged.

Rendering is most of what a search costs the server once the store has answered (about
0.3 ms a record for MARCXML, more for ISO 2709 in another character set). A record read
from the store carries its `revision` (`UnionRecord.revision`, a digest of what the store
holds): the same id at the same revision, seen through the same database (which decides
the items shown), renders the same, so each protocol keeps what it rendered under that key
and the form it was rendered in. A live status change gives the record a new revision,
so the next answer renders it anew. Records without a revision (the federated database's
merged records) are rendered every time.
"""
from __future__ import annotations

import collections
from typing import Callable, Generic, Hashable, TypeVar

from indexer.model import UnionRecord

T = TypeVar("T")


class RenderedRecords(Generic[T]):
    """An LRU of rendered forms of records."""

    def __init__(self, capacity: int = 20_000):
        self.capacity = capacity
        self._entries: collections.OrderedDict[Hashable, T] = collections.OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, record: UnionRecord, database: str, form: Hashable, render: Callable[[], T]) -> T:
        if not record.revision or self.capacity <= 0:
            return render()
        key = (record.id, record.revision, database, form)
        cached = self._entries.get(key)
        if cached is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            return cached
        self.misses += 1
        value = render()
        if value is not None:
            self._entries[key] = value
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._entries)

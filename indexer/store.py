"""The one interface every index store implements (embedded SQLite, Elasticsearch/OpenSearch).

A store keeps union records whole and indexes them by the definitions of
`config/indexes.yaml` (`indexer.indexes.IndexTable`): record-level values come from
`UnionRecord.fields`, item-level values from each `Item`. It answers canonical queries
(`indexer.query`) with the semantics documented there, identically in every implementation;
`tests/test_store_conformance.py` holds them to it.
"""
from __future__ import annotations

import abc
import contextlib
from dataclasses import dataclass, field
from typing import AsyncIterator, Callable, Sequence

from indexer.model import ItemStatusUpdate, ItemUpdateOutcome, UnionRecord
from indexer.query import ScanRequest, ScanTerm, SearchRequest, SearchResult


# (records indexed so far, records to index) as a bulk load's end indexes what it wrote.
IndexingProgress = Callable[[int, int], None]


class StoreError(Exception):
    """The store cannot do what was asked (unreachable, corrupt, misconfigured)."""


class ItemUpdatesFailed(StoreError):
    """`Store.update_items` failed after it may have written part of the batch.

    `outcomes` has one entry per update, in the order given: an applied outcome (written and
    durable; visible to search at the latest within the store's refresh interval), a
    not-applied one (never written, or refused with its reason), or None where a write was
    sent but its answer never came (it may or may not have been applied)."""

    def __init__(self, message: str, outcomes: Sequence[ItemUpdateOutcome | None]):
        super().__init__(message)
        self.outcomes: list[ItemUpdateOutcome | None] = list(outcomes)


class QueryNotSupported(StoreError):
    """A query uses an index or relation the store's index table does not allow."""


@dataclass
class BulkResult:
    succeeded: int = 0
    # (record id, reason) of every record that was not written.
    failed: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class StoreStats:
    """Counts over the whole store; per library and per tier by the items' `library` and `tier`
    (records: those with at least one such item). Items without a library or tier count under ""."""

    records: int
    items: int
    # library code -> {"records": n, "items": n}
    by_library: dict[str, dict[str, int]] = field(default_factory=dict)
    # tier -> {"records": n, "items": n}
    by_tier: dict[str, dict[str, int]] = field(default_factory=dict)
    # Records a bulk load stopped before its end wrote but did not index: readable by id, not
    # found by searches until the next bulk load ends (`bulk_load`).
    unindexed: int = 0


@dataclass(frozen=True)
class CacheCounts:
    hits: int
    misses: int
    entries: int
    capacity: int


class Store(abc.ABC):
    """Async throughout; safe to share between concurrent requests of one process."""

    @abc.abstractmethod
    async def open(self) -> None:
        """Create or attach to the index (idempotent)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ping(self) -> bool:
        """True when the store answers (for /readyz)."""

    # -- write path ---------------------------------------------------------------------
    @abc.abstractmethod
    async def upsert(self, records: Sequence[UnionRecord]) -> BulkResult:
        """Insert or replace whole union records. Durable when the call returns."""

    @abc.abstractmethod
    async def delete(self, ids: Sequence[str]) -> BulkResult: ...

    @abc.abstractmethod
    async def update_items(self, updates: Sequence[ItemStatusUpdate]) -> list[ItemUpdateOutcome]:
        """Change live item status by barcode without re-extracting the bibliographic record.
        Visible to the next search when the call returns.

        Failures: a store that writes the batch in more than one step and fails after its first
        write raises `ItemUpdatesFailed`, saying per update whether it was applied; any other
        `StoreError` means nothing of the batch was applied (the embedded store writes it in one
        transaction)."""

    @abc.abstractmethod
    async def find_by_match_keys(self, keys: Sequence[str]) -> dict[str, list[str]]:
        """For dedup: match key -> ids of union records carrying it (only keys that match)."""

    @abc.abstractmethod
    async def find_by_contribution(self, library: str, source_ids: Sequence[str]) -> dict[str, str]:
        """source id -> union record id, for one library's contributed records."""

    @abc.abstractmethod
    async def ids_of_library(self, library: str) -> list[str]:
        """Ids of union records that have a contribution from `library` (for full re-ingests)."""

    @abc.abstractmethod
    async def find_by_barcode(self, barcodes: Sequence[str]) -> dict[str, str]:
        """barcode -> union record id holding that item."""

    @abc.abstractmethod
    async def refresh(self) -> None:
        """Make every acknowledged write visible to search (a no-op where it already is).
        Inside `bulk_load()`: visible to the write path's lookups (`find_by_*`), at least."""

    @contextlib.asynccontextmanager
    async def bulk_load(self, indexed: IndexingProgress | None = None, processes: int = 1) -> AsyncIterator[None]:
        """A block of many upserts (an ingest). Inside it, what `upsert` writes is durable and
        readable by id and through the write path's lookups at once, but a store may leave it out
        of search until the block ends, when it is indexed at once instead of record by record
        (`indexed(done, total)` is told as that goes on; `processes`: how many the store may
        use for it, this one included). The block ends with everything written
        visible to search, also when it ends in an error (an interruption, KeyboardInterrupt or
        cancellation, may leave that to the next bulk load). By default nothing changes."""
        yield

    # -- read path ----------------------------------------------------------------------
    @abc.abstractmethod
    async def get(self, ids: Sequence[str], *, shared: bool = False) -> list[UnionRecord | None]:
        """Records by id, in the order asked, None where absent.

        `shared=True` (the read path): the store may return objects it also hands to other
        callers, which nobody may change, each with its `revision`; the default gives the
        caller records of its own to change (without a revision)."""

    @abc.abstractmethod
    async def search(self, request: SearchRequest) -> SearchResult: ...

    @abc.abstractmethod
    async def scan(self, request: ScanRequest) -> list[ScanTerm]: ...

    @abc.abstractmethod
    async def stats(self) -> StoreStats: ...

    def caches(self) -> dict[str, CacheCounts]:
        """The store's own read caches by name, for /metrics (none unless a store keeps some)."""
        return {}

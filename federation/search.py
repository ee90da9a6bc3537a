"""The search service: the network's databases over one store.

Databases (the SRU path `/sru/{database}`, the Z39.50 database name):
  `union`            the whole network
  a library code     records with at least one item at that library, showing only those items
  a tier             (`hub`, `branch`, `service_point`, ...) the same for every library of the tier
Further databases (the live `federated` one) are added with `add_database` and a backend that
answers for them.

Protocol layers map their query syntax into `indexer.query` and call `search`, `fetch`, `scan`;
the service applies the database's scope (an item-level condition handed to the store as
`SearchRequest.item_scope`) and trims each record's items to that scope.

Records come from the store shared (`Store.get(..., shared=True)`): nothing here or in the
protocols changes them; scoping and the live-item overlay make copies.

Every database shows the same live item status: a backend may keep records between requests
(the federated database pages through result sets it holds for minutes), so the network's own
items in the records it returns are replaced by the store's current ones. Which records a kept
result set holds does not change; what they say about each copy does.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from federation.records import Directory
from indexer.indexes import IndexTable
from indexer.model import Item, ItemStatusUpdate, ItemUpdateOutcome, UnionRecord
from indexer.query import (
    And,
    Clause,
    Facet,
    FacetRequest,
    ItemMatch,
    MatchAll,
    Query,
    Relation,
    ScanRequest,
    ScanTerm,
    SearchRequest,
    SortKey,
)
from indexer.store import Store

UNION = "union"
TIER_TITLES = {
    "hub": ("总馆", "Hub library"),
    "branch": ("分馆", "Branch libraries"),
    "service_point": ("服务点", "Service points"),
    "reading_room": ("阅览室", "Reading rooms"),
    "mobile": ("流动服务", "Mobile services"),
    "self_service": ("自助图书馆", "Self-service libraries"),
}


class UnknownDatabase(LookupError):
    def __init__(self, name: str):
        super().__init__(f"no database {name!r}")
        self.name = name


@dataclass(frozen=True)
class Database:
    name: str
    kind: str                          # union | library | tier | federated | ...
    title_zh: str
    title_en: str
    # Item-level condition a record must meet (None: every record), and which items are shown.
    scope: Query | None = None
    libraries: frozenset[str] | None = None
    tier: str | None = None


@dataclass
class SearchOutcome:
    total: int
    records: list[UnionRecord]
    facets: list[Facet] = field(default_factory=list)
    # The ids of the page, in order (also when the records were not asked for).
    ids: list[str] = field(default_factory=list)
    next_cursor: str | None = None
    # "exact" unless a backend could only estimate (federated searches beyond their fetch limit).
    precision: str = "exact"
    # Non-fatal problems worth telling the client (e.g. a federated target that failed): (code, text).
    warnings: list[tuple[int, str]] = field(default_factory=list)
    # Backend-specific results the protocols pass on: `result_set_id` (str) and `result_set_ttl`
    # (seconds) become SRU resultSetId / resultSetIdleTime (1.x) / resultSetTTL (2.0);
    # `extra_response_data` (lxml elements) goes into SRU extraResponseData.
    extra: dict[str, Any] = field(default_factory=dict)


class DatabaseBackend(Protocol):
    """What answers for a database the store does not hold (e.g. `federated`)."""

    async def search(self, query: Query, *, sort: Sequence[SortKey], offset: int, limit: int,
                     facets: Sequence[FacetRequest]) -> SearchOutcome: ...

    async def fetch(self, ids: Sequence[str]) -> list[UnionRecord | None]: ...

    async def scan(self, request: ScanRequest) -> list[ScanTerm]: ...


class SearchService:
    def __init__(self, network: Any, table: IndexTable, store: Store):
        self.network = network
        self.table = table
        self.store = store
        self.directory = Directory.from_network(network)
        self._databases: dict[str, Database] = {}
        self._backends: dict[str, DatabaseBackend] = {}
        self._build_databases()

    def _build_databases(self) -> None:
        names = getattr(self.network, "names", None)
        self._databases[UNION] = Database(
            UNION, "union",
            getattr(names, "zh", "") or self.network.id,
            getattr(names, "en", "") or self.network.id,
        )
        for code, library in self.network.libraries.items():
            self._databases[code] = Database(
                code, "library", library.names.zh, library.names.en or library.names.zh,
                scope=Clause("library", Relation.EXACT, code),
                libraries=frozenset({code}),
            )
        for tier, members in self.network.by_tier().items():
            zh, en = TIER_TITLES.get(tier, (tier, tier))
            self._databases[tier] = Database(
                tier, "tier", zh, en,
                scope=Clause("tier", Relation.EXACT, tier),
                libraries=frozenset(m.code for m in members),
                tier=tier,
            )

    # -- databases ------------------------------------------------------------------------
    def databases(self) -> list[Database]:
        return list(self._databases.values())

    def database(self, name: str) -> Database | None:
        return self._databases.get(name)

    def add_database(self, database: Database, backend: DatabaseBackend) -> None:
        """Serve a database from another backend (the live federation registers `federated`)."""
        self._databases[database.name] = database
        self._backends[database.name] = backend

    def _get(self, name: str) -> Database:
        database = self._databases.get(name)
        if database is None:
            raise UnknownDatabase(name)
        return database

    # -- operations -----------------------------------------------------------------------
    async def search(self, database: str, query: Query, *, sort: Sequence[SortKey] = (), offset: int = 0,
                     limit: int = 10, facets: Sequence[FacetRequest] = (), after: str | None = None,
                     with_records: bool = True) -> SearchOutcome:
        """`with_records=False`: the page's ids only (a Z39.50 search remembers them for the
        present that follows), without reading the records."""
        db = self._get(database)
        backend = self._backends.get(database)
        if backend is not None:
            outcome = await backend.search(query, sort=sort, offset=offset, limit=limit, facets=facets)
            live = [r for r in await self._with_live_items(outcome.records) if r is not None]
            return dataclasses.replace(outcome, records=live, ids=[r.id for r in live])
        request = SearchRequest(
            query=query,
            sort=tuple(sort),
            offset=offset,
            limit=limit,
            facets=tuple(facets),
            after=after,
            item_scope=db.scope,
            with_records=with_records,
        )
        result = await self.store.search(request)
        if not with_records or not result.ids:
            records: list[UnionRecord | None] = []
        elif result.records is not None:
            records = result.records
        else:
            records = await self.store.get(result.ids, shared=True)
        return SearchOutcome(
            total=result.total,
            records=[self.scoped(db, r) for r in records if r is not None],
            facets=result.facets,
            ids=list(result.ids),
            next_cursor=result.next_cursor,
        )

    async def fetch(self, database: str, ids: Sequence[str]) -> list[UnionRecord | None]:
        """Records by union id, trimmed to the database's items; None where absent or out of scope."""
        db = self._get(database)
        backend = self._backends.get(database)
        if backend is not None:
            return await self._with_live_items(await backend.fetch(ids))
        records = await self.store.get(list(ids), shared=True)
        out: list[UnionRecord | None] = []
        for record in records:
            if record is None or (db.libraries is not None and not self._in_scope(db, record)):
                out.append(None)
            else:
                out.append(self.scoped(db, record))
        return out

    async def scan(self, database: str, request: ScanRequest) -> list[ScanTerm]:
        db = self._get(database)
        backend = self._backends.get(database)
        if backend is not None:
            return await backend.scan(request)
        if db.scope is not None:
            scoped_query: Query = ItemMatch(db.scope)
            if not isinstance(request.query, MatchAll):
                scoped_query = And(request.query, scoped_query)
            request = dataclasses.replace(request, query=scoped_query)
        return await self.store.scan(request)

    async def update_items(self, updates: Sequence[ItemStatusUpdate]) -> list[ItemUpdateOutcome]:
        """Live item status; visible to the next search in every protocol (the store's
        `update_items` makes it so before it returns: a second refresh here could only fail
        after the batch was applied, and turn a complete update into an error)."""
        return await self.store.update_items(updates)

    async def _with_live_items(self, records: Sequence[UnionRecord | None]) -> list[UnionRecord | None]:
        """`records` (from a backend) with each item of the network's own contributions replaced by
        the store's current one for the same union record and barcode; remote targets'
        contributions, and records the store does not hold, are left as they are."""
        held = [r.id for r in records if r is not None]
        if not held:
            return list(records)
        current: dict[str, dict[str, Item]] = {}
        for record in await self.store.get(held, shared=True):
            if record is not None:
                current[record.id] = {item.barcode: item for item in record.items if item.barcode}
        out: list[UnionRecord | None] = []
        for record in records:
            live = current.get(record.id) if record is not None else None
            if record is None or not live or not any(i.barcode in live for i in record.items):
                out.append(record)
                continue
            fresh = copy.copy(record)
            fresh.revision = ""  # other items than the stored record's: not that revision
            own = self.network.libraries
            fresh.contributions = [
                dataclasses.replace(c, items=[live.get(i.barcode, i) if i.barcode else i for i in c.items])
                if c.library in own else c
                for c in record.contributions
            ]
            out.append(fresh)
        return out

    # -- scoping --------------------------------------------------------------------------
    def _item_in_scope(self, db: Database, library: str, tier: str) -> bool:
        if db.libraries is None:
            return True
        if db.tier is not None:
            return (tier or self.directory.tiers.get(library, "")) == db.tier
        return library in db.libraries

    def _in_scope(self, db: Database, record: UnionRecord) -> bool:
        return any(self._item_in_scope(db, i.library, i.tier) for i in record.items)

    def scoped(self, db: Database, record: UnionRecord) -> UnionRecord:
        """The record with only the items the database shows (the record itself for `union`)."""
        if db.libraries is None:
            return record
        trimmed = copy.copy(record)
        trimmed.contributions = [
            dataclasses.replace(c, items=[i for i in c.items if self._item_in_scope(db, i.library, i.tier)])
            for c in record.contributions
        ]
        return trimmed

"""The Elasticsearch / OpenSearch store, through the official async client (elasticsearch-py 8.19,
which talks to Elasticsearch 8 and 9; `flavor="opensearch"` for OpenSearch 2/3).

Reads and writes go through the alias `<index_prefix>`, which points at one concrete index
`<index_prefix>-<UTC timestamp>`. `rebuild()` (or `begin_rebuild()` ... `finish_rebuild()`) fills
a new concrete index and swaps the alias atomically, so searches never see a half-built index.

Consistency: a write is durable when Elasticsearch acknowledges it (the translog is synced
per request by default). Upserts and deletes become visible to search at the next refresh
(within `index.refresh_interval`, 1 s by default, or at once after `refresh()`); item status
updates refresh before they return, as the Store interface requires.

Everything Elasticsearch does not do identically to the embedded store is done in Python:
text analysis, key normalization, sort keys (see `indexer.elastic_mapping`). The design avoids
painless scripts, point-in-time and keyword normalizers, which OpenSearch-compatible servers
(and the CI stand-in) do not all provide: see docs/elasticsearch.md.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import random
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, AsyncIterable, AsyncIterator, Collection, Iterable, Sequence

from elastic_transport import AiohttpHttpNode
from elastic_transport.client_utils import DEFAULT
from elasticsearch import ApiError, AsyncElasticsearch, ConflictError, NotFoundError, TransportError
from elasticsearch.helpers import async_streaming_bulk

from indexer import elastic_mapping
from indexer.elastic_mapping import CONTRIBUTION_SEPARATOR, MAX_RESULT_WINDOW
from indexer.elastic_query import ITEMS, QueryCompiler
from indexer.indexes import IndexTable
from indexer.model import ItemStatusUpdate, ItemUpdateOutcome, UnionRecord
from indexer.query import (
    ScanRequest,
    ScanTerm,
    SearchRequest,
    SearchResult,
)
from indexer.recordcache import DecodedRecords
from indexer.store import BulkResult, ItemUpdatesFailed, QueryNotSupported, Store, StoreError, StoreStats
from indexer.values import ordered_facet

log = logging.getLogger(__name__)


def _decode_payload(payload: str) -> UnionRecord:
    return UnionRecord.from_dict(json.loads(payload))

FLAVORS = ("elasticsearch", "opensearch")
_INDEX_PREFIX = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")
_COMPAT_MEDIA_TYPE = re.compile(r"application/vnd\.elasticsearch\+([a-z0-9.\-]+)\s*(;\s*compatible-with=\d+)?")
_PAGE = 1000           # ids per page when walking a result set
_FACET_PAGE = 1000     # buckets per composite page
_STATS_BUCKETS = 10_000
# Each round of optimistic item updates lets at least one of the writers racing on a record win,
# so this bounds how many concurrent writers of one record are all served.
_UPDATE_ATTEMPTS = 20
_MAX_ID_BYTES = 512  # Elasticsearch's limit on _id
_MAX_CHUNK_BYTES = 20 * 1024 * 1024


class OpenSearchNode(AiohttpHttpNode):
    """The aiohttp node for OpenSearch and OpenSearch-compatible servers.

    elasticsearch-py 8 sends `application/vnd.elasticsearch+json; compatible-with=8`, which
    OpenSearch refuses; this node sends plain `application/json` (and `x-ndjson`), and marks
    responses as coming from Elasticsearch so that the client's product check passes.
    """

    async def perform_request(self, method, target, body=None, headers=None, request_timeout=DEFAULT):  # type: ignore[override]
        if headers:
            headers = headers.copy()
            for name in ("content-type", "accept"):
                if name in headers:
                    headers[name] = _COMPAT_MEDIA_TYPE.sub(r"application/\1", headers[name])
        response = await super().perform_request(
            method, target, body=body, headers=headers, request_timeout=request_timeout
        )
        if "x-elastic-product" not in response.meta.headers:
            response.meta.headers["x-elastic-product"] = "Elasticsearch"
        return response


def connect(url: str, flavor: str = "elasticsearch", **client_options: Any) -> AsyncElasticsearch:
    """An async client for a cluster of the given flavor (credentials may be in the URL)."""
    if flavor not in FLAVORS:
        raise ValueError(f"flavor must be one of {', '.join(FLAVORS)}, not {flavor!r}")
    # The first write after creating an index can take longer than the client's 10 s default.
    options: dict[str, Any] = {"request_timeout": 30.0, **client_options}
    if flavor == "opensearch":
        options.setdefault("node_class", OpenSearchNode)
    return AsyncElasticsearch(url, **options)


@dataclass(frozen=True)
class _Rebuild:
    index: str
    # ids deleted while the rebuild runs: the copy must not bring them back
    deleted: set[str]


class ElasticsearchStore(Store):
    """A `Store` on an Elasticsearch 8/9 or OpenSearch 2/3 cluster.

    `client_options` go to `AsyncElasticsearch` (e.g. `basic_auth`, `api_key`, `ca_certs`,
    `request_timeout`).
    """

    def __init__(
        self,
        url: str,
        table: IndexTable,
        index_prefix: str = "union",
        flavor: str = "elasticsearch",
        *,
        number_of_shards: int = 1,
        number_of_replicas: int | None = None,
        bulk_chunk_size: int = 500,
        result_window: int = MAX_RESULT_WINDOW,
        **client_options: Any,
    ):
        if flavor not in FLAVORS:
            raise ValueError(f"flavor must be one of {', '.join(FLAVORS)}, not {flavor!r}")
        if not _INDEX_PREFIX.match(index_prefix):
            raise ValueError(
                f"index_prefix {index_prefix!r}: lower-case letters, digits, '_', '-', '.'; not starting with '_', '-', '.'"
            )
        self.url = url
        self.table = table
        self.alias = index_prefix
        self.decoded_records = DecodedRecords(_decode_payload)
        self.flavor = flavor
        self.number_of_shards = number_of_shards
        self.number_of_replicas = number_of_replicas
        self.bulk_chunk_size = bulk_chunk_size
        # from/size reach this far; deeper offsets walk with search_after. An existing index's
        # own `max_result_window` replaces it on open.
        self.result_window = result_window
        self.compiler = QueryCompiler(table)
        self.mapping = elastic_mapping.mapping(table)
        self.client = connect(url, flavor, **client_options)
        self._rebuild: _Rebuild | None = None
        self._opened = False
        self.mapping_current = True

    # -- lifecycle ----------------------------------------------------------------------------
    async def open(self) -> None:
        if self._opened:
            return
        try:
            if await self.client.indices.exists_alias(name=self.alias):
                await self._check_mapping()
                await self._read_result_window()
            elif await self.client.indices.exists(index=self.alias):
                raise StoreError(
                    f"{self.url}: {self.alias!r} is a concrete index, not an alias; "
                    "reindex it into a new index and point an alias of that name at it (docs/elasticsearch.md)"
                )
            else:
                await self._create_index(self._new_index_name(), alias=True)
        except ApiError as error:
            raise StoreError(f"{self.url}: cannot open {self.alias!r}: {error}") from error
        except TransportError as error:
            raise StoreError(f"{self.url}: unreachable: {error}") from error
        self._opened = True

    async def _check_mapping(self) -> None:
        response = await self.client.indices.get_mapping(index=self.alias)
        for index, body in response.body.items():
            meta = body.get("mappings", {}).get("_meta", {})
            if meta.get("fingerprint") != self.mapping["_meta"]["fingerprint"]:
                self.mapping_current = False
                log.warning(
                    "index %s was built for another index table (mapping %s, expected %s): "
                    "run a rebuild (docs/elasticsearch.md)",
                    index, meta.get("fingerprint"), self.mapping["_meta"]["fingerprint"],
                )

    async def _read_result_window(self) -> None:
        response = await self.client.indices.get_settings(index=self.alias)
        windows = [int(body["settings"]["index"]["max_result_window"])
                   for body in response.body.values() if "max_result_window" in body.get("settings", {}).get("index", {})]
        # An index without the setting has Elasticsearch's default window.
        self.result_window = min(windows) if windows else MAX_RESULT_WINDOW

    def _new_index_name(self) -> str:
        return f"{self.alias}-{datetime.now(timezone.utc).strftime('%Y%m%dt%H%M%S%f')}"

    async def _create_index(self, name: str, alias: bool) -> None:
        settings = elastic_mapping.index_settings(self.number_of_shards, self.number_of_replicas, self.result_window)
        try:
            await self.client.indices.create(
                index=name,
                settings=settings,
                mappings=self.mapping,
                aliases={self.alias: {}} if alias else None,
            )
        except ApiError as error:
            # Another process created the alias first: attach to it.
            if alias and error.status_code == 400 and await self.client.indices.exists_alias(name=self.alias):
                return
            raise

    async def close(self) -> None:
        await self.client.close()
        self._opened = False

    async def ping(self) -> bool:
        try:
            return bool(await self.client.ping())
        except (TransportError, ApiError):
            return False

    async def concrete_indexes(self) -> list[str]:
        """The concrete index (or, during an alias swap elsewhere, indexes) behind the alias."""
        try:
            response = await self.client.indices.get_alias(name=self.alias)
        except NotFoundError:
            return []
        return sorted(response.body)

    # -- rebuild ------------------------------------------------------------------------------
    async def begin_rebuild(self) -> str:
        """Create a new concrete index with the current mapping; until `finish_rebuild()`,
        every write goes to both the live index (searches still read it) and the new one."""
        if self._rebuild is not None:
            raise StoreError(f"a rebuild into {self._rebuild.index} is already running")
        name = self._new_index_name()
        await self._create_index(name, alias=False)
        self._rebuild = _Rebuild(name, set())
        return name

    async def finish_rebuild(self, keep_old: bool = False) -> str:
        """Refresh the new index, point the alias at it in one atomic request, drop the old one."""
        if self._rebuild is None:
            raise StoreError("no rebuild is running")
        new = self._rebuild.index
        old = await self.concrete_indexes()
        await self.client.indices.refresh(index=new)
        actions: list[dict[str, Any]] = [{"remove": {"index": index, "alias": self.alias}} for index in old]
        actions.append({"add": {"index": new, "alias": self.alias}})
        await self.client.indices.update_aliases(actions=actions)
        self._rebuild = None
        self.mapping_current = True
        if not keep_old:
            for index in old:
                await self.client.indices.delete(index=index)
        return new

    async def abort_rebuild(self) -> None:
        if self._rebuild is None:
            return
        name, self._rebuild = self._rebuild.index, None
        await self.client.indices.delete(index=name)

    async def rebuild(
        self, records: AsyncIterable[UnionRecord] | Iterable[UnionRecord] | None = None, *, keep_old: bool = False
    ) -> BulkResult:
        """Rebuild the index without downtime.

        With `records`, the new index holds exactly those (a full re-ingest); without, every
        record of the live index is re-indexed with the current index table (after a change of
        `config/indexes.yaml` that needs no re-extraction). Reads use the old index until the
        alias swaps. If any record is not written, or anything else fails, the new index is
        dropped and the old one stays (a `StoreError` names the records).
        """
        target = await self.begin_rebuild()
        result = BulkResult()
        try:
            batch: list[UnionRecord] = []
            source = self._live_records() if records is None else _aiter(records)
            async for record in source:
                batch.append(record)
                if len(batch) >= self.bulk_chunk_size:
                    _merge(result, await self._copy_into(target, batch, only_new=records is None))
                    batch = []
            if batch:
                _merge(result, await self._copy_into(target, batch, only_new=records is None))
            assert self._rebuild is not None
            for record_id in sorted(self._rebuild.deleted):
                await self.client.options(ignore_status=404).delete(index=target, id=record_id)
            if result.failed:
                shown = "; ".join(f"{record_id}: {reason}" for record_id, reason in result.failed[:5])
                raise StoreError(
                    f"rebuild abandoned, the alias still points at the old index: {len(result.failed)} "
                    f"records could not be written into {target} ({shown})"
                )
        except BaseException:
            await self.abort_rebuild()
            raise
        await self.finish_rebuild(keep_old=keep_old)
        return result

    async def _live_records(self) -> AsyncIterator[UnionRecord]:
        async for hit in self._walk({"match_all": {}}, ["payload"], index=self.alias):
            yield UnionRecord.from_dict(json.loads(hit["_source"]["payload"]))

    async def _copy_into(self, index: str, records: list[UnionRecord], only_new: bool) -> BulkResult:
        # Copying the live index uses `create`: a record written while the copy runs is newer
        # than the copy, and a record deleted meanwhile must stay deleted.
        assert self._rebuild is not None
        if only_new:
            records = [r for r in records if r.id not in self._rebuild.deleted]
        actions, result = self._index_actions(records, "create" if only_new else "index", [index])
        _merge(result, await self._bulk(actions, tolerate={409} if only_new else ()))
        return result

    # -- write path ---------------------------------------------------------------------------
    def _write_targets(self) -> list[str]:
        return [self.alias] + ([self._rebuild.index] if self._rebuild else [])

    async def upsert(self, records: Sequence[UnionRecord]) -> BulkResult:
        actions, result = self._index_actions(records, "index", self._write_targets())
        _merge(result, await self._bulk(actions))
        return result

    def _index_actions(
        self, records: Iterable[UnionRecord], operation: str, indexes: list[str]
    ) -> tuple[list[dict[str, Any]], BulkResult]:
        """Bulk actions for records; records that cannot be sent are reported, never sent: a
        request-level error (an over-long id) would fail every record of the bulk request."""
        actions: list[dict[str, Any]] = []
        rejected = BulkResult()
        for record in records:
            if not record.id or len(record.id.encode("utf-8")) > _MAX_ID_BYTES:
                rejected.failed.append((record.id, f"the id must have 1 to {_MAX_ID_BYTES} bytes"))
                continue
            try:
                source = elastic_mapping.document(record, self.table)
            except Exception as error:  # one bad record must not stop the batch
                rejected.failed.append((record.id, f"cannot build the document: {error!r}"))
                continue
            for index in indexes:
                actions.append({"_op_type": operation, "_index": index, "_id": record.id, "_source": source})
        return actions, rejected

    async def delete(self, ids: Sequence[str]) -> BulkResult:
        if self._rebuild is not None:
            self._rebuild.deleted.update(ids)
        actions = [
            {"_op_type": "delete", "_index": index, "_id": record_id}
            for record_id in ids
            for index in self._write_targets()
        ]
        # Deleting an absent record leaves the store as asked: not a failure.
        return await self._bulk(actions, tolerate={404})

    async def _bulk(self, actions: list[dict[str, Any]], tolerate: Collection[int] = ()) -> BulkResult:
        """Run bulk actions (retrying 429s with back-off); one outcome per record id, which
        fails if any of its actions (live index, rebuild index) failed."""
        outcome: dict[str, str | None] = {}
        if not actions:
            return BulkResult()
        try:
            async for ok, item in async_streaming_bulk(
                self.client,
                actions,
                chunk_size=self.bulk_chunk_size,
                max_chunk_bytes=_MAX_CHUNK_BYTES,
                max_retries=5,
                initial_backoff=1,
                max_backoff=30,
                raise_on_error=False,
                raise_on_exception=False,
                yield_ok=True,
            ):
                operation, details = next(iter(item.items()))
                record_id = str(details.get("_id"))
                status = details.get("status", 500)
                if ok or status in tolerate:
                    outcome.setdefault(record_id, None)
                else:
                    outcome[record_id] = _bulk_error(operation, details)
        except TransportError as error:
            raise StoreError(f"{self.url}: bulk request failed: {error}") from error
        result = BulkResult()
        for record_id, error in outcome.items():
            if error is None:
                result.succeeded += 1
            else:
                result.failed.append((record_id, error))
        return result

    async def refresh(self) -> None:
        await self.client.indices.refresh(index=",".join(self._write_targets()))

    async def update_items(self, updates: Sequence[ItemStatusUpdate]) -> list[ItemUpdateOutcome]:
        """Read-modify-write of each affected record, guarded by if_seq_no/if_primary_term
        (no painless scripts: not every OpenSearch-compatible server runs them), retried on a
        conflict; then one refresh so that the next search sees the new status.

        Records are written one by one, so a cluster failing part-way leaves part of the batch
        applied: `ItemUpdatesFailed` then says which updates were (their record's write was
        acknowledged), which were not (never sent, or refused with a 4xx), and which cannot be
        known (the write was sent, but the cluster failed to answer or answered with a 5xx)."""
        try:
            record_of = await self.find_by_barcode([u.barcode for u in updates])
        except (ApiError, TransportError) as error:
            raise StoreError(f"{self.url}: item status update failed before anything was written: {error}") from error
        outcomes: dict[int, ItemUpdateOutcome] = {}
        pending: dict[str, list[int]] = {}
        for position, update in enumerate(updates):
            record_id = record_of.get(update.barcode)
            if record_id is None:
                outcomes[position] = ItemUpdateOutcome(update.barcode, False, None, "unknown barcode")
            else:
                pending.setdefault(record_id, []).append(position)
        in_flight: tuple[str, list[int]] | None = None
        try:
            for attempt in range(_UPDATE_ATTEMPTS):
                if not pending:
                    break
                conflicts: dict[str, list[int]] = {}
                response = await self.client.mget(index=self.alias, ids=list(pending), source_includes=["payload"])
                for doc in response.body["docs"]:
                    record_id, positions = doc["_id"], pending[doc["_id"]]
                    if not doc.get("found"):
                        for position in positions:
                            outcomes[position] = ItemUpdateOutcome(updates[position].barcode, False, record_id, "record was deleted")
                        continue
                    record = UnionRecord.from_dict(json.loads(doc["_source"]["payload"]))
                    for position in positions:
                        record.apply_status(updates[position])
                    source = elastic_mapping.document(record, self.table)
                    in_flight = (record_id, positions)     # until the cluster answers
                    try:
                        await self.client.index(
                            index=self.alias, id=record_id, document=source,
                            if_seq_no=doc["_seq_no"], if_primary_term=doc["_primary_term"],
                        )
                    except ConflictError:
                        in_flight = None
                        conflicts[record_id] = positions
                        continue
                    in_flight = None
                    for position in positions:
                        outcomes[position] = ItemUpdateOutcome(updates[position].barcode, True, record_id)
                    if self._rebuild is not None:
                        await self.client.index(index=self._rebuild.index, id=record_id, document=source)
                pending = conflicts
                if pending:
                    # Jittered so that the writers racing on a record do not retry in lockstep.
                    await asyncio.sleep(min(0.5, 0.01 * 2**attempt) * random.uniform(0.5, 1.5))
            for record_id, positions in pending.items():
                for position in positions:
                    outcomes[position] = ItemUpdateOutcome(
                        updates[position].barcode, False, record_id, "concurrent updates kept conflicting"
                    )
            if any(o.applied for o in outcomes.values()):
                await self.refresh()
        except (ApiError, TransportError) as error:
            raise self._items_failed(updates, outcomes, in_flight, error) from error
        return [outcomes[position] for position in range(len(updates))]

    def _items_failed(self, updates: Sequence[ItemStatusUpdate], outcomes: dict[int, ItemUpdateOutcome],
                      in_flight: tuple[str, list[int]] | None, error: Exception) -> ItemUpdatesFailed:
        """What an update_items interrupted by `error` applied: see `ItemUpdatesFailed`."""
        unanswered: set[int] = set()
        if in_flight is not None:
            record_id, positions = in_flight
            if isinstance(error, ApiError) and error.meta.status < 500:
                for position in positions:
                    outcomes[position] = ItemUpdateOutcome(updates[position].barcode, False, record_id,
                                                           f"refused by the cluster: {error}")
            else:
                unanswered.update(positions)
        listed: list[ItemUpdateOutcome | None] = []
        for position, update in enumerate(updates):
            if position in unanswered:
                listed.append(None)
            else:
                listed.append(outcomes.get(position) or ItemUpdateOutcome(
                    update.barcode, False, None, "not written: the cluster failed before"))
        applied = sum(1 for o in listed if o is not None and o.applied)
        unknown = sum(1 for o in listed if o is None)
        return ItemUpdatesFailed(
            f"{self.url}: item status update failed after {applied} of {len(updates)} updates were applied"
            + (f" ({unknown} unanswered)" if unknown else "") + f": {error}",
            listed,
        )

    # -- lookups for the write path -----------------------------------------------------------
    async def _walk(self, query: dict[str, Any], source: list[str] | bool, index: str | None = None) -> AsyncIterator[dict[str, Any]]:
        """Every hit of a query in id order, paged with search_after (no point-in-time)."""
        after: list[Any] | None = None
        while True:
            response = await self.client.search(
                index=index or self.alias, query=query, sort=[{"id": "asc"}], size=_PAGE,
                search_after=after, source=source, track_total_hits=False,
            )
            hits = response.body["hits"]["hits"]
            for hit in hits:
                yield hit
            if len(hits) < _PAGE:
                return
            after = hits[-1]["sort"]

    async def find_by_match_keys(self, keys: Sequence[str]) -> dict[str, list[str]]:
        wanted = set(keys)
        found: dict[str, list[str]] = {}
        for chunk in _chunks(sorted(wanted), _PAGE):
            async for hit in self._walk({"terms": {"match_keys": chunk}}, ["match_keys"]):
                for key in hit["_source"].get("match_keys", []):
                    if key in wanted:
                        found.setdefault(key, []).append(hit["_id"])
        return {key: sorted(set(ids)) for key, ids in found.items()}

    async def find_by_contribution(self, library: str, source_ids: Sequence[str]) -> dict[str, str]:
        prefix = f"{library}{CONTRIBUTION_SEPARATOR}"
        wanted = {f"{prefix}{s}": s for s in source_ids}
        found: dict[str, str] = {}
        for chunk in _chunks(sorted(wanted), _PAGE):
            async for hit in self._walk({"terms": {"contributions": chunk}}, ["contributions"]):
                for contribution in hit["_source"].get("contributions", []):
                    source_id = wanted.get(contribution)
                    if source_id is not None and (source_id not in found or hit["_id"] < found[source_id]):
                        found[source_id] = hit["_id"]
        return found

    async def ids_of_library(self, library: str) -> list[str]:
        return [hit["_id"] async for hit in self._walk({"term": {"contribution_libraries": library}}, False)]

    async def find_by_barcode(self, barcodes: Sequence[str]) -> dict[str, str]:
        wanted = set(barcodes)
        found: dict[str, str] = {}
        for chunk in _chunks(sorted(wanted), _PAGE):
            async for hit in self._walk({"terms": {"barcodes": chunk}}, ["barcodes"]):
                for barcode in hit["_source"].get("barcodes", []):
                    if barcode in wanted and (barcode not in found or hit["_id"] < found[barcode]):
                        found[barcode] = hit["_id"]
        return found

    # -- read path ----------------------------------------------------------------------------
    async def get(self, ids: Sequence[str], *, shared: bool = False) -> list[UnionRecord | None]:
        by_id: dict[str, UnionRecord] = {}
        for chunk in _chunks(list(dict.fromkeys(ids)), _PAGE):
            response = await self.client.mget(index=self.alias, ids=chunk, source_includes=["payload"])
            for doc in response.body["docs"]:
                if doc.get("found"):
                    payload = doc["_source"]["payload"]
                    if shared:
                        by_id[doc["_id"]] = self.decoded_records.shared(doc["_id"], payload)
                    else:
                        by_id[doc["_id"]] = _decode_payload(payload)
        return [by_id.get(record_id) for record_id in ids]

    async def search(self, request: SearchRequest) -> SearchResult:
        query = self.compiler.compile(request.query, request.item_scope)
        sort = self.compiler.sort(request.sort)
        signature = _sort_signature(sort)
        facet_fields = [self.compiler.facet_field(f) for f in request.facets]
        aggs = {f"facet{n}": _composite(field) for n, (_, field) in enumerate(facet_fields)}
        # with_records: the page's payloads come in the same request (no mget after it).
        source: bool | dict[str, list[str]] = {"includes": ["payload"]} if request.with_records else False
        body: dict[str, Any] = {"query": query, "sort": sort, "track_total_hits": True, "source": source}
        limit = max(request.limit, 0)
        if request.after is not None:
            body["search_after"] = _decode_cursor(request.after, signature)
        elif request.offset + limit <= self.result_window:
            body["from_"] = max(request.offset, 0)
        else:
            after = await self._skip(query, sort, request.offset)
            if after is None:
                limit = 0  # the offset is past the last hit
            else:
                body["search_after"] = after
        # One hit more than asked says whether a next page exists.
        size = limit + 1 if limit else 0
        try:
            response = await self.client.search(index=self.alias, size=size, aggs=aggs or None, **body)
        except ApiError as error:
            raise _query_error(error) from error
        hits = response.body["hits"]["hits"]
        total = response.body["hits"]["total"]["value"]
        page = hits[:limit]
        cursor = _encode_cursor(page[-1]["sort"], signature) if len(hits) > limit and page else None
        facets = []
        for n, (definition, field) in enumerate(facet_fields):
            counts = await self._facet_counts(query, field, response.body["aggregations"][f"facet{n}"])
            facets.append(ordered_facet(definition, request.facets[n], counts))
        records = ([self.decoded_records.shared(hit["_id"], hit["_source"]["payload"]) for hit in page]
                   if request.with_records else None)
        return SearchResult(total=total, ids=[hit["_id"] for hit in page], facets=facets, next_cursor=cursor,
                            records=records)

    async def _skip(self, query: dict[str, Any], sort: list[dict[str, Any]], offset: int) -> list[Any] | None:
        """The sort values of the hit just before `offset`, walking pages past the result window."""
        after: list[Any] | None = None
        remaining = offset
        while remaining > 0:
            size = min(remaining, self.result_window)
            response = await self.client.search(
                index=self.alias, query=query, sort=sort, size=size, search_after=after,
                source=False, track_total_hits=False, filter_path="hits.hits.sort",
            )
            hits = response.body.get("hits", {}).get("hits", [])
            if len(hits) < size:
                return None
            after = hits[-1]["sort"]
            remaining -= size
        return after

    async def _facet_counts(self, query: dict[str, Any], field: str, aggregation: dict[str, Any]) -> dict[str, int]:
        counts = {b["key"]["v"]: b["doc_count"] for b in aggregation["buckets"]}
        while len(aggregation["buckets"]) == _FACET_PAGE and aggregation.get("after_key"):
            response = await self.client.search(
                index=self.alias, query=query, size=0, track_total_hits=False,
                aggs={"f": _composite(field, aggregation["after_key"])},
            )
            aggregation = response.body["aggregations"]["f"]
            counts.update({b["key"]["v"]: b["doc_count"] for b in aggregation["buckets"]})
        return counts

    async def scan(self, request: ScanRequest) -> list[ScanTerm]:
        definition, field = self.compiler.scan_field(request.index)
        if request.count <= 0:
            return []
        start = elastic_mapping.clip_term(definition.query_key(request.start))
        before_wanted = min(max(request.position - 1, 0), request.count)
        skip = max(1 - request.position, 0)
        aggs: dict[str, Any] = {
            "at": {"filter": {"term": {field: start}}},
            "after": {"composite": {"size": request.count + skip, "after": {"v": start},
                                    "sources": [{"v": {"terms": {"field": field}}}]}},
        }
        if before_wanted:
            aggs["before"] = {"composite": {"size": before_wanted, "after": {"v": start},
                                            "sources": [{"v": {"terms": {"field": field, "order": "desc"}}}]}}
        query = self.compiler.compile(request.query)
        try:
            response = await self.client.search(index=self.alias, query=query, size=0, track_total_hits=False, aggs=aggs)
        except ApiError as error:
            raise _query_error(error) from error
        result = response.body["aggregations"]
        before = [ScanTerm(b["key"]["v"], b["doc_count"]) for b in reversed(result.get("before", {}).get("buckets", []))]
        onward = [ScanTerm(start, result["at"]["doc_count"])] if result["at"]["doc_count"] else []
        onward += [ScanTerm(b["key"]["v"], b["doc_count"]) for b in result["after"]["buckets"]]
        return before + onward[skip:][: request.count - len(before)]

    async def stats(self) -> StoreStats:
        def by(field: str) -> dict[str, Any]:
            return {"terms": {"field": f"{ITEMS}.{field}", "size": _STATS_BUCKETS},
                    "aggs": {"records": {"reverse_nested": {}}}}

        response = await self.client.search(
            index=self.alias, size=0, track_total_hits=True,
            aggs={"items": {"sum": {"field": "item_count"}},
                  "holdings": {"nested": {"path": ITEMS}, "aggs": {"library": by("library"), "tier": by("tier")}}},
        )
        body = response.body
        holdings = body["aggregations"]["holdings"]

        def table(name: str) -> dict[str, dict[str, int]]:
            return {
                b["key"]: {"records": b["records"]["doc_count"], "items": b["doc_count"]}
                for b in holdings[name]["buckets"]
            }

        return StoreStats(
            records=body["hits"]["total"]["value"],
            items=int(body["aggregations"]["items"]["value"] or 0),
            by_library=table("library"),
            by_tier=table("tier"),
        )


# -- helpers -------------------------------------------------------------------------------------

def _composite(field: str, after: dict[str, Any] | None = None) -> dict[str, Any]:
    composite: dict[str, Any] = {"size": _FACET_PAGE, "sources": [{"v": {"terms": {"field": field}}}]}
    if after:
        composite["after"] = after
    return {"composite": composite}


def _sort_signature(sort: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(sort, sort_keys=True).encode()).hexdigest()[:12]


def _encode_cursor(values: list[Any], signature: str) -> str:
    raw = json.dumps({"s": signature, "v": values}, ensure_ascii=False, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, signature: str) -> list[Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        values = data["v"]
        if data["s"] != signature or not isinstance(values, list):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise QueryNotSupported("the cursor does not belong to this query's sort order") from None
    return values


def _bulk_error(operation: str, details: dict[str, Any]) -> str:
    error = details.get("error")
    if isinstance(error, dict):
        reason = error.get("reason") or error.get("type") or "error"
        caused = error.get("caused_by")
        if isinstance(caused, dict) and caused.get("reason"):
            reason = f"{reason} ({caused['reason']})"
        return f"{operation}: {reason}"
    return f"{operation}: {error or 'status ' + str(details.get('status'))}"


def _query_error(error: ApiError) -> StoreError:
    if error.status_code == 400:
        return QueryNotSupported(f"the cluster rejected the query: {error}")
    return StoreError(f"search failed: {error}")


def _merge(into: BulkResult, other: BulkResult) -> None:
    into.succeeded += other.succeeded
    into.failed.extend(other.failed)


def _chunks(values: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


async def _aiter(records: AsyncIterable[UnionRecord] | Iterable[UnionRecord]) -> AsyncIterator[UnionRecord]:
    if hasattr(records, "__aiter__"):
        async for record in records:  # type: ignore[union-attr]
            yield record
    else:
        for record in records:  # type: ignore[union-attr]
            yield record

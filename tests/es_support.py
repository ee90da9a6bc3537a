"""How tests get an Elasticsearch store.

    from es_support import es_store

    async def test_something(table):
        async with es_store(table) as store:      # an opened ElasticsearchStore, empty
            await store.upsert(records)
            await store.refresh()
            ...
        # its indexes are deleted here

Where the store lives:
- `ELASTICSEARCH_URL` set: on that cluster (`ELASTICSEARCH_FLAVOR`: elasticsearch (default) or
  opensearch); every test session uses a random index prefix and deletes what it created.
- otherwise: on the osmem-server stand-in (an in-memory OpenSearch-compatible server from the
  `osmem-server` test dependency), started on a free loopback port the first time a store is
  needed and stopped at the end of the session (the `es_endpoint` fixture), or at interpreter exit.

Each `es_store` gets its own index prefix, so stores never see each other's records. A store
binds to the event loop it first runs in: to share one store between tests (load a corpus once),
create it in an async fixture and its tests with the same loop scope, e.g.
`@pytest_asyncio.fixture(scope="module", loop_scope="module")` and
`pytestmark = pytest.mark.asyncio(loop_scope="module")`.
"""
from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest

from indexer.demo import write_demo_data
from indexer.elastic import FLAVORS, ElasticsearchStore, connect
from indexer.indexes import IndexTable
from indexer.ingest import IngestOptions, ingest
from indexer.policy import IngestPolicy

__all__ = ["Endpoint", "es_store", "es_endpoint", "shared_endpoint"]


@dataclass
class Endpoint:
    """Where Elasticsearch stores of this test session live."""

    url: str
    flavor: str
    prefix: str            # every index of the session starts with it
    real_cluster: bool     # True when ELASTICSEARCH_URL named it
    _server: object | None = field(default=None, repr=False)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()  # type: ignore[attr-defined]
            self._server = None
        elif self.real_cluster:
            _delete_session_indexes(self)


def _start_endpoint() -> Endpoint:
    prefix = f"test-{uuid.uuid4().hex[:10]}"
    url = os.environ.get("ELASTICSEARCH_URL", "").strip()
    if url:
        flavor = os.environ.get("ELASTICSEARCH_FLAVOR", "elasticsearch").strip() or "elasticsearch"
        if flavor not in FLAVORS:
            raise RuntimeError(f"ELASTICSEARCH_FLAVOR={flavor!r}: expected one of {', '.join(FLAVORS)}")
        return Endpoint(url, flavor, prefix, real_cluster=True)
    from osmem_server import OsmemServer

    server = OsmemServer.start(freeze=False, japanese=False, addr="127.0.0.1:0")
    return Endpoint(server.url, "opensearch", prefix, real_cluster=False, _server=server)


def _delete_session_indexes(endpoint: Endpoint) -> None:
    """Delete every index of the session by name (clusters refuse wildcard deletes by default)."""

    async def delete() -> None:
        client = connect(endpoint.url, endpoint.flavor)
        try:
            response = await client.indices.get(index=f"{endpoint.prefix}-*", allow_no_indices=True)
            for name in response.body:
                await client.indices.delete(index=name)
        finally:
            await client.close()

    asyncio.run(delete())


_shared: list[Endpoint] = []  # the session's endpoint, once started (one per test process)


def shared_endpoint() -> Endpoint:
    """The endpoint of this test process, started on first use."""
    if not _shared:
        endpoint = _start_endpoint()
        _shared.append(endpoint)
        atexit.register(endpoint.close)
    return _shared[0]


@pytest.fixture(scope="session")
def es_endpoint() -> Iterator[Endpoint]:
    """The session's endpoint; stops the stand-in (or cleans the real cluster) at session end."""
    endpoint = shared_endpoint()
    yield endpoint
    endpoint.close()
    _shared.clear()


@contextlib.asynccontextmanager
async def es_store(
    table: IndexTable, endpoint: Endpoint | None = None, **options: object
) -> AsyncIterator[ElasticsearchStore]:
    """An opened, empty ElasticsearchStore under a fresh index prefix; its indexes are deleted after."""
    endpoint = endpoint or shared_endpoint()
    store = ElasticsearchStore(
        endpoint.url, table, index_prefix=f"{endpoint.prefix}-{uuid.uuid4().hex[:8]}", flavor=endpoint.flavor,
        **options,  # type: ignore[arg-type]
    )
    try:
        await store.open()
        yield store
    finally:
        try:
            await store.abort_rebuild()
            for index in await store.concrete_indexes():
                await store.client.indices.delete(index=index)
        finally:
            await store.close()


@contextlib.asynccontextmanager
async def es_demo_catalogue(table: IndexTable, policy: IngestPolicy, directory: Path, *, records: int = 40,
                            seed: int = 5) -> AsyncIterator[ElasticsearchStore]:
    """A network's demo catalogue (`federation demo-data`) ingested into a fresh `es_store` and
    refreshed; the demo files and the quarantine go under `directory`."""
    write_demo_data(policy, directory / "demo", records=records, seed=seed)
    async with es_store(table) as store:
        report = await ingest(sorted((directory / "demo").glob("*.mrc")), store, table, policy,
                              IngestOptions(quarantine_path=directory / "quarantine.jsonl"))
        assert report.reconciled and report.quarantined == 0, report.to_json()
        await store.refresh()
        yield store

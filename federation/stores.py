"""Opening the index store a rule set asks for.

The rule set's `store` section says which store serves a network (`kind: embedded` with a
`path`, or `kind: elasticsearch` with a `url`, `index_prefix` and `flavor`);
`Network.store_settings()` applies the overrides (`--store`, `--data-dir`,
`ELASTICSEARCH_URL`, `ELASTICSEARCH_FLAVOR`) and this module turns the result into an opened
`indexer.store.Store`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

from indexer.indexes import IndexTable
from indexer.store import Store, StoreError

STORE_KINDS = ("embedded", "elasticsearch")
DEFAULT_INDEX_PREFIX = "union"


class StoreSettingsLike(Protocol):
    """What `federation.rules.StoreSettings` provides (kept structural so tests can pass their own)."""

    kind: str
    path: str | Path | None
    url: str | None
    index_prefix: str | None
    flavor: str | None
    result_cache: int


def create_store(settings: StoreSettingsLike, table: IndexTable) -> Store:
    """The store the settings describe, not yet opened."""
    kind = settings.kind
    if kind == "embedded":
        if not settings.path:
            raise StoreError("store: kind embedded needs a path (a directory or a .sqlite3 file)")
        from indexer.embedded import EmbeddedStore

        return EmbeddedStore(Path(settings.path), table, result_cache=settings.result_cache)
    if kind == "elasticsearch":
        if not settings.url:
            raise StoreError("store: kind elasticsearch needs a url (or ELASTICSEARCH_URL)")
        from indexer.elastic import ElasticsearchStore

        try:
            return ElasticsearchStore(
                settings.url,
                table,
                index_prefix=settings.index_prefix or DEFAULT_INDEX_PREFIX,
                flavor=settings.flavor or "elasticsearch",
            )
        except ValueError as error:
            raise StoreError(f"store: {error}") from error
    raise StoreError(f"store: kind {kind!r} is not one of {', '.join(STORE_KINDS)}")


async def open_store(settings: StoreSettingsLike, table: IndexTable) -> Store:
    """The store the settings describe, opened; the caller closes it."""
    store = create_store(settings, table)
    try:
        await store.open()
    except BaseException:
        await store.close()
        raise
    return store

"""federation.stores: the rule set's store settings (with their overrides) open the right store."""
from __future__ import annotations

from pathlib import Path

import pytest

from corpus import handmade_records
from es_support import Endpoint, shared_endpoint
from federation.rules import StoreSettings, load_network
from federation.stores import create_store, open_store
from indexer.elastic import ElasticsearchStore
from indexer.embedded import DATABASE_NAME, EmbeddedStore
from indexer.indexes import load_index_table
from indexer.query import MatchAll, SearchRequest
from indexer.store import StoreError

TABLE = load_index_table()
NETWORK = Path(__file__).resolve().parent.parent / "config" / "networks" / "guangrao.yaml"


async def test_embedded_store_from_the_rule_set_with_a_data_dir(tmp_path: Path) -> None:
    settings = load_network(NETWORK).store_settings({}, data_dir=tmp_path)
    assert settings.kind == "embedded"
    store = await open_store(settings, TABLE)
    try:
        assert isinstance(store, EmbeddedStore)
        await store.upsert(handmade_records()[:3])
        assert (await store.search(SearchRequest(MatchAll()))).total == 3
    finally:
        await store.close()
    assert (tmp_path / DATABASE_NAME).is_file()


async def test_elasticsearch_store_from_the_environment() -> None:
    endpoint: Endpoint = shared_endpoint()
    env = {"ELASTICSEARCH_URL": endpoint.url, "ELASTICSEARCH_FLAVOR": endpoint.flavor}
    settings = load_network(NETWORK).store_settings(env)
    assert settings.kind == "elasticsearch"
    prefix = f"{endpoint.prefix}-open-store"
    store = await open_store(StoreSettings("elasticsearch", None, endpoint.url, prefix, endpoint.flavor), TABLE)
    try:
        assert isinstance(store, ElasticsearchStore)
        assert store.alias == prefix and store.flavor == endpoint.flavor
        await store.upsert(handmade_records()[:2])
        await store.refresh()
        assert (await store.search(SearchRequest(MatchAll()))).total == 2
    finally:
        for index in await store.concrete_indexes():
            await store.client.indices.delete(index=index)
        await store.close()


@pytest.mark.parametrize(
    "settings, message",
    [
        (StoreSettings("embedded", None), "needs a path"),
        (StoreSettings("elasticsearch", None, None), "needs a url"),
        (StoreSettings("elasticsearch", None, "http://127.0.0.1:9", "Bad Prefix"), "index_prefix"),
        (StoreSettings("elasticsearch", None, "http://127.0.0.1:9", "union", "solr"), "flavor"),
        (StoreSettings("sqlite", "/tmp/x"), "not one of embedded, elasticsearch"),
    ],
    ids=["embedded-no-path", "es-no-url", "es-bad-prefix", "es-bad-flavor", "unknown-kind"],
)
def test_bad_settings_are_store_errors(settings: StoreSettings, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        create_store(settings, TABLE)


async def test_an_unreachable_cluster_is_a_store_error_and_nothing_leaks() -> None:
    with pytest.raises(StoreError, match="unreachable"):
        await open_store(StoreSettings("elasticsearch", None, "http://127.0.0.1:9", "union", "opensearch"), TABLE)


async def test_an_unopenable_embedded_path_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot open the embedded store"):
        await open_store(StoreSettings("embedded", str(blocker / "data")), TABLE)

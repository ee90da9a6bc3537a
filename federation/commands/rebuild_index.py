"""`federation rebuild-index`: bring the store's index up to `config/indexes.yaml` without downtime.

    federation rebuild-index --config config/networks/guangrao.yaml [--store embedded|elasticsearch]
                             [--data-dir DIR] [--keep-old]

Elasticsearch / OpenSearch: every live record is re-indexed into a new concrete index, which then
replaces the old one behind the alias in one atomic swap (docs/elasticsearch.md); searches and
writes go on meanwhile. The embedded store re-indexes by itself when it is opened after the index
table changed, so for it the command opens the store, indexes the records an ingest stopped
before its end left unindexed (if any), and reports.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from federation.rules import ConfigError, load_network
from federation.stores import create_store
from indexer.indexes import IndexTableError, load_index_table
from indexer.store import Store, StoreError

NAME = "rebuild-index"
HELP = "re-index the catalogue with the current config/indexes.yaml (Elasticsearch: new index + alias swap)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE", help="the network rule set (YAML)")
    parser.add_argument("--store", choices=("embedded", "elasticsearch"), help="override the rule set's store kind")
    parser.add_argument("--data-dir", metavar="DIR", help="the embedded store's directory (as for ingest)")
    parser.add_argument("--keep-old", action="store_true",
                        help="Elasticsearch: keep the previous concrete index after the swap")


def run(args: argparse.Namespace) -> int:
    try:
        network = load_network(args.config)
        table = load_index_table()
        settings = network.store_settings(os.environ, override_kind=args.store, data_dir=args.data_dir)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    except (IndexTableError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_rebuild(create_store(settings, table), args.keep_old))
    except StoreError as error:
        print(f"error: store: {error}", file=sys.stderr)
        return 1


async def _rebuild(store: Store, keep_old: bool) -> int:
    from indexer.elastic import ElasticsearchStore  # the client library loads only when needed
    from indexer.embedded import EmbeddedStore

    started = time.monotonic()
    try:
        await store.open()
        if not isinstance(store, ElasticsearchStore):
            waiting = await store.index_waiting() if isinstance(store, EmbeddedStore) else 0
            if waiting:
                print(f"embedded store: {waiting} records an ingest stopped before its end had left unindexed, indexed")
            stats = await store.stats()
            print(f"embedded store: {stats.records} records indexed with the current index table "
                  "(it re-indexes by itself when the table changes)")
            return 0
        before = await store.concrete_indexes()
        result = await store.rebuild(keep_old=keep_old)
        [after] = await store.concrete_indexes()
        elapsed = time.monotonic() - started
        print(f"{store.alias}: {result.succeeded} records re-indexed into {after} in {elapsed:.1f} s "
              f"(was {', '.join(before) or 'none'}{', kept' if keep_old else ', deleted'})")
        return 0
    finally:
        await store.close()

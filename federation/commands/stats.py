"""`federation stats --config FILE [--data-dir DIR] [--json]`: records and items per library and
tier and the network's totals, the figures a network's annual report lists. A record counts for a
library (or tier) when it holds an item there; the totals count each union record once. Also how
many records an ingest stopped before its end left unsearchable (`unindexed`), if any."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from federation.api import catalogue_stats
from federation.rules import ConfigError, load_network
from federation.stores import open_store
from indexer.embedded import DATABASE_NAME
from indexer.indexes import IndexTableError, load_index_table
from indexer.store import StoreError

NAME = "stats"
HELP = "records and items per library and tier, and the network's totals"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE", help="the network rule set (config/networks/*.yaml)")
    parser.add_argument("--data-dir", metavar="DIR", help="the embedded store's directory (overrides the rule set)")
    parser.add_argument("--store", choices=("embedded", "elasticsearch"), help="the store kind (overrides the rule set)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def run(args: argparse.Namespace) -> int:
    try:
        figures = asyncio.run(_collect(args))
    except (ConfigError, IndexTableError, StoreError, ValueError, OSError) as error:
        print(f"federation stats: {error}", file=sys.stderr)
        return 1
    print(json.dumps(figures, ensure_ascii=False, indent=2) if args.json else render(figures))
    return 0


async def _collect(args: argparse.Namespace) -> dict[str, Any]:
    network = load_network(args.config)
    settings = network.store_settings(os.environ, override_kind=args.store, data_dir=args.data_dir)
    if settings.kind == "embedded":
        path = Path(settings.path or "")
        database = path if path.suffix in (".sqlite3", ".sqlite", ".db") else path / DATABASE_NAME
        if not database.exists():
            raise StoreError(f"no catalogue at {database} (load one with `federation ingest`)")
    store = await open_store(settings, load_index_table())
    try:
        stats = await store.stats()
    finally:
        await store.close()
    return {**catalogue_stats(network, stats), "unindexed": stats.unindexed}


def render(figures: dict[str, Any]) -> str:
    totals = figures["totals"]
    names = figures["names"]
    lines = [f"{names['zh']} ({names['en'] or figures['network']}): {totals['records']} records, "
             f"{totals['items']} items, {totals['libraries']} libraries", ""]
    if figures.get("unindexed"):
        lines[-1:] = [f"{figures['unindexed']} of the records were written by an ingest that stopped before its end and "
                      "are not found by searches yet: the next ingest or `federation rebuild-index` indexes them", ""]
    lines.append(f"{'tier':<16}{'libraries':>10}{'records':>10}{'items':>10}")
    for tier in figures["by_tier"]:
        lines.append(f"{tier['tier']:<16}{tier['libraries']:>10}{tier['records']:>10}{tier['items']:>10}  {tier['title_zh']}")
    lines.append("")
    lines.append(f"{'library':<16}{'tier':<14}{'records':>10}{'items':>10}  name")
    for library in figures["by_library"]:
        note = "  (not a library of the rule set)" if library.get("unknown") else ""
        lines.append(f"{library['library']:<16}{library['tier'] or '-':<14}{library['records']:>10}"
                     f"{library['items']:>10}  {library['name']}{note}")
    return "\n".join(lines)

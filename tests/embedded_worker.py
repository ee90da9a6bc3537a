"""A separate process working on an embedded store, for the durability and concurrency tests.

    python tests/embedded_worker.py load DIR BATCH_SIZE   upsert the small corpus in batches; after each
                                                          acknowledged batch print `acked N` (records so far)
    python tests/embedded_worker.py bulk DIR BATCH_SIZE   the same inside one bulk load (`EmbeddedStore.bulk_load`),
                                                          going on after each `acked` when a line comes on stdin
    python tests/embedded_worker.py read DIR SECONDS      search repeatedly; print `total N` per search
"""
from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from corpus import small_corpus  # noqa: E402
from indexer.embedded import EmbeddedStore  # noqa: E402
from indexer.indexes import load_index_table  # noqa: E402
from indexer.query import Clause, MatchAll, Relation, SearchRequest  # noqa: E402


async def load(directory: str, batch_size: int, bulk: bool = False) -> None:
    store = EmbeddedStore(directory, load_index_table())
    await store.open()
    if bulk:
        async with store.bulk_load():
            await upsert_in_batches(store, batch_size, wait=True)
    else:
        await upsert_in_batches(store, batch_size)
    await store.close()


async def upsert_in_batches(store: EmbeddedStore, batch_size: int, wait: bool = False) -> None:
    records = small_corpus()
    done = 0
    for start in range(0, len(records), batch_size):
        result = await store.upsert(records[start : start + batch_size])
        if result.failed:
            raise SystemExit(f"failed: {result.failed}")
        done += result.succeeded
        print(f"acked {done}", flush=True)
        if wait:
            sys.stdin.readline()


async def read(directory: str, seconds: float) -> None:
    store = EmbeddedStore(directory, load_index_table())
    await store.open()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        everything = await store.search(SearchRequest(MatchAll(), limit=0))
        # A phrase search in the same loop: postings must agree with the record table.
        await store.search(SearchRequest(Clause("title", Relation.PHRASE, "图书馆"), limit=5))
        print(f"total {everything.total}", flush=True)
    await store.close()


def main() -> None:
    mode, directory, number = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode in ("load", "bulk"):
        asyncio.run(load(directory, int(number), bulk=mode == "bulk"))
    elif mode == "read":
        asyncio.run(read(directory, float(number)))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()

"""Where a request's time goes: the query mix run in-process under cProfile, without the network.

    python -m benchmarks.profile --records 100000 [--protocol sru|z3950] [--requests 400] [--top 30]

SRU: each request goes through the SRU endpoint's handler (parameters, CQL parse and mapping,
store search and fetch, record rendering, response XML) with a request object built by
aiohttp's test utilities, so HTTP parsing and socket writes are left out. Z39.50: the backend's
search and present (query mapping, store, ISO 2709 rendering), without BER. Prints the CPU
milliseconds per request (process time of every thread, so other load on the machine does not
inflate it) and the functions with the most own time and the most cumulative time. cProfile
sees the event loop's thread only: SQLite work in the embedded store's reader threads shows as
the wait for its future, not function by function.
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

from aiohttp.test_utils import make_mocked_request

from benchmarks.queries import KINDS, load
from federation.app import SRU_ENDPOINT_KEY, create_app
from federation.rules import load_network
from federation.search import SearchService
from federation.stores import open_store
from federation.z3950service import UnionBackend
from indexer.indexes import load_index_table
from protocols.z3950 import pdu as P
from protocols.z3950.pqf import parse_pqf
from protocols.z3950.server import SessionInfo


async def profile(args: argparse.Namespace) -> str:
    workdir = (args.workdir / str(args.records)).resolve()
    network = load_network(workdir / "network-marc21.yaml")
    table = load_index_table()
    store = await open_store(network.store_settings({}, data_dir=str(workdir / "store")), table)
    queries = [query for query in load(args.mix or workdir / "mix.json") if not args.kind or query.kind in args.kind]
    try:
        service = SearchService(network, table, store)
        if args.cold:
            store.decoded_records.capacity = 0
            store.results.capacity = 0
        if args.protocol == "sru":
            app = create_app(service)
            endpoint = app[SRU_ENDPOINT_KEY]
            if args.cold:
                endpoint.rendered.capacity = 0

            # aiohttp's mocked requests are costly to build: build them before profiling.
            requests = {}
            for query in queries:
                path = "/sru/union?" + urlencode({"version": "1.2", "operation": "searchRetrieve", "query": query.cql,
                                                  "maximumRecords": "10", "recordSchema": "marcxml"})
                requests[query] = make_mocked_request("GET", path, match_info={"database": "union"}, app=app)

            async def one(query) -> None:
                response = await endpoint.handle(requests[query])
                if b"info:srw/diagnostic/1/" in response.body:
                    raise RuntimeError(f"{query.cql}: {response.body[-600:]!r}")
        else:
            backend = UnionBackend(service)
            if args.cold:
                backend.rendered.capacity = 0
            session = SessionInfo(peer="profile")

            async def one(query) -> None:
                result_set = await backend.search(["union"], parse_pqf(query.pqf_ours), {}, session)
                if result_set.size:
                    await backend.present(result_set, 1, min(result_set.size, 10), P.RecordSyntax.USMARC.value, "F",
                                          session)

        for query in queries[:20]:            # warm caches and connections
            await one(query)
        profiler = cProfile.Profile()
        cpu_started, wall_started = time.process_time(), time.perf_counter()
        if not args.no_profiler:
            profiler.enable()
        for n in range(args.requests):
            await one(queries[n % len(queries)])
        profiler.disable()
        cpu = time.process_time() - cpu_started
        wall = time.perf_counter() - wall_started
    finally:
        await store.close()
    out = io.StringIO()
    how = "without the profiler" if args.no_profiler else "under cProfile, which adds overhead"
    caches = ", record caches off" if args.cold else ""
    out.write(f"{args.protocol}: {args.requests} requests, {cpu / args.requests * 1000:.2f} CPU ms/request "
              f"({wall / args.requests * 1000:.2f} wall ms/request; {how}{caches})\n")
    if args.no_profiler:
        return out.getvalue()
    print_profile(profiler, out, args.top)
    return out.getvalue()


def print_profile(profiler: cProfile.Profile, out: io.StringIO, top: int) -> None:
    """The functions with the most own time, then the most cumulative time."""
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=Path("var/bench"))
    parser.add_argument("--protocol", choices=("sru", "z3950"), default="sru")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--cold", action="store_true",
                        help="no result, decoded-record or rendered-record cache: every query is evaluated and every record "
                             "decoded and rendered (the load benchmark repeats its 320 queries, so nearly every "
                             "answer it asks for is cached)")
    parser.add_argument("--mix", type=Path, help="the queries (default <workdir>/<records>/mix.json)")
    parser.add_argument("--kind", action="append", choices=KINDS,
                        help="only queries of this kind (repeatable); default: the whole mix")
    parser.add_argument("--no-profiler", action="store_true", help="measure CPU time only, without cProfile's overhead")
    print(asyncio.run(profile(parser.parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

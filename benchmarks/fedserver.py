"""An SRU server with the live `federated` database, for the federation-overhead benchmark.
`federation serve` registers the same database, but always with the union index as one of its
sources; the benchmark federates the remote target alone (`--remote-only`), so that the
federated answer and zebrasrv's direct one carry the same records:

    python -m benchmarks.fedserver --config NETWORK.yaml --data-dir DIR [--remote-only]

Prints `SRU: http://HOST:PORT/sru` once listening; stops on SIGTERM/SIGINT.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from aiohttp import web

from federation.app import create_app
from federation.federated import FederatedSearch, FederationSettings
from federation.observability import observability
from federation.rules import load_network
from federation.search import SearchService
from federation.stores import open_store
from indexer.indexes import load_index_table


async def serve(args: argparse.Namespace) -> None:
    network = load_network(args.config)
    table = load_index_table()
    store = await open_store(network.store_settings({}, data_dir=args.data_dir), table)
    service = SearchService(network, table, store)
    federated = FederatedSearch(network, table, store,
                                settings=FederationSettings(include_local=not args.remote_only))
    federated.register(service)
    runner = web.AppRunner(create_app(service, extensions=[observability(service)]), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # aiohttp keeps the bound socket only here
    print(f"SRU: http://127.0.0.1:{port}/sru", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await federated.aclose()
        await store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fedserver")
    parser.add_argument("--config", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--remote-only", action="store_true", help="federate the targets only, not the union index")
    asyncio.run(serve(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

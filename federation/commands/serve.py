"""`federation serve`: the SRU server (and the Z39.50 server when that part is installed) over
the network's index store, with the `federated` database (union catalogue + remote targets).

    federation serve --config config/networks/guangrao.yaml [--data-dir var/guangrao]
                     [--store embedded|elasticsearch] [--http 127.0.0.1:8080] [--z3950 127.0.0.1:2100]
                     [--demo-banner] [--log-format text|json]

Port 0 picks a free port; the banner prints the addresses actually bound. SIGINT / SIGTERM stop
the server cleanly: no new connections, in-flight requests finish, the store is closed.

Operations (federation.observability): `/metrics` (Prometheus), `/healthz`, `/readyz` on the SRU
address; every HTTP request gets an `X-Request-ID` and one access-log line (a JSON object per
line with `--log-format json`); Z39.50 operations are counted and timed in the same metrics.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from urllib.parse import quote

from aiohttp import web

from federation.app import create_app
from federation.federated import FederatedSearch
from federation.observability import InstrumentedBackend, Metrics, configure_json_logging, observability
from federation.rules import ConfigError, load_network
from federation.search import SearchService
from federation.stores import open_store
from indexer.indexes import IndexTableError, load_index_table
from indexer.store import StoreError

NAME = "serve"
HELP = "serve the union catalogue over SRU (and Z39.50)"

EXAMPLE_QUERIES = (
    ("1.2", "dc.title=图书馆"),
    ("2.0", 'dc.subject any "图书馆学 蔬菜" sortBy dc.date/sort.descending'),
    ("1.1", "net.library=%(hub)s and net.availability=available"),
)


def address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]"), int(port)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE", help="the network rule set (YAML)")
    parser.add_argument("--data-dir", metavar="DIR", help="the embedded store's directory (as for ingest)")
    parser.add_argument("--store", choices=("embedded", "elasticsearch"), help="override the rule set's store kind")
    parser.add_argument("--http", type=address, default=("127.0.0.1", 8080), metavar="HOST:PORT",
                        help="SRU address (default 127.0.0.1:8080)")
    parser.add_argument("--z3950", type=address, default=("127.0.0.1", 2100), metavar="HOST:PORT",
                        help="Z39.50 address (default 127.0.0.1:2100)")
    parser.add_argument("--demo-banner", action="store_true", help="also print example queries to try")
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="log lines as text (default) or as one JSON object per line with the request id")


def run(args: argparse.Namespace) -> int:
    if args.log_format == "json":
        configure_json_logging(logging.INFO)
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
        return asyncio.run(_serve(args, network, table, settings))
    except StoreError as error:
        print(f"error: store: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: cannot listen: {error}", file=sys.stderr)
        return 1


async def _serve(args: argparse.Namespace, network, table, settings) -> int:
    store = await open_store(settings, table)
    runner: web.AppRunner | None = None
    z3950 = None
    federated = None
    try:
        service = SearchService(network, table, store)
        # The `federated` database: the union index plus the rule set's enabled remote targets.
        federated = FederatedSearch(network, table, store, environ=os.environ)
        federated.register(service)
        metrics = Metrics()
        # The observability middleware writes the access log (with request ids): aiohttp's is off.
        runner = web.AppRunner(create_app(service, extensions=[observability(service, metrics)]), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, args.http[0], args.http[1])
        await site.start()
        http_host, http_port = _bound(site, args.http)
        z3950, z3950_address = await _start_z3950(service, args.z3950, metrics)
        _banner(network, http_host, http_port, z3950_address, args.demo_banner)
        await _wait_for_stop()
        return 0
    finally:
        if z3950 is not None:
            z3950.close()
            await z3950.wait_closed()
        if runner is not None:
            await runner.cleanup()
        if federated is not None:
            await federated.aclose()
        await store.close()


def _bound(site: web.TCPSite, requested: tuple[str, int]) -> tuple[str, int]:
    server = site._server  # aiohttp keeps the asyncio server here; the only way to learn port 0's choice
    if server is not None and server.sockets:
        host, port = server.sockets[0].getsockname()[:2]
        return host, port
    return requested


async def _start_z3950(service: SearchService, requested: tuple[str, int], metrics: Metrics):
    """Start the Z39.50 server if `federation.z3950service` is part of this installation."""
    try:
        from federation.z3950service import start_z3950_server
    except ImportError:
        return None, None
    server = await start_z3950_server(service, requested[0], requested[1])
    # Sessions take the backend when they start; no connection can have been accepted yet.
    server.backend = InstrumentedBackend(server.backend, metrics)
    sockets = getattr(server, "sockets", None) or []
    if sockets:
        return server, sockets[0].getsockname()[:2]
    return server, requested


def _banner(network, host: str, port: int, z3950_address, examples: bool) -> None:
    base = f"http://{host}:{port}/sru"
    lines = [f"{network.names.zh} ({network.id})", f"SRU:    {base}/union"]
    targets = [t.code for t in network.targets if t.enabled]
    lines.append(f"        {base}/federated  (union catalogue + {len(targets)} remote target(s)"
                 + (f": {', '.join(targets)})" if targets else ")"))
    if z3950_address is not None:
        lines.append(f"Z39.50: tcp:{z3950_address[0]}:{z3950_address[1]}/union")
    else:
        lines.append("Z39.50: not available in this installation")
    if examples:
        lines.append("Try:")
        for version, query in EXAMPLE_QUERIES:
            query = query % {"hub": network.hub}
            lines.append(f"  curl '{base}/union?version={version}&operation=searchRetrieve"
                         f"&query={quote(query, safe='=')}&maximumRecords=3'")
        if z3950_address is not None:
            lines.append(f"  yaz-client tcp:{z3950_address[0]}:{z3950_address[1]}/union  (then: f @attr 1=4 图书馆)")
    print("\n".join(lines), flush=True)


async def _wait_for_stop() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)

"""`federation serve`: the SRU server (and the Z39.50 server when that part is installed) over
the network's index store, with the `federated` database (union catalogue + remote targets).

    federation serve --config config/networks/guangrao.yaml [--data-dir var/guangrao]
                     [--store embedded|elasticsearch] [--http 127.0.0.1:8080] [--z3950 127.0.0.1:2100]
                     [--demo-banner] [--log-format text|json] [--workers N] [--result-cache N]

Port 0 picks a free port; the banner prints the addresses actually bound. SIGINT / SIGTERM stop
the server cleanly: no new connections, in-flight requests finish, the store is closed.

`--workers N` runs N server processes on the same SRU and Z39.50 ports (SO_REUSEPORT: the
kernel spreads connections over them, one core each); each opens the store itself (the embedded
store allows readers in several processes and one writer at a time). SIGTERM/SIGINT to the parent
stops every worker the same clean way; if a worker dies, the others are stopped too.

Operations (federation.observability): `/metrics` (Prometheus), `/healthz`, `/readyz` on the SRU
address; every HTTP request gets an `X-Request-ID` and one access-log line (a JSON object per
line with `--log-format json`); Z39.50 operations are counted and timed in the same metrics.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from typing import Sequence
from urllib.parse import quote

from aiohttp import web

from federation.app import create_app
from federation.observability import (
    InstrumentedBackend,
    Metrics,
    ObservedFederatedSearch,
    configure_json_logging,
    observability,
)
from federation.rules import ConfigError, load_network
from federation.search import SearchService
from federation.stores import open_store
from indexer.indexes import IndexTableError, load_index_table
from indexer.resultcache import DEFAULT_RESULT_CACHE
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
    parser.add_argument("--workers", type=_positive, default=1, metavar="N",
                        help="server processes sharing the SRU port (default 1)")
    parser.add_argument("--result-cache", type=_count, default=DEFAULT_RESULT_CACHE, metavar="N",
                        help=f"embedded store: searches whose answers are kept for repeats and next pages "
                             f"(default {DEFAULT_RESULT_CACHE}; 0: none)")
    # Set by the parent on its workers.
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-z3950", action="store_true", help=argparse.SUPPRESS)


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number")
    return int(text)


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of at least 1")
    return int(text)


def run(args: argparse.Namespace) -> int:
    if args.log_format == "json":
        configure_json_logging(logging.INFO)
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        network = load_network(args.config)
        table = load_index_table()
        settings = replace(network.store_settings(os.environ, override_kind=args.store, data_dir=args.data_dir),
                           result_cache=args.result_cache)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    except (IndexTableError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        if args.workers > 1:
            return _supervise(args, network)
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
        metrics = Metrics()
        federated = ObservedFederatedSearch(network, table, store, environ=os.environ, metrics=metrics)
        federated.register(service)
        # The observability middleware writes the access log (with request ids): aiohttp's is off.
        runner = web.AppRunner(create_app(service, extensions=[observability(service, metrics)]), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, args.http[0], args.http[1], reuse_port=args.reuse_port or None)
        await site.start()
        http_host, http_port = _bound(site, args.http)
        z3950, z3950_address = (None, None) if args.no_z3950 else await _start_z3950(
            service, args.z3950, metrics, reuse_port=args.reuse_port)
        _banner(network, http_host, http_port, z3950_address, args.demo_banner, z3950_off=args.no_z3950)
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


async def _start_z3950(service: SearchService, requested: tuple[str, int], metrics: Metrics,
                       reuse_port: bool = False):
    """Start the Z39.50 server if `federation.z3950service` is part of this installation."""
    try:
        from federation.z3950service import start_z3950_server
    except ImportError:
        return None, None
    server = await start_z3950_server(service, requested[0], requested[1], reuse_port=reuse_port)
    # Sessions take the backend when they start; no connection can have been accepted yet.
    server.backend = InstrumentedBackend(server.backend, metrics)
    sockets = getattr(server, "sockets", None) or []
    if sockets:
        return server, sockets[0].getsockname()[:2]
    return server, requested


def _banner(network, host: str, port: int, z3950_address, examples: bool, z3950_off: bool = False,
            workers: Sequence[int] = ()) -> None:
    base = f"http://{host}:{port}/sru"
    lines = [f"{network.names.zh} ({network.id})", f"SRU:    {base}/union"]
    targets = [t.code for t in network.targets if t.enabled]
    lines.append(f"        {base}/federated  (union catalogue + {len(targets)} remote target(s)"
                 + (f": {', '.join(targets)})" if targets else ")"))
    if z3950_address is not None:
        lines.append(f"Z39.50: tcp:{z3950_address[0]}:{z3950_address[1]}/union")
    elif z3950_off:
        lines.append("Z39.50: served by the first worker")
    else:
        lines.append("Z39.50: not available in this installation")
    if workers:
        lines.append(f"Workers: {len(workers)} processes ({', '.join(map(str, workers))}) sharing the SRU port")
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


# -- several worker processes -------------------------------------------------------------------
WORKER_START_TIMEOUT = 120.0


def _reserve_port(host: str, port: int) -> socket.socket:
    """A bound (not listening) SO_REUSEPORT socket holding the SRU port while the workers bind
    theirs; for port 0 it also picks the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((host, port))
    return holder


def _worker_command(args: argparse.Namespace, http: tuple[str, int], z3950: tuple[str, int]) -> list[str]:
    command = [sys.executable, "-m", "federation", "serve", "--config", str(args.config),
               "--http", f"{http[0]}:{http[1]}", "--z3950", f"{z3950[0]}:{z3950[1]}",
               "--log-format", args.log_format, "--reuse-port", "--result-cache", str(args.result_cache)]
    if args.data_dir:
        command += ["--data-dir", str(args.data_dir)]
    if args.store:
        command += ["--store", args.store]
    return command


def _read_banner(process: subprocess.Popen, deadline: float) -> list[str]:
    """A worker's banner, up to its Z39.50 line."""
    assert process.stdout is not None
    lines: list[str] = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("Z39.50:"):
            return lines
    raise RuntimeError(f"worker {process.pid} did not start (exit status {process.poll()}): " + " | ".join(lines))


def _supervise(args: argparse.Namespace, network) -> int:
    stopping: list[int] = []

    def stop(signum, frame) -> None:
        stopping.append(signum)

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGINT, signal.SIGTERM)}
    holder = _reserve_port(*args.http)
    http = (args.http[0], holder.getsockname()[1])
    z3950_holder = _reserve_port(*args.z3950)   # every worker serves Z39.50 too, on one port
    z3950 = (args.z3950[0], z3950_holder.getsockname()[1])
    workers: list[subprocess.Popen] = []
    try:
        deadline = time.monotonic() + WORKER_START_TIMEOUT
        z3950_address = None
        for number in range(args.workers):
            process = subprocess.Popen(_worker_command(args, http, z3950), stdout=subprocess.PIPE, text=True)
            workers.append(process)
            try:
                banner = _read_banner(process, deadline)
            except RuntimeError as error:
                print(f"error: {error}", file=sys.stderr)
                return 1
            if number == 0:
                found = re.search(r"Z39\.50: tcp:(.+):(\d+)/", banner[-1])
                z3950_address = (found.group(1), int(found.group(2))) if found else None
            process.stdout.close()
        holder.close()
        z3950_holder.close()
        _banner(network, http[0], http[1], z3950_address, args.demo_banner, workers=[w.pid for w in workers])
        while not stopping:
            failed = next((w for w in workers if w.poll() is not None), None)
            if failed is not None:
                print(f"error: worker {failed.pid} exited with status {failed.returncode}; stopping the others",
                      file=sys.stderr)
                return 1
            time.sleep(0.2)
        return 0 if all(status == 0 for status in _stop_workers(workers)) else 1
    finally:
        holder.close()
        z3950_holder.close()
        _stop_workers(workers)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _stop_workers(workers: Sequence[subprocess.Popen]) -> list[int]:
    """SIGTERM to every running worker (each finishes its in-flight requests), then their statuses."""
    for process in workers:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    statuses = []
    for process in workers:
        try:
            statuses.append(process.wait(timeout=60))
        except subprocess.TimeoutExpired:
            process.kill()
            statuses.append(process.wait())
    return statuses

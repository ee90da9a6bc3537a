"""Our Z39.50 server over a real catalogue, for tests that drive it with real clients.

`Z3950ThreadServer(catalogue)` serves the embedded store built by `sru_support.build_catalogue`
(the Guangrao demo exports plus real CNMARC and MARC21 fixtures, through the ingest pipeline)
from a thread with its own event loop, so blocking clients (yaz-client, zoomsh) can be run
with subprocess while it answers. `yaz_client` and `zoomsh` run those clients non-interactively.
"""
from __future__ import annotations

import asyncio
import contextlib
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Sequence

from federation.rules import load_network
from federation.search import SearchService
from federation.z3950service import start_z3950_server
from indexer.embedded import EmbeddedStore
from indexer.indexes import load_index_table
from indexer.query import Clause, ItemMatch, Relation, ScanRequest
from protocols.z3950.server import ServerLimits, Z3950Server
from sru_support import NETWORK, Catalogue


async def open_catalogue_store(catalogue: Catalogue) -> EmbeddedStore:
    """The catalogue's embedded store, opened.

    Accommodates a bug of the embedded store as of this writing (reported to its owner): a scan
    over every record (MatchAll scope) on a reader connection that has not yet evaluated a
    scoped query fails with "no such table: temp.hits". One reader thread, warmed with one
    scoped scan, makes every later scan work; remove this once the store creates the table
    itself.
    """
    store = EmbeddedStore(catalogue.store_dir, load_index_table(), reader_threads=1)
    await store.open()
    await store.scan(ScanRequest("title", "", count=1, query=ItemMatch(Clause("library", Relation.EXACT, "GR"))))
    return store


@dataclass
class Z3950ThreadServer:
    catalogue: Catalogue
    limits: ServerLimits = field(default_factory=ServerLimits)
    # Adjusts the loaded network before the service is built (e.g. to add auth tokens).
    network_hook: Callable[[Any], Any] | None = None
    port: int = 0

    def __post_init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.server: Z3950Server | None = None
        self.thread = threading.Thread(target=self._run, name="z3950-server", daemon=True)

    def __enter__(self) -> "Z3950ThreadServer":
        self.thread.start()
        if not self.ready.wait(60):
            raise RuntimeError("the Z39.50 server did not start")
        if self._error is not None:
            raise RuntimeError("the Z39.50 server failed to start") from self._error
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(30)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())
        self.loop.close()

    async def _main(self) -> None:
        store = None
        try:
            network = load_network(NETWORK)
            if self.network_hook is not None:
                network = self.network_hook(network)
            table = load_index_table()
            store = await open_catalogue_store(self.catalogue)
            service = SearchService(network, table, store)
            self.server = await start_z3950_server(service, "127.0.0.1", 0, limits=self.limits)
            self.port = self.server.port
            self._stop = asyncio.Event()
        except BaseException as error:
            self._error = error
            self.ready.set()
            if store is not None:
                await store.close()
            raise
        self.ready.set()
        try:
            await self._stop.wait()
        finally:
            self.server.close()
            await self.server.wait_closed()
            await store.close()

    def address(self, database: str = "union") -> str:
        return f"tcp:127.0.0.1:{self.port}/{database}"


def yaz_client(server: Z3950ThreadServer, commands: Sequence[str], *, database: str = "union",
               charset: str | None = "UTF-8", marc_file: Path | None = None, user: str | None = None,
               timeout: float = 30) -> str:
    """Run yaz-client with commands on stdin; returns its output (it always exits 0)."""
    lines = []
    args = ["yaz-client"]
    if marc_file is not None:
        args += ["-m", str(marc_file)]
    if user is not None:
        # -u only applies when the address is on the command line.
        args += ["-u", user, server.address(database)]
    else:
        if charset:
            lines.append(f"charset {charset}")
        lines.append(f"open {server.address(database)}")
    lines += list(commands) + ["quit"]
    done = subprocess.run(args, input="\n".join(lines) + "\n", capture_output=True, text=True, errors="replace", timeout=timeout)
    return done.stdout + done.stderr


def zoomsh(server: Z3950ThreadServer, commands: Sequence[str], *, database: str = "union",
           settings: Sequence[str] = ("set charset UTF-8",), timeout: float = 30) -> subprocess.CompletedProcess:
    args = ["zoomsh", "-e", *settings, f"connect 127.0.0.1:{server.port}/{database}", *commands, "quit"]
    return subprocess.run(args, capture_output=True, text=True, errors="replace", timeout=timeout)


def marcdump_xml(path: Path, *, source_charset: str | None = None) -> bytes:
    """yaz-marcdump's MARCXML of an ISO 2709 file (fails the test on a malformed record);
    with `source_charset` the records are converted from it to UTF-8 by yaz-marcdump."""
    convert = ["-f", source_charset, "-t", "UTF-8"] if source_charset else []
    done = subprocess.run(["yaz-marcdump", *convert, "-i", "marc", "-o", "marcxml", str(path)],
                          capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


@contextlib.asynccontextmanager
async def running_server(catalogue: Catalogue, limits: ServerLimits = ServerLimits()) -> AsyncIterator[Z3950Server]:
    """Our server on a free port in the current event loop (for async tests)."""
    table = load_index_table()
    store = await open_catalogue_store(catalogue)
    try:
        service = SearchService(load_network(NETWORK), table, store)
        server = await start_z3950_server(service, "127.0.0.1", 0, limits=limits)
        try:
            yield server
        finally:
            server.close()
            await server.wait_closed()
    finally:
        await store.close()

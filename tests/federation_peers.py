"""Peers for the federation tests: zebrasrv answering Z39.50 and SRU on one port (a YAZ GFS
configuration with CQL-to-RPN mapping and MARCXML retrieval), plus misbehaving targets built
from plain asyncio servers: one that accepts and never answers, one that sends garbage, one
that answers slowly (a delaying proxy in front of a real peer).
"""
from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Sequence

from peers import ZEBRA_CONFIG, ZEBRA_TAB, Peer, _run, free_port

PQF_PROPERTIES = Path("/usr/share/yaz/etc/pqf.properties")

GFS_CONFIG = """\
<yazgfs>
  <listen id="public">tcp:127.0.0.1:{port}</listen>
  <server id="zebra" listenref="public">
    <directory>{directory}</directory>
    <config>zebra.cfg</config>
    <cql2rpn>pqf.properties</cql2rpn>
    <retrievalinfo>
      <retrieval syntax="usmarc" name="F"/>
      <retrieval syntax="usmarc"/>
      <retrieval syntax="xml" name="marcxml" identifier="info:srw/schema/1/marcxml-v1.1">
        <backend syntax="usmarc" name="F">
          <marc inputformat="marc" outputformat="marcxml" inputcharset="utf-8"/>
        </backend>
      </retrieval>
    </retrievalinfo>
  </server>
</yazgfs>
"""


@dataclass(frozen=True)
class ZebraPeer(Peer):
    database: str = "Default"

    @property
    def z3950_url(self) -> str:
        return f"tcp:{self.host}:{self.port}/{self.database}"

    @property
    def sru_url(self) -> str:
        return f"http://{self.host}:{self.port}/{self.database}"


@contextlib.asynccontextmanager
async def start_zebra_sru(workdir: Path, marc_files: Sequence[Path]) -> AsyncIterator[ZebraPeer]:
    """zebrasrv over the MARC21 (UTF-8 ISO 2709) files, on Z39.50 and SRU (database `Default`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("reg", "shadow", "lock", "tmp"):
        (workdir / name).mkdir(exist_ok=True)
    config = workdir / "zebra.cfg"
    # Queries and records are UTF-8. Without `encoding` in the profile Zebra takes the records for
    # ISO-8859-1 and, under a UTF-8 negotiation, converts them a second time.
    config.write_text(ZEBRA_CONFIG.format(tab=ZEBRA_TAB) + "encoding: utf-8\n", encoding="ascii")
    profile = (ZEBRA_TAB / "usmarc.abs").read_text(encoding="latin-1")
    (workdir / "usmarc.abs").write_text("encoding utf-8\n" + profile, encoding="latin-1")
    shutil.copy(PQF_PROPERTIES, workdir / "pqf.properties")
    for command in (
        ["zebraidx", "-c", str(config), "-n", "update", *map(str, marc_files)],
        ["zebraidx", "-c", str(config), "commit"],
    ):
        process = await asyncio.create_subprocess_exec(
            *command, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        _, errors = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {errors.decode(errors='replace')[-2000:]}")
    port = free_port()
    gfs = workdir / "gfs.xml"
    gfs.write_text(GFS_CONFIG.format(port=port, directory=workdir), encoding="utf-8")
    command = ["zebrasrv", "-f", str(gfs), "-l", str(workdir / "zebrasrv.log")]
    async with _run(command, workdir, port) as peer:
        yield ZebraPeer(peer.host, peer.port, peer.workdir)


@dataclass
class FakePeer:
    host: str
    port: int
    connections: int = 0
    active: int = 0               # connections open right now
    most_active: int = 0          # the most that were open at once

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@contextlib.asynccontextmanager
async def start_silent_peer() -> AsyncIterator[FakePeer]:
    """Accepts connections, reads whatever comes, never answers."""
    peer = FakePeer("127.0.0.1", 0)
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer.connections += 1
        writers.append(writer)
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while await reader.read(65536):
                pass

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    peer.port = server.sockets[0].getsockname()[1]
    try:
        yield peer
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


GARBAGE = b"\x8f\xff\x00garbage that is neither BER nor HTTP\r\n\r\n" * 4


@contextlib.asynccontextmanager
async def start_garbage_peer() -> AsyncIterator[FakePeer]:
    """Answers anything with bytes that are neither a Z39.50 PDU nor an HTTP response, then closes."""
    peer = FakePeer("127.0.0.1", 0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer.connections += 1
        with contextlib.suppress(ConnectionError):
            await reader.read(65536)
            writer.write(GARBAGE)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    peer.port = server.sockets[0].getsockname()[1]
    try:
        yield peer
    finally:
        server.close()
        await server.wait_closed()


@contextlib.asynccontextmanager
async def start_slow_proxy(upstream_host: str, upstream_port: int, delay: float) -> AsyncIterator[FakePeer]:
    """Forwards to a real peer, holding every chunk of the peer's answers back for `delay` seconds."""
    peer = FakePeer("127.0.0.1", 0)
    tasks: set[asyncio.Task] = set()

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pause: float) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if pause:
                    await asyncio.sleep(pause)
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer.connections += 1
        peer.active += 1
        peer.most_active = max(peer.most_active, peer.active)
        up_reader, up_writer = await asyncio.open_connection(upstream_host, upstream_port)
        try:
            await asyncio.gather(pipe(reader, up_writer, 0), pipe(up_reader, writer, delay))
        finally:
            peer.active -= 1

    async def tracked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(handle(reader, writer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await task

    server = await asyncio.start_server(tracked, "127.0.0.1", 0)
    peer.port = server.sockets[0].getsockname()[1]
    try:
        yield peer
    finally:
        for task in list(tasks):
            task.cancel()
        server.close()
        await server.wait_closed()


def refused_port() -> int:
    """A loopback port nothing listens on (bound and released)."""
    return free_port()

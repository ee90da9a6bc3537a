"""Real Z39.50 targets for tests: Debian's `yaz-ztest` and `zebrasrv` (idzebra-2.0) on free
loopback ports, started in a temporary directory and stopped afterwards.

    async with start_yaz_ztest(tmp_path) as peer: ...   # peer.host, peer.port
    async with start_zebra(tmp_path, [marc_file]) as peer: ...
"""
from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Sequence

ZEBRA_TAB = Path("/usr/share/idzebra-2.0/tab")


@dataclass(frozen=True)
class Peer:
    host: str
    port: int
    workdir: Path

    @property
    def address(self) -> str:
        return f"tcp:{self.host}:{self.port}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _wait_listening(host: str, port: int, process: asyncio.subprocess.Process, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if process.returncode is not None:
            raise RuntimeError(f"the server exited with status {process.returncode} before listening")
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout} s")


@contextlib.asynccontextmanager
async def _run(command: Sequence[str], workdir: Path, port: int) -> AsyncIterator[Peer]:
    # The port is picked free just before the start; on the rare race another attempt follows.
    process = await asyncio.create_subprocess_exec(
        *command, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        await _wait_listening("127.0.0.1", port, process)
        yield Peer("127.0.0.1", port, workdir)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()


@contextlib.asynccontextmanager
async def start_yaz_ztest(workdir: Path) -> AsyncIterator[Peer]:
    """YAZ's test target. Its scan reads `dummy-words` from the working directory."""
    workdir.mkdir(parents=True, exist_ok=True)
    words = sorted({"a", "access", "action", "computer", "library", "science", "zebra", "图书馆"})
    (workdir / "dummy-words").write_text("\n".join(words) + "\n", encoding="utf-8")
    port = free_port()
    command = [shutil.which("yaz-ztest") or "yaz-ztest", "-l", str(workdir / "ztest.log"), f"tcp:127.0.0.1:{port}"]
    async with _run(command, workdir, port) as peer:
        yield peer


ZEBRA_CONFIG = """\
profilePath: .:{tab}
attset: bib1.att
attset: explain.att
recordType: grs.marc.usmarc
register: reg:200M
shadow: shadow:200M
lockDir: lock
keyTmpDir: tmp
perm.anonymous: rw
"""


@contextlib.asynccontextmanager
async def start_zebra(workdir: Path, marc_files: Sequence[Path]) -> AsyncIterator[Peer]:
    """zebrasrv serving the MARC21 (ISO 2709) files given, indexed with Zebra's USMARC profile
    (database `Default`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    for name in ("reg", "shadow", "lock", "tmp"):
        (workdir / name).mkdir(exist_ok=True)
    config = workdir / "zebra.cfg"
    config.write_text(ZEBRA_CONFIG.format(tab=ZEBRA_TAB), encoding="ascii")
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
    command = ["zebrasrv", "-c", str(config), "-l", str(workdir / "zebrasrv.log"), f"tcp:127.0.0.1:{port}"]
    async with _run(command, workdir, port) as peer:
        yield peer

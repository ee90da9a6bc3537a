"""zebrasrv (Debian idzebra-2.0) loaded with the benchmark's MARC21 files, answering Z39.50 and
SRU on one port, configured as a library would for this catalogue:

- `grs.marc` with Zebra's own usmarc.abs profile (title 245, personal/corporate authors, 008
  dates, imprint; every field also in `any`), plus the access points this benchmark's queries
  use and that profile lacks: ISBN (020$a, Bib-1 7), subjects (6XX$a, Bib-1 21), added authors
  (700$a, Bib-1 1003) and the holding library (852$b, Bib-1 56 Code-institution). (The
  `melm` lines of marc21.abs index nothing under `grs.marc`: 20 dictionary entries for 3,000
  records.)
- ICU word and phrase indexes (`icu.idx`): line-break tokenization cuts Chinese text into
  single characters, so Chinese title words are found (the default `string.chr` index would
  take a whole Chinese title for one word and find nothing, which would flatter Zebra);
- UTF-8 records and queries; SRU through the YAZ GFS with `pqf.properties` extended by
  `net.library` (1=56) and `dc.date` as the numeric 008 year (1=30 4=109).
"""
from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from benchmarks.measure import Measured, pinned, run_measured

ZEBRA_TAB = Path("/usr/share/idzebra-2.0/tab")
PQF_PROPERTIES = Path("/usr/share/yaz/etc/pqf.properties")
LIBRARY_ATTRIBUTE = 56      # Bib-1 Code-institution: where Zebra indexes 852$b here
NET_CONTEXT_SET = "urn:union-federation:cql:network-1.0"

ZEBRA_CFG = """\
profilePath: .:{tab}
attset: bib1.att
attset: explain.att
recordType: grs.marc.usmarcbench
index: bench.idx
encoding: utf-8
register: reg:4G
shadow: shadow:4G
lockDir: lock
keyTmpDir: tmp
memMax: 256
perm.anonymous: r
"""

# ICU indexes cannot answer relations (diagnostic 117 for >=): the publication year (008/07-10)
# goes to a numeric register too, as Zebra's default.idx defines it.
NUMERIC_INDEX = """
index n
completeness 0
charmap numeric.chr
"""
DATE_ELEMENT = "elm 008\t\t\tother\t\tDate:w:range(data,7,10)"
NUMERIC_DATE_ELEMENT = "elm 008\t\t\tother\t\tDate:w:range(data,7,10),Date:n:range(data,7,4)"

PROFILE_ADDITIONS = """
# A subfield is indexed only under declared parents (the tag, then the tag with indicators).
elm 020\t\t\tISBN\t-
elm 020/?\t\t\tISBN\t-
elm 020/?/a\t\t\tISBN\tISBN:w
elm 600\t\t\tSubject-heading\t-
elm 600/?\t\t\tSubject-heading\t-
elm 600/?/a\t\t\tSubject-heading\tSubject-heading:w,Subject-heading:p
elm 650\t\t\tSubject-heading\t-
elm 650/?\t\t\tSubject-heading\t-
elm 650/?/a\t\t\tSubject-heading\tSubject-heading:w,Subject-heading:p
elm 651\t\t\tSubject-heading\t-
elm 651/?\t\t\tSubject-heading\t-
elm 651/?/a\t\t\tSubject-heading\tSubject-heading:w,Subject-heading:p
elm 700\t\t\tAuthor\t-
elm 700/?\t\t\tAuthor\t-
elm 700/?/a\t\t\tAuthor\tAuthor:w,Author:p
elm 852\t\t\tCode-institution\t-
elm 852/?\t\t\tCode-institution\t-
elm 852/?/b\t\t\tCode-institution\tCode-institution:w
"""

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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(workdir: Path) -> Path:
    """A fresh Zebra directory; returns its zebra.cfg."""
    if workdir.exists():
        shutil.rmtree(workdir)
    for name in ("reg", "shadow", "lock", "tmp"):
        (workdir / name).mkdir(parents=True)
    config = workdir / "zebra.cfg"
    config.write_text(ZEBRA_CFG.format(tab=ZEBRA_TAB), encoding="ascii")
    (workdir / "bench.idx").write_text((ZEBRA_TAB / "icu.idx").read_text(encoding="latin-1") + NUMERIC_INDEX,
                                       encoding="latin-1")
    profile = (ZEBRA_TAB / "usmarc.abs").read_text(encoding="latin-1")
    if DATE_ELEMENT not in profile:
        raise RuntimeError(f"{ZEBRA_TAB / 'usmarc.abs'}: no line {DATE_ELEMENT!r} to extend")
    profile = profile.replace(DATE_ELEMENT, NUMERIC_DATE_ELEMENT)
    (workdir / "usmarcbench.abs").write_text("encoding utf-8\n" + profile.replace("name usmarc", "name usmarcbench")
                                             + PROFILE_ADDITIONS, encoding="latin-1")
    properties = PQF_PROPERTIES.read_text(encoding="latin-1")
    properties = re.sub(r"(?m)^index\.dc\.date\s*=.*$", "index.dc.date\t\t\t\t= 1=30 4=109", properties)
    properties += f"\nset.net\t\t\t\t\t= {NET_CONTEXT_SET}\nindex.net.library\t\t\t= 1={LIBRARY_ATTRIBUTE}\n"
    (workdir / "pqf.properties").write_text(properties, encoding="latin-1")
    return config


def index(workdir: Path, files: Sequence[Path], *, cpus: str | None) -> list[Measured]:
    """zebraidx update + commit, each measured."""
    workdir = workdir.resolve()
    config = prepare(workdir)
    return [
        run_measured(["zebraidx", "-c", str(config), "-n", "update", *(str(f.resolve()) for f in files)],
                     cpus=cpus, cwd=workdir),
        run_measured(["zebraidx", "-c", str(config), "commit"], cpus=cpus, cwd=workdir),
    ]


@dataclass
class ZebraServer:
    workdir: Path
    cpus: str | None = None
    port: int = 0
    process: subprocess.Popen | None = None

    def __enter__(self) -> "ZebraServer":
        self.port = free_port()
        gfs = self.workdir / "gfs.xml"
        gfs.write_text(GFS_CONFIG.format(port=self.port, directory=self.workdir), encoding="utf-8")
        self.process = subprocess.Popen(
            pinned(["zebrasrv", "-f", str(gfs), "-l", str(self.workdir / "zebrasrv.log")], self.cpus),
            cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening("127.0.0.1", self.port, self.process)
        return self

    def __exit__(self, *exc: object) -> None:
        stop(self.process)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


def wait_listening(host: str, port: int, process: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout:g} s")


def stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()

"""Benchmark data: the demo catalogue of a network, generated once per (network, records, seed).

Zebra's stock profiles index MARC21, so the comparison runs on `guangrao-marc21`: the Guangrao
rule set with the hub's holdings layout switched from CNMARC 905 to MARC21 852, which makes
`federation demo-data` write every library's export as MARC21 (the Koha branch keeps its 952).
The records are otherwise the same mix: Chinese and English books, duplicated across libraries
with cataloguing variants. Both servers load exactly these files.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BASE_NETWORK = ROOT / "config" / "networks" / "guangrao.yaml"
MARC21_HOLDINGS = {"tag": "852", "library": "b", "barcode": "p", "location": "c", "call_number": "h"}
FEDERATION_CLI = [sys.executable, "-m", "federation"]


def marc21_network(workdir: Path, *, targets: list[dict] | None = None, name: str = "network-marc21.yaml") -> Path:
    """The Guangrao rule set with MARC21 852 holdings for every library without its own layout
    (and, for the federation benchmark, the given targets); written to `workdir`."""
    config = yaml.safe_load(BASE_NETWORK.read_text(encoding="utf-8"))
    config["network"]["id"] = "guangrao-marc21"
    config["rules"]["cataloguing"]["holdings"] = dict(MARC21_HOLDINGS)
    config["store"] = {"kind": "embedded", "path": str(workdir / "store")}
    config["targets"] = targets or []
    path = workdir / name
    workdir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def demo_files(network: Path, out: Path, records: int, seed: int = 1) -> list[Path]:
    """`federation demo-data` into `out` (kept between runs: the same seed gives the same files)."""
    marker = out / f".complete-{records}-{seed}"
    if not marker.exists():
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run([*FEDERATION_CLI, "demo-data", "--config", str(network), "--records", str(records),
                        "--seed", str(seed), "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
        marker.write_text("")
    return sorted(out.glob("*.mrc"))

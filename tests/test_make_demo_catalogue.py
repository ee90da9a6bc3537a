"""`make serve`'s catalogue build (issue 2) is idempotent: on a fresh clone, a second
`make demo-catalogue` rewrites no demo export and re-ingests nothing (every record is counted
unchanged), so `make serve` starts at once the second time. The clone uses this test's
virtualenv, as tests/test_make_serve.py explains."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from test_make_serve import make

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_a_second_make_demo_catalogue_reingests_nothing(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    data = tmp_path / "data"
    variables = [f"DATA_DIR={data}", "DEMO_RECORDS=150"]

    first = make(clone, "demo-catalogue", *variables)
    assert first.returncode == 0, first.stdout + first.stderr
    exports = {path: path.stat().st_mtime_ns for path in (data / "demo-input").glob("*.mrc")}
    assert exports
    (first_report,) = [json.loads(p.read_text(encoding="utf-8")) for p in (data / "ingest").glob("*.report.json")]
    assert first_report["read"] > 150 and first_report["quarantined"] == 0
    assert first_report["added"] + first_report["merged"] > 0

    second = make(clone, "demo-catalogue", *variables)
    assert second.returncode == 0, second.stdout + second.stderr
    assert {path: path.stat().st_mtime_ns for path in (data / "demo-input").glob("*.mrc")} == exports
    reports = sorted((data / "ingest").glob("*.report.json"))
    assert len(reports) == 2
    latest = json.loads(reports[-1].read_text(encoding="utf-8"))
    assert {key: latest[key] for key in ("read", "added", "merged", "updated", "unchanged", "quarantined")} == {
        "read": first_report["read"], "added": 0, "merged": 0, "updated": 0, "unchanged": first_report["read"],
        "quarantined": 0}

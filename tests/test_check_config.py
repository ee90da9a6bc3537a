"""`federation check-config` as an operator runs it: the installed console script, in a subprocess."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from federation.rules import load_network

ROOT = Path(__file__).resolve().parent.parent
NETWORKS = ROOT / "config" / "networks"
FEDERATION = Path(sys.executable).parent / "federation"


def check_config(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FEDERATION), "check-config", *args], capture_output=True, text=True,
                          encoding="utf-8", timeout=60, cwd=ROOT)


@pytest.mark.parametrize("name", ["guangrao", "yuanjiang", "gaoming"])
def test_shipped_networks_are_valid_and_summarised_per_tier(name: str) -> None:
    path = NETWORKS / f"{name}.yaml"
    result = check_config(str(path))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    network = load_network(path)
    lines = result.stdout.splitlines()
    assert lines[0] == f"{path}: valid"
    for tier, libraries in network.by_tier().items():
        assert f"{HEADINGS[tier]}: {len(libraries)}" in lines
        for library in libraries:
            row = next(i for i, line in enumerate(lines) if line.split() and line.split()[0] == library.code)
            assert library.names.zh in lines[row]
            if library.parent:
                assert lines[row].endswith(f"under {library.parent}")
            detail = "\n".join(lines[row + 1:row + 3])
            for number_range in library.barcode_ranges:
                assert f"barcodes {number_range.start}-{number_range.end}" in detail
            for number_range in library.card_ranges:
                assert f"cards    {number_range.start}-{number_range.end}" in detail


HEADINGS = {
    "hub": "hub (总馆)", "branch": "branches (分馆)", "service_point": "service points (服务点)",
    "reading_room": "reading rooms (图书室)", "mobile": "mobile (流动服务)",
    "self_service": "self-service libraries (自助图书馆)",
}


def test_json_summary_has_codes_tiers_parents_and_ranges() -> None:
    result = check_config(str(NETWORKS / "gaoming.yaml"), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["valid"] is True
    assert (summary["id"], summary["hub"]) == ("gaoming", "GM")
    rows = {row["code"]: row for rows in summary["tiers"].values() for row in rows}
    network = load_network(NETWORKS / "gaoming.yaml")
    assert list(rows) == [lib.code for tier in network.by_tier().values() for lib in tier]
    assert rows["GM"]["parent"] is None
    assert rows["GM-ZZ1"] == {
        "code": "GM-ZZ1", "names": {"zh": "高明区自助图书馆1号（示例）", "en": "Gaoming Self-service Library No. 1 (example)"},
        "tier": "self_service", "parent": "GM", "barcode_ranges": ["GM11000000-GM11999999"], "card_ranges": [],
    }
    assert rows["GM-HC"]["card_ranges"] == ["44060803000000-44060803999999"]
    assert summary["joint_networks"][0]["id"] == "foshan"
    assert {m["code"] for m in summary["joint_networks"][0]["other_members"]} == {"FS", "FS-CC", "FS-NH", "FS-SD", "FS-SS"}


def test_broken_copy_exits_1_with_every_problem(tmp_path: Path) -> None:
    text = (NETWORKS / "guangrao.yaml").read_text(encoding="utf-8")
    broken = text.replace("    tier: mobile\n", "    tier: bookbus\n").replace("  kind: embedded\n", "  kind: sqlite\n")
    path = tmp_path / "guangrao.yaml"
    path.write_text(broken, encoding="utf-8")
    tier_line = broken[:broken.index("bookbus")].count("\n") + 1
    kind_line = broken[:broken.index("sqlite")].count("\n") + 1

    result = check_config(str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{path}:{tier_line}:11: libraries[13].tier: 'bookbus' is not one of: "
        "hub, branch, service_point, reading_room, mobile, self_service",
        f"{path}:{kind_line}:9: store.kind: 'sqlite' is not one of: embedded, elasticsearch",
        f"{path}: 2 problems",
    ]

    as_json = check_config(str(path), "--json")
    assert as_json.returncode == 1
    report = json.loads(as_json.stdout)
    assert report["valid"] is False
    assert [(p["line"], p["column"], p["key"]) for p in report["problems"]] == [
        (tier_line, 11, "libraries[13].tier"), (kind_line, 9, "store.kind")]


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("network:\n  id: x\n  names: {zh: 县\nlibraries: []\n", encoding="utf-8")
    result = check_config(str(path))
    assert result.returncode == 1
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{path}:4:")
    assert "(document)" in first


def test_missing_argument_is_a_usage_error() -> None:
    result = check_config()
    assert result.returncode == 2
    assert "FILE" in result.stderr

"""The rule set's optional `sru:` section (limits of one SRU request): defaults when absent,
values read from a copy of a shipped network, and every bad value reported with its
file:line:column and key path."""
from __future__ import annotations

from pathlib import Path

import pytest

from federation.rules import ConfigError, SRULimits, load_network

NETWORKS = Path(__file__).resolve().parent.parent / "config" / "networks"


def with_sru_section(tmp_path: Path, section: str) -> Path:
    text = (NETWORKS / "guangrao.yaml").read_text(encoding="utf-8")
    path = tmp_path / "guangrao.yaml"
    path.write_text(text.rstrip("\n") + "\n" + section, encoding="utf-8")
    return path


def test_absent_section_gives_the_defaults() -> None:
    assert load_network(NETWORKS / "guangrao.yaml").sru == SRULimits()
    assert SRULimits().maximum_records == 100 and SRULimits().default_records == 10


def test_section_values_are_read(tmp_path: Path) -> None:
    path = with_sru_section(tmp_path, "sru:\n  maximum_records: 25\n  default_records: 5\n  max_start_record: 500\n")
    network = load_network(path)
    assert network.sru == SRULimits(default_records=5, maximum_records=25, max_start_record=500)
    # `federation check-config --json` shows the limits in force.
    assert network.summary()["sru"] == {"default_records": 5, "maximum_records": 25, "maximum_terms": 100,
                                        "max_query_length": 8192, "max_start_record": 500}


@pytest.mark.parametrize(("section", "key_path", "message", "line_text"), [
    ("sru:\n  maximum_record: 25\n", "sru.maximum_record", "unknown key 'maximum_record'", "  maximum_record: 25"),
    ("sru:\n  maximum_records: 0\n", "sru.maximum_records", "expected a whole number from 1 to 10000, got 0",
     "  maximum_records: 0"),
    ("sru:\n  maximum_terms: many\n", "sru.maximum_terms", "got 'many'", "  maximum_terms: many"),
    ("sru:\n  max_query_length: 2.5\n", "sru.max_query_length", "expected a whole number", "  max_query_length: 2.5"),
    ("sru:\n  default_records: 50\n  maximum_records: 20\n", "sru.default_records",
     "default_records (50) exceeds maximum_records (20)", "  default_records: 50"),
    ("sru: [100]\n", "sru", "expected a mapping", "sru: [100]"),
])
def test_bad_values_are_reported_where_they_are(tmp_path: Path, section: str, key_path: str, message: str,
                                                line_text: str) -> None:
    path = with_sru_section(tmp_path, section)
    with pytest.raises(ConfigError) as caught:
        load_network(path)
    (problem,) = caught.value.problems
    assert problem.key_path == key_path
    assert message in problem.message
    lines = path.read_text(encoding="utf-8").splitlines()
    assert problem.file == str(path)
    assert lines[problem.line - 1] == line_text

"""The CLI frame: discovery of sub-commands, `python -m federation`, isolation of a broken command."""
from __future__ import annotations

import subprocess
import sys

from federation import cli, commands


def test_python_m_federation_lists_the_commands() -> None:
    result = subprocess.run([sys.executable, "-m", "federation", "--help"], capture_output=True, text=True, check=True)
    for name in ("check-config", "ingest", "serve", "demo-data"):
        assert name in result.stdout


def test_a_command_that_fails_to_import_does_not_break_the_others(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "broken_thing.py").write_text("import module_that_does_not_exist\n")
    monkeypatch.setattr(commands, "__path__", [*commands.__path__, str(tmp_path)])

    parser = cli.build_parser()
    args = parser.parse_args(["broken-thing"])
    assert args._run(args) == 1
    assert "module_that_does_not_exist" in capsys.readouterr().err

    # a healthy command still parses and runs from the same parser
    args = parser.parse_args(["check-config", "config/networks/guangrao.yaml"])
    assert args._run(args) == 0

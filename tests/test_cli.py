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


def test_serve_defaults_to_loopback_sru_8080_and_z3950_2100() -> None:
    """The documented defaults (README, docs/sru.md, docs/z3950.md), read from the real parser; nothing is bound."""
    args = cli.build_parser().parse_args(["serve", "--config", "config/networks/guangrao.yaml"])
    assert args.http == ("127.0.0.1", 8080)
    assert args.z3950 == ("127.0.0.1", 2100)
    assert (args.workers, args.store, args.data_dir, args.log_format) == (1, None, None, "text")
    explicit = cli.build_parser().parse_args(["serve", "--config", "x.yaml", "--http", "0.0.0.0:80",
                                              "--z3950", "[::1]:210"])
    assert (explicit.http, explicit.z3950) == (("0.0.0.0", 80), ("::1", 210))
    # What `federation serve --help` tells a user.
    shown = subprocess.run([sys.executable, "-m", "federation", "serve", "--help"], capture_output=True, text=True,
                           check=True).stdout
    assert "(default 127.0.0.1:8080)" in " ".join(shown.split())
    assert "(default 127.0.0.1:2100)" in " ".join(shown.split())

"""The `federation` command line.

Each sub-command lives in its own module under `federation.commands` and exposes
`NAME`, `HELP`, `configure(parser)` and `run(args) -> int`; this module only
discovers and dispatches them, so adding a command never touches this file.
"""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from dataclasses import dataclass
from types import ModuleType

from federation import commands


@dataclass(frozen=True)
class _BrokenCommand:
    """A command module that failed to import: the other commands keep working and this one
    says why it cannot run instead of taking the whole CLI down."""

    NAME: str
    error: str

    @property
    def HELP(self) -> str:
        return f"(unavailable: {self.error})"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("rest", nargs=argparse.REMAINDER)

    def run(self, args: argparse.Namespace) -> int:
        print(f"federation {self.NAME}: this command cannot be loaded: {self.error}", file=sys.stderr)
        return 1


def _command_modules() -> list[ModuleType | _BrokenCommand]:
    modules: list[ModuleType | _BrokenCommand] = []
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        try:
            modules.append(importlib.import_module(f"{commands.__name__}.{info.name}"))
        except Exception as error:  # a broken command module must not break the others
            name = info.name.replace("_", "-")
            modules.append(_BrokenCommand(name, f"{type(error).__name__}: {error}"))
    return modules


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="federation",
        description="SRU / Z39.50 union-catalogue and federation server for library networks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in _command_modules():
        command = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.configure(command)
        command.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

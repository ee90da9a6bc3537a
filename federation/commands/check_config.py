"""`federation check-config FILE [--json]`: validate a network rule set.

Exit status 0 with a summary (libraries per tier with their barcode and card ranges) when the
file is valid; 1 with every problem, one `file:line:column: key.path: message` per line, when not.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from federation.rules import ConfigError, load_network

NAME = "check-config"
HELP = "validate a network rule set and print its libraries and number ranges"

_TIER_TITLES = {
    "hub": "hub (总馆)",
    "branch": "branches (分馆)",
    "service_point": "service points (服务点)",
    "reading_room": "reading rooms (图书室)",
    "mobile": "mobile (流动服务)",
    "self_service": "self-service libraries (自助图书馆)",
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="the rule set, e.g. config/networks/guangrao.yaml")
    parser.add_argument("--json", action="store_true", help="print the summary (or the problems) as JSON")


def run(args: argparse.Namespace) -> int:
    try:
        network = load_network(args.file)
    except ConfigError as error:
        if args.json:
            problems = [
                {"file": p.file, "line": p.line, "column": p.column, "key": p.key_path, "message": p.message}
                for p in error.problems
            ]
            print(json.dumps({"valid": False, "problems": problems}, ensure_ascii=False, indent=2))
        else:
            print(str(error), file=sys.stderr)
            count = len(error.problems)
            print(f"{args.file}: {count} problem{'s' if count != 1 else ''}", file=sys.stderr)
        return 1
    summary = network.summary()
    if args.json:
        print(json.dumps({"valid": True, **summary}, ensure_ascii=False, indent=2))
    else:
        print(render_summary(summary))
    return 0


def render_summary(summary: dict[str, Any]) -> str:
    names = summary["names"]
    lines = [
        f"{summary['file']}: valid",
        f"network {summary['id']}: {names['zh']}" + (f" ({names['en']})" if names["en"] else ""),
        f"hub {summary['hub']}; barcode policy {summary['barcode_policy']}; store {summary['store']['kind']}",
    ]
    if summary["example_ranges"]:
        lines.append("note: the number ranges in this file are marked as examples")
    for tier, libraries in summary["tiers"].items():
        lines.append("")
        lines.append(f"{_TIER_TITLES.get(tier, tier)}: {len(libraries)}")
        for library in libraries:
            parent = f"  under {library['parent']}" if library["parent"] else ""
            lines.append(f"  {library['code']:<14} {library['names']['zh']}{parent}")
            if library["barcode_ranges"]:
                lines.append(f"    barcodes {', '.join(library['barcode_ranges'])}")
            if library["card_ranges"]:
                lines.append(f"    cards    {', '.join(library['card_ranges'])}")
    for joint in summary["joint_networks"]:
        lines.append("")
        lines.append(f"joint network {joint['id']}: {joint['names']['zh']}; members here: {', '.join(joint['members'])}")
        for member in joint["other_members"]:
            cards = f"  cards {', '.join(member['card_ranges'])}" if member["card_ranges"] else ""
            lines.append(f"  {member['code']:<14} {member['names']['zh']}{cards}")
    if summary["targets"]:
        lines.append("")
        lines.append(f"targets: {len(summary['targets'])}")
        for target in summary["targets"]:
            state = "" if target["enabled"] else "  (disabled)"
            lines.append(f"  {target['code']:<14} {target['protocol']:<6} {target['url']}{state}")
    return "\n".join(lines)

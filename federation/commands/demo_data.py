"""`federation demo-data`: write a deterministic demo catalogue for a network, one MARC export per library."""
from __future__ import annotations

import argparse
import sys
import time

from federation.rules import ConfigError, load_network
from indexer.demo import DemoDataError, write_demo_data

NAME = "demo-data"
HELP = "write deterministic demo MARC exports (CNMARC and MARC21), one file per library of the rule set"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, metavar="FILE", help="the network's rule set (YAML)")
    parser.add_argument("--records", type=_count, default=2000, metavar="N",
                        help="bibliographic records to write across all libraries (default 2000)")
    parser.add_argument("--seed", type=int, default=1, metavar="S",
                        help="random seed; the same seed writes byte-identical files (default 1)")
    parser.add_argument("--out", required=True, metavar="DIR", help="directory for the <library>.mrc files")


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be zero or more")
    return value


def run(args: argparse.Namespace) -> int:
    try:
        network = load_network(args.config)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    started = time.monotonic()
    try:
        summary = write_demo_data(network.to_ingest_policy(), args.out, records=args.records, seed=args.seed)
    except (DemoDataError, OSError) as error:
        print(f"demo-data: {error}", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started
    print(f"{summary.records} records ({summary.works} works, {summary.items} items) "
          f"for {len(summary.libraries)} libraries in {elapsed:.1f} s -> {args.out}")
    for output in summary.libraries.values():
        print(f"  {output.code:<12} {output.format.value:<7} {output.records:>8} records {output.items:>8} items"
              f"  {output.path}")
    return 0

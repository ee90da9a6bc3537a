"""`federation items-status --config FILE [--data-dir DIR] [--library CODE] CSV`: live item status
from a circulation system's CSV export.

The CSV has a header row naming its columns: `barcode` and `status` (an availability value:
available, on_loan, in_transit, on_hold, reference_only, lost, missing, withdrawn, unknown)
are required, `due_date` (YYYY-MM-DD) and `location` optional. The whole file is checked
first: with any malformed row nothing is applied and every problem is printed as
`file:line: column: message`. `--library CODE` applies the file with that library's scope,
as its API token would (items whose barcodes are in its ranges and those of the libraries under
it, a barcode in no range by the library holding the copy; returns of any item); without it the
file is applied for the whole network.

Exit status: 0 every row applied; 2 rows applied but some rejected (unknown barcodes, listed);
1 nothing applied (bad input, an item outside --library's scope, bad rule set, a store that
cannot be opened), or a store that failed during the update: then the rows applied, not applied
and unknown (the store never answered for them) are listed by line; applying the rows not
applied and unknown again, or the whole file again, is safe.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from federation.itemstatus import StatusInputError, UpdateInterrupted, apply_updates, parse_csv
from federation.rules import ConfigError, load_network
from federation.search import SearchService
from federation.stores import open_store
from indexer.indexes import IndexTableError, load_index_table
from indexer.store import StoreError

NAME = "items-status"
HELP = "apply live item status (barcode, status, due_date, location) from a circulation system's CSV"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="CSV", help="the CSV export (header: barcode,status[,due_date][,location])")
    parser.add_argument("--config", required=True, metavar="FILE", help="the network rule set (config/networks/*.yaml)")
    parser.add_argument("--data-dir", metavar="DIR", help="the embedded store's directory (overrides the rule set)")
    parser.add_argument("--store", choices=("embedded", "elasticsearch"), help="the store kind (overrides the rule set)")
    parser.add_argument("--library", metavar="CODE", help="apply with this library's scope, as its API token would")
    parser.add_argument("--encoding", default="utf-8", metavar="NAME", help="the CSV's encoding (default utf-8; e.g. gb18030)")
    parser.add_argument("--json", action="store_true", help="print the per-row report as JSON")


class _Failure(Exception):
    pass


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except _Failure as failure:
        print(failure, file=sys.stderr)
        return 1
    except (ConfigError, IndexTableError, StoreError, ValueError, OSError) as error:
        print(f"federation items-status: {error}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace) -> int:
    network = load_network(args.config)
    if args.library is not None and args.library not in network.libraries:
        raise _Failure(f"--library {args.library}: not a library of {network.id} ({', '.join(network.libraries)})")
    path = Path(args.file)
    try:
        text = path.read_bytes().decode(args.encoding)
    except UnicodeDecodeError as error:
        raise _Failure(f"{path}: not {args.encoding} at byte {error.start} (try --encoding gb18030)") from None
    except LookupError:
        raise _Failure(f"--encoding {args.encoding}: unknown encoding") from None
    try:
        rows = parse_csv(text, str(path))
    except StatusInputError as error:
        raise _Failure("\n".join(error.problems) + "\nnothing was applied") from None
    table = load_index_table()
    settings = network.store_settings(os.environ, override_kind=args.store, data_dir=args.data_dir)
    store = await open_store(settings, table)
    lines = [line for line, _ in rows]
    try:
        report = await apply_updates(SearchService(network, table, store), [u for _, u in rows], library=args.library)
    except UpdateInterrupted as failure:
        listed = [f"{what}: {_lines(path, [lines[n] for n in positions])}"
                  for what, positions in (("applied", failure.applied), ("not applied", failure.not_applied),
                                          ("unknown", failure.unknown)) if positions]
        raise _Failure(f"federation items-status: {failure.cause}\nthe store failed during the update: "
                       f"{failure.summary()}\n" + "\n".join(listed) +
                       "\napplying the rows not applied (and unknown) again, or the whole file again, is safe") from None
    finally:
        await store.close()
    if report.violations:
        problems = [f"{path}:{lines[v.index]}: {v.reason}" for v in report.violations]
        raise _Failure("\n".join(problems) + "\nnothing was applied")
    if args.json:
        data = report.to_dict()
        for entry in data["items"]:
            entry["line"] = lines[entry["index"]]
        print(json.dumps(data, ensure_ascii=False, indent=2))
    else:
        for result in report.results:
            if not result.accepted:
                print(f"{path}:{lines[result.index]}: {result.barcode}: {result.reason}")
        changed = sum(1 for r in report.results if r.changed)
        print(f"{report.applied} applied ({changed} changed, {report.applied - changed} already so), "
              f"{report.rejected} rejected, of {len(rows)} rows")
    return 2 if report.rejected else 0


def _lines(path: Path, numbers: list[int]) -> str:
    return f"{path} line{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers))}"

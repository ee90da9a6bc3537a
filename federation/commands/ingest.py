"""`federation ingest --config FILE [options] PATH...`: load MARC exports into the union catalogue.

Reads ISO 2709, MARCXML and MARC-in-JSON files (directories are walked), merges them into the
network's store and ends with the reconciliation `read = added + merged + updated + unchanged
+ quarantined`. Malformed records go to the quarantine file (JSON lines: raw bytes, reason,
position); the JSON report (`--report`, by default beside the quarantine file) holds the counts
and the quarantine file's path. Progress (records/s, then the indexing for search at the end of
the run) is shown on a terminal.

Files go to `<data dir>/ingest/`: `<run>.quarantine.jsonl`, `<run>.report.json`, and
`state.json` (`state-elasticsearch-<hash>.json` for an Elasticsearch store), the fingerprints
of files ingested cleanly, so that a second run over unchanged input reads nothing again
(`--reread` reads every file anyway).

Exit status: 0 when the run finished (quarantined records are not failures: see the report),
1 on a fatal error (bad rule set, unreachable store, missing input), 130 when interrupted.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import time
from pathlib import Path
from typing import TextIO

from federation.observability import Metrics
from federation.rules import ConfigError, StoreSettings, load_network
from federation.stores import open_store
from indexer.indexes import IndexTableError, load_index_table
from indexer.ingest import (
    DEFAULT_BATCH_SIZE, DEFAULT_WRITE_BEHIND, IngestError, IngestOptions, IngestReport, default_batch_id, ingest,
    write_report)
from indexer.model import MarcFormat
from indexer.readers import normalize_encoding
from indexer.store import StoreError

NAME = "ingest"
HELP = "load MARC exports (ISO 2709, MARCXML, MARC-in-JSON) into the union catalogue"
# Least time between two progress lines on a terminal.
PROGRESS_INTERVAL = 0.5


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="MARC files or directories of them")
    parser.add_argument("--config", required=True, metavar="FILE", help="the network rule set (config/networks/*.yaml)")
    parser.add_argument("--data-dir", metavar="DIR", help="the embedded store's directory (overrides the rule set)")
    parser.add_argument("--store", choices=("embedded", "elasticsearch"), help="the store kind (overrides the rule set)")
    parser.add_argument("--library", metavar="CODE",
                        help="the library the input belongs to (default: from the holdings' library codes, else the hub)")
    parser.add_argument("--format", choices=[f.value for f in MarcFormat], help="the MARC format (default: detected per record)")
    parser.add_argument("--encoding", metavar="NAME", help="utf-8, marc-8, gbk or gb18030 (default: detected per record)")
    parser.add_argument("--full", action="store_true",
                        help="the input is the library's complete export: its records not in the input are withdrawn")
    parser.add_argument("--report", metavar="PATH", help="where to write the JSON report (default: beside the quarantine file)")
    parser.add_argument("--quarantine", metavar="PATH", help="the quarantine file (default: in <data dir>/ingest/)")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N",
                        help=f"records read and looked up together (default {DEFAULT_BATCH_SIZE})")
    parser.add_argument("--write-behind", type=int, default=DEFAULT_WRITE_BEHIND, metavar="N",
                        help=f"contributions held in memory before they are written (default {DEFAULT_WRITE_BEHIND})")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="processes at work: with N >= 2, N-1 of them read, parse and extract the files "
                             "while one merges and writes (default 1; 2 uses both cores of a 2-core machine)")
    parser.add_argument("--reread", action="store_true", help="read every file, also those unchanged since the last ingest")
    parser.add_argument("--metrics-textfile", metavar="PATH",
                        help="write the run's Prometheus counters there (node_exporter's textfile collector)")
    parser.add_argument("--quiet", action="store_true", help="print nothing but errors")


class Progress:
    """Records/s on a terminal, rewritten in place at most every PROGRESS_INTERVAL seconds."""

    def __init__(self, stream: TextIO, enabled: bool):
        self.stream = stream
        self.enabled = enabled and stream.isatty()
        self.started = time.monotonic()
        self._last = 0.0

    def __call__(self, report: IngestReport, *, final: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self._last < PROGRESS_INTERVAL and not final):
            return
        self._last = now
        elapsed = max(now - self.started, 1e-6)
        self.stream.write(f"\r{report.read} records, {report.read / elapsed:.0f} records/s, {report.quarantined} quarantined ")
        self.stream.flush()

    def indexing(self, done: int, total: int) -> None:
        """The indexing at the end of the run: it takes a while at a million records."""
        now = time.monotonic()
        if not self.enabled or (now - self._last < PROGRESS_INTERVAL and done < total):
            return
        self._last = now
        self.stream.write(f"\rindexing for search: {done} of {total} union records ")
        self.stream.flush()

    def finish(self, report: IngestReport | None) -> None:
        """The last count, and the end of the progress line."""
        if report is not None:
            self(report, final=True)
        if self.enabled and self._last:
            self.stream.write("\n")
            self.stream.flush()


def render_summary(report: IngestReport, elapsed: float, report_path: Path) -> str:
    lines = []
    for summary in report.files:
        note = " (unchanged since the last ingest, not read again)" if summary.skipped else ""
        quarantined = f", {summary.quarantined} quarantined" if summary.quarantined else ""
        lines.append(f"{summary.path}: {summary.read} records for {summary.library}{quarantined}{note}")
    rate = report.read / elapsed if elapsed > 0 else 0.0
    lines.append(
        f"read {report.read} = added {report.added} + merged {report.merged} + updated {report.updated}"
        f" + unchanged {report.unchanged} + quarantined {report.quarantined}"
        f" ({'reconciled' if report.reconciled else 'NOT RECONCILED'}; {elapsed:.1f} s, {rate:.0f} records/s)"
    )
    if report.withdrawn:
        lines.append(f"withdrawn by the full ingest: {report.withdrawn} contributions")
    if report.deleted_records:
        lines.append(f"union records removed (no contribution left): {report.deleted_records}")
    if report.quarantined:
        lines.append(f"quarantine: {report.quarantine}")
    lines.append(f"report: {report_path}")
    return "\n".join(lines)


def state_file_name(settings: StoreSettings) -> str:
    """One file-state record per store: what went into one store says nothing about another."""
    if settings.kind == "embedded":
        return "state.json"
    identity = f"{settings.url}|{settings.index_prefix}".encode("utf-8")
    return f"state-{settings.kind}-{hashlib.sha256(identity).hexdigest()[:12]}.json"


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(_run(args))
    except (ConfigError, IndexTableError, IngestError, StoreError, ValueError, OSError) as error:
        print(f"federation ingest: {error}", file=sys.stderr)
        return 1


async def _run(args: argparse.Namespace) -> int:
    network = load_network(args.config)
    table = load_index_table()
    policy = network.to_ingest_policy()
    if args.library is not None and args.library not in policy.libraries:
        raise IngestError(f"--library {args.library}: not a library of {network.id} ({', '.join(policy.libraries)})")
    if args.batch_size < 1 or args.write_behind < 1 or args.jobs < 1:
        raise IngestError("--batch-size, --write-behind and --jobs must be at least 1")
    encoding = normalize_encoding(args.encoding) if args.encoding else None
    settings = network.store_settings(os.environ, override_kind=args.store, data_dir=args.data_dir)
    data_dir = Path(args.data_dir or settings.path or Path("var") / network.id)
    if data_dir.suffix in (".sqlite3", ".sqlite", ".db"):
        data_dir = data_dir.parent
    work_dir = data_dir / "ingest"
    run_id = default_batch_id()
    quarantine_path = Path(args.quarantine) if args.quarantine else work_dir / f"{run_id}.quarantine.jsonl"
    report_path = Path(args.report) if args.report else quarantine_path.with_name(
        quarantine_path.name.removesuffix(".jsonl").removesuffix(".quarantine") + ".report.json")
    options = IngestOptions(
        library=args.library,
        format=MarcFormat(args.format) if args.format else None,
        encoding=encoding,
        full=args.full,
        batch_size=args.batch_size,
        write_behind=args.write_behind,
        quarantine_path=quarantine_path,
        state_path=work_dir / state_file_name(settings),
        skip_unchanged_files=not args.reread,
        batch_id=run_id,
        jobs=args.jobs,
    )
    progress = Progress(sys.stderr, enabled=not args.quiet)
    metrics = Metrics() if args.metrics_textfile else None
    counted = metrics.ingest_progress(progress) if metrics is not None else None
    started = time.monotonic()
    store = await open_store(settings, table)
    report: IngestReport | None = None
    try:
        report = await ingest(args.paths, store, table, policy, options, counted or progress, progress.indexing)
    finally:
        progress.finish(report)
        await store.close()
    write_report(report, report_path)
    if metrics is not None and counted is not None:
        counted.finished(report)
        metrics.write_textfile(args.metrics_textfile)
    if not args.quiet:
        for warning in report.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if report.warning_count > len(report.warnings):
            print(f"warning: {report.warning_count - len(report.warnings)} more warnings not shown", file=sys.stderr)
        print(render_summary(report, time.monotonic() - started, report_path))
    return 0

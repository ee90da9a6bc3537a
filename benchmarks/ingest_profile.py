"""Where an ingest's time goes: the benchmark's files ingested in-process, phase by phase.

    python -m benchmarks.ingest_profile --records 100000 [--jobs 2] [--profile] [--top 30]
    python -m benchmarks.ingest_profile --records 100000 --stages

Ingests the data `benchmarks.run` made (`<workdir>/<records>/data`) into a new embedded store
in a temporary directory and prints, for the merge (reading, merging, writing payloads) and
for the indexing at the end of the bulk load, the wall time and the CPU time of this process
(every thread), and the CPU time of the other processes (`--jobs`: those preparing the records,
and the one making index rows at the end). `--profile` runs the
merge under cProfile (the event loop's thread only: the store's writer thread shows as the wait
for its future). `--stages` instead times, without a store, what a preparing process does:
reading and parsing the files alone, then with everything it sends (holdings, fingerprint,
extraction, match keys), pickling aside. Run it on a quiet machine; `benchmarks.run` is what the
document's rates come from.
"""
from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.data import marc21_network
from benchmarks.profile import print_profile
from federation.rules import load_network
from federation.stores import open_store
from indexer.indexes import load_index_table
from indexer.ingest import IngestOptions, Pipeline, _prepare_into, _PreparerSetup, extraction_salt
from indexer.readers import read_records


@dataclass
class Phase:
    name: str
    wall: float
    cpu: float

    def line(self, records: int) -> str:
        return f"{self.name:<26} {self.wall:8.1f} s wall {self.cpu:8.1f} s CPU  {self.cpu / records * 1e6:7.0f} µs CPU/record"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def stages(files: list[Path], setup: _PreparerSetup) -> str:
    """What a preparing process spends, stage by stage, in this process."""
    out = io.StringIO()
    started = time.process_time()
    records = sum(1 for path in files for _ in read_records(path))
    parsed = time.process_time()
    sent: list[int] = []
    _prepare_into(setup, [(n, str(path)) for n, path in enumerate(files, start=1)],
                  lambda message: sent.append(len(message[2]) if message[0] == "batch" else 0))
    prepared = time.process_time()
    assert sum(sent) == records
    for name, seconds in (("reading and parsing", parsed - started), ("preparing (all it sends)", prepared - parsed)):
        print(Phase(name, 0.0, seconds).line(records).replace("     0.0 s wall", "           "), file=out)
    return f"{records:,} records\n" + out.getvalue()


async def profile(args: argparse.Namespace) -> str:
    workdir = (args.workdir / str(args.records)).resolve()
    files = sorted((workdir / "data").glob("*.mrc"))
    if not files:
        raise SystemExit(f"no data under {workdir / 'data'}: run `python -m benchmarks.run --records {args.records} "
                         "--only ingest` first")
    network = load_network(marc21_network(workdir))
    table = load_index_table()
    if args.stages:
        policy = network.to_ingest_policy()
        options = IngestOptions(quarantine_path=Path("unused"))
        return stages(files, _PreparerSetup(table, policy, options, "stages", extraction_salt(table, policy)))
    scratch = Path(tempfile.mkdtemp(prefix="ingest-profile-", dir=args.scratch))
    profiler = cProfile.Profile() if args.profile else None
    try:
        store = await open_store(network.store_settings({}, data_dir=str(scratch / "store")), table)
        options = IngestOptions(quarantine_path=scratch / "quarantine.jsonl", jobs=args.jobs)
        pipeline = Pipeline(store, table, network.to_ingest_policy(), options)
        try:
            children_before = _children_cpu()
            started, cpu_started = time.perf_counter(), time.process_time()
            async with store.bulk_load(processes=args.jobs):  # as `ingest` does
                if profiler is not None:
                    profiler.enable()
                report = await pipeline.run(files)
                if profiler is not None:
                    profiler.disable()
                merged, cpu_merged = time.perf_counter(), time.process_time()
            ended, cpu_ended = time.perf_counter(), time.process_time()
            preparing = _children_cpu() - children_before
        finally:
            await store.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    phases = [Phase("merge and write", merged - started, cpu_merged - cpu_started),
              Phase("index at the end", ended - merged, cpu_ended - cpu_merged)]
    out = io.StringIO()
    print(f"{report.read:,} records -> {report.added:,} union records, --jobs {args.jobs}", file=out)
    for phase in phases:
        print(phase.line(report.read), file=out)
    if args.jobs > 1:
        print(f"{'other processes':<26} {'':>8}        {preparing:8.1f} s CPU  "
              f"{preparing / report.read * 1e6:7.0f} µs CPU/record", file=out)
    total = Phase("whole run", ended - started, cpu_ended - cpu_started + preparing)
    print(total.line(report.read) + f"  ({report.read / total.wall:,.0f} records/s)", file=out)
    if profiler is not None:
        print_profile(profiler, out, args.top)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingest_profile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--workdir", type=Path, default=Path("var/bench"))
    parser.add_argument("--scratch", type=Path, help="where the temporary store goes (default: the system's)")
    parser.add_argument("--jobs", type=int, default=1, help="as `federation ingest --jobs`")
    parser.add_argument("--profile", action="store_true", help="the merge under cProfile")
    parser.add_argument("--stages", action="store_true",
                        help="only what a preparing process does, stage by stage, without a store")
    parser.add_argument("--top", type=int, default=30)
    print(asyncio.run(profile(parser.parse_args(argv))))
    return 0


if __name__ == "__main__":
    sys.exit(main())

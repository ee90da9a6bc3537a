"""Run the benchmarks in one go and write the results (JSON) and their tables (Markdown).

    python -m benchmarks.run --records 100000            # everything: ingest, zebraidx, SRU, Z39.50, federation
    python -m benchmarks.run --records 1000000 --only ingest,zebra-index,sru --concurrency 8

Steps (each on the same demo data, `benchmarks.data`):
  ingest        `federation ingest` of the files into a fresh embedded store: records/s, peak RSS
                (--ingest-jobs 2 --ingest-cpu 0,1: preparing in a second process, on both cores)
  zebra-index   `zebraidx update` + `commit` of the same files: records/s, peak RSS
  sru           closed-loop searchRetrieve (10 MARCXML records) at each concurrency, our
                `federation serve` then zebrasrv, the same query mix
  z3950         the same with search + present (10 USMARC records)
  federation    our `federated` database with zebrasrv as its one SRU target against the same
                queries sent straight to zebrasrv's SRU
Servers run pinned to --server-cpu, the load generator to --client-cpu (taskset), so that runs
on a 2-core machine are comparable. The server's CPU use during each run is reported: near
100% means the server was the limit.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from benchmarks import zebra
from benchmarks.data import FEDERATION_CLI, demo_files, marc21_network
from benchmarks.measure import pinned, run_measured
from benchmarks.queries import BenchQuery, build_mix, save

STEPS = ("ingest", "zebra-index", "sru", "z3950", "federation")
FEDERATION_KINDS = frozenset({"title", "author", "subject", "title_and", "phrase", "isbn"})
DEFAULT_PER_KIND = 40
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a running process, of its children that have exited, and of those
    still running (zebrasrv forks a process per connection), from /proc."""
    fields = _stat(pid)
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                child = _stat(int(entry.name))
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(child[1]) == pid:
                ticks += int(child[11]) + int(child[12])
    return ticks / CLOCK_TICKS


def machine() -> dict:
    model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        model = found.group(1).strip() if found else ""
    memory = ""
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        found = re.search(r"MemTotal:\s*(\d+)", meminfo.read_text())
        memory = f"{int(found.group(1)) // 1024} MB" if found else ""
    packages = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Version}\n", "idzebra-2.0", "yaz"],
                              capture_output=True, text=True).stdout.split("\n")
    return {
        "cpu": model, "cores": os.cpu_count(), "memory": memory, "kernel": platform.release(),
        "python": platform.python_version(), "packages": [p for p in packages if p],
        "load_average_at_start": os.getloadavg(),
    }


# -- servers ------------------------------------------------------------------------------------
class Server:
    """A server subprocess that prints its addresses; `lines` holds what it printed first."""

    def __init__(self, command: Sequence[str], cpus: str | None, expect: Sequence[str], timeout: float = 120.0):
        self.process = subprocess.Popen(pinned(command, cpus), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)
        self.lines: list[str] = []
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while not all(any(e in line for line in self.lines) for e in expect):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"{' '.join(command)} did not start:\n" + "\n".join(self.lines[-30:]))
            line = self.process.stdout.readline()
            if line:
                self.lines.append(line.rstrip("\n"))
        # Keep reading (the last lines only) so that a server writing an access log never blocks
        # on a full pipe.
        self.tail: collections.deque[str] = collections.deque(maxlen=50)
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.tail.append(line.rstrip("\n"))

    def find(self, pattern: str) -> re.Match:
        for line in self.lines:
            found = re.search(pattern, line)
            if found:
                return found
        raise RuntimeError(f"no line matching {pattern!r} in: {self.lines}")

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        zebra.stop(self.process)


def start_ours(network: Path, store: Path, cpus: str | None, workers: int = 1,
               result_cache: int | None = None) -> tuple[Server, str, int]:
    # Opening a store whose bulk load was interrupted rebuilds its indexes first: minutes at 1M.
    extra = [] if result_cache is None else ["--result-cache", str(result_cache)]
    server = Server([*FEDERATION_CLI, "serve", "--config", str(network), "--data-dir", str(store),
                     "--http", "127.0.0.1:0", "--z3950", "127.0.0.1:0", "--workers", str(workers), *extra], cpus,
                    ("SRU:", "Z39.50:", "Workers:") if workers > 1 else ("SRU:", "Z39.50:"), timeout=1800.0)
    sru = server.find(r"SRU:\s+(http://\S+)/union").group(1)
    z3950 = server.find(r"Z39\.50:\s+tcp:[^:]+:(\d+)")
    return server, sru, int(z3950.group(1))


# -- steps --------------------------------------------------------------------------------------
def step_ingest(network: Path, files: list[Path], store: Path, cpus: str | None, jobs: int = 1) -> dict:
    if store.exists():
        shutil.rmtree(store)
    measured = run_measured([*FEDERATION_CLI, "ingest", "--config", str(network), "--data-dir", str(store),
                             "--jobs", str(jobs), *map(str, files)], cpus=cpus)
    summary = re.search(r"read (\d+) = added (\d+) \+ merged (\d+) \+ updated (\d+) \+ unchanged (\d+) "
                        r"\+ quarantined (\d+)", measured.output)
    if summary is None:
        raise RuntimeError(f"ingest printed no summary:\n{measured.output[-2000:]}")
    read, added, merged = (int(summary.group(i)) for i in (1, 2, 3))
    database = store / "catalogue.sqlite3"
    return {
        "records": read, "union_records": added, "merged": merged, "quarantined": int(summary.group(6)),
        "seconds": round(measured.seconds, 1), "cpu_seconds": round(measured.cpu_seconds, 1),
        "records_per_second": round(read / measured.seconds), "peak_rss_mb": round(measured.peak_rss_mb),
        "jobs": jobs, "cpus": cpus, "peak_tree_rss_mb": round(measured.peak_tree_rss_mb),
        "store_mb": round(sum(p.stat().st_size for p in store.rglob("*") if p.is_file()) / 2**20)
        if database.exists() else None,
    }


def step_zebra_index(files: list[Path], workdir: Path, cpus: str | None) -> dict:
    update, commit = zebra.index(workdir, files, cpus=cpus)
    records = sum(path.read_bytes().count(b"\x1d") for path in files)
    seconds = update.seconds + commit.seconds
    return {
        "records": records, "seconds": round(seconds, 1),
        "cpu_seconds": round(update.cpu_seconds + commit.cpu_seconds, 1),
        "records_per_second": round(records / seconds), "peak_rss_mb": round(max(update.peak_rss_mb, commit.peak_rss_mb)),
        "register_mb": round(sum(p.stat().st_size for p in (workdir / "reg").rglob("*") if p.is_file()) / 2**20),
    }


def run_load(protocol: str, target: list[str], mix: Path, concurrency: int, args: argparse.Namespace,
             server_pid: int, zebra_side: bool) -> dict:
    command = [sys.executable, "-m", "benchmarks.load", protocol, *target, "--queries", str(mix),
               "-c", str(concurrency), "--duration", str(args.duration), "--warmup", str(args.warmup)]
    if zebra_side:
        command.append("--zebra")
    before = cpu_seconds(server_pid)
    started = time.perf_counter()
    completed = subprocess.run(pinned(command, args.client_cpu), capture_output=True, text=True)
    wall = time.perf_counter() - started
    server_cpu = cpu_seconds(server_pid) - before
    if completed.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{completed.stderr[-3000:]}")
    result = json.loads(completed.stdout)
    result["server_cpu_share"] = round(server_cpu / wall, 2)
    # CPU per answer does not depend on how much of the core other work left to the server.
    answered = result["rps"] * wall
    result["server_cpu_ms_per_request"] = round(server_cpu * 1000 / answered, 2) if answered else None
    result["load_average_1m"] = round(os.getloadavg()[0], 2)   # other work on the machine during the run
    return result


def step_load(protocol: str, ours: tuple[str, int], zebra_server: zebra.ZebraServer, ours_pid: int,
              mix: Path, args: argparse.Namespace) -> dict:
    out: dict = {}
    for concurrency in args.concurrency:
        if protocol == "sru":
            ours_target = ["--url", f"{ours[0]}/union"]
            zebra_target = ["--url", f"http://127.0.0.1:{zebra_server.port}/Default"]
        else:
            ours_target = ["--port", str(ours[1]), "--database", "union"]
            zebra_target = ["--port", str(zebra_server.port), "--database", "Default"]
        ours_result = run_load(protocol, ours_target, mix, concurrency, args, ours_pid, False)
        zebra_result = run_load(protocol, zebra_target, mix, concurrency, args, zebra_server.pid, True)
        out[str(concurrency)] = {"ours": ours_result, "zebra": zebra_result,
                                 "rps_ratio": round(ours_result["rps"] / zebra_result["rps"], 2)
                                 if zebra_result["rps"] else None}
        print(f"  {protocol} c={concurrency}: ours {ours_result['rps']} req/s p99 {ours_result['p99_ms']} ms "
              f"(server CPU {ours_result['server_cpu_share']:.0%}), zebra {zebra_result['rps']} req/s "
              f"p99 {zebra_result['p99_ms']} ms", flush=True)
    return out


def step_federation(workdir: Path, store: Path, zebra_server: zebra.ZebraServer, queries: list[BenchQuery],
                    args: argparse.Namespace) -> dict:
    target = {
        "code": "ZEBRA", "name": "zebrasrv (benchmark)", "protocol": "sru",
        "url": f"http://127.0.0.1:{zebra_server.port}/Default", "format": "marc21", "encoding": "utf-8",
        "timeout": 10, "sru_version": "1.2", "record_schema": "marcxml",
        "fetch_limit": args.federation_fetch, "max_concurrent": 64,
    }
    network = marc21_network(workdir, targets=[target], name="network-federation.yaml")
    subset = [q for q in queries if q.kind in FEDERATION_KINDS]
    mix = workdir / "mix-federation.json"
    save(subset, mix)
    server = Server([sys.executable, "-m", "benchmarks.fedserver", "--config", str(network), "--data-dir", str(store),
                     "--remote-only"], args.server_cpu, ("SRU:",))
    try:
        base = server.find(r"SRU:\s+(http://\S+)").group(1)
        out: dict = {"fetch_limit": args.federation_fetch, "queries": len(subset)}
        for concurrency in args.federation_concurrency:
            federated = run_load("sru", ["--url", f"{base}/federated"], mix, concurrency, args, server.pid, True)
            direct = run_load("sru", ["--url", f"http://127.0.0.1:{zebra_server.port}/Default"], mix, concurrency,
                              args, zebra_server.pid, True)
            out[str(concurrency)] = {"federated": federated, "direct": direct,
                                     "added_p50_ms": round(federated["p50_ms"] - direct["p50_ms"], 2)}
            print(f"  federation c={concurrency}: federated p50 {federated['p50_ms']} ms / {federated['rps']} req/s, "
                  f"direct p50 {direct['p50_ms']} ms / {direct['rps']} req/s", flush=True)
        return out
    finally:
        server.stop()


# -- the report ---------------------------------------------------------------------------------
def markdown(results: dict) -> str:
    cache = "" if results.get("result_cache") is None else f" (--result-cache {results['result_cache']})"
    lines = [f"Records: {results['records']:,}; server workers: {results.get('workers', 1)}{cache}, CPUs "
             f"{results.get('server_cpu', '0')}, load generator CPUs {results.get('client_cpu', '1')}; machine: {results['machine']['cpu']}, {results['machine']['cores']} "
             f"cores, {results['machine']['memory']}; {results['date']}", ""]
    if "mix" in results:
        lines += [f"Query mix: {results['mix']['queries']} queries "
                        f"({results['mix'].get('distinct', '?')} distinct), cycled through by every load run.", ""]
    ingest, zidx = results.get("ingest"), results.get("zebra-index")
    if ingest or zidx:
        lines += ["| indexing | records/s | seconds | peak RSS MB | on disk MB |", "|---|---:|---:|---:|---:|"]
        if ingest:
            jobs = ingest.get("jobs", 1)
            how = f", --jobs {jobs} on CPUs {ingest.get('cpus')}" if jobs > 1 else ""
            # With several processes, the peak of their sum (sampled) is what the machine must have.
            rss = ingest["peak_rss_mb"] if jobs == 1 else f"{ingest['peak_tree_rss_mb']} (all processes)"
            lines.append(f"| federation ingest ({ingest['union_records']:,} union records{how}) | "
                         f"{ingest['records_per_second']:,} | {ingest['seconds']} | {rss} | "
                         f"{ingest['store_mb']} |")
        if zidx:
            lines.append(f"| zebraidx update + commit | {zidx['records_per_second']:,} | {zidx['seconds']} | "
                         f"{zidx['peak_rss_mb']} | {zidx['register_mb']} |")
        if ingest and zidx:
            lines.append(f"| ratio | {ingest['records_per_second'] / zidx['records_per_second']:.2f}x | | | |")
        lines.append("")
    for protocol, title in (("sru", "SRU searchRetrieve, 10 MARCXML records"),
                            ("z3950", "Z39.50 search + present, 10 USMARC records")):
        runs = results.get(protocol)
        if not runs:
            continue
        lines += [f"**{title}**", "",
                  "| c | ours req/s | p50 | p90 | p99 ms | CPU | CPU ms/req | Zebra req/s | p50 | p90 | p99 ms | CPU "
                  "| CPU ms/req | ratio |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for concurrency, run in runs.items():
            o, z = run["ours"], run["zebra"]
            lines.append(f"| {concurrency} | {o['rps']} | {o['p50_ms']} | {o['p90_ms']} | {o['p99_ms']} | "
                         f"{o['server_cpu_share']:.0%} | {o.get('server_cpu_ms_per_request', '')} | {z['rps']} | "
                         f"{z['p50_ms']} | {z['p90_ms']} | {z['p99_ms']} | {z['server_cpu_share']:.0%} | "
                         f"{z.get('server_cpu_ms_per_request', '')} | {run['rps_ratio']}x |")
        lines.append("")
        middle = runs.get("8") or next(iter(runs.values()))
        lines += ["| kind (c=8) | ours p50 ms | ours p99 ms | ours hits | Zebra p50 ms | Zebra p99 ms | Zebra hits |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for kind, mine in middle["ours"]["kinds"].items():
            theirs = middle["zebra"]["kinds"].get(kind, {})
            lines.append(f"| {kind} | {mine['p50_ms']} | {mine['p99_ms']} | {mine['mean_hits']} | "
                         f"{theirs.get('p50_ms', '')} | {theirs.get('p99_ms', '')} | {theirs.get('mean_hits', '')} |")
        lines.append("")
    federation = results.get("federation")
    if federation:
        lines += [f"**Federation overhead** (target: zebrasrv SRU; fetch limit {federation['fetch_limit']})", "",
                  "| c | federated req/s | p50 | p99 ms | direct req/s | p50 | p99 ms |", "|---:|---:|---:|---:|---:|---:|---:|"]
        for concurrency, run in federation.items():
            if not isinstance(run, dict):
                continue
            f, d = run["federated"], run["direct"]
            lines.append(f"| {concurrency} | {f['rps']} | {f['p50_ms']} | {f['p99_ms']} | {d['rps']} | "
                         f"{d['p50_ms']} | {d['p99_ms']} |")
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path("var/bench"))
    parser.add_argument("--only", default=",".join(STEPS), help=f"steps to run, of {','.join(STEPS)}")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--federation-concurrency", default="1,8")
    parser.add_argument("--federation-fetch", type=int, default=10,
                        help="records the federation takes from the target per search (direct asks for 10)")
    parser.add_argument("--per-kind", type=int, default=DEFAULT_PER_KIND,
                        help="queries of each kind in the mix; the load generator cycles through the mix, so a "
                             "small mix repeats its queries (and servers answer repeats from their caches)")
    parser.add_argument("--distinct", action="store_true", help="no query twice in the mix")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=1,
                        help="`federation serve --workers N` (with --server-cpu 0,1 to give them both cores)")
    parser.add_argument("--result-cache", type=int,
                        help="`federation serve --result-cache N` (0: every query evaluated, even a repeated one)")
    parser.add_argument("--ingest-jobs", type=int, default=1,
                        help="`federation ingest --jobs N` (with --ingest-cpu 0,1 to give them both cores)")
    parser.add_argument("--ingest-cpu", help="CPUs of the ingest (default: --server-cpu)")
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--client-cpu", default="1")
    parser.add_argument("--out", type=Path, help="results JSON (default <workdir>/<records>/results.json)")
    args = parser.parse_args(argv)
    args.steps = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.steps) - set(STEPS)
    if unknown:
        parser.error(f"unknown steps: {', '.join(sorted(unknown))}")
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    args.federation_concurrency = [int(c) for c in args.federation_concurrency.split(",")]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = (args.workdir / str(args.records)).resolve()
    network = marc21_network(workdir)
    files = demo_files(network, workdir / "data", args.records, args.seed)
    store = workdir / "store"
    out = args.out or workdir / "results.json"
    results: dict = json.loads(out.read_text()) if out.exists() else {}
    results.update({"records": args.records, "seed": args.seed, "machine": machine(), "workers": args.workers,
                    "result_cache": args.result_cache,
                    "server_cpu": args.server_cpu, "client_cpu": args.client_cpu,
                    "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "command": "python -m benchmarks.run " + " ".join(argv if argv is not None else sys.argv[1:])})
    queries = build_mix(files, per_kind=args.per_kind, distinct=args.distinct)
    default_mix = args.per_kind == DEFAULT_PER_KIND and not args.distinct
    mix = workdir / ("mix.json" if default_mix else f"mix-{args.per_kind}{'-distinct' if args.distinct else ''}.json")
    save(queries, mix)
    results["mix"] = {"queries": len(queries), "distinct": len({q.cql for q in queries}),
                      "examples": {q.kind: asdict(q) for q in queries}}

    def record(step: str, value: dict) -> None:
        results[step] = value
        out.write_text(json.dumps(results, ensure_ascii=False, indent=1))

    if "ingest" in args.steps:
        print("ingest ...", flush=True)
        record("ingest", step_ingest(network, files, store, args.ingest_cpu or args.server_cpu, args.ingest_jobs))
        print(f"  {results['ingest']}", flush=True)
    if "zebra-index" in args.steps or not (workdir / "zebra" / "zebra.cfg").exists():
        print("zebraidx ...", flush=True)
        record("zebra-index", step_zebra_index(files, workdir / "zebra", args.server_cpu))
        print(f"  {results['zebra-index']}", flush=True)
    if any(step in args.steps for step in ("sru", "z3950", "federation")):
        with zebra.ZebraServer(workdir / "zebra", cpus=args.server_cpu) as zebra_server:
            if "sru" in args.steps or "z3950" in args.steps:
                server, sru_base, z3950_port = start_ours(network, store, args.server_cpu, args.workers,
                                                          args.result_cache)
                try:
                    for protocol in ("sru", "z3950"):
                        if protocol in args.steps:
                            print(f"{protocol} load ...", flush=True)
                            record(protocol, step_load(protocol, (sru_base, z3950_port), zebra_server, server.pid,
                                                       mix, args))
                finally:
                    server.stop()
            if "federation" in args.steps:
                print("federation overhead ...", flush=True)
                record("federation", step_federation(workdir, store, zebra_server, queries, args))
    report = markdown(results)
    (out.with_suffix(".md")).write_text(report, encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A closed-loop load generator: `concurrency` clients, each sending its next request as soon as
the previous answer has been read, for `duration` seconds after a warm-up.

    python -m benchmarks.load sru   --url http://127.0.0.1:8080/sru/union --queries mix.json -c 8
    python -m benchmarks.load z3950 --host 127.0.0.1 --port 2100 --database union --queries mix.json -c 8

SRU: searchRetrieve 1.2 with `maximumRecords` (10) MARCXML records over keep-alive connections.
Z39.50: one association per client (init once), then per request a search and a present of the
first `records` (10) records in USMARC. Every answer is checked (HTTP 200, no diagnostic; the
records asked for are there) and counted as an error otherwise. Prints one JSON object:
requests/s, latency percentiles (ms) overall and per query kind, errors, mean hits, and the
generator's own CPU time (if it nears the wall time, the generator was the limit).
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable

import aiohttp

from benchmarks.measure import percentile
from benchmarks.queries import BenchQuery, load
from protocols.z3950 import pdu as P
from protocols.z3950.client import Z3950Client

_NUMBER_OF_RECORDS = re.compile(rb"numberOfRecords>(\d+)<")
_DIAGNOSTIC = re.compile(rb"info:srw/diagnostic/1/(\d+)")
_RECORD_DATA = re.compile(rb"<(?:\w+:)?recordData\b")


@dataclass
class Sample:
    kind: str
    seconds: float
    hits: int
    ok: bool


@dataclass
class Collector:
    measuring: bool = False
    samples: list[Sample] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def add(self, sample: Sample, error: str = "") -> None:
        if not self.measuring:
            return
        self.samples.append(sample)
        if not sample.ok:
            self.errors[error or "error"] = self.errors.get(error or "error", 0) + 1


Request = Callable[[BenchQuery], Awaitable[tuple[int, str]]]   # -> (hits, error text or "")


async def closed_loop(request_for_client: Callable[[], Awaitable[tuple[Request, Callable[[], Awaitable[None]]]]],
                      queries: list[BenchQuery], *, concurrency: int, duration: float,
                      warmup: float) -> tuple[Collector, float]:
    collector = Collector()
    order = itertools.cycle(queries)
    stop = asyncio.Event()

    async def client() -> None:
        request, close = await request_for_client()
        try:
            while not stop.is_set():
                query = next(order)
                started = time.perf_counter()
                try:
                    hits, error = await request(query)
                except Exception as failure:      # an error is a result to count, not a reason to stop
                    hits, error = 0, f"{type(failure).__name__}: {failure}"[:200]
                collector.add(Sample(query.kind, time.perf_counter() - started, hits, not error), error)
        finally:
            await close()

    tasks = [asyncio.ensure_future(client()) for _ in range(concurrency)]
    await asyncio.sleep(warmup)
    collector.measuring = True
    started = time.perf_counter()
    await asyncio.sleep(duration)
    collector.measuring = False
    elapsed = time.perf_counter() - started
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return collector, elapsed


def sru_clients(url: str, records: int, schema: str, zebra: bool, concurrency: int):
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))

    async def make() -> tuple[Request, Callable[[], Awaitable[None]]]:
        async def request(query: BenchQuery) -> tuple[int, str]:
            params = {"version": "1.2", "operation": "searchRetrieve", "query": query.cql_for(zebra),
                      "maximumRecords": str(records), "recordSchema": schema}
            async with session.get(url, params=params) as response:
                body = await response.read()
            if response.status != 200:
                return 0, f"HTTP {response.status}"
            diagnostic = _DIAGNOSTIC.search(body)
            if diagnostic:
                return 0, f"diagnostic {diagnostic.group(1).decode()}"
            found = _NUMBER_OF_RECORDS.search(body)
            hits = int(found.group(1)) if found else 0
            if len(_RECORD_DATA.findall(body)) != min(hits, records):
                return hits, "record count"
            return hits, ""

        async def close() -> None:
            return None

        return request, close

    return make, session


def z3950_clients(host: str, port: int, database: str, records: int, zebra: bool):
    async def make() -> tuple[Request, Callable[[], Awaitable[None]]]:
        client = Z3950Client(host, port, database=database, timeout=60)
        await client.connect()
        names = itertools.cycle(("a", "b"))

        async def request(query: BenchQuery) -> tuple[int, str]:
            found = await client.search(query.pqf_for(zebra), result_set=next(names))
            if found.diagnostics:
                return 0, f"diagnostic {found.diagnostics[0].code}"
            if not found.count:
                return 0, ""
            wanted = min(found.count, records)
            presented = await client.present(found.result_set, 1, wanted, syntax=P.RecordSyntax.USMARC.value,
                                             element_set="F")
            got = presented.records or []
            if isinstance(got, P.Diagnostic) or len(got) != wanted:
                return found.count, "present"
            return found.count, ""

        async def close() -> None:
            await client.close()

        return request, close

    return make


def summarise(collector: Collector, elapsed: float, cpu_seconds: float) -> dict:
    samples = collector.samples
    latencies = sorted(s.seconds for s in samples)
    kinds: dict[str, dict] = {}
    for kind in sorted({s.kind for s in samples}):
        own = sorted(s.seconds for s in samples if s.kind == kind)
        ok = [s for s in samples if s.kind == kind and s.ok]
        kinds[kind] = {
            "requests": len(own),
            "p50_ms": round(percentile(own, 0.50) * 1000, 2),
            "p99_ms": round(percentile(own, 0.99) * 1000, 2),
            "mean_ms": round(sum(own) / len(own) * 1000, 2),
            "mean_hits": round(sum(s.hits for s in ok) / len(ok), 1) if ok else 0,
            "zero_hit_share": round(sum(1 for s in ok if s.hits == 0) / len(ok), 3) if ok else 0,
        }
    return {
        "requests": len(samples),
        "seconds": round(elapsed, 2),
        "rps": round(len(samples) / elapsed, 1) if elapsed else 0,
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p90_ms": round(percentile(latencies, 0.90) * 1000, 2),
        "p95_ms": round(percentile(latencies, 0.95) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "errors": dict(collector.errors),
        "error_count": sum(collector.errors.values()),
        "generator_cpu_seconds": round(cpu_seconds, 2),
        "kinds": kinds,
    }


async def main_async(args: argparse.Namespace) -> dict:
    queries = load(Path(args.queries))
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    if args.protocol == "sru":
        make, session = sru_clients(args.url, args.records, args.schema, args.zebra, args.concurrency)
        try:
            collector, elapsed = await closed_loop(make, queries, concurrency=args.concurrency,
                                                   duration=args.duration, warmup=args.warmup)
        finally:
            await session.close()
    else:
        make = z3950_clients(args.host, args.port, args.database, args.records, args.zebra)
        collector, elapsed = await closed_loop(make, queries, concurrency=args.concurrency,
                                               duration=args.duration, warmup=args.warmup)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage.ru_utime - usage_before.ru_utime) + (usage.ru_stime - usage_before.ru_stime)
    return summarise(collector, elapsed, cpu * elapsed / max(elapsed + args.warmup, 1e-9))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("protocol", choices=("sru", "z3950"))
    parser.add_argument("--url", help="SRU base URL of the database")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--database", default="union")
    parser.add_argument("--queries", required=True, help="the mix (JSON from benchmarks.queries)")
    parser.add_argument("--zebra", action="store_true", help="use the Zebra variant of each query")
    parser.add_argument("-c", "--concurrency", type=int, default=8)
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before measuring")
    parser.add_argument("--records", type=int, default=10, help="records per answer")
    parser.add_argument("--schema", default="marcxml", help="SRU recordSchema")
    args = parser.parse_args(argv)
    if args.protocol == "sru" and not args.url:
        parser.error("sru needs --url")
    if args.protocol == "z3950" and not args.port:
        parser.error("z3950 needs --port")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(json.dumps(asyncio.run(main_async(args)), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())

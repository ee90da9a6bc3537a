"""`federation probe-targets FILE [--query CQL] [--target CODE ...] [--json]`: try the rule set's
remote targets one by one, the way the `federated` database will ask them.

For each target (the enabled ones, or those named with `--target`, enabled or not) the CQL query
is mapped to the canonical query, translated for the target (its `index_map` / `bib1_map`),
sent, and up to `--records` records are read with the target's format, encoding and holdings
layout. One line per target says whether it answered, with its hit count, the time taken and
the first titles, or the reason it did not. Exit status 0 when every target answered, 1 when
one did not, 2 when the rule set or the query is wrong.

    federation probe-targets config/networks/gaoming.yaml --target FSLIB --query 'dc.title = 图书馆'
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import time
from typing import Any

from federation.cqlmap import CQLMapper
from federation.rules import ConfigError, load_network
from federation.targets import (
    QueryNotTranslatable,
    SharedSession,
    TargetAnswer,
    TargetProblem,
    create_adapter,
)
from indexer.indexes import IndexTable, load_index_table
from protocols.sru import SRUDiagnostic
from protocols.z3950.pqf import to_pqf

NAME = "probe-targets"
HELP = "try the rule set's remote SRU / Z39.50 targets with a query and report each one's answer"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="the rule set, e.g. config/networks/gaoming.yaml")
    parser.add_argument("--query", default="cql.serverChoice = 图书馆", help="CQL query (default: %(default)s)")
    parser.add_argument("--target", action="append", default=[], metavar="CODE",
                        help="probe only this target (repeatable; disabled targets too)")
    parser.add_argument("--records", type=int, default=3, metavar="N", help="records to read per target (default 3)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")


def run(args: argparse.Namespace) -> int:
    try:
        network = load_network(args.file)
    except ConfigError as error:
        print(str(error), file=sys.stderr)
        return 2
    table = load_index_table()
    try:
        query = CQLMapper(table).map_text(args.query).query
    except SRUDiagnostic as diagnostic:
        print(f"error: the query: {diagnostic}", file=sys.stderr)
        return 2
    known = {target.code: target for target in network.targets}
    unknown = [code for code in args.target if code not in known]
    if unknown:
        print(f"error: no target {', '.join(unknown)} in {args.file} (targets: {', '.join(known) or 'none'})",
              file=sys.stderr)
        return 2
    targets = [known[code] for code in args.target] or [t for t in network.targets if t.enabled]
    if not targets:
        print(f"{args.file}: no enabled targets (name one with --target to probe a disabled one)")
        return 0
    results = asyncio.run(_probe_all(network, table, targets, query, max(1, args.records)))
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=2))
    else:
        for result in results:
            print(render(result))
    return 0 if all(r["state"] == "ok" for r in results) else 1


async def _probe_all(network: Any, table: IndexTable, targets: list[Any], query: Any, records: int) -> list[dict]:
    session = SharedSession()
    policy = network.to_ingest_policy()
    try:
        return list(await asyncio.gather(*(
            _probe(dataclasses.replace(target, fetch_limit=records), table, policy, query, session)
            for target in targets)))
    finally:
        await session.close()


async def _probe(target: Any, table: IndexTable, policy: Any, query: Any, session: SharedSession) -> dict:
    result: dict[str, Any] = {"code": target.code, "name": target.name, "protocol": target.protocol,
                              "url": target.url, "state": "ok", "hits": None, "seconds": 0.0, "error": "",
                              "titles": [], "unreadable": []}
    adapter = create_adapter(target, table, policy, environ=os.environ, session=session)
    started = time.perf_counter()
    answer = TargetAnswer()
    try:
        translated = adapter.translate(query)
        result["translated"] = str(translated) if target.protocol == "sru" else to_pqf(translated)
        async with asyncio.timeout(target.timeout):
            await adapter.search(translated, answer, target.timeout)
    except QueryNotTranslatable as problem:
        result["state"], result["error"] = "unsupported", str(problem)
    except TimeoutError:
        result["state"], result["error"] = "timeout", f"no answer within {target.timeout:g} s"
    except TargetProblem as problem:
        result["state"], result["error"] = "failed", str(problem)
    result["seconds"] = round(time.perf_counter() - started, 3)
    result["hits"] = answer.total
    for remote in answer.records:
        if remote.incoming is None:
            result["unreadable"].append(remote.error)
        else:
            titles = remote.incoming.analysis.fields.get("title") or ["(no title)"]
            result["titles"].append(titles[0])
    return result


def render(result: dict) -> str:
    head = f"{result['code']} ({result['name']}, {result['protocol']} {result['url']}): {result['state']}"
    if result["state"] == "ok":
        head += f", {result['hits']} hits in {result['seconds']:g} s"
    lines = [head]
    if result.get("translated"):
        lines.append(f"    query sent: {result['translated']}")
    if result["error"]:
        lines.append(f"    {result['error']}")
    lines.extend(f"    - {title}" for title in result["titles"])
    lines.extend(f"    ! {problem}" for problem in result["unreadable"])
    return "\n".join(lines)

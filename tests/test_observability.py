"""Operations endpoints and metrics on a real server over a real (small) demo catalogue.

/metrics is scraped over HTTP and parsed with prometheus_client's own parser; the counts are
checked against the requests the test made (SRU, the JSON API, Z39.50 through our client).
/readyz is checked against a store that stops answering: an Elasticsearch store on the osmem
stand-in that is then shut down, and an embedded store that is closed.
"""
from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from federation.app import create_app
from federation.federated import SourceStatus
from federation.observability import (
    REQUEST_ID_HEADER,
    InstrumentedBackend,
    JsonLogFormatter,
    Metrics,
    observability,
)
from federation.rules import load_network
from federation.search import SearchService
from federation.z3950service import UnionBackend
from indexer.demo import write_demo_data
from indexer.elastic import ElasticsearchStore
from indexer.embedded import EmbeddedStore
from indexer.indexes import load_index_table
from indexer.ingest import IngestOptions, ingest
from indexer.model import Availability, ItemStatusUpdate
from indexer.query import MatchAll
from protocols.z3950 import pdu as P
from protocols.z3950.client import Z3950Client
from protocols.z3950.server import Z3950Server

ROOT = Path(__file__).resolve().parent.parent
NETWORK = ROOT / "config" / "networks" / "guangrao.yaml"
DEMO_RECORDS = 120


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """(sample name, labels) -> value, from the exposition format."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(parsed: dict, name: str, **labels: str) -> float:
    return parsed.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def network():
    return load_network(NETWORK)


@pytest.fixture(scope="module")
def table():
    return load_index_table()


@pytest.fixture(scope="module")
def demo_files(tmp_path_factory, network) -> list[Path]:
    out = tmp_path_factory.mktemp("observability-demo")
    write_demo_data(network.to_ingest_policy(), out, records=DEMO_RECORDS, seed=3)
    return sorted(out.glob("*.mrc"))


@pytest.fixture
async def store(tmp_path, table, network, demo_files):
    """An embedded store loaded with the demo files; the ingest is followed by the metrics
    under test (returned with the report)."""
    metrics = Metrics()
    store = EmbeddedStore(tmp_path / "store", table)
    await store.open()
    progress = metrics.ingest_progress()
    report = await ingest(demo_files, store, table, network.to_ingest_policy(),
                          IngestOptions(quarantine_path=tmp_path / "q.jsonl", batch_size=25), progress)
    progress.finished(report)
    await store.refresh()
    store.ingest_metrics = (metrics, report)
    yield store
    await store.close()


async def test_ingest_counters_match_the_report(store):
    metrics, report = store.ingest_metrics
    parsed = samples(metrics.render().decode())
    assert report.read == DEMO_RECORDS and report.reconciled
    for outcome in ("read", "added", "merged", "updated", "unchanged", "quarantined"):
        assert value(parsed, "union_ingest_records_total", outcome=outcome) == getattr(report, outcome), outcome
    assert value(parsed, "union_ingest_records_total", outcome="added") > 0
    assert value(parsed, "union_ingest_records_total", outcome="merged") > 0    # demo data has duplicates
    assert value(parsed, "union_ingest_runs_total") == 1


async def test_metrics_count_sru_and_api_requests(aiohttp_client, store, network, table):
    service = SearchService(network, table, store)
    metrics = Metrics()
    client = await aiohttp_client(create_app(service, extensions=[observability(service, metrics)]))
    hub = network.hub

    for query in ("dc.title=图书馆", "dc.creator=鲁迅 or dc.subject=农业"):
        response = await client.get("/sru/union", params={
            "version": "1.2", "operation": "searchRetrieve", "query": query, "maximumRecords": "10"})
        assert response.status == 200
        assert "searchRetrieveResponse" in await response.text()
    response = await client.get(f"/sru/{hub}", params={"version": "1.2", "operation": "searchRetrieve",
                                                        "query": "dc.title="})
    assert "info:srw/diagnostic/1/" in await response.text()
    response = await client.get("/sru/union", params={"version": "1.2", "operation": "searchRetrieve",
                                                       "query": "((dc.title=a"})
    assert "info:srw/diagnostic/1/13" in await response.text()
    response = await client.post(f"/sru/{hub}", data={"version": "1.2", "operation": "scan",
                                                       "scanClause": "dc.title=a"})
    assert "scanResponse" in await response.text()
    response = await client.get("/sru")
    assert "explainResponse" in await response.text()
    response = await client.get("/sru/no-such-database", params={"query": "dc.title=a"})
    assert response.status == 404
    response = await client.get("/api/v1/libraries")
    assert response.status == 200
    response = await client.get("/api/v1/records/no-such-record")
    assert response.status == 404

    scraped = await client.get("/metrics")
    assert scraped.status == 200
    assert scraped.headers["Content-Type"].startswith("text/plain")
    parsed = samples(await scraped.text())

    assert value(parsed, "union_requests_total", protocol="sru", operation="searchRetrieve", database="union") == 3
    assert value(parsed, "union_requests_total", protocol="sru", operation="searchRetrieve", database=hub) == 1
    assert value(parsed, "union_requests_total", protocol="sru", operation="scan", database=hub) == 1
    assert value(parsed, "union_requests_total", protocol="sru", operation="explain", database="union") == 1
    assert value(parsed, "union_requests_total", protocol="api", operation="libraries", database="-") == 1
    assert value(parsed, "union_requests_total", protocol="api", operation="record", database="-") == 1
    assert value(parsed, "union_diagnostics_total", protocol="sru", code="13") == 1
    assert value(parsed, "union_diagnostics_total", protocol="api", code="404") == 1
    # the empty term's diagnostic (27) and the unknown database's (1) are counted by their own codes
    sru_diagnostics = sum(v for (name, labels), v in parsed.items()
                          if name == "union_diagnostics_total" and ("protocol", "sru") in labels)
    assert sru_diagnostics == 3
    assert value(parsed, "union_request_duration_seconds_count", protocol="sru", operation="searchRetrieve") == 5
    assert value(parsed, "union_request_duration_seconds_bucket", protocol="sru", operation="searchRetrieve",
                 le="+Inf") == 5
    assert value(parsed, "union_request_duration_seconds_sum", protocol="sru", operation="searchRetrieve") > 0
    # the scrape itself and the health endpoints are not counted as traffic
    assert not any(name == "union_requests_total" and ("operation", "unmatched") in labels
                   for (name, labels) in parsed)
    assert value(parsed, "union_requests_total", protocol="sru", operation="searchRetrieve",
                 database="(unknown)") == 1
    assert value(parsed, "union_requests_in_flight", protocol="http") == 1     # the scrape itself


async def test_result_cache_counts_are_exported(aiohttp_client, store, network, table):
    service = SearchService(network, table, store)
    metrics = Metrics()
    client = await aiohttp_client(create_app(service, extensions=[observability(service, metrics)]))

    async def search(start: int) -> str:
        response = await client.get("/sru/union", params={
            "version": "1.2", "operation": "searchRetrieve", "query": "cql.allRecords=1",
            "maximumRecords": "10", "startRecord": str(start)})
        assert response.status == 200
        return await response.text()

    first = await search(1)
    assert await search(11) != first and await search(1) == first   # pages 2 and 1 again: kept
    parsed = samples(await (await client.get("/metrics")).text())
    assert value(parsed, "union_cache_misses_total", cache="search_results") == 1
    assert value(parsed, "union_cache_hits_total", cache="search_results") == 2
    assert value(parsed, "union_cache_entries", cache="search_results") == 1
    assert value(parsed, "union_cache_capacity", cache="search_results") == store.results.capacity > 0

    # cql.allRecords=1 is MatchAll: the same search, from the cache too.
    record = (await service.search("union", MatchAll(), limit=1)).records[0]
    await store.update_items([ItemStatusUpdate(record.items[0].barcode, Availability.ON_LOAN)])
    await search(1)                                                   # the catalogue changed: evaluated again
    parsed = samples(await (await client.get("/metrics")).text())
    assert value(parsed, "union_cache_hits_total", cache="search_results") == 3
    assert value(parsed, "union_cache_misses_total", cache="search_results") == 2


async def test_item_status_updates_are_counted(aiohttp_client, store, network, table):
    service = SearchService(network, table, store)
    metrics = Metrics()
    client = await aiohttp_client(create_app(service, extensions=[observability(service, metrics)]))
    record = (await service.search(network.hub, MatchAll(), limit=1)).records[0]
    barcode = next(i.barcode for i in record.items if i.library == network.hub and i.barcode)
    batch = {"items": [{"barcode": barcode, "status": "on_loan", "due_date": "2026-12-31"},
                       {"barcode": "NO-SUCH-BARCODE", "status": "on_loan"}]}
    response = await client.post("/api/v1/items/status", json=batch,
                                  headers={"Authorization": f"Bearer example-token-{network.hub}"})
    assert response.status == 200, await response.text()
    answer = await response.json()
    assert (answer["applied"], answer["rejected"]) == (1, 1)
    parsed = samples(await (await client.get("/metrics")).text())
    assert value(parsed, "union_item_status_updates_total", result="applied") == 1
    assert value(parsed, "union_item_status_updates_total", result="refused") == 1


async def test_request_ids_and_json_logs(aiohttp_client, store, network, table):
    service = SearchService(network, table, store)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter())
    inner = logging.getLogger("test.observability.handler")

    async def logs_inside(request: web.Request) -> web.Response:
        inner.warning("inside the handler")
        return web.Response(text="ok")

    def add_route(app: web.Application) -> None:
        app.router.add_get("/logs-inside", logs_inside)

    access = logging.getLogger("federation.access")
    for logger in (access, inner):
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        client = await aiohttp_client(create_app(service, extensions=[observability(service), add_route]))
        given = await client.get("/sru/union", params={"query": "dc.title=图书馆"},
                                 headers={REQUEST_ID_HEADER: "lb-42.a"})
        assert given.headers[REQUEST_ID_HEADER] == "lb-42.a"
        made = await client.get("/logs-inside", headers={REQUEST_ID_HEADER: "bad id\twith spaces"})
        made_id = made.headers[REQUEST_ID_HEADER]
        assert made_id != "bad id\twith spaces" and len(made_id) == 16
        other = await client.get("/logs-inside")
        assert other.headers[REQUEST_ID_HEADER] not in (made_id, "lb-42.a")
    finally:
        for logger in (access, inner):
            logger.removeHandler(handler)

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    sru_line = next(e for e in lines if e["logger"] == "federation.access" and e.get("protocol") == "sru")
    assert sru_line["request_id"] == "lb-42.a"
    assert sru_line["status"] == 200 and sru_line["operation"] == "searchRetrieve" and sru_line["database"] == "union"
    assert sru_line["seconds"] > 0 and "图书馆" in sru_line["path"] or "%E5%9B%BE" in sru_line["path"]
    inside = [e for e in lines if e["logger"] == "test.observability.handler"]
    assert [e["request_id"] for e in inside] == [made_id, other.headers[REQUEST_ID_HEADER]]
    assert all(e["level"] == "warning" and e["message"] == "inside the handler" for e in inside)


async def test_healthz_and_readyz_with_an_embedded_store(aiohttp_client, tmp_path, network, table):
    store = EmbeddedStore(tmp_path / "store", table)
    await store.open()
    service = SearchService(network, table, store)
    client = await aiohttp_client(create_app(service, extensions=[observability(service)]))
    health = await client.get("/healthz")
    assert health.status == 200 and (await health.json())["status"] == "ok"
    ready = await client.get("/readyz")
    body = await ready.json()
    assert ready.status == 200, body
    assert body["checks"]["store"]["ok"] and body["checks"]["config"]["ok"]
    assert network.id in body["checks"]["config"]["detail"]

    await store.close()
    ready = await client.get("/readyz")
    body = await ready.json()
    assert ready.status == 503
    assert body["status"] == "not ready" and body["checks"]["store"]["ok"] is False
    assert (await client.get("/healthz")).status == 200


async def test_readyz_fails_while_the_elasticsearch_store_is_unreachable(aiohttp_client, network, table):
    from osmem_server import OsmemServer

    server = await asyncio.to_thread(OsmemServer.start, freeze=False, japanese=False, addr="127.0.0.1:0")
    try:
        store = ElasticsearchStore(server.url, table, index_prefix="readyz-test", flavor="opensearch")
        await store.open()
        try:
            service = SearchService(network, table, store)
            client = await aiohttp_client(create_app(service, extensions=[observability(service)]))
            ready = await client.get("/readyz")
            assert ready.status == 200, await ready.text()

            await asyncio.to_thread(server.close)
            ready = await client.get("/readyz")
            body = await ready.json()
            assert ready.status == 503
            assert body["checks"]["store"] == {"ok": False, "detail": "ElasticsearchStore does not answer"}
            assert body["checks"]["config"]["ok"] is True
            assert (await client.get("/healthz")).status == 200
            # SRU keeps answering, with a diagnostic rather than a crash
            sru = await client.get("/sru/union", params={"query": "dc.title=a"})
            assert sru.status == 200 and "info:srw/diagnostic/1/" in await sru.text()
        finally:
            await store.close()
    finally:
        await asyncio.to_thread(server.close)


async def test_z3950_operations_and_diagnostics_are_counted(store, network, table):
    service = SearchService(network, table, store)
    metrics = Metrics()
    server = await Z3950Server(InstrumentedBackend(UnionBackend(service), metrics)).start("127.0.0.1", 0)
    try:
        async with Z3950Client("127.0.0.1", server.port, database="union") as client:
            found = await client.search("@attr 1=4 记")      # in 15 of the 120 demo titles
            assert not found.diagnostics and found.count > 0
            presented = await client.present(found.result_set, 1, min(found.count, 3))
            assert len(presented.records) == min(found.count, 3)
            missing = await client.search("@attr 1=4 a", databases=["no-such-database"])
            assert [d.code for d in missing.diagnostics] == [235]
            unsupported = await client.search("@attr 1=9999 a")
            assert unsupported.diagnostics
            unsupported_code = unsupported.diagnostics[0].code
    finally:
        server.close()
        await server.wait_closed()

    parsed = samples(metrics.render().decode())
    assert value(parsed, "union_requests_total", protocol="z3950", operation="init", database="-") == 1
    assert value(parsed, "union_requests_total", protocol="z3950", operation="search", database="union") == 2
    assert value(parsed, "union_requests_total", protocol="z3950", operation="search",
                 database="(unknown)") == 1
    assert value(parsed, "union_requests_total", protocol="z3950", operation="present", database="union") == 1
    assert value(parsed, "union_diagnostics_total", protocol="z3950", code="235") == 1
    assert value(parsed, "union_diagnostics_total", protocol="z3950", code=str(unsupported_code)) >= 1
    assert value(parsed, "union_request_duration_seconds_count", protocol="z3950", operation="search") == 3
    assert value(parsed, "union_requests_in_flight", protocol="z3950") == 0


def test_federation_targets_latency_errors_and_circuit_state():
    metrics = Metrics()
    metrics.observe_federation([
        SourceStatus("local", "广饶县图书馆", "local", state="ok", hits=3, fetched=3, seconds=0.01),
        SourceStatus("DYL", "东营市图书馆", "sru", state="ok", hits=40, fetched=20, seconds=0.2),
        SourceStatus("ZB", "淄博", "z3950", state="timeout", seconds=10.0, error="no answer within 10 s"),
    ])
    metrics.observe_federation([
        SourceStatus("ZB", "淄博", "z3950", state="skipped",
                     error="circuit breaker open after 3 consecutive failures; next probe in 30 s"),
    ])
    parsed = samples(metrics.render().decode())
    assert value(parsed, "union_federation_target_searches_total", target="DYL", state="ok") == 1
    assert value(parsed, "union_federation_target_searches_total", target="ZB", state="timeout") == 1
    assert value(parsed, "union_federation_target_searches_total", target="ZB", state="skipped") == 1
    assert value(parsed, "union_federation_target_records_total", target="DYL") == 20
    assert value(parsed, "union_federation_target_duration_seconds_count", target="ZB", protocol="z3950") == 1
    assert value(parsed, "union_federation_target_duration_seconds_sum", target="DYL", protocol="sru") == 0.2
    assert value(parsed, "union_federation_circuit_open", target="ZB") == 1
    assert value(parsed, "union_federation_circuit_open", target="DYL") == 0
    assert not any(("target", "local") in labels for (_, labels) in parsed)

    metrics.observe_federation([SourceStatus("ZB", "淄博", "z3950", state="ok", hits=1, fetched=1, seconds=0.1)])
    assert value(samples(metrics.render().decode()), "union_federation_circuit_open", target="ZB") == 0


def test_two_apps_keep_separate_registries():
    first, second = Metrics(), Metrics()
    first.observe_request("sru", "searchRetrieve", "union", 0.01)
    assert value(samples(first.render().decode()), "union_requests_total",
                 protocol="sru", operation="searchRetrieve", database="union") == 1
    assert value(samples(second.render().decode()), "union_requests_total",
                 protocol="sru", operation="searchRetrieve", database="union") == 0


def test_federation_serve_exposes_metrics_health_and_json_logs(tmp_path, network, table, demo_files):
    """The real `federation serve` process: its /metrics count SRU and Z39.50 traffic, /readyz and
    /healthz answer, and `--log-format json` writes one JSON access line per request."""

    async def load() -> None:
        store = EmbeddedStore(tmp_path / "store", table)
        await store.open()
        await ingest(demo_files, store, table, network.to_ingest_policy(),
                     IngestOptions(quarantine_path=tmp_path / "q.jsonl"))
        await store.close()

    asyncio.run(load())
    federation = Path(sys.executable).with_name("federation")
    process = subprocess.Popen(
        [str(federation), "serve", "--config", str(NETWORK), "--data-dir", str(tmp_path / "store"),
         "--http", "127.0.0.1:0", "--z3950", "127.0.0.1:0", "--log-format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        banner = ""
        while "Z39.50:" not in banner:
            line = process.stdout.readline()
            assert line, banner + process.stderr.read()
            banner += line
        base = re.search(r"SRU:\s+(http://127\.0\.0\.1:\d+)/sru/union", banner).group(1)
        z3950_port = int(re.search(r"Z39\.50: tcp:127\.0\.0\.1:(\d+)", banner).group(1))

        def get(path: str, **headers: str):
            request = urllib.request.Request(base + path, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    return response.status, dict(response.headers), response.read().decode()
            except urllib.error.HTTPError as error:
                return error.code, dict(error.headers), error.read().decode()

        status, headers, body = get("/sru/union?version=1.2&operation=searchRetrieve&query=" + quote("dc.title=记"),
                                    **{REQUEST_ID_HEADER: "serve-test-1"})
        assert status == 200 and headers[REQUEST_ID_HEADER] == "serve-test-1" and "numberOfRecords" in body
        assert get("/healthz")[0] == 200
        ready = get("/readyz")
        assert ready[0] == 200 and json.loads(ready[2])["status"] == "ready"

        async def z3950() -> int:
            async with Z3950Client("127.0.0.1", z3950_port, database="union") as client:
                found = await client.search("@attr 1=4 记")
                await client.present(found.result_set, 1, 2)
                return found.count

        assert asyncio.run(z3950()) > 0
        status, headers, text = get("/metrics")
        parsed = samples(text)
        assert value(parsed, "union_requests_total", protocol="sru", operation="searchRetrieve", database="union") == 1
        assert value(parsed, "union_requests_total", protocol="z3950", operation="search", database="union") == 1
        assert value(parsed, "union_requests_total", protocol="z3950", operation="present", database="union") == 1
        assert value(parsed, "union_requests_total", protocol="z3950", operation="init", database="-") == 1

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
        logs = [json.loads(line) for line in process.stderr.read().splitlines() if line.startswith("{")]
        access = [entry for entry in logs if entry["logger"] == "federation.access"]
        assert [entry["request_id"] for entry in access if entry["protocol"] == "sru"] == ["serve-test-1"]
        assert all(entry["status"] == 200 and entry["seconds"] > 0 for entry in access)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


def test_serve_workers_share_the_sru_port(tmp_path, network, table, demo_files):
    """`serve --workers 2`: two processes answer on one SRU port (each scrape of /metrics over a
    new connection names the process that answered), both also listen on one Z39.50 port, each
    has the `--result-cache` size it was given, and SIGTERM to the parent stops them all."""

    async def load() -> None:
        store = EmbeddedStore(tmp_path / "store", table)
        await store.open()
        await ingest(demo_files, store, table, network.to_ingest_policy(),
                     IngestOptions(quarantine_path=tmp_path / "q.jsonl"))
        await store.close()

    asyncio.run(load())
    federation = Path(sys.executable).with_name("federation")
    process = subprocess.Popen(
        [str(federation), "serve", "--config", str(NETWORK), "--data-dir", str(tmp_path / "store"),
         "--http", "127.0.0.1:0", "--z3950", "127.0.0.1:0", "--workers", "2", "--result-cache", "7"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        banner = ""
        while "Workers:" not in banner:
            line = process.stdout.readline()
            assert line, banner + process.stderr.read()
            banner += line
        base = re.search(r"SRU:\s+(http://127\.0\.0\.1:\d+)/sru/union", banner).group(1)
        z3950_port = int(re.search(r"Z39\.50: tcp:127\.0\.0\.1:(\d+)", banner).group(1))
        workers = {int(pid) for pid in re.search(r"Workers: 2 processes \((\d+), (\d+)\)", banner).groups()}

        answered_by = set()
        for _ in range(40):       # a new connection each time: the kernel spreads them over the workers
            with urllib.request.urlopen(base + "/metrics", timeout=30) as response:
                scraped = samples(response.read().decode())
                answered_by.add(int(value(scraped, "union_process_id")))
                assert value(scraped, "union_cache_capacity", cache="search_results") == 7
            with urllib.request.urlopen(base + "/sru/union?query=" + quote("dc.title=记"), timeout=30) as response:
                assert b"numberOfRecords" in response.read()
        assert answered_by == workers

        async def z3950() -> int:
            async with Z3950Client("127.0.0.1", z3950_port, database="union") as client:
                return (await client.search("@attr 1=4 记")).count

        assert all(count > 0 for count in [asyncio.run(z3950()) for _ in range(6)])
        # every worker listens on the Z39.50 port (SO_REUSEPORT), not only the first
        assert {pid for pid in workers if _listens_on(pid, z3950_port)} == workers
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        for pid in workers:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


def _listens_on(pid: int, port: int) -> bool:
    """Whether process `pid` holds a listening TCP socket on `port` (from /proc: no tool needed)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            for line in handle.readlines()[1:]:
                parts = line.split()
                if int(parts[1].rsplit(":", 1)[1], 16) == port and parts[3] == "0A":
                    inodes.add(parts[9])
    fds = Path(f"/proc/{pid}/fd")
    return any(os.readlink(fd) in {f"socket:[{inode}]" for inode in inodes} for fd in fds.iterdir())


def test_sigterm_lets_in_flight_requests_finish(tmp_path):
    """A federated search waiting on a slow target when SIGTERM arrives still gets its full
    answer; then the server exits 0."""
    import http.server
    import threading
    import time

    import yaml

    asked = threading.Event()

    class SlowTarget(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.set()
            time.sleep(2.0)
            body = (b'<?xml version="1.0"?><searchRetrieveResponse xmlns="http://www.loc.gov/zing/srw/">'
                    b"<version>1.2</version><numberOfRecords>0</numberOfRecords></searchRetrieveResponse>")
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            return None

    target = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowTarget)
    threading.Thread(target=target.serve_forever, daemon=True).start()
    config = yaml.safe_load(NETWORK.read_text(encoding="utf-8"))
    config["targets"] = [{"code": "SLOW", "name": "slow target", "protocol": "sru", "format": "marc21",
                          "url": f"http://127.0.0.1:{target.server_address[1]}/db", "timeout": 10}]
    network_file = tmp_path / "network.yaml"
    network_file.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    federation = Path(sys.executable).with_name("federation")
    process = subprocess.Popen(
        [str(federation), "serve", "--config", str(network_file), "--data-dir", str(tmp_path / "store"),
         "--http", "127.0.0.1:0", "--z3950", "127.0.0.1:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        banner = ""
        while "Z39.50:" not in banner:
            line = process.stdout.readline()
            assert line, banner + process.stderr.read()
            banner += line
        base = re.search(r"SRU:\s+(http://127\.0\.0\.1:\d+)/sru/union", banner).group(1)
        answer: dict = {}

        def ask() -> None:
            url = base + "/sru/federated?version=1.2&operation=searchRetrieve&query=" + quote("dc.title=记")
            with urllib.request.urlopen(url, timeout=60) as response:
                answer["status"], answer["body"] = response.status, response.read().decode()

        asking = threading.Thread(target=ask)
        asking.start()
        assert asked.wait(30)           # the search is waiting on the slow target now
        process.send_signal(signal.SIGTERM)
        asking.join(60)
        assert answer.get("status") == 200, answer
        assert "<numberOfRecords>0</numberOfRecords>" in answer["body"].replace("zs:", "").replace("srw:", "")
        assert process.wait(timeout=60) == 0
    finally:
        target.shutdown()
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()


async def test_federated_searches_are_counted_per_target(aiohttp_client, store, network, table):
    """The served `federated` database reports each search's targets once: an answering SRU
    target as ok with its latency, a refusing one as failed; paging a cached result set is not
    counted again."""
    import dataclasses
    import http.server
    import threading

    import socket

    from federation.observability import ObservedFederatedSearch
    from federation.rules import Target

    class EmptyTarget(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = (b'<?xml version="1.0"?><searchRetrieveResponse xmlns="http://www.loc.gov/zing/srw/">'
                    b"<version>1.2</version><numberOfRecords>0</numberOfRecords></searchRetrieveResponse>")
            self.send_response(200)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            return None

    answering = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EmptyTarget)
    threading.Thread(target=answering.serve_forever, daemon=True).start()
    with socket.socket() as closed:             # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        refused_port = closed.getsockname()[1]
    targets = [
        Target(code="UP", name="answering", protocol="sru", url=f"http://127.0.0.1:{answering.server_address[1]}/db",
               timeout=5, retries=0),
        Target(code="DOWN", name="refusing", protocol="sru", url=f"http://127.0.0.1:{refused_port}/db",
               timeout=5, retries=0),
    ]
    with_targets = dataclasses.replace(network, targets=targets)
    metrics = Metrics()
    service = SearchService(with_targets, table, store)
    federated = ObservedFederatedSearch(with_targets, table, store, metrics=metrics)
    federated.register(service)
    try:
        client = await aiohttp_client(create_app(service, extensions=[observability(service, metrics)]))
        for start in ("1", "1", "3"):          # one search, then the same result set again and paged
            response = await client.get("/sru/federated", params={
                "version": "1.2", "operation": "searchRetrieve", "query": "dc.title=记",
                "maximumRecords": "2", "startRecord": start})
            assert response.status == 200
        parsed = samples(await (await client.get("/metrics")).text())
    finally:
        await federated.aclose()
        answering.shutdown()
    assert value(parsed, "union_federation_target_searches_total", target="UP", state="ok") == 1
    assert value(parsed, "union_federation_target_searches_total", target="DOWN", state="failed") == 1
    assert value(parsed, "union_federation_target_duration_seconds_count", target="UP", protocol="sru") == 1
    assert value(parsed, "union_federation_circuit_open", target="DOWN") == 0
    assert value(parsed, "union_requests_total", protocol="sru", operation="searchRetrieve", database="federated") == 3

"""Operations: Prometheus metrics, health and readiness, request ids and structured JSON logs.

    app = create_app(service, extensions=[observability(service)])

installs, on the application being assembled:
  GET /metrics   the Prometheus text format of the app's own `CollectorRegistry` (never the
                 process-global one, so two apps in one process, as in the tests, never mix)
  GET /healthz   200 while the process serves requests
  GET /readyz    200 when the configuration is loaded and the store answers a ping within
                 `READY_TIMEOUT`; 503 with the failing check otherwise
and a middleware that gives every request an id (the client's `X-Request-ID` when it is a
sane token, else a fresh one), returns it in the `X-Request-ID` header, counts and times the
request by protocol, operation and database, counts the diagnostics in the answer, and writes
one JSON access-log line. `JsonLogFormatter` makes every other log line of the request carry
the same id.

The Z39.50 server reports through `InstrumentedBackend`, a wrapper around any
`protocols.z3950.server.Backend`; the federated search through `ObservedFederatedSearch` (or
`Metrics.observe_federation` with a search's source statuses);
ingest runs through `Metrics.ingest_progress` (a `ProgressCallback`) and `write_textfile`.
"""
from __future__ import annotations

import asyncio
import collections
import contextvars
import json
import logging
import os
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
    write_to_textfile,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from federation.federated import FederatedResultSet, FederatedSearch
from indexer.ingest import REPORT_KEYS, IngestReport, ProgressCallback
from indexer.query import Query, SortKey
from indexer.store import CacheCounts
from protocols.z3950 import pdu as P
from protocols.z3950.diagnostics import Bib1Diagnostic
from protocols.z3950.server import Backend, ResultSetHandle, ScanOutcome, SessionInfo

access_log = logging.getLogger("federation.access")
log = logging.getLogger(__name__)

READY_TIMEOUT = 2.0
REQUEST_ID_HEADER = "X-Request-ID"
REQUEST_ID_KEY = web.RequestKey("request_id", str)   # where the middleware keeps the id
# Client-supplied ids are echoed into logs and headers: accept plain tokens only.
_REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# Seconds; from a cached 1 ms answer to a federated search at its deadline.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
OPS_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})
# The database label of a name the server does not serve: clients choose database names, and
# every distinct label value is a new time series.
UNKNOWN_DATABASE = "(unknown)"
BREAKER_OPEN_TEXT = "circuit breaker open"
INGEST_OUTCOMES = (*REPORT_KEYS, "withdrawn", "deleted_records")

# The id of the request being served, for log lines written anywhere beneath the handler.
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_SRU_OPERATION = re.compile(rb"<(?:[\w.-]+:)?(searchRetrieve|scan|explain)Response\b")
_SRU_DIAGNOSTIC = re.compile(rb"<(?:[\w.-]+:)?uri>\s*info:srw/diagnostic/1/(\d+)\s*<")
_SRU_DIAGNOSTIC_MARK = b"info:srw/diagnostic/1/"


class Metrics:
    """Every metric the server exports, in one registry owned by this object."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "union_requests", "Requests answered, by protocol (sru, z3950, api), operation and database",
            ("protocol", "operation", "database"), registry=r)
        self.latency = Histogram(
            "union_request_duration_seconds", "Time to answer a request, by protocol and operation",
            ("protocol", "operation"), buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge(
            "union_requests_in_flight", "Requests being answered now", ("protocol",), registry=r)
        self.diagnostics = Counter(
            "union_diagnostics", "Diagnostics returned, by protocol and code (SRU or Bib-1 code, HTTP status for api)",
            ("protocol", "code"), registry=r)
        self.errors = Counter(
            "union_request_errors", "Requests that failed inside the server (logged with their traceback)",
            ("protocol", "operation"), registry=r)
        self.target_latency = Histogram(
            "union_federation_target_duration_seconds", "Time a federated target took to answer, by target",
            ("target", "protocol"), buckets=LATENCY_BUCKETS, registry=r)
        self.target_outcomes = Counter(
            "union_federation_target_searches", "Federated searches per target by outcome "
            "(ok, partial, failed, timeout, skipped, unsupported)",
            ("target", "state"), registry=r)
        self.target_hits = Counter(
            "union_federation_target_records", "Records fetched from each federated target", ("target",), registry=r)
        self.circuit_open = Gauge(
            "union_federation_circuit_open", "1 while a target's circuit breaker is open (requests skipped)",
            ("target",), registry=r)
        self.ingest_records = Counter(
            "union_ingest_records", "Records read by ingest runs, by outcome (added, merged, updated, unchanged, "
            "quarantined); withdrawn and deleted_records count contributions and union records removed",
            ("outcome",), registry=r)
        self.ingest_runs = Counter("union_ingest_runs", "Ingest runs finished", registry=r)
        self.item_updates = Counter(
            "union_item_status_updates", "Live item status updates applied, by result", ("result",), registry=r)
        # With `serve --workers N` every process keeps its own metrics; the pid says whose a scrape got.
        self.process_id = Gauge("union_process_id", "The id of the server process these metrics belong to",
                                registry=r)
        self.process_id.set(os.getpid())
        ProcessCollector(registry=r)
        self._caches = _CacheCollector()
        r.register(self._caches)

    def watch_caches(self, caches: Callable[[], Mapping[str, CacheCounts]]) -> None:
        """Export read caches (name -> `indexer.store.CacheCounts`, asked at each scrape)."""
        if caches not in self._caches.sources:
            self._caches.sources.append(caches)

    # -- requests -------------------------------------------------------------------------
    def observe_request(self, protocol: str, operation: str, database: str, seconds: float,
                        diagnostics: Iterable[int | str] = ()) -> None:
        self.requests.labels(protocol, operation, database).inc()
        self.latency.labels(protocol, operation).observe(seconds)
        for code in diagnostics:
            self.diagnostics.labels(protocol, str(code)).inc()

    # -- federation -----------------------------------------------------------------------
    def observe_federation(self, statuses: Iterable[Any]) -> None:
        """Record one federated search from its `federation.federated.SourceStatus` list.

        A target skipped because its breaker is open sets the circuit gauge; any other
        outcome of a remote target clears it (the breaker let the request through)."""
        for status in statuses:
            if status.protocol == "local":
                continue
            code = status.code
            self.target_outcomes.labels(code, status.state).inc()
            if status.state == "skipped" and BREAKER_OPEN_TEXT in status.error:
                self.circuit_open.labels(code).set(1)
                continue
            self.circuit_open.labels(code).set(0)
            if status.state != "unsupported":
                self.target_latency.labels(code, status.protocol).observe(status.seconds)
            if status.fetched:
                self.target_hits.labels(code).inc(status.fetched)

    def set_circuit_states(self, states: Mapping[str, bool]) -> None:
        """target code -> breaker open, for a backend that can report its breakers directly."""
        for code, is_open in states.items():
            self.circuit_open.labels(code).set(1 if is_open else 0)

    # -- ingest ---------------------------------------------------------------------------
    def ingest_progress(self, then: ProgressCallback | None = None) -> "IngestProgress":
        """A progress callback for `indexer.ingest.ingest` that counts what each call adds
        (the report it receives is cumulative), then calls `then`; `finished(report)` at the
        end of the run counts the rest and the run."""
        return IngestProgress(self, then)

    def observe_ingest(self, report: IngestReport) -> None:
        """A finished run whose progress was not followed: count it whole."""
        IngestProgress(self).finished(report)

    def observe_item_updates(self, applied: int, refused: int) -> None:
        """One batch of live status updates: items applied, and items refused (unknown
        barcodes, items outside the sender's scope, and the rest of a batch refused whole)."""
        if applied:
            self.item_updates.labels("applied").inc(applied)
        if refused:
            self.item_updates.labels("refused").inc(refused)

    # -- output ---------------------------------------------------------------------------
    def render(self) -> bytes:
        return generate_latest(self.registry)

    def write_textfile(self, path: str | Path) -> None:
        """The metrics in node_exporter's textfile-collector format (for batch runs like ingest)."""
        write_to_textfile(str(path), self.registry)


class IngestProgress:
    def __init__(self, metrics: Metrics, then: ProgressCallback | None = None):
        self.metrics = metrics
        self.then = then
        self.seen = dict.fromkeys(INGEST_OUTCOMES, 0)

    def __call__(self, report: IngestReport, **kwargs: Any) -> None:
        self._count(report)
        if self.then is not None:
            self.then(report, **kwargs)

    def finished(self, report: IngestReport) -> None:
        self._count(report)
        self.metrics.ingest_runs.inc()

    def _count(self, report: IngestReport) -> None:
        for key in INGEST_OUTCOMES:
            now = getattr(report, key)
            if now > self.seen[key]:
                self.metrics.ingest_records.labels(key).inc(now - self.seen[key])
                self.seen[key] = now


# -- request ids and JSON logs -----------------------------------------------------------------
def request_id_for(request: web.Request) -> str:
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    if _REQUEST_ID_PATTERN.fullmatch(offered):
        return offered
    return secrets.token_hex(8)


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, the request id
    when the line was written while serving a request, every `extra` field, and the traceback."""

    _STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None) or current_request_id.get()
        if request_id:
            entry["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in self._STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_json_logging(level: int = logging.INFO, stream: Any = None) -> logging.Handler:
    """Send the root logger's output to `stream` (stderr) as JSON lines; returns the handler."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


# -- the HTTP side -----------------------------------------------------------------------------
@dataclass(frozen=True)
class RequestLabels:
    protocol: str
    operation: str
    database: str


DatabaseCheck = Callable[[str], bool]


def _labels(request: web.Request, response: web.StreamResponse | None, is_database: DatabaseCheck) -> RequestLabels:
    path = request.path
    match_info = request.match_info
    if path == "/sru" or path.startswith("/sru/"):
        database = match_info.get("database") or "union"
        if not is_database(database):
            database = UNKNOWN_DATABASE
        operation = "unknown"
        body = getattr(response, "body", None)
        if isinstance(body, bytes):
            found = _SRU_OPERATION.search(body, 0, 2048)
            if found:
                operation = found.group(1).decode()
        return RequestLabels("sru", operation, database)
    route = match_info.route if match_info is not None else None
    name = getattr(route, "name", None) if route is not None else None
    if name:
        return RequestLabels("api", name, "-")
    return RequestLabels("http", "unmatched", "-")


def _diagnostic_codes(labels: RequestLabels, response: web.StreamResponse | None, status: int) -> list[int | str]:
    if labels.protocol == "sru":
        body = getattr(response, "body", None)
        if isinstance(body, bytes) and _SRU_DIAGNOSTIC_MARK in body:
            return [int(code) for code in _SRU_DIAGNOSTIC.findall(body)]
        return []
    if status >= 400:
        return [status]
    return []


def observability_middleware(metrics: Metrics, is_database: DatabaseCheck = lambda name: True
                             ) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def middleware(request: web.Request, handler) -> web.StreamResponse:
        request_id = request_id_for(request)
        request[REQUEST_ID_KEY] = request_id
        token = current_request_id.set(request_id)
        started = time.perf_counter()
        response: web.StreamResponse | None = None
        status = 500
        protocol_gauge = metrics.in_flight.labels("http")
        protocol_gauge.inc()
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as http_error:
            status = http_error.status
            response = http_error
            raise
        except asyncio.CancelledError:
            status = 499                      # the client went away (nginx's convention)
            raise
        except Exception:
            status = 500
            raise
        finally:
            protocol_gauge.dec()
            seconds = time.perf_counter() - started
            if request.path not in OPS_PATHS:
                labels = _labels(request, response, is_database)
                codes = _diagnostic_codes(labels, response, status)
                metrics.observe_request(labels.protocol, labels.operation, labels.database, seconds, codes)
                if status >= 500:
                    metrics.errors.labels(labels.protocol, labels.operation).inc()
                access_log.info(
                    "%s %s %d %.1f ms id=%s", request.method, request.path_qs, status, seconds * 1000, request_id,
                    extra={
                        "request_id": request_id, "method": request.method, "path": request.path_qs,
                        "status": status, "seconds": round(seconds, 6), "protocol": labels.protocol,
                        "operation": labels.operation, "database": labels.database,
                        "diagnostics": codes, "remote": request.remote,
                    },
                )
            current_request_id.reset(token)

    return middleware


async def _send_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: the id goes out with every answer, streamed ones and errors included."""
    request_id = request.get(REQUEST_ID_KEY)
    if request_id:
        response.headers[REQUEST_ID_HEADER] = request_id


ReadyCheck = Callable[[], Awaitable[tuple[bool, str]]]


class _CacheCollector:
    """union_cache_hits / misses / entries by cache, read at scrape time from the caches' own counts."""

    def __init__(self) -> None:
        self.sources: list[Callable[[], Mapping[str, CacheCounts]]] = []

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator[Any]:
        hits = CounterMetricFamily("union_cache_hits", "Answers a read cache gave", labels=("cache",))
        misses = CounterMetricFamily("union_cache_misses", "Lookups a read cache could not answer", labels=("cache",))
        entries = GaugeMetricFamily("union_cache_entries", "Entries a read cache holds", labels=("cache",))
        capacity = GaugeMetricFamily("union_cache_capacity", "Entries a read cache may hold", labels=("cache",))
        for source in self.sources:
            for name, counts in source().items():
                hits.add_metric((name,), counts.hits)
                misses.add_metric((name,), counts.misses)
                entries.add_metric((name,), counts.entries)
                capacity.add_metric((name,), counts.capacity)
        yield from (hits, misses, entries, capacity)


class HealthEndpoints:
    """/healthz, /readyz and /metrics for one application."""

    def __init__(self, metrics: Metrics, checks: Mapping[str, ReadyCheck], *, timeout: float = READY_TIMEOUT):
        self.metrics = metrics
        self.checks = dict(checks)
        self.timeout = timeout

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        results: dict[str, dict[str, Any]] = {}
        ready = True
        for name, check in self.checks.items():
            try:
                ok, detail = await asyncio.wait_for(check(), self.timeout)
            except asyncio.TimeoutError:
                ok, detail = False, f"no answer within {self.timeout:g} s"
            except Exception as error:   # a readiness probe must answer, whatever the check hit
                ok, detail = False, f"{type(error).__name__}: {error}"
            results[name] = {"ok": ok, "detail": detail}
            ready = ready and ok
        return web.json_response({"status": "ready" if ready else "not ready", "checks": results},
                                 status=200 if ready else 503)

    async def metrics_page(self, request: web.Request) -> web.Response:
        response = web.Response(body=self.metrics.render())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response


def service_checks(service: Any) -> dict[str, ReadyCheck]:
    """The readiness checks of a `SearchService`: its rule set and index table are loaded, its
    store answers a ping."""

    async def config() -> tuple[bool, str]:
        network = getattr(service, "network", None)
        table = getattr(service, "table", None)
        if network is None or table is None:
            return False, "no rule set or index table loaded"
        return True, f"network {network.id}, {len(service.databases())} databases"

    async def store() -> tuple[bool, str]:
        if await service.store.ping():
            return True, type(service.store).__name__
        return False, f"{type(service.store).__name__} does not answer"

    return {"config": config, "store": store}


METRICS_KEY = web.AppKey("metrics", Metrics)
HEALTH_KEY = web.AppKey("health", HealthEndpoints)


def observability(service: Any, metrics: Metrics | None = None, *,
                  extra_checks: Mapping[str, ReadyCheck] | None = None) -> Callable[[web.Application], None]:
    """An extension for `federation.app.create_app`: the routes and the middleware."""

    def install(app: web.Application) -> None:
        install_observability(app, service, metrics, extra_checks=extra_checks)

    return install


def install_observability(app: web.Application, service: Any, metrics: Metrics | None = None, *,
                          extra_checks: Mapping[str, ReadyCheck] | None = None) -> Metrics:
    metrics = metrics if metrics is not None else Metrics()
    metrics.watch_caches(service.store.caches)
    checks = service_checks(service)
    checks.update(extra_checks or {})
    endpoints = HealthEndpoints(metrics, checks)
    app[METRICS_KEY] = metrics
    app[HEALTH_KEY] = endpoints
    app.middlewares.append(observability_middleware(metrics, lambda name: service.database(name) is not None))
    app.on_response_prepare.append(_send_request_id)
    app.router.add_get("/healthz", endpoints.healthz)
    app.router.add_get("/readyz", endpoints.readyz)
    app.router.add_get("/metrics", endpoints.metrics_page)
    return metrics


# -- the federation ----------------------------------------------------------------------------
class ObservedFederatedSearch(FederatedSearch):
    """`FederatedSearch` that reports each search's per-source outcome to `metrics` once (paging
    through a cached result set is not a new search)."""

    def __init__(self, *args: Any, metrics: Metrics, remember: int = 1024, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.metrics = metrics
        self._remember = remember
        self._observed: collections.OrderedDict[str, None] = collections.OrderedDict()

    async def result_set_for(self, query: Query, sort: tuple[SortKey, ...]) -> FederatedResultSet:
        result_set = await super().result_set_for(query, sort)
        if result_set.id not in self._observed:
            self._observed[result_set.id] = None
            while len(self._observed) > self._remember:
                self._observed.popitem(last=False)
            self.metrics.observe_federation(result_set.statuses)
        return result_set


# -- the Z39.50 side ---------------------------------------------------------------------------
def _z3950_database(result_set: ResultSetHandle) -> str:
    return str(getattr(result_set, "database", "-"))


class InstrumentedBackend:
    """A `protocols.z3950.server.Backend` that counts and times each operation of the backend
    it wraps, and the Bib-1 diagnostics it raises or returns in place of records."""

    def __init__(self, backend: Backend, metrics: Metrics, *, is_database: DatabaseCheck | None = None):
        self.backend = backend
        self.metrics = metrics
        if is_database is None:
            service = getattr(backend, "service", None)
            is_database = (lambda name: service.database(name) is not None) if service is not None else (lambda name: True)
        self.is_database = is_database

    def _database_label(self, databases: Sequence[str]) -> str:
        if not databases:
            return "-"
        return ",".join(name if self.is_database(name) else UNKNOWN_DATABASE for name in databases)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)

    def record_syntaxes(self) -> Sequence[str]:
        return self.backend.record_syntaxes()

    async def _observe(self, operation: str, database: str, call: Awaitable[Any]) -> Any:
        metrics = self.metrics
        started = time.perf_counter()
        codes: list[int] = []
        gauge = metrics.in_flight.labels("z3950")
        gauge.inc()
        try:
            result = await call
            if isinstance(result, list):
                codes = [entry.record.code for entry in result
                         if isinstance(entry, P.NamePlusRecord) and isinstance(entry.record, P.Diagnostic)]
            return result
        except Bib1Diagnostic as diagnostic:
            codes = [diagnostic.code]
            raise
        except Exception:
            metrics.errors.labels("z3950", operation).inc()
            raise
        finally:
            gauge.dec()
            metrics.observe_request("z3950", operation, database, time.perf_counter() - started, codes)

    async def authenticate(self, authentication: P.Authentication | None, peer: str) -> bool:
        started = time.perf_counter()
        accepted = await self.backend.authenticate(authentication, peer)
        self.metrics.observe_request("z3950", "init", "-", time.perf_counter() - started,
                                     () if accepted else ["init-rejected"])
        return accepted

    async def search(self, databases: Sequence[str], query: P.RpnQuery,
                     result_sets: Mapping[str, ResultSetHandle], session: SessionInfo) -> ResultSetHandle:
        return await self._observe("search", self._database_label(databases),
                                   self.backend.search(databases, query, result_sets, session))

    async def present(self, result_set: ResultSetHandle, start: int, count: int, syntax: str,
                      element_set: str, session: SessionInfo) -> list[P.NamePlusRecord]:
        return await self._observe("present", _z3950_database(result_set),
                                   self.backend.present(result_set, start, count, syntax, element_set, session))

    async def scan(self, databases: Sequence[str], attributes: tuple[P.Attribute, ...], attribute_set: str | None,
                   term: str, count: int, position: int, session: SessionInfo) -> ScanOutcome:
        return await self._observe("scan", self._database_label(databases),
                                   self.backend.scan(databases, attributes, attribute_set, term, count, position, session))

    async def sort(self, result_set: ResultSetHandle, keys: Sequence[P.SortKeySpec],
                   session: SessionInfo) -> ResultSetHandle:
        return await self._observe("sort", _z3950_database(result_set), self.backend.sort(result_set, keys, session))


__all__ = [
    "HealthEndpoints", "InstrumentedBackend", "JsonLogFormatter", "METRICS_KEY", "Metrics", "ObservedFederatedSearch",
    "configure_json_logging", "current_request_id", "install_observability", "observability",
    "observability_middleware", "request_id_for", "service_checks",
]

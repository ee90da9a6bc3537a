"""The `federated` database: the union catalogue plus live remote targets, as one answer.

One search fans out, concurrently and under one deadline, to the local union index and to
every enabled target of the rule set (`federation.targets` adapters). Remote records go
through the same extraction and the same match rules as ingestion (`indexer.union.MergeSession`
over the union records involved), so a remote copy of a work the network holds joins that
union record and its holdings are shown next to the network's; works only a target has become
union records of their own. The merged list is ranked once, by one relevance function over
the records' extracted fields (or by the requested sort keys), not interleaved by source.

The answer is a result set kept for `result_set_ttl` seconds after its last use: further pages
of the same query and sort (SRU startRecord, Z39.50 present) come from it and are stable. Its
count is exact (deduplicated) when every source answered and all its hits were fetched (up to
its fetch limit); when a source had more hits than it was asked for, the count is an estimate
(`precision` "estimate": fetched works plus each truncated source's unfetched hits, scaled by
the share of its fetched records that were new works); when a target failed it is a minimum.

Per target the outcome's `extra["targets"]` holds hits, records fetched, seconds and the error,
and each failed target becomes a non-fatal diagnostic naming it (SRU 58 "partial results",
16 for an index the target lacks). A target that fails `circuit_breaker.failures` times in a
row is skipped for `reset_seconds`, then probed with one request. At most `max_concurrent`
requests run per target; transport failures are retried `retries` times while the deadline
allows; a target that misses the deadline is cancelled and reported, never waited for.

Register with a `SearchService`: `FederatedSearch(...).register(service)` adds `federated`.
"""
from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from lxml import etree

from federation.search import Database, SearchOutcome
from federation.targets import (
    QueryNotTranslatable,
    TargetAdapter,
    TargetAnswer,
    TargetDiagnostic,
    TargetFailure,
    TargetLacksIndex,
    SharedSession,
    create_adapter,
)
from indexer.analysis import exact_key, index_tokens, query_tokens, year_of
from indexer.extract import contribution_analyzer
from indexer.indexes import IndexLevel, IndexTable, IndexType
from indexer.model import UnionRecord
from indexer.query import (
    AndNot,
    Clause,
    Facet,
    FacetRequest,
    FacetValue,
    Query,
    Relation,
    ScanRequest,
    ScanTerm,
    SearchRequest,
    SortKey,
    walk,
)
from indexer.store import Store, StoreError
from indexer.union import IdLookupNeeded, Incoming, MergeSession, ordered_match_keys

log = logging.getLogger(__name__)

FEDERATED = "federated"
LOCAL_SOURCE = "union"
STATUS_NS = "urn:union-federation:federation-1.0"

# SRU diagnostics for a source that did not contribute fully (non-fatal, naming the target).
PARTIAL_RESULTS = 58
UNSUPPORTED_INDEX = 16

# Source states after which a result set is kept only briefly (the query is worth asking again).
FAILED_STATES = frozenset({"failed", "timeout", "skipped", "partial"})

# How much a match in each index counts for relevance (others count 1).
FIELD_WEIGHTS = {"title": 3.0, "creator": 2.0, "subject": 1.5, "series": 1.2, "isbn": 3.0, "issn": 3.0}


@dataclass(frozen=True)
class FederationSettings:
    deadline: float = 10.0            # seconds for the whole request, every source included
    result_set_ttl: float = 300.0     # a result set lives this long after its last use
    # ... unless a source failed: then a new search soon after asks the targets again.
    incomplete_result_set_ttl: float = 30.0
    max_result_sets: int = 64         # least recently used sets are dropped beyond this
    max_cached_records: int = 20_000  # ... or beyond this many records in all (memory bound)
    local_fetch_limit: int = 500      # union records taken from the local index per search
    include_local: bool = True        # search the union index too (False: remote targets only)


@dataclass
class SourceStatus:
    """How one source (the local union index or a target) did for one search."""

    code: str
    name: str
    protocol: str                     # local | sru | z3950
    state: str = "ok"                 # ok | partial | failed | timeout | skipped | unsupported
    hits: int | None = None
    fetched: int = 0
    seconds: float = 0.0
    error: str = ""
    unreadable: int = 0               # records the target sent that could not be read
    first_unreadable: str = ""        # ... and why the first of them could not

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class FederatedResultSet:
    id: str
    query: Query
    sort: tuple[SortKey, ...]
    records: list[UnionRecord]
    total: int
    precision: str                    # exact | estimate | minimum
    statuses: list[SourceStatus]
    warnings: list[tuple[int, str]]
    seconds: float
    last_used: float = 0.0


@dataclass
class _Breaker:
    failures_to_open: int
    reset_seconds: float
    consecutive: int = 0
    opened_at: float | None = None
    probing: bool = False

    def allow(self, now: float) -> bool:
        if self.opened_at is None:
            return True
        if self.probing or now - self.opened_at < self.reset_seconds:
            return False
        self.probing = True           # half open: this one request probes the target
        return True

    def succeeded(self) -> None:
        self.consecutive, self.opened_at, self.probing = 0, None, False

    def failed(self, now: float) -> None:
        self.consecutive += 1
        if self.probing or self.consecutive >= self.failures_to_open:
            self.opened_at = now
        self.probing = False

    def retry_in(self, now: float) -> float:
        return max(0.0, (self.opened_at or now) + self.reset_seconds - now)


@dataclass
class _Remote:
    target: Any                       # federation.rules.Target
    adapter: TargetAdapter
    semaphore: asyncio.Semaphore
    breaker: _Breaker


@dataclass
class _SourceRun:
    status: SourceStatus
    remote: _Remote | None = None         # None: the local union index
    answer: TargetAnswer = field(default_factory=TargetAnswer)
    task: asyncio.Task | None = None
    local_records: list[UnionRecord] = field(default_factory=list)   # the union index's hits
    breaker_verdict: bool | None = None   # True success, False failure, None: no verdict


class FederatedSearch:
    """A `federation.search.DatabaseBackend` for the `federated` database."""

    def __init__(self, network: Any, table: IndexTable, store: Store, *,
                 settings: FederationSettings | None = None,
                 environ: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.network = network
        self.table = table
        self.store = store
        # Without explicit settings, the rule set's `federation:` section decides.
        self.settings = settings or FederationSettings(
            deadline=network.federation.deadline,
            result_set_ttl=network.federation.result_set_ttl,
            local_fetch_limit=network.federation.local_fetch_limit,
        )
        self.clock = clock
        self.policy = network.to_ingest_policy()
        self.match_points = tuple(network.rules.match_points)
        self._analyze = contribution_analyzer(table)
        self._session = SharedSession()
        self._remotes: list[_Remote] = []
        for target in network.targets:
            if not target.enabled:
                continue
            breaker = target.circuit_breaker
            self._remotes.append(_Remote(
                target,
                create_adapter(target, table, self.policy, environ=environ, session=self._session),
                asyncio.Semaphore(target.max_concurrent),
                _Breaker(breaker.failures, breaker.reset_seconds),
            ))
        self._result_sets: OrderedDict[tuple[Query, tuple[SortKey, ...]], FederatedResultSet] = OrderedDict()
        self._inflight: dict[tuple[Query, tuple[SortKey, ...]], asyncio.Task] = {}
        self._background: set[asyncio.Task] = set()
        self._ids = itertools.count(1)

    # -- registration -----------------------------------------------------------------------
    def database(self) -> Database:
        return Database(FEDERATED, "federated", "联合检索（总分馆与远程目标）",
                        "Federated search: the union catalogue and remote targets")

    def register(self, service: Any) -> None:
        """Serve `federated` from this backend in a `federation.search.SearchService`."""
        service.add_database(self.database(), self)

    @property
    def targets(self) -> list[Any]:
        return [remote.target for remote in self._remotes]

    async def aclose(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(self._background, timeout=2)
        await self._session.close()

    # -- DatabaseBackend ----------------------------------------------------------------------
    async def search(self, query: Query, *, sort: Sequence[SortKey] = (), offset: int = 0, limit: int = 10,
                     facets: Sequence[FacetRequest] = ()) -> SearchOutcome:
        result_set = await self.result_set_for(query, tuple(sort))
        records = result_set.records[offset:offset + limit] if limit > 0 else []
        return SearchOutcome(
            total=result_set.total,
            records=records,
            facets=[self._facet(result_set.records, request) for request in facets],
            precision=result_set.precision,
            warnings=list(result_set.warnings),
            extra={
                "result_set_id": result_set.id,
                "result_set_ttl": int(self.ttl(result_set)),
                "targets": [status.to_dict() for status in result_set.statuses],
                "extra_response_data": [status_element(result_set)],
            },
        )

    async def fetch(self, ids: Sequence[str]) -> list[UnionRecord | None]:
        """Records of live result sets by id (remote-only works exist only there), else the store's."""
        found: dict[str, UnionRecord] = {}
        for result_set in reversed(self._result_sets.values()):
            for record in result_set.records:
                found.setdefault(record.id, record)
        missing = [i for i in ids if i not in found]
        if missing:
            for record in await self.store.get(missing):
                if record is not None:
                    found[record.id] = record
        return [found.get(i) for i in ids]

    async def scan(self, request: ScanRequest) -> list[ScanTerm]:
        """Browsing is the union index's: remote targets are not scanned live."""
        return await self.store.scan(request)

    # -- result sets ------------------------------------------------------------------------
    def result_set(self, result_set_id: str) -> FederatedResultSet | None:
        self._expire()
        for key, result_set in self._result_sets.items():
            if result_set.id == result_set_id:
                result_set.last_used = self.clock()
                self._result_sets.move_to_end(key)
                return result_set
        return None

    def ttl(self, result_set: FederatedResultSet) -> float:
        failed = any(s.state in FAILED_STATES for s in result_set.statuses)
        return self.settings.incomplete_result_set_ttl if failed else self.settings.result_set_ttl

    def _expire(self) -> None:
        now = self.clock()
        for key in [k for k, rs in self._result_sets.items() if now - rs.last_used > self.ttl(rs)]:
            del self._result_sets[key]

    async def result_set_for(self, query: Query, sort: tuple[SortKey, ...]) -> FederatedResultSet:
        key = (query, sort)
        self._expire()
        cached = self._result_sets.get(key)
        if cached is not None:
            cached.last_used = self.clock()
            self._result_sets.move_to_end(key)
            return cached
        running = self._inflight.get(key)
        if running is None:
            running = asyncio.ensure_future(self._search_all(query, sort))
            self._inflight[key] = running
            running.add_done_callback(lambda _: self._inflight.pop(key, None))
        result_set = await asyncio.shield(running)
        result_set.last_used = self.clock()
        self._result_sets[key] = result_set
        self._result_sets.move_to_end(key)
        self._evict()
        return result_set

    def _evict(self) -> None:
        """Drop least recently used result sets beyond the count and record bounds (never the newest)."""
        cached = sum(len(rs.records) for rs in self._result_sets.values())
        while len(self._result_sets) > 1 and (len(self._result_sets) > self.settings.max_result_sets
                                               or cached > self.settings.max_cached_records):
            _, dropped = self._result_sets.popitem(last=False)
            cached -= len(dropped.records)

    # -- the fan-out ------------------------------------------------------------------------
    async def _search_all(self, query: Query, sort: tuple[SortKey, ...]) -> FederatedResultSet:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.settings.deadline
        runs = self._start(query, sort, deadline)
        await self._collect(runs, deadline, started)
        local_records = [r for run in runs if run.remote is None and run.status.state == "ok" for r in run.local_records]
        records, origins = await self._merge(local_records, [run for run in runs if run.remote is not None])
        self._rank(records, origins, query, sort)
        statuses = [run.status for run in runs]
        total, precision = self._count(records, origins, statuses)
        return FederatedResultSet(
            id=f"fed{next(self._ids)}-{secrets.token_hex(3)}", query=query, sort=sort, records=records,
            total=total, precision=precision, statuses=statuses,
            warnings=[w for status in statuses if (w := _warning(status)) is not None],
            seconds=round(loop.time() - started, 3),
        )

    def _start(self, query: Query, sort: tuple[SortKey, ...], deadline: float) -> list[_SourceRun]:
        """One run per source, its task started unless the query cannot go there or its breaker is open."""
        runs: list[_SourceRun] = []
        if self.settings.include_local:
            local = _SourceRun(SourceStatus(LOCAL_SOURCE, self._network_name(), "local"))
            local.task = asyncio.ensure_future(self._search_local(query, sort, local))
            runs.append(local)
        for remote in self._remotes:
            target = remote.target
            run = _SourceRun(SourceStatus(target.code, target.name, target.protocol), remote=remote)
            runs.append(run)
            try:
                translated = remote.adapter.translate(query)
            except QueryNotTranslatable as problem:
                run.status.state, run.status.error = "unsupported", str(problem)
                continue
            now = self.clock()
            if not remote.breaker.allow(now):
                run.status.state = "skipped"
                run.status.error = (f"circuit breaker open after {remote.breaker.consecutive} consecutive failures; "
                                    f"next probe in {remote.breaker.retry_in(now):.0f} s")
                continue
            run.task = asyncio.ensure_future(self._search_target(remote, translated, run, deadline))
        return runs

    async def _collect(self, runs: list[_SourceRun], deadline: float, started: float) -> None:
        """Wait for the sources until the deadline; cancel and report the late ones; judge each target."""
        loop = asyncio.get_running_loop()
        tasks = [run.task for run in runs if run.task is not None]
        pending: set[asyncio.Task] = set()
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - loop.time()))
        for run in runs:
            if run.task is None:
                continue
            if run.task in pending:
                run.task.cancel()       # its connection is dropped as the cancellation unwinds
                self._background.add(run.task)
                run.task.add_done_callback(self._background.discard)
                run.status.state = "partial" if run.answer.fetched else "timeout"
                run.status.error = f"no answer within the deadline of {self.settings.deadline:g} s"
                run.status.seconds = round(loop.time() - started, 3)
                run.status.hits = run.answer.total
                run.breaker_verdict = False
            elif not run.task.cancelled() and (error := run.task.exception()) is not None:
                log.error("federated search: %s failed unexpectedly: %r", run.status.code, error)
                run.status.state, run.status.error = "failed", f"internal error: {type(error).__name__}: {error}"
        for run in runs:
            if run.remote is None:
                continue
            if run.breaker_verdict is True:
                run.remote.breaker.succeeded()
            elif run.breaker_verdict is False:
                run.remote.breaker.failed(self.clock())
            run.status.fetched = run.answer.fetched
            problems = [r.error for r in run.answer.records if r.incoming is None]
            run.status.unreadable = len(problems)
            run.status.first_unreadable = problems[0] if problems else ""

    def _network_name(self) -> str:
        names = getattr(self.network, "names", None)
        return str(getattr(names, "zh", "") or getattr(names, "en", "") or self.network.id)

    async def _search_local(self, query: Query, sort: tuple[SortKey, ...], run: _SourceRun) -> None:
        started = time.perf_counter()
        try:
            result = await self.store.search(SearchRequest(query=query, sort=sort, offset=0,
                                                           limit=self.settings.local_fetch_limit))
            records = [r for r in await self.store.get(result.ids) if r is not None] if result.ids else []
        except StoreError as error:
            run.status.state, run.status.error = "failed", f"the union index failed: {error}"
            return
        finally:
            run.status.seconds = round(time.perf_counter() - started, 3)
        run.status.hits = result.total
        run.status.fetched = len(records)
        run.local_records = records

    async def _search_target(self, remote: _Remote, translated: object, run: _SourceRun, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        target = remote.target
        started = loop.time()
        status = run.status
        try:
            async with asyncio.timeout_at(deadline):
                async with remote.semaphore:
                    await self._attempts(remote, translated, run, deadline)
        except TimeoutError:
            status.state = "timeout"
            status.error = f"no answer within {min(target.timeout, self.settings.deadline):g} s"
            run.breaker_verdict = False
        except TargetLacksIndex as problem:
            status.state, status.error = "unsupported", f"the target lacks an index of the query: {problem}"
            run.breaker_verdict = True
        except TargetDiagnostic as problem:
            status.state, status.error = "failed", f"the target answered with a diagnostic: {problem}"
            run.breaker_verdict = True     # it is up and talking; the query is the problem
        except TargetFailure as problem:
            status.state, status.error = "failed", str(problem)
            run.breaker_verdict = False
        else:
            run.breaker_verdict = True
        finally:
            status.seconds = round(loop.time() - started, 3)
            status.hits = run.answer.total
        if status.state in ("timeout", "failed") and run.answer.fetched:
            status.state = "partial"

    async def _attempts(self, remote: _Remote, translated: object, run: _SourceRun, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        target = remote.target
        for attempt in range(target.retries + 1):
            budget = min(target.timeout, deadline - loop.time())
            if budget <= 0:
                raise TimeoutError
            run.answer = TargetAnswer()
            try:
                async with asyncio.timeout(budget):
                    await remote.adapter.search(translated, run.answer, budget)
                return
            except TargetFailure:
                if attempt == target.retries or run.answer.fetched or deadline - loop.time() < 0.1:
                    raise
                await asyncio.sleep(min(0.05 * 2 ** attempt, max(0.0, deadline - loop.time()) / 4))

    # -- merging ----------------------------------------------------------------------------
    async def _merge(self, local_records: list[UnionRecord], remote_runs: list[_SourceRun]
                     ) -> tuple[list[UnionRecord], dict[str, dict[str, float]]]:
        """Merged records in first-seen order, and each record's sources -> normalized rank (0 best)."""
        session = MergeSession(hub=self.network.hub, match_points=self.match_points, analyze=self._analyze)
        session.load(_working_copy(r) for r in local_records)
        origins: dict[str, dict[str, float]] = {}     # insertion order: first seen first

        def note(record_id: str, source: str, rank: float) -> None:
            sources = origins.setdefault(record_id, {})
            sources[source] = min(rank, sources.get(source, rank))

        for n, record in enumerate(local_records):
            note(record.id, LOCAL_SOURCE, n / max(1, len(local_records)))
        incoming: list[tuple[str, float, Incoming]] = []
        for run in remote_runs:
            usable = run.answer.usable
            for n, entry in enumerate(usable):
                incoming.append((run.status.code, n / max(1, len(usable)), entry))
        if incoming:
            await self._load_neighbours(session, [entry for _, _, entry in incoming])
        for source, rank, entry in incoming:
            await self._place(session, entry)
            record_id = session.record_of(entry.contribution.library, entry.contribution.source_id)
            if record_id is not None:
                note(record_id, source, rank)
        records = [record for record_id in origins if (record := session.record(record_id)) is not None]
        remote_codes = {run.status.code for run in remote_runs}
        for record in records:
            _drop_repeated_copies(record, remote_codes)
        return records, origins

    async def _load_neighbours(self, session: MergeSession, incoming: list[Incoming]) -> None:
        """Load the union records remote records can join (shared match keys) and the ids new
        records would take, as ingestion does."""
        keys = sorted({k for entry in incoming for k in ordered_match_keys(entry.analysis.match_keys, self.match_points)})
        try:
            by_key = await self.store.find_by_match_keys(keys) if keys else {}
            wanted = sorted({i for ids in by_key.values() for i in ids if not session.knows(i)})
            session.load(_working_copy(r) for r in await self.store.get(wanted) if r is not None)
            candidates = sorted({i for entry in incoming for i in session.unknown_ids(entry)})
            found = [r for r in await self.store.get(candidates) if r is not None] if candidates else []
        except StoreError as error:
            log.error("federated search: the union index failed while merging: %s", error)
            return
        session.load(_working_copy(r) for r in found)
        session.mark_absent(set(candidates) - {r.id for r in found})

    async def _place(self, session: MergeSession, entry: Incoming) -> None:
        for _ in range(16):
            try:
                session.place(entry)
                return
            except IdLookupNeeded as needed:
                try:
                    found = [r for r in await self.store.get([needed.record_id]) if r is not None]
                except StoreError:
                    found = []
                if found:
                    session.load(_working_copy(r) for r in found)
                else:
                    session.mark_absent([needed.record_id])
        log.error("federated search: no free union id for %s/%s", entry.contribution.library, entry.contribution.source_id)

    # -- ranking and counting -----------------------------------------------------------------
    def _rank(self, records: list[UnionRecord], origins: dict[str, dict[str, float]], query: Query,
              sort: tuple[SortKey, ...]) -> None:
        if sort:
            # As the stores sort: by each key in turn (records without a value last unless
            # `missing_first`), then by id. Stable sorts from the last key to the first.
            records.sort(key=lambda r: r.id)
            for key in reversed(sort):
                values = {r.id: self._sort_value(r, key) for r in records}
                present = [r for r in records if values[r.id] is not None]
                absent = [r for r in records if values[r.id] is None]
                present.sort(key=lambda r: values[r.id], reverse=not key.ascending)  # type: ignore[arg-type, return-value]
                records[:] = absent + present if key.missing_first else present + absent
            return
        clauses = _positive_clauses(query)
        scores = {r.id: self.relevance(r, clauses) for r in records}
        records.sort(key=lambda r: (-scores[r.id], min(origins.get(r.id, {"": 1.0}).values()), r.id))

    def _sort_value(self, record: UnionRecord, key: SortKey) -> str | int | None:
        definition = self.table.get(key.index)
        values = self._values(record, key.index)
        if definition is not None and definition.numeric:
            numbers = [year_of(v) if definition.type is IndexType.DATE else _int(v) for v in values]
            numbers = [n for n in numbers if n is not None]
            return numbers[0] if numbers else None
        if not values:
            return None
        return exact_key(values[0])

    def _values(self, record: UnionRecord, index: str) -> list[str]:
        definition = self.table.get(index)
        if definition is not None and definition.level is IndexLevel.ITEM:
            values = []
            for item in record.items:
                value = getattr(item, index, "")
                value = getattr(value, "value", value)
                if value:
                    values.append(str(value))
            return values
        values = list(record.fields.get(index, ()))
        if definition is not None:
            for source in definition.copy_from:
                values.extend(record.fields.get(source, ()))
        if index == "id":
            values.append(record.id)
        return values

    def relevance(self, record: UnionRecord, clauses: Sequence[Clause]) -> float:
        """How well a record matches the query's positive terms: per clause, per index searched,
        the best value's share of matched tokens, weighted by index, with bonuses for the
        tokens in sequence and for a value that is exactly the term."""
        score = 0.0
        for clause in clauses:
            tokens = query_tokens(clause.term)
            if not tokens:
                continue
            definition = self.table.get(clause.index)
            indexes = [clause.index, *(definition.copy_from if definition is not None else ())]
            for index in indexes:
                best = 0.0
                for value in record.fields.get(index, ()):
                    value_tokens = index_tokens(value)
                    matched = sum(1 for t in tokens if any(t.matches(v) for v in value_tokens))
                    if not matched:
                        continue
                    share = matched / len(tokens)
                    if matched == len(tokens) and _in_sequence(tokens, value_tokens):
                        share *= 1.5
                        if len(value_tokens) == len(tokens):
                            share *= 1.5
                    best = max(best, share)
                score += FIELD_WEIGHTS.get(index, 1.0) * best
        return score

    def _count(self, records: list[UnionRecord], origins: dict[str, dict[str, float]],
               statuses: list[SourceStatus]) -> tuple[int, str]:
        truncated = [s for s in statuses if s.hits is not None and s.fetched < s.hits]
        if not truncated:
            complete = all(s.state == "ok" and not s.unreadable for s in statuses)
            return len(records), "exact" if complete else "minimum"
        extra = 0.0
        for status in truncated:
            own = [i for i, sources in origins.items() if status.code in sources]
            alone = sum(1 for i in own if len(origins[i]) == 1)
            share = alone / len(own) if own else 1.0
            extra += (status.hits - status.fetched) * share  # type: ignore[operator]
        return len(records) + round(extra), "estimate"

    def _facet(self, records: list[UnionRecord], request: FacetRequest) -> Facet:
        definition = self.table.get(request.index)
        counts: dict[str, int] = {}
        for record in records:
            values = self._values(record, request.index) if definition is None or definition.level is IndexLevel.ITEM \
                else list(record.fields.get(request.index, ()))
            if definition is not None and definition.type is IndexType.DATE:
                values = [str(y) for v in values if (y := year_of(v)) is not None]
            for value in set(values):
                counts[value] = counts.get(value, 0) + 1
        if request.order == "value":
            numeric = definition is not None and definition.numeric
            ordered = sorted(counts.items(), key=lambda kv: (_int(kv[0]) or 0, kv[0]) if numeric else kv[0])
        else:
            ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return Facet(request.index, tuple(FacetValue(v, c) for v, c in ordered[:request.limit]))


# -- helpers ------------------------------------------------------------------------------------


def _working_copy(record: UnionRecord) -> UnionRecord:
    """A copy the merge session may change without touching the store's object."""
    return dataclasses.replace(record, contributions=list(record.contributions),
                               fields={k: list(v) for k, v in record.fields.items()},
                               match_keys=list(record.match_keys))


def _drop_repeated_copies(record: UnionRecord, remote_codes: set[str]) -> None:
    """A copy a target reports that the record already shows (same library and barcode, e.g. the
    network's own copy seen through a gateway, or one system configured as two targets) is shown
    once; so is a target's holdings-only line for a library that already has a copy listed."""
    seen: set[tuple[str, str]] = set()
    libraries: set[str] = set()
    for position, contribution in enumerate(record.contributions):
        if contribution.library not in remote_codes:
            seen.update((item.library, item.barcode) for item in contribution.items)
            libraries.update(item.library for item in contribution.items)
            continue
        kept = []
        for item in contribution.items:
            repeated = (item.library, item.barcode) in seen if item.barcode else item.library in libraries
            if not repeated:
                kept.append(item)
                seen.add((item.library, item.barcode))
                libraries.add(item.library)
        if len(kept) != len(contribution.items):
            record.contributions[position] = dataclasses.replace(contribution, items=kept)


def _int(value: str) -> int | None:
    value = value.strip()
    return int(value) if value.lstrip("-").isdigit() else None


def _in_sequence(tokens, value_tokens: list[str]) -> bool:
    width = len(tokens)
    for start in range(len(value_tokens) - width + 1):
        if all(t.matches(value_tokens[start + n]) for n, t in enumerate(tokens)):
            return True
    return False


def _positive_clauses(query: Query) -> list[Clause]:
    """Clauses a matching record satisfies (not under a NOT, not NE), text relations only."""
    negated: set[int] = set()
    for node in walk(query):
        if isinstance(node, AndNot):
            negated.update(id(n) for n in walk(node.right))
    return [node for node in walk(query)
            if isinstance(node, Clause) and id(node) not in negated
            and node.relation in (Relation.PHRASE, Relation.ALL, Relation.ANY, Relation.EXACT)]


def _warning(status: SourceStatus) -> tuple[int, str] | None:
    what = "the union index" if status.protocol == "local" else f"target {status.code} ({status.name})"
    if status.state == "ok":
        if not status.unreadable:
            return None
        return PARTIAL_RESULTS, (f"{what}: {status.unreadable} of {status.fetched} records could not be read "
                                 f"(first: {status.first_unreadable})")
    code = UNSUPPORTED_INDEX if status.state == "unsupported" else PARTIAL_RESULTS
    return code, f"{what}: {status.state}: {status.error}"


def status_element(result_set: FederatedResultSet) -> etree._Element:
    """Per-source status for SRU extraResponseData."""
    root = etree.Element(f"{{{STATUS_NS}}}federation", nsmap={"fed": STATUS_NS})
    root.set("resultSetId", result_set.id)
    root.set("precision", result_set.precision)
    root.set("seconds", f"{result_set.seconds:g}")
    for status in result_set.statuses:
        element = etree.SubElement(root, f"{{{STATUS_NS}}}source")
        element.set("code", status.code)
        element.set("name", status.name)
        element.set("protocol", status.protocol)
        element.set("state", status.state)
        if status.hits is not None:
            element.set("hits", str(status.hits))
        element.set("fetched", str(status.fetched))
        element.set("seconds", f"{status.seconds:g}")
        if status.unreadable:
            element.set("unreadable", str(status.unreadable))
            element.set("firstUnreadable", status.first_unreadable)
        if status.error:
            element.text = status.error
    return root

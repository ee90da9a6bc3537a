"""The Z39.50 server's backend: sessions mapped onto the same `SearchService` as SRU.

Database names are those of the search service (`union`, a library code, a tier). A result
set is the canonical query, its sort keys and its size; present re-runs the query for the
page asked for, so availability is always current. Records:

  USMARC / UNIMARC  ISO 2709 of the presentation MARC (holdings 852 / 905 with availability)
                    in the record's own format, labelled with that format's OID: a CNMARC
                    record asked for as USMARC comes as UNIMARC, never mislabelled.
                    In the association's character set: UTF-8 (MARC21 leader/09 = 'a') unless
                    GBK or GB18030 was negotiated (leader/09 blank).
  XML               MARCXML (MARC21 slim; UNIMARC records in the UNIMARC XML form), UTF-8, or
                    GBK/GB18030 with an XML declaration saying so
  SUTRS             the plain text form
  OPAC              the bibliographic record plus one holdings entry per item: owning library
                    (nucCode, localLocation), shelving location, call number, and circulation
                    data (availableNow, availabilityDate = due date, itemId = barcode, onHold)
Element set B gives a brief record (identification, title, author, edition, imprint,
extent, series and holdings fields); F the full record.

A search of a database whose answer has per-source status (`federated`) reports it in the
SearchResponse: additionalSearchInfo holds a searchResult-1 SearchInfoReport with one entry per
source (subqueryId the source code, subqueryExpression its state, subqueryInterpretation the
reason or what it fetched and how long it took, subqueryCount its hits) and a characterInfo text
per source that did not answer fully (the text of the SRU diagnostic); resultSetStatus says
`estimate` (YAZ's value 4) for an estimated count and `subset` for a count that is a minimum.

Authentication: a client may send idAuthentication `LIBRARY/token` (open) or user LIBRARY
with the token as password; it is checked against the rule set's `auth.tokens`. Without it
the association is anonymous and allowed unless `require_authentication` is set.
"""
from __future__ import annotations

import importlib.metadata
import logging
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

from lxml import etree

from federation.records import Directory, is_unimarc, presentation_marc
from federation.rpnmap import rpn_to_query, scan_index, sort_keys
from federation.rendercache import RenderedRecords
from federation.search import SearchOutcome, SearchService, UnknownDatabase
from indexer.model import Availability, UnionRecord
from indexer.query import Query, ScanRequest, SortKey
from indexer.store import QueryNotSupported, StoreError
from protocols.records import marcxml_bytes, to_iso2709, to_sutrs
from protocols.records.iso2709 import RecordTooLong
from protocols.z3950 import diagnostics as D
from protocols.z3950 import pdu as P
from protocols.z3950.diagnostics import Bib1Diagnostic
from protocols.z3950.server import (
    Implementation,
    ResultSetHandle,
    ScanOutcome,
    SearchReport,
    ServerLimits,
    SessionInfo,
    Z3950Server,
)

log = logging.getLogger(__name__)

SUPPORTED_SYNTAXES = (
    P.RecordSyntax.USMARC.value,
    P.RecordSyntax.UNIMARC.value,
    P.RecordSyntax.XML.value,
    P.RecordSyntax.TEXT_XML.value,
    P.RecordSyntax.SUTRS.value,
    P.RecordSyntax.OPAC.value,
)
BRIEF_MARC21_TAGS = frozenset({
    "001", "003", "005", "008", "010", "020", "022", "035", "100", "110", "111", "130", "245", "250",
    "260", "264", "300", "490", "852",
})
BRIEF_UNIMARC_TAGS = frozenset({
    "001", "003", "005", "010", "011", "035", "100", "101", "200", "205", "210", "214", "215", "225",
    "700", "701", "710", "905",
})


# A search remembers the ids of its first records, so that the present that usually follows
# reads them instead of running the query a second time.
FIRST_PAGE = 20


@dataclass(frozen=True)
class UnionResultSet:
    database: str
    query: Query
    sort: tuple[SortKey, ...]
    size: int
    # The ids at positions 1.. in the order of `sort`, as the search found them.
    first_ids: tuple[str, ...] = ()
    # Per-source status and count precision for the SearchResponse (None: nothing to report).
    report: SearchReport | None = None


class UnionBackend:
    """`protocols.z3950.server.Backend` over a `SearchService`."""

    def __init__(self, service: SearchService, *, require_authentication: bool = False, max_databases: int = 1):
        self.service = service
        self.table = service.table
        self.directory: Directory = service.directory
        self.require_authentication = require_authentication
        self.max_databases = max_databases
        self.rendered: RenderedRecords[P.RetrievalRecord] = RenderedRecords()

    def record_syntaxes(self) -> Sequence[str]:
        return SUPPORTED_SYNTAXES

    async def authenticate(self, authentication: P.Authentication | None, peer: str) -> bool:
        if authentication is None or authentication.anonymous:
            return not self.require_authentication
        user, secret = authentication.credentials()
        if not user or not secret:
            return False
        auth = getattr(self.service.network, "auth", None)
        if auth is None:
            return False
        return auth.library_for_token(secret) == user

    def _database(self, databases: Sequence[str]) -> str:
        if len(databases) > self.max_databases:
            raise Bib1Diagnostic(D.TOO_MANY_DATABASES, str(self.max_databases))
        name = databases[0]
        if self.service.database(name) is None:
            raise Bib1Diagnostic(D.DATABASE_DOES_NOT_EXIST, name)
        return name

    async def search(self, databases: Sequence[str], query: P.RpnQuery,
                     result_sets: Mapping[str, ResultSetHandle], session: SessionInfo) -> UnionResultSet:
        database = self._database(databases)
        known = {
            name: handle.query for name, handle in result_sets.items()
            if isinstance(handle, UnionResultSet) and handle.database == database
        }
        canonical = rpn_to_query(query, self.table, result_sets=known)
        outcome = await self._run(self.service.search(database, canonical, offset=0, limit=FIRST_PAGE,
                                                      with_records=False))
        return UnionResultSet(database, canonical, (), outcome.total, tuple(outcome.ids), search_report(outcome))

    async def sort(self, result_set: ResultSetHandle, keys: Sequence[P.SortKeySpec],
                   session: SessionInfo) -> UnionResultSet:
        if not isinstance(result_set, UnionResultSet):
            raise Bib1Diagnostic(D.CANNOT_SORT, "not a result set of this server")
        canonical_keys = sort_keys(keys, self.table)
        return replace(result_set, sort=canonical_keys, first_ids=())

    async def present(self, result_set: ResultSetHandle, start: int, count: int, syntax: str,
                      element_set: str, session: SessionInfo) -> list[P.NamePlusRecord]:
        if not isinstance(result_set, UnionResultSet):
            raise Bib1Diagnostic(D.RESULT_SET_DOES_NOT_EXIST, "not a result set of this server")
        records = await self._page(result_set, start, count)
        entries = []
        for record in records:
            try:
                entries.append(P.NamePlusRecord(result_set.database, self.rendered.get(
                    record, result_set.database, (syntax, element_set, session.charset),
                    lambda: self.render(record, syntax, element_set, session.charset))))
            except RecordTooLong as error:
                entries.append(P.NamePlusRecord(result_set.database, P.Diagnostic(D.RECORD_TOO_LARGE_EXCEPTIONAL, str(error))))
        return entries

    async def _page(self, result_set: UnionResultSet, start: int, count: int) -> list[UnionRecord]:
        wanted = result_set.first_ids[start - 1:start - 1 + count]
        if wanted and (len(wanted) == count or start - 1 + len(wanted) >= result_set.size):
            fetched = await self._run(self.service.fetch(result_set.database, wanted))
            if all(record is not None for record in fetched):
                return [record for record in fetched if record is not None]
            # A record changed scope or went away since the search: ask the store again.
        outcome = await self._run(self.service.search(
            result_set.database, result_set.query, sort=result_set.sort, offset=start - 1, limit=count))
        return outcome.records

    async def scan(self, databases: Sequence[str], attributes: tuple[P.Attribute, ...], attribute_set: str | None,
                   term: str, count: int, position: int, session: SessionInfo) -> ScanOutcome:
        database = self._database(databases)
        definition = scan_index(attributes, self.table, attribute_set)
        terms = await self._run(self.service.scan(
            database, ScanRequest(definition.name, term, count=count, position=position)))
        start_key = definition.query_key(term)
        before = sum(1 for t in terms if t.key < start_key)
        return ScanOutcome([P.ScanEntry(t.key, t.count) for t in terms], before + 1)

    async def _run(self, awaitable):
        try:
            return await awaitable
        except UnknownDatabase as error:
            raise Bib1Diagnostic(D.DATABASE_DOES_NOT_EXIST, error.name) from error
        except QueryNotSupported as error:
            raise Bib1Diagnostic(D.UNSUPPORTED_SEARCH, str(error)) from error
        except StoreError as error:
            log.error("z39.50: store failure: %s", error)
            raise Bib1Diagnostic(D.TEMPORARY_SYSTEM_ERROR, "the catalogue is unavailable") from error

    # -- records --------------------------------------------------------------------------
    def render(self, record: UnionRecord, syntax: str, element_set: str,
               charset: str = "utf-8") -> P.RetrievalRecord:
        """`charset`: the Python codec of the association's negotiated character set."""
        unimarc = is_unimarc(record)
        marc = presentation_marc(record, self.directory)
        if element_set == "B":
            marc = _brief(marc, BRIEF_UNIMARC_TAGS if unimarc else BRIEF_MARC21_TAGS)
        native = P.RecordSyntax.UNIMARC.value if unimarc else P.RecordSyntax.USMARC.value
        if syntax in (P.RecordSyntax.USMARC.value, P.RecordSyntax.UNIMARC.value):
            return P.RetrievalRecord(native, to_iso2709(marc, unimarc=unimarc, encoding=charset))
        if syntax in (P.RecordSyntax.XML.value, P.RecordSyntax.TEXT_XML.value):
            serialized = marcxml_bytes(marc, unimarc=unimarc)
            if charset == "utf-8":
                return P.RetrievalRecord(syntax, serialized)
            element = etree.fromstring(serialized)
            return P.RetrievalRecord(syntax, etree.tostring(element, encoding=charset.upper(), xml_declaration=True))
        if syntax == P.RecordSyntax.SUTRS.value:
            return P.RetrievalRecord(syntax, to_sutrs(marc))
        if syntax == P.RecordSyntax.OPAC.value:
            bibliographic = P.RetrievalRecord(native, to_iso2709(marc, unimarc=unimarc, encoding=charset))
            return P.RetrievalRecord(syntax, P.OpacRecord(bibliographic, self.holdings(record)))
        raise Bib1Diagnostic(D.RECORD_SYNTAX_UNSUPPORTED, syntax)

    def holdings(self, record: UnionRecord) -> list[P.Holdings]:
        holdings = []
        for item in record.items:
            availability = item.availability
            circulation = P.Circulation(
                available_now=availability in (Availability.AVAILABLE, Availability.REFERENCE_ONLY),
                item_id=item.barcode or None,
                availability_date=item.due_date or None,
                restrictions="reference only" if availability is Availability.REFERENCE_ONLY else None,
                renewable=False,
                on_hold=availability is Availability.ON_HOLD,
            )
            holdings.append(P.Holdings(
                nuc_code=item.library,
                local_location=self.directory.name(item.library),
                shelving_location=item.location or None,
                call_number=item.call_number or None,
                public_note=availability.value,
                circulation=[circulation],
            ))
        return holdings


# A count that is not exact, as SearchResponse resultSetStatus.
PRECISION_STATUS = {"estimate": P.ResultSetStatus.ESTIMATE, "minimum": P.ResultSetStatus.SUBSET}


def search_report(outcome: SearchOutcome) -> SearchReport | None:
    """What a search outcome says besides its count: the count's precision, one searchResult-1
    entry per source (`outcome.extra["targets"]`) and the texts of its non-fatal warnings."""
    sources = outcome.extra.get("targets") or []
    status = PRECISION_STATUS.get(outcome.precision)
    if not sources and status is None and not outcome.warnings:
        return None
    return SearchReport(status, tuple(source_report(s) for s in sources), tuple(text for _, text in outcome.warnings))


def source_report(source: Mapping[str, Any]) -> P.SubqueryReport:
    """One source's status as a SearchInfoReport entry, which yaz-client prints as
    ` term=STATE interpretation=DETAIL cnt=HITS id=CODE`."""
    hits, fetched = source.get("hits"), source.get("fetched", 0)
    detail = [str(source.get("error") or "")]
    detail.append(f"{fetched} of {hits} fetched" if hits is not None else f"{fetched} fetched")
    if source.get("unreadable"):
        detail.append(f"{source['unreadable']} unreadable (first: {source.get('first_unreadable', '')})")
    detail.append(f"{float(source.get('seconds', 0.0)):g} s")
    return P.SubqueryReport(
        subquery_id=str(source["code"]),
        full_query=False,
        expression=P.QueryTerm(str(source.get("state", "")), str(source.get("name") or "") or None),
        interpretation=P.QueryTerm("; ".join(part for part in detail if part)),
        count=int(hits) if hits is not None else None,
    )


def _package_version() -> str:
    try:
        return importlib.metadata.version("union-federation")
    except importlib.metadata.PackageNotFoundError:
        return Implementation().version


def _brief(marc: dict[str, Any], tags: frozenset[str]) -> dict[str, Any]:
    fields = [f for f in marc.get("fields", []) if isinstance(f, dict) and next(iter(f), "") in tags]
    return {"leader": marc.get("leader", ""), "fields": fields}


async def start_z3950_server(
    service: SearchService,
    host: str = "127.0.0.1",
    port: int = 2100,
    *,
    limits: ServerLimits = ServerLimits(),
    implementation: Implementation | None = None,
    require_authentication: bool = False,
    reuse_port: bool = False,
) -> Z3950Server:
    """Listen for Z39.50 on host:port (port 0: any free port; see `server.port`).
    The caller stops it with `close()` and `await wait_closed()`."""
    if implementation is None:
        implementation = Implementation(version=_package_version())
    backend = UnionBackend(service, require_authentication=require_authentication)
    server = Z3950Server(backend, limits=limits, implementation=implementation)
    return await server.start(host, port, reuse_port=reuse_port)

"""The SRU endpoint: one HTTP request in, one SRU response out, never a 500.

Parses with `protocols.sru`, maps CQL with `federation.cqlmap`, runs the operation on the
`SearchService`, renders records with `federation.records` + `protocols.records`, and writes
the response in the requested version's envelope. Every failure is a diagnostic; anything
unexpected is logged with its traceback and answered as diagnostic 1.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Awaitable, Callable, Mapping, TypeVar

from aiohttp import web
from lxml import etree

from federation.cqlmap import CQLMapper, MappedQuery, parse_cql
from federation.httpquery import undecodable_parameter
from federation.rules import Network
from federation.rendercache import RenderedRecords
from federation.records import Directory, dublin_core, holdings_locations, is_unimarc, presentation_marc, record_json
from federation.search import Database, SearchService, UnknownDatabase
from indexer.indexes import IndexTable
from indexer.model import UnionRecord
from indexer.query import Clause, FacetRequest, Relation, ScanRequest as StoreScanRequest
from indexer.store import QueryNotSupported, StoreError
from protocols import cql
from protocols.cql.render import quote
from protocols.records import (
    UNIMARC_XML_NAMESPACE,
    dc_element,
    iso20775_element,
    marcxml_bytes,
)
from protocols.sru.soap import SOAP_CONTENT_TYPES, parse_soap, soap_envelope
from protocols.sru import (
    EchoedScan,
    EchoedSearchRetrieve,
    ExplainIndex,
    ExplainInfo,
    ExplainRequest,
    ExplainSchema,
    FacetResult,
    FacetTerm,
    ResponseRecord,
    ScanRequest,
    ScanTermResult,
    SearchRetrieveRequest,
    SearchRetrieveResult,
    SRUDiagnostic,
    SurrogateRecord,
    content_type,
    explain_element,
    parse_request,
    version_for,
    write_diagnostic,
    write_explain,
    write_scan,
    write_search_retrieve,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

JSON_NS = "urn:union-federation:json-1.0"
PRECISION_URI = "info:srw/vocabulary/resultCountPrecision/1/"


@dataclass(frozen=True)
class SRUSettings:
    """Limits of one request; a served network's come from its rule set (`for_network`)."""

    default_records: int = 10
    maximum_records: int = 100        # larger maximumRecords are capped, with a non-fatal diagnostic
    maximum_terms: int = 100          # larger maximumTerms get diagnostic 121
    max_query_length: int = 8192      # longer queries get diagnostic 12
    max_start_record: int = 10000     # deeper paging gets diagnostic 61
    default_schema: str = "marcxml"

    @classmethod
    def for_network(cls, network: Network) -> "SRUSettings":
        """The rule set's `sru:` limits (federation.rules.SRULimits; its defaults when absent)."""
        limits = network.sru
        return cls(default_records=limits.default_records, maximum_records=limits.maximum_records,
                   maximum_terms=limits.maximum_terms, max_query_length=limits.max_query_length,
                   max_start_record=limits.max_start_record)


@dataclass(frozen=True)
class RecordSchema:
    name: str
    identifier: str
    title: str
    # The record in this schema, as an element or already serialized (UTF-8); None: not available.
    render: Callable[[UnionRecord, Directory], etree._Element | bytes | None]
    aliases: tuple[str, ...] = ()


def _marcxml(record: UnionRecord, directory: Directory) -> bytes:
    return marcxml_bytes(presentation_marc(record, directory), unimarc=is_unimarc(record))


def _unimarcxml(record: UnionRecord, directory: Directory) -> bytes | None:
    if not is_unimarc(record):
        return None
    return marcxml_bytes(presentation_marc(record, directory), unimarc=True)


def _json(record: UnionRecord, directory: Directory) -> etree._Element:
    element = etree.Element(f"{{{JSON_NS}}}json", nsmap={None: JSON_NS})
    element.text = json.dumps(record_json(record, directory), ensure_ascii=False)
    return element


SCHEMAS: tuple[RecordSchema, ...] = (
    RecordSchema("marcxml", "info:srw/schema/1/marcxml-v1.1",
                 "MARCXML: MARC21 slim for MARC21 records, UNIMARC XML for CNMARC/UNIMARC records, with holdings",
                 _marcxml, ("marc21", "marcxml-v1.1", "http://www.loc.gov/marc21/slim")),
    RecordSchema("unimarcxml", UNIMARC_XML_NAMESPACE, "UNIMARC XML (CNMARC and UNIMARC records only)",
                 _unimarcxml, ("cnmarcxml",)),
    RecordSchema("dc", "info:srw/schema/1/dc-v1.1", "Dublin Core",
                 lambda r, d: dc_element(dublin_core(r)), ("dc-v1.1",)),
    RecordSchema("isohold", "http://www.loc.gov/standards/iso20775/", "ISO 20775 holdings with availability",
                 lambda r, d: iso20775_element(holdings_locations(r.items, d)), ("iso20775",)),
    RecordSchema("json", "urn:union-federation:schema:json-1.0", "The union record as JSON",
                 _json, ()),
)


def find_schema(name: str) -> RecordSchema | None:
    wanted = name.strip().lower()
    for schema in SCHEMAS:
        if wanted in (schema.name, schema.identifier.lower(), *schema.aliases):
            return schema
    return None


def request_params(multi: Mapping[str, str] | web.MultiDictProxy) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for key in multi.keys():
        params.setdefault(key, list(multi.getall(key)))  # type: ignore[attr-defined]
    return params


async def _from_store(awaitable: Awaitable[T]) -> T:
    """A store call, its refusals as SRU diagnostics: a query the store cannot run (a number
    beyond its range, ...) is 48 naming the reason; a store that is down is 1, logged."""
    try:
        return await awaitable
    except QueryNotSupported as error:
        raise SRUDiagnostic(48, str(error)) from None
    except StoreError as error:
        log.error("SRU: store failure: %s", error)
        raise SRUDiagnostic(1, "the catalogue is unavailable; try again") from None


class SRUEndpoint:
    def __init__(self, service: SearchService, settings: SRUSettings | None = None):
        self.service = service
        self.settings = settings if settings is not None else SRUSettings.for_network(service.network)
        self.table: IndexTable = service.table
        self.mapper = CQLMapper(service.table)
        self.rendered: RenderedRecords[bytes] = RenderedRecords()

    async def handle(self, request: web.Request) -> web.Response:
        params: dict[str, list[str]] = {}
        operation = "searchRetrieve"
        soap = request.method == "POST" and request.content_type in SOAP_CONTENT_TYPES
        try:
            params = request_params(request.query)
            if soap:
                params = parse_soap(await request.read())
            elif request.method == "POST":
                if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data", ""):
                    raise SRUDiagnostic(1, request.content_type,
                                        "POST application/x-www-form-urlencoded, or SOAP (text/xml)")
                for key, values in request_params(await request.post()).items():
                    params.setdefault(key, []).extend(str(v) for v in values)
        except SRUDiagnostic as diagnostic:
            response = self._diagnostic_response(version_for(params), operation, diagnostic, status=200 if soap else 415)
            return _as_soap(response) if soap else response
        except Exception as error:  # a body aiohttp cannot decode
            return self._diagnostic_response("1.2", operation, SRUDiagnostic(1, f"unreadable request: {error}"), status=400)
        broken = undecodable_parameter(request.rel_url.raw_query_string)
        if broken is not None:
            return self._diagnostic_response(version_for(params), operation, SRUDiagnostic(
                6, broken, f"parameter {broken!r} is not UTF-8 (percent-escapes of other bytes)"))
        try:
            response = await self._answer(request, params)
            return _as_soap(response) if soap else response
        except Exception:
            # The last line of defence: even writing a diagnostic failed.
            log.exception("SRU response could not be written: %s", request.path_qs)
            return web.Response(body=write_diagnostic("1.2", "searchRetrieve", SRUDiagnostic(1, "internal error (logged)")),
                                headers={"Content-Type": content_type("1.2")})

    async def _answer(self, request: web.Request, params: dict[str, list[str]]) -> web.Response:
        version = version_for(params)
        operation = (params.get("operation") or [""])[0] or ("searchRetrieve" if "query" in params else
                                                             "scan" if "scanClause" in params else "explain")
        name = request.match_info.get("database", "union")
        database = self.service.database(name)
        if database is None:
            return self._diagnostic_response(version, operation, SRUDiagnostic(
                1, name, f"no database {name!r}; see explain at /sru for the list"), status=404, request=request)
        try:
            sru = parse_request(params)
            if isinstance(sru, SearchRetrieveRequest):
                body = await self.search_retrieve(sru, database)
            elif isinstance(sru, ScanRequest):
                body = await self.scan(sru, database)
            else:
                body = self.explain(sru, database, request)
            accept = sru.http_accept
        except SRUDiagnostic as diagnostic:
            return self._diagnostic_response(version, operation, diagnostic, request=request)
        except _DiagnosticWithEcho as failed:
            return web.Response(body=failed.body, headers={"Content-Type": content_type(version)})
        except UnknownDatabase as missing:
            return self._diagnostic_response(version, operation, SRUDiagnostic(1, missing.name, str(missing)), status=404)
        except Exception:
            log.exception("SRU request failed: %s", request.path_qs)
            return self._diagnostic_response(version, operation, SRUDiagnostic(1, "internal error (logged)"))
        return web.Response(body=body, headers={"Content-Type": content_type(version, accept)})

    def _diagnostic_response(self, version: str, operation: str, diagnostic: SRUDiagnostic, *, status: int = 200,
                             request: web.Request | None = None) -> web.Response:
        if operation not in ("searchRetrieve", "scan", "explain"):
            operation = "searchRetrieve"
        if operation == "explain" and request is not None:
            # An explain response always carries the explain record (the schemas require it).
            database = self.service.database(request.match_info.get("database", "union")) or self.service.database("union")
            host, port = _host_port(request)
            info = explain_info(self.service, self.settings, database, host, port, version)
            body = write_explain(version, explain_element(info), [diagnostic])
        else:
            body = write_diagnostic(version, operation, diagnostic)
        return web.Response(body=body, status=status, headers={"Content-Type": content_type(version)})

    # -- searchRetrieve -------------------------------------------------------------------
    async def search_retrieve(self, sru: SearchRetrieveRequest, database: Database) -> bytes:
        echoed = EchoedSearchRetrieve(
            query=sru.query,
            query_type=sru.query_type if sru.version == "2.0" else None,
            start_record=sru.start_record,
            maximum_records=sru.maximum_records,
            record_packing=sru.record_packing,
            record_xml_escaping=sru.record_xml_escaping if sru.version == "2.0" else None,
            record_schema=sru.record_schema,
            result_set_ttl=sru.result_set_ttl,
            sort_keys=sru.sort_keys_text,
            stylesheet=sru.stylesheet,
            http_accept=sru.http_accept,
            facet_parameters=[f"{k}={v}" for k, v in sru.raw if k.startswith("facet")],
            extra=list(sru.extra),
        )
        try:
            return await self._search_retrieve(sru, database, echoed)
        except SRUDiagnostic as diagnostic:
            body = write_search_retrieve(sru.version, SearchRetrieveResult(0, diagnostics=[diagnostic]), echoed,
                                         stylesheet=sru.stylesheet)
            raise _DiagnosticWithEcho(body) from None

    async def _search_retrieve(self, sru: SearchRetrieveRequest, database: Database,
                               echoed: EchoedSearchRetrieve) -> bytes:
        settings = self.settings
        if len(sru.query) > settings.max_query_length:
            raise SRUDiagnostic(12, str(settings.max_query_length), f"queries are limited to {settings.max_query_length} characters")
        if sru.query_type == "searchTerms":
            words = sru.query.strip()
            if not words:
                raise SRUDiagnostic(27, "", "Empty term unsupported")
            mapped = MappedQuery(Clause(self.table.default_index, Relation.ALL, words))
        else:
            parsed = parse_cql(sru.query)
            echoed.xquery = cql.xcql_element(parsed, namespace=cql.XCQL_NS)
            mapped = self.mapper.map(parsed)
        sort = mapped.sort
        if sru.sort_keys:
            if sort:
                raise SRUDiagnostic(96, "sortKeys", "sort given both in the query (sortBy) and as sortKeys")
            sort = self.mapper.sort_keys(sru.sort_keys)
        schema = find_schema(sru.record_schema or settings.default_schema)
        if schema is None:
            raise SRUDiagnostic(66, sru.record_schema or "", f"Unknown schema for retrieval: {sru.record_schema}")
        warnings: list[SRUDiagnostic] = []
        limit = settings.default_records if sru.maximum_records is None else sru.maximum_records
        if limit > settings.maximum_records:
            warnings.append(SRUDiagnostic(6, "maximumRecords",
                                          f"maximumRecords {limit} capped at {settings.maximum_records}"))
            limit = settings.maximum_records
        if sru.start_record > settings.max_start_record:
            raise SRUDiagnostic(61, str(sru.start_record), f"startRecord may be at most {settings.max_start_record}")
        facets, facet_specs = self._facet_requests(sru)
        outcome = await _from_store(self.service.search(database.name, mapped.query, sort=sort,
                                                        offset=sru.start_record - 1, limit=limit, facets=facets))
        if sru.start_record > 1 and sru.start_record > outcome.total:
            raise_with_total = SRUDiagnostic(61, str(sru.start_record),
                                             f"startRecord {sru.start_record} is beyond the {outcome.total} records found")
            return write_search_retrieve(sru.version, SearchRetrieveResult(outcome.total, diagnostics=[raise_with_total]),
                                         echoed, stylesheet=sru.stylesheet)
        records: list[ResponseRecord | SurrogateRecord] = []
        for n, record in enumerate(outcome.records):
            position = sru.start_record + n
            data = self._render(schema, record, database)
            if data is None:
                records.append(SurrogateRecord(position, SRUDiagnostic(67, schema.name,
                               f"record {record.id} is {record.master_contribution.format.value}, not available as {schema.name}")))
            else:
                records.append(ResponseRecord(sru.record_schema or schema.name, data, position, record.id))
        end = sru.start_record + len(records) - 1
        warnings.extend(SRUDiagnostic(code, text) for code, text in outcome.warnings)
        result = SearchRetrieveResult(
            number_of_records=outcome.total,
            records=records,
            next_record_position=end + 1 if records and end < outcome.total else None,
            diagnostics=warnings,
            facets=self._facet_results(outcome.facets, facet_specs),
            result_count_precision=PRECISION_URI + outcome.precision if sru.version == "2.0" else None,
            result_set_id=outcome.extra.get("result_set_id"),
            result_set_ttl=outcome.extra.get("result_set_ttl"),
            extra_response_data=[e for e in outcome.extra.get("extra_response_data", ())
                                 if isinstance(e, etree._Element)],
        )
        return write_search_retrieve(sru.version, result, echoed, escaping=sru.record_xml_escaping,
                                     stylesheet=sru.stylesheet)

    def _render(self, schema: RecordSchema, record: UnionRecord, database: Database) -> bytes | None:
        """The record serialized in `schema` (kept while the record is unchanged); the response
        writer splices the bytes in."""
        def render() -> bytes | None:
            rendered = schema.render(record, self.service.directory)
            if rendered is None or isinstance(rendered, bytes):
                return rendered
            return etree.tostring(rendered, encoding="UTF-8")

        return self.rendered.get(record, database.name, schema.name, render)

    def _facet_requests(self, sru: SearchRetrieveRequest) -> tuple[list[FacetRequest], list[tuple[str, int, int]]]:
        requests = []
        specs = []
        for spec in sru.facets:
            definition = self.mapper.index(spec.index)
            if not definition.facet:
                raise SRUDiagnostic(6, "facetLimit", f"{spec.index} is not a facet index")
            order = "value" if spec.sort == "alphanumeric" else "count"
            requests.append(FacetRequest(definition.name, spec.limit + spec.start - 1, order))
            specs.append((spec.index, spec.start, spec.limit))
        return requests, specs

    def _facet_results(self, facets, specs: list[tuple[str, int, int]]) -> list[FacetResult]:
        results = []
        for facet, (written, start, limit) in zip(facets, specs):
            definition = self.table.get(facet.index)
            title = definition.title if definition else facet.index
            terms = [FacetTerm(v.value, v.count, f"{written}={quote(v.value)}")
                     for v in facet.values[start - 1:start - 1 + limit]]
            results.append(FacetResult(written, title, terms))
        return results

    # -- scan -----------------------------------------------------------------------------
    async def scan(self, sru: ScanRequest, database: Database) -> bytes:
        echoed = EchoedScan(sru.scan_clause, sru.response_position, sru.maximum_terms, sru.stylesheet)
        parsed = parse_cql(sru.scan_clause)
        clause = parsed.root
        if not isinstance(clause, cql.SearchClause) or parsed.sort_keys:
            raise SRUDiagnostic(10, sru.scan_clause, "a scan clause is one index, relation and term")
        qualified = cql.qualify(clause.index, parsed.prefixes + clause.prefixes)
        definition = self.mapper.resolve(qualified, clause.index)
        if not definition.scannable:
            raise SRUDiagnostic(16, clause.index, f"{clause.index} cannot be scanned")
        if clause.relation.base not in ("=", "==", "exact", "scr") or clause.relation.modifiers:
            raise SRUDiagnostic(19, clause.relation.name, "scan supports the relations = and ==")
        count = self.settings.default_records * 2 if sru.maximum_terms is None else sru.maximum_terms
        if count > self.settings.maximum_terms:
            raise SRUDiagnostic(121, str(count), f"at most {self.settings.maximum_terms} terms per scan")
        if sru.response_position > count + 1:
            raise SRUDiagnostic(120, str(sru.response_position), f"responsePosition must be 0..{count + 1}")
        start_key = definition.query_key(clause.term)
        if sru.response_position == 0:
            # The list starts just after the start term.
            found = await _from_store(self.service.scan(
                database.name, StoreScanRequest(definition.name, clause.term, count + 1, 1)))
            index_ended = len(found) < count + 1
            terms = found[1:] if found and found[0].key == start_key else found[:count]
            at_first = False
        else:
            terms = await _from_store(self.service.scan(database.name, StoreScanRequest(
                definition.name, clause.term, count, sru.response_position)))
            before = sum(1 for t in terms if t.key < start_key)
            at_first = before < sru.response_position - 1   # fewer keys before the start than asked: the index begins here
            index_ended = len(terms) < count
        results = [ScanTermResult(t.key, t.count, t.key, _where_in_list(n, len(terms), at_first, index_ended))
                   for n, t in enumerate(terms)]
        return write_scan(sru.version, results, echoed, stylesheet=sru.stylesheet)

    # -- explain --------------------------------------------------------------------------
    def explain(self, sru: ExplainRequest, database: Database, request: web.Request) -> bytes:
        host, port = _host_port(request)
        info = explain_info(self.service, self.settings, database, host, port, sru.version)
        return write_explain(sru.version, explain_element(info), escaping=sru.record_xml_escaping,
                             stylesheet=sru.stylesheet)


def _where_in_list(n: int, length: int, at_first: bool, at_last: bool) -> str:
    """SRU whereInList of the n-th of `length` scan terms."""
    first = n == 0 and at_first
    last = n == length - 1 and at_last
    if first and last:
        return "only"
    return "first" if first else "last" if last else "inner"


def _as_soap(response: web.Response) -> web.Response:
    return web.Response(body=soap_envelope(response.body), status=response.status,
                        headers={"Content-Type": "text/xml; charset=utf-8"})


def _host_port(request: web.Request) -> tuple[str, int]:
    """The host and port the client addressed (the Host header), for the explain record."""
    url = request.url
    return url.host or "localhost", url.port or 80


class _DiagnosticWithEcho(Exception):
    """A fatal diagnostic already written with the echoed request (xQuery included)."""

    def __init__(self, body: bytes):
        super().__init__("diagnostic")
        self.body = body


def explain_info(service: SearchService, settings: SRUSettings, database: Database, host: str, port: int,
                 version: str) -> ExplainInfo:
    table = service.table
    indexes = []
    for definition in table:
        names = tuple((name.split(".", 1)[0], name.split(".", 1)[1]) for name in definition.cql)
        if not names:
            continue
        indexes.append(ExplainIndex(
            id=definition.name,
            title=definition.title or definition.name,
            names=names,
            bib1=definition.bib1,
            scan=definition.scannable,
            sort=definition.sortable,
            facet=definition.facet,
        ))
    indexes.append(ExplainIndex("allRecords", "Every record (cql.allRecords=1)", (("cql", "allRecords"),)))
    return ExplainInfo(
        host=host,
        port=port,
        database=f"sru/{database.name}",
        version=version,
        titles={"zh": database.title_zh, "en": database.title_en},
        description={"en": f"{database.kind} database of the {service.network.id} library network"},
        context_sets=dict(table.context_sets),
        indexes=indexes,
        schemas=[ExplainSchema(s.identifier, s.name, s.title) for s in SCHEMAS],
        default_schema=settings.default_schema,
        default_records=settings.default_records,
        maximum_records=settings.maximum_records,
        maximum_terms=settings.maximum_terms,
        databases=[(d.name, d.title_zh) for d in service.databases() if d.name != database.name],
        supports=[
            ("sort", "CQL sortBy and sortKeys (SRU 1.1, 2.0) on sortable indexes"),
            ("scan", "scan on scannable indexes"),
            ("facets", "SRU 2.0 facetLimit/facetStart/facetSort on facet indexes"),
            ("relationModifier", "string word masked unmasked ignoreCase ignoreAccents relevant"),
            ("maskingCharacter", "* ?"),
            ("anchoring", "^ at the start or end of a phrase"),
            ("recordXMLEscaping", "xml string"),
        ],
    )

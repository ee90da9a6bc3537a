"""The JSON API for OPAC front-ends and circulation systems, under `/api/v1`.

    GET  /search                         keyword (`q`) or CQL (`cql`) search with facets, paging, sort;
                                         each hit with its holdings summarized per library
    GET  /records/{id}                   the union record, holdings by library and by tier
    GET  /records/{id}/availability      ?card=NUMBER and/or ?library=CODE: verdict per copy
    GET  /libraries, /libraries/{code}   the network, its tiers and libraries
    GET  /barcodes/{barcode}             which library a barcode belongs to (and the item), or why none
    GET  /cards/{number}                 which library issued a card, or why none
    GET  /stats                          records and items per library and tier, and totals
    POST /items/status                   live item status (bearer token of a library)
    GET  /openapi.json                   the OpenAPI document (federation/openapi.json)

Every error is JSON `{"error": CODE, "message": TEXT, ...}` with a fitting HTTP status. The
rules themselves live in `federation.availability` and `federation.itemstatus`; this module
only speaks HTTP. `install_api(app, service)` mounts it as a sub-application.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web
from multidict import MultiDictProxy

from federation.availability import (
    ReaderError,
    assess,
    identify_reader,
    joint_participants,
    lookup_barcode,
    lookup_card,
    range_text,
    summarize_holdings,
    token_scope,
)
from federation.cqlmap import CQLMapper, parse_cql
from federation.httpquery import undecodable_parameter
from federation.observability import METRICS_KEY
from federation.itemstatus import (
    MAX_BATCH_ITEMS,
    StatusInputError,
    UpdateInterrupted,
    apply_updates,
    current_items,
    parse_batch,
)
from federation.records import record_json
from federation.rules import Library, Network
from federation.search import TIER_TITLES, SearchService, UnknownDatabase
from indexer.indexes import IndexDefinition
from indexer.model import UnionRecord
from indexer.query import Clause, FacetRequest, Relation, SortKey
from indexer.store import QueryNotSupported, StoreError, StoreStats
from protocols.sru import SRUDiagnostic

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
OPENAPI_PATH = Path(__file__).with_name("openapi.json")
DEFAULT_LIMIT = 10
MAX_LIMIT = 100
MAX_OFFSET = 10_000
MAX_FACET_LIMIT = 100
MAX_QUERY_LENGTH = 8192
# Room for MAX_BATCH_ITEMS updates of generous size; larger bodies are refused before parsing.
MAX_BODY_BYTES = 256 * 1024
DEFAULT_FACET_LIMIT = 10


@dataclass(frozen=True)
class QueryParameter:
    """A query parameter a route accepts: text, or a whole number within bounds."""

    name: str
    integer: bool = False
    default: int | str | None = None
    minimum: int | None = None
    maximum: int | None = None


# Every query parameter of every route, by route name (ROUTES), in one place: handlers read
# their parameters only through it (`Query`), and tests/test_api.py holds the OpenAPI document
# to it. A route not listed takes none; parameters a route does not take are ignored.
QUERY_PARAMETERS: dict[str, tuple[QueryParameter, ...]] = {
    "search": (
        QueryParameter("q"),
        QueryParameter("cql"),
        QueryParameter("database", default="union"),
        QueryParameter("offset", integer=True, default=0, minimum=0, maximum=MAX_OFFSET),
        QueryParameter("limit", integer=True, default=DEFAULT_LIMIT, minimum=0, maximum=MAX_LIMIT),
        QueryParameter("sort"),
        QueryParameter("facets"),
        QueryParameter("facet_limit", integer=True, default=DEFAULT_FACET_LIMIT, minimum=1, maximum=MAX_FACET_LIMIT),
    ),
    "availability": (
        QueryParameter("card"),
        QueryParameter("library"),
    ),
}


@dataclass(frozen=True)
class Query:
    """A request's query parameters as its route declares them (QUERY_PARAMETERS); reading one
    the route does not declare is a programming error."""

    route: str
    values: MultiDictProxy[str]

    def _declared(self, name: str, integer: bool) -> QueryParameter:
        found = next((p for p in QUERY_PARAMETERS.get(self.route, ()) if p.name == name), None)
        if found is None or found.integer != integer:
            raise LookupError(f"route {self.route!r} declares no {'integer' if integer else 'text'} "
                              f"query parameter {name!r} (api.QUERY_PARAMETERS)")
        return found

    def text(self, name: str) -> str:
        """The value, stripped; the declared default (or "") when absent or blank."""
        parameter = self._declared(name, integer=False)
        value = self.values.get(name, "").strip()
        return value or str(parameter.default or "")

    def integer(self, name: str) -> int:
        """The whole number; the declared default when absent or empty; 400 when not a whole
        number or outside the declared bounds."""
        parameter = self._declared(name, integer=True)
        text = self.values.get(name)
        if text is None or text == "":
            return int(parameter.default or 0)
        try:
            value = int(text)
        except ValueError:
            raise ApiError(400, "bad_parameter", f"{name}: {text!r} is not a whole number") from None
        low = parameter.minimum if parameter.minimum is not None else value
        high = parameter.maximum if parameter.maximum is not None else value
        if not low <= value <= high:
            raise ApiError(400, "bad_parameter", f"{name}: {value} is outside {low}..{high}")
        return value


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def response(self) -> web.Response:
        headers = {"WWW-Authenticate": 'Bearer realm="items"'} if self.status == 401 else None
        return _json({"error": self.code, "message": self.message, **self.extra}, status=self.status, headers=headers)


def _json(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=json.dumps(data, ensure_ascii=False), status=status, headers=headers,
                        content_type="application/json", charset="utf-8")


# ---------------------------------------------------------------------------------------------
# Plain data views shared with the CLI


def names_dict(names: Any) -> dict[str, str]:
    return {"zh": names.zh, "en": names.en}


def catalogue_stats(network: Network, stats: StoreStats) -> dict[str, Any]:
    """Records and items per library (every library of the rule set, in its order) and per tier,
    and the network's totals. A record counts for a library or tier when it holds an item there."""
    empty = {"records": 0, "items": 0}
    libraries = [
        {"library": code, "name": str(library.names), "tier": library.tier, "parent": library.parent,
         **stats.by_library.get(code, empty)}
        for code, library in network.libraries.items()
    ]
    libraries += [
        {"library": code, "name": code, "tier": "", "parent": None, **counts, "unknown": True}
        for code, counts in sorted(stats.by_library.items()) if code not in network.libraries
    ]
    tiers = []
    for tier, members in network.by_tier().items():
        zh, en = TIER_TITLES.get(tier, (tier, tier))
        tiers.append({"tier": tier, "title_zh": zh, "title_en": en, "libraries": len(members),
                      **stats.by_tier.get(tier, empty)})
    return {
        "network": network.id,
        "names": names_dict(network.names),
        "totals": {"records": stats.records, "items": stats.items, "libraries": len(network.libraries)},
        "by_tier": tiers,
        "by_library": libraries,
    }


def library_brief(library: Library) -> dict[str, Any]:
    return {"code": library.code, "names": names_dict(library.names), "tier": library.tier,
            "parent": library.parent, "href": f"{API_PREFIX}/libraries/{library.code}"}


def _first(record: UnionRecord, index: str) -> str | None:
    values = record.fields.get(index) or []
    return values[0] if values else None


def _tiers_of(holdings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    tiers: dict[str, dict[str, Any]] = {}
    for entry in holdings:
        tier = tiers.setdefault(entry["tier"], {"tier": entry["tier"], "libraries": [], "copies": 0, "available": 0})
        tier["libraries"].append(entry["library"])
        tier["copies"] += entry["copies"]
        tier["available"] += entry["available"]
    return list(tiers.values())


# ---------------------------------------------------------------------------------------------


class JsonApi:
    def __init__(self, service: SearchService):
        self.service = service
        self.network: Network = service.network
        self.table = service.table
        self.mapper = CQLMapper(service.table)
        self.openapi = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))

    # -- search -----------------------------------------------------------------------------
    def _index(self, name: str, purpose: str) -> IndexDefinition:
        definition = self.table.get(name)
        if definition is None:
            try:
                definition = self.mapper.index(name)
            except SRUDiagnostic:
                raise ApiError(400, "bad_parameter", f"{purpose}: unknown index {name!r}") from None
        return definition

    def _sort(self, text: str) -> tuple[SortKey, ...]:
        keys = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            ascending = not part.startswith("-")
            definition = self._index(part.lstrip("-+"), "sort")
            if not definition.sortable:
                sortable = ", ".join(d.name for d in self.table if d.sortable)
                raise ApiError(400, "bad_parameter", f"sort: {definition.name} is not sortable (sortable: {sortable})")
            keys.append(SortKey(definition.name, ascending))
        return tuple(keys)

    def _facets(self, text: str, limit: int) -> tuple[FacetRequest, ...]:
        requests = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            definition = self._index(part, "facets")
            if not definition.facet:
                facets = ", ".join(d.name for d in self.table if d.facet)
                raise ApiError(400, "bad_parameter", f"facets: {definition.name} is not a facet index (facets: {facets})")
            requests.append(FacetRequest(definition.name, limit))
        return tuple(requests)

    async def search(self, request: web.Request) -> web.Response:
        params = _query(request)
        keywords, cql_text = params.text("q"), params.text("cql")
        if bool(keywords) == bool(cql_text):
            raise ApiError(400, "bad_parameter", "give exactly one of q (keywords) and cql (a CQL query)")
        if len(keywords or cql_text) > MAX_QUERY_LENGTH:
            raise ApiError(400, "bad_parameter", f"the query is longer than {MAX_QUERY_LENGTH} characters")
        control = next((n for n, c in enumerate(keywords) if ord(c) < 32 or ord(c) == 127), None)
        if control is not None:
            raise ApiError(400, "bad_parameter", f"q: control character U+{ord(keywords[control]):04X} "
                                                 f"at position {control}")
        offset = params.integer("offset")
        limit = params.integer("limit")
        facet_limit = params.integer("facet_limit")
        database = params.text("database")
        if self.service.database(database) is None:
            names = ", ".join(d.name for d in self.service.databases())
            raise ApiError(400, "bad_parameter", f"database: no database {database!r} (databases: {names})")
        sort = self._sort(params.text("sort"))
        facets = self._facets(params.text("facets"), facet_limit)
        if cql_text:
            try:
                mapped = self.mapper.map(parse_cql(cql_text))
            except SRUDiagnostic as diagnostic:
                raise ApiError(400, "bad_query", diagnostic.message + (f": {diagnostic.details}" if diagnostic.details else ""),
                               diagnostic={"code": diagnostic.code, "uri": diagnostic.uri, "details": diagnostic.details}) from None
            query = mapped.query
            if mapped.sort:
                if sort:
                    raise ApiError(400, "bad_parameter", "sort given both in the CQL query (sortBy) and as sort")
                sort = mapped.sort
        else:
            query = Clause(self.table.default_index, Relation.ALL, keywords)
        try:
            outcome = await self.service.search(database, query, sort=sort, offset=offset, limit=limit, facets=facets)
        except QueryNotSupported as error:
            raise ApiError(400, "bad_query", str(error)) from None
        next_offset = offset + len(outcome.records)
        return _json({
            "query": {"q": keywords or None, "cql": cql_text or None, "database": database,
                      "sort": [{"index": k.index, "ascending": k.ascending} for k in sort]},
            "total": outcome.total,
            "offset": offset,
            "limit": limit,
            "next_offset": next_offset if next_offset < outcome.total and outcome.records else None,
            "records": [self._summary(record) for record in outcome.records],
            "facets": [{"index": f.index, "values": [{"value": v.value, "count": v.count} for v in f.values]}
                       for f in outcome.facets],
        })

    def _summary(self, record: UnionRecord) -> dict[str, Any]:
        holdings = summarize_holdings(record.items, self.network)
        return {
            "id": record.id,
            "title": _first(record, "title"),
            "creator": _first(record, "creator"),
            "publisher": _first(record, "publisher"),
            "date": _first(record, "date"),
            "isbn": record.fields.get("isbn", []),
            "format": record.master_contribution.format.value,
            "copies": sum(h["copies"] for h in holdings),
            "available": sum(h["available"] for h in holdings),
            "holdings": holdings,
            "href": f"{API_PREFIX}/records/{record.id}",
        }

    # -- records ----------------------------------------------------------------------------
    async def _record(self, record_id: str) -> UnionRecord:
        [record] = await self.service.fetch("union", [record_id])
        if record is None:
            raise ApiError(404, "not_found", f"no union record {record_id!r}")
        return record

    async def record(self, request: web.Request) -> web.Response:
        record = await self._record(request.match_info["id"])
        data = record_json(record, self.service.directory)
        holdings = summarize_holdings(record.items, self.network)
        data["holdings_summary"] = holdings
        data["tiers"] = _tiers_of(holdings)
        return _json(data)

    async def availability(self, request: web.Request) -> web.Response:
        query = _query(request)
        card = query.text("card") or None
        library = query.text("library") or None
        if card is None and library is None:
            raise ApiError(400, "bad_parameter", "give card=NUMBER (the reader's card) and/or library=CODE "
                                                 "(where the reader wants the book)")
        try:
            reader = identify_reader(self.network, card=card, library=library)
        except ReaderError as error:
            raise ApiError(400, error.code, error.message, rule=error.rule) from None
        record = await self._record(request.match_info["id"])
        return _json(assess(record, self.network, reader).to_dict())

    # -- the network ------------------------------------------------------------------------
    async def libraries(self, request: web.Request) -> web.Response:
        network = self.network
        circulation = network.rules.circulation
        tiers = []
        for tier, members in network.by_tier().items():
            zh, en = TIER_TITLES.get(tier, (tier, tier))
            tiers.append({"tier": tier, "title_zh": zh, "title_en": en,
                          "lends_across_network": tier in circulation.lending_tiers,
                          "libraries": [library_brief(m) for m in members]})
        return _json({
            "network": {"id": network.id, "names": names_dict(network.names), "hub": network.hub,
                        "example_ranges": network.example_ranges},
            "circulation": {
                "one_card": circulation.one_card, "borrow_anywhere": circulation.borrow_anywhere,
                "return_anywhere": circulation.return_anywhere, "lending_tiers": list(circulation.lending_tiers),
                "reference_only_locations": list(circulation.reference_only_locations),
                "transfer_days": circulation.transfer_days,
                "transfers": [{"between": list(t.between), "days": t.days} for t in circulation.transfers],
            },
            "tiers": tiers,
            "joint_networks": [
                {"id": j.id, "names": names_dict(j.names), "members": list(j.members),
                 "participants": sorted(joint_participants(network, j)), "shared_cards": j.shared_cards,
                 "other_members": [{"code": m.code, "names": names_dict(m.names)} for m in j.other_members]}
                for j in network.joint_networks
            ],
        })

    async def library(self, request: web.Request) -> web.Response:
        code = request.match_info["code"]
        network = self.network
        library = network.library(code)
        if library is None:
            raise ApiError(404, "not_found", f"{code!r} is not a library of {network.id} ({', '.join(network.libraries)})")
        stats = await self.service.store.stats()
        transfer = {other: network.transfer_days(code, other) for other in network.libraries if other != code}
        return _json({
            **library_brief(library),
            "address": library.address,
            "barcode_ranges": [range_text(r) for r in library.barcode_ranges],
            "card_ranges": [range_text(r) for r in library.card_ranges],
            "ancestors": network.ancestors(code),
            "children": [c.code for c in network.children(code)],
            "lends_across_network": network.lends_across_network(code),
            "transfer_days": transfer,
            "joint_networks": [j.id for j in network.joint_networks if code in joint_participants(network, j)],
            "status_update_scope": sorted(token_scope(network, code)),
            "holdings": stats.by_library.get(code, {"records": 0, "items": 0}),
        })

    async def barcode(self, request: web.Request) -> web.Response:
        number = request.match_info["barcode"]
        owner = lookup_barcode(self.network, number)
        found = (await current_items(self.service, [owner.number])).get(owner.number)
        data = owner.to_dict()
        data["in_catalogue"] = found is not None
        if found is not None:
            record_id, item = found
            data.update(record=record_id, item={
                "library": item.library, "tier": item.tier, "location": item.location,
                "call_number": item.call_number, "availability": item.availability.value,
                "due_date": item.due_date,
            })
        elif not owner.found:
            raise ApiError(404, "unknown_barcode", owner.reason, number=owner.number)
        return _json(data)

    async def card(self, request: web.Request) -> web.Response:
        owner = lookup_card(self.network, request.match_info["number"])
        if not owner.found:
            raise ApiError(404, "unknown_card", owner.reason, number=owner.number)
        data = owner.to_dict()
        data["honoured"] = not owner.reason
        if owner.reason:
            data["reason"] = owner.reason
        return _json(data)

    async def stats(self, request: web.Request) -> web.Response:
        return _json(catalogue_stats(self.network, await self.service.store.stats()))

    async def openapi_document(self, request: web.Request) -> web.Response:
        return _json(self.openapi)

    # -- live status ------------------------------------------------------------------------
    def _token_library(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if not header:
            raise ApiError(401, "unauthorized", "send a library's token: Authorization: Bearer TOKEN")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthorized", "the Authorization header must be 'Bearer TOKEN'")
        library = self.network.auth.library_for_token(token.strip())
        if library is None:
            raise ApiError(401, "invalid_token", "the token is not one of this network's library tokens")
        return library

    async def items_status(self, request: web.Request) -> web.Response:
        library = self._token_library(request)
        if request.content_type != "application/json":
            raise ApiError(415, "unsupported_media_type",
                           f"send the batch as application/json, not {request.content_type or 'no content type'}")
        body = await _read_limited(request, MAX_BODY_BYTES)
        try:
            payload = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError as error:
            raise ApiError(400, "bad_json", f"the body is not UTF-8: byte {error.start}") from None
        except json.JSONDecodeError as error:
            raise ApiError(400, "bad_json", f"the body is not JSON: {error.msg} at line {error.lineno} "
                                            f"column {error.colno}") from None
        try:
            updates = parse_batch(payload)
        except StatusInputError as error:
            raise ApiError(400, "bad_request", error.problems[0], problems=error.problems) from None
        metrics = request.config_dict.get(METRICS_KEY)
        try:
            report = await apply_updates(self.service, updates, library=library)
        except UpdateInterrupted as failure:
            # A store may fail after writing part of the batch: the answer says which items were
            # applied, so that the client does not assume that nothing (or everything) changed.
            # The store's own error stays in the log (its URL may carry credentials).
            log.error("items/status from %s: store failure: %s", library, failure)
            if metrics is not None:
                metrics.observe_item_updates(len(failure.applied), len(updates) - len(failure.applied))
            resend = "" if not failure.not_applied and not failure.unknown else (
                "; send the items of not_applied and unknown again (the batch is idempotent: sending all of it "
                "again is safe too)")
            raise ApiError(503, "unavailable", f"the catalogue failed during the update: {failure.summary()}{resend}",
                           library=library, **failure.to_dict()) from None
        log.info("items/status from %s: %d updates, %d applied, %d rejected, %d outside its scope",
                 library, len(updates), report.applied, report.rejected, len(report.violations))
        if metrics is not None:
            metrics.observe_item_updates(report.applied, len(updates) - report.applied)
        if report.violations:
            first = report.violations[0]
            raise ApiError(403, "forbidden", f"items[{first.index}]: {first.reason}; nothing was applied",
                           library=library, applied=0,
                           violations=[v.to_dict() for v in report.violations])
        return _json({"library": library, **report.to_dict()})


async def _read_limited(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(400, "too_large", f"the body is {request.content_length} bytes; at most {limit} "
                                         f"(and {MAX_BATCH_ITEMS} updates) per batch")
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > limit:
            raise ApiError(400, "too_large", f"the body is larger than {limit} bytes; at most {limit} "
                                             f"(and {MAX_BATCH_ITEMS} updates) per batch")
        chunks.append(chunk)
    return b"".join(chunks)


def _query(request: web.Request) -> Query:
    """The request's query parameters, as its route declares them; 400 naming the first whose
    percent-escapes are not UTF-8 (aiohttp would pass it on with U+FFFD in their place)."""
    broken = undecodable_parameter(request.rel_url.raw_query_string)
    if broken is not None:
        raise ApiError(400, "bad_parameter", f"{broken}: not UTF-8 (percent-escapes of other bytes)")
    return Query(request.match_info.route.name or "", request.query)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        return error.response()
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return ApiError(error.status, error.reason.lower().replace(" ", "_"),
                        f"{request.method} {request.path}: {error.reason}").response()
    except UnknownDatabase as error:
        return ApiError(400, "bad_parameter", str(error)).response()
    except StoreError as error:
        log.error("API: store failure on %s: %s", request.path_qs, error)
        return ApiError(503, "unavailable", "the catalogue is unavailable; try again").response()
    except Exception:
        log.exception("API request failed: %s %s", request.method, request.path_qs)
        return ApiError(500, "internal", "internal error (logged)").response()


@web.middleware
async def _open_reads(request: web.Request, handler: Handler) -> web.StreamResponse:
    """OPAC pages on a library's own site read the catalogue from the browser: GET answers may be
    read from any origin. Status updates come from circulation systems, server to server, and
    get no such header."""
    response = await handler(request)
    if request.method == "GET":
        response.headers["Access-Control-Allow-Origin"] = "*"
    return response


ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", "/search", "search"),
    ("GET", "/records/{id}", "record"),
    ("GET", "/records/{id}/availability", "availability"),
    ("GET", "/libraries", "libraries"),
    ("GET", "/libraries/{code}", "library"),
    ("GET", "/barcodes/{barcode}", "barcode"),
    ("GET", "/cards/{number}", "card"),
    ("GET", "/stats", "stats"),
    ("POST", "/items/status", "items_status"),
    ("GET", "/openapi.json", "openapi_document"),
)


def create_api_app(service: SearchService) -> web.Application:
    """The API as an application to mount at API_PREFIX."""
    api = JsonApi(service)
    app = web.Application(middlewares=[_open_reads, _json_errors])
    for method, path, name in ROUTES:
        app.router.add_route(method, path, getattr(api, name), name=name)
    return app


def install_api(app: web.Application, service: SearchService) -> None:
    app.add_subapp(API_PREFIX, create_api_app(service))


__all__ = ["API_PREFIX", "QUERY_PARAMETERS", "ROUTES", "QueryParameter", "catalogue_stats", "create_api_app",
           "install_api"]

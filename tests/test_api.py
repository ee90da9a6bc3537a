"""The JSON API on a real server: the Guangrao demo catalogue (generated, seeded) ingested through
the ingest pipeline into an embedded store, the application on a free loopback port, requests
with aiohttp's client, Z39.50 through zoomsh, and the `items-status` / `stats` commands through
the console script's entry point.

Expected figures come from the MARC files the catalogue was built from (read with pymarc) and
from the rule set, not from the store. Every JSON answer is checked against the schema the
OpenAPI document gives for it."""
from __future__ import annotations

import asyncio
import json
import random
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator
from urllib.parse import quote

import pymarc
import pytest
from aiohttp import ClientSession
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from es_support import es_demo_catalogue
from http_support import served_app
from federation.api import API_PREFIX, QUERY_PARAMETERS, ROUTES
from federation.cli import main
from federation.federated import FederatedSearch
from federation.itemstatus import (
    FIELDS,
    MAX_BARCODE_LENGTH,
    MAX_BATCH_ITEMS,
    MAX_LOCATION_LENGTH,
    REQUIRED_FIELDS,
    STATUS_VALUES,
    StatusInputError,
    parse_batch,
    parse_csv,
)
from federation.rules import Network, load_network
from federation.search import SearchService
from federation.z3950service import start_z3950_server
from protocols.z3950 import pdu as P
from protocols.z3950.client import Z3950Client
from indexer.demo import write_demo_data
from indexer.embedded import EmbeddedStore
from indexer.indexes import load_index_table
from indexer.ingest import IngestOptions, ingest
from indexer.query import Clause, Relation

ROOT = Path(__file__).resolve().parent.parent
GUANGRAO = ROOT / "config" / "networks" / "guangrao.yaml"
OPENAPI = json.loads((ROOT / "federation" / "openapi.json").read_text(encoding="utf-8"))
# The example tokens whose SHA-256 digests guangrao.yaml configures (see its `auth` comment).
TOKENS = {"GR": "example-token-GR", "GR-DW": "example-token-GR-DW", "GR-LD": "example-token-GR-LD"}
DEMO_RECORDS = 240
DEMO_SEED = 11


# -- the catalogue and what its input files say ----------------------------------------------------

@dataclass
class Catalogue:
    store_dir: Path
    works: int
    records_by_library: Counter = field(default_factory=Counter)
    items_by_library: Counter = field(default_factory=Counter)
    # barcode -> (library, shelving location)
    items: dict[str, tuple[str, str]] = field(default_factory=dict)


def _input_holdings(network: Network, demo_dir: Path) -> Catalogue:
    catalogue = Catalogue(store_dir=Path(), works=0)
    default = network.rules.cataloguing.holdings
    for code, library in network.libraries.items():
        mapping = library.holdings or default
        assert mapping is not None and mapping.barcode is not None
        with (demo_dir / f"{code}.mrc").open("rb") as stream:
            for record in pymarc.MARCReader(stream, to_unicode=True, force_utf8=True):
                fields = record.get_fields(mapping.tag)
                if fields:
                    catalogue.records_by_library[code] += 1
                for holding in fields:
                    catalogue.items_by_library[code] += 1
                    location = holding.get_subfields(mapping.location)[0] if mapping.location else ""
                    catalogue.items[holding.get_subfields(mapping.barcode)[0]] = (code, location)
    return catalogue


@pytest.fixture(scope="module")
def network() -> Network:
    return load_network(GUANGRAO)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory, network: Network) -> Catalogue:
    directory = tmp_path_factory.mktemp("api-catalogue")
    table = load_index_table()
    policy = network.to_ingest_policy()
    summary = write_demo_data(policy, directory / "demo", records=DEMO_RECORDS, seed=DEMO_SEED)
    store_dir = directory / "store"

    async def load() -> None:
        store = EmbeddedStore(store_dir, table)
        await store.open()
        try:
            report = await ingest(sorted((directory / "demo").glob("*.mrc")), store, table, policy,
                                  IngestOptions(quarantine_path=directory / "quarantine.jsonl"))
            assert report.reconciled and report.quarantined == 0, report.to_json()
        finally:
            await store.close()

    asyncio.run(load())
    expected = _input_holdings(network, directory / "demo")
    expected.store_dir = store_dir
    expected.works = summary.works
    return expected


@dataclass
class Running:
    base: str
    root: str
    http: ClientSession
    service: SearchService
    store_dir: Path

    async def get(self, path: str, status: int = 200, **params: str) -> Any:
        async with self.http.get(self.base + path, params=params) as response:
            data = await response.json()
            assert response.status == status, data
            assert response.content_type == "application/json"
            check_response(path, "get", status, data)
            return data

    async def post_status(self, body: Any, *, token: str | None, status: int = 200,
                          content_type: str = "application/json") -> Any:
        headers = {"Content-Type": content_type}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        raw = body if isinstance(body, (bytes, str)) else json.dumps(body)
        async with self.http.post(self.base + "/items/status", data=raw, headers=headers) as response:
            data = await response.json()
            assert response.status == status, data
            check_response("/items/status", "post", status, data)
            return data

    async def item(self, barcode: str) -> dict[str, Any]:
        return (await self.get(f"/barcodes/{barcode}"))["item"]


@pytest.fixture
async def running(catalogue: Catalogue, network: Network, tmp_path: Path) -> AsyncIterator[Running]:
    store_dir = tmp_path / "store"
    shutil.copytree(catalogue.store_dir, store_dir)      # each test changes its own copy
    table = load_index_table()
    store = EmbeddedStore(store_dir, table)
    await store.open()
    service = SearchService(network, table, store)
    try:
        async with served_app(service) as root, ClientSession() as http:
            yield Running(root + API_PREFIX, root, http, service, store_dir)
    finally:
        await store.close()


# -- the OpenAPI document --------------------------------------------------------------------------

def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = OPENAPI["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "object": dict, "list": list,
          "array": list, "null": type(None)}


def validate(value: Any, schema: dict[str, Any], where: str = "$") -> None:
    """The JSON Schema subset the document uses: type (or list of types), enum, properties,
    required, additionalProperties, items, maxItems/minItems, maxLength."""
    schema = _resolve(schema)
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        ok = any(isinstance(value, _TYPES[t]) and not (t in ("integer", "number") and isinstance(value, bool))
                 for t in types)
        assert ok, f"{where}: {value!r} is not {types}"
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            assert name in value, f"{where}: missing {name}"
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            if name in properties:
                validate(item, properties[name], f"{where}.{name}")
            elif extra is False:
                raise AssertionError(f"{where}: undocumented property {name!r}")
            elif isinstance(extra, dict):
                validate(item, extra, f"{where}.{name}")
    if isinstance(value, list) and "items" in schema:
        for n, item in enumerate(value):
            validate(item, schema["items"], f"{where}[{n}]")


def _document_path(path: str) -> str:
    """A request path -> the document's templated path."""
    for _, template, _ in ROUTES:
        pattern = "^" + re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path):
            return template
    raise AssertionError(f"{path} matches no documented path")


def check_response(path: str, method: str, status: int, data: Any) -> None:
    operation = OPENAPI["paths"][_document_path(path.split("?")[0])][method]
    assert str(status) in operation["responses"], f"{method.upper()} {path}: {status} is not documented"
    validate(data, operation["responses"][str(status)]["content"]["application/json"]["schema"])


def test_openapi_document_lists_exactly_the_routes(catalogue: Catalogue, network: Network) -> None:
    from federation.api import create_api_app

    async def routes() -> set[tuple[str, str]]:
        store = EmbeddedStore(catalogue.store_dir, load_index_table())
        app = create_api_app(SearchService(network, load_index_table(), store))
        return {(r.method.lower(), r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"}

    served = asyncio.run(routes())
    documented = {(method, path) for path, operations in OPENAPI["paths"].items() for method in operations}
    assert served == documented
    for path, operations in OPENAPI["paths"].items():
        for method, operation in operations.items():
            assert operation["operationId"] == next(n for m, p, n in ROUTES if p == path and m.lower() == method)
    text = json.dumps(OPENAPI)
    for ref in set(re.findall(r'"#/components/schemas/([A-Za-z]+)"', text)):
        assert ref in OPENAPI["components"]["schemas"], ref


def _parameters(operation: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in operation.get("parameters", []) if p["in"] == where}


def test_openapi_query_parameters_are_the_ones_each_handler_declares() -> None:
    """Each route's documented query parameters are exactly those it declares in
    api.QUERY_PARAMETERS (the only way its handler reads any), with the same kind, bounds and
    default; its path parameters are those of its template."""
    assert set(QUERY_PARAMETERS) <= {name for _, _, name in ROUTES}
    for method, path, name in ROUTES:
        operation = OPENAPI["paths"][path][method.lower()]
        documented = _parameters(operation, "query")
        declared = {p.name: p for p in QUERY_PARAMETERS.get(name, ())}
        assert list(documented) == list(declared), f"{method} {path}: query parameters"
        for parameter in declared.values():
            schema = documented[parameter.name]["schema"]
            assert documented[parameter.name]["required"] is False, (path, parameter.name)
            assert schema["type"] == ("integer" if parameter.integer else "string"), (path, parameter.name)
            assert (schema.get("minimum"), schema.get("maximum"), schema.get("default")) == \
                (parameter.minimum, parameter.maximum, parameter.default), (path, parameter.name)
        assert set(_parameters(operation, "path")) == set(re.findall(r"\{([a-z_]+)\}", path)), path
        assert all(p["required"] for p in _parameters(operation, "path").values()), path


def test_openapi_request_body_limits_are_the_codes() -> None:
    batch = OPENAPI["components"]["schemas"]["StatusBatch"]
    assert (batch["properties"]["items"]["minItems"], batch["properties"]["items"]["maxItems"]) == (1, MAX_BATCH_ITEMS)
    update = OPENAPI["components"]["schemas"]["StatusUpdate"]
    assert tuple(update["properties"]) == FIELDS and tuple(update["required"]) == REQUIRED_FIELDS
    assert update["properties"]["barcode"]["maxLength"] == MAX_BARCODE_LENGTH
    assert update["properties"]["location"]["maxLength"] == MAX_LOCATION_LENGTH
    assert tuple(update["properties"]["status"]["enum"]) == STATUS_VALUES
    assert update["additionalProperties"] is False and batch["additionalProperties"] is False
    body = OPENAPI["paths"]["/items/status"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/StatusBatch"}
    assert [m for m, p, _ in ROUTES if "requestBody" in OPENAPI["paths"][p][m.lower()]] == ["POST"]


async def test_integer_parameters_are_held_to_their_declared_bounds(running: Running) -> None:
    """The declaration is what the handler applies: each bound refused one past it, with the
    message naming it, and the default used when the parameter is absent."""
    for parameter in QUERY_PARAMETERS["search"]:
        if not parameter.integer:
            continue
        for value in (parameter.minimum - 1, parameter.maximum + 1):
            refused = await running.get("/search", 400, q="图书馆", **{parameter.name: str(value)})
            assert refused["message"] == (f"{parameter.name}: {value} is outside "
                                          f"{parameter.minimum}..{parameter.maximum}")
        await running.get("/search", 200, q="图书馆", **{parameter.name: str(parameter.maximum)})
    answer = await running.get("/search", q="图书馆")
    defaults = {p.name: p.default for p in QUERY_PARAMETERS["search"]}
    assert (answer["offset"], answer["limit"], answer["query"]["database"]) == \
        (defaults["offset"], defaults["limit"], defaults["database"])


def test_a_handler_cannot_read_an_undeclared_parameter() -> None:
    from multidict import MultiDict, MultiDictProxy

    from federation.api import Query

    query = Query("availability", MultiDictProxy(MultiDict({"card": " 37052303000123 ", "limit": "5"})))
    assert query.text("card") == "37052303000123"
    for read in (lambda: query.text("limit"), lambda: query.integer("card"), lambda: Query("stats", query.values).text("q")):
        with pytest.raises(LookupError, match="QUERY_PARAMETERS"):
            read()


async def test_openapi_served(running: Running) -> None:
    assert await running.get("/openapi.json") == OPENAPI


async def test_reads_are_open_to_other_origins_writes_are_not(running: Running) -> None:
    async with running.http.get(running.base + "/libraries", headers={"Origin": "https://opac.example.org"}) as response:
        assert response.headers["Access-Control-Allow-Origin"] == "*"
    async with running.http.get(running.base + "/records/nosuch") as response:
        assert response.status == 404 and response.headers["Access-Control-Allow-Origin"] == "*"
    async with running.http.post(running.base + "/items/status", json={"items": []},
                                 headers={"Authorization": f"Bearer {TOKENS['GR']}"}) as response:
        assert response.status == 400 and "Access-Control-Allow-Origin" not in response.headers


# -- search and records ----------------------------------------------------------------------------

async def test_search_all_records_with_library_facet_matches_the_input(running: Running, catalogue: Catalogue) -> None:
    data = await running.get("/search", cql="cql.allRecords=1", facets="library,tier", facet_limit="100", limit="5")
    assert data["total"] == catalogue.works
    assert len(data["records"]) == 5 and data["next_offset"] == 5
    library_facet = {v["value"]: v["count"] for v in data["facets"][0]["values"]}
    assert library_facet == dict(catalogue.records_by_library)
    for record in data["records"]:
        assert record["copies"] == sum(h["copies"] for h in record["holdings"]) > 0


async def test_search_keywords_paging_and_sort(running: Running) -> None:
    first = await running.get("/search", q="中国", limit="3", sort="-date")
    assert first["total"] > 3 and first["query"]["sort"] == [{"index": "date", "ascending": False}]
    second = await running.get("/search", q="中国", limit="3", offset="3", sort="-date")
    everything = await running.get("/search", q="中国", limit="100", sort="-date")
    ids = [r["id"] for r in everything["records"]]
    assert [r["id"] for r in first["records"] + second["records"]] == ids[:6]
    dates = [r["date"] for r in everything["records"] if r["date"]]
    assert dates == sorted(dates, reverse=True)
    assert everything["next_offset"] is None and len(ids) == everything["total"]
    for record in everything["records"][:6]:
        assert "中国" in json.dumps(await running.get(f"/records/{record['id']}"), ensure_ascii=False)


async def test_search_in_a_library_database_shows_its_copies_only(running: Running, catalogue: Catalogue) -> None:
    data = await running.get("/search", cql="cql.allRecords=1", database="GR-DW", limit="100")
    assert data["total"] == catalogue.records_by_library["GR-DW"]
    assert {h["library"] for r in data["records"] for h in r["holdings"]} == {"GR-DW"}
    # The same-copy rule of CQL: a GR-DW copy that is in a given location.
    location = next(loc for (lib, loc) in catalogue.items.values() if lib == "GR-DW")
    same_copy = await running.get("/search", cql=f'net.library=GR-DW and net.location="{location}"', limit="100")
    expected = sum(1 for b, (lib, loc) in catalogue.items.items() if lib == "GR-DW" and loc == location)
    copies = sum(h["copies"] for r in same_copy["records"] for h in r["holdings"] if h["library"] == "GR-DW")
    assert same_copy["total"] <= expected <= copies


@pytest.mark.parametrize("params, message", [
    ({}, "give exactly one of q (keywords) and cql"),
    ({"q": "a", "cql": "b"}, "give exactly one of q (keywords) and cql"),
    ({"q": "a", "limit": "1000"}, "limit: 1000 is outside 0..100"),
    ({"q": "a", "offset": "x"}, "offset: 'x' is not a whole number"),
    ({"q": "a", "limit": "1e3"}, "limit: '1e3' is not a whole number"),
    ({"q": "a\x00b"}, "q: control character U+0000 at position 1"),
    ({"q": "a", "sort": "-id"}, "sort: id is not sortable (sortable: title, creator, publisher, date, classification)"),
    ({"q": "a", "sort": "subject"}, "sort: subject is not sortable"),
    ({"q": "a", "sort": "nosuch"}, "sort: unknown index 'nosuch'"),
    ({"q": "a", "facets": "title"}, "facets: title is not a facet index"),
    ({"q": "a", "database": "GR-XX"}, "database: no database 'GR-XX'"),
    ({"cql": "dc.title = (x"}, "parentheses: expected ')', got EOF at character 13"),
    ({"cql": "dc.nosuch = x"}, "Unsupported index"),
])
async def test_search_errors(running: Running, params: dict[str, str], message: str) -> None:
    data = await running.get("/search", 400, **params)
    assert message in data["message"]
    if "cql" in params and "q" not in params:
        assert data["error"] == "bad_query" and data["diagnostic"]["code"] in (10, 13, 16)


async def _record_with(running: Running, *libraries: str) -> dict[str, Any]:
    """A record holding an available copy, outside reference-only locations, at each library."""
    found = await running.get("/search", cql=f"net.library={libraries[0]}", limit="100")
    for summary in found["records"]:
        holdings = {h["library"]: h for h in summary["holdings"]}
        if all(code in holdings and holdings[code]["available"] for code in libraries):
            return await running.get(f"/records/{summary['id']}")
    raise AssertionError(f"the demo catalogue has no record with available copies at {libraries}")


async def test_record_holdings_by_library_and_tier(running: Running, catalogue: Catalogue, network: Network) -> None:
    record = await _record_with(running, "GR", "GR-DW")
    by_library = {group["library"]: group for group in record["holdings"]}
    for group in record["holdings"]:
        assert group["tier"] == network.tier_of(group["library"])
        for item in group["items"]:
            assert catalogue.items[item["barcode"]] == (group["library"], item["location"])
    tiers = {t["tier"]: t for t in record["tiers"]}
    assert tiers["hub"]["libraries"] == ["GR"] and "GR-DW" in tiers["branch"]["libraries"]
    assert sum(t["copies"] for t in record["tiers"]) == sum(len(g["items"]) for g in by_library.values())
    assert record["marc"]["fields"][0] == {"001": record["id"]}
    missing = await running.get("/records/nosuchrecord", 404)
    assert missing["error"] == "not_found"


# -- availability ----------------------------------------------------------------------------------

async def test_availability_for_a_branch_card(running: Running, network: Network) -> None:
    record = await _record_with(running, "GR", "GR-DW")
    answer = await running.get(f"/records/{record['id']}/availability", card="37052303000123")
    assert answer["reader"]["issuer"] == "GR-DW" and answer["reader"]["pickup"] == "GR-DW"
    verdicts = {v["barcode"]: v for v in answer["items"]}
    for group in record["holdings"]:
        for item in group["items"]:
            verdict = verdicts[item["barcode"]]
            if item["availability"] != "available" or network.is_reference_only_location(item["location"]):
                assert verdict["verdict"] in ("not_available", "in_library_use_only")
            elif group["library"] == "GR-DW":
                assert verdict["verdict"] == "on_shelf_here"
            elif group["tier"] == "reading_room":
                assert (verdict["verdict"], verdict["rule"]) == ("visit_to_borrow", "rules.circulation.lending_tiers")
            else:
                assert verdict["verdict"] == "requestable"
                assert verdict["transfer_days"] == network.transfer_days(group["library"], "GR-DW")
    hub_copies = [v for v in answer["items"] if v["library"] == "GR" and v["verdict"] == "requestable"]
    assert hub_copies and all(v["transfer_days"] == 3 and v["rule"] == "rules.circulation.transfer_days"
                              for v in hub_copies)
    assert answer["returns"]["anywhere"] and answer["returns"]["libraries"] == list(network.libraries)
    # The same reader at the hub: GRJD's copies come in one day there (transfers[0]).
    at_hub = await running.get(f"/records/{record['id']}/availability", card="37052303000123", library="GR")
    assert at_hub["reader"]["rule"] == "rules.circulation.one_card"
    assert {v["verdict"] for v in at_hub["items"] if v["library"] == "GR" and v["availability"] == "available"
            and not network.is_reference_only_location(v["location"])} == {"on_shelf_here"}


@pytest.mark.parametrize("params, error, message", [
    ({}, "bad_parameter", "give card=NUMBER"),
    ({"card": "37052399000000"}, "unknown_card", "the nearest is GR-XZBM's 37052310000000-37052310999999"),
    ({"card": "44060000001234"}, "unknown_card", "was not issued in guangrao"),
    ({"library": "GM"}, "unknown_library", "'GM' is not a library of guangrao"),
])
async def test_availability_errors(running: Running, params: dict[str, str], error: str, message: str) -> None:
    record = await _record_with(running, "GR")
    data = await running.get(f"/records/{record['id']}/availability", 400, **params)
    assert data["error"] == error and message in data["message"]


# -- the network -----------------------------------------------------------------------------------

async def test_libraries(running: Running, network: Network) -> None:
    data = await running.get("/libraries")
    assert [t["tier"] for t in data["tiers"]] == ["hub", "branch", "reading_room", "mobile"]
    assert [b["code"] for t in data["tiers"] for b in t["libraries"]] == [
        code for tier in ("hub", "branch", "reading_room", "mobile") for code, lib in network.libraries.items()
        if lib.tier == tier]
    assert {t["tier"]: t["lends_across_network"] for t in data["tiers"]} == {
        "hub": True, "branch": True, "reading_room": False, "mobile": True}
    assert data["circulation"]["transfers"][0] == {"between": ["GR", "GR-GRJD"], "days": 1}
    station = await running.get("/libraries/GR-LD")
    assert station["tier"] == "mobile" and station["transfer_days"]["GR"] == 1 and station["transfer_days"]["GR-DW"] == 3
    branch = await running.get("/libraries/GR-GRJD")
    assert branch["children"] == ["GR-XYSQ"] and branch["status_update_scope"] == ["GR-GRJD", "GR-XYSQ"]
    assert (await running.get("/libraries/NOPE", 404))["error"] == "not_found"


async def test_barcodes_and_cards(running: Running, catalogue: Catalogue) -> None:
    barcode, (library, location) = next(iter(sorted(catalogue.items.items())))
    found = await running.get(f"/barcodes/{barcode}")
    assert (found["library"], found["in_catalogue"], found["item"]["location"]) == (library, True, location)
    unused = await running.get("/barcodes/GR03999999")          # in Dawang's range, no such item
    assert unused["library"] == "GR-DW" and unused["in_catalogue"] is False
    nowhere = await running.get("/barcodes/GM00000001", 404)
    assert nowhere["error"] == "unknown_barcode" and "prefix 'GR' and 8 digits" in nowhere["message"]
    card = await running.get("/cards/37052313000001", 404)
    assert "nearest is GR-XZBM's" in card["message"]
    issued = await running.get("/cards/37052300000001")
    assert (issued["library"], issued["honoured"]) == ("GR", True)
    # Absurdly long numbers are refused with a reason, not read as integers (Python refuses
    # more than 4300 digits, which made this a 500).
    huge = "9" * 5000
    for path, error, length in ((f"/barcodes/GR{huge}", "unknown_barcode", 5002), (f"/cards/{huge}", "unknown_card", 5000)):
        refused = await running.get(path, 404)
        assert refused["error"] == error and f"{length} characters" in refused["message"]
    record_id = (await running.get("/search", q="图书馆", limit="1"))["records"][0]["id"]
    reader = await running.get(f"/records/{record_id}/availability", 400, card=huge)
    assert reader["error"] == "unknown_card" and "5000 characters" in reader["message"]


async def test_stats_match_the_input(running: Running, catalogue: Catalogue, network: Network) -> None:
    data = await running.get("/stats")
    assert data["totals"] == {"records": catalogue.works, "items": sum(catalogue.items_by_library.values()),
                              "libraries": len(network.libraries)}
    assert [entry["library"] for entry in data["by_library"]] == list(network.libraries)
    for entry in data["by_library"]:
        assert (entry["records"], entry["items"]) == (catalogue.records_by_library[entry["library"]],
                                                      catalogue.items_by_library[entry["library"]])
    tiers = {t["tier"]: t for t in data["by_tier"]}
    assert tiers["branch"]["libraries"] == 10
    assert tiers["branch"]["items"] == sum(n for code, n in catalogue.items_by_library.items()
                                           if network.tier_of(code) == "branch")


# -- live status -----------------------------------------------------------------------------------

def _barcode_at(catalogue: Catalogue, network: Network, library: str, n: int = 0) -> str:
    return [b for b, (lib, loc) in sorted(catalogue.items.items())
            if lib == library and not network.is_reference_only_location(loc)][n]


async def test_status_update_is_visible_at_once_in_sru_z3950_and_json(
        running: Running, catalogue: Catalogue, network: Network) -> None:
    barcode = _barcode_at(catalogue, network, "GR-DW")
    result = await running.post_status({"items": [{"barcode": barcode, "status": "on_loan", "due_date": "2026-12-24"}]},
                                       token=TOKENS["GR-DW"])
    assert result["applied"] == 1 and result["items"][0]["changed"] is True
    record_id = result["items"][0]["record"]

    # JSON
    record = await running.get(f"/records/{record_id}")
    item = next(i for g in record["holdings"] for i in g["items"] if i["barcode"] == barcode)
    assert (item["availability"], item["due_date"]) == ("on_loan", "2026-12-24")
    answer = await running.get(f"/records/{record_id}/availability", library="GR-DW")
    verdict = next(v for v in answer["items"] if v["barcode"] == barcode)
    assert verdict["verdict"] == "not_available" and "due back 2026-12-24" in verdict["reason"]

    # SRU: the holdings field of the presentation record carries the new status.
    params = {"version": "1.2", "operation": "searchRetrieve", "query": f"net.barcode={barcode}",
              "recordSchema": "marcxml"}
    async with running.http.get(running.root + "/sru/union", params=params) as response:
        assert response.status == 200
        tree = etree.fromstring(await response.read())
    marc_ns = {"m": "http://www.loc.gov/MARC21/slim", "u": "info:srw/schema/8/unimarcxml-v0.1"}
    subfields = tree.xpath(
        "//*[local-name()='datafield'][@tag='905'][*[local-name()='subfield'][@code='b']=$b]"
        "/*[local-name()='subfield']", b=barcode, namespaces=marc_ns)
    values = {(s.get("code"), s.text) for s in subfields}
    assert ("z", "on_loan") in values and ("y", "2026-12-24") in values

    # Z39.50, OPAC record syntax, through zoomsh.
    server = await start_z3950_server(running.service, "127.0.0.1", 0)
    try:
        process = await asyncio.create_subprocess_exec(
            "zoomsh", f"open tcp:127.0.0.1:{server.port}/union", "set preferredRecordSyntax opac",
            f"find @attr 1=12 {record_id}", "show 0 1", "quit",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await asyncio.wait_for(process.communicate(), 30)
    finally:
        server.close()
        await server.wait_closed()
    text = output.decode("utf-8")
    assert ": 1 hits" in text
    holding = next(h for h in text.split("<holding>") if f"<itemId>{barcode}</itemId>" in h)
    assert "<publicNote>on_loan</publicNote>" in holding
    assert '<availableNow value="0"/>' in holding
    assert "<availabilityDate>2026-12-24</availabilityDate>" in holding


async def _sru_905_status(running: Running, database: str, barcode: str) -> set[tuple[str, str]]:
    params = {"version": "1.2", "operation": "searchRetrieve", "query": f"net.barcode={barcode}",
              "recordSchema": "marcxml"}
    async with running.http.get(f"{running.root}/sru/{database}", params=params) as response:
        assert response.status == 200
        tree = etree.fromstring(await response.read())
    subfields = tree.xpath(
        "//*[local-name()='datafield'][@tag='905' or @tag='852'][*[local-name()='subfield'][@code='b']=$b]"
        "/*[local-name()='subfield']", b=barcode)
    return {(s.get("code"), s.text) for s in subfields if s.get("code") in ("y", "z")}


async def test_status_update_is_visible_at_once_in_the_federated_database(
        running: Running, catalogue: Catalogue, network: Network) -> None:
    """The federated database keeps result sets for paging; they must not keep old statuses."""
    federated = FederatedSearch(network, running.service.table, running.service.store)
    federated.register(running.service)
    try:
        barcode = _barcode_at(catalogue, network, "GR-DW")
        assert ("z", "available") in await _sru_905_status(running, "federated", barcode)
        await running.post_status({"items": [{"barcode": barcode, "status": "on_loan", "due_date": "2026-12-24"}]},
                                  token=TOKENS["GR-DW"])
        expected = {("z", "on_loan"), ("y", "2026-12-24")}
        assert await _sru_905_status(running, "union", barcode) == expected
        assert await _sru_905_status(running, "federated", barcode) == expected
        # By id too, as a client fetching one record of the result set.
        found = await running.service.search("federated", Clause("barcode", Relation.EXACT, barcode))
        (record,) = await running.service.fetch("federated", [found.records[0].id])
        assert [(i.availability.value, i.due_date) for i in record.items if i.barcode == barcode] == \
            [("on_loan", "2026-12-24")]
        # Z39.50 on `federated`, OPAC syntax.
        server = await start_z3950_server(running.service, "127.0.0.1", 0)
        try:
            async with Z3950Client("127.0.0.1", server.port, database="federated") as client:
                hits = await client.search(f"@attr 1=net.barcode {barcode}")   # no Bib-1 number: by name
                assert hits.count == 1, hits.diagnostics
                page = await client.present(hits.result_set, 1, 1, syntax=P.RecordSyntax.OPAC.value)
                holdings = page.records[0].record.content.holdings
                (circulation,) = [h.circulation[0] for h in holdings if h.circulation[0].item_id == barcode]
                assert (circulation.available_now, circulation.availability_date) == (False, "2026-12-24")
        finally:
            server.close()
            await server.wait_closed()
    finally:
        await federated.aclose()


async def test_status_batch_is_idempotent(running: Running, catalogue: Catalogue, network: Network) -> None:
    first, second = _barcode_at(catalogue, network, "GR-DW"), _barcode_at(catalogue, network, "GR-DW", 1)
    batch = {"items": [{"barcode": first, "status": "missing"},
                       {"barcode": second, "status": "available", "location": "新书展架"},
                       {"barcode": "GR03999999", "status": "lost"}]}
    once = await running.post_status(batch, token=TOKENS["GR-DW"])
    assert (once["applied"], once["rejected"]) == (2, 1)
    assert [i["changed"] for i in once["items"]] == [True, True, False]
    assert "unknown barcode" in once["items"][2]["reason"] and "GR-DW's range" in once["items"][2]["reason"]
    again = await running.post_status(batch, token=TOKENS["GR-DW"])
    assert [i["accepted"] for i in again["items"]] == [True, True, False]
    assert [i["changed"] for i in again["items"]] == [False, False, False]
    assert (await running.item(first))["availability"] == "missing"
    assert (await running.item(second))["location"] == "新书展架"


async def test_scope_violation_changes_nothing(running: Running, catalogue: Catalogue, network: Network) -> None:
    own, hubs = _barcode_at(catalogue, network, "GR-DW"), _barcode_at(catalogue, network, "GR")
    before = (await running.item(own), await running.item(hubs))
    refused = await running.post_status({"items": [{"barcode": own, "status": "lost"},
                                                   {"barcode": hubs, "status": "on_loan", "due_date": "2026-12-31"}]},
                                        token=TOKENS["GR-DW"], status=403)
    assert refused["applied"] == 0 and refused["library"] == "GR-DW"
    assert [(v["index"], v["barcode"], v["library"]) for v in refused["violations"]] == [(1, hubs, "GR")]
    assert "outside GR-DW's scope" in refused["message"] and "nothing was applied" in refused["message"]
    assert (await running.item(own), await running.item(hubs)) == before
    # The mobile station's token may not touch a branch's copy either.
    await running.post_status({"items": [{"barcode": own, "status": "lost"}]}, token=TOKENS["GR-LD"], status=403)
    # The hub's token covers the whole network.
    done = await running.post_status({"items": [{"barcode": own, "status": "on_hold", "due_date": "2026-12-05"}]},
                                     token=TOKENS["GR"])
    assert done["items"][0]["accepted"] and (await running.item(own))["availability"] == "on_hold"


async def test_return_anywhere(running: Running, catalogue: Catalogue, network: Network) -> None:
    hubs = _barcode_at(catalogue, network, "GR")
    await running.post_status({"items": [{"barcode": hubs, "status": "on_loan", "due_date": "2026-12-10"}]},
                               token=TOKENS["GR"])
    # Returned at Dawang: Dawang's token may check it in, in transit home.
    returned = await running.post_status({"items": [{"barcode": hubs, "status": "in_transit"}]}, token=TOKENS["GR-DW"])
    result = returned["items"][0]
    assert result["accepted"] and result["returned"] and result["changed"]
    assert "return recorded by GR-DW for GR" in result["reason"]
    repeated = await running.post_status({"items": [{"barcode": hubs, "status": "in_transit"}]}, token=TOKENS["GR-DW"])
    assert repeated["items"][0]["accepted"] and not repeated["items"][0]["changed"]
    # But only a return: once it is in transit, Dawang cannot shelve it as available.
    refused = await running.post_status({"items": [{"barcode": hubs, "status": "available"}]},
                                        token=TOKENS["GR-DW"], status=403)
    assert "only a return of a copy on loan" in refused["violations"][0]["reason"]
    assert (await running.item(hubs))["availability"] == "in_transit"


@pytest.mark.parametrize("body, message", [
    (b"{\"items\": [", "the body is not JSON: Expecting value at line 1 column 12"),
    (b"\xff\xfe", "the body is not UTF-8"),
    ([], "the body must be a JSON object"),
    ({"updates": []}, "updates: unknown field (expected items)"),
    ({"items": {}}, "items: expected a list of updates, got an object"),
    ({"items": []}, "items: the batch is empty"),
    ({"items": [{"barcode": "GR03000001"}]}, "items[0].status: required"),
    ({"items": [{"barcode": "GR03000001", "status": "borrowed"}]}, "items[0].status: 'borrowed' is not one of"),
    ({"items": [{"barcode": "GR03000001", "status": "lost", "colour": "red"}]}, "items[0].colour: unknown field"),
    ({"items": [{"barcode": "GR03000001", "status": "on_loan", "due_date": "24/12/2026"}]},
     "items[0].due_date: '24/12/2026' is not a date YYYY-MM-DD"),
    ({"items": [{"barcode": "GR03000001", "status": "on_loan", "due_date": "2026-02-30"}]},
     "items[0].due_date: '2026-02-30' is not a date"),
    ({"items": [{"barcode": "GR03000001", "status": "available", "due_date": "2026-12-24"}]},
     "a due date belongs to on_loan or on_hold, not available"),
    ({"items": [{"barcode": 3000001, "status": "lost"}]}, "items[0].barcode: expected a string, got the number 3000001"),
    ({"items": [{"barcode": "GR03000001", "status": "lost"}, {"barcode": "GR03000001", "status": "missing"}]},
     "items[1]: barcode GR03000001 is already updated at items[0]"),
    ({"items": [{"barcode": f"GR03{n:06d}", "status": "lost"} for n in range(MAX_BATCH_ITEMS + 1)]},
     f"a batch holds at most {MAX_BATCH_ITEMS} updates, got {MAX_BATCH_ITEMS + 1}"),
    (b"{\"items\": [" + b" " * 300_000 + b"]}", "at most 262144"),
])
async def test_bad_batches_get_precise_400s_and_change_nothing(
        running: Running, catalogue: Catalogue, network: Network, body: Any, message: str) -> None:
    barcode = _barcode_at(catalogue, network, "GR-DW")
    before = await running.item(barcode)
    data = await running.post_status(body, token=TOKENS["GR-DW"], status=400)
    assert message in data["message"]
    assert await running.item(barcode) == before


async def test_a_store_failure_is_a_503_that_says_what_was_applied(
        running: Running, catalogue: Catalogue, network: Network) -> None:
    barcode = _barcode_at(catalogue, network, "GR-DW")
    await running.service.store.close()      # the catalogue goes away under the running server
    failed = await running.post_status({"items": [{"barcode": barcode, "status": "lost"}]},
                                       token=TOKENS["GR-DW"], status=503)
    assert failed["error"] == "unavailable" and failed["library"] == "GR-DW"
    assert (failed["applied"], failed["not_applied"], failed["unknown"]) == ([], [barcode], [])
    assert "nothing was applied" in failed["message"] and "send the items of not_applied" in failed["message"]
    searched = await running.get("/search", 503, q="图书馆")
    assert searched["error"] == "unavailable" and "try again" in searched["message"]


async def test_authentication(running: Running, catalogue: Catalogue, network: Network) -> None:
    batch = {"items": [{"barcode": _barcode_at(catalogue, network, "GR-DW"), "status": "lost"}]}
    missing = await running.post_status(batch, token=None, status=401)
    assert missing["error"] == "unauthorized"
    wrong = await running.post_status(batch, token="example-token-GR-DWX", status=401)
    assert wrong["error"] == "invalid_token"
    # The digest itself is not a token.
    digest = next(t.sha256 for t in network.auth.tokens if t.library == "GR-DW")
    await running.post_status(batch, token=digest, status=401)
    async with running.http.post(running.base + "/items/status", data=json.dumps(batch),
                                 headers={"Authorization": f"Bearer {TOKENS['GR-DW']}",
                                          "Content-Type": "text/csv"}) as response:
        assert response.status == 415
    async with running.http.post(running.base + "/items/status", data=json.dumps(batch),
                                 headers={"Authorization": f"Basic {TOKENS['GR-DW']}",
                                          "Content-Type": "application/json"}) as response:
        assert response.status == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await running.item(batch["items"][0]["barcode"]))["availability"] != "lost"


_GET_PATHS = ["/search", "/records/{id}", "/records/{id}/availability", "/libraries", "/libraries/{v}",
              "/barcodes/{v}", "/cards/{v}", "/stats", "/records/{v}"]
_GET_PARAMETERS = ["q", "cql", "database", "offset", "limit", "sort", "facets", "facet_limit", "card", "library", "x"]
_GET_VALUES = ["", " ", "图书馆", "GR", "GR-DW", "union", "federated", "hub", "-1", "0", "1", "100", "101", "10001",
               "9" * 30, "9" * 5000, "GR" + "0" * 8, "37052303000123", "dc.title=图书馆", "dc.title=", "(((", "\"",
               "dc.date>99999999999999999999999", "-date,title", "title,-", "library,tier", "library,title",
               "\x00", "\ud7ff", "%", "../..", "a" * 300]


async def test_parameters_that_are_not_utf8_are_named(running: Running) -> None:
    for path, raw, name in (("/search", "q=%FF%FE", "q"), ("/search", "q=a&sort=%C3", "sort"),
                            ("/libraries/GR", "", None), ("/records/x/availability", "library=GR&card=%E5%9B", "card")):
        async with running.http.get(f"{running.base}{path}?{raw}") as response:
            data = await response.json()
        if name is None:
            assert response.status == 200
        else:
            assert (response.status, data["error"]) == (400, "bad_parameter")
            assert data["message"] == f"{name}: not UTF-8 (percent-escapes of other bytes)"


async def test_any_get_request_is_answered_never_a_500(running: Running, catalogue: Catalogue) -> None:
    """Seeded random GET requests over every read route: each answer is JSON, documented, 2xx or 4xx."""
    rng = random.Random(20261125)
    record_id = (await running.get("/search", q="图书馆", limit="1"))["records"][0]["id"]
    for _ in range(300):
        path = rng.choice(_GET_PATHS).format(id=record_id, v=quote(rng.choice(_GET_VALUES), safe=""))
        params = {rng.choice(_GET_PARAMETERS): rng.choice(_GET_VALUES) for _ in range(rng.randint(0, 4))}
        async with running.http.get(running.base + path, params=params) as response:
            assert response.status < 500, (path, params, await response.text())
            if len(str(response.url)) > 8000:
                # aiohttp's own request-line limit (8190 bytes), answered before the application.
                assert response.status == 400
                continue
            assert response.content_type == "application/json"
            data = await response.json()
        assert (response.status < 400) == ("error" not in data), (path, params, data)
        if path.endswith("/"):      # an empty value: no route, aiohttp's 404 in the API's error form
            assert response.status == 404
        else:
            check_response(path, "get", response.status, data)


# -- the commands ----------------------------------------------------------------------------------

@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def federation_cli(capsys: pytest.CaptureFixture[str]):
    """Runs `federation ARGS...` through the console script's entry point, in this process."""

    def run(*args: str) -> Ran:
        code = main(list(args))
        captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    return run


def test_items_status_command(catalogue: Catalogue, network: Network, tmp_path: Path, federation_cli) -> None:
    store_dir = tmp_path / "store"
    shutil.copytree(catalogue.store_dir, store_dir)
    own, hubs = _barcode_at(catalogue, network, "GR-DW"), _barcode_at(catalogue, network, "GR")
    csv_file = tmp_path / "loans.csv"
    csv_file.write_text(f"barcode,status,due_date,location\n{own},on_loan,2026-12-20,\n{hubs},lost,,\n"
                        "GR03999999,lost,,\n", encoding="utf-8")
    common = ("--config", str(GUANGRAO), "--data-dir", str(store_dir))
    scoped = federation_cli("items-status", *common, "--library", "GR-DW", str(csv_file))
    assert scoped.returncode == 1
    assert f"loans.csv:3: {hubs} belongs to GR (barcode range GR00000001-GR00999999), outside GR-DW's scope" in scoped.stderr
    assert "nothing was applied" in scoped.stderr
    applied = federation_cli("items-status", *common, "--json", str(csv_file))
    assert applied.returncode == 2, applied.stderr
    report = json.loads(applied.stdout)
    assert [(i["line"], i["accepted"]) for i in report["items"]] == [(2, True), (3, True), (4, False)]
    bad = tmp_path / "bad.csv"
    bad.write_text(f"barcode,status\n{own},lent\n", encoding="utf-8")
    refused = federation_cli("items-status", *common, str(bad))
    assert refused.returncode == 1 and "bad.csv:2: status: 'lent' is not one of" in refused.stderr

    async def statuses() -> dict[str, tuple[str, str]]:
        store = EmbeddedStore(store_dir, load_index_table())
        await store.open()
        try:
            service = SearchService(network, load_index_table(), store)
            from federation.itemstatus import current_items
            found = await current_items(service, [own, hubs])
            return {b: (item.availability.value, item.due_date) for b, (_, item) in found.items()}
        finally:
            await store.close()

    assert asyncio.run(statuses()) == {own: ("on_loan", "2026-12-20"), hubs: ("lost", "")}


async def test_items_status_command_beside_a_running_server(
        running: Running, catalogue: Catalogue, network: Network, tmp_path: Path) -> None:
    """A circulation system's CSV applied by the command while the server runs on the same store:
    the server's next JSON and SRU answers show it."""
    barcode = _barcode_at(catalogue, network, "GR-DW")
    csv_file = tmp_path / "loans.csv"
    csv_file.write_text(f"barcode,status,due_date\n{barcode},on_hold,2026-12-30\n", encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "federation"), "items-status", "--config", str(GUANGRAO),
        "--data-dir", str(running.store_dir), str(csv_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert "1 applied" in out.decode()
    item = await running.item(barcode)
    assert (item["availability"], item["due_date"]) == ("on_hold", "2026-12-30")
    assert await _sru_905_status(running, "union", barcode) == {("z", "on_hold"), ("y", "2026-12-30")}


def test_items_status_command_says_when_the_store_fails_during_the_update(
        catalogue: Catalogue, network: Network, tmp_path: Path, federation_cli, monkeypatch) -> None:
    """A store failing in update_items with a plain StoreError applied nothing (the embedded
    store writes the batch in one transaction); a partial failure of the Elasticsearch store:
    tests/test_item_status_scope.py."""
    from indexer.store import StoreError

    async def failing(self, updates):
        raise StoreError("disk full")

    store_dir = tmp_path / "store"
    shutil.copytree(catalogue.store_dir, store_dir)
    csv_file = tmp_path / "loans.csv"
    csv_file.write_text(f"barcode,status\n{_barcode_at(catalogue, network, 'GR-DW')},lost\n", encoding="utf-8")
    monkeypatch.setattr(EmbeddedStore, "update_items", failing)
    ran = federation_cli("items-status", "--config", str(GUANGRAO), "--data-dir", str(store_dir), str(csv_file))
    assert ran.returncode == 1
    assert "disk full" in ran.stderr and "the store failed during the update: nothing was applied" in ran.stderr
    assert "not applied: " in ran.stderr and "loans.csv line 2\n" in ran.stderr and "is safe" in ran.stderr


def test_stats_command(catalogue: Catalogue, network: Network, tmp_path: Path, federation_cli) -> None:
    shown = federation_cli("stats", "--config", str(GUANGRAO), "--data-dir", str(catalogue.store_dir), "--json")
    assert shown.returncode == 0, shown.stderr
    figures = json.loads(shown.stdout)
    assert figures["totals"]["records"] == catalogue.works
    assert {e["library"]: e["items"] for e in figures["by_library"]} == {
        code: catalogue.items_by_library[code] for code in network.libraries}
    text = federation_cli("stats", "--config", str(GUANGRAO), "--data-dir", str(catalogue.store_dir))
    assert text.returncode == 0 and f"{catalogue.works} records" in text.stdout
    assert re.search(rf"^GR-DW\s+branch\s+{catalogue.records_by_library['GR-DW']}\s+{catalogue.items_by_library['GR-DW']}\s",
                     text.stdout, re.M)
    empty = federation_cli("stats", "--config", str(GUANGRAO), "--data-dir", str(tmp_path / "nothing"))
    assert empty.returncode == 1 and "no catalogue at" in empty.stderr


async def test_gaoming_joint_network_cards_and_availability(tmp_path: Path) -> None:
    """The Foshan joint library: a card of the city library is honoured in Gaoming."""
    gaoming = load_network(ROOT / "config" / "networks" / "gaoming.yaml")
    table = load_index_table()
    policy = gaoming.to_ingest_policy()
    write_demo_data(policy, tmp_path / "demo", records=60, seed=3)
    store = EmbeddedStore(tmp_path / "store", table)
    await store.open()
    report = await ingest(sorted((tmp_path / "demo").glob("*.mrc")), store, table, policy,
                          IngestOptions(quarantine_path=tmp_path / "quarantine.jsonl"))
    assert report.reconciled and report.quarantined == 0
    try:
        async with served_app(SearchService(gaoming, table, store)) as root, ClientSession() as http:
            api = Running(root + API_PREFIX, root, http,
                          SearchService(gaoming, table, store), tmp_path / "store")
            card = await api.get("/cards/44060500000001")
            assert (card["library"], card["joint_network"], card["honoured"]) == ("FS-NH", "foshan", True)
            libraries = await api.get("/libraries")
            assert libraries["joint_networks"][0]["participants"] == sorted(gaoming.libraries)
            found = await api.get("/search", cql="net.library=GM", limit="1")
            record_id = found["records"][0]["id"]
            visitor = await api.get(f"/records/{record_id}/availability", card="44060500000001")
            assert visitor["reader"]["joint_network"] == "foshan" and visitor["reader"]["pickup"] is None
            assert {v["verdict"] for v in visitor["items"]} <= {"visit_to_borrow", "not_available", "in_library_use_only"}
            at_hub = await api.get(f"/records/{record_id}/availability", card="44060500000001", library="GM")
            hub_copies = [v for v in at_hub["items"] if v["library"] == "GM" and v["verdict"] != "in_library_use_only"
                          and v["availability"] == "available"]
            assert hub_copies and {v["rule"] for v in hub_copies} == {"joint_networks.foshan.shared_cards"}
            service_points = await api.get("/search", cql="net.tier=service_point and net.availability=available",
                                           limit="1")
            assert service_points["total"] > 0
            answer = await api.get(f"/records/{service_points['records'][0]['id']}/availability",
                                   card="44060803000001")
            verdicts = {(v["verdict"], v["rule"]) for v in answer["items"] if v["tier"] == "service_point"
                        and v["availability"] == "available"}
            assert verdicts == {("visit_to_borrow", "rules.circulation.lending_tiers")}
    finally:
        await store.close()



@pytest.mark.elasticsearch
async def test_status_update_on_the_elasticsearch_store(tmp_path: Path, network: Network) -> None:
    """The same live status path over the Elasticsearch/OpenSearch store (osmem stand-in or ELASTICSEARCH_URL)."""
    table = load_index_table()
    async with es_demo_catalogue(table, network.to_ingest_policy(), tmp_path) as store:
        service = SearchService(network, table, store)
        async with served_app(service) as root, ClientSession() as http:
            api = Running(root + API_PREFIX, root, http, service, tmp_path)
            found = await api.get("/search", cql="net.library=GR and net.availability=available", limit="1")
            record = await api.get(f"/records/{found['records'][0]['id']}")
            barcode = next(i["barcode"] for g in record["holdings"] if g["library"] == "GR"
                           for i in g["items"] if i["availability"] == "available")
            done = await api.post_status({"items": [{"barcode": barcode, "status": "lost"}]}, token=TOKENS["GR"])
            assert done["applied"] == 1 and done["items"][0]["changed"]
            assert (await api.item(barcode))["availability"] == "lost"
            lost = await api.get("/search", cql=f"net.barcode={barcode} and net.availability=lost", limit="1")
            assert [r["id"] for r in lost["records"]] == [record["id"]]

# -- robustness of the input checks -----------------------------------------------------------------

_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
_entries = st.dictionaries(
    st.sampled_from((*FIELDS, "colour")),
    _json_values | st.sampled_from(STATUS_VALUES) | st.dates().map(str) | st.from_regex(r"GR\d{8}", fullmatch=True),
    max_size=5,
)


@settings(max_examples=150, deadline=None)
@given(st.one_of(_json_values, st.fixed_dictionaries({"items": st.lists(_entries | _json_values, max_size=6)})))
def test_any_json_batch_is_either_valid_or_a_list_of_problems(payload: Any) -> None:
    try:
        updates = parse_batch(payload)
    except StatusInputError as error:
        assert error.problems and all(isinstance(p, str) and p for p in error.problems)
    else:
        assert len(updates) == len(payload["items"]) > 0
        assert len({u.barcode for u in updates}) == len(updates)


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.sampled_from('barcode,status,due_date,location"\n\r\x00 GR0123on_la-é'), max_size=80))
def test_any_csv_is_either_valid_or_a_list_of_problems(text: str) -> None:
    try:
        rows = parse_csv(text, "in.csv")
    except StatusInputError as error:
        assert error.problems and all(p.startswith("in.csv") for p in error.problems)
    else:
        assert all(line >= 2 for line, _ in rows)

"""A real catalogue behind a real SRU server, for the SRU tests.

`build_catalogue(directory)` generates the Guangrao demo exports (seeded) and ingests them with
the real CNMARC and MARC21 fixtures through the ingest pipeline into an embedded store.
`SRUServer` runs the aiohttp application on a free loopback port in a thread of its own (its own
event loop), so tests can drive it with blocking clients: urllib, yaz-client, zoomsh, sruthi.

Expected answers are computed from the input files with pymarc (`input_records`), not from the
store.
"""
from __future__ import annotations

import asyncio
import functools
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Coroutine

import pymarc
import yaml
from lxml import etree

from federation.app import create_app
from federation.rules import load_network
from federation.search import SearchService
from indexer.analysis import normalize_isbn, normalize_issn
from indexer.demo import write_demo_data
from indexer.embedded import EmbeddedStore
from indexer.indexes import load_index_table
from indexer.ingest import IngestOptions, ingest

ROOT = Path(__file__).resolve().parent.parent
NETWORK = ROOT / "config" / "networks" / "guangrao.yaml"
FIXTURE_INPUTS = (
    ROOT / "fixtures" / "cnmarc" / "dp2_sru_sample_cnmarcxml.iso",
    ROOT / "fixtures" / "marc21" / "loc-bibliographic-386.mrc",
)
DEMO_RECORDS = 300
DEMO_SEED = 7

NS = {
    "srw": "http://www.loc.gov/zing/srw/",
    "diag1": "http://www.loc.gov/zing/srw/diagnostic/",
    "sru2": "http://docs.oasis-open.org/ns/search-ws/sruResponse",
    "diag2": "http://docs.oasis-open.org/ns/search-ws/diagnostic",
    "scan2": "http://docs.oasis-open.org/ns/search-ws/scan",
    "facet": "http://docs.oasis-open.org/ns/search-ws/facetedResults",
    "marc": "http://www.loc.gov/MARC21/slim",
    "unimarc": "info:srw/schema/8/unimarcxml-v0.1",
    "zr": "http://explain.z3950.org/dtd/2.0/",
    "xcql1": "http://www.loc.gov/zing/cql/xcql/",
    "xcql2": "http://docs.oasis-open.org/ns/search-ws/xcql",
    "dc": "http://purl.org/dc/elements/1.1/",
    "hold": "http://www.loc.gov/standards/iso20775/",
    "u": "urn:union-federation:record-1.0",
}


@dataclass
class Catalogue:
    directory: Path
    demo_dir: Path
    store_dir: Path
    inputs: list[Path]


def build_catalogue(directory: Path) -> Catalogue:
    network = load_network(NETWORK)
    table = load_index_table()
    policy = network.to_ingest_policy()
    demo_dir = directory / "demo"
    write_demo_data(policy, demo_dir, records=DEMO_RECORDS, seed=DEMO_SEED)
    store_dir = directory / "store"
    inputs = sorted(demo_dir.glob("*.mrc")) + list(FIXTURE_INPUTS)

    async def load() -> None:
        store = EmbeddedStore(store_dir, table)
        await store.open()
        try:
            report = await ingest(inputs, store, table, policy, IngestOptions(quarantine_path=directory / "quarantine.jsonl"))
            assert report.reconciled and report.quarantined == 0, report.to_json()
            await store.refresh()
        finally:
            await store.close()

    asyncio.run(load())
    return Catalogue(directory, demo_dir, store_dir, inputs)


_SHARED: dict[str, Catalogue] = {}


def shared_catalogue(tmp_path_factory) -> Catalogue:
    """One catalogue for every SRU test module of the session (building it takes a few seconds)."""
    if "catalogue" not in _SHARED:
        _SHARED["catalogue"] = build_catalogue(tmp_path_factory.mktemp("sru-shared"))
    return _SHARED["catalogue"]


# -- independent expectations from the input files -------------------------------------------------

@dataclass
class InputRecord:
    path: Path
    unimarc: bool
    record: pymarc.Record

    def subfields(self, tag: str, code: str) -> list[str]:
        return [v for f in self.record.get_fields(tag) for v in f.get_subfields(code)]

    @property
    def title(self) -> str:
        return " ".join(self.subfields("200", "a") if self.unimarc else self.subfields("245", "a"))

    @property
    def holdings_libraries(self) -> list[str]:
        """One library code per item: a demo export (`CODE.mrc`) holds items of its library only, in
        905, 852 or 952 depending on the library's system; the real fixtures' items belong to
        libraries outside the network and are left out by ingest."""
        if self.path.parent.name != "demo":
            return []
        fields = [f for tag in ("905", "852", "952") for f in self.record.get_fields(tag)]
        return [self.path.stem] * len(fields)

    @property
    def items(self) -> list[dict[str, str]]:
        """The items of a demo export as its library's holdings spec in the rule set's YAML reads
        them: library (the export's code), barcode, location, call_number."""
        if self.path.parent.name != "demo":
            return []
        spec = holdings_spec(self.path.stem)
        return [{"library": self.path.stem, **{key: (field.get_subfields(spec[key]) or [""])[0]
                                                for key in ("barcode", "location", "call_number")}}
                for field in self.record.get_fields(spec["tag"])]

    @property
    def work(self) -> tuple[str, ...]:
        """Which work the record describes: its ISBN-13, else its ISSN, else its title, first author and year."""
        for raw in self.subfields("010", "a") if self.unimarc else self.subfields("020", "a"):
            isbn = normalize_isbn(raw)
            if isbn:
                return ("isbn", isbn)
        for raw in self.subfields("011", "a") if self.unimarc else self.subfields("022", "a"):
            issn = normalize_issn(raw)
            if issn:
                return ("issn", issn)
        coded = (self.subfields("100", "a")[:1] or [""])[0][9:13] if self.unimarc else \
            (self.record["008"].data[7:11] if self.record["008"] else "")
        year = [coded] if coded.isdigit() else \
            (self.subfields("210", "d") if self.unimarc else self.subfields("260", "c") + self.subfields("264", "c"))
        authors = [v for tag in ("700", "701", "702", "710", "711", "712") for v in self.subfields(tag, "a")] + self.subfields("200", "f") if self.unimarc \
            else [v for tag in ("100", "110", "111", "700", "710", "711") for v in self.subfields(tag, "a")]
        author = authors[0].strip(" /:;,.").casefold() if authors else ""
        parts = self.subfields("200", "h") + self.subfields("200", "i") if self.unimarc \
            else self.subfields("245", "n") + self.subfields("245", "p")
        return ("title", self.title.strip(" /:;,."), " ".join(parts), author, "".join(c for c in "".join(year[:1]) if c.isdigit())[:4])


@functools.lru_cache(maxsize=1)
def rule_set() -> dict:
    """The Guangrao rule set as plain YAML (not through federation.rules); shared, do not modify."""
    return yaml.safe_load(NETWORK.read_text(encoding="utf-8"))


def holdings_spec(code: str) -> dict[str, str]:
    """Where a library's exports keep items: its own `holdings`, else the network default."""
    network = rule_set()
    library = next(library for library in network["libraries"] if library["code"] == code)
    return library.get("holdings") or network["rules"]["cataloguing"]["holdings"]


def library_tiers() -> dict[str, str]:
    """Library code -> tier, read from the rule set's YAML."""
    return {library["code"]: library["tier"] for library in rule_set()["libraries"]}


def index_table() -> list[dict]:
    """config/indexes.yaml's index entries as plain YAML (not through indexer.indexes)."""
    return yaml.safe_load((ROOT / "config" / "indexes.yaml").read_text(encoding="utf-8"))["indexes"]


def input_records(catalogue: Catalogue) -> list[InputRecord]:
    records = []
    for path in catalogue.inputs:
        with open(path, "rb") as handle:
            for record in pymarc.MARCReader(handle, to_unicode=True, force_utf8=True):
                if record is None:
                    continue
                unimarc = path.suffix == ".iso" or bool(record.get_fields("200"))
                records.append(InputRecord(path, unimarc, record))
    return records


# -- the server -------------------------------------------------------------------------------

class SRUServer:
    """The SRU application over an embedded store, served from a thread with its own loop."""

    def __init__(self, catalogue: Catalogue, *, elasticsearch: bool = False,
                 network_hook: Callable[[Any], Any] | None = None):
        """Over the catalogue's embedded store; or, with `elasticsearch`, over an Elasticsearch store
        (tests/es_support.py: the osmem stand-in or ELASTICSEARCH_URL) the same inputs are ingested into.
        `network_hook` adjusts the loaded rule set before the service is built (e.g. its `sru:` limits)."""
        self.catalogue = catalogue
        self.elasticsearch = elasticsearch
        self.network_hook = network_hook
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.port = 0
        self.service: SearchService | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="sru-server", daemon=True)

    def __enter__(self) -> "SRUServer":
        self.thread.start()
        if not self.ready.wait(60):
            raise RuntimeError("SRU server did not start")
        if self._error is not None:
            raise RuntimeError("SRU server failed to start") from self._error
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(30)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/sru"

    def call(self, coroutine: Coroutine) -> Any:
        """Run a coroutine on the server's loop (e.g. a live status update) and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(30)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())
        self.loop.close()

    async def _main(self) -> None:
        if not self.elasticsearch:
            table = load_index_table()
            store = EmbeddedStore(self.catalogue.store_dir, table)
            await store.open()
            try:
                await self._serve(table, store)
            finally:
                await store.close()
            return
        from es_support import es_store

        table = load_index_table()
        try:
            async with es_store(table) as store:
                network = load_network(NETWORK)
                report = await ingest(self.catalogue.inputs, store, table, network.to_ingest_policy(),
                                      IngestOptions(quarantine_path=self.catalogue.directory / "es-quarantine.jsonl"))
                assert report.reconciled and report.quarantined == 0, report.to_json()
                await store.refresh()
                await self._serve(table, store)
        except BaseException as error:
            if not self.ready.is_set():
                self._error = error
                self.ready.set()
            raise

    async def _serve(self, table, store) -> None:
        from aiohttp import web

        runner = None
        try:
            network = load_network(NETWORK)
            if self.network_hook is not None:
                network = self.network_hook(network)
            self.service = SearchService(network, table, store)
            runner = web.AppRunner(create_app(self.service))
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]
            self._stop = asyncio.Event()
        except BaseException as error:
            self._error = error
            self.ready.set()
            raise
        self.ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()


@dataclass
class Response:
    status: int
    content_type: str
    body: bytes

    @property
    def xml(self) -> etree._Element:
        return etree.fromstring(self.body)


def fetch(url: str, data: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 30) -> Response:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return Response(answer.status, answer.headers.get("Content-Type", ""), answer.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, error.headers.get("Content-Type", ""), error.read())


def sru(server: SRUServer, params: dict[str, Any], database: str = "union", *, post: bool = False) -> Response:
    query = urllib.parse.urlencode({k: str(v) for k, v in params.items()})
    url = f"{server.base}/{database}"
    if post:
        return fetch(url, query.encode(), {"Content-Type": "application/x-www-form-urlencoded"})
    return fetch(f"{url}?{query}")


def diagnostics(root: etree._Element) -> list[tuple[int, str]]:
    """(number, details) of every diagnostic in a response, either version."""
    found = []
    for diag in root.iter("{%s}diagnostic" % NS["diag1"], "{%s}diagnostic" % NS["diag2"]):
        uri = diag.findtext("{*}uri")
        found.append((int(uri.rsplit("/", 1)[1]), diag.findtext("{*}details") or ""))
    return found

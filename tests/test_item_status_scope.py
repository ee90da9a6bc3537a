"""Who may change an item's live status, and what a failed batch says it applied.

Token scope (issue 8): a library's token may change the items whose barcodes fall in its ranges
(its own and those of the libraries under it), except returns, which any library may record.
The barcode's range decides, not the library the catalogue holds the copy at: under
`barcode_policy: warn` a library's export may carry a copy with another library's barcode, and
the network's numbering says whose copy that is. A barcode in no range is decided by the library
holding it.

Each network below is its shipped rule set (Gaoming's switched to `barcode_policy: warn` for the
case only that policy lets in), a generated demo catalogue ingested through the ingest pipeline
into an embedded store, one library's export given two extra copies (one with another library's
barcode, one with a barcode in no range), and the application on a loopback port, driven over
HTTP. Every JSON answer is checked against the OpenAPI document.

A failed batch: the Elasticsearch store writes record by record, so a cluster failing part-way
leaves part of a batch applied. The store is put behind a loopback proxy whose node fails after
the first document write (the proxy of tests/test_elastic_store.py's busy-cluster test, with its
own failure), and the 503 must list exactly the items applied, not applied and unknown, as the
cluster itself (read past the proxy) shows them."""
from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import pymarc
import pytest
from aiohttp import ClientSession, web

from es_support import es_demo_catalogue
from http_support import served_app
from federation.api import API_PREFIX
from federation.itemstatus import current_items
from federation.rules import Network, load_network
from federation.search import SearchService
from indexer.demo import write_demo_data
from indexer.elastic import ElasticsearchStore
from indexer.embedded import EmbeddedStore
from indexer.indexes import IndexTable, load_index_table
from indexer.ingest import IngestOptions, ingest
from indexer.policy import BarcodePolicy
from indexer.store import Store
from test_api import Running
from test_elastic_store import _BusyCluster

NETWORKS = Path(__file__).resolve().parent.parent / "config" / "networks"


def token(library: str) -> str:
    """The example token whose SHA-256 digest the shipped rule sets configure for a library."""
    return f"example-token-{library}"


@dataclass(frozen=True)
class Case:
    config: str
    records: int
    seed: int
    hub: str
    branch: str          # a library with a token
    inside: str          # a library in the branch's scope (itself or one under it)
    outside: str         # a library outside the branch's scope
    returners: tuple[str, ...]  # libraries with tokens, none of them owning `outside`'s copies
    holder: str          # exports a copy with a barcode of `owner`'s range (and one in no range)
    owner: str           # owns the range of that barcode; in the scope of `owner_token`
    owner_token: str
    foreign: str         # the barcode in `owner`'s range that `holder`'s export carries
    stray: str           # the barcode in no range that `holder`'s export carries
    stranger: str        # a library with a token whose scope does not cover `holder`


GUANGRAO = Case("guangrao.yaml", records=80, seed=7, hub="GR", branch="GR-DW", inside="GR-DW", outside="GR",
                returners=("GR-DW", "GR-LD"), holder="GR-DW", owner="GR-LD", owner_token="GR-LD",
                foreign="GR13000777", stray="GR99000001", stranger="GR-LD")
# Hecheng's culture station: its token covers its service points; Zizhu No. 1 is a self-service
# library directly under the hub.
GAOMING = Case("gaoming.yaml", records=120, seed=7, hub="GM", branch="GM-HC", inside="GM-HC-FWD2",
               outside="GM-XJXC", returners=("GM-HC", "GM-ZZ1"), holder="GM-ZZ1", owner="GM-HC-FWD2",
               owner_token="GM-HC", foreign="GM22000777", stray="GM99000001", stranger="GM-HC")


@dataclass
class Served:
    api: Running
    network: Network
    items: dict[str, str]          # barcode -> the library whose export carries it
    warnings: list[str]

    def barcode_at(self, library: str) -> str:
        """A copy in `library`'s export whose barcode is in `library`'s ranges."""
        return next(barcode for barcode, code in sorted(self.items.items())
                    if code == library and self.network.libraries[library].owns_barcode(barcode))

    async def item(self, barcode: str) -> dict[str, Any]:
        return await self.api.item(barcode)

    async def post(self, items: list[dict[str, Any]], library: str, status: int = 200) -> dict[str, Any]:
        return await self.api.post_status({"items": items}, token=token(library), status=status)


def _add_copies(path: Path, network: Network, library: str, barcodes: tuple[str, ...]) -> None:
    """Give the first record of a library's export one more copy per barcode (a copy of its
    first holdings field with the barcode replaced); the rest of the file is left byte for byte."""
    mapping = network.libraries[library].holdings or network.rules.cataloguing.holdings
    assert mapping is not None and mapping.barcode is not None
    raw = path.read_bytes()
    assert raw, f"the demo export of {library} is empty: pick another seed"
    length = int(raw[:5])
    record = next(iter(pymarc.MARCReader(raw[:length], to_unicode=True, force_utf8=True)))
    template = record.get_fields(mapping.tag)[0]
    for barcode in barcodes:
        subfields = [pymarc.Subfield(s.code, barcode if s.code == mapping.barcode else
                                     "借阅室" if s.code == mapping.location else s.value)
                     for s in template.subfields]
        record.add_ordered_field(pymarc.Field(tag=template.tag, indicators=template.indicators, subfields=subfields))
    marc = record.as_marc()
    marc = marc[:9] + raw[9:10] + marc[10:]        # pymarc marks its UTF-8 output in leader/09
    path.write_bytes(marc + raw[length:])


def _export_items(network: Network, directory: Path) -> dict[str, str]:
    items: dict[str, str] = {}
    for code, library in network.libraries.items():
        mapping = library.holdings or network.rules.cataloguing.holdings
        with (directory / f"{code}.mrc").open("rb") as stream:
            for record in pymarc.MARCReader(stream, to_unicode=True, force_utf8=True):
                for holding in record.get_fields(mapping.tag):
                    items[holding.get_subfields(mapping.barcode)[0]] = code
    return items


@asynccontextmanager
async def served(case: Case, tmp_path: Path) -> AsyncIterator[Served]:
    network = load_network(NETWORKS / case.config)
    network = dataclasses.replace(network, rules=dataclasses.replace(network.rules, barcode_policy=BarcodePolicy.WARN))
    table = load_index_table()
    policy = network.to_ingest_policy()
    demo = tmp_path / "demo"
    write_demo_data(policy, demo, records=case.records, seed=case.seed)
    _add_copies(demo / f"{case.holder}.mrc", network, case.holder, (case.foreign, case.stray))
    store = EmbeddedStore(tmp_path / "store", table)
    await store.open()
    try:
        report = await ingest(sorted(demo.glob("*.mrc")), store, table, policy,
                              IngestOptions(quarantine_path=tmp_path / "quarantine.jsonl"))
        assert report.reconciled and report.quarantined == 0, report.to_json()
        service = SearchService(network, table, store)
        async with served_app(service) as root, ClientSession() as http:
            yield Served(Running(root + API_PREFIX, root, http, service, tmp_path / "store"), network,
                         _export_items(network, demo), list(report.warnings))
    finally:
        await store.close()


CASES = [pytest.param(GUANGRAO, id="guangrao"), pytest.param(GAOMING, id="gaoming")]


@pytest.mark.parametrize("case", CASES)
async def test_a_token_changes_the_items_whose_barcodes_are_in_its_ranges(case: Case, tmp_path: Path) -> None:
    async with served(case, tmp_path) as net:
        inside, outside = net.barcode_at(case.inside), net.barcode_at(case.outside)
        assert case.inside in [code for code in net.network.libraries
                               if code == case.branch or case.branch in net.network.ancestors(code)]
        done = await net.post([{"barcode": inside, "status": "on_loan", "due_date": "2026-12-24"}], case.branch)
        (result,) = done["items"]
        assert (result["accepted"], result["changed"], result["owner"], result["library"], result["returned"]) == \
            (True, True, case.inside, case.inside, False)
        assert (await net.item(inside))["availability"] == "on_loan"

        # Outside its ranges: 403 naming the item and why, and nothing of the batch changed.
        before = (await net.item(inside), await net.item(outside))
        refused = await net.post([{"barcode": inside, "status": "lost"}, {"barcode": outside, "status": "missing"}],
                                 case.branch, status=403)
        assert refused["applied"] == 0 and refused["library"] == case.branch
        (violation,) = refused["violations"]
        assert (violation["index"], violation["barcode"], violation["library"]) == (1, outside, case.outside)
        owner_range = net.network.libraries[case.outside].barcode_ranges[0]
        assert f"{outside} belongs to {case.outside} (barcode range {owner_range.start}-{owner_range.end})" \
            in violation["reason"]
        assert f"outside {case.branch}'s scope" in violation["reason"] and "nothing was applied" in refused["message"]
        assert (await net.item(inside), await net.item(outside)) == before

        # A return of the copy is recorded by any library ("return anywhere").
        for returner in case.returners:
            await net.post([{"barcode": outside, "status": "on_loan", "due_date": "2026-12-10"}], case.hub)
            returned = await net.post([{"barcode": outside, "status": "in_transit"}], returner)
            (result,) = returned["items"]
            assert result["accepted"] and result["returned"] and result["changed"]
            assert f"return recorded by {returner} for {case.outside}" in result["reason"]
            assert (await net.item(outside))["availability"] == "in_transit"
        # But only a return: a status change of another library's copy is refused.
        await net.post([{"barcode": outside, "status": "available"}], case.branch, status=403)
        assert (await net.item(outside))["availability"] == "in_transit"


@pytest.mark.parametrize("case", CASES)
async def test_the_barcodes_range_decides_not_the_library_holding_the_copy(case: Case, tmp_path: Path) -> None:
    """barcode_policy: warn let `holder`'s export bring in a copy with a barcode of `owner`'s
    range: it is `owner`'s copy for the token scope, as GET /barcodes/{barcode} says."""
    async with served(case, tmp_path) as net:
        assert any(case.foreign in warning for warning in net.warnings), net.warnings
        looked_up = await net.api.get(f"/barcodes/{case.foreign}")
        assert (looked_up["library"], looked_up["item"]["library"]) == (case.owner, case.holder)
        before = await net.item(case.foreign)
        assert case.owner not in [code for code in net.network.libraries
                                  if code == case.holder or case.holder in net.network.ancestors(code)]

        # The holding library's token may not change it: the barcode is not in its ranges.
        refused = await net.post([{"barcode": case.foreign, "status": "lost"}], case.holder, status=403)
        (violation,) = refused["violations"]
        assert violation["library"] == case.owner
        assert f"{case.foreign} belongs to {case.owner} (barcode range " in violation["reason"]
        assert f"held at {case.holder})" in violation["reason"]
        assert f"outside {case.holder}'s scope" in violation["reason"]
        assert await net.item(case.foreign) == before

        # The token whose scope holds the barcode's range may.
        done = await net.post([{"barcode": case.foreign, "status": "on_loan", "due_date": "2026-12-20"}],
                              case.owner_token)
        (result,) = done["items"]
        assert (result["accepted"], result["owner"], result["library"], result["returned"]) == \
            (True, case.owner, case.holder, False)
        # And the holding library, like any other, may record its return.
        returned = await net.post([{"barcode": case.foreign, "status": "available"}], case.holder)
        (result,) = returned["items"]
        assert result["accepted"] and result["returned"]
        assert f"return recorded by {case.holder} for {case.owner}" in result["reason"]
        item = await net.item(case.foreign)
        assert (item["availability"], item["due_date"]) == ("available", "")


@pytest.mark.parametrize("case", CASES)
async def test_a_barcode_in_no_range_is_decided_by_the_library_holding_it(case: Case, tmp_path: Path) -> None:
    async with served(case, tmp_path) as net:
        assert any(case.stray in warning for warning in net.warnings), net.warnings
        assert net.network.library_for_barcode(case.stray) is None
        unknown = await net.api.get(f"/barcodes/{case.stray}")
        assert (unknown["found"], unknown["item"]["library"]) == (False, case.holder)
        before = await net.item(case.stray)
        refused = await net.post([{"barcode": case.stray, "status": "missing"}], case.stranger, status=403)
        (violation,) = refused["violations"]
        assert violation["library"] == case.holder
        assert (f"{case.stray} belongs to {case.holder} (in no library's barcode range: the library holding it "
                f"decides), outside {case.stranger}'s scope") in violation["reason"]
        assert await net.item(case.stray) == before
        done = await net.post([{"barcode": case.stray, "status": "missing"}], case.holder)
        (result,) = done["items"]
        assert (result["accepted"], result["owner"], result["library"]) == (True, None, case.holder)
        assert (await net.item(case.stray))["availability"] == "missing"
        # The hub's token covers the whole network, this copy too.
        await net.post([{"barcode": case.stray, "status": "available"}], case.hub)
        assert (await net.item(case.stray))["availability"] == "available"


# -- a store failing part-way through a batch ---------------------------------------------------------

class _FailingNode(_BusyCluster):
    """A loopback proxy in front of the cluster whose node fails after the first document write
    it passes on (bulk requests are left to the busy-cluster behaviour it inherits, unused here).

    `lose_answer=False`: the node goes down: every later request is answered 503.
    `lose_answer=True`: the second write reaches the cluster but its answer is lost (the
    connection is cut), and later writes are refused with 503; reads still go through.
    `heal()` passes everything on again."""

    def __init__(self, upstream: str, *, lose_answer: bool):
        super().__init__(upstream)
        self.lose_answer = lose_answer
        self.written: list[str] = []        # the record ids of the writes that reached the cluster
        self.down = False                   # after the first write
        self.healed = False

    def heal(self) -> None:
        self.healed = True

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        write = request.method in ("PUT", "POST") and "/_doc/" in request.path
        lost = write and self.down and self.lose_answer and len(self.written) == 1
        if self.down and not self.healed and not lost and (write or not self.lose_answer):
            return web.json_response({"error": {"type": "node_not_connected_exception", "reason": "node down"},
                                      "status": 503}, status=503)
        status, content_type, answer = await self._forward(request, body)
        if write and status < 300 and not self.healed:
            self.written.append(request.path.rsplit("/", 1)[1])
            self.down = True
            if lost:
                assert request.transport is not None
                request.transport.abort()              # applied, but the client never hears of it
        return web.Response(status=status, body=answer, headers={"Content-Type": content_type})


async def _states(store: Store, barcodes: list[str]) -> dict[str, str]:
    """barcode -> availability, read from the cluster itself (not through the proxy)."""
    network = load_network(NETWORKS / "guangrao.yaml")
    found = await current_items(SearchService(network, load_index_table(), store), barcodes)
    return {barcode: found[barcode][1].availability.value for barcode in barcodes}


@asynccontextmanager
async def _catalogue_behind(table: IndexTable, tmp_path: Path, *, lose_answer: bool
                            ) -> AsyncIterator[tuple[Store, _FailingNode, ElasticsearchStore, list[str]]]:
    """The Guangrao demo catalogue in the cluster, a failing proxy in front of it, a store
    through the proxy, and the barcodes of four hub copies, each in another union record."""
    network = load_network(NETWORKS / "guangrao.yaml")
    async with es_demo_catalogue(table, network.to_ingest_policy(), tmp_path) as store:
        barcodes: list[str] = []
        for record in await store.get(list(await store.ids_of_library("GR"))):
            assert record is not None
            copy = next((i for i in record.items if i.library == "GR" and i.availability.value == "available"), None)
            if copy is not None and len(barcodes) < 4:
                barcodes.append(copy.barcode)
        assert len(barcodes) == 4
        async with _FailingNode(store.url, lose_answer=lose_answer) as node:
            proxied = ElasticsearchStore(node.url, table, index_prefix=store.alias, flavor=store.flavor)
            await proxied.open()
            try:
                yield store, node, proxied, barcodes
            finally:
                await proxied.close()


@pytest.mark.elasticsearch
@pytest.mark.parametrize("lose_answer", [False, True], ids=["node-down", "answer-lost"])
async def test_a_batch_the_store_fails_part_way_says_which_items_were_applied(
        tmp_path: Path, lose_answer: bool) -> None:
    table = load_index_table()
    network = load_network(NETWORKS / "guangrao.yaml")
    async with _catalogue_behind(table, tmp_path, lose_answer=lose_answer) as (store, node, proxied, barcodes):
        service = SearchService(network, table, proxied)
        async with served_app(service) as root, ClientSession() as http:
            api = Running(root + API_PREFIX, root, http, service, tmp_path)
            batch = {"items": [{"barcode": barcode, "status": "lost"} for barcode in barcodes]}
            failed = await api.post_status(batch, token=token("GR"), status=503)
            assert failed["error"] == "unavailable" and failed["library"] == "GR"
            if lose_answer:
                # The second write reached the cluster; its answer did not. Reads still
                # work, so reading the item back settles it: applied.
                assert len(node.written) == 2
                assert (failed["applied"], failed["not_applied"], failed["unknown"]) == \
                    (barcodes[:2], barcodes[2:], [])
                assert "2 of 4 applied, 2 not applied" in failed["message"]
            else:
                # The node went down after the first write: the second was sent and never
                # answered, and nothing can be read back.
                assert len(node.written) == 1
                assert (failed["applied"], failed["not_applied"], failed["unknown"]) == \
                    (barcodes[:1], barcodes[2:], barcodes[1:2])
                assert "1 of 4 applied, 2 not applied, 1 unknown" in failed["message"]
            assert "send the items of not_applied and unknown again" in failed["message"]
            # What the cluster holds is what the answer said.
            applied = set(failed["applied"])
            assert await _states(store, barcodes) == {
                barcode: "lost" if barcode in applied else "available" for barcode in barcodes}

            # Once the node is back, sending what was not applied completes the batch.
            node.heal()
            resend = {"items": [{"barcode": b, "status": "lost"} for b in failed["not_applied"] + failed["unknown"]]}
            done = await api.post_status(resend, token=token("GR"))
            assert done["applied"] == len(resend["items"]) and all(i["changed"] for i in done["items"])
            assert await _states(store, barcodes) == {barcode: "lost" for barcode in barcodes}
            assert (await api.item(barcodes[-1]))["availability"] == "lost"


@pytest.mark.elasticsearch
async def test_items_status_command_lists_the_rows_applied_when_the_store_fails_part_way(tmp_path: Path) -> None:
    table = load_index_table()
    async with _catalogue_behind(table, tmp_path, lose_answer=False) as (store, node, proxied, barcodes):
        rules = (NETWORKS / "guangrao.yaml").read_text(encoding="utf-8")
        embedded = "store:\n  kind: embedded\n  path: var/guangrao\n"
        assert embedded in rules
        config = tmp_path / "guangrao.yaml"
        config.write_text(rules.replace(embedded, f"store:\n  kind: elasticsearch\n  url: {node.url}\n"
                                                  f"  index_prefix: {store.alias}\n  flavor: {store.flavor}\n"),
                          encoding="utf-8")
        loans = tmp_path / "loans.csv"
        loans.write_text("barcode,status\n" + "".join(f"{b},lost\n" for b in barcodes), encoding="utf-8")
        environment = {k: v for k, v in os.environ.items() if not k.startswith("ELASTICSEARCH_")}
        process = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "federation"), "items-status", "--config", str(config), str(loans),
            env=environment, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(process.communicate(), 120)
        stderr = err.decode()
        assert process.returncode == 1, stderr
        assert "the store failed during the update: 1 of 4 applied, 2 not applied, 1 unknown" in stderr
        assert f"applied: {loans} line 2\n" in stderr
        assert f"not applied: {loans} lines 4, 5\n" in stderr
        assert f"unknown: {loans} line 3\n" in stderr
        assert await _states(store, barcodes) == {
            barcode: "lost" if n == 0 else "available" for n, barcode in enumerate(barcodes)}

"""Random and mutated PDUs against a live server: no crash, no hang, every other session keeps
working. Seeds are the PDUs yaz-client sent in tests/data/z3950-pdus (captured with -d dump)."""
from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from pathlib import Path

import pytest

from protocols.z3950 import codec
from protocols.z3950 import pdu as P
from protocols.z3950.ber import pdu_length
from protocols.z3950.client import Z3950Client
from protocols.z3950.server import ServerLimits
from sru_support import build_catalogue
from z3950_support import running_server

PDUS = Path(__file__).parent / "data" / "z3950-pdus"
REQUEST_KINDS = ("initRequest", "searchRequest", "presentRequest", "scanRequest", "sortRequest",
                 "deleteResultSetRequest", "close")
SEEDS = sorted(p for p in PDUS.glob("yaz-*.ber") if p.stem.split("-")[-1] in REQUEST_KINDS)
INIT = (PDUS / "yaz-charneg-001-initRequest.ber").read_bytes()
SEARCH = (PDUS / "yaz-basic-003-searchRequest.ber").read_bytes()
# The session answers within this many seconds or the test fails as a hang.
ANSWER_TIMEOUT = 10


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    return build_catalogue(tmp_path_factory.mktemp("z3950-fuzz-catalogue"))


def mutate(rng: random.Random, data: bytes) -> bytes:
    buffer = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(7)
        position = rng.randrange(len(buffer)) if buffer else 0
        if kind == 0 and buffer:
            buffer[position] ^= 1 << rng.randrange(8)
        elif kind == 1 and buffer:
            buffer[position] = rng.randrange(256)
        elif kind == 2:
            del buffer[position:position + rng.randint(1, 8)]
        elif kind == 3:
            buffer[position:position] = rng.randbytes(rng.randint(1, 16))
        elif kind == 4 and buffer:
            end = min(len(buffer), position + rng.randint(1, 32))
            buffer[position:position] = buffer[position:end]
        elif kind == 5 and len(buffer) > 2:
            # A length octet replaced with an indefinite or long form.
            buffer[1 if rng.random() < 0.5 else position] = rng.choice((0x80, 0x84, 0x83, 0xFF, 0x7F))
        else:
            buffer = buffer[:position]
    return bytes(buffer)


def wild_int(rng: random.Random) -> int:
    return rng.choice((0, 1, 2, 5, 20, -1, -(2**31), 2**31 - 1, rng.randint(-100, 10_000)))


def wild_text(rng: random.Random) -> str:
    return rng.choice(("", "图书馆", "geography", "*", "?#", "a" * 300, "\x00\x1f", "union", "GR-DW", "nosuch",
                       "".join(chr(rng.randint(32, 0x9FFF)) for _ in range(rng.randint(1, 12)))))


def wild_node(rng: random.Random, depth: int = 0) -> P.RpnNode:
    if depth < 6 and rng.random() < 0.35:
        op = rng.choice(list(P.Operator))
        prox = P.Proximity(wild_int(rng), rng.random() < 0.5, rng.randint(0, 7), rng.randint(0, 12)) \
            if op is P.Operator.PROX else None
        return P.RpnOp(op, wild_node(rng, depth + 1), wild_node(rng, depth + 1), prox)
    if rng.random() < 0.1:
        return P.ResultSetRef(rng.choice(("1", "default", "nosuch", "healthy")))
    attributes = tuple(
        P.Attribute(rng.choice((1, 2, 3, 4, 5, 6, 7, 0, -1)),
                    rng.choice((wild_int(rng), 4, 1003, 1016, 7, 31, 1044, "title", ("a", 1))))
        for _ in range(rng.randint(0, 4)))
    if rng.random() < 0.2:
        return P.AttrTerm(attributes, wild_int(rng), P.TermKind.NUMERIC)
    return P.AttrTerm(attributes, wild_text(rng))


def semantic_mutation(rng: random.Random, seed: P.Pdu) -> P.Pdu:
    """A well-formed request with hostile values, so the operations themselves are exercised."""
    syntaxes = [s.value for s in P.RecordSyntax] + ["1.2.3", "1.2.840.10003.5.1000.1"]
    if isinstance(seed, P.SearchRequest):
        return replace(seed, query=P.RpnQuery(wild_node(rng)), database_names=[rng.choice(("union", "GR-DW", "hub", "x"))],
                       result_set_name=rng.choice(("1", "2", "default", wild_text(rng))),
                       small_set_upper_bound=wild_int(rng), large_set_lower_bound=wild_int(rng),
                       medium_set_present_number=wild_int(rng), preferred_record_syntax=rng.choice(syntaxes),
                       small_set_element_set_name=rng.choice(("B", "F", "Q", None)))
    if isinstance(seed, P.PresentRequest):
        return replace(seed, result_set_id=rng.choice(("1", "default", "x")), start=wild_int(rng), count=wild_int(rng),
                       preferred_record_syntax=rng.choice(syntaxes), element_set_name=rng.choice(("B", "F", "b", "", None)))
    if isinstance(seed, P.ScanRequest):
        return replace(seed, attributes=(P.Attribute(1, rng.choice((4, 1003, 7, 1044, 1016, 9999))),), term=wild_text(rng),
                       number_of_terms=wild_int(rng), preferred_position=wild_int(rng), step_size=rng.choice((0, 0, 1)),
                       database_names=[rng.choice(("union", "GR-DW", "x"))])
    if isinstance(seed, P.SortRequest):
        return replace(seed, input_result_sets=[rng.choice(("1", "x"))] * rng.randint(0, 2),
                       keys=[P.SortKeySpec((P.Attribute(1, rng.choice((4, 31, 1003, 1016, 9999))),),
                                           ascending=rng.random() < 0.5)] * rng.randint(0, 3))
    if isinstance(seed, P.DeleteResultSetRequest):
        return replace(seed, delete_all=rng.random() < 0.3, names=[wild_text(rng)])
    return seed


async def converse(port: int, payload: bytes) -> list[P.Pdu]:
    """Send bytes, half-close, and collect every PDU the server sends until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        writer.write_eof()
        received = await asyncio.wait_for(reader.read(), ANSWER_TIMEOUT)
    except (ConnectionResetError, BrokenPipeError):
        received = b""
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass
    pdus = []
    while received:
        length = pdu_length(received)
        assert length is not None, f"the server sent a truncated PDU: {received[:40].hex()}"
        pdus.append(codec.decode(received[:length]))
        received = received[length:]
    return pdus


async def test_garbage_gets_close_protocol_error(catalogue):
    async with running_server(catalogue) as server:
        for payload in (b"\x00\x01\x02garbage", b"\xff" * 10, b"\x30\x03\x02\x01\x05"):
            answer = await converse(server.port, payload)
            assert isinstance(answer[-1], P.Close) and answer[-1].reason is P.CloseReason.PROTOCOL_ERROR
        answer = await converse(server.port, INIT + b"\xb6\x05garbage")
        assert isinstance(answer[0], P.InitResponse) and answer[0].result
        assert answer[-1].reason is P.CloseReason.PROTOCOL_ERROR


async def test_search_before_init_and_unsupported_apdus(catalogue):
    search = (PDUS / "yaz-basic-003-searchRequest.ber").read_bytes()
    extended_services = bytes.fromhex("bf2e0a830101840200ff8b0101")
    async with running_server(catalogue) as server:
        answer = await converse(server.port, search)
        assert answer[-1].reason is P.CloseReason.PROTOCOL_ERROR
        answer = await converse(server.port, INIT + extended_services)
        assert answer[-1].reason is P.CloseReason.PROTOCOL_ERROR
        assert "extendedServicesRequest" in (answer[-1].diagnostic_information or "")


async def test_oversized_length_is_refused_at_once(catalogue):
    async with running_server(catalogue, ServerLimits(max_pdu_bytes=64 * 1024)) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(INIT)
        writer.write(b"\xb6\x84\x40\x00\x00\x00")  # claims a 1 GiB search request
        await writer.drain()
        received = await asyncio.wait_for(reader.read(), ANSWER_TIMEOUT)
        writer.close()
        first = pdu_length(received)
        assert isinstance(codec.decode(received[:first]), P.InitResponse)
        close = codec.decode(received[first:])
        assert isinstance(close, P.Close) and close.reason is P.CloseReason.PROTOCOL_ERROR


@pytest.mark.slow
async def test_mutated_and_random_pdus_leave_other_sessions_working(catalogue):
    rng = random.Random(20261125)
    seen: dict[str, int] = {}
    seeds = [path.read_bytes() for path in SEEDS]
    assert len(seeds) >= 10
    operations = [s for s in seeds if not isinstance(codec.decode(s), (P.InitRequest, P.Close))]
    async with running_server(catalogue, ServerLimits(max_pdu_bytes=256 * 1024)) as server:
        async with Z3950Client("127.0.0.1", server.port, database="union", timeout=ANSWER_TIMEOUT) as healthy:
            before = await healthy.search("@attr 1=4 geography")
            assert before.count > 0

            async def one(n: int) -> None:
                choice = rng.random()
                if choice < 0.1:
                    payload = rng.randbytes(rng.randint(1, 200))
                elif choice < 0.3:
                    payload = mutate(rng, rng.choice(seeds))
                elif choice < 0.7:
                    # A search to create result set 1, then hostile but well-formed requests.
                    requests = [semantic_mutation(rng, codec.decode(rng.choice(operations))) for _ in range(3)]
                    payload = INIT + SEARCH + b"".join(codec.encode(r) for r in requests)
                else:
                    # A good init first, so the mutation reaches search/present/scan/sort handling.
                    payload = INIT + mutate(rng, rng.choice(seeds))
                for pdu in await converse(server.port, payload):
                    name = type(pdu).__name__ + (f".{pdu.reason.name}" if isinstance(pdu, P.Close) else "")
                    seen[name] = seen.get(name, 0) + 1
                    assert isinstance(pdu, (P.InitResponse, P.SearchResponse, P.PresentResponse, P.ScanResponse,
                                            P.SortResponse, P.DeleteResultSetResponse, P.Close)), (n, payload.hex())

            for batch in range(0, 400, 16):
                await asyncio.gather(*(one(n) for n in range(batch, batch + 16)))
                # The long-lived session is unaffected, batch after batch.
                again = await healthy.search("@attr 1=4 geography", result_set="healthy")
                assert again.count == before.count
            # The mutations reached the operations, not only the decoder.
            assert seen.get("Close.PROTOCOL_ERROR", 0) > 50, seen
            for kind in ("InitResponse", "SearchResponse", "PresentResponse", "ScanResponse", "SortResponse",
                         "DeleteResultSetResponse"):
                assert seen.get(kind, 0) > 10, seen
            page = await healthy.present(again.result_set, 1, 2)
            assert page.number_of_records_returned == 2
        async with Z3950Client("127.0.0.1", server.port, database="union") as fresh:
            assert (await fresh.search("@attr 1=4 geography")).count == before.count
        await asyncio.sleep(0.1)
        assert server.sessions == 0



async def test_store_failures_are_diagnostics_and_the_session_continues(catalogue):
    from federation.rules import load_network
    from federation.search import SearchService
    from federation.z3950service import start_z3950_server
    from indexer.embedded import EmbeddedStore
    from indexer.indexes import load_index_table
    from sru_support import NETWORK

    table = load_index_table()
    store = EmbeddedStore(catalogue.store_dir, table)
    await store.open()
    server = await start_z3950_server(SearchService(load_network(NETWORK), table, store), "127.0.0.1", 0)
    try:
        async with Z3950Client("127.0.0.1", server.port, database="union") as client:
            found = await client.search("@attr 1=4 geography", result_set="a")
            assert found.count > 0
            await store.close()  # the catalogue goes away under a live session
            failed = await client.search("@attr 1=4 geography", result_set="b")
            assert failed.count == 0 and failed.diagnostics[0].code == 2
            page = await client.present("a", 1, 1)
            assert page.present_status is P.PresentStatus.FAILURE and page.diagnostics[0].code == 2
            scan = await client.scan("@attr 1=4 geography")
            assert scan.status is P.ScanStatus.FAILURE and scan.diagnostics[0].code == 2
            deleted = await client.delete_result_sets(["a"])
            assert deleted.status is P.DeleteSetStatus.SUCCESS
    finally:
        server.close()
        await server.wait_closed()
        await store.close()


def random_operand(rng: random.Random) -> P.AttrTerm:
    attributes = []
    for _ in range(rng.randint(0, 5)):
        kind = rng.randint(1, 7)
        value = rng.choice([
            rng.randint(-2, 130), rng.choice([4, 7, 8, 12, 21, 31, 1003, 1016, 1044, 9999]),
            rng.choice(["title", "dc.creator", "net.library", "", "图书馆"]),
            tuple(rng.choice([rng.randint(0, 9), "x"]) for _ in range(rng.randint(0, 2))),
        ])
        attributes.append(P.Attribute(kind, value))
    term = rng.choice([
        "图书馆", "geography", "comput", "comput#r", "a?2b", "#", "?", "", " ", "GR", "GR-DW", "2000", "-7",
        "9" * rng.randint(15, 6000), "".join(chr(rng.randint(32, 0x9fff)) for _ in range(rng.randint(0, 20))),
    ])
    return P.AttrTerm(tuple(attributes), term)


def as_pqf(operand: P.AttrTerm) -> str:
    """The operand as PQF for the client's scan (attributes PQF can write: numbers and plain names)."""
    parts = [f"@attr {a.type}={a.value}" for a in operand.attributes
             if isinstance(a.value, int) or (isinstance(a.value, str) and a.value and " " not in a.value)]
    term = str(operand.term).replace("\\", "").replace('"', "")
    return " ".join(parts + [f'"{term}"'])


def random_rpn(rng: random.Random, depth: int = 0) -> P.RpnNode:
    if depth >= 3 or rng.random() < 0.6:
        return random_operand(rng)
    op = rng.choice([P.Operator.AND, P.Operator.OR, P.Operator.AND_NOT])
    return P.RpnOp(op, random_rpn(rng, depth + 1), random_rpn(rng, depth + 1))


async def test_random_well_formed_queries_get_hits_or_a_specific_diagnostic(catalogue):
    """Well-formed searches, scans and sorts with random attributes and terms: each answer is hits
    or a diagnostic naming the problem, never diagnostic 2 (an unexpected failure), and the
    session stays usable."""
    rng = random.Random(20261125)
    outcomes = {"hits": 0, "none": 0, "diagnostic": 0}
    async with running_server(catalogue) as server:
        async with Z3950Client("127.0.0.1", server.port, database="union") as client:
            for n in range(200):
                query = P.RpnQuery(random_rpn(rng))
                found = await asyncio.wait_for(client.search(query, result_set=f"s{n % 5}"), ANSWER_TIMEOUT)
                assert all(d.code != 2 for d in found.diagnostics), (query, found.diagnostics)
                outcomes["diagnostic" if found.diagnostics else "hits" if found.count else "none"] += 1
                start = as_pqf(random_operand(rng))
                scan = await asyncio.wait_for(client.scan(start, count=rng.randint(0, 30), position=rng.randint(0, 31)),
                                              ANSWER_TIMEOUT)
                assert all(d.code != 2 for d in scan.diagnostics), (start, scan.diagnostics)
                if found.count:
                    keys = [P.SortKeySpec(attributes=random_operand(rng).attributes)]
                    sort = await asyncio.wait_for(client.sort([found.result_set], "sorted", keys), ANSWER_TIMEOUT)
                    assert all(d.code != 2 for d in sort.diagnostics), (keys, sort.diagnostics)
            assert (await client.search("@attr 1=4 图书馆")).count > 0
    assert min(outcomes.values()) >= 10, outcomes      # the mix exercised hits, misses and diagnostics

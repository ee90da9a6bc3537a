"""Federation under failing targets, all real sockets on loopback: a target that accepts and
never answers, one that refuses connections, one that sends garbage, slow ones (a delaying
proxy in front of zebrasrv). The answer must come within the deadline plus a small margin,
with the healthy sources' results, and name every failed target with its reason."""
from __future__ import annotations

import dataclasses
import time

from federation.federated import FederatedSearch
from federation.rules import CircuitBreaker, Target, load_network
from federation.search import SearchService
from federation.z3950service import start_z3950_server
from federation_peers import refused_port, start_garbage_peer, start_silent_peer, start_slow_proxy
from indexer.indexes import load_index_table
from indexer.query import Clause, Relation
from test_federation import NETWORK, by_code, city_targets, federation, setup, store, title, zebra  # noqa: F401 (fixtures)

DEADLINE = 1.5
MARGIN = 0.5


def warning_for(outcome, code: str) -> str:
    texts = [text for _, text in outcome.warnings if f"target {code} " in text]
    assert len(texts) == 1, outcome.warnings
    return texts[0]


async def test_every_failure_at_once_within_the_deadline(setup, store, zebra):  # noqa: F811
    async with start_silent_peer() as silent, start_garbage_peer() as garbage, \
            start_slow_proxy(zebra.host, zebra.port, 0.1) as slow, \
            start_slow_proxy(zebra.host, zebra.port, 5.0) as too_slow:
        closed = refused_port()
        targets = [
            city_targets(zebra)[0],
            Target("SILENTZ", "never answers (Z39.50)", "z3950", f"tcp:{silent.address}/db", timeout=10),
            Target("SILENTS", "never answers (SRU)", "sru", f"http://{silent.address}/db", timeout=10),
            Target("REFUSEDZ", "refuses (Z39.50)", "z3950", f"tcp:127.0.0.1:{closed}/db", timeout=10),
            Target("REFUSEDS", "refuses (SRU)", "sru", f"http://127.0.0.1:{closed}/db", timeout=10),
            Target("GARBAGEZ", "garbage (Z39.50)", "z3950", f"tcp:{garbage.address}/db", timeout=10),
            Target("GARBAGES", "garbage (SRU)", "sru", f"http://{garbage.address}/db", timeout=10),
            Target("SLOW", "slow but in time", "z3950", f"tcp:{slow.address}/Default", timeout=10),
            Target("TOOSLOW", "slower than the deadline", "z3950", f"tcp:{too_slow.address}/Default", timeout=10),
            Target("SLOWS", "slow but in time (SRU)", "sru", f"http://{slow.address}/Default", timeout=10),
            Target("TOOSLOWS", "slower than the deadline (SRU)", "sru", f"http://{too_slow.address}/Default",
                   timeout=10),
        ]
        fed = federation(store, targets, deadline=DEADLINE)
        try:
            started = time.monotonic()
            outcome = await fed.search(title("religion"), limit=100)
            elapsed = time.monotonic() - started
        finally:
            await fed.aclose()
    assert elapsed < DEADLINE + MARGIN
    statuses = by_code(outcome)
    city_hits = len(setup.hits("religion", lambda n: n % 3 != 0))
    assert statuses["DYZ"]["state"] == "ok" and statuses["DYZ"]["fetched"] == city_hits
    for code in ("SLOW", "SLOWS"):
        assert statuses[code]["state"] == "ok" and statuses[code]["hits"] == city_hits
    assert statuses["union"]["state"] == "ok"
    # The healthy sources' works are all there.
    assert outcome.total == len(outcome.records) == len(setup.expected_works("religion"))
    assert outcome.precision == "minimum"
    for code in ("SILENTZ", "SILENTS", "TOOSLOW", "TOOSLOWS"):
        assert statuses[code]["state"] == "timeout", statuses[code]
        assert "within" in warning_for(outcome, code)
    for code in ("REFUSEDZ", "REFUSEDS", "GARBAGEZ", "GARBAGES"):
        assert statuses[code]["state"] == "failed", statuses[code]
    assert "cannot connect" in warning_for(outcome, "REFUSEDZ")
    assert "Connect" in warning_for(outcome, "REFUSEDS")
    assert "connection failed" in warning_for(outcome, "GARBAGEZ")
    assert "Bad status line" in warning_for(outcome, "GARBAGES")
    assert all(code == 58 for code, _ in outcome.warnings)
    assert len(outcome.warnings) == 8


async def test_a_target_timeout_shorter_than_the_deadline(store, zebra):  # noqa: F811
    async with start_slow_proxy(zebra.host, zebra.port, 1.0) as slow:
        fed = federation(store, [Target("SLOW", "slow", "z3950", f"tcp:{slow.address}/Default", timeout=0.4)],
                         deadline=5)
        try:
            started = time.monotonic()
            outcome = await fed.search(title("sonata"), limit=10)
            elapsed = time.monotonic() - started
        finally:
            await fed.aclose()
    assert elapsed < 0.4 + MARGIN
    status = by_code(outcome)["SLOW"]
    assert status["state"] == "timeout" and status["error"] == "no answer within 0.4 s"
    assert by_code(outcome)["union"]["state"] == "ok" and outcome.records


async def test_transport_failures_are_retried(store):  # noqa: F811
    async with start_garbage_peer() as garbage:
        fed = federation(store, [Target("GARBAGE", "garbage", "z3950", f"tcp:{garbage.address}/db", retries=2)])
        try:
            outcome = await fed.search(title("sonata"), limit=10)
        finally:
            await fed.aclose()
        assert garbage.connections == 3
    assert by_code(outcome)["GARBAGE"]["state"] == "failed"


async def test_circuit_breaker_skips_a_failing_target_then_probes_it(store):  # noqa: F811
    now = [0.0]
    async with start_garbage_peer() as garbage:
        target = Target("GARBAGE", "garbage", "z3950", f"tcp:{garbage.address}/db", retries=0,
                        circuit_breaker=CircuitBreaker(failures=2, reset_seconds=30))
        fed = federation(store, [target])
        fed.clock = lambda: now[0]

        async def search(word: str):
            return by_code(await fed.search(Clause("title", Relation.PHRASE, word), limit=1))["GARBAGE"]

        try:
            assert (await search("sonata"))["state"] == "failed"
            assert (await search("religion"))["state"] == "failed"
            assert garbage.connections == 2
            skipped = await search("economics")
            assert skipped["state"] == "skipped" and "circuit breaker open" in skipped["error"]
            assert garbage.connections == 2
            now[0] += 31
            assert (await search("directory"))["state"] == "failed"     # the probe
            assert garbage.connections == 3
            assert (await search("teacher"))["state"] == "skipped"      # the failed probe reopened it
            assert garbage.connections == 3
        finally:
            await fed.aclose()


async def test_a_healthy_probe_closes_the_breaker(store):  # noqa: F811
    """The project's own Z39.50 server refuses a wrong token until the right one is configured."""
    now = [0.0]
    environ = {"FED_TEST_TOKEN": "wrong"}
    table = load_index_table()
    network = load_network(NETWORK)
    server = await start_z3950_server(SearchService(network, table, store), "127.0.0.1", 0,
                                      require_authentication=True)
    target = Target("GRZ", "our own Z39.50", "z3950", f"tcp:127.0.0.1:{server.port}/union", username="GR",
                    password_env="FED_TEST_TOKEN", retries=0, circuit_breaker=CircuitBreaker(failures=2, reset_seconds=10))
    fed = FederatedSearch(dataclasses.replace(network, targets=[target]), table, store, environ=environ,
                          clock=lambda: now[0])

    async def state(word: str) -> str:
        return by_code(await fed.search(Clause("title", Relation.PHRASE, word), limit=1))["GRZ"]["state"]

    try:
        assert [await state("sonata"), await state("religion"), await state("economics")] == \
            ["failed", "failed", "skipped"]
        environ["FED_TEST_TOKEN"] = "example-token-GR"
        assert await state("directory") == "skipped"
        now[0] += 10
        assert await state("teacher") == "ok"          # the probe
        assert await state("medicine") == "ok"         # closed again: no longer skipped
    finally:
        await fed.aclose()
        server.close()
        await server.wait_closed()


async def test_a_disabled_target_is_not_contacted_nor_reported(setup, store, zebra):  # noqa: F811
    """`enabled: false` switches a target off: listeners at its address (Z39.50 and SRU) see no
    connection, and the answer neither lists it nor counts it as a failure."""
    async with start_silent_peer() as listener:
        targets = [
            city_targets(zebra)[0],
            Target("OFFZ", "switched off (Z39.50)", "z3950", f"tcp:{listener.address}/db", enabled=False),
            Target("OFFS", "switched off (SRU)", "sru", f"http://{listener.address}/db", enabled=False),
        ]
        fed = federation(store, targets, deadline=DEADLINE)
        try:
            outcome = await fed.search(title("religion"), limit=100)
            assert [t.code for t in fed.targets] == ["DYZ"]
        finally:
            await fed.aclose()
        assert listener.connections == 0
    assert list(by_code(outcome)) == ["union", "DYZ"]
    assert outcome.warnings == [] and outcome.precision == "exact"
    assert outcome.total == len(setup.expected_works("religion"))

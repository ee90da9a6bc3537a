"""The benchmark's own parts, checked on a small catalogue so that the figures in
docs/benchmarks.md stay comparable: both servers load the same MARC21 demo records, and every
query of the mix finds something on both, over SRU and over Z39.50, through the load
generator's own request functions (no timing is asserted)."""
from __future__ import annotations

import collections

import pymarc
import pytest
from aiohttp.test_utils import TestServer

# `benchmarks` is run from the checkout (`python -m benchmarks.run`), not installed with the
# package: setup.cfg's pytest `pythonpath = .` makes it importable here.
from benchmarks import zebra
from benchmarks.data import demo_files, marc21_network
from benchmarks.load import sru_clients, z3950_clients
from benchmarks.queries import KINDS, build_mix
from federation.app import create_app
from federation.rules import load_network
from federation.search import SearchService
from federation.z3950service import start_z3950_server
from indexer.embedded import EmbeddedStore
from indexer.indexes import load_index_table
from indexer.ingest import IngestOptions, ingest

RECORDS = 400


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("bench")
    network = marc21_network(workdir)
    files = demo_files(network, workdir / "data", RECORDS)
    return workdir, network, files


def test_the_comparison_data_is_marc21_for_every_library(bench):
    workdir, network, files = bench
    assert len(files) == len(load_network(network).libraries)
    total = 0
    for path in files:
        with path.open("rb") as stream:
            records = list(pymarc.MARCReader(stream, to_unicode=True, force_utf8=True))
        assert records, path
        total += len(records)
        for record in records:
            # MARC21 in UTF-8: leader/09 'a', title in 245, items in 852 (952 for the Koha branch), no CNMARC 905/200
            assert record.leader[9] == "a", path
            assert record.get_fields("245") and not record.get_fields("200", "905"), path
            assert record.get_fields("852") or record.get_fields("952"), path
    assert total == RECORDS


async def test_every_query_of_the_mix_finds_records_on_both_servers(bench, tmp_path):
    workdir, network_path, files = bench
    mix = build_mix(files, per_kind=5)
    assert collections.Counter(q.kind for q in mix) == {kind: 5 for kind in KINDS}

    network = load_network(network_path)
    table = load_index_table()
    store = EmbeddedStore(tmp_path / "store", table)
    await store.open()
    report = await ingest(files, store, table, network.to_ingest_policy(),
                          IngestOptions(quarantine_path=tmp_path / "q.jsonl"))
    assert report.read == RECORDS and report.quarantined == 0 and report.reconciled
    await store.refresh()
    zebra.index(tmp_path / "zebra", files, cpus=None)

    service = SearchService(network, table, store)
    http = TestServer(create_app(service), host="127.0.0.1", port=0)
    await http.start_server()
    z3950 = await start_z3950_server(service, "127.0.0.1", 0)
    hits: dict[tuple[str, str, str], list[int]] = collections.defaultdict(list)
    try:
        with zebra.ZebraServer(tmp_path / "zebra") as zebra_server:
            for side, is_zebra, sru_url, z_port, database in (
                ("ours", False, f"http://127.0.0.1:{http.port}/sru/union", z3950.port, "union"),
                ("zebra", True, f"http://127.0.0.1:{zebra_server.port}/Default", zebra_server.port, "Default"),
            ):
                make, session = sru_clients(sru_url, 10, "marcxml", is_zebra, 1)
                try:
                    request, close = await make()
                    for query in mix:
                        count, error = await request(query)
                        assert not error, (side, query, error)
                        hits[(side, "sru", query.kind)].append(count)
                    await close()
                finally:
                    await session.close()
                request, close = await z3950_clients("127.0.0.1", z_port, database, 10, is_zebra)()
                try:
                    for query in mix:
                        count, error = await request(query)
                        assert not error, (side, query, error)
                        hits[(side, "z3950", query.kind)].append(count)
                finally:
                    await close()
    finally:
        z3950.close()
        await z3950.wait_closed()
        await http.close()
        await store.close()

    for (side, protocol, kind), counts in hits.items():
        assert all(count > 0 for count in counts), (side, protocol, kind, counts)
    for kind in KINDS:
        # the two protocols agree on each server; Zebra counts every library's copy, we count
        # union records, so Zebra never finds fewer
        assert hits[("ours", "sru", kind)] == hits[("ours", "z3950", kind)], kind
        assert hits[("zebra", "sru", kind)] == hits[("zebra", "z3950", kind)], kind
        assert all(z >= o for o, z in zip(hits[("ours", "sru", kind)], hits[("zebra", "sru", kind)])), kind


def test_peak_rss_is_the_commands_own_not_its_parents():
    """Linux keeps a forked child's pre-exec high-water mark in its peak RSS: a command started
    straight from a large benchmark process reported the parent's size. Measured through the
    launcher, a command that touches 200 MB reports about that, and `true` a few MB, however
    large the measuring process is."""
    import sys

    from benchmarks.measure import run_measured

    ballast = bytearray(300 * 1024 * 1024)
    for offset in range(0, len(ballast), 4096):
        ballast[offset] = 1
    small = run_measured(["true"])
    assert small.peak_rss_mb < 50, small
    grown = run_measured([sys.executable, "-c",
                          "x = bytearray(200 * 1024 * 1024)\nfor i in range(0, len(x), 4096): x[i] = 1"])
    assert 200 <= grown.peak_rss_mb < 300, grown
    with pytest.raises(RuntimeError, match="exited with 3"):
        run_measured([sys.executable, "-c", "raise SystemExit(3)"])
    del ballast


def test_the_tree_peak_adds_up_the_processes_a_command_runs_at_once():
    """A command whose two processes each hold 150 MB at the same time peaks at about 300 MB
    together, while the largest single process is about 150 MB."""
    import sys

    from benchmarks.measure import run_measured

    child = "import time\nx = bytearray(150 * 1024 * 1024)\nfor i in range(0, len(x), 4096): x[i] = 1\ntime.sleep(1.5)"
    parent = (f"import subprocess, sys\nchild = subprocess.Popen([sys.executable, '-c', {child!r}])\n{child}\n"
              "assert child.wait() == 0")
    both = run_measured([sys.executable, "-c", parent])
    assert 150 <= both.peak_rss_mb < 220, both
    assert 300 <= both.peak_tree_rss_mb < 400, both
    alone = run_measured([sys.executable, "-c", child])
    assert 150 <= alone.peak_tree_rss_mb < 220, alone


def test_the_ingest_profile_times_both_phases_of_an_ingest_with_preparing_processes(tmp_path, capsys):
    import re

    from benchmarks import ingest_profile

    directory = tmp_path / str(RECORDS)
    demo_files(marc21_network(directory), directory / "data", RECORDS)
    assert ingest_profile.main(["--workdir", str(tmp_path), "--records", str(RECORDS), "--jobs", "2",
                                "--scratch", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    summary = re.search(r"([\d,]+) records -> ([\d,]+) union records, --jobs 2", out)
    assert summary is not None, out
    assert int(summary.group(1).replace(",", "")) == RECORDS
    assert 0 < int(summary.group(2).replace(",", "")) < RECORDS  # the demo data's copies merge
    for phase in ("merge and write", "index at the end", "other processes", "whole run"):
        assert re.search(rf"^{phase} .* s CPU", out, re.MULTILINE), (phase, out)
    assert [p for p in tmp_path.iterdir() if p.name.startswith("ingest-profile-")] == []  # its store is gone
    assert ingest_profile.main(["--workdir", str(tmp_path), "--records", str(RECORDS), "--stages"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{RECORDS:,} records\n"), out
    for stage in ("reading and parsing", "preparing (all it sends)"):
        assert re.search(rf"^{re.escape(stage)} .* s CPU .* µs CPU/record$", out, re.MULTILINE), (stage, out)


def test_the_postings_experiment_writes_the_catalogues_rows_each_way(tmp_path, capsys):
    import asyncio
    import re

    from benchmarks import postings

    directory = tmp_path / str(RECORDS)
    network = marc21_network(directory)
    files = demo_files(network, directory / "data", RECORDS)

    async def load() -> None:
        rules = load_network(network)
        store = EmbeddedStore(directory / "store", load_index_table())
        await store.open()
        try:
            await ingest(files, store, load_index_table(), rules.to_ingest_policy(),
                         IngestOptions(quarantine_path=tmp_path / "q.jsonl"))
        finally:
            await store.close()

    asyncio.run(load())
    assert postings.main(["--workdir", str(tmp_path), "--records", str(RECORDS), "--scratch", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    counts = re.search(r"([\d,]+) vals rows, ([\d,]+) toks rows", out)
    assert counts is not None and all(int(n.replace(",", "")) > RECORDS for n in counts.groups()), out
    for way in ("rows", "rows-sorted", "rows-json", "blocks"):
        assert re.search(rf"^{way} +\d+\.\d CPU s$", out, re.MULTILINE), (way, out)
    assert re.search(r"blocks: [\d,]+ token blocks, [\d,]+ value blocks", out), out

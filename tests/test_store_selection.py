"""Choosing the store as an operator does, on the command line: the rule set's `store` section,
overridden by `ELASTICSEARCH_URL` / `ELASTICSEARCH_FLAVOR` and by `--store` / `--data-dir`, for
`federation ingest` and `federation serve` (subprocesses). The Elasticsearch side is the osmem
stand-in (OpenSearch flavor), or the cluster `ELASTICSEARCH_URL` names when the suite runs with it."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from es_support import Endpoint, es_endpoint  # noqa: F401  (a fixture: the session endpoint)
from federation.rules import StoreSettings
from federation.stores import open_store
from indexer.embedded import DATABASE_NAME
from indexer.indexes import load_index_table
from indexer.query import MatchAll, SearchRequest
from sru_support import fetch
from test_sru_serve import read_banner

pytestmark = [pytest.mark.elasticsearch]

ROOT = Path(__file__).resolve().parent.parent
FEDERATION = Path(sys.executable).parent / "federation"
LOC = ROOT / "fixtures" / "marc21" / "loc-bibliographic-386.mrc"
SUMMERLAND = ROOT / "fixtures" / "marc21" / "summerland.marcxml.xml"
TABLE = load_index_table()


@pytest.fixture
def rule_set(tmp_path_factory: pytest.TempPathFactory, es_endpoint: Endpoint) -> Path:
    """Guangrao's rule set with an embedded store of its own, under a network id of its own: the
    Elasticsearch index prefix defaults to the id, here one under the session's prefix (the
    session deletes its indexes at the end)."""
    directory = tmp_path_factory.mktemp("selection")
    text = (ROOT / "config" / "networks" / "guangrao.yaml").read_text(encoding="utf-8")
    edits = [("store:\n  kind: embedded\n  path: var/guangrao\n",
              f"store:\n  kind: embedded\n  path: {directory / 'rule-set-store'}\n"),
             ("\n  id: guangrao\n", f"\n  id: {es_endpoint.prefix}-{directory.name}\n")]
    for old, new in edits:
        assert text.count(old) == 1
        text = text.replace(old, new)
    path = directory / "guangrao.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def es_settings(rule_set: Path, endpoint: Endpoint) -> StoreSettings:
    return StoreSettings("elasticsearch", None, endpoint.url, f"{endpoint.prefix}-{rule_set.parent.name}", endpoint.flavor)


def environment(**overrides: str) -> dict[str, str]:
    """This process's environment without Elasticsearch settings, plus the overrides."""
    env = {k: v for k, v in os.environ.items() if k not in ("ELASTICSEARCH_URL", "ELASTICSEARCH_FLAVOR")}
    return {**env, **overrides, "PYTHONUNBUFFERED": "1"}


def federation(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FEDERATION), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


async def count(settings: StoreSettings) -> int:
    store = await open_store(settings, TABLE)
    try:
        return (await store.search(SearchRequest(MatchAll(), limit=0))).total
    finally:
        await store.close()


def report_of(data_dir: Path) -> dict:
    (path,) = sorted((data_dir / "ingest").glob("*.report.json"))
    return json.loads(path.read_text(encoding="utf-8"))


async def test_ingest_goes_to_the_store_the_environment_and_store_option_name(
        tmp_path: Path, rule_set: Path, es_endpoint: Endpoint) -> None:
    cluster = {"ELASTICSEARCH_URL": es_endpoint.url, "ELASTICSEARCH_FLAVOR": es_endpoint.flavor}
    cluster_store = es_settings(rule_set, es_endpoint)
    rule_set_store = rule_set.parent / "rule-set-store"

    # The environment names a cluster: the rule set's embedded store is not used.
    to_cluster = tmp_path / "to-cluster"
    done = federation("ingest", "--config", str(rule_set), "--data-dir", str(to_cluster), "--quiet", str(LOC),
                      env=environment(**cluster))
    assert done.returncode == 0, done.stderr
    report = report_of(to_cluster)
    assert (report["read"], report["quarantined"]) == (386, 0)
    in_cluster = report["added"]
    assert in_cluster > 300
    assert await count(cluster_store) == in_cluster
    assert not (to_cluster / DATABASE_NAME).exists() and not rule_set_store.exists()

    # `--store embedded` wins over the environment: the records go to the --data-dir, not the cluster.
    embedded_dir = tmp_path / "embedded"
    done = federation("ingest", "--config", str(rule_set), "--data-dir", str(embedded_dir), "--store", "embedded",
                      "--quiet", str(SUMMERLAND), env=environment(**cluster))
    assert done.returncode == 0, done.stderr
    assert report_of(embedded_dir)["added"] == 1
    assert await count(StoreSettings("embedded", str(embedded_dir))) == 1
    assert await count(cluster_store) == in_cluster

    # No environment, no option: the rule set's own store (its path, since no --data-dir is given).
    done = federation("ingest", "--config", str(rule_set), "--quiet", str(SUMMERLAND), env=environment())
    assert done.returncode == 0, done.stderr
    assert await count(StoreSettings("embedded", str(rule_set_store))) == 1
    assert await count(cluster_store) == in_cluster

    # `--store elasticsearch` with no URL anywhere is a clear error, not a silent fallback.
    done = federation("ingest", "--config", str(rule_set), "--store", "elasticsearch", str(SUMMERLAND),
                      env=environment())
    assert done.returncode == 1
    assert "the elasticsearch store needs a URL: set store.url in the rule set or ELASTICSEARCH_URL" in done.stderr

    # A flavor that is not one is named as such.
    done = federation("ingest", "--config", str(rule_set), str(SUMMERLAND),
                      env=environment(ELASTICSEARCH_URL=es_endpoint.url, ELASTICSEARCH_FLAVOR="solr"))
    assert done.returncode == 1 and "ELASTICSEARCH_FLAVOR='solr'" in done.stderr


async def test_the_flavor_decides_how_the_client_talks(tmp_path: Path, rule_set: Path, es_endpoint: Endpoint) -> None:
    # Elasticsearch's media types are refused by OpenSearch (and its stand-in): the flavor is what
    # makes the same store code reach both. Without ELASTICSEARCH_FLAVOR the rule set's flavor (here
    # the default, elasticsearch) holds: right for an Elasticsearch cluster, refused by OpenSearch.
    done = federation("ingest", "--config", str(rule_set), "--data-dir", str(tmp_path), str(SUMMERLAND),
                      env=environment(ELASTICSEARCH_URL=es_endpoint.url))
    if es_endpoint.flavor == "opensearch":
        assert done.returncode == 1
        assert "federation ingest:" in done.stderr and "is not supported" in done.stderr, done.stderr
    else:
        assert done.returncode == 0, done.stderr


def test_serve_answers_from_the_cluster_the_store_option_and_environment_name(
        tmp_path: Path, rule_set: Path, es_endpoint: Endpoint) -> None:
    cluster = {"ELASTICSEARCH_URL": es_endpoint.url, "ELASTICSEARCH_FLAVOR": es_endpoint.flavor}
    data_dir = tmp_path / "data"
    # The catalogue goes in with the rule set pointing at Elasticsearch by --store (the URL from the environment).
    done = federation("ingest", "--config", str(rule_set), "--store", "elasticsearch", "--data-dir", str(data_dir),
                      "--quiet", str(SUMMERLAND), env=environment(**cluster))
    assert done.returncode == 0, done.stderr
    assert not (data_dir / DATABASE_NAME).exists()

    process = subprocess.Popen(
        [str(FEDERATION), "serve", "--config", str(rule_set), "--store", "elasticsearch", "--data-dir", str(data_dir),
         "--http", "127.0.0.1:0", "--z3950", "127.0.0.1:0", "--demo-banner"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment(**cluster))
    try:
        banner = read_banner(process, timeout=30)
        match = re.search(r"SRU:\s+(http://127\.0\.0\.1:\d+/sru/union)", banner)
        assert match, banner + (process.stderr.read() if process.poll() is not None else "")
        answer = fetch(f"{match.group(1)}?version=1.2&operation=searchRetrieve&query={quote('dc.title=summerland')}")
        assert answer.status == 200
        assert int(answer.xml.findtext("{*}numberOfRecords")) == 1
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()
    # Neither the rule set's embedded store nor one in the --data-dir was made.
    assert not (rule_set.parent / "rule-set-store").exists() and not (data_dir / DATABASE_NAME).exists()

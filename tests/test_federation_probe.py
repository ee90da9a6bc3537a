"""`federation probe-targets`, run as the console command against real targets on loopback:
zebrasrv over Z39.50 and SRU, a port that refuses, and a target whose index map lacks an index."""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import yaml

from federation_peers import refused_port, start_zebra_sru
from test_federation import NETWORK, on_city_side, setup  # noqa: F401 (fixture)


def rule_set(directory: Path, targets: list[dict]) -> Path:
    data = yaml.safe_load(NETWORK.read_text(encoding="utf-8"))
    data["targets"] = targets
    path = directory / "network.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


async def probe(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "federation", "probe-targets", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode(), err.decode()


async def test_probe_reports_each_target(setup, tmp_path):  # noqa: F811
    async with start_zebra_sru(tmp_path / "zebra", [setup.city_file]) as zebra:
        path = rule_set(tmp_path, [
            {"code": "DYZ", "name": "东营市图书馆", "protocol": "z3950", "url": zebra.z3950_url, "timeout": 5},
            {"code": "DYS", "name": "东营市图书馆 SRU", "protocol": "sru", "url": zebra.sru_url, "timeout": 5},
            {"code": "GONE", "name": "关闭", "protocol": "z3950", "url": f"tcp:127.0.0.1:{refused_port()}/db",
             "retries": 0},
            {"code": "OFF", "name": "停用", "protocol": "sru", "url": zebra.sru_url, "enabled": False},
        ])
        status, out, err = await probe(str(path), "--query", "dc.title = religion", "--json")
        assert status == 1, err
        results = {r["code"]: r for r in json.loads(out)}
        hits = len(setup.hits("religion", on_city_side))
        assert list(results) == ["DYZ", "DYS", "GONE"]          # the disabled one is left out
        for code in ("DYZ", "DYS"):
            assert results[code]["state"] == "ok" and results[code]["hits"] == hits
            assert len(results[code]["titles"]) == 3 and all("eligion" in t for t in results[code]["titles"])
        assert results["DYZ"]["translated"] == "@attr 1=4 @attr 2=3 @attr 4=2 @attr 5=100 religion"
        assert results["DYS"]["translated"] == "dc.title = religion"
        assert results["GONE"]["state"] == "failed" and "cannot connect" in results["GONE"]["error"]

        status, out, _ = await probe(str(path), "--query", "net.place = london", "--target", "DYS", "--target", "OFF")
        assert status == 1
        assert f"DYS (东营市图书馆 SRU, sru {zebra.sru_url}): unsupported" in out
        assert "index 'place' has no CQL name at DYS" in out
        assert f"OFF (停用, sru {zebra.sru_url}): unsupported" in out     # named: probed although disabled

        status, out, _ = await probe(str(path), "--query", "dc.title = religion", "--target", "DYZ")
        assert status == 0 and out.startswith(f"DYZ (东营市图书馆, z3950 {zebra.z3950_url}): ok, {hits} hits")


async def test_probe_usage_errors(tmp_path):
    path = rule_set(tmp_path, [])
    status, out, _ = await probe(str(path))
    assert status == 0 and "no enabled targets" in out
    status, _, err = await probe(str(path), "--target", "NOPE")
    assert status == 2 and "no target NOPE" in err
    status, _, err = await probe(str(path), "--query", "dc.title = (")
    assert status == 2 and "the query" in err
    broken = tmp_path / "broken.yaml"
    broken.write_text("network: {id: x}\n", encoding="utf-8")
    status, _, err = await probe(str(broken))
    assert status == 2 and "broken.yaml:" in err

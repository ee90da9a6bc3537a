"""`make serve` on a fresh clone (issue 5): the committed tree alone builds the demo catalogue
with make, and make's serve command answers the issue's request.

The clone uses this test's virtualenv (a clone has none, and `make install` would need the
network), and make's serve command is run as `make -n serve` prints it, with the addresses
moved to free ports (the Makefile binds the fixed 127.0.0.1:8080 / 2100). Expected hit counts
come from the MARC files make fed to ingest, read with pymarc."""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from sru_support import Catalogue, fetch, input_records
from test_sru_serve import read_banner

ROOT = Path(__file__).resolve().parent.parent
DEMO_RECORDS = 200


def make(clone: Path, *args: str) -> subprocess.CompletedProcess:
    venv = Path(sys.executable).parent.parent      # the virtualenv running the tests, as test_sru_serve uses it
    return subprocess.run(["make", "-s", "-C", str(clone), f"VENV={venv}", "-o", str(venv / ".installed"), *args],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_make_serve_on_a_fresh_clone_answers_the_issue_example(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    data = tmp_path / "data"
    variables = [f"DATA_DIR={data}", f"DEMO_RECORDS={DEMO_RECORDS}"]
    built = make(clone, "demo-catalogue", *variables)
    assert built.returncode == 0, built.stdout + built.stderr
    recipe = make(clone, "-n", "-o", "demo-catalogue", "serve", *variables)
    assert recipe.returncode == 0, recipe.stderr
    command = shlex.split(recipe.stdout.strip().splitlines()[-1])
    assert command[1:3] == ["serve", "--config"] and "--data-dir" in command

    # Expectations from the records make ingested: its demo exports and the CNMARC fixture.
    inputs = sorted((data / "demo-input").glob("*.mrc")) + [clone / "fixtures" / "cnmarc" / "dp2_sru_sample_cnmarcxml.iso"]
    catalogue = Catalogue(data, data / "demo-input", data, inputs)
    expected = len({r.work for r in input_records(catalogue) if "图书馆" in r.title})
    assert expected > 0

    process = subprocess.Popen(
        [*command, "--http", "127.0.0.1:0", "--z3950", "127.0.0.1:0"], cwd=clone,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        banner = read_banner(process)
        base = next((w for line in banner.splitlines() for w in line.split()
                     if w.startswith("http://127.0.0.1:") and w.endswith("/sru/union")), None)
        assert base, banner
        answer = fetch(f"{base}?version=1.2&operation=searchRetrieve&query={quote('dc.title=图书馆')}")
        assert answer.status == 200
        assert int(answer.xml.findtext("{*}numberOfRecords")) == expected
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
        process.stderr.close()

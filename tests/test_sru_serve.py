"""`federation serve` as a user runs it: a subprocess over an ingested data directory, the banner,
the issue's example request, a clean stop on SIGTERM; configuration errors exit 2 with the reason."""
from __future__ import annotations

import os
import re
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote

from sru_support import NETWORK, build_catalogue, fetch, input_records, library_tiers

ZEEREX = "{http://explain.z3950.org/dtd/2.0/}"

FEDERATION = Path(sys.executable).parent / "federation"


def read_banner(process: subprocess.Popen, timeout: float = 60) -> str:
    """The server's stdout up to the end of its banner (read in a thread so a silent server cannot hang us)."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=pump, daemon=True).start()
    text = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # The banner is one write: once its "Try:" line is in, the rest is already in the queue.
        wait = 0.5 if "Try:" in text else max(0.1, deadline - time.monotonic())
        try:
            line = lines.get(timeout=wait)
        except queue.Empty:
            break
        if not line:
            break
        text += line
    return text


def test_serve_answers_the_issue_example_and_stops_cleanly(tmp_path):
    catalogue = build_catalogue(tmp_path)
    expected = len({r.work for r in input_records(catalogue) if "图书馆" in r.title})
    process = subprocess.Popen(
        [str(FEDERATION), "serve", "--config", str(NETWORK), "--data-dir", str(catalogue.store_dir),
         "--http", "127.0.0.1:0", "--z3950", "127.0.0.1:0", "--demo-banner"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        banner = read_banner(process)
        match = re.search(r"SRU:\s+(http://127\.0\.0\.1:(\d+)/sru/union)", banner)
        assert match, banner + (process.stderr.read() if process.poll() is not None else "")
        assert int(match.group(2)) != 0
        assert "Z39.50:" in banner and "curl 'http://127.0.0.1:" in banner
        answer = fetch(f"{match.group(1)}?version=1.2&operation=searchRetrieve&query={quote('dc.title=图书馆')}")
        assert answer.status == 200
        assert int(answer.xml.findtext("{*}numberOfRecords")) == expected
        federated = fetch(f"{match.group(1)[:-len('union')]}federated?version=1.2&operation=searchRetrieve"
                          f"&query={quote('dc.title=图书馆')}")
        assert int(federated.xml.findtext("{*}numberOfRecords")) == expected   # no remote targets enabled
        # Explain, as served, lists the federated database next to every library and tier database.
        tiers = library_tiers()
        for database, others in (("union", {"federated"}), ("federated", {"union"})):
            explain = fetch(f"{match.group(1)[:-len('union')]}{database}?version=1.2&operation=explain").xml
            listed = {s.text.split(":", 1)[0]
                      for s in explain.iter(f"{ZEEREX}supports") if s.get("type") == "database"}
            assert listed == others | set(tiers) | set(tiers.values()), listed
            assert explain.findtext(f".//{ZEEREX}serverInfo/{ZEEREX}database") == f"sru/{database}"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()


def test_serve_reports_configuration_errors(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(NETWORK.read_text(encoding="utf-8").replace("hub: GR", "hub: NOWHERE", 1), encoding="utf-8")
    done = subprocess.run([str(FEDERATION), "serve", "--config", str(broken), "--data-dir", str(tmp_path / "d"),
                           "--http", "127.0.0.1:0"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"{broken}:" in done.stderr and "hub" in done.stderr
    bad_address = subprocess.run([str(FEDERATION), "serve", "--config", str(NETWORK), "--http", "localhost"],
                                 capture_output=True, text=True, timeout=60)
    assert bad_address.returncode == 2 and "HOST:PORT" in bad_address.stderr

"""`.ci/run` and `make test` (issue 2) on a fresh clone: `.ci/run` runs `make test`, passes when
pytest ran tests that passed, and fails when pytest collected none; `make test`'s Debian step
stops a non-root user with the missing packages named.

The clone uses this test's virtualenv (a clone has none, and installing one needs the network):
`VENV` and the install stamp are given to make through MAKEFLAGS, as an operator's environment
would; everything else is the clone's own Makefile and `.ci/run`. The clone's test directory is
replaced by a small one, so that `make test` does not run the whole suite a second time."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(sys.executable).parent.parent


def fresh_clone(tmp_path: Path, tests: dict[str, str]) -> tuple[Path, dict[str, str]]:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    shutil.rmtree(clone / "tests")
    (clone / "tests").mkdir()
    for name, text in tests.items():
        (clone / "tests" / name).write_text(text, encoding="utf-8")
    stamp = tmp_path / "installed"
    stamp.touch()  # newer than the clone's setup.cfg: the install step has nothing to do
    env = {**os.environ, "MAKEFLAGS": f"VENV={VENV} STAMP={stamp}"}
    return clone, env


def ci_run(clone: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(clone / ".ci" / "run")], capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow
def test_ci_run_passes_when_the_tests_pass(tmp_path: Path) -> None:
    clone, env = fresh_clone(tmp_path, {"test_rule_set.py": (
        "from federation.rules import load_network\n\n\n"
        "def test_the_shipped_network_loads():\n"
        "    assert load_network('config/networks/guangrao.yaml').hub == 'GR'\n")})
    done = ci_run(clone, env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


@pytest.mark.slow
def test_ci_run_fails_when_pytest_collects_no_test(tmp_path: Path) -> None:
    clone, env = fresh_clone(tmp_path, {"helpers.py": "VALUE = 1\n"})
    done = ci_run(clone, env)
    assert done.returncode != 0
    assert "no tests ran" in done.stdout


@pytest.mark.slow
def test_ci_run_fails_when_a_test_fails(tmp_path: Path) -> None:
    clone, env = fresh_clone(tmp_path, {"test_wrong.py": "def test_wrong():\n    assert 1 + 1 == 3\n"})
    done = ci_run(clone, env)
    assert done.returncode != 0
    assert "1 failed" in done.stdout and "FAILED tests/test_wrong.py::test_wrong" in done.stdout


def test_make_test_stops_a_non_root_user_when_debian_packages_are_missing() -> None:
    # As root, become nobody; a non-root run of the suite is already what the step checks for.
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    make = ["make", "-s", "-f", str(ROOT / "Makefile"), "debian-packages"]
    missing = subprocess.run([*nobody, *make, "DEBIAN_PACKAGES=yaz no-such-package-for-audit"], cwd="/",
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0
    assert "error: Debian packages missing: no-such-package-for-audit" in missing.stdout
    assert "sudo apt-get install -y no-such-package-for-audit" in missing.stdout
    present = subprocess.run([*nobody, *make], cwd="/", capture_output=True, text=True, timeout=60)
    assert present.returncode == 0, present.stdout + present.stderr
    assert present.stdout == ""

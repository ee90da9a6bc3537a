"""Running a command pinned to a CPU and measuring it: wall time, CPU time and peak RSS."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence


@dataclass(frozen=True)
class Measured:
    command: str
    seconds: float          # wall clock
    cpu_seconds: float      # user + system of the process and its children
    peak_rss_mb: float      # the largest resident set of the process (or a child it waited for)
    returncode: int
    output: str


def pinned(command: Sequence[str], cpus: str | None) -> list[str]:
    """`command` under `taskset -c cpus` (as is when no CPU set is given or taskset is missing)."""
    if cpus and shutil.which("taskset"):
        return ["taskset", "-c", cpus, *command]
    return list(command)


def run_measured(command: Sequence[str], *, cpus: str | None = None, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> Measured:
    """Run to completion; raise with the output's tail if it fails."""
    started = time.perf_counter()
    process = subprocess.Popen(pinned(command, cpus), cwd=cwd, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    assert process.stdout is not None
    output = process.stdout.read().decode(errors="replace")
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    measured = Measured(" ".join(command), seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024,
                        process.returncode, output)
    if measured.returncode != 0:
        raise RuntimeError(f"{measured.command} exited with {measured.returncode}:\n{output[-3000:]}")
    return measured


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]

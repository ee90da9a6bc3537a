"""Running a command pinned to a CPU and measuring it: wall time, CPU time and peak RSS."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
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
    # The largest sum of the resident sets of the process and its descendants, sampled every
    # 50 ms: what a command that runs several processes at once holds together.
    peak_tree_rss_mb: float = 0.0


def pinned(command: Sequence[str], cpus: str | None) -> list[str]:
    """`command` under `taskset -c cpus` (as is when no CPU set is given or taskset is missing)."""
    if cpus and shutil.which("taskset"):
        return ["taskset", "-c", cpus, *command]
    return list(command)


# Linux counts in a child's peak RSS the pages it shared with its parent before exec (the
# forked copy's high-water mark is kept across exec), so a command forked straight from a
# benchmark process of 400 MB would report at least 400 MB. A fresh, small interpreter forks it
# instead and reports the command's own usage.
_LAUNCHER = """
import json, os, sys, time
command, report = json.loads(sys.argv[1]), sys.argv[2]
pid = os.fork()
if pid == 0:
    try:
        os.execvp(command[0], command)
    finally:
        os._exit(127)


def tree_rss_kib(root):
    parents, rss = {}, {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
                parents[int(name)] = int(fields[1])
                rss[int(name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") // 1024
            except (OSError, IndexError, ValueError):
                continue  # it ended meanwhile
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(child for child, parent in parents.items() if parent == pid)
    return total


peak_tree = 0
while True:
    done, status, usage = os.wait4(pid, os.WNOHANG)
    if done:
        break
    peak_tree = max(peak_tree, tree_rss_kib(pid))
    time.sleep(0.05)
with open(report, "w") as out:
    json.dump({"cpu_seconds": usage.ru_utime + usage.ru_stime, "maxrss_kib": usage.ru_maxrss,
               "tree_maxrss_kib": max(peak_tree, usage.ru_maxrss),
               "returncode": os.waitstatus_to_exitcode(status)}, out)
"""


def run_measured(command: Sequence[str], *, cpus: str | None = None, cwd: Path | None = None,
                 env: dict[str, str] | None = None) -> Measured:
    """Run to completion; raise with the output's tail if it fails."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "usage.json"
        started = time.perf_counter()
        process = subprocess.Popen(pinned([sys.executable, "-c", _LAUNCHER, json.dumps(list(command)), str(report)], cpus),
                                   cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert process.stdout is not None
        output = process.stdout.read().decode(errors="replace")
        launcher_status = process.wait()
        seconds = time.perf_counter() - started
        if launcher_status != 0 or not report.exists():
            raise RuntimeError(f"{' '.join(command)}: the measuring launcher failed ({launcher_status}):\n{output[-3000:]}")
        usage = json.loads(report.read_text())
    measured = Measured(" ".join(command), seconds, usage["cpu_seconds"], usage["maxrss_kib"] / 1024,
                        usage["returncode"], output, usage["tree_maxrss_kib"] / 1024)
    if measured.returncode != 0:
        raise RuntimeError(f"{measured.command} exited with {measured.returncode}:\n{output[-3000:]}")
    return measured


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), round(fraction * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]

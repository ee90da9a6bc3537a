"""Helper processes of the write path: a fresh interpreter running one function of this package,
its work pickled on stdin, its results sent back on a pipe.

Not a fork (the parent has the store's threads, which a fork would copy mid-lock), and not
multiprocessing's spawn, which re-imports the caller's main module and leaves a resource-tracker
process behind. The child's end of the pipe is its only writer, so when the child dies, the
parent's reads end (`receive` gives None) instead of waiting forever.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

# The package as this process imports it, wherever it is installed or checked out.
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)


class Child:
    """A running helper: `receive()` its messages, `close()` it (terminated if still running)."""

    def __init__(self, process: subprocess.Popen[bytes], pipe: Connection):
        self.process, self.pipe = process, pipe

    @classmethod
    def start(cls, module: str, function: str, work: Any) -> "Child":
        """Run `module.function(work, connection)` in a new interpreter; its return value is the
        child's exit status."""
        code = (f"import pickle, sys; from multiprocessing.connection import Connection; from {module} import {function}; "
                f"sys.exit({function}(pickle.load(sys.stdin.buffer), Connection(int(sys.argv[1]), readable=False)))")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_PACKAGE_ROOT, os.environ.get("PYTHONPATH")]))}
        reader, writer = os.pipe()
        try:
            process = subprocess.Popen([sys.executable, "-c", code, str(writer)], stdin=subprocess.PIPE,
                                       pass_fds=(writer,), env=env)
        except BaseException:
            os.close(reader)
            raise
        finally:
            os.close(writer)  # the child's end is the only one left: its death ends the pipe
        child = cls(process, Connection(reader, writable=False))
        assert process.stdin is not None
        # A child that died at once refuses its work: `receive` then finds the pipe ended.
        with contextlib.suppress(OSError), process.stdin:
            process.stdin.write(pickle.dumps(work))
        return child

    def receive(self) -> Any | None:
        """The next message; None when the child is gone (also in the middle of a message)."""
        try:
            return self.pipe.recv()
        except (EOFError, OSError):
            return None

    def wait(self, timeout: float) -> int | None:
        """The exit status, None if it has not ended within `timeout` seconds."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait()
        self.pipe.close()

"""Start a local node, wait for the line that names its port, stop it by its process id."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
import time
from collections import deque
from pathlib import Path


class ChainProcessError(RuntimeError):
    """A local node could not be found, started or reached."""


def node_modules_dir() -> Path:
    """``node_modules`` of the repository (``AGENT_SERVER_NODE_MODULES`` overrides it)."""
    override = os.environ.get("AGENT_SERVER_NODE_MODULES")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "node_modules"


class NodeProcess:
    """A child process whose output is drained in the background (kept for diagnostics)."""

    def __init__(self, argv: list[str], name: str) -> None:
        self.name = name
        self.argv = argv
        self._lines: deque[tuple[int, str]] = deque(maxlen=400)
        self._count = 0
        self._seen = threading.Condition()
        self.process = subprocess.Popen(  # noqa: S603 - argv is built from fixed parts
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._drain, name=f"{name}-output", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._seen:
                self._count += 1
                self._lines.append((self._count, line.rstrip("\n")))
                self._seen.notify_all()
        with self._seen:
            self._seen.notify_all()

    def wait_for(self, pattern: re.Pattern[str], timeout: float = 30.0) -> re.Match[str]:
        """The first output line matching ``pattern``; raises if the process dies first."""
        deadline = time.monotonic() + timeout
        checked = 0
        with self._seen:
            while True:
                for number, line in list(self._lines):
                    if number > checked:
                        found = pattern.search(line)
                        if found:
                            return found
                checked = self._count
                if self.process.poll() is not None and not self._reader.is_alive():
                    raise ChainProcessError(f"{self.name} exited early:\n{self.output()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise ChainProcessError(f"{self.name} did not start in time:\n{self.output()}")
                self._seen.wait(min(left, 0.5))

    def output(self) -> str:
        return "\n".join(line for _, line in list(self._lines)[-40:])

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the process by its pid, killing it if it does not exit in time."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self._reader.join(timeout)
        if self.process.stdout is not None:
            with contextlib.suppress(OSError):
                self.process.stdout.close()

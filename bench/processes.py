"""Real server processes for benchmarks and tests: start, read the address, stop by pid."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

READY = re.compile(r"listening on (\S+):(\d+)")
BROKER_READY = re.compile(r"broker \d+ listening on (\S+):(\d+)")


class ServerProcess:
    """A child process that prints ``... listening on HOST:PORT`` once it is ready.

    Output after that line is collected in ``lines`` by a reader thread so the
    pipe never fills up.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        ready: re.Pattern[str] = READY,
    ) -> None:
        self.argv = list(argv)
        self.cwd = cwd
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.ready = ready
        self.proc: subprocess.Popen[str] | None = None
        self.host = ""
        self.port = 0
        self.lines: list[str] = []
        self._reader: threading.Thread | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("not started")
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.proc = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.argv} exited before ready:\n" + "".join(self.lines))
            self.lines.append(line)
            match = self.ready.search(line)
            if match:
                self.host, self.port = match.group(1), int(match.group(2))
                self._reader = threading.Thread(target=self._drain, daemon=True)
                self._reader.start()
                return self
        self.kill()
        raise RuntimeError(f"{self.argv} not ready in {timeout}s:\n" + "".join(self.lines))

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
                self.proc.wait(timeout=30)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        return self.proc.returncode

    def pause(self) -> None:
        self.kill(signal.SIGSTOP)

    def resume(self) -> None:
        self.kill(signal.SIGCONT)

    def output(self) -> str:
        return "".join(self.lines)


def coordinator_argv(data_dir: Path, *extra: str, port: int = 0) -> list[str]:
    return [
        sys.executable,
        "-m",
        "coordinator",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        *extra,
    ]


def broker_argv(data_dir: Path, *extra: str, port: int = 0) -> list[str]:
    """A broker; with no ``--coordinator`` in ``extra`` it embeds its own coordinator,
    on a free port (not the default 2181, so that several can run at once)."""
    if "--coordinator" not in extra and "--embedded-coordinator-port" not in extra:
        extra = ("--embedded-coordinator-port", "0", *extra)
    return [
        sys.executable,
        "-m",
        "broker",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        *extra,
    ]

"""``broker dev-cluster``: a coordinator and N brokers on this machine, for development.

    broker dev-cluster [--brokers 3] [--data-dir DIR] [--base-port 9092]
                       [--coordinator-port 2181] [--session-timeout-ms MS]
                       [--broker-arg=--FLAG=VALUE ...]

Starts ``coordinator serve`` and ``broker serve --id i`` for i in 0..N-1 as child
processes, all data under one directory (``DIR/coordinator``, ``DIR/broker-<i>``,
their output in ``DIR/logs/``), prints each one's address and the bootstrap
list once all are ready, and runs until Ctrl-C or SIGTERM, which stops the
brokers (each with a controlled shutdown) and then the coordinator. A broker
that dies meanwhile (you killed it to watch a failover) is reported; restart the
command to bring it back — its data is still there. Port 0 picks free ports.
New topics default to a replication factor of min(3, N).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from broker.commands.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE

PROG = "broker dev-cluster"
READY = re.compile(r"listening on (\S+):(\d+)")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 40.0


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "dev-cluster",
        help="run a coordinator and several brokers on this machine (development)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument("--brokers", type=int, default=3, help="number of brokers (default 3)")
    parser.add_argument(
        "--data-dir", type=Path, default=Path("data/dev-cluster"), help="where all data goes"
    )
    parser.add_argument(
        "--base-port", type=int, default=9092, help="broker i listens on BASE+i (0: free ports)"
    )
    parser.add_argument(
        "--coordinator-port", type=int, default=2181, help="the coordinator's port (0: free)"
    )
    parser.add_argument("--session-timeout-ms", type=int, default=6000)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--broker-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="an extra `broker serve` flag for every broker, e.g. --broker-arg=--num-partitions=3",
    )
    parser.set_defaults(func=run)
    return parser


class Child:
    """One server process whose output goes to a log file after its ready line."""

    def __init__(self, name: str, argv: list[str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.proc: subprocess.Popen[str] | None = None
        self.address = ""
        self.reported = False

    def start(self) -> str:
        log: TextIO = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115 (the drain thread closes it)
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
        )
        stdout = self.proc.stdout
        if stdout is None:
            raise RuntimeError("no stdout pipe")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            line = stdout.readline()
            if not line:
                log.close()
                raise RuntimeError(f"{self.name} exited before it was ready; see {self.log_path}")
            log.write(line)
            match = READY.search(line)
            if match:
                self.address = f"{match.group(1)}:{match.group(2)}"
                log.flush()
                threading.Thread(target=_drain, args=(stdout, log), daemon=True).start()
                return self.address
        log.close()
        self.stop()
        raise RuntimeError(f"{self.name} was not ready within {START_TIMEOUT:.0f}s")

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signum)

    def wait(self, timeout: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        self.signal(signal.SIGTERM)
        self.wait(STOP_TIMEOUT)


def _drain(stream: TextIO, log: TextIO) -> None:
    with log:
        for line in stream:
            log.write(line)
            log.flush()


def _port(base: int, offset: int) -> int:
    return 0 if base == 0 else base + offset


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.brokers <= 64:
        print(f"{PROG}: --brokers must be 1..64", file=sys.stderr)
        return EXIT_USAGE
    root: Path = args.data_dir
    logs = root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    coordinator = Child(
        "coordinator",
        [
            python, "-m", "coordinator", "serve",
            "--host", args.host,
            "--port", str(args.coordinator_port),
            "--data-dir", str(root / "coordinator"),
        ],
        logs / "coordinator.log",
    )  # fmt: skip
    brokers: list[Child] = []
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        address = coordinator.start()
        print(f"coordinator listening on {address}", flush=True)
        factor = min(3, args.brokers)
        for i in range(args.brokers):
            child = Child(
                f"broker {i}",
                [
                    python, "-m", "broker", "serve",
                    "--id", str(i),
                    "--host", args.host,
                    "--port", str(_port(args.base_port, i)),
                    "--data-dir", str(root / f"broker-{i}"),
                    "--coordinator", address,
                    "--session-timeout-ms", str(args.session_timeout_ms),
                    "--default-replication-factor", str(factor),
                    *args.broker_arg,
                ],
                logs / f"broker-{i}.log",
            )  # fmt: skip
            brokers.append(child)
            print(f"broker {i} listening on {child.start()}", flush=True)
            if stop.is_set():
                return EXIT_OK
        bootstrap = ",".join(b.address for b in brokers)
        print(f"bootstrap: {bootstrap}", flush=True)
        print(f"data and logs under {root}; Ctrl-C stops everything", flush=True)
        while not stop.wait(0.5):
            for child in (coordinator, *brokers):
                code = child.exited()
                if code is not None and not child.reported:
                    child.reported = True
                    print(f"{child.name} exited with code {code}", file=sys.stderr, flush=True)
        return EXIT_OK
    except (OSError, RuntimeError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        print("stopping...", file=sys.stderr, flush=True)
        for child in brokers:
            child.signal(signal.SIGTERM)
        for child in brokers:
            child.wait(STOP_TIMEOUT)
        coordinator.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        print("stopped", file=sys.stderr, flush=True)

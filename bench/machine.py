"""``python -m bench machine``: what this machine can do at best, measured in the same run.

Rivulet's figures mean little on their own on a shared two-core machine; next to
the machine's own limits they do. This module measures:

- ``loopback_mb_s`` — TCP bandwidth over 127.0.0.1 between two processes (one
  sends 1 MiB chunks as fast as it can, the other receives);
- ``loopback_rtt_p50_us`` / ``_p99_us`` and ``loopback_round_trips_per_s`` — a
  64-byte ping-pong between two processes (TCP_NODELAY), one round trip at a time;
- ``disk_write_mb_s`` — sequential 1 MiB writes to a new file without fsync (what
  the page cache takes);
- ``disk_write_fsync_mb_s`` — sequential 1 MiB writes, each followed by fdatasync
  (what the device sustains durably);
- ``fsync_p50_ms`` / ``fsync_p99_ms`` and ``fsyncs_per_s`` — a 4 KiB append
  followed by fdatasync, one after the other (the cost of one durable
  acknowledgement without group commit); the rate is the best of five rounds.

Files go where the other benchmarks put theirs: ``$BENCH_DIR`` or the temporary
directory. Bandwidths are in MB/s (10^6 bytes), the best of several runs.

It also holds :data:`LIMIT_RULES`, which Rivulet figure is compared with which
limit; a benchmark module may add its own with a module-level ``LIMITS`` mapping
(result name or glob -> limit name, or ``(limit name, unit)`` when the result's
unit label needs correcting), and :func:`compare`, which computes the fractions.
"""

from __future__ import annotations

import fnmatch
import multiprocessing
import os
import platform
import socket
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.report import Result, progress, result
from bench.stats import median, percentile

MIB = 1024 * 1024
MB = 1_000_000
PING_BYTES = 64
FSYNC_APPEND_BYTES = 4096

# --------------------------------------------------------------------- the machine


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _memory() -> str:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            kib = int(line.split()[1])
            return f"{kib / 1024 / 1024:.1f} GiB"
    return "unknown"


def _filesystem(directory: Path) -> str:
    """``<fstype> on <device>`` of the mount holding ``directory`` (Linux), else unknown."""
    best = ("", "unknown", "")
    target = str(directory.resolve())
    for line in _read("/proc/mounts").splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        device, mount, fstype = parts[0], parts[1], parts[2]
        inside = target == mount or target.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best[0]):
            best = (mount, fstype, device)
    return f"{best[1]} on {best[2]}" if best[2] else "unknown"


def bench_dir() -> Path:
    """Where benchmarks write their files."""
    return Path(os.environ.get("BENCH_DIR") or tempfile.gettempdir())


def load_average() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def describe() -> dict[str, str]:
    """The facts about this machine that a benchmark figure needs next to it."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    return {
        "cpu": _cpu_model(),
        "cores": f"{usable} usable of {os.cpu_count()}",
        "memory": _memory(),
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "bench_dir": f"{bench_dir()} ({_filesystem(bench_dir())})",
        "load_average": load_average(),
    }


# --------------------------------------------------------------------- loopback


def _sender(port: int, seconds: float) -> None:
    """Child process: send 1 MiB chunks to 127.0.0.1:port for ``seconds``."""
    chunk = os.urandom(MIB)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            sock.sendall(chunk)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(1)  # wait for the receiver to close


def _echo(port: int) -> None:
    """Child process: echo everything received on one connection until it closes."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            data = sock.recv(65536)
            if not data:
                return
            sock.sendall(data)


def _serve_child(target: Any, *args: Any) -> tuple[socket.socket, Any]:
    """Start ``target(port, *args)`` in a spawned process and accept its connection."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(60)
    port = listener.getsockname()[1]
    proc = multiprocessing.get_context("spawn").Process(target=target, args=(port, *args))
    proc.start()
    try:
        conn, _ = listener.accept()
    finally:
        listener.close()
    conn.settimeout(None)
    return conn, proc


def loopback_bandwidth(seconds: float) -> float:
    """MB/s received from another process over 127.0.0.1 (first byte to end)."""
    conn, proc = _serve_child(_sender, seconds)
    buf = memoryview(bytearray(4 * MIB))
    total = 0
    try:
        conn.recv_into(buf)  # the clock starts at the first byte
        start = time.perf_counter()
        while True:
            n = conn.recv_into(buf)
            if n == 0:
                break
            total += n
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
        proc.join(30)
    return total / elapsed / MB


def loopback_rtt(count: int) -> list[float]:
    """Round-trip times (µs) of a 64-byte ping-pong with another process."""
    conn, proc = _serve_child(_echo)
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ping = b"p" * PING_BYTES
    samples: list[float] = []
    try:
        for i in range(count + 20):
            start = time.perf_counter_ns()
            conn.sendall(ping)
            got = 0
            while got < PING_BYTES:
                data = conn.recv(PING_BYTES - got)
                if not data:
                    raise RuntimeError("the echo process went away")
                got += len(data)
            if i >= 20:  # warm-up round trips are not counted
                samples.append((time.perf_counter_ns() - start) / 1000.0)
    finally:
        conn.close()
        proc.join(30)
    return samples


# --------------------------------------------------------------------- disk


def disk_write(directory: Path, total: int, *, sync_each: bool) -> float:
    """MB/s of sequential 1 MiB writes to a new file (fdatasync after each one, or never)."""
    chunk = os.urandom(MIB)
    path = directory / f"rivulet-machine-{os.getpid()}.tmp"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        written = 0
        start = time.perf_counter()
        while written < total:
            written += os.write(fd, chunk)
            if sync_each:
                os.fdatasync(fd)
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
        path.unlink()
    return written / elapsed / MB


def fsync_latency(directory: Path, count: int, rounds: int = 5) -> tuple[list[float], float]:
    """Latencies (ms) of a 4 KiB append + fdatasync, and the most such pairs per second of
    ``rounds`` equal rounds (the best round: a limit is what the disk does at best)."""
    block = os.urandom(FSYNC_APPEND_BYTES)
    path = directory / f"rivulet-fsync-{os.getpid()}.tmp"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    samples: list[float] = []
    per_round = max(1, count // rounds)
    best = 0.0
    try:
        for _ in range(rounds):
            begin = time.perf_counter()
            for _ in range(per_round):
                start = time.perf_counter_ns()
                os.write(fd, block)
                os.fdatasync(fd)
                samples.append((time.perf_counter_ns() - start) / 1e6)
            best = max(best, per_round / (time.perf_counter() - begin))
    finally:
        os.close(fd)
        path.unlink()
    return samples, best


# --------------------------------------------------------------------- the benchmark


def run(quick: bool = False) -> list[Result]:
    """The limits. Bandwidths are the best of several runs: noise from other work only
    ever lowers them, and a limit is what the machine can do at best."""
    runs = 3 if quick else 5
    seconds = 0.3 if quick else 1.0
    directory = bench_dir()
    out: list[Result] = []

    figures = []
    for i in range(runs):
        progress(f"loopback TCP bandwidth ({seconds:.1f} s, run {i + 1}/{runs})")
        figures.append(loopback_bandwidth(seconds))
    out.append(result("loopback_mb_s", max(figures), "MB/s"))

    progress("loopback round trips")
    rtt = loopback_rtt(2000 if quick else 20_000)
    out.append(result("loopback_rtt_p50_us", percentile(rtt, 50), "us", samples=rtt))
    out.append(result("loopback_rtt_p99_us", percentile(rtt, 99), "us"))
    out.append(result("loopback_round_trips_per_s", 1e6 / median(rtt), "round trips/s"))

    total = (64 if quick else 256) * MIB
    figures = []
    for i in range(runs):
        progress(f"disk write {total // MIB} MiB without fsync (run {i + 1}/{runs})")
        figures.append(disk_write(directory, total, sync_each=False))
    out.append(result("disk_write_mb_s", max(figures), "MB/s"))

    total = (16 if quick else 64) * MIB
    figures = []
    for i in range(runs):
        progress(f"disk write {total // MIB} x 1 MiB with fdatasync (run {i + 1}/{runs})")
        figures.append(disk_write(directory, total, sync_each=True))
    out.append(result("disk_write_fsync_mb_s", max(figures), "MB/s"))

    progress("fsync latency")
    lat, rate = fsync_latency(directory, 300 if quick else 3000)
    out.append(result("fsync_p50_ms", percentile(lat, 50), "ms", samples=lat))
    out.append(result("fsync_p99_ms", percentile(lat, 99), "ms"))
    out.append(result("fsyncs_per_s", rate, "fsyncs/s"))
    return out


# --------------------------------------------------------------------- comparisons

_RATE = "rate"
_BANDWIDTH = "bandwidth"
_TIME = "time"

# unit label -> (dimension, factor to the dimension's base unit)
UNITS: dict[str, tuple[str, float]] = {
    "B/s": (_BANDWIDTH, 1.0),
    "KB/s": (_BANDWIDTH, 1e3),
    "MB/s": (_BANDWIDTH, 1e6),
    "MiB/s": (_BANDWIDTH, float(MIB)),
    "GB/s": (_BANDWIDTH, 1e9),
    "GiB/s": (_BANDWIDTH, float(1024 * MIB)),
    "s": (_TIME, 1.0),
    "ms": (_TIME, 1e-3),
    "us": (_TIME, 1e-6),
    "µs": (_TIME, 1e-6),
    "ns": (_TIME, 1e-9),
}
RATE_SUFFIX = "/s"


def dimension(unit: str) -> tuple[str, float] | None:
    """(dimension, factor) of a unit label; any other ``<things>/s`` is a rate."""
    if unit in UNITS:
        return UNITS[unit]
    if unit.endswith(RATE_SUFFIX):
        return (_RATE, 1.0)
    return None


@dataclass(frozen=True, slots=True)
class LimitRule:
    """Results whose full name (``bench.result``) matches ``pattern`` are compared with
    the machine limit ``limit``; ``unit`` overrides the result's unit label."""

    pattern: str
    limit: str
    unit: str | None = None
    why: str = ""


# The log benchmark's "MB/s" are MiB/s (it divides by 1024 * 1024).
LIMIT_RULES: tuple[LimitRule, ...] = (
    LimitRule("log.append *KiB flush=never", "disk_write_mb_s", "MiB/s", "page-cache writes"),
    LimitRule("log.append *KiB flush=every batches", "fsyncs_per_s", None, "one fsync per append"),
    LimitRule("produce.*_mb_per_s", "loopback_mb_s", None, "record values over TCP"),
    LimitRule("consume.mb_per_s", "loopback_mb_s", None, "record values over TCP"),
    LimitRule("coordinator.get_1_ops_per_s", "loopback_round_trips_per_s", None, "one RTT each"),
    LimitRule("coordinator.create_1_ops_per_s", "fsyncs_per_s", None, "one fsync each"),
    LimitRule("coordinator.set_1_ops_per_s", "fsyncs_per_s", None, "one fsync each"),
    LimitRule("coordinator.watch_latency_p50", "fsync_p50_ms", None, "set is fsynced first"),
    LimitRule("coordinator.watch_latency_p99", "fsync_p99_ms", None, "set is fsynced first"),
    LimitRule("latency.acks_1_ack_p50", "loopback_rtt_p50_us", None, "one round trip"),
    LimitRule("latency.acks_all_ack_p50", "fsync_p50_ms", None, "acks=all waits for fsync"),
    LimitRule("latency.acks_all_ack_p99", "fsync_p99_ms", None, "acks=all waits for fsync"),
    LimitRule("latency.acks_*_e2e_p50", "fsync_p50_ms", None, "consumers see fsynced data"),
    LimitRule("latency.acks_*_e2e_p99", "fsync_p99_ms", None, "consumers see fsynced data"),
    LimitRule("streaming.e2e_latency_p50_ms", "fsync_p50_ms", None, "broker fsync on the path"),
    LimitRule("streaming.e2e_latency_p99_ms", "fsync_p99_ms", None, "broker fsync on the path"),
)


def module_rules(bench: str, limits: Mapping[str, Any]) -> list[LimitRule]:
    """Rules from a benchmark module's ``LIMITS`` (names relative to the module)."""
    rules: list[LimitRule] = []
    for name, target in limits.items():
        if isinstance(target, str):
            rules.append(LimitRule(f"{bench}.{name}", target))
        elif isinstance(target, Sequence) and len(target) == 2:
            rules.append(LimitRule(f"{bench}.{name}", str(target[0]), str(target[1])))
        else:
            raise ValueError(f"{bench}.LIMITS[{name!r}]: want a limit name or (name, unit)")
    return rules


@dataclass(frozen=True, slots=True)
class Comparison:
    """One Rivulet figure next to a machine limit.

    For a throughput, ``fraction`` is the share of the limit reached (1.0 = the
    machine's best); for a latency, how many times the floor it takes (1.0 = no
    slower than the bare operation)."""

    name: str
    value: float
    unit: str
    limit: str
    limit_value: float
    limit_unit: str
    kind: str  # "throughput" or "latency"
    fraction: float
    why: str

    def describe(self) -> str:
        if self.kind == "throughput":
            return f"{self.fraction:.0%} of {self.limit}"
        return f"{self.fraction:.1f}x {self.limit}"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "limit": self.limit,
            "limit_value": self.limit_value,
            "limit_unit": self.limit_unit,
            "kind": self.kind,
            "fraction": self.fraction,
            "why": self.why,
        }


def compare(
    results: Iterable[Result], limits: Iterable[Result], rules: Iterable[LimitRule]
) -> list[Comparison]:
    """Each result matched by a rule (the last matching rule wins) against its limit;
    results with a unit that does not fit the limit's are skipped."""
    by_name = {r["name"]: r for r in limits}
    ordered = list(rules)
    out: list[Comparison] = []
    for r in results:
        rule = next(
            (x for x in reversed(ordered) if fnmatch.fnmatchcase(r["name"], x.pattern)), None
        )
        if rule is None or rule.limit not in by_name:
            continue
        limit = by_name[rule.limit]
        mine = dimension(rule.unit or r["unit"])
        theirs = dimension(limit["unit"])
        if mine is None or theirs is None or mine[0] != theirs[0]:
            continue
        base_limit = limit["value"] * theirs[1]
        if base_limit <= 0 or r["value"] != r["value"]:
            continue
        out.append(
            Comparison(
                name=r["name"],
                value=r["value"],
                unit=r["unit"],
                limit=limit["name"],
                limit_value=limit["value"],
                limit_unit=limit["unit"],
                kind="latency" if mine[0] == _TIME else "throughput",
                fraction=r["value"] * mine[1] / base_limit,
                why=rule.why,
            )
        )
    return out


if __name__ == "__main__":
    from bench.report import print_table

    print(describe())
    print_table("machine", run(quick="--quick" in sys.argv))

"""``python -m bench redis``: Redis Streams on the produce, consume and latency workloads.

Runs only where ``redis-server`` (on PATH, or ``$REDIS_SERVER``) and the
``redis`` Python package are installed; otherwise it reports itself
unavailable and the suite skips it. The server runs in its own process with an
append-only file (``appendonly yes``), like a broker's log, and the workloads
mirror Rivulet's benchmarks from one Python process:

- ``xadd_pipelined_records_per_s``: XADD of 100-byte values, pipelined 1,000 per
  round trip, ``appendfsync everysec`` (the counterpart of produce with acks=1:
  written, fsynced later);
- ``xadd_pipelined_fsync_records_per_s``: the same with ``appendfsync always``
  (fsynced before the reply, group-committed per event-loop turn: acks=all);
- ``xreadgroup_records_per_s``: XREADGROUP ... COUNT 10000 NOACK from the start
  of that stream (the consumer benchmark reads without committing, so NOACK);
- ``<fsync>_ack_p50_ms`` / ``_p99`` and ``<fsync>_e2e_p50_ms`` / ``_p99`` at a
  steady 5,000 records/s, for ``everysec`` and ``always``: the producer writes
  XADD commands to the socket at their scheduled times without waiting
  (pipelined, as Rivulet's producer keeps requests in flight) and a second
  process reads with XREAD BLOCK.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import socket
import struct
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.peers import (
    PeerRule,
    Unavailable,
    find_executable,
    free_port,
    require_module,
    start_process,
    stop_process,
    wait_for_port,
)
from bench.report import Result, progress, result
from bench.stats import median, percentile

VALUE_SIZE = 100
RATE = 5_000
PIPELINE = 1_000
_STAMP = struct.Struct(">q")

PEERS: list[PeerRule] = [
    PeerRule(
        "produce.acks_1_no_key_records_per_s",
        "redis.xadd_pipelined_records_per_s",
        "append 100 B records: acks=1 vs XADD, appendfsync everysec",
    ),
    PeerRule(
        "produce.acks_all_no_key_records_per_s",
        "redis.xadd_pipelined_fsync_records_per_s",
        "append 100 B records: acks=all vs XADD, appendfsync always",
    ),
    PeerRule(
        "consume.records_per_s",
        "redis.xreadgroup_records_per_s",
        "read 100 B records: consumer vs XREADGROUP NOACK",
    ),
    *(
        PeerRule(
            f"latency.acks_{acks}_{kind}_{q}",
            f"redis.{fsync}_{kind}_{q}_ms",
            f"{'send to ack' if kind == 'ack' else 'end to end'} {q} at 5,000/s: "
            f"acks={acks} vs appendfsync {fsync}",
            higher_is_better=False,
        )
        for acks, fsync in (("1", "everysec"), ("all", "always"))
        for kind in ("ack", "e2e")
        for q in ("p50", "p99")
    ),
]


def redis_server() -> str:
    """The redis-server binary, or Unavailable."""
    found = os.environ.get("REDIS_SERVER") or find_executable(
        ["redis-server"], ["/usr/local/bin", "/usr/bin", "/opt/redis/bin"]
    )
    if not found:
        raise Unavailable("redis-server not found on PATH (or $REDIS_SERVER)")
    require_module("redis", "pip install redis, or rivulet[bench]")
    return found


def check() -> None:
    """Raise Unavailable unless Redis can be measured here."""
    redis_server()


def _client(port: int) -> Any:
    redis = importlib.import_module("redis")
    return redis.Redis(host="127.0.0.1", port=port)


# ------------------------------------------------------------------ throughput


def xadd_pipelined(port: int, stream: str, n: int) -> float:
    """Records per second appended with XADD, ``PIPELINE`` commands per round trip."""
    r = _client(port)
    value = b"v" * VALUE_SIZE
    fields = {b"v": value}
    start = time.perf_counter()
    for base in range(0, n, PIPELINE):
        pipe = r.pipeline(transaction=False)
        for _ in range(min(PIPELINE, n - base)):
            pipe.xadd(stream, fields)
        pipe.execute()
    elapsed = time.perf_counter() - start
    r.close()
    return n / elapsed


def xreadgroup(port: int, stream: str, n: int, group: str) -> float:
    """Records per second read with XREADGROUP (COUNT 10000, NOACK) from the start."""
    r = _client(port)
    r.xgroup_create(stream, group, id="0")
    got = 0
    start = time.perf_counter()
    while got < n:
        answer = r.xreadgroup(group, "c", {stream: ">"}, count=10_000, noack=True)
        if not answer:
            raise RuntimeError(f"XREADGROUP stalled after {got} of {n} records")
        for _, entries in answer:
            got += len(entries)
    elapsed = time.perf_counter() - start
    r.close()
    return n / elapsed


# ------------------------------------------------------------------ latency


def _reader_child(port: int, stream: str, n: int, conn: Connection) -> None:
    """In another process: XREAD BLOCK ``n`` stamped entries; send back e2e latencies (ms)."""
    r = _client(port)
    last = b"0-0"
    latencies: list[float] = []
    conn.send("ready")
    deadline = time.monotonic() + 60 + n / RATE
    while len(latencies) < n and time.monotonic() < deadline:
        answer = r.xread({stream: last}, count=10_000, block=1000)
        now = time.perf_counter_ns()
        for _, entries in answer or []:
            for entry_id, fields in entries:
                latencies.append((now - _STAMP.unpack_from(fields[b"v"])[0]) / 1e6)
                last = entry_id
    conn.send(latencies)
    conn.close()


def _xadd_command(stream: bytes, value: bytes) -> bytes:
    parts = [b"XADD", stream, b"*", b"v", value]
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


def paced_latency(port: int, stream: str, seconds: float) -> tuple[list[float], list[float]]:
    """Ack and end-to-end latencies (ms) of XADDs sent at RATE per second."""
    n = int(RATE * seconds)
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    reader = ctx.Process(target=_reader_child, args=(port, stream, n, child))
    reader.start()
    if not parent.poll(60) or parent.recv() != "ready":
        raise RuntimeError("the XREAD process did not start")
    time.sleep(0.5)  # let its first XREAD block at the server

    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sent_at: list[int] = []
    ack_ms: list[float] = []
    errors: list[str] = []

    def read_replies() -> None:
        replies = sock.makefile("rb")
        for i in range(n):
            line = replies.readline()
            if line.startswith(b"$"):
                replies.readline()
            elif not line or line.startswith(b"-"):
                errors.append(line.decode(errors="replace").strip() or "connection closed")
                return
            ack_ms.append((time.perf_counter_ns() - sent_at[i]) / 1e6)

    acks = threading.Thread(target=read_replies, daemon=True)
    acks.start()
    key = stream.encode()
    pad = b"p" * (VALUE_SIZE - _STAMP.size)
    begin = time.perf_counter()
    for i in range(n):
        delay = begin + i / RATE - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        stamp = time.perf_counter_ns()
        sent_at.append(stamp)
        sock.sendall(_xadd_command(key, _STAMP.pack(stamp) + pad))
    acks.join(60)
    e2e: list[float] = parent.recv() if parent.poll(120) else []
    reader.join(30)
    sock.close()
    if errors:
        raise RuntimeError(f"XADD failed: {errors[0]}")
    if len(e2e) < n:
        raise RuntimeError(f"only {len(e2e)} of {n} entries arrived")
    return ack_ms, e2e


# ------------------------------------------------------------------ the benchmark


def measure(port: int, quick: bool) -> list[Result]:
    n = 100_000 if quick else 1_000_000
    runs = 1 if quick else 3
    seconds = 2.0 if quick else 10.0
    admin = _client(port)
    out: list[Result] = []
    for fsync, name in (("everysec", "xadd_pipelined"), ("always", "xadd_pipelined_fsync")):
        admin.config_set("appendfsync", fsync)
        figures = []
        for i in range(runs):
            progress(f"XADD {n:,} x {VALUE_SIZE} B pipelined, appendfsync {fsync} ({i + 1}/{runs})")
            figures.append(xadd_pipelined(port, f"s-{fsync}-{i}", n))
        out.append(result(f"{name}_records_per_s", median(figures), "records/s"))
    figures = []
    for i in range(runs):
        progress(f"XREADGROUP {n:,} records ({i + 1}/{runs})")
        figures.append(xreadgroup(port, f"s-always-{i}", n, f"g{i}"))
    out.append(result("xreadgroup_records_per_s", median(figures), "records/s"))
    for fsync in ("everysec", "always"):
        admin.config_set("appendfsync", fsync)
        progress(f"{RATE:,} records/s for {seconds:.0f}s, appendfsync {fsync}")
        ack_ms, e2e = paced_latency(port, f"lat-{fsync}", seconds)
        out.append(result(f"{fsync}_ack_p50_ms", percentile(ack_ms, 50), "ms", samples=ack_ms))
        out.append(result(f"{fsync}_ack_p99_ms", percentile(ack_ms, 99), "ms"))
        out.append(result(f"{fsync}_e2e_p50_ms", percentile(e2e, 50), "ms", samples=e2e))
        out.append(result(f"{fsync}_e2e_p99_ms", percentile(e2e, 99), "ms"))
    admin.close()
    return out


def run(quick: bool = False) -> list[Result]:
    binary = redis_server()
    with tempfile.TemporaryDirectory(prefix="rivulet-bench-redis-") as tmp:
        port = free_port()
        log = Path(tmp) / "redis.log"
        argv = [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            tmp,
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--daemonize",
            "no",
        ]
        proc = start_process(argv, log)
        try:
            wait_for_port(port, proc, 30.0, log)
            return measure(port, quick)
        finally:
            stop_process(proc)


if __name__ == "__main__":
    from bench.report import print_table

    print_table("redis", run(quick="--quick" in sys.argv))

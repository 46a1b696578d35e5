"""Partition log benchmark: append, read and recovery throughput.

Run standalone with ``python -m bench.log [--quick]``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from broker.log import FileCache, Log, LogConfig
from client.records import encode_batch_raw

MB = 1024 * 1024


def _batch(size: int) -> bytes:
    value = os.urandom(max(1, size - 61 - 16))
    return encode_batch_raw([[0, None, value, []]], base_timestamp=0, max_timestamp=0)


def _raw_write(path: str, batch: bytes, count: int, sync: bool) -> float:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
    pos = 0
    t = time.perf_counter()
    for _ in range(count):
        os.pwrite(fd, batch, pos)
        pos += len(batch)
        if sync:
            os.fdatasync(fd)
    dt = time.perf_counter() - t
    os.close(fd)
    os.unlink(path)
    return dt


def _append(d: str, batch: bytes, count: int, flush: str) -> float:
    cfg = LogConfig(flush=flush, max_batch_bytes=len(batch) + 1, retention_ms=-1)  # type: ignore[arg-type]
    lg = Log.open(d, "bench", 0, cfg, FileCache(16))
    t = time.perf_counter()
    for i in range(count):
        lg.append(batch, 0, i)
    dt = time.perf_counter() - t
    lg.abandon()
    shutil.rmtree(os.path.join(d, "bench-0"))
    return dt


def _row(results: list[dict[str, object]], name: str, value: float, unit: str) -> None:
    results.append({"name": name, "value": round(value, 3), "unit": unit})
    print(f"  {name:<44} {value:>14,.1f} {unit}", flush=True)


_WRITER = """
import sys
from broker.log import FileCache, Log, LogConfig
from client.records import encode_batch_raw
import os
d, total = sys.argv[1], int(sys.argv[2])
b = encode_batch_raw([[0, None, os.urandom(16 * 1024 - 80), []]], base_timestamp=0, max_timestamp=0)
lg = Log.open(d, "rec", 0, LogConfig(flush="never"), FileCache(16))
n = 0
while n < total:
    lg.append(b, 0, 0)
    n += len(b)
# The unclean case skips flush(): no recovery point, so reopening scans everything.
if sys.argv[3] == "clean":
    lg.flush()
print("done", flush=True)
if sys.argv[3] == "clean":
    lg.close()
    print("closed", flush=True)
sys.stdin.read()
"""


def _recovery(d: str, total: int, clean: bool) -> float:
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, d, str(total), "clean" if clean else "kill"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(Path(__file__).resolve().parents[1]),
    )
    assert proc.stdout is not None
    want = "closed" if clean else "done"
    for line in proc.stdout:
        if line.strip() == want:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    t = time.perf_counter()
    lg = Log.open(d, "rec", 0, LogConfig(flush="never"), FileCache(16))
    dt = time.perf_counter() - t
    lg.abandon()
    return dt


def run(quick: bool) -> list[dict[str, object]]:
    results: list[dict[str, object]] = []
    base = tempfile.mkdtemp(prefix="bench-log-", dir=os.environ.get("BENCH_DIR"))
    try:
        print("log benchmark" + (" (quick)" if quick else ""), flush=True)
        for size, count_never, count_every in (
            (1024, 20_000 if quick else 300_000, 200 if quick else 2000),
            (64 * 1024, 300 if quick else 8000, 50 if quick else 500),
        ):
            b = _batch(size)
            label = f"{size // 1024}KiB"
            for flush, count in (("never", count_never), ("every", count_every)):
                raw = _raw_write(os.path.join(base, "raw"), b, count, flush == "every")
                dt = _append(base, b, count, flush)
                mbps = count * len(b) / dt / MB
                _row(results, f"append {label} flush={flush}", mbps, "MB/s")
                _row(results, f"append {label} flush={flush} batches", count / dt, "batches/s")
                _row(
                    results,
                    f"raw write {label} sync={flush == 'every'}",
                    count * len(b) / raw / MB,
                    "MB/s",
                )
                _row(results, f"append/raw ratio {label} flush={flush}", raw / dt * 100, "%")
        # Sequential read of a log written with 16 KiB batches.
        b = _batch(16 * 1024)
        total = (32 if quick else 512) * MB
        lg = Log.open(base, "read", 0, LogConfig(flush="never"), FileCache(16))
        while lg.size_bytes() < total:
            lg.append(b, 0, 0)
        t = time.perf_counter()
        off = 0
        n = 0
        while off < lg.log_end_offset:
            buf = lg.read(off, MB)
            n += len(buf)
            # One record per batch: the next offset advances by the batch count.
            off += len(buf) // len(b) if buf else 1
        dt = time.perf_counter() - t
        lg.abandon()
        _row(results, "sequential read 1MiB fetches", n / dt / MB, "MB/s")
        rtotal = (64 if quick else 1024) * MB
        for clean in (True, False):
            d = os.path.join(base, "clean" if clean else "unclean")
            os.makedirs(d)
            dt = _recovery(d, rtotal, clean)
            kind = "clean" if clean else "unclean"
            _row(results, f"open after {kind} stop ({rtotal // MB} MiB)", dt * 1000, "ms")
            _row(results, f"open after {kind} stop scan rate", rtotal / dt / MB, "MB/s")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return results


if __name__ == "__main__":
    run("--quick" in sys.argv)

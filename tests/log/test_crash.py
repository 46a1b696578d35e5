"""Kill -9 a writer at random moments; every acknowledged batch must survive intact."""

from __future__ import annotations

import os
import random
import resource
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from broker.log import FileCache, Log, LogConfig
from client.records import decode_batches

from .crash_child import value_for

ROOT = Path(__file__).resolve().parents[2]
CFG = LogConfig(segment_bytes=64 * 1024, index_interval_bytes=1024, flush="every")


def run_and_kill(data_dir: Path, acks_before_kill: int) -> int:
    """Start the child, wait for ``acks_before_kill`` acks, SIGKILL it; return last ack."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.log.crash_child", str(data_dir)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    last = -1
    try:
        first = proc.stdout.readline()
        assert first.startswith("start"), first
        for _ in range(acks_before_kill):
            line = proc.stdout.readline()
            if not line:
                break
            last = int(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # Acks printed before the kill but not yet read are acknowledged too.
    for line in proc.stdout.read().splitlines():
        last = int(line)
    proc.stdout.close()
    return last


def check_log(data_dir: Path, last_acked: int) -> int:
    lg = Log.open(str(data_dir), "crash", 0, CFG, FileCache(16))
    try:
        assert lg.log_end_offset >= last_acked + 1
        off = 0
        while off < lg.log_end_offset:
            buf = lg.read(off, 1 << 20)
            for _, recs in decode_batches(buf):
                for r in recs:
                    assert r.offset == off
                    assert r.value == value_for(off)
                    off += 1
        return lg.log_end_offset
    finally:
        lg.abandon()


@pytest.mark.slow
def test_sigkill_during_appends(tmp_path: Path) -> None:
    rnd = random.Random(1234)
    acked = -1
    for _ in range(5):
        last = run_and_kill(tmp_path, rnd.randint(1, 150))
        acked = max(acked, last)
        leo = check_log(tmp_path, acked)
        acked = max(acked, leo - 1)


def _tail_start(seg_path: str, data_dir: Path, last_acked: int) -> int:
    lg = Log.open(str(data_dir), "crash", 0, CFG, FileCache(4))
    try:
        seg = lg.segments[-1]
        assert seg.log_path == seg_path
        found = seg.find(last_acked)
        return seg.size if found is None else found[0] + found[1].size
    finally:
        lg.abandon()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["garbage", "flip", "cut"])
def test_corrupt_tail_is_repaired(tmp_path: Path, mode: str) -> None:
    rnd = random.Random(mode)
    for _ in range(3):
        last = run_and_kill(tmp_path, rnd.randint(5, 60))
        leo = check_log(tmp_path, last)
        seg_path = max(str(p) for p in (tmp_path / "crash-0").glob("*.log"))
        # Everything up to the log end is acknowledged-equivalent now; damage only after it.
        # In "cut" mode the last batch plays the unacknowledged one and is cut into.
        end = _tail_start(seg_path, tmp_path, leo - 1 if mode != "cut" else leo - 2)
        size = os.path.getsize(seg_path)
        with open(seg_path, "r+b") as f:
            if mode == "garbage":
                f.seek(size)
                f.write(os.urandom(rnd.randint(1, 5000)))
            elif mode == "flip":
                f.seek(size)
                f.write(value_for(1) * 3)
                pos = rnd.randint(size, size + 10)
                f.seek(pos)
                f.write(b"\x00\xff")
            else:
                f.truncate(rnd.randint(end, size - 1))
        assert end < size or mode != "cut"
        assert check_log(tmp_path, leo - 1 if mode != "cut" else leo - 2) >= leo - 1


CHILD_10K = textwrap.dedent(
    """
    import resource, sys
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    from broker.log import FileCache, Log, LogConfig
    from client.records import Record, encode_batch, decode_batches
    cache = FileCache(300)
    cfg = LogConfig(flush="never")
    logs = [Log.open(sys.argv[1], "many", p, cfg, cache) for p in range(10_000)]
    for p, lg in enumerate(logs):
        lg.append(encode_batch([Record(p, None, b"%d" % p)]), 0, 0)
    for p, lg in enumerate(logs):
        (_, recs), = decode_batches(lg.read(0, 100))
        assert recs[0].value == b"%d" % p, p
    assert cache.open_count() <= 300
    for lg in logs[:100]:
        lg.close()
    print("ok", cache.open_count())
    """
)


@pytest.mark.slow
def test_ten_thousand_partitions_under_low_fd_limit(tmp_path: Path) -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 512:
        pytest.skip("hard fd limit below 512")
    out = subprocess.run(
        [sys.executable, "-c", CHILD_10K, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok")

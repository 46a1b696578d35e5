"""Recovery across processes: a checkpoint written by another process, and
exactly-once output while the query process is killed with SIGKILL at random
moments and restarted (file sink, rate source)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from client.streaming import read_file_sink
from tests.streaming.query_child import rate_query

ROOT = Path(__file__).resolve().parents[2]
TOTAL = 3000


def child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.streaming.query_child", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def wait_ready(proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"child exited with {proc.wait()} before it was ready")
        if line.strip() == "ready":
            return
    raise AssertionError("child not ready in time")


def run_to_completion(*args: str) -> None:
    proc = child(*args)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "done" in out


def canonical(df: pl.DataFrame) -> pl.DataFrame:
    return df.unnest("window").sort(pl.all())


@pytest.fixture(scope="module")
def reference() -> pl.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        rate_query(f"{tmp}/ckpt", f"{tmp}/out", TOTAL).start().await_termination(120)
        return canonical(read_file_sink(f"{tmp}/out"))


def test_continue_from_checkpoint_of_another_process(
    tmp_path: Path, reference: pl.DataFrame
) -> None:
    ckpt, out = str(tmp_path / "ckpt"), str(tmp_path / "out")
    run_to_completion("rate", ckpt, out, "1200")
    partial = read_file_sink(out).height
    assert 0 < partial < reference.height
    query = rate_query(ckpt, out, TOTAL).start()
    assert query.await_termination(120)
    assert query.recent_progress[0].batch_id > 0  # continued, not restarted
    assert canonical(read_file_sink(out)).equals(reference)


@pytest.mark.slow
@settings(
    max_examples=3,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(delays=st.lists(st.floats(0.0, 0.8), min_size=1, max_size=3))
def test_exactly_once_under_sigkill(reference: pl.DataFrame, delays: list[float]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, out = f"{tmp}/ckpt", f"{tmp}/out"
        for delay in delays:
            proc = child("rate", ckpt, out, str(TOTAL))
            wait_ready(proc)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
        run_to_completion("rate", ckpt, out, str(TOTAL))
        assert canonical(read_file_sink(out)).equals(reference)

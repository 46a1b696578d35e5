"""The benchmark suite's machinery: results, statistics, comparisons, the report and the runner.

Speed itself is measured by ``python -m bench``, never asserted here.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import __main__ as runner
from bench import markdown, plots
from bench.machine import LIMIT_RULES, LimitRule, compare, dimension, module_rules
from bench.peers import PeerRule, Unavailable, pair
from bench.report import coerce, plain, result
from bench.stats import CDF_QUANTILES, cdf, percentile, summary
from tests.bench import fake_bench

ROOT = Path(__file__).resolve().parents[2]


def test_result_samples_are_optional_and_not_in_the_plain_json() -> None:
    r = result("x", 1, "ms", samples=[3, 1, 2])
    assert r == {"name": "x", "value": 1.0, "unit": "ms", "samples": [3.0, 1.0, 2.0]}
    assert "samples" not in result("y", 2, "ms")
    assert plain([r, result("z", float("nan"), "ms")]) == [
        {"name": "x", "value": 1.0, "unit": "ms"},
        {"name": "z", "value": None, "unit": "ms"},
    ]
    # Older modules return plain dicts with extra keys; they are accepted as they are.
    assert coerce({"name": "a b", "value": 3, "unit": "MB/s"})["value"] == 3.0


def test_cdf_and_summary() -> None:
    samples = [float(i) for i in range(1, 101)]
    points = cdf(samples)
    assert [q for q, _ in points] == list(CDF_QUANTILES)
    assert points[0] == (0.0, 1.0) and points[-1] == (100.0, 100.0)
    assert [v for _, v in points] == sorted(v for _, v in points)
    assert summary(samples)["p50"] == percentile(samples, 50) == 50.5
    assert cdf([]) == [] and summary([]) == {"count": 0.0}


def test_units() -> None:
    assert dimension("MB/s") == ("bandwidth", 1e6)
    assert dimension("us") == ("time", 1e-6)
    assert dimension("records/s") == ("rate", 1.0)
    assert dimension("x") is None


def test_compare_with_limits() -> None:
    limits = [
        result("disk_write_mb_s", 1000.0, "MB/s"),
        result("fsync_p50_ms", 0.5, "ms"),
        result("loopback_rtt_p50_us", 20.0, "us"),
    ]
    rules = [
        LimitRule("log.append*", "disk_write_mb_s", "MiB/s"),
        LimitRule("x.*_p50", "fsync_p50_ms"),
        LimitRule("x.ack_p50", "loopback_rtt_p50_us"),  # later rules win
        LimitRule("x.bad", "fsync_p50_ms"),  # a bandwidth against a time: skipped
    ]
    results = [
        result("log.append 64KiB", 500.0, "MB/s"),
        result("x.e2e_p50", 2.0, "ms"),
        result("x.ack_p50", 0.1, "ms"),
        result("x.bad", 3.0, "MB/s"),
        result("x.unmatched", 1.0, "ms"),
    ]
    found = {c.name: c for c in compare(results, limits, rules)}
    assert set(found) == {"log.append 64KiB", "x.e2e_p50", "x.ack_p50"}
    assert found["log.append 64KiB"].kind == "throughput"
    assert math.isclose(found["log.append 64KiB"].fraction, 500 * 1.048576 / 1000)
    assert found["x.e2e_p50"].kind == "latency" and found["x.e2e_p50"].fraction == 4.0
    assert math.isclose(found["x.ack_p50"].fraction, 5.0)
    assert found["x.ack_p50"].describe() == "5.0x loopback_rtt_p50_us"


def test_module_limits() -> None:
    rules = module_rules("log", {"a_mb_s": "disk_write_mb_s", "b_*": ("fsyncs_per_s", "ops/s")})
    assert rules == [
        LimitRule("log.a_mb_s", "disk_write_mb_s"),
        LimitRule("log.b_*", "fsyncs_per_s", "ops/s"),
    ]
    with pytest.raises(ValueError):
        module_rules("log", {"a": 3})


def test_every_limit_rule_is_documented() -> None:
    text = (ROOT / "docs" / "benchmarks.md").read_text()
    for rule in LIMIT_RULES:
        assert f"`{rule.pattern}` | `{rule.limit}`" in text, rule.pattern


def test_peer_pairs() -> None:
    results = [
        result("produce.r", 300.0, "records/s"),
        result("redis.r", 100.0, "records/s"),
        result("latency.p50", 2.0, "ms"),
        result("redis.p50", 1.0, "ms"),
        result("latency.nan", float("nan"), "ms"),
        result("redis.nan", 1.0, "ms"),
    ]
    rules = [
        PeerRule("produce.r", "redis.r", "throughput"),
        PeerRule("latency.p50", "redis.p50", "latency", higher_is_better=False),
        PeerRule("latency.nan", "redis.nan", "not measured", higher_is_better=False),
        PeerRule("missing", "redis.r", "one side missing"),
    ]
    got = {p.workload: p.advantage for p in pair(results, rules)}
    assert got == {"throughput": 3.0, "latency": 0.5}


def _doc() -> dict[str, Any]:
    return {
        "schema": 1,
        "started": "2025-01-31T14:05:09+00:00",
        "quick": True,
        "command": "python -m bench all --quick",
        "commit": "abc1234",
        "dirty": True,
        "seconds": 75.0,
        "machine": {"cpu": "test cpu", "cores": "2 usable of 2", "load_average": "1 1 1"},
        "benchmarks": [
            {
                "name": "machine",
                "status": "ok",
                "results": [
                    {"name": "loopback_mb_s", "value": 1000.0, "unit": "MB/s"},
                    {
                        "name": "fsync_p50_ms",
                        "value": 0.5,
                        "unit": "ms",
                        "cdf": [[0.0, 0.1], [50.0, 0.5], [100.0, 2.0]],
                    },
                ],
            },
            {
                "name": "produce",
                "status": "ok",
                "seconds": 12.5,
                "about": "Producer throughput.",
                "results": [
                    {"name": "acks_1_no_key_records_per_s", "value": 300000.0, "unit": "records/s"},
                    {"name": "acks_1_no_key_mb_per_s", "value": 30.0, "unit": "MB/s"},
                ],
                "limits": {},
                "peers": [],
            },
            {"name": "groups", "status": "missing", "reason": "bench/groups.py is not here"},
            {"name": "cluster", "status": "failed", "reason": "RuntimeError: boom", "results": []},
            {
                "name": "redis",
                "status": "ok",
                "results": [
                    {"name": "xadd_pipelined_records_per_s", "value": 100000.0, "unit": "records/s"}
                ],
                "peers": [
                    {
                        "rivulet": "produce.acks_1_no_key_records_per_s",
                        "peer": "redis.xadd_pipelined_records_per_s",
                        "workload": "append",
                        "higher_is_better": True,
                    }
                ],
            },
            {"name": "zookeeper", "status": "skipped", "reason": "zkServer.sh not found"},
        ],
    }


def test_report_renders_every_section() -> None:
    doc = markdown.analyse(_doc())
    assert [c["name"] for c in doc["comparisons"]] == ["produce.acks_1_no_key_mb_per_s"]
    assert doc["comparisons"][0]["fraction"] == pytest.approx(0.03)
    assert doc["peer_comparisons"][0]["advantage"] == pytest.approx(3.0)
    text = markdown.render(doc, plots={"peers": "peers.png"}, plot_dir="p", plot_note=None)
    for expected in (
        "(quick)",
        "`python -m bench all --quick` at abc1234 with uncommitted changes",
        "| loopback_mb_s | 1,000 | MB/s |",
        "| produce.acks_1_no_key_mb_per_s | 30.00 MB/s |",
        "| groups | missing: bench/groups.py is not here |",
        "| cluster | failed: RuntimeError: boom |",
        "> Producer throughput.",
        "| append | 300,000 | 100,000 | records/s | 3.00x better |",
        "- ZooKeeper: not measured — zkServer.sh not found.",
        "![Rivulet vs Redis and ZooKeeper](p/peers.png)",
    ):
        assert expected in text, expected
    note = markdown.render(doc, plots={}, plot_dir="p", plot_note="matplotlib is not installed")
    assert "Plots skipped: matplotlib is not installed." in note


def test_plots_are_drawn_or_the_report_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = markdown.analyse(_doc())
    if plots.unavailable_reason() is None:
        drawn = plots.draw_all(doc, tmp_path)
        assert {"limits", "peers", "throughput-produce", "cdf-machine"} <= set(drawn)
        assert all((tmp_path / name).stat().st_size > 1000 for name in drawn.values())
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert "matplotlib is not installed" in (plots.unavailable_reason() or "")
    assert plots.draw_all(doc, tmp_path / "none") == {}


@pytest.mark.parametrize(
    ("outcome", "code", "status"),
    [("ok", 0, "ok"), ("unavailable", 3, "skipped"), ("fail", 1, "failed")],
)
def test_child_mode_reports_every_outcome(
    outcome: str, code: int, status: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(runner.BENCHMARKS, "fake", "tests.bench.fake_bench")
    monkeypatch.setitem(fake_bench.MODE, "outcome", outcome)
    out = tmp_path / "emit.json"
    assert runner._emit("fake", True, out) == code
    payload = json.loads(out.read_text())
    assert payload["status"] == status
    assert payload["about"] == "Benchmark modules for the framework tests: one per outcome."
    assert payload["limits"] == {"speed_mb_s": "loopback_mb_s"}
    if outcome == "ok":
        assert payload["results"][1]["samples"] == [1.0, 2.0, 3.0]
    if outcome == "fail":
        assert payload["reason"] == "RuntimeError: boom"


def test_suite_order_and_selection() -> None:
    assert runner.suite_names(["all"], False, False) == list(runner.BENCHMARKS)
    assert runner.suite_names(["produce", "log"], False, True) == ["machine", "log", "produce"]
    assert runner.suite_names(["all"], True, True) == [
        n for n in runner.BENCHMARKS if n not in ("machine", "redis", "zookeeper")
    ]


def test_peers_say_why_they_are_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import compare_redis, compare_zookeeper

    monkeypatch.setattr(compare_redis, "find_executable", lambda *a: None)
    monkeypatch.setattr(compare_zookeeper, "find_executable", lambda *a: None)
    monkeypatch.delenv("REDIS_SERVER", raising=False)
    with pytest.raises(Unavailable, match="redis-server not found"):
        compare_redis.check()
    with pytest.raises(Unavailable, match=r"zkServer\.sh not found"):
        compare_zookeeper.check()


@pytest.mark.slow
def test_suite_end_to_end(tmp_path: Path) -> None:
    """The machine limits through the real runner: a child process, the dated JSON, the
    Markdown report, ``--json`` and ``report`` re-rendering."""
    flat = tmp_path / "flat.json"
    argv = [sys.executable, "-m", "bench", "machine", "--report", "--quick", "--no-peers"]
    argv += ["--out", str(tmp_path), "--json", str(flat)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "[1/1] machine" in done.stderr
    (doc_path,) = tmp_path.glob("*-quick.json")
    doc = json.loads(doc_path.read_text())
    (machine,) = doc["benchmarks"]
    assert machine["status"] == "ok"
    assert {r["name"] for r in machine["results"]} >= {"loopback_mb_s", "fsync_p50_ms"}
    assert any(r.get("cdf") for r in machine["results"])
    assert all(r["name"].startswith("machine.") for r in json.loads(flat.read_text()))
    report = doc_path.with_suffix(".md")
    assert "## Machine limits" in report.read_text()
    report.unlink()
    assert runner.main(["report", str(doc_path)]) == 0
    assert report.exists()

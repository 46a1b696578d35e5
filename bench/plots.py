"""PNG plots for the benchmark report (matplotlib, an optional extra: ``rivulet[bench]``).

Every function takes the run document that ``python -m bench all`` writes
(see :mod:`bench.markdown`) and a directory, draws one kind of figure and
returns ``{key: file name}`` for the figures it wrote. Without matplotlib,
:func:`draw_all` returns nothing and :func:`unavailable_reason` says why.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.machine import dimension
from bench.report import format_value

_TIME = "time"


def unavailable_reason() -> str | None:
    """Why no plots can be drawn here, or None when they can."""
    if importlib.util.find_spec("matplotlib") is None:
        return "matplotlib is not installed (`pip install -e '.[bench]'` adds it)"
    return None


def _pyplot() -> Any:
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name).strip("-")


def _save(plt: Any, fig: Any, directory: Path, name: str) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(directory / name, dpi=110)
    plt.close(fig)
    return name


def _barh(ax: Any, labels: Sequence[str], values: Sequence[float], unit: str) -> None:
    positions = list(range(len(labels)))
    ax.barh(positions, values, color="#3572a5")
    ax.set_yticks(positions, labels=labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 100:
        ax.set_xscale("log")
    for pos, value in zip(positions, values, strict=True):
        ax.annotate(
            f" {format_value(value)}",
            (value, pos),
            va="center",
            fontsize=7,
        )
    ax.grid(axis="x", alpha=0.3)


def throughput(doc: Mapping[str, Any], directory: Path) -> dict[str, str]:
    """Per benchmark: horizontal bars of its throughput figures, one panel per unit."""
    plt = _pyplot()
    out: dict[str, str] = {}
    for bench in doc["benchmarks"]:
        groups: dict[str, list[tuple[str, float]]] = {}
        for r in bench.get("results", []):
            dim = dimension(r["unit"])
            value = r["value"]
            if dim is None or dim[0] == _TIME or value is None or not value > 0:
                continue
            groups.setdefault(r["unit"], []).append((r["name"], float(value)))
        if not groups:
            continue
        heights = [max(1.2, 0.32 * len(rows) + 0.8) for rows in groups.values()]
        fig, axes = plt.subplots(
            len(groups), 1, figsize=(8, sum(heights)), squeeze=False, height_ratios=heights
        )
        for ax, (unit, rows) in zip(axes[:, 0], groups.items(), strict=True):
            _barh(ax, [n for n, _ in rows], [v for _, v in rows], unit)
        axes[0, 0].set_title(f"{bench['name']}: throughput")
        key = f"throughput-{bench['name']}"
        out[key] = _save(plt, fig, directory, f"{_safe(key)}.png")
    return out


def limits(doc: Mapping[str, Any], directory: Path) -> dict[str, str]:
    """Rivulet's figures as a share of the machine's limits (throughput) and as a
    multiple of the bare operation (latency)."""
    comparisons = doc.get("comparisons", [])
    kinds = [
        [c for c in comparisons if c["kind"] == "throughput"],
        [c for c in comparisons if c["kind"] == "latency"],
    ]
    kinds = [k for k in kinds if k]
    if not kinds:
        return {}
    plt = _pyplot()
    heights = [max(1.2, 0.32 * len(k) + 0.8) for k in kinds]
    fig, axes = plt.subplots(
        len(kinds), 1, figsize=(8, sum(heights)), squeeze=False, height_ratios=heights
    )
    for ax, rows in zip(axes[:, 0], kinds, strict=True):
        labels = [f"{c['name']} / {c['limit']}" for c in rows]
        if rows[0]["kind"] == "throughput":
            _barh(ax, labels, [100.0 * c["fraction"] for c in rows], "% of the machine's limit")
            ax.axvline(100, color="#999", linewidth=1)
        else:
            _barh(ax, labels, [c["fraction"] for c in rows], "x the bare operation's latency")
            ax.axvline(1, color="#999", linewidth=1)
    axes[0, 0].set_title("Rivulet against this machine's limits")
    return {"limits": _save(plt, fig, directory, "limits.png")}


def peers(doc: Mapping[str, Any], directory: Path) -> dict[str, str]:
    """How many times better (> 1) or worse (< 1) Rivulet is than each peer, per workload."""
    rows = doc.get("peer_comparisons", [])
    if not rows:
        return {}
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, max(1.8, 0.34 * len(rows) + 1.0)))
    values = [float(r["advantage"]) for r in rows]
    positions = list(range(len(rows)))
    colors = ["#3a8a3a" if v >= 1 else "#b5452f" for v in values]
    ax.barh(positions, values, color=colors)
    ax.set_yticks(positions, labels=[r["workload"] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1, color="#333", linewidth=1)
    ax.set_xlabel("Rivulet's advantage (x; above 1 = Rivulet better)")
    for pos, value in zip(positions, values, strict=True):
        ax.annotate(f" {value:.2f}x", (value, pos), va="center", fontsize=7)
    ax.set_title("Rivulet side by side with Redis / ZooKeeper")
    ax.grid(axis="x", alpha=0.3)
    return {"peers": _save(plt, fig, directory, "peers.png")}


def latency_cdfs(doc: Mapping[str, Any], directory: Path) -> dict[str, str]:
    """Per benchmark with latency samples: their CDFs, on a log time axis in ms."""
    plt = _pyplot()
    out: dict[str, str] = {}
    for bench in doc["benchmarks"]:
        curves = []
        for r in bench.get("results", []):
            dim = dimension(r["unit"])
            points = r.get("cdf") or []
            if dim is None or dim[0] != _TIME or not points:
                continue
            to_ms = dim[1] * 1000.0
            xs = [max(float(v) * to_ms, 1e-6) for _, v in points]
            ys = [float(q) / 100.0 for q, _ in points]
            curves.append((r["name"].replace("_p50", ""), xs, ys))
        if not curves:
            continue
        fig, ax = plt.subplots(figsize=(8, 4.2))
        for name, xs, ys in curves:
            ax.plot(xs, ys, label=name, linewidth=1.4)
        lo = min(min(xs) for _, xs, _ in curves)
        hi = max(max(xs) for _, xs, _ in curves)
        if hi / max(lo, 1e-9) > 10:
            ax.set_xscale("log")
        ax.set_ylim(0, 1.0)
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel("fraction of samples at or below")
        ax.set_title(f"{bench['name']}: latency CDF")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        key = f"cdf-{bench['name']}"
        out[key] = _save(plt, fig, directory, f"{_safe(key)}.png")
    return out


def draw_all(doc: Mapping[str, Any], directory: Path) -> dict[str, str]:
    """Every figure for ``doc`` in ``directory``: ``{key: file name}`` (empty without
    matplotlib)."""
    if unavailable_reason() is not None:
        return {}
    out: dict[str, str] = {}
    for draw in (limits, peers, throughput, latency_cdfs):
        out.update(draw(doc, directory))
    return out

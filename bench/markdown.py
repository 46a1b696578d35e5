"""The run document of ``python -m bench all`` and its Markdown report.

The run document is what ``bench/results/<stamp>.json`` holds::

    {
      "schema": 1,
      "started": "2025-01-31T14:05:09+00:00", "finished": ..., "seconds": 312.4,
      "quick": false, "command": "python -m bench all",
      "commit": "a2f7634", "dirty": true,
      "machine": {"cpu": ..., "cores": ..., "load_average": ..., "load_average_after": ...},
      "benchmarks": [
        {"name": "coordinator", "status": "ok" | "failed" | "skipped" | "missing",
         "seconds": 41.2, "reason": "", "about": "first paragraph of its docstring",
         "results": [{"name": "create_1_ops_per_s", "value": 1234.5, "unit": "ops/s",
                      "cdf": [[0.0, v0], [1.0, v1], ..., [100.0, vmax]]}],
         "limits": {"<result or glob>": "<machine limit>"},
         "peers": [{"rivulet": ..., "peer": ..., "workload": ..., "higher_is_better": true}]}
      ],
      "comparisons": [...],   # Rivulet figure vs machine limit, see bench.machine.Comparison
      "peer_comparisons": [...]  # Rivulet figure vs Redis/ZooKeeper, see bench.peers
    }

Result names inside a benchmark are its own; comparisons use ``bench.result``.
``cdf`` is present for results that came with samples. :func:`analyse` fills in
the two comparison lists from the rest, so an old document can be re-rendered
with today's rules (``python -m bench report FILE``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from bench.machine import LIMIT_RULES, compare, module_rules
from bench.peers import PeerRule, pair
from bench.report import Result, format_value
from bench.report import result as make_result

SCHEMA = 1
MACHINE = "machine"
PEER_NAMES = {"redis": "Redis", "zookeeper": "ZooKeeper"}


def _value(raw: Any) -> float:
    return float("nan") if raw is None else float(raw)


def full_results(doc: Mapping[str, Any]) -> list[Result]:
    """Every result of every benchmark, named ``bench.result``."""
    out: list[Result] = []
    for bench in doc["benchmarks"]:
        for r in bench.get("results", []):
            out.append(make_result(f"{bench['name']}.{r['name']}", _value(r["value"]), r["unit"]))
    return out


def machine_limits(doc: Mapping[str, Any]) -> list[Result]:
    for bench in doc["benchmarks"]:
        if bench["name"] == MACHINE and bench.get("status") == "ok":
            return [make_result(r["name"], _value(r["value"]), r["unit"]) for r in bench["results"]]
    return []


def analyse(doc: dict[str, Any]) -> dict[str, Any]:
    """Fill in ``comparisons`` (against the machine) and ``peer_comparisons``."""
    rules = list(LIMIT_RULES)
    peer_rules: list[PeerRule] = []
    for bench in doc["benchmarks"]:
        rules.extend(module_rules(bench["name"], bench.get("limits") or {}))
        for p in bench.get("peers") or []:
            peer_rules.append(
                PeerRule(p["rivulet"], p["peer"], p["workload"], bool(p["higher_is_better"]))
            )
    results = [r for r in full_results(doc) if not r["name"].startswith(MACHINE + ".")]
    doc["comparisons"] = [c.to_json() for c in compare(results, machine_limits(doc), rules)]
    doc["peer_comparisons"] = [c.to_json() for c in pair(full_results(doc), peer_rules)]
    return doc


# ------------------------------------------------------------------------ rendering


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s"


def _table(header: Sequence[str], align: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines.extend("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)
    return lines


def _image(plots: Mapping[str, str], key: str, plot_dir: str, alt: str) -> list[str]:
    if key not in plots:
        return []
    return ["", f"![{alt}]({plot_dir}/{plots[key]})"]


def _advantage(x: float) -> str:
    if x >= 1:
        return f"{x:.2f}x better"
    return f"{1 / x:.2f}x worse"


def render(
    doc: Mapping[str, Any],
    *,
    plots: Mapping[str, str],
    plot_dir: str,
    plot_note: str | None,
) -> str:
    """The Markdown report of a run document (``plots`` maps figure keys to PNG names
    inside ``plot_dir``, a path relative to the report)."""
    machine = doc.get("machine", {})
    mode = "quick" if doc.get("quick") else "full"
    lines = [f"# Rivulet benchmark report — {doc['started'][:16].replace('T', ' ')} UTC ({mode})"]
    commit = doc.get("commit") or "unknown commit"
    dirty = " with uncommitted changes" if doc.get("dirty") else ""
    lines += [
        "",
        f"Reproduce with `{doc['command']}` at {commit}{dirty}. The run took "
        f"{_duration(doc.get('seconds'))}.",
    ]
    if doc.get("quick"):
        lines += [
            "",
            "**Quick mode:** smoke-run sizes (a few seconds per benchmark, one run each). "
            "These figures show that everything works, not what it achieves; quote only "
            "full runs (`python -m bench all`).",
        ]

    lines += ["", "## Machine", ""]
    facts = [
        ("CPU", f"{machine.get('cpu', '?')} ({machine.get('cores', '?')} cores)"),
        ("memory", machine.get("memory", "?")),
        ("OS", machine.get("os", "?")),
        ("Python", machine.get("python", "?")),
        ("benchmark files in", machine.get("bench_dir", "?")),
        (
            "load average (1, 5, 15 min)",
            f"{machine.get('load_average', '?')} at the start, "
            f"{machine.get('load_average_after', '?')} at the end",
        ),
    ]
    lines += _table(["", ""], ["---", "---"], facts)
    lines += [
        "",
        "A load average above the number of cores means other work shared the machine "
        "during the run; compare figures only between runs with similar load.",
    ]

    limits = machine_limits(doc)
    lines += ["", "## Machine limits", ""]
    if limits:
        lines += [
            "Measured in the same run by `python -m bench machine` (see docs/benchmarks.md): "
            "the best this machine does for the operation under each Rivulet figure.",
            "",
        ]
        lines += _table(
            ["limit", "value", "unit"],
            ["---", "---:", "---"],
            [[r["name"], format_value(r["value"]), r["unit"]] for r in limits],
        )
        lines += _image(plots, f"throughput-{MACHINE}", plot_dir, "machine throughput limits")
        lines += _image(plots, f"cdf-{MACHINE}", plot_dir, "loopback round trip and fsync CDF")
    else:
        lines += ["Not measured in this run (`--no-machine`, or it failed)."]

    comparisons = doc.get("comparisons", [])
    if comparisons:
        lines += ["", "### Rivulet against the limits", ""]
        lines += [
            "Throughput as a share of the limit (100% = the machine's best); latency as a "
            "multiple of the bare operation (1x = no slower than, say, one fsync).",
            "",
        ]
        lines += _table(
            ["figure", "value", "limit", "", "why this limit"],
            ["---", "---:", "---", "---:", "---"],
            [
                [
                    c["name"],
                    f"{format_value(c['value'])} {c['unit']}",
                    f"{c['limit']} = {format_value(c['limit_value'])} {c['limit_unit']}",
                    f"{c['fraction']:.0%}"
                    if c["kind"] == "throughput"
                    else f"{c['fraction']:.1f}x",
                    c.get("why", ""),
                ]
                for c in comparisons
            ],
        )
        lines += _image(plots, "limits", plot_dir, "Rivulet against the machine's limits")

    lines += ["", "## Benchmarks", ""]
    lines += _table(
        ["benchmark", "status", "time", "results"],
        ["---", "---", "---:", "---"],
        [
            [
                b["name"],
                b["status"] + (f": {b['reason']}" if b.get("reason") else ""),
                _duration(b.get("seconds")),
                str(len(b.get("results", []))),
            ]
            for b in doc["benchmarks"]
        ],
    )
    by_figure = {c["name"]: c for c in comparisons}
    for b in doc["benchmarks"]:
        if b["name"] == MACHINE or not b.get("results"):
            continue
        lines += ["", f"### {b['name']}", ""]
        if b.get("about"):
            lines += [f"> {b['about']}", ""]
        rows = []
        for r in b["results"]:
            c = by_figure.get(f"{b['name']}.{r['name']}")
            against = ""
            if c is not None:
                against = (
                    f"{c['fraction']:.0%} of {c['limit']}"
                    if c["kind"] == "throughput"
                    else f"{c['fraction']:.1f}x {c['limit']}"
                )
            rows.append([r["name"], format_value(_value(r["value"])), r["unit"], against])
        lines += _table(
            ["metric", "value", "unit", "vs the machine"], ["---", "---:", "---", "---"], rows
        )
        lines += _image(plots, f"throughput-{b['name']}", plot_dir, f"{b['name']} throughput")
        lines += _image(plots, f"cdf-{b['name']}", plot_dir, f"{b['name']} latency CDF")

    lines += ["", "## Side by side with Redis and ZooKeeper"]
    peer_rows = doc.get("peer_comparisons", [])
    skipped = [
        f"- {PEER_NAMES[b['name']]}: not measured — {b.get('reason') or b['status']}."
        for b in doc["benchmarks"]
        if b["name"] in PEER_NAMES and b["status"] != "ok"
    ]
    if skipped:
        lines += ["", *skipped]
    if peer_rows:
        lines += [
            "",
            "Same workloads, same machine, same run, Python clients on both sides "
            "(redis-py, kazoo). Above 1x Rivulet is better (higher throughput or lower "
            "latency).",
            "",
        ]
        lines += _table(
            ["workload", "Rivulet", "peer", "unit", "Rivulet is"],
            ["---", "---:", "---:", "---", "---"],
            [
                [
                    p["workload"],
                    format_value(p["rivulet_value"]),
                    format_value(p["peer_value"]),
                    p["unit"],
                    _advantage(float(p["advantage"])),
                ]
                for p in peer_rows
            ],
        )
        lines += _image(plots, "peers", plot_dir, "Rivulet vs Redis and ZooKeeper")
    elif not any(b["name"] in PEER_NAMES for b in doc["benchmarks"]):
        lines += ["", "Not run in this run (`--no-peers`, or not named)."]
    elif not any(b["name"] in PEER_NAMES and b["status"] == "ok" for b in doc["benchmarks"]):
        lines += ["", "Install them to see the comparison; the suite never installs anything."]

    lines += ["", "## Plots", ""]
    if plot_note:
        lines += [f"Plots skipped: {plot_note}."]
    elif plots:
        lines += [f"{len(plots)} PNG files in `{plot_dir}/`, shown above."]
    else:
        lines += ["No figure in this run had anything to plot."]
    return "\n".join(lines) + "\n"

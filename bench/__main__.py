"""``python -m bench NAME... [--quick] [--json FILE]``: run benchmarks; ``all`` runs the suite.

    python -m bench coordinator --quick      one benchmark, in this process, table on stdout
    python -m bench all [--quick]            the suite: machine limits, every benchmark, peers,
                                             then bench/results/<stamp>.json and .md (+ PNGs)
    python -m bench produce consume --report some benchmarks, with the dated report
    python -m bench report FILE.json         re-render a run's Markdown report and plots
    python -m bench list                     what is there (and which peers are installed)

In suite mode every benchmark runs in its own child process (``--emit``), so
one that crashes or hangs (``--timeout``) is reported and the others still run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import importlib.util
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.report import Result, coerce, plain, print_table, start_section, write_json
from bench.stats import cdf

# name -> module with ``run(quick: bool) -> list[Result]``, in suite order. A module that
# is not in this checkout (yet) is reported as missing by ``all``.
BENCHMARKS: dict[str, str] = {
    "machine": "bench.machine",
    "coordinator": "bench.coordinator",
    "log": "bench.log",
    "produce": "bench.produce",
    "consume": "bench.consume",
    "latency": "bench.latency",
    "groups": "bench.groups",
    "cluster": "bench.cluster",
    "streaming": "bench.streaming",
    "redis": "bench.compare_redis",
    "zookeeper": "bench.compare_zookeeper",
}
MACHINE = "machine"
PEERS = ("redis", "zookeeper")
RESULTS_DIR = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130
SUITE_TIMEOUT_QUICK = 900.0
SUITE_TIMEOUT_FULL = 3600.0


def present(name: str) -> bool:
    """Whether the benchmark's module exists in this checkout."""
    return importlib.util.find_spec(BENCHMARKS[name]) is not None


def module_file(name: str) -> str:
    return BENCHMARKS[name].replace(".", "/") + ".py"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        choices=[*BENCHMARKS, "all", "list"],
        help=f"one or more of: {', '.join(BENCHMARKS)}; or all; or list",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--json", type=Path, help="write the results as a JSON list here")
    parser.add_argument(
        "--report",
        action="store_true",
        help="suite mode for the NAMEs given: child processes, dated JSON + Markdown report",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS_DIR,
        help="directory of the dated report (default: bench/results)",
    )
    parser.add_argument("--no-machine", action="store_true", help="skip the machine limits")
    parser.add_argument("--no-peers", action="store_true", help="skip Redis and ZooKeeper")
    parser.add_argument(
        "--timeout",
        type=float,
        help=f"seconds per benchmark in suite mode (default {SUITE_TIMEOUT_QUICK:.0f} with "
        f"--quick, else {SUITE_TIMEOUT_FULL:.0f})",
    )
    parser.add_argument("--emit", type=Path, help=argparse.SUPPRESS)
    return parser


def build_report_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench report",
        description="Re-render the Markdown report and plots of a run's JSON document.",
    )
    parser.add_argument("file", type=Path, help="a bench/results/<stamp>.json")
    parser.add_argument("--out", type=Path, help="directory to write to (default: the file's)")
    return parser


# ---------------------------------------------------------------- one benchmark, here


def _about(module: Any) -> str:
    doc = (module.__doc__ or "").strip()
    return " ".join(doc.split("\n\n")[0].split())


def run_inline(module: Any, quick: bool) -> tuple[str, str, list[Result]]:
    """Run one benchmark module in this process: (status, reason, results)."""
    from bench.peers import Unavailable

    start_section()
    try:
        raw = module.run(quick=quick)
    except Unavailable as exc:
        return "skipped", str(exc), []
    return "ok", "", [coerce(r) for r in raw]


def _emit(name: str, quick: bool, path: Path) -> int:
    """Child mode of the suite: run ``name`` and write everything the parent needs."""
    status, reason, module = "failed", "", None
    results: list[Result] = []
    code = EXIT_FAILED
    try:
        module = importlib.import_module(BENCHMARKS[name])
        status, reason, results = run_inline(module, quick)
        code = EXIT_OK if status == "ok" else EXIT_UNAVAILABLE
    except BaseException as exc:
        traceback.print_exc()
        reason = f"{type(exc).__name__}: {exc}".strip()
        if isinstance(exc, KeyboardInterrupt):
            reason = "interrupted"
    if status == "ok":
        print_table(name, results)
    elif status == "skipped":
        print(f"\n{name}: skipped: {reason}", flush=True)
    peers = [
        {
            "rivulet": rule.rivulet,
            "peer": rule.peer,
            "workload": rule.workload,
            "higher_is_better": rule.higher_is_better,
        }
        for rule in getattr(module, "PEERS", [])
    ]
    payload = {
        "status": status,
        "reason": reason,
        "about": _about(module) if module is not None else "",
        "results": results,
        "limits": dict(getattr(module, "LIMITS", {}) or {}),
        "peers": peers,
    }
    path.write_text(json.dumps(payload))
    return code


# ---------------------------------------------------------------- the suite


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def _stop_child(proc: subprocess.Popen[bytes]) -> None:
    """Interrupt the child's process group (it stops its servers), then kill what is left."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # servers the child left behind


def run_child(name: str, quick: bool, timeout: float) -> dict[str, Any]:
    """Run one benchmark in a child process; its entry of the run document."""
    entry: dict[str, Any] = {"name": name, "status": "failed", "reason": "", "results": []}
    with tempfile.TemporaryDirectory(prefix="rivulet-bench-") as tmp:
        emit = Path(tmp) / "emit.json"
        argv = [sys.executable, "-m", "bench", name, "--emit", str(emit)]
        if quick:
            argv.append("--quick")
        start = time.monotonic()
        # Its own session: a Ctrl-C reaches the child through _stop_child, which lets it
        # stop its servers first, and a timeout can end the whole group.
        proc = subprocess.Popen(argv, cwd=REPO, start_new_session=True)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _stop_child(proc)
            entry["reason"] = f"timed out after {timeout:.0f} s"
        except KeyboardInterrupt:
            _stop_child(proc)
            entry["reason"] = "interrupted"
            entry["interrupted"] = True
        entry["seconds"] = time.monotonic() - start
        if emit.exists():
            payload = json.loads(emit.read_text())
            results = []
            for r in payload["results"]:
                samples = r.pop("samples", None)
                if samples:
                    r["cdf"] = [list(point) for point in cdf(samples)]
                results.append(r)
            entry.update(
                status=payload["status"],
                reason=entry["reason"] or payload["reason"],
                about=payload["about"],
                results=results,
                limits=payload["limits"],
                peers=payload["peers"],
            )
        elif not entry["reason"]:
            entry["reason"] = f"exited with {proc.returncode} before writing results"
        if entry["status"] == "ok" and proc.returncode != EXIT_OK:
            entry["status"] = "failed"
    return entry


def suite_names(names: Sequence[str], no_machine: bool, no_peers: bool) -> list[str]:
    chosen = list(BENCHMARKS) if "all" in names else list(dict.fromkeys(names))
    if not no_machine and MACHINE not in chosen:
        chosen.insert(0, MACHINE)
    if no_machine:
        chosen = [n for n in chosen if n != MACHINE]
    if no_peers:
        chosen = [n for n in chosen if n not in PEERS]
    return sorted(chosen, key=list(BENCHMARKS).index)


def write_report(doc: dict[str, Any], json_path: Path, out: Path | None = None) -> Path:
    """Write ``doc`` (analysed) as JSON, then its Markdown report and plots beside it."""
    from bench import markdown, plots

    out = out or json_path.parent
    out.mkdir(parents=True, exist_ok=True)
    markdown.analyse(doc)
    target_json = out / json_path.name
    target_json.write_text(json.dumps(doc, indent=1) + "\n")
    plot_dir = json_path.stem
    note = plots.unavailable_reason()
    drawn: dict[str, str] = {}
    if note is None:
        try:
            drawn = plots.draw_all(doc, out / plot_dir)
        except Exception as exc:  # a plot must never cost the report
            note = f"drawing failed ({type(exc).__name__}: {exc})"
    md = out / f"{json_path.stem}.md"
    md.write_text(markdown.render(doc, plots=drawn, plot_dir=plot_dir, plot_note=note))
    return md


def run_suite(args: argparse.Namespace, argv: Sequence[str]) -> int:
    names = suite_names(args.names, args.no_machine, args.no_peers)
    timeout = args.timeout or (SUITE_TIMEOUT_QUICK if args.quick else SUITE_TIMEOUT_FULL)
    from bench.machine import describe, load_average

    started = dt.datetime.now(dt.UTC).replace(microsecond=0)
    doc: dict[str, Any] = {
        "schema": 1,
        "started": started.isoformat(),
        "quick": bool(args.quick),
        "command": "python -m bench " + " ".join(shlex.quote(a) for a in argv),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "machine": describe(),
        "benchmarks": [],
    }
    clock = time.monotonic()
    mode = " (quick)" if args.quick else ""
    for i, name in enumerate(names, 1):
        tag = f"[{i}/{len(names)}] {name}"
        if not present(name):
            reason = f"{module_file(name)} is not in this checkout"
            print(f"== {tag}: missing ({reason})", file=sys.stderr, flush=True)
            doc["benchmarks"].append({"name": name, "status": "missing", "reason": reason})
            continue
        print(f"== {tag}{mode}", file=sys.stderr, flush=True)
        entry = run_child(name, args.quick, timeout)
        interrupted = bool(entry.pop("interrupted", False))
        if interrupted:
            entry["status"] = "failed"
        doc["benchmarks"].append(entry)
        detail = f": {entry['reason']}" if entry.get("reason") else ""
        print(
            f"== {tag}: {entry['status']}{detail} ({len(entry['results'])} results in "
            f"{entry['seconds']:.1f} s; {time.monotonic() - clock:.0f} s so far)",
            file=sys.stderr,
            flush=True,
        )
        if interrupted:
            print("== interrupted: writing the report of what ran", file=sys.stderr)
            break
    doc["machine"]["load_average_after"] = load_average()
    doc["finished"] = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    doc["seconds"] = time.monotonic() - clock

    stamp = started.strftime("%Y-%m-%dT%H-%M-%S") + ("-quick" if args.quick else "")
    md = write_report(doc, args.out / f"{stamp}.json")
    if args.json:
        flat = [
            {**r, "name": f"{b['name']}.{r['name']}"}
            for b in doc["benchmarks"]
            for r in b.get("results", [])
        ]
        write_json(args.json, flat)
    print("\n== summary", file=sys.stderr)
    for b in doc["benchmarks"]:
        seconds = b.get("seconds")
        took = f"{seconds:7.1f} s" if seconds is not None else "      - "
        reason = b.get("reason", "")
        print(f"  {b['name']:<12} {b['status']:<8} {took}  {reason}", file=sys.stderr)
    print(f"\nreport: {md}\ndata:   {md.with_suffix('.json')}", file=sys.stderr, flush=True)
    if any(b.get("reason") == "interrupted" for b in doc["benchmarks"]):
        return EXIT_INTERRUPTED
    failed = [b["name"] for b in doc["benchmarks"] if b["status"] == "failed"]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


# ---------------------------------------------------------------- commands


def list_benchmarks() -> int:
    from bench.peers import Unavailable

    for name, module_name in BENCHMARKS.items():
        if not present(name):
            state = f"missing ({module_file(name)} is not in this checkout)"
        elif name in PEERS:
            module = importlib.import_module(module_name)
            try:
                module.check()
                state = "installed"
            except Unavailable as exc:
                state = f"not installed: {exc}"
        else:
            state = "present"
        print(f"{name:<12} {module_name:<26} {state}")
    return EXIT_OK


def rerender(argv: Sequence[str]) -> int:
    args = build_report_parser().parse_args(list(argv))
    doc = json.loads(args.file.read_text())
    if not isinstance(doc, Mapping) or doc.get("schema") != 1:
        print(f"{args.file}: not a run document of python -m bench all", file=sys.stderr)
        return 2
    md = write_report(dict(doc), args.file, args.out)
    print(md)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "report":
        return rerender(argv[1:])
    args = build_parser().parse_args(argv)
    if args.names == ["list"]:
        return list_benchmarks()
    if "list" in args.names:
        build_parser().error("list takes no other names")
    if args.emit is not None:
        if len(args.names) != 1 or args.names[0] == "all":
            build_parser().error("--emit runs exactly one benchmark")
        return _emit(args.names[0], args.quick, args.emit)
    if "all" in args.names or args.report:
        return run_suite(args, argv)
    everything: list[Result] = []
    code = EXIT_OK
    for name in dict.fromkeys(args.names):
        if not present(name):
            print(f"{name}: {module_file(name)} is not in this checkout", file=sys.stderr)
            code = EXIT_FAILED
            continue
        print(f"== {name}{' (quick)' if args.quick else ''}", file=sys.stderr, flush=True)
        status, reason, results = run_inline(importlib.import_module(BENCHMARKS[name]), args.quick)
        if status != "ok":
            print(f"{name}: {status}: {reason}", file=sys.stderr)
            continue
        print_table(name, results)
        everything.extend({**r, "name": f"{name}.{r['name']}"} for r in results)
    if args.json:
        write_json(args.json, plain(everything))
    return code


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m bench NAME [--quick] [--json FILE]``: run one benchmark, or ``all``."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from bench.report import Result, print_table, write_json

# name -> module with ``run(quick: bool) -> list[Result]``
BENCHMARKS: dict[str, str] = {
    "coordinator": "bench.coordinator",
    "log": "bench.log",
    "streaming": "bench.streaming",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("name", choices=[*BENCHMARKS, "all"])
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--json", type=Path, help="write the results as a JSON list here")
    args = parser.parse_args(argv)
    names = list(BENCHMARKS) if args.name == "all" else [args.name]
    everything: list[Result] = []
    for name in names:
        print(f"== {name}{' (quick)' if args.quick else ''}", file=sys.stderr, flush=True)
        module = importlib.import_module(BENCHMARKS[name])
        results: list[Result] = module.run(quick=args.quick)
        print_table(name, results)
        everything.extend({**r, "name": f"{name}.{r['name']}"} for r in results)
    if args.json:
        write_json(args.json, everything)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

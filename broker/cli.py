"""The ``broker`` command: ``serve``, the Kafka console tools (topics, produce, consume,
groups, leaders) and ``dev-cluster``."""

from __future__ import annotations

import argparse
import sys

from broker.commands import consume, dev_cluster, groups, leaders, produce, serve, topics


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="broker", description="Rivulet broker")
    sub = parser.add_subparsers(dest="command", required=True)
    serve.add_parser(sub)
    topics.add_parser(sub)
    produce.add_parser(sub)
    consume.add_parser(sub)
    groups.add_parser(sub)
    leaders.add_parser(sub)
    dev_cluster.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    return int(args.func(args))

"""``broker leaders elect`` (Kafka's kafka-leader-election.sh): preferred-leader election.

Moves leadership of each partition back to its preferred replica (the first of
its replica list) where that replica is alive and in sync. Without ``--topic``
every partition of the cluster; ``--partition`` narrows a topic to one
partition. Prints one line per partition that changed; partitions already led
by their preferred replica are counted, ones that cannot move are reported.
"""

from __future__ import annotations

import argparse
from typing import Any

from broker.commands.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    ToolError,
    add_bootstrap,
    report,
    run_client,
)
from client.admin import Admin
from client.protocol import ElectionNotNeededError
from client.types import TopicPartition

PROG = "broker leaders"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "leaders", help="move leadership back to the preferred replicas"
    )
    actions = parser.add_subparsers(dest="action", required=True)
    elect = actions.add_parser("elect", help="preferred-leader election")
    elect.add_argument("--topic", help="only this topic (default: every topic)")
    elect.add_argument("--partition", type=int, help="only this partition of --topic")
    elect.add_argument("--timeout-ms", type=int, default=30_000, help="how long to wait")
    add_bootstrap(elect)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    return run_client(PROG, lambda: _elect(args))


def _elect(args: argparse.Namespace) -> int:
    if args.partition is not None and args.topic is None:
        raise ToolError("--partition needs --topic", EXIT_USAGE)
    with Admin(args.bootstrap) as admin:
        wanted: list[TopicPartition] | None = None
        if args.topic is not None:
            if args.partition is not None:
                wanted = [TopicPartition(args.topic, args.partition)]
            else:
                count = admin.describe_topic(args.topic).num_partitions
                wanted = [TopicPartition(args.topic, p) for p in range(count)]
        outcome = admin.elect_leaders(wanted, timeout=args.timeout_ms / 1000.0)
    failed = False
    already = 0
    for tp, error in sorted(outcome.items()):
        if error is None:
            print(f"Elected the preferred leader of {tp.topic}-{tp.partition}.")
        elif isinstance(error, ElectionNotNeededError):
            already += 1
        else:
            report(PROG, error)
            failed = True
    if already:
        print(f"{already} partition(s) were led by their preferred replica already.")
    return EXIT_FAILED if failed else EXIT_OK

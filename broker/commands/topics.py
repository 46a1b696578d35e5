"""``broker topics create|delete|list|describe|reassign`` (Kafka's kafka-topics.sh and
kafka-reassign-partitions.sh), on the Admin client."""

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
from client.protocol import TopicAlreadyExistsError, UnknownTopicOrPartitionError
from client.types import PartitionInfo, TopicPartition
from client.wire import ServerError

PROG = "broker topics"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "topics", help="create, delete, list and describe topics"
    )
    actions = parser.add_subparsers(dest="action", required=True)

    create = actions.add_parser("create", help="create a topic")
    create.add_argument("topic")
    create.add_argument("--partitions", type=int, default=-1, help="default: the broker's")
    create.add_argument("--replication-factor", type=int, default=-1, help="default: the broker's")
    create.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a topic config override, e.g. retention.ms=60000 (repeatable)",
    )
    create.add_argument("--if-not-exists", action="store_true", help="no error if it exists")

    delete = actions.add_parser("delete", help="delete topics")
    delete.add_argument("topics", nargs="+", metavar="topic")
    delete.add_argument("--if-exists", action="store_true", help="no error if it is missing")

    listing = actions.add_parser("list", help="list the topics")

    describe = actions.add_parser("describe", help="partitions, leaders, replicas and configs")
    describe.add_argument("topics", nargs="*", metavar="topic", help="default: every topic")
    describe.add_argument(
        "--under-replicated",
        action="store_true",
        help="only partitions whose ISR is smaller than their replica list",
    )
    describe.add_argument(
        "--unavailable", action="store_true", help="only partitions without a leader"
    )

    reassign = actions.add_parser(
        "reassign", help="move a partition to a new list of replicas (the first one leads)"
    )
    reassign.add_argument("topic")
    reassign.add_argument("--partition", type=int, required=True)
    reassign.add_argument(
        "--replicas", required=True, metavar="ID,ID,...", help="the new replica list, e.g. 2,0,1"
    )
    reassign.add_argument(
        "--timeout-ms", type=int, default=60_000, help="how long to wait for the move"
    )

    for p in (create, delete, listing, describe, reassign):
        add_bootstrap(p)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    actions = {
        "create": _create,
        "delete": _delete,
        "list": _list,
        "describe": _describe,
        "reassign": _reassign,
    }
    return run_client(PROG, lambda: _with_admin(args, actions[args.action]))


def _with_admin(args: argparse.Namespace, action: Any) -> int:
    with Admin(args.bootstrap) as admin:
        code: int = action(admin, args)
        return code


def _parse_configs(items: list[str]) -> dict[str, str]:
    configs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ToolError(f"--config {item!r}: expected KEY=VALUE", EXIT_USAGE)
        configs[key.strip()] = value.strip()
    return configs


def _create(admin: Admin, args: argparse.Namespace) -> int:
    configs = _parse_configs(args.config)
    try:
        admin.create_topic(args.topic, args.partitions, args.replication_factor, configs)
    except TopicAlreadyExistsError:
        if args.if_not_exists:
            return EXIT_OK
        raise
    print(f"Created topic {args.topic}.")
    return EXIT_OK


def _delete(admin: Admin, args: argparse.Namespace) -> int:
    failed = False
    for name in args.topics:
        try:
            admin.delete_topic(name)
        except UnknownTopicOrPartitionError as exc:
            if not args.if_exists:
                report(PROG, exc)
                failed = True
            continue
        except ServerError as exc:
            report(PROG, exc)
            failed = True
            continue
        print(f"Deleted topic {name}.")
    return EXIT_FAILED if failed else EXIT_OK


def _list(admin: Admin, args: argparse.Namespace) -> int:
    for name in admin.list_topics(internal=True):
        print(name)
    return EXIT_OK


def _wanted(args: argparse.Namespace, p: PartitionInfo) -> bool:
    """Whether ``describe``'s filters keep partition ``p`` (no filter keeps all)."""
    if not args.under_replicated and not args.unavailable:
        return True
    return (args.under_replicated and len(p.isr) < len(p.replicas)) or (
        args.unavailable and p.leader < 0
    )


def _describe(admin: Admin, args: argparse.Namespace) -> int:
    failed = False
    filtered = args.under_replicated or args.unavailable
    for name in args.topics or admin.list_topics(internal=True):
        try:
            topic = admin.describe_topic(name)
            configs = admin.describe_topic_config(name)
        except ServerError as exc:
            report(PROG, exc)
            failed = True
            continue
        overrides = ",".join(
            f"{c.name}={c.value}"
            for c in sorted(configs.values(), key=lambda c: c.name)
            if not c.is_default
        )
        parts = topic.partitions
        factor = len(parts[0].replicas) if parts else 0
        if not filtered:
            print(
                f"Topic: {name}\tPartitionCount: {len(parts)}\t"
                f"ReplicationFactor: {factor}\tConfigs: {overrides}"
            )
        for p in parts:
            if not _wanted(args, p):
                continue
            print(
                f"\tTopic: {name}\tPartition: {p.partition}\t"
                f"Leader: {p.leader if p.leader >= 0 else 'none'}\t"
                f"LeaderEpoch: {p.leader_epoch}\t"
                f"Replicas: {','.join(map(str, p.replicas))}\t"
                f"Isr: {','.join(map(str, p.isr))}"
            )
    return EXIT_FAILED if failed else EXIT_OK


def _reassign(admin: Admin, args: argparse.Namespace) -> int:
    try:
        replicas = [int(r) for r in args.replicas.split(",") if r.strip()]
    except ValueError:
        raise ToolError(f"--replicas {args.replicas!r}: expected ID,ID,...", EXIT_USAGE) from None
    if args.partition < 0 or not replicas:
        raise ToolError("--partition must be >= 0 and --replicas non-empty", EXIT_USAGE)
    tp = TopicPartition(args.topic, args.partition)
    outcome = admin.reassign_partitions({tp: replicas}, timeout=args.timeout_ms / 1000.0)
    error = outcome.get(tp)
    if error is not None:
        report(PROG, error)
        return EXIT_FAILED
    print(f"Reassigned {args.topic}-{args.partition} to replicas {','.join(map(str, replicas))}.")
    return EXIT_OK

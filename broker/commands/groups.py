"""``broker groups list|describe|delete|reset-offsets`` (Kafka's kafka-consumer-groups.sh),
on the Admin client.

    broker groups list [--state STATE]
    broker groups describe GROUP
    broker groups delete GROUP...
    broker groups reset-offsets GROUP --topic T (--to-earliest | --to-latest |
                                      --to-offset N | --to-datetime ISO) [--dry-run]

``describe`` shows the group, its members, and per partition the owner, the
committed offset, the log end offset and the lag. ``reset-offsets`` works only
on a group without members (stop its consumers first). Exit codes as every
console tool: 0 done, 1 the broker refused (unknown or active group, ...),
2 bad usage, 3 no broker reachable.
"""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Sequence
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
from client.async_admin import GROUP_STATES, GroupDescription
from client.protocol import GroupIdNotFoundError
from client.types import TopicPartition
from client.wire import ServerError

PROG = "broker groups"
NONE = "-"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "groups", help="list, describe and delete consumer groups; reset their offsets"
    )
    actions = parser.add_subparsers(dest="action", required=True)

    listing = actions.add_parser("list", help="list the consumer groups and their states")
    listing.add_argument(
        "--state",
        action="append",
        default=[],
        choices=GROUP_STATES,
        help="only groups in this state (repeatable)",
    )

    describe = actions.add_parser(
        "describe", help="members, and per partition owner, committed offset, log end and lag"
    )
    describe.add_argument("group")

    delete = actions.add_parser("delete", help="delete groups without members, with their offsets")
    delete.add_argument("groups", nargs="+", metavar="group")

    reset = actions.add_parser(
        "reset-offsets", help="set the committed offsets of a group without members"
    )
    reset.add_argument("group")
    reset.add_argument("--topic", required=True)
    reset.add_argument(
        "--partitions", metavar="P,P,...", help="only these partitions (default: all)"
    )
    target = reset.add_mutually_exclusive_group(required=True)
    target.add_argument("--to-earliest", action="store_true", help="the log start")
    target.add_argument("--to-latest", action="store_true", help="the log end")
    target.add_argument(
        "--to-offset", type=int, metavar="N", help="offset N (clamped to each partition's range)"
    )
    target.add_argument(
        "--to-datetime",
        metavar="ISO",
        help="the first offset at or after this time, e.g. 2024-05-01T12:00:00+00:00 "
        "(no zone: local time); the log end where there is none",
    )
    reset.add_argument(
        "--dry-run", action="store_true", help="show the new offsets without committing them"
    )

    for p in (listing, describe, delete, reset):
        add_bootstrap(p)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    actions = {
        "list": _list,
        "describe": _describe,
        "delete": _delete,
        "reset-offsets": _reset,
    }
    return run_client(PROG, lambda: _with_admin(args, actions[args.action]))


def _with_admin(args: argparse.Namespace, action: Any) -> int:
    with Admin(args.bootstrap) as admin:
        code: int = action(admin, args)
        return code


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Columns left-aligned, two spaces apart (as kafka-consumer-groups.sh prints)."""
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]
    for row in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _text(value: object) -> str:
    return NONE if value is None or value == "" else str(value)


def _list(admin: Admin, args: argparse.Namespace) -> int:
    groups = admin.list_groups(args.state or None)
    if groups:
        _table(["GROUP", "STATE"], [[g.group_id, g.state] for g in groups])
    return EXIT_OK


def _describe(admin: Admin, args: argparse.Namespace) -> int:
    try:
        group = admin.describe_group(args.group)
    except GroupIdNotFoundError:
        raise ToolError(f"group {args.group!r} does not exist") from None
    print(
        f"Group: {group.group_id}  State: {group.state}  GroupEpoch: {group.group_epoch}  "
        f"AssignmentEpoch: {group.assignment_epoch}  Assignor: {_text(group.assignor)}  "
        f"Members: {len(group.members)}"
    )
    if group.members:
        print()
        _table(
            ["MEMBER-ID", "INSTANCE-ID", "CLIENT-ID", "HOST", "EPOCH", "PARTITIONS"],
            [
                [
                    m.member_id,
                    _text(m.instance_id),
                    _text(m.client_id),
                    _text(m.client_host),
                    str(m.member_epoch),
                    str(len(m.assignment)),
                ]
                for m in group.members
            ],
        )
    owned = {tp for m in group.members for tp in m.assignment | m.pending_revocation}
    committed = admin.list_group_offsets(args.group)
    partitions = sorted(owned | set(committed))
    offsets = admin.list_group_offsets(args.group, partitions) if partitions else {}
    if partitions:
        print()
        _table(
            ["TOPIC", "PARTITION", "OWNER", "CLIENT-ID", "COMMITTED", "LOG-END", "LAG"],
            [_partition_row(group, tp, offsets.get(tp)) for tp in partitions],
        )
    return EXIT_OK


def _partition_row(group: GroupDescription, tp: TopicPartition, offset: Any) -> list[str]:
    owner = group.owner(tp)
    return [
        tp.topic,
        str(tp.partition),
        owner.member_id if owner is not None else NONE,
        _text(owner.client_id) if owner is not None else NONE,
        _text(None if offset is None else offset.offset),
        _text(None if offset is None else offset.log_end_offset),
        _text(None if offset is None else offset.lag),
    ]


def _delete(admin: Admin, args: argparse.Namespace) -> int:
    failed = False
    for name in args.groups:
        try:
            admin.delete_group(name)
        except ServerError as exc:
            report(PROG, f"cannot delete group {name!r}: {exc}")
            failed = True
            continue
        print(f"Deleted group {name}.")
    return EXIT_FAILED if failed else EXIT_OK


def _timestamp_ms(text: str) -> int:
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ToolError(
            f"--to-datetime {text!r}: expected an ISO 8601 time such as 2024-05-01T12:00:00",
            EXIT_USAGE,
        ) from None
    return max(0, round(when.timestamp() * 1000))


def _partition_numbers(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        numbers = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise ToolError(f"--partitions {text!r}: expected P,P,...", EXIT_USAGE) from None
    if not numbers or any(p < 0 for p in numbers):
        raise ToolError(f"--partitions {text!r}: expected P,P,... (>= 0)", EXIT_USAGE)
    return numbers


def _reset(admin: Admin, args: argparse.Namespace) -> int:
    partitions = _partition_numbers(args.partitions)
    target: dict[str, Any]
    if args.to_earliest:
        target = {"to": "earliest"}
    elif args.to_latest:
        target = {"to": "latest"}
    elif args.to_offset is not None:
        if args.to_offset < 0:
            raise ToolError("--to-offset must be >= 0", EXIT_USAGE)
        target = {"offset": args.to_offset}
    else:
        target = {"timestamp": _timestamp_ms(args.to_datetime)}
    new = admin.reset_offsets(
        args.group, args.topic, partitions=partitions, dry_run=args.dry_run, **target
    )
    _table(
        ["TOPIC", "PARTITION", "NEW-OFFSET"],
        [[tp.topic, str(tp.partition), str(offset)] for tp, offset in sorted(new.items())],
    )
    print()
    if args.dry_run:
        print(f"(dry run: the offsets of group {args.group} were not changed)")
    else:
        print(f"Reset the offsets of group {args.group} on {args.topic}.")
    return EXIT_OK

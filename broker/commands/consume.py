"""``broker consume TOPIC``: print records, one per line (Kafka's console consumer).

Reads every partition of the topic (or only ``--partition P``) with the client's
Consumer, from the end — or from the beginning with ``--from-beginning` —
without a consumer group. Stops after ``--max N`` records, after
``--timeout-ms`` without a new record, or at Ctrl-C.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any, TextIO

from broker.commands.common import (
    EXIT_OK,
    EXIT_USAGE,
    ToolError,
    add_bootstrap,
    report,
    run_client,
)
from client.admin import Admin
from client.consumer import Consumer
from client.types import TopicPartition

PROG = "broker consume"
POLL_SECONDS = 0.5


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser("consume", help="print records of a topic")
    parser.add_argument("topic")
    parser.add_argument(
        "--from-beginning", action="store_true", help="start at the oldest record, not the end"
    )
    parser.add_argument("--partition", type=int, help="read only this partition")
    parser.add_argument("--max", type=int, metavar="N", help="exit after N records")
    parser.add_argument(
        "--timeout-ms", type=int, help="exit after this long without a record (default: never)"
    )
    parser.add_argument("--print-key", action="store_true", help="print KEY<separator>VALUE")
    parser.add_argument("--key-separator", default="\t", metavar="SEP", help="default: a tab")
    add_bootstrap(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace, stdout: TextIO | None = None) -> int:
    if args.max is not None and args.max < 1:
        report(PROG, "--max must be at least 1")
        return EXIT_USAGE
    return run_client(PROG, lambda: _consume(args, stdout or sys.stdout))


def _partitions(args: argparse.Namespace) -> list[TopicPartition]:
    with Admin(args.bootstrap) as admin:
        topic = admin.describe_topic(args.topic)
    numbers = [p.partition for p in topic.partitions]
    if args.partition is not None:
        if args.partition not in numbers:
            raise ToolError(f"topic {args.topic!r} has no partition {args.partition}", EXIT_USAGE)
        numbers = [args.partition]
    return [TopicPartition(args.topic, p) for p in numbers]


def _consume(args: argparse.Namespace, stdout: TextIO) -> int:
    partitions = _partitions(args)
    limit = math.inf if args.max is None else args.max
    idle_limit = math.inf if args.timeout_ms is None else args.timeout_ms / 1000.0
    printed = 0
    with Consumer(args.bootstrap) as consumer:
        consumer.assign(partitions)
        if args.from_beginning:
            consumer.seek_to_beginning(*partitions)
        else:
            consumer.seek_to_end(*partitions)
        last_record = time.monotonic()
        while printed < limit:
            wait = min(POLL_SECONDS, max(0.0, idle_limit - (time.monotonic() - last_record)))
            want = None if args.max is None else int(limit - printed)
            records = consumer.poll(timeout=wait, max_records=want)
            if not records:
                if time.monotonic() - last_record >= idle_limit:
                    break
                continue
            last_record = time.monotonic()
            lines = []
            for record in records:
                value = _text(record.value)
                lines.append(
                    f"{_text(record.key)}{args.key_separator}{value}" if args.print_key else value
                )
            printed += len(lines)
            stdout.write("\n".join(lines) + "\n")
            stdout.flush()
    return EXIT_OK


def _text(data: bytes | None) -> str:
    return "null" if data is None else data.decode("utf-8", errors="replace")

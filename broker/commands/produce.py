"""``broker produce TOPIC``: one record per line of stdin (Kafka's console producer).

With ``--key-separator SEP`` each line is ``KEY<SEP>VALUE`` (a line without
the separator is an error, as in Kafka). Records go through the client's
Producer (batched, idempotent with acks=all); the command exits once every
record is acknowledged, with 1 if any failed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from broker.commands.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    ToolError,
    add_bootstrap,
    report,
    run_client,
)
from client.accumulator import RecordFuture
from client.errors import ClientError, NoBrokersAvailableError
from client.producer import Producer
from client.wire import RivuletError

PROG = "broker produce"
SWEEP_EVERY = 10_000


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(
        "produce", help="send lines of stdin as records"
    )
    parser.add_argument("topic")
    parser.add_argument("--key-separator", metavar="SEP", help="split each line into KEY SEP VALUE")
    parser.add_argument("--partition", type=int, help="send every record to this partition")
    parser.add_argument(
        "--acks", choices=("0", "1", "all"), default="all", help="default: all (durable)"
    )
    parser.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for acknowledgements"
    )
    add_bootstrap(parser)
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace, stdin: TextIO | None = None) -> int:
    return run_client(PROG, lambda: _produce(args, sys.stdin if stdin is None else stdin))


def _produce(args: argparse.Namespace, source: TextIO) -> int:
    acks: int | str = "all" if args.acks == "all" else int(args.acks)
    failures = 0
    first_error: BaseException | None = None
    pending: list[RecordFuture] = []
    with Producer(args.bootstrap, acks=acks, linger_ms=5) as producer:
        for number, line in enumerate(source, 1):
            text = line.rstrip("\n")
            key: bytes | None = None
            if args.key_separator is not None:
                key_text, sep, text = text.partition(args.key_separator)
                if not sep:
                    raise ToolError(
                        f"line {number} has no key separator {args.key_separator!r}", EXIT_USAGE
                    )
                key = key_text.encode()
            pending.append(
                producer.send(args.topic, text.encode(), key=key, partition=args.partition)
            )
            if len(pending) >= SWEEP_EVERY:
                failed, error = _sweep(pending, wait=False)
                failures += failed
                first_error = first_error or error
        producer.flush(timeout=args.timeout)
        failed, error = _sweep(pending, wait=True)
        failures += failed
        first_error = first_error or error
    if failures:
        report(PROG, f"{failures} record(s) failed; first error: {first_error}")
        return EXIT_UNREACHABLE if isinstance(first_error, NoBrokersAvailableError) else EXIT_FAILED
    return EXIT_OK


def _sweep(pending: list[RecordFuture], *, wait: bool) -> tuple[int, BaseException | None]:
    """Drop completed futures from ``pending``; count (and keep the first of) the failures."""
    failed = 0
    first: BaseException | None = None
    keep: list[RecordFuture] = []
    for future in pending:
        if not wait and not future.done():
            keep.append(future)
            continue
        try:
            future.result(timeout=0 if not wait else None)
        except (RivuletError, ClientError, TimeoutError) as exc:
            failed += 1
            first = first or exc
    pending[:] = keep
    return failed, first

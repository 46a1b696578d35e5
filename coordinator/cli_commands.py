"""The zkCli-like subcommands of ``coordinator``: ls, get, set, create, delete, stat, watch.

Each runs one short session with the async client. Exit codes: 0 success,
1 a coordinator error (``error: NO_NODE: /path`` on stderr) or an unreachable
server, 2 a usage error.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TextIO

import trio

from client.wire import ServerError
from coordinator.client import AsyncCoordinatorClient, Stat, fetch_server_stat, open_coordinator
from coordinator.errors import NotConnectedError

DEFAULT_SERVER = "127.0.0.1:2181"
SERVER_ENV = "RIVULET_COORDINATOR"
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

Command = Callable[[AsyncCoordinatorClient, argparse.Namespace], Awaitable[None]]


def add_client_options(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """--server and --timeout, accepted before and after the subcommand name."""
    # Only the top level sets defaults, so a subcommand's absent flag never overrides it.
    default_server = os.environ.get(SERVER_ENV, DEFAULT_SERVER) if top_level else argparse.SUPPRESS
    parser.add_argument(
        "--server",
        default=default_server,
        metavar="HOST:PORT[,HOST:PORT...]",
        help=f"coordinator address(es) (default ${SERVER_ENV} or {DEFAULT_SERVER})",
    )
    parser.add_argument(
        "--timeout",
        type=_positive_float,
        default=5.0 if top_level else argparse.SUPPRESS,
        metavar="SECONDS",
        help="connect timeout (default 5)",
    )


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the client subcommands on the ``coordinator`` parser."""

    def command(name: str, help_text: str, fn: Command) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=help_text, description=help_text)
        add_client_options(parser, top_level=False)
        parser.set_defaults(func=lambda args: run_command(args, fn))
        return parser

    p = command("ls", "list a node's children", cmd_ls)
    p.add_argument(
        "-R",
        dest="recursive",
        action="store_true",
        help="list the whole subtree, one full path per line",
    )
    p.add_argument("path")

    p = command("get", "print a node's data and stat", cmd_get)
    p.add_argument("path")

    p = command("set", "replace a node's data", cmd_set)
    p.add_argument(
        "-v", "--version", type=int, default=-1, help="only if the node is at this version"
    )
    p.add_argument("path")
    p.add_argument("data")

    p = command("create", "create a node", cmd_create)
    p.add_argument(
        "-e",
        dest="ephemeral",
        action="store_true",
        help="ephemeral (vanishes with this command's session; for tests)",
    )
    p.add_argument("-s", dest="sequential", action="store_true", help="append a sequence number")
    p.add_argument("-p", dest="parents", action="store_true", help="create missing parents")
    p.add_argument("-c", dest="container", action="store_true", help="container node")
    p.add_argument(
        "--ttl", type=_positive_float, metavar="SECONDS", help="persistent node with a time to live"
    )
    p.add_argument("path")
    p.add_argument("data", nargs="?", default="")

    p = command("delete", "delete a node", cmd_delete)
    p.add_argument(
        "-r", dest="recursive", action="store_true", help="delete the node and everything under it"
    )
    p.add_argument(
        "-v", "--version", type=int, default=-1, help="only if the node is at this version"
    )
    p.add_argument("path")

    p = sub.add_parser(
        "stat",
        help="a node's stat, or the server's statistics without PATH",
        description="a node's stat, or the server's statistics without PATH",
    )
    add_client_options(p, top_level=False)
    p.add_argument("path", nargs="?")
    p.set_defaults(func=cmd_stat)

    p = command(
        "watch", "print a node's events as they happen (until --count or Ctrl-C)", cmd_watch
    )
    p.add_argument("-R", dest="recursive", action="store_true", help="watch the whole subtree")
    p.add_argument("--count", type=_positive_int, metavar="N", help="stop after N events")
    p.add_argument("path")


def _data(text: str) -> bytes:
    # surrogateescape gives back exactly the bytes the shell passed in.
    return os.fsencode(text)


def format_stat(stat: Stat) -> list[str]:
    """zkCli's stat lines."""
    return [
        f"cZxid = 0x{stat.czxid:x}",
        f"ctime = {_format_ms(stat.ctime)}",
        f"mZxid = 0x{stat.mzxid:x}",
        f"mtime = {_format_ms(stat.mtime)}",
        f"pZxid = 0x{stat.pzxid:x}",
        f"cversion = {stat.cversion}",
        f"dataVersion = {stat.version}",
        f"ephemeralOwner = 0x{stat.ephemeral_owner:x}",
        f"dataLength = {stat.data_length}",
        f"numChildren = {stat.num_children}",
    ]


def _format_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def _print_lines(lines: list[str], out: TextIO | None = None) -> None:
    stream = out or sys.stdout
    for line in lines:
        stream.write(line + "\n")
    stream.flush()


async def cmd_ls(zk: AsyncCoordinatorClient, args: argparse.Namespace) -> None:
    if not args.recursive:
        _print_lines(await zk.get_children(args.path))
        return
    # Breadth first, like zkCli's ls -R.
    queue = [args.path]
    while queue:
        path = queue.pop(0)
        print(path, flush=True)
        children = await zk.get_children(path)
        queue.extend(f"/{c}" if path == "/" else f"{path}/{c}" for c in children)


async def cmd_get(zk: AsyncCoordinatorClient, args: argparse.Namespace) -> None:
    data, stat = await zk.get(args.path)
    sys.stdout.flush()
    sys.stdout.buffer.write(data + b"\n")
    sys.stdout.buffer.flush()
    _print_lines(format_stat(stat))


async def cmd_set(zk: AsyncCoordinatorClient, args: argparse.Namespace) -> None:
    await zk.set(args.path, _data(args.data), args.version)


async def cmd_create(zk: AsyncCoordinatorClient, args: argparse.Namespace) -> None:
    path = await zk.create(
        args.path,
        _data(args.data),
        ephemeral=args.ephemeral,
        sequential=args.sequential,
        make_parents=args.parents,
        container=args.container,
        ttl=args.ttl,
    )
    print(f"Created {path}", flush=True)


async def cmd_delete(zk: AsyncCoordinatorClient, args: argparse.Namespace) -> None:
    await zk.delete(args.path, args.version, recursive=args.recursive)


async def cmd_watch(zk: AsyncCoordinatorClient, args: argparse.Namespace) -> None:
    seen = 0
    async with zk.watch(args.path, recursive=args.recursive) as events:
        kind = "recursive" if args.recursive else "persistent"
        # On stderr so that stdout holds only events; scripts wait for this line.
        print(f"watching {args.path} ({kind})", file=sys.stderr, flush=True)
        async for event in events:
            print(f"{event.type} {event.path} zxid=0x{event.zxid:x}", flush=True)
            seen += 1
            if args.count is not None and seen >= args.count:
                return


def format_server_stat(info: dict[str, Any]) -> list[str]:
    """SERVER_STAT as ZooKeeper's ``srvr`` output."""

    def num(key: str) -> str:
        value = info.get(key)
        return f"{value:.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)

    zxid = info.get("last_zxid")
    return [
        f"Coordinator version: {info.get('version')}",
        f"Latency min/avg/max: {num('latency_min_ms')}/{num('latency_avg_ms')}/"
        f"{num('latency_max_ms')} ms",
        f"Connections: {num('connection_count')}",
        f"Outstanding: {num('outstanding_requests')}",
        f"Zxid: 0x{zxid:x}" if isinstance(zxid, int) else f"Zxid: {zxid}",
        f"Node count: {num('node_count')}",
        f"Ephemerals: {num('ephemeral_count')}",
        f"Sessions: {num('session_count')}",
        f"Watches: {num('watch_count')}",
        f"Uptime: {num('uptime_s')} s",
        f"Data dir: {info.get('data_dir')}",
    ]


def cmd_stat(args: argparse.Namespace) -> int:
    if args.path is not None:
        return run_command(args, _cmd_node_stat)

    async def server_stat() -> None:
        _print_lines(format_server_stat(await fetch_server_stat(args.server, args.timeout)))

    return _run_guarded(args, lambda: trio.run(server_stat))


async def _cmd_node_stat(zk: AsyncCoordinatorClient, args: argparse.Namespace) -> None:
    stat = await zk.exists(args.path)
    if stat is None:
        raise _NoSuchNode(args.path)
    _print_lines(format_stat(stat))


class _NoSuchNode(Exception):
    """``stat PATH`` of a missing node (exists() answers None rather than raising)."""


def run_command(args: argparse.Namespace, fn: Command) -> int:
    """Run ``fn`` inside one session; map failures to messages and exit codes."""

    async def session() -> None:
        async with open_coordinator(
            args.server, connect_timeout=args.timeout, session_timeout=max(args.timeout, 10.0)
        ) as zk:
            await fn(zk, args)

    return _run_guarded(args, lambda: trio.run(session))


def _run_guarded(args: argparse.Namespace, body: Callable[[], None]) -> int:
    path = getattr(args, "path", None)
    try:
        body()
    except KeyboardInterrupt:
        return EXIT_OK  # Ctrl-C is how `watch` normally ends
    except NotConnectedError as exc:
        print(
            f"error: cannot reach the coordinator at {args.server}: {exc.message}", file=sys.stderr
        )
        return EXIT_ERROR
    except _NoSuchNode as exc:
        print(f"error: NO_NODE: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ServerError as exc:
        subject = path if path is not None else exc.message
        print(f"error: {exc.name}: {subject}", file=sys.stderr)
        return EXIT_ERROR
    except (ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # stdout closed early (e.g. piped into head): not a failure of ours.
        sys.stderr.close()
        return EXIT_OK
    return EXIT_OK

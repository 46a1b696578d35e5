"""``coordinator serve``: run the server until SIGTERM or SIGINT.

Every CoordinatorConfig field is also a flag (``--max-data-bytes`` for
``max_data_bytes``, ``--fsync/--no-fsync`` for booleans); flags override the
``--config`` TOML file, which overrides the defaults.

With ``--metrics-port`` the process also serves /metrics and /health over HTTP
(client.observability) and prints ``metrics listening on HOST:PORT`` after its
ready line; ``--log-json`` turns the log into JSON lines.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import trio

from client.observability import Observability, configure_logging
from coordinator.config import ConfigError, CoordinatorConfig, field_docs, field_type
from coordinator.server import serve
from coordinator.txnlog import TxnLogError

logger = logging.getLogger("coordinator")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``serve`` on the ``coordinator`` command's subparsers."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="run a coordinator server",
        description="Run a coordinator server until SIGTERM or SIGINT.",
    )
    parser.add_argument("--config", type=Path, help="TOML file with CoordinatorConfig keys")
    docs = field_docs()
    for f in fields(CoordinatorConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = field_type(f.name)
        help_text = f"{docs.get(f.name, '')} (default: {f.default})"
        if kind is bool:
            parser.add_argument(
                flag,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            parser.add_argument(flag, dest=f.name, type=kind, default=None, help=help_text)
    parser.set_defaults(func=run)
    return parser


def config_from_args(args: argparse.Namespace) -> CoordinatorConfig:
    """Defaults, then the --config file, then the flags given."""
    base = CoordinatorConfig() if args.config is None else CoordinatorConfig.from_toml(args.config)
    return base.with_overrides({f.name: getattr(args, f.name, None) for f in fields(base)})


async def _main(config: CoordinatorConfig) -> None:
    observe = Observability() if config.metrics_port >= 0 else None
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            metrics_port: int | None = None
            if observe is not None:
                # Listening before recovery, so /health answers 503 while the log opens.
                endpoint = observe.server(config.host, config.metrics_port)
                metrics_port = await nursery.start(endpoint.run)
            port = await nursery.start(_serve, config, observe)
            print(f"coordinator listening on {config.host}:{port}", flush=True)
            if metrics_port is not None:
                print(f"metrics listening on {config.host}:{metrics_port}", flush=True)
            async for signum in signals:
                logger.info("received %s; shutting down", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


async def _serve(
    config: CoordinatorConfig, observe: Observability | None, *, task_status: trio.TaskStatus[int]
) -> None:
    await serve(config, observe=observe, task_status=task_status)


def run(args: argparse.Namespace) -> int:
    """The ``serve`` subcommand; returns the exit code."""
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"coordinator serve: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level, config.log_json)
    try:
        trio.run(_main, config)
    except (OSError, TxnLogError, ValueError, ExceptionGroup) as exc:
        leaves = _leaves(exc)
        if all(isinstance(e, _EXPECTED) for e in leaves):
            # Environment problems (address in use, locked or damaged data dir): no traceback.
            for leaf in leaves:
                logger.error("coordinator failed: %s: %s", type(leaf).__name__, leaf)
        else:
            logger.error("coordinator failed", exc_info=exc)
        return 1
    return 0


_EXPECTED = (OSError, TxnLogError, ValueError)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]

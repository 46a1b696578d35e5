"""``broker serve``: run the broker daemon until SIGTERM or SIGINT.

Every BrokerConfig field is also a flag (``--segment-bytes`` for
``segment_bytes``, ``--auto-create-topics/--no-auto-create-topics`` for
booleans; ``--id`` is short for ``--broker-id``). Flags override the
``--config`` TOML file, which overrides the defaults. The line
``broker <id> listening on HOST:PORT`` is printed once the broker fully serves.

With ``--metrics-port`` the process also serves /metrics and /health over HTTP
(the broker's and its embedded coordinator's; client.observability) and prints
``metrics listening on HOST:PORT`` after the ready line; ``--log-json`` turns
the log into JSON lines.
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

from broker.config import BrokerConfig, ConfigError, field_docs, field_type, load_toml
from broker.data_dir import DataDirError
from broker.server import serve
from client.observability import Observability, configure_logging
from coordinator.errors import CoordinatorError

logger = logging.getLogger("broker")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``serve`` on the ``broker`` command's subparsers."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="run a broker (with an embedded coordinator unless --coordinator is given)",
        description="Run a broker until SIGTERM or SIGINT. Without --coordinator it also "
        "runs a coordinator in the same process, so this one command is a working "
        "single-node cluster.",
    )
    parser.add_argument("--config", type=Path, help="TOML file with BrokerConfig keys")
    docs = field_docs()
    for f in fields(BrokerConfig):
        flags = ["--" + f.name.replace("_", "-")]
        if f.name == "broker_id":
            flags.append("--id")
        kind = field_type(f.name)
        help_text = f"{docs.get(f.name, '')} (default: {f.default})".replace("%", "%%")
        if kind is bool:
            parser.add_argument(
                *flags,
                dest=f.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            parser.add_argument(*flags, dest=f.name, type=kind, default=None, help=help_text)
    parser.set_defaults(func=run)
    return parser


def config_from_args(args: argparse.Namespace) -> tuple[BrokerConfig, dict[str, Any]]:
    """Defaults, then the --config file, then the flags given."""
    embedded: dict[str, Any] = {}
    if args.config is None:
        base = BrokerConfig()
    else:
        base, embedded = load_toml(args.config)
    overrides = {f.name: getattr(args, f.name, None) for f in fields(base)}
    return base.with_overrides(overrides), embedded


async def _main(config: BrokerConfig, embedded: dict[str, Any]) -> None:
    stop = trio.Event()
    observe = Observability() if config.metrics_port >= 0 else None
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_on_signals, signals, stop, nursery.cancel_scope)
            metrics_port: int | None = None
            if observe is not None:
                # Listening from the start, so /health answers 503 until the broker serves.
                endpoint = observe.server(config.host, config.metrics_port)
                metrics_port = await nursery.start(endpoint.run)
            port = await nursery.start(
                _serve, config, embedded, stop, nursery.cancel_scope, observe
            )
            print(f"broker {config.broker_id} listening on {config.host}:{port}", flush=True)
            if metrics_port is not None:
                print(f"metrics listening on {config.host}:{metrics_port}", flush=True)


async def _on_signals(signals: Any, stop: trio.Event, scope: trio.CancelScope) -> None:
    """First signal: shut down cleanly. Second: stop at once."""
    async for signum in signals:
        if stop.is_set():
            logger.warning("received %s again; stopping now", signal.Signals(signum).name)
            scope.cancel()
            return
        logger.info("received %s; shutting down", signal.Signals(signum).name)
        stop.set()


async def _serve(
    config: BrokerConfig,
    embedded: dict[str, Any],
    stop: trio.Event,
    done: trio.CancelScope,
    observe: Observability | None,
    *,
    task_status: trio.TaskStatus[int],
) -> None:
    try:
        await serve(config, embedded, stop, observe=observe, task_status=task_status)
    finally:
        done.cancel()  # the broker is down: stop listening for signals too


def run(args: argparse.Namespace) -> int:
    """The ``serve`` subcommand; returns the exit code."""
    try:
        config, embedded = config_from_args(args)
    except ConfigError as exc:
        print(f"broker serve: {exc}", file=sys.stderr)
        return 2
    configure_logging(config.log_level, config.log_json)
    try:
        trio.run(_main, config, embedded)
    except (ConfigError, DataDirError) as exc:
        print(f"broker serve: {exc}", file=sys.stderr)
        return 2
    except (OSError, CoordinatorError, ValueError) as exc:
        logger.error("broker failed: %s", exc, exc_info=True)
        return 1
    except BaseExceptionGroup as group:
        errors = _leaves(group)
        usage = [e for e in errors if isinstance(e, ConfigError | DataDirError)]
        if usage and len(usage) == len(errors):
            print(f"broker serve: {usage[0]}", file=sys.stderr)
            return 2
        if any(isinstance(e, KeyboardInterrupt) for e in errors):
            return 130
        logger.error("broker failed", exc_info=group)
        return 1
    return 0


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out.extend(_leaves(exc))
        else:
            out.append(exc)
    return out

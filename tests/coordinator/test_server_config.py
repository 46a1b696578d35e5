"""CoordinatorConfig (TOML, flags) and the embeddable ``serve()`` entry point."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
import trio

from client.wire import RpcChannel
from coordinator.cli import build_parser
from coordinator.config import ConfigError, CoordinatorConfig, field_docs
from coordinator.errors import ERRORS
from coordinator.protocol import Api
from coordinator.serve_command import config_from_args
from coordinator.server import serve


def test_every_field_is_documented() -> None:
    docs = field_docs()
    for f in fields(CoordinatorConfig):
        assert docs.get(f.name), f"{f.name} has no docstring"
        assert "\n" not in docs[f.name]


def test_toml_and_flags(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('port = 3000\nmax_data_bytes = 10\nfsync = false\ndata_dir = "/srv/x"\n')
    config = CoordinatorConfig.from_toml(toml)
    assert (config.port, config.max_data_bytes, config.fsync) == (3000, 10, False)
    assert config.data_dir == Path("/srv/x") and config.log_dir == Path("/srv/x/log")
    args = build_parser().parse_args(
        ["serve", "--config", str(toml), "--port", "4000", "--fsync", "--tick-ms", "7"]
    )
    merged = config_from_args(args)
    assert (merged.port, merged.fsync, merged.tick_ms, merged.max_data_bytes) == (4000, True, 7, 10)
    section = tmp_path / "s.toml"
    section.write_text("[coordinator]\nport = 5\n")
    assert CoordinatorConfig.from_toml(section).port == 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("prot = 1\n", "unknown key(s) prot"),
        ('port = "80"\n', "port must be an integer"),
        ("fsync = 1\n", "fsync must be true or false"),
        ("port = 70000\n", "port must be 0..65535"),
        ("min_session_timeout_ms = 9\nmax_session_timeout_ms = 5\n", "min_session_timeout_ms"),
        ('log_level = "LOUD"\n', "log_level"),
        ("port = \n", "invalid TOML"),
    ],
)
def test_bad_config(tmp_path: Path, text: str, message: str) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        CoordinatorConfig.from_toml(toml)


def test_serve_command_reports_config_errors(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text("colour = 'blue'\n")
    proc = subprocess.run(
        [sys.executable, "-m", "coordinator", "serve", "--config", str(toml)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown key(s) colour" in proc.stderr


async def test_serve_embedded(tmp_path: Path) -> None:
    config = CoordinatorConfig(port=0, data_dir=tmp_path / "embedded")
    async with trio.open_nursery() as nursery:
        port = await nursery.start(_serve, config)
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        channel = RpcChannel(stream, ERRORS)
        nursery.start_soon(channel.run)
        await channel.call(int(Api.CONNECT), 0, {"timeout_ms": 5000})
        await channel.call(int(Api.CREATE), 0, {"path": "/embedded", "data": b"yes"})
        await channel.aclose()
        nursery.cancel_scope.cancel()
    # Cancellation is a clean shutdown: a final snapshot was written.
    assert list((tmp_path / "embedded" / "snapshot").iterdir())


async def _serve(config: CoordinatorConfig, *, task_status: trio.TaskStatus[int]) -> None:
    await serve(config, task_status=task_status)

"""The ``coordinator`` zkCli-like commands, each run as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from coordinator.client import CoordinatorClient
from tests.coordinator.test_client import find_free_port
from tests.procs import ServerProcess


def cli(server: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "RIVULET_COORDINATOR"}
    return subprocess.run(
        [sys.executable, "-m", "coordinator", "--server", server, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_create_get_set_ls_stat_delete(coordinator_server: ServerProcess) -> None:
    addr = coordinator_server.address
    out = cli(addr, "create", "-p", "/cli/a/b", "hello")
    assert (out.returncode, out.stdout) == (0, "Created /cli/a/b\n")
    out = cli(addr, "create", "-s", "/cli/seq-")
    assert out.returncode == 0 and out.stdout.startswith("Created /cli/seq-0")

    out = cli(addr, "get", "/cli/a/b")
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert lines[0] == "hello"
    assert "dataVersion = 0" in lines and "dataLength = 5" in lines
    assert "ephemeralOwner = 0x0" in lines

    assert cli(addr, "set", "/cli/a/b", "bye", "-v", "0").returncode == 0
    out = cli(addr, "set", "/cli/a/b", "again", "-v", "0")
    assert out.returncode == 1 and out.stderr.strip() == "error: BAD_VERSION: /cli/a/b"

    out = cli(addr, "stat", "/cli/a/b")
    assert out.returncode == 0 and "dataVersion = 1" in out.stdout.splitlines()

    out = cli(addr, "ls", "/cli")
    assert out.returncode == 0
    assert out.stdout.splitlines()[0] == "a" and len(out.stdout.splitlines()) == 2
    out = cli(addr, "ls", "-R", "/cli/a")
    assert out.stdout.splitlines() == ["/cli/a", "/cli/a/b"]

    out = cli(addr, "delete", "/cli/a")
    assert out.returncode == 1 and out.stderr.startswith("error: NOT_EMPTY: /cli/a")
    assert cli(addr, "delete", "-r", "/cli").returncode == 0
    out = cli(addr, "ls", "/")
    assert "cli" not in out.stdout.split()


def test_failures_and_exit_codes(coordinator_server: ServerProcess) -> None:
    addr = coordinator_server.address
    out = cli(addr, "get", "/missing")
    assert (out.returncode, out.stdout, out.stderr) == (1, "", "error: NO_NODE: /missing\n")
    out = cli(addr, "stat", "/missing")
    assert (out.returncode, out.stderr) == (1, "error: NO_NODE: /missing\n")
    out = cli(addr, "create", "no-slash")
    assert out.returncode == 2 and "must start with '/'" in out.stderr
    assert cli(addr, "frobnicate").returncode == 2
    assert cli(addr, "create", "--ttl", "-1", "/x").returncode == 2
    out = cli(f"127.0.0.1:{find_free_port()}", "--timeout", "0.5", "ls", "/")
    assert out.returncode == 1
    assert out.stderr.startswith("error: cannot reach the coordinator at 127.0.0.1:")


def test_server_stat(coordinator_server: ServerProcess) -> None:
    out = cli(coordinator_server.address, "stat")
    assert out.returncode == 0
    keys = [line.split(":", 1)[0] for line in out.stdout.splitlines()]
    assert keys == [
        "Coordinator version",
        "Latency min/avg/max",
        "Connections",
        "Outstanding",
        "Zxid",
        "Node count",
        "Ephemerals",
        "Sessions",
        "Watches",
        "Uptime",
        "Data dir",
    ]


def test_server_address_from_the_environment(coordinator_server: ServerProcess) -> None:
    env = {**os.environ, "RIVULET_COORDINATOR": coordinator_server.address}
    out = subprocess.run(
        [sys.executable, "-m", "coordinator", "ls", "/"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert out.returncode == 0, out.stderr


def test_watch_prints_events_until_count(coordinator_server: ServerProcess) -> None:
    addr = coordinator_server.address
    env = {k: v for k, v in os.environ.items() if k != "RIVULET_COORDINATOR"}
    with CoordinatorClient(addr) as zk:
        zk.create("/watched")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "coordinator",
                "--server",
                addr,
                "watch",
                "-R",
                "/watched",
                "--count",
                "3",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert proc.stderr is not None
            assert proc.stderr.readline().startswith("watching /watched")
            zk.create("/watched/x")
            zk.set("/watched/x", b"1")
            zk.delete("/watched/x")
            stdout, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    assert proc.returncode == 0
    assert [line.split()[:2] for line in stdout.splitlines()] == [
        ["created", "/watched/x"],
        ["data_changed", "/watched/x"],
        ["deleted", "/watched/x"],
    ]


def test_watch_ends_cleanly_on_ctrl_c(coordinator_server: ServerProcess) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RIVULET_COORDINATOR"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "coordinator", "--server", coordinator_server.address, "watch", "/"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        assert proc.stderr.readline().startswith("watching / (persistent)")
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0

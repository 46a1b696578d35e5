"""The console tools (``broker topics|produce|consume``) as subprocesses against a broker."""

from __future__ import annotations

import socket
import subprocess
import sys

from tests.procs import ServerProcess


def broker_cmd(
    address: str, *args: str, stdin: str = "", timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker", *args, "--bootstrap", address],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_topics_produce_consume(shared_broker: ServerProcess) -> None:
    address = shared_broker.address
    created = broker_cmd(
        address, "topics", "create", "cli", "--partitions", "2", "--config", "retention.ms=60000"
    )
    assert created.returncode == 0, created.stderr
    assert "Created topic cli." in created.stdout
    again = broker_cmd(address, "topics", "create", "cli")
    assert again.returncode == 1 and "TOPIC_ALREADY_EXISTS" in again.stderr
    assert broker_cmd(address, "topics", "create", "cli", "--if-not-exists").returncode == 0
    listed = broker_cmd(address, "topics", "list")
    assert "cli" in listed.stdout.split()
    described = broker_cmd(address, "topics", "describe", "cli")
    assert described.returncode == 0
    assert "PartitionCount: 2" in described.stdout and "retention.ms=60000" in described.stdout
    assert described.stdout.count("Leader: 0") == 2

    produced = broker_cmd(
        address, "produce", "cli", "--key-separator", ":", stdin="k1:one\nk2:two\nk1:three\n"
    )
    assert produced.returncode == 0, produced.stderr
    consumed = broker_cmd(
        address, "consume", "cli", "--from-beginning", "--max", "3", "--print-key"
    )
    assert consumed.returncode == 0, consumed.stderr
    lines = consumed.stdout.splitlines()
    assert sorted(lines) == ["k1\tone", "k1\tthree", "k2\ttwo"]
    # Records of one key keep their order (same partition).
    assert lines.index("k1\tone") < lines.index("k1\tthree")

    one_partition = broker_cmd(
        address, "consume", "cli", "--from-beginning", "--partition", "0", "--timeout-ms", "500"
    )
    other = broker_cmd(
        address, "consume", "cli", "--from-beginning", "--partition", "1", "--timeout-ms", "500"
    )
    assert sorted(one_partition.stdout.split() + other.stdout.split()) == ["one", "three", "two"]

    bad_line = broker_cmd(address, "produce", "cli", "--key-separator", ":", stdin="nokey\n")
    assert bad_line.returncode == 2 and "separator" in bad_line.stderr

    deleted = broker_cmd(address, "topics", "delete", "cli")
    assert deleted.returncode == 0 and "Deleted topic cli." in deleted.stdout
    assert "cli" not in broker_cmd(address, "topics", "list").stdout.split()


def test_errors_and_exit_codes(shared_broker: ServerProcess) -> None:
    address = shared_broker.address
    missing = broker_cmd(address, "consume", "nosuchtopic", "--timeout-ms", "100")
    assert missing.returncode == 1 and "UNKNOWN_TOPIC_OR_PARTITION" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad_name = broker_cmd(address, "topics", "create", "bad name")
    assert bad_name.returncode == 2 and "bad name" in bad_name.stderr
    delete_missing = broker_cmd(address, "topics", "delete", "nosuchtopic")
    assert delete_missing.returncode == 1
    assert broker_cmd(address, "topics", "delete", "nosuchtopic", "--if-exists").returncode == 0
    bad_config = broker_cmd(address, "topics", "create", "cfg", "--config", "retention.ms")
    assert bad_config.returncode == 2 and "KEY=VALUE" in bad_config.stderr
    unreachable = broker_cmd(f"127.0.0.1:{closed_port()}", "topics", "list")
    assert unreachable.returncode == 3, unreachable.stderr
    assert "Traceback" not in unreachable.stderr

"""Group administration: the Admin client's group calls and ``broker groups`` as a
subprocess (output and exit codes), against a real broker process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from client import (
    Admin,
    GroupListing,
    GroupOffset,
    OffsetAndMetadata,
)
from client.protocol import GroupIdNotFoundError, NonEmptyGroupError, UnknownTopicOrPartitionError
from client.types import TopicPartition as TP
from tests.groups.test_consumer_groups import create, group_consumer, produce, read
from tests.procs import ServerProcess

ROOT = Path(__file__).resolve().parents[2]


def test_admin_lists_describes_resets_and_deletes_groups(group_broker: ServerProcess) -> None:
    address, group, topic = group_broker.address, "g-adm", "adm-t"
    create(address, topic, 2)
    produce(address, topic, {0: 10, 1: 20})
    tp0, tp1 = TP(topic, 0), TP(topic, 1)
    consumer = group_consumer(address, group, enable_auto_commit=False, client_id="adm-client")
    try:
        consumer.subscribe([topic])
        read(consumer, 30)
        consumer.commit({tp0: 4, tp1: OffsetAndMetadata(20, "done")})
        member_id = consumer.group_metadata().member_id
        with Admin(address) as admin:
            assert GroupListing(group, "stable") in admin.list_groups()
            assert group not in {g.group_id for g in admin.list_groups(["empty"])}
            desc = admin.describe_group(group)
            assert (desc.state, desc.assignor) == ("stable", "uniform")
            assert desc.group_epoch == desc.assignment_epoch >= 1
            (member,) = desc.members
            assert member.member_id == member_id and member.client_id == "adm-client"
            assert member.assignment == member.target_assignment == {tp0, tp1}
            assert member.subscribed_topics == (topic,) and member.pending_revocation == set()
            assert desc.owner(tp0) == member
            offsets = admin.list_group_offsets(group)
            assert offsets == {
                tp0: GroupOffset(4, "", 10),
                tp1: GroupOffset(20, "done", 20),
            }
            assert (offsets[tp0].lag, offsets[tp1].lag) == (6, 0)

            with pytest.raises(NonEmptyGroupError, match="active member"):
                admin.reset_offsets(group, topic, to="earliest")
            with pytest.raises(NonEmptyGroupError):
                admin.delete_group(group)
            consumer.close()

            assert admin.describe_group(group).members == ()
            assert admin.reset_offsets(group, topic, to="earliest") == {tp0: 0, tp1: 0}
            assert admin.reset_offsets(group, topic, offset=15) == {tp0: 10, tp1: 15}  # clamped
            assert admin.reset_offsets(group, topic, to="latest", dry_run=True) == {
                tp0: 10,
                tp1: 20,
            }
            assert admin.list_group_offsets(group)[tp1].offset == 15  # a dry run changes nothing
            assert admin.reset_offsets(group, topic, timestamp=0, partitions=[1]) == {tp1: 0}
            assert admin.reset_offsets(group, topic, timestamp=2**62) == {tp0: 10, tp1: 20}
            assert admin.list_group_offsets(group, [tp0, TP(topic, 7)]) == {
                tp0: GroupOffset(10, "", 10),
                TP(topic, 7): GroupOffset(None, "", None),
            }
            with pytest.raises(ValueError):
                admin.reset_offsets(group, topic, to="earliest", offset=3)
            with pytest.raises(ValueError):
                admin.reset_offsets(group, topic, to="middle")
            with pytest.raises(UnknownTopicOrPartitionError):
                admin.reset_offsets(group, topic, to="earliest", partitions=[5])
            with pytest.raises(UnknownTopicOrPartitionError):
                admin.reset_offsets(group, "no-such-topic", to="earliest")

            admin.delete_group(group)
            with pytest.raises(GroupIdNotFoundError):
                admin.describe_group(group)
            with pytest.raises(GroupIdNotFoundError):
                admin.delete_group(group)
            assert admin.list_group_offsets(group) == {}
    finally:
        consumer.close()


def groups_cli(bootstrap: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "broker", "groups", *args, "--bootstrap", bootstrap],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def rows(output: str, first: str) -> list[list[str]]:
    """The rows of the table whose header starts with ``first`` (cells split on spaces)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first))
    out = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        out.append(line.split())
    return out


@pytest.mark.slow
def test_groups_command(group_broker: ServerProcess) -> None:
    address, group, topic = group_broker.address, "g-cli", "cli-t"
    create(address, topic, 2)
    produce(address, topic, {0: 5, 1: 8})
    consumer = group_consumer(address, group, enable_auto_commit=False, client_id="cli-client")
    try:
        consumer.subscribe([topic])
        read(consumer, 13)
        consumer.commit({TP(topic, 0): 5, TP(topic, 1): 3})
        member_id = consumer.group_metadata().member_id

        listed = groups_cli(address, "list")
        assert listed.returncode == 0, listed.stderr
        assert [group, "stable"] in rows(listed.stdout, "GROUP")

        described = groups_cli(address, "describe", group)
        assert described.returncode == 0, described.stderr
        assert f"Group: {group}  State: stable" in described.stdout
        assert rows(described.stdout, "MEMBER-ID")[0][0] == member_id
        assert rows(described.stdout, "TOPIC") == [
            [topic, "0", member_id, "cli-client", "5", "5", "0"],
            [topic, "1", member_id, "cli-client", "3", "8", "5"],
        ]

        refused = groups_cli(address, "reset-offsets", group, "--topic", topic, "--to-earliest")
        assert refused.returncode == 1
        assert "active member" in refused.stderr and "stop its consumers" in refused.stderr
        refused = groups_cli(address, "delete", group)
        assert refused.returncode == 1 and "NON_EMPTY_GROUP" in refused.stderr
    finally:
        consumer.close()

    reset = groups_cli(address, "reset-offsets", group, "--topic", topic, "--to-offset", "2")
    assert reset.returncode == 0, reset.stderr
    assert rows(reset.stdout, "TOPIC") == [[topic, "0", "2"], [topic, "1", "2"]]
    described = groups_cli(address, "describe", group)
    assert "State: empty" in described.stdout and "Members: 0" in described.stdout
    assert rows(described.stdout, "TOPIC") == [
        [topic, "0", "-", "-", "2", "5", "3"],
        [topic, "1", "-", "-", "2", "8", "6"],
    ]
    dry = groups_cli(address, "reset-offsets", group, "--topic", topic, "--to-latest", "--dry-run")
    assert dry.returncode == 0 and rows(dry.stdout, "TOPIC")[1] == [topic, "1", "8"]
    assert "dry run" in dry.stdout
    old = groups_cli(
        address, "reset-offsets", group, "--topic", topic, "--to-datetime", "2001-01-01T00:00:00"
    )
    assert old.returncode == 0 and rows(old.stdout, "TOPIC")[1] == [topic, "1", "0"]

    bad = groups_cli(address, "reset-offsets", group, "--topic", topic, "--to-datetime", "soon")
    assert bad.returncode == 2 and "ISO 8601" in bad.stderr
    missing = groups_cli(address, "reset-offsets", group, "--topic", topic)
    assert missing.returncode == 2  # one of --to-* is required

    deleted = groups_cli(address, "delete", group)
    assert deleted.returncode == 0 and f"Deleted group {group}." in deleted.stdout
    gone = groups_cli(address, "describe", group)
    assert gone.returncode == 1 and "does not exist" in gone.stderr
    unreachable = groups_cli("127.0.0.1:1", "list")
    assert unreachable.returncode == 3

"""BrokerConfig (TOML, flags, validation) and topic configs under Kafka's names."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.cli import build_parser
from broker.commands.serve import config_from_args
from broker.config import BrokerConfig, ConfigError, defaults, field_docs, load_toml, parse_hosts
from broker.topic_config import TOPIC_CONFIGS, apply_alter, settings, validate_overrides
from broker.topic_names import topic_name_problem, validate_topic_name
from client.protocol import InvalidConfigError, InvalidTopicError


def test_every_field_is_documented() -> None:
    assert set(field_docs()) == set(defaults())
    assert all(field_docs().values())


def test_toml_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "broker.toml"
    path.write_text(
        'broker_id = 3\nport = 9999\nretention_ms = 1000\ncleanup_policy = "compact"\n'
        "[embedded_coordinator]\ntick_ms = 50\n"
    )
    args = build_parser().parse_args(
        ["serve", "--config", str(path), "--port", "7000", "--id", "4"]
    )
    config, embedded = config_from_args(args)
    assert (config.broker_id, config.port, config.retention_ms) == (4, 7000, 1000)
    assert config.cleanup_policy == "compact"
    assert embedded == {"tick_ms": 50}
    args = build_parser().parse_args(["serve", "--no-auto-create-topics"])
    assert config_from_args(args)[0].auto_create_topics is False


def test_broker_table_form(tmp_path: Path) -> None:
    path = tmp_path / "broker.toml"
    path.write_text("[broker]\nbroker_id = 2\n")
    assert load_toml(path)[0].broker_id == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no_such_key = 1\n", "unknown key"),
        ('port = "x"\n', "must be an integer"),
        ("auto_create_topics = 1\n", "true or false"),
        ('flush_policy = "sometimes"\n', "flush_policy"),
        ("port = 70000\n", "port"),
        ("num_partitions = 0\n", "num_partitions"),
        ('coordinator = "nohost"\n', "HOST:PORT"),
        ("[broker]\nport = 1\n[other]\nx = 1\n", "outside"),
        ("port = \n", "invalid TOML"),
    ],
)
def test_bad_files_are_clear_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "broker.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_toml(path)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_toml(Path("/nonexistent/broker.toml"))


def test_parse_hosts() -> None:
    assert parse_hosts("a:1,b:2") == [("a", 1), ("b", 2)]
    assert parse_hosts("[::1]:2181") == [("::1", 2181)]


def test_topic_config_validation_and_defaults() -> None:
    broker = BrokerConfig(retention_ms=5000, segment_bytes=4096)
    assert validate_overrides({"cleanup.policy": "delete,compact"}) == {
        "cleanup.policy": "compact,delete"
    }
    for bad in (
        {"retention.ms": "soon"},
        {"retention.ms": "-2"},
        {"segment.bytes": "10"},
        {"cleanup.policy": "shred"},
        {"unclean.leader.election.enable": "yes"},
        {"nope": "1"},
        {"retention.ms": 5},
    ):
        with pytest.raises(InvalidConfigError):
            validate_overrides(bad)
    s = settings({"retention.ms": "100"}, broker)
    assert (s.retention_ms, s.segment_bytes) == (100, 4096)
    assert s.log_config().flush == "never"
    assert apply_alter({"retention.ms": "100"}, {"segment.ms": "5"}, ["retention.ms"]) == {
        "segment.ms": "5"
    }
    assert set(TOPIC_CONFIGS) >= {
        "retention.ms",
        "retention.bytes",
        "segment.bytes",
        "segment.ms",
        "cleanup.policy",
        "max.message.bytes",
    }


def test_topic_names() -> None:
    for good in ("a", "A.b_c-9", "x" * 249, "__consumer_offsets"):
        assert topic_name_problem(good) is None
        assert validate_topic_name(good) == good
    for bad in ("", ".", "..", "x" * 250, "a b", "a/b", "ü", 5, None):
        assert topic_name_problem(bad) is not None
        with pytest.raises(InvalidTopicError):
            validate_topic_name(bad)


def test_docs_tables_match_the_code() -> None:
    from broker.config import markdown_table as broker_table
    from broker.topic_config import markdown_table as topic_table

    doc = (Path(__file__).resolve().parents[2] / "docs" / "broker.md").read_text()
    assert broker_table() in doc, "regenerate the config table of docs/broker.md"
    assert topic_table() in doc, "regenerate the topic config table of docs/broker.md"

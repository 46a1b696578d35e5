"""Serializers, deserializers and the typed client configs."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.config import (
    AdminConfig,
    ConsumerConfig,
    ProducerConfig,
    build_config,
    parse_bootstrap,
)
from client.serializers import (
    DESERIALIZERS,
    SERIALIZERS,
    resolve_deserializer,
    resolve_serializer,
    serialize_bytes,
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)


@pytest.mark.parametrize("name", ["json", "msgpack"])
@given(value=json_values)
def test_structured_serializers_round_trip(name: str, value: Any) -> None:
    data = SERIALIZERS[name](value)
    if value is None:
        assert data is None
    else:
        assert isinstance(data, bytes)
    assert DESERIALIZERS[name](data) == value


@given(st.text())
def test_str_round_trip(text: str) -> None:
    data = SERIALIZERS["str"](text)
    assert DESERIALIZERS["str"](data) == text


def test_bytes_serializer_accepts_buffers_and_rejects_others() -> None:
    assert serialize_bytes(b"x") == b"x"
    assert serialize_bytes(bytearray(b"ab")) == b"ab"
    assert serialize_bytes(memoryview(b"cd")) == b"cd"
    assert serialize_bytes(None) is None
    with pytest.raises(TypeError, match="configure a serializer"):
        serialize_bytes("text")
    with pytest.raises(TypeError):
        SERIALIZERS["str"](b"bytes")


def test_resolving_serializers() -> None:
    assert resolve_serializer(None) is None
    assert resolve_serializer("bytes") is None
    assert resolve_serializer("json") is SERIALIZERS["json"]
    assert resolve_deserializer("bytes") is None
    assert resolve_deserializer("str") is DESERIALIZERS["str"]

    def custom(v: Any) -> bytes:
        return repr(v).encode()

    assert resolve_serializer(custom) is custom
    with pytest.raises(ValueError, match="unknown serializer"):
        resolve_serializer("yaml")
    with pytest.raises(ValueError, match="unknown deserializer"):
        resolve_deserializer("yaml")
    with pytest.raises(TypeError):
        resolve_serializer(42)  # type: ignore[arg-type]


def test_parse_bootstrap() -> None:
    assert parse_bootstrap("a:1,b:2") == [("a", 1), ("b", 2)]
    assert parse_bootstrap(" a:1 , ") == [("a", 1)]
    assert parse_bootstrap(["h:9092"]) == [("h", 9092)]
    assert parse_bootstrap("[::1]:9092") == [("::1", 9092)]
    for bad in ("", "host", "host:", "host:x", "host:70000", ":9092"):
        with pytest.raises(ValueError):
            parse_bootstrap(bad)
    with pytest.raises(TypeError):
        parse_bootstrap(9092)  # type: ignore[arg-type]


def test_producer_config_defaults_and_idempotence_rules() -> None:
    cfg = ProducerConfig()
    assert cfg.acks_value == -1 and cfg.idempotent
    assert ProducerConfig(acks=1).idempotent is False  # as Kafka: implied off
    assert ProducerConfig(acks="all", max_in_flight=10).idempotent is False
    assert ProducerConfig(acks=0, enable_idempotence=False).acks_value == 0
    with pytest.raises(ValueError, match="needs acks='all'"):
        ProducerConfig(acks=1, enable_idempotence=True)
    with pytest.raises(ValueError, match="max_in_flight <= 5"):
        ProducerConfig(max_in_flight=6, enable_idempotence=True)


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"acks": 2}, ValueError),
        ({"compression": "snappy"}, ValueError),
        ({"batch_size": 0}, ValueError),
        ({"batch_size": "big"}, TypeError),
        ({"linger_ms": -1}, ValueError),
        ({"max_in_flight": 0}, ValueError),
        ({"buffer_memory": 10}, ValueError),
        ({"request_timeout_ms": 0}, ValueError),
        ({"partitioner": 3}, TypeError),
        ({"client_id": 5}, TypeError),
    ],
)
def test_bad_producer_settings(settings: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        ProducerConfig(**settings)


def test_consumer_and_admin_config_validation() -> None:
    assert ConsumerConfig().auto_offset_reset == "latest"
    with pytest.raises(ValueError, match="auto_offset_reset"):
        ConsumerConfig(auto_offset_reset="middle")
    with pytest.raises(ValueError):
        ConsumerConfig(max_poll_records=0)
    with pytest.raises(TypeError):
        ConsumerConfig(check_crcs="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        AdminConfig(default_api_timeout_ms=0)


def test_build_config_names_unknown_settings_and_applies_overrides() -> None:
    with pytest.raises(TypeError, match="unknown ProducerConfig settings: lingerms"):
        build_config(ProducerConfig, None, {"lingerms": 3})
    base = ProducerConfig(acks=1)
    cfg = build_config(ProducerConfig, base, {"linger_ms": 7})
    assert cfg.acks == 1 and cfg.linger_ms == 7
    with pytest.raises(TypeError, match="must be a ProducerConfig"):
        build_config(ProducerConfig, ConsumerConfig(), {})

"""The recipes' sans-IO parts, without a server: naming, ordering, hold states, and
the counter's lost-answer decisions driven by scripted operation results."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coordinator.client import ConnectionState
from coordinator.errors import NotConnectedError
from coordinator.protocol import Stat
from coordinator.recipes import CounterOutcomeUnknownError, HoldState
from coordinator.recipes._nodes import decode_participant, encode_participant
from coordinator.recipes._ops import Call, Deadline, Op, Session, Sleep, Steps
from coordinator.recipes.counter import CounterCore, decode_counter, encode_counter
from coordinator.recipes.holding import Holding
from coordinator.recipes.predecessor import immediate_predecessor, nearest_preceding
from coordinator.recipes.protected import (
    guid_of,
    in_sequence_order,
    new_guid,
    owned,
    protected_name,
    sequence_of,
    unprotected,
)


def test_protected_names() -> None:
    guid = new_guid()
    name = protected_name(guid, "lock-") + "0000000042"
    assert guid_of(name) == guid
    assert unprotected(name) == "lock-0000000042"
    assert sequence_of(name) == 42
    assert guid_of("lock-0000000001") is None
    assert owned([name, protected_name(new_guid(), "lock-") + "0000000001"], guid) == [name]


@given(
    st.lists(
        st.tuples(st.sampled_from(["read-", "write-", "other-"]), st.integers(0, 10**9)),
        unique_by=lambda t: t[1],
    )
)
def test_queue_order_is_by_sequence_not_by_name(nodes: list[tuple[str, int]]) -> None:
    names = [protected_name(new_guid(), kind) + f"{seq:010d}" for kind, seq in nodes]
    ordered = in_sequence_order(names, ("read-", "write-"))
    assert [sequence_of(n) for n in ordered] == sorted(
        seq for kind, seq in nodes if kind != "other-"
    )


def test_blockers() -> None:
    queue = ["r1", "w2", "r3", "r4", "w5"]
    assert immediate_predecessor(queue, 0) is None
    assert immediate_predecessor(queue, 3) == "r3"
    reader = nearest_preceding("w")
    assert reader(queue, 0) is None
    assert reader(queue, 3) == "w2"  # a reader waits for the last writer ahead only
    assert nearest_preceding("w", lambda c: c == "w2")(queue, 3) is None


def test_participant_encoding() -> None:
    raw = encode_participant("host:1", b"\x00data")
    assert decode_participant("n", raw).identifier == "host:1"
    assert decode_participant("n", raw).data == b"\x00data"
    foreign = decode_participant("n", b"plain text")
    assert (foreign.identifier, foreign.data) == ("plain text", b"plain text")


_STATES = st.sampled_from(list(ConnectionState))


@given(st.lists(st.tuples(_STATES, st.sampled_from([7, 8])), max_size=12))
def test_holding_never_regains_after_loss(changes: list[tuple[ConnectionState, int]]) -> None:
    """Once LOST, always LOST; HELD only while connected under the holding session."""
    holding = Holding()
    holding.acquired(7)
    lost = False
    for state, sid in changes:
        holding.on_connection(state, sid)
        lost = (
            lost
            or state is ConnectionState.LOST
            or (state in (ConnectionState.CONNECTED, ConnectionState.RECONNECTED) and sid != 7)
        )
        if lost:
            assert holding.state is HoldState.LOST
            assert not holding.is_held
        elif state is ConnectionState.SUSPENDED:
            assert holding.state is HoldState.SUSPENDED
    holding.released()
    assert holding.state is HoldState.RELEASED


def _stat(version: int) -> Stat:
    return Stat(1, 1, 1, 0, 0, version, 0, 0, 0, 0)


def drive(steps: Steps[Any], respond: Callable[[Op], Any]) -> Any:
    """Run steps with scripted results (exceptions returned by ``respond`` are thrown in)."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            op = steps.send(value) if error is None else steps.throw(error)
        except StopIteration as stop:
            return stop.value
        value, error = None, None
        result = respond(op)
        if isinstance(result, BaseException):
            error = result
        else:
            value = result


def _counter_script(after_loss: Callable[[str], tuple[bytes, Stat]]) -> Callable[[Op], Any]:
    """The node is at 5 (version 3); the first CAS write loses its answer; the read
    after the loss returns ``after_loss(op id of that write)``; a second write works."""
    writes: list[str] = []

    def respond(op: Op) -> Any:
        if isinstance(op, Deadline):
            return None
        if isinstance(op, Sleep):
            return True
        if isinstance(op, Session):
            return (1, 2.0)
        assert isinstance(op, Call)
        if op.method == "get":
            if writes:
                return after_loss(writes[0])
            return encode_counter(5, []), _stat(3)
        if op.method == "set":
            data = op.args[1]
            writes.append(decode_counter("/c", data, 0)[1][0][1])
            if len(writes) == 1:
                return NotConnectedError("connection lost during SET_DATA")
            return _stat(5)
        raise AssertionError(op)

    return respond


def test_counter_lost_answer_but_applied_counts_once() -> None:
    result = drive(
        CounterCore("/c").add(1),
        _counter_script(lambda op: (encode_counter(6, [(4, op)]), _stat(4))),
    )
    assert result == (5, 6)


def test_counter_lost_answer_not_applied_is_retried() -> None:
    core = CounterCore("/c")
    # Version unchanged: it did not apply; the retry (second write) succeeds.
    assert drive(core.add(1), _counter_script(lambda _op: (encode_counter(5, []), _stat(3)))) == (
        5,
        6,
    )
    # Someone else produced version 4: ours did not apply either.
    assert drive(
        core.add(1),
        _counter_script(lambda _op: (encode_counter(9, [(4, "someone-else")]), _stat(4))),
    ) == (9, 10)


def test_counter_outcome_unknown_when_history_overflowed() -> None:
    history = [(v, f"other-{v}") for v in range(40, 24, -1)]  # versions 25..40 only
    with pytest.raises(CounterOutcomeUnknownError):
        drive(
            CounterCore("/c").add(1),
            _counter_script(lambda _op: (encode_counter(99, history), _stat(40))),
        )

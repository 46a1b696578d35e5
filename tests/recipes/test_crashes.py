"""Participants in separate processes, SIGKILLed on schedules chosen by hypothesis.

Each child (tests/recipes/child.py) proves its own exclusion with a kernel
flock on a slot file: a live holder keeps it, a killed one loses it at once,
so a child that finds no free slot has caught two live holders (or more than
max_leases) at the same time. The session timeout is 2 s, so a killed holder's
nodes vanish about 2 s later and the others must carry on.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.procs import ServerProcess
from tests.recipes.conftest import SESSION_TIMEOUT, Children

# Each example costs seconds of real processes: report failures unshrunk.
NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)
SLACK = 6.0  # generous: process start-up and a loaded 2-core machine
_example = itertools.count()

Events = list[tuple[float, int, str]]

schedules = st.lists(
    st.tuples(st.floats(min_value=0.1, max_value=1.2), st.booleans()), min_size=1, max_size=2
)


def _inside(events: Events, dead: set[int]) -> list[int]:
    """Pids in their critical section now (entered, not exited, not killed)."""
    inside: list[int] = []
    for _stamp, pid, event in events:
        if event == "enter":
            inside.append(pid)
        elif event == "exit" and pid in inside:
            inside.remove(pid)
    return [pid for pid in inside if pid not in dead]


def _run_with_kills(
    group: Children, args: list[str], count: int, schedule: list[tuple[float, bool]]
) -> tuple[Events, int]:
    """Start ``count`` children, then per step: wait, SIGKILL one (a holder when asked
    and there is one) and start a replacement. Returns the events and the number
    of critical sections entered after the last kill."""
    procs = [group.spawn(*args) for _ in range(count)]
    assert group.wait_for(lambda ev: sum(e == "ready" for _s, _p, e in ev) >= count, 30)
    assert group.wait_for(lambda ev: any(e == "enter" for _s, _p, e in ev), 15)
    dead: set[int] = set()
    for delay, kill_holder in schedule:
        time.sleep(delay)
        holders = _inside(group.events(), dead)
        by_pid = {p.pid: p for p in procs if p.poll() is None}
        victim = (
            by_pid[holders[0]]
            if kill_holder and holders and holders[0] in by_pid
            else next(iter(by_pid.values()))
        )
        group.kill(victim)
        dead.add(victim.pid)
        procs.remove(victim)
        procs.append(group.spawn(*args))
    killed_at = time.monotonic()
    # Progress: the survivors get in again once the victims' sessions expired.
    assert group.wait_for(
        lambda ev: any(e == "enter" and s > killed_at for s, _p, e in ev),
        SESSION_TIMEOUT + SLACK + 10,
    ), "no progress after the kills"
    group.stop_all()
    events = group.events()
    return events, sum(1 for s, _p, e in events if e == "enter" and s > killed_at)


def _leader_since(since: float) -> Callable[[Events], bool]:
    return lambda events: any(e == "leader" and s > since for s, _p, e in events)


def _check(group: Children, events: Events) -> None:
    violations = [e for e in events if e[2].startswith("VIOLATION")]
    assert violations == [], violations
    assert group.failures() == []


def _group(tmp_path: Path) -> Children:
    workdir = tmp_path / f"example-{next(_example)}"
    workdir.mkdir()
    return Children(workdir)


def _cleanup(group: Children) -> None:
    for proc in group.procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


@pytest.mark.slow
@settings(
    max_examples=2,
    deadline=None,
    phases=NO_SHRINK,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(schedule=schedules)
def test_lock_exclusion_while_holders_are_killed(
    server: ServerProcess, tmp_path: Path, schedule: list[tuple[float, bool]]
) -> None:
    group = _group(tmp_path)
    try:
        path = f"/crash/lock/{group.workdir.name}"
        events, after = _run_with_kills(
            group,
            ["lock", server.address, path, str(group.workdir), "--max-hold", "0.2"],
            3,
            schedule,
        )
        _check(group, events)
        assert after >= 1
        assert sum(e == "enter" for _s, _p, e in events) > len(schedule)
    finally:
        _cleanup(group)


@pytest.mark.slow
@settings(
    max_examples=2,
    deadline=None,
    phases=NO_SHRINK,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(schedule=schedules, max_leases=st.integers(min_value=1, max_value=3))
def test_semaphore_bound_while_holders_are_killed(
    server: ServerProcess, tmp_path: Path, schedule: list[tuple[float, bool]], max_leases: int
) -> None:
    group = _group(tmp_path)
    try:
        path = f"/crash/sem/{group.workdir.name}"
        events, after = _run_with_kills(
            group,
            [
                "semaphore",
                server.address,
                path,
                str(group.workdir),
                "--max-leases",
                str(max_leases),
                "--max-hold",
                "0.2",
            ],
            max_leases + 2,
            schedule,
        )
        _check(group, events)
        assert after >= 1
        # The bound was reached, not only respected: several held leases at once.
        peak = 0
        inside: set[int] = set()
        for _s, pid, event in events:
            if event == "enter":
                inside.add(pid)
                peak = max(peak, len(inside))
            elif event == "exit":
                inside.discard(pid)
        assert peak >= 1
    finally:
        _cleanup(group)


@pytest.mark.slow
@settings(
    max_examples=2,
    deadline=None,
    phases=NO_SHRINK,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(kills=st.integers(min_value=1, max_value=2), pause=st.floats(min_value=0.0, max_value=1.0))
def test_new_leader_within_session_timeout_after_leader_killed(
    server: ServerProcess, tmp_path: Path, kills: int, pause: float
) -> None:
    group = _group(tmp_path)
    try:
        path = f"/crash/election/{group.workdir.name}"
        args = ["election", server.address, path, str(group.workdir), "--lead-for", "600"]
        procs = [group.spawn(*args) for _ in range(3)]
        assert group.wait_for(lambda ev: any(e == "leader" for _s, _p, e in ev), 30)
        for _ in range(kills):
            time.sleep(pause)
            leaders = [p for _s, p, e in group.events() if e == "leader"]
            victim = next(p for p in procs if p.pid == leaders[-1])
            group.kill(victim)
            killed_at = time.monotonic()
            procs.remove(victim)
            procs.append(group.spawn(*args))
            assert group.wait_for(
                _leader_since(killed_at),
                SESSION_TIMEOUT + SLACK,
            ), "no new leader within the session timeout + slack"
            took = next(s for s, _p, e in group.events() if e == "leader" and s > killed_at)
            assert took - killed_at <= SESSION_TIMEOUT + SLACK
        stopping_at = time.monotonic()
        group.stop_all()
        events = group.events()
        _check(group, events)  # the slot flock: never two live leaders at once
        # Leadership changed only when a leader was killed (until the stop, when
        # each resigning leader hands over to the next).
        assert len([e for s, _p, e in events if e == "leader" and s < stopping_at]) == kills + 1
    finally:
        _cleanup(group)


def test_children_stop_cleanly_on_sigterm(server: ServerProcess, tmp_path: Path) -> None:
    group = _group(tmp_path)
    try:
        proc = group.spawn("lock", server.address, "/crash/clean", str(group.workdir))
        assert group.wait_for(lambda ev: any(e == "enter" for _s, _p, e in ev), 30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    except subprocess.TimeoutExpired:
        pytest.fail("the child did not stop on SIGTERM")
    finally:
        _cleanup(group)

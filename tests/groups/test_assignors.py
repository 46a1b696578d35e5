"""The server-side assignors: validity, balance and stickiness (broker.groups.assignors)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from broker.groups.assignors import (
    ASSIGNORS,
    RangeAssignor,
    UniformAssignor,
)
from broker.groups.assignors import MemberSubscription as Sub

TopicPartition = tuple[str, int]


def flat(assignment: dict[str, frozenset[int]]) -> set[TopicPartition]:
    return {(t, p) for t, ps in assignment.items() for p in ps}


def check_valid(
    members: dict[str, Sub],
    counts: dict[str, int],
    result: dict[str, dict[str, frozenset[int]]],
) -> None:
    assert set(result) == set(members)
    seen: set[TopicPartition] = set()
    for m, a in result.items():
        parts = flat(a)
        assert not parts & seen
        seen |= parts
        assert all(t in members[m].topics and p < counts[t] for t, p in parts)
    wanted = {
        (t, p)
        for t, n in counts.items()
        for p in range(n)
        if any(t in s.topics for s in members.values())
    }
    assert seen == wanted


topic_counts = st.dictionaries(st.sampled_from("abcd"), st.integers(0, 12), min_size=1)


@st.composite
def scenarios(
    draw: st.DrawFn, homogeneous: bool
) -> tuple[dict[str, Sub], dict[str, int], dict[str, dict[str, frozenset[int]]]]:
    counts = draw(topic_counts)
    names = sorted(counts)
    n = draw(st.integers(1, 7))
    ids = [f"m{i}" for i in range(n)]
    common = frozenset(draw(st.sets(st.sampled_from(names), min_size=1)))
    members = {
        m: Sub(m, common if homogeneous else frozenset(draw(st.sets(st.sampled_from(names)))))
        for m in ids
    }
    # An arbitrary previous assignment (members that left, topics that shrank, overlaps).
    previous: dict[str, dict[str, frozenset[int]]] = {}
    for m in [*ids, "gone"]:
        chosen = draw(st.sets(st.tuples(st.sampled_from(names), st.integers(0, 14)), max_size=12))
        by_topic: dict[str, set[int]] = {}
        for t, p in chosen:
            by_topic.setdefault(t, set()).add(p)
        previous[m] = {t: frozenset(ps) for t, ps in by_topic.items()}
    return members, counts, previous


@settings(max_examples=300, deadline=None)
@given(scenarios(homogeneous=True))
def test_uniform_homogeneous_is_balanced_and_moves_the_minimum(
    scenario: tuple[dict[str, Sub], dict[str, int], dict[str, dict[str, frozenset[int]]]],
) -> None:
    members, counts, previous = scenario
    result = UniformAssignor().assign(members, counts, previous)
    check_valid(members, counts, result)
    topics = next(iter(members.values())).topics
    total = sum(counts.get(t, 0) for t in topics)
    base, extra = divmod(total, len(members))
    loads = sorted(len(flat(a)) for a in result.values())
    assert loads[0] >= base and loads[-1] <= base + (1 if extra else 0)
    # Minimal moves: what a member held (still valid, first claim wins) beyond its quota.
    taken: set[TopicPartition] = set()
    kept: dict[str, set[TopicPartition]] = {}
    for m in sorted(members):
        mine = {(t, p) for t, p in flat(previous.get(m, {})) if t in topics and p < counts[t]}
        kept[m] = mine - taken
        taken |= kept[m]
    ranked = sorted(members, key=lambda m: -len(kept[m]))
    quota = {m: base + (1 if i < extra else 0) for i, m in enumerate(ranked)}
    minimal = sum(max(0, len(kept[m]) - quota[m]) for m in members)
    moved = sum(len(kept[m] - flat(result[m])) for m in members)
    assert moved == minimal


@settings(max_examples=300, deadline=None)
@given(scenarios(homogeneous=False))
def test_uniform_heterogeneous_is_valid_and_locally_balanced(
    scenario: tuple[dict[str, Sub], dict[str, int], dict[str, dict[str, frozenset[int]]]],
) -> None:
    members, counts, previous = scenario
    result = UniformAssignor().assign(members, counts, previous)
    check_valid(members, counts, result)
    load = {m: len(flat(a)) for m, a in result.items()}
    for a, assignment in result.items():
        for topic in assignment:
            for b, sub in members.items():
                if topic in sub.topics:
                    assert load[b] >= load[a] - 1


@settings(max_examples=200, deadline=None)
@given(scenarios(homogeneous=False))
def test_range_is_valid_and_deterministic(
    scenario: tuple[dict[str, Sub], dict[str, int], dict[str, dict[str, frozenset[int]]]],
) -> None:
    members, counts, previous = scenario
    result = RangeAssignor().assign(members, counts, previous)
    check_valid(members, counts, result)
    assert result == RangeAssignor().assign(members, counts, {})


def test_uniform_keeps_everything_when_nothing_changes() -> None:
    members = {m: Sub(m, frozenset({"t"})) for m in ("a", "b", "c")}
    counts = {"t": 7}
    first = UniformAssignor().assign(members, counts, {})
    assert UniformAssignor().assign(members, counts, first) == first


def test_uniform_new_member_takes_only_its_share() -> None:
    counts = {"t": 6}
    two = {m: Sub(m, frozenset({"t"})) for m in ("a", "b")}
    before = UniformAssignor().assign(two, counts, {})
    three = {**two, "c": Sub("c", frozenset({"t"}))}
    after = UniformAssignor().assign(three, counts, before)
    assert len(flat(after["c"])) == 2
    for m in ("a", "b"):
        assert flat(after[m]) <= flat(before[m])


def test_range_gives_contiguous_ranges_in_member_order() -> None:
    members = {m: Sub(m, frozenset({"t"})) for m in ("b", "a", "c")}
    result = RangeAssignor().assign(members, {"t": 7}, {})
    assert result["a"] == {"t": frozenset({0, 1, 2})}
    assert result["b"] == {"t": frozenset({3, 4})}
    assert result["c"] == {"t": frozenset({5, 6})}


def test_registry() -> None:
    assert set(ASSIGNORS) == {"uniform", "range"}

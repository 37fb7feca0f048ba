"""Properties of many sequential assignments: fair shares, proportional weights, capacity respected."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from leadflow.routing.rules import MemberState, decide
from tests.routing.conftest import AUTO, NOW, lead, member, rule

STEP = timedelta(seconds=7)


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(2, 8),
    steps=st.integers(1, 120),
    history=st.lists(st.integers(0, 10_000), min_size=8, max_size=8),
)
def test_equal_weights_never_differ_by_more_than_one(size: int, steps: int, history: list[int]) -> None:
    # Any earlier assignment times (or none), same load: a fair rotation from the first lead on.
    members = [
        member(
            i + 1,
            capacity=1000,
            last_assigned_at=NOW - timedelta(minutes=history[i]) if history[i] else None,
        )
        for i in range(size)
    ]
    now = NOW
    counts = dict.fromkeys(range(1, size + 1), 0)
    chosen: list[int] = []
    for _ in range(steps):
        decision = decide(lead(), AUTO, members, [], None, now)
        assert decision.rule == "round_robin"
        assert decision.member_id is not None
        chosen.append(decision.member_id)
        counts[decision.member_id] += 1
        assert max(counts.values()) - min(counts.values()) <= 1, counts
        members = [
            replace(m, open_leads=m.open_leads + 1, last_assigned_at=now) if m.id == decision.member_id else m
            for m in members
        ]
        now += STEP
    # Nobody is starved: every run of `size` consecutive leads reaches every member exactly once.
    for start in range(0, len(chosen) - size + 1):
        assert sorted(chosen[start : start + size]) == list(range(1, size + 1))


def test_weights_two_to_one_give_two_thirds_and_one_third() -> None:
    members = [member(1, weight=2, capacity=1000), member(2, weight=1, capacity=1000)]
    now = NOW
    for n in range(1, 301):
        decision = decide(lead(), AUTO, members, [], None, now)
        members = [
            replace(m, open_leads=m.open_leads + 1, last_assigned_at=now) if m.id == decision.member_id else m
            for m in members
        ]
        now += STEP
        heavy = members[0].open_leads
        assert abs(Fraction(heavy) - Fraction(2 * n, 3)) < 1, (n, heavy)
        if n % 3 == 0:
            assert (members[0].open_leads, members[1].open_leads) == (2 * n // 3, n // 3)
    assert (members[0].open_leads, members[1].open_leads) == (200, 100)


@settings(max_examples=150, deadline=None)
@given(weights=st.lists(st.integers(1, 6), min_size=2, max_size=6), steps=st.integers(1, 150))
def test_shares_follow_the_weights(weights: list[int], steps: int) -> None:
    """Load-based weighting is the D'Hondt (Jefferson) divisor method, so after n leads each member's
    count c satisfies q - 1 < c <= q + k * w / W with q = n * w / W (k members, W = total weight)."""
    members = [member(i + 1, weight=w, capacity=10_000) for i, w in enumerate(weights)]
    total, size = sum(weights), len(weights)
    now = NOW
    for n in range(1, steps + 1):
        decision = decide(lead(), AUTO, members, [], None, now)
        members = [
            replace(m, open_leads=m.open_leads + 1, last_assigned_at=now) if m.id == decision.member_id else m
            for m in members
        ]
        now += STEP
        for m in members:
            quota = Fraction(n * m.weight, total)
            assert quota - 1 < m.open_leads <= quota + Fraction(size * m.weight, total), (n, weights, m)
    heavy = max(members, key=lambda m: (m.weight, -m.id))
    light = min(members, key=lambda m: (m.weight, m.id))
    if heavy.weight > light.weight:
        assert heavy.open_leads >= light.open_leads


member_strategy = st.builds(
    lambda i, cap, load, weight, active: member(
        i, capacity=cap, open_leads=min(load, cap), weight=weight, active=active
    ),
    st.just(0),
    st.integers(0, 5),
    st.integers(0, 5),
    st.integers(1, 4),
    st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(
    specs=st.lists(member_strategy, min_size=1, max_size=6),
    steps=st.integers(1, 40),
    rule_targets=st.lists(st.integers(0, 5), max_size=4),
    closings=st.lists(st.integers(0, 5), max_size=40),
)
def test_capacity_is_never_exceeded(
    specs: list[MemberState], steps: int, rule_targets: list[int], closings: list[int]
) -> None:
    members = [replace(m, id=i + 1) for i, m in enumerate(specs)]
    rules = [rule(j + 1, t + 1, position=j) for j, t in enumerate(rule_targets)]
    now = NOW
    for step in range(steps):
        decision = decide(lead(lead_id=step + 1), AUTO, members, rules, None, now)
        active_room = [m for m in members if m.active and m.open_leads < m.capacity]
        if decision.member_id is None:
            assert decision.rule == "unassigned"
            assert active_room == []
        else:
            chosen = next(m for m in members if m.id == decision.member_id)
            assert chosen.active
            assert chosen.open_leads < chosen.capacity
            members = [
                replace(m, open_leads=m.open_leads + 1, last_assigned_at=now) if m is chosen else m
                for m in members
            ]
        for m in members:
            assert m.open_leads <= m.capacity
        # Now and then a lead is closed, freeing a slot.
        if step < len(closings):
            target = closings[step] % len(members)
            members = [
                replace(m, open_leads=max(m.open_leads - 1, 0)) if i == target else m
                for i, m in enumerate(members)
            ]
        now += STEP

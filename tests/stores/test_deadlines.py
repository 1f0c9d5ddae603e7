"""The deadlines index the expiry sweep reads: the same answers as scanning every
registration, with stale entries skipped and their number bounded."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m.stores.deadlines import Deadlines
from lwm2m.stores.memory import MemoryRegistrationStore
from lwm2m.stores.records import Registration

KEYS = [f"r{n}" for n in range(8)]
deadlines_st = st.floats(min_value=-50.0, max_value=50.0, allow_nan=False)
operation = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(KEYS), deadlines_st),
    st.tuples(st.just("drop"), st.sampled_from(KEYS), st.just(0.0)),
    st.tuples(st.just("sweep"), deadlines_st, st.sampled_from([0.0, 0.5, 3.0])),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(operation, max_size=60))
def test_due_is_what_a_scan_of_every_deadline_finds(ops: list[tuple[str, object, float]]) -> None:
    index = Deadlines()
    current: dict[str, float] = {}
    for kind, arg, value in ops:
        if kind == "set":
            assert isinstance(arg, str)
            current[arg] = value
            index.push(value, arg)
        elif kind == "drop":
            current.pop(str(arg), None)
        else:
            assert isinstance(arg, float)
            now, grace = arg, value
            found = index.due(now, grace, current.get)
            assert len(found) == len(set(found))
            assert set(found) == {k for k, d in current.items() if d + grace < now}
            # Nothing is taken out: the next sweep finds the same ones.
            assert set(index.due(now, grace, current.get)) == set(found)
            found_seconds = [math.floor(current[k]) for k in found]
            assert found_seconds == sorted(found_seconds)


def test_a_deadline_is_due_only_once_past_it_with_the_grace() -> None:
    index = Deadlines()
    index.push(9.5, "a")
    current = {"a": 9.5}.get
    assert index.due(9.5, 0.0, current) == []
    assert index.due(9.6, 0.0, current) == ["a"]
    assert index.due(10.4, 1.0, current) == []
    assert index.due(10.6, 1.0, current) == ["a"]


def test_deadlines_that_are_no_number() -> None:
    index = Deadlines()
    current = {"never": math.inf, "nan": math.nan, "always": -math.inf, "plain": 5.0}
    for key, deadline in current.items():
        index.push(deadline, key)
    assert sorted(index.due(6.0, 0.0, current.get)) == ["always", "plain"]


def test_stale_entries_are_dropped_by_the_sweep() -> None:
    index = Deadlines()
    current: dict[str, float] = {}
    for n in range(100):
        current["a"] = float(n)
        index.push(float(n), "a")
    assert index.entries == 100
    assert index.due(99.5, 0.0, current.get) == ["a"]
    assert index.entries == 1  # the 99 older deadlines of "a" were stale


async def test_the_store_keeps_the_stale_entries_bounded() -> None:
    store = MemoryRegistrationStore()
    regs = {
        n: Registration(f"id{n}", f"ep{n}", ("10.0.0.1", 5683 + n), 60, 0.0, 0.0) for n in range(10)
    }
    for reg in regs.values():
        await store.add(reg)
    rnd = random.Random(5)
    for step in range(1, 2000):
        n = rnd.randrange(10)
        old = regs[n]
        regs[n] = new = Registration(
            old.id, old.endpoint, old.address, old.lifetime_s, old.registered_at, float(step)
        )
        await store.update(new)
    assert store._deadlines.entries <= 4 * 10 + 64
    expired = store.expired(60.0 + 2000.0)
    assert sorted(r.id for r in expired) == sorted(r.id for r in regs.values())
    assert sorted(r.id for r in store.expired(60.0 + 1000.0)) == sorted(
        r.id for r in regs.values() if r.expires_at < 1060.0
    )

"""Paged, searched, filtered and sorted registration queries: every backend agrees with a plain Python reference."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path as FsPath
from typing import Any

from test_stores import stores  # noqa: F401  (fixture; redis_url is in tests/conftest.py)

from lwm2m.coap.peer import PeerIdentity
from lwm2m.stores import open_stores
from lwm2m.stores.memory import MemoryRegistrationStore
from lwm2m.stores.query import RegistrationIndex, RegistrationQuery, SortKey
from lwm2m.stores.records import Registration

NOW = 1_800_000_000.0


def fleet(n: int, seed: int = 7) -> list[Registration]:
    rnd = random.Random(seed)
    regs = []
    for i in range(n):
        registered = NOW - rnd.randrange(0, 7200)
        regs.append(
            Registration(
                id=f"q{i}",
                endpoint=f"{rnd.choice(['meter', 'valve', 'Gate'])}-{i:04d}",
                address=(f"10.{i % 3}.{i % 7}.{i % 11}", 5683 + i % 5),
                lifetime_s=rnd.choice([60, 300, 86400]),
                registered_at=registered,
                updated_at=registered + rnd.randrange(0, 600),
                lwm2m_version=rnd.choice(["1.0", "1.1", "1.2"]),
                binding=rnd.choice(["U", "UQ", "T"]),
                queue_mode=i % 4 == 0,
                identity=PeerIdentity(psk_identity=b"k%d" % i) if i % 5 == 0 else None,
            )
        )
    return regs


def reference(regs: list[Registration], q: RegistrationQuery) -> tuple[int, list[str]]:
    """What the query means, written the slow obvious way."""

    def address(r: Registration) -> str:
        return f"{r.address[0]}:{r.address[1]}"

    out = [
        r
        for r in regs
        if (not q.text or q.text.lower() in r.endpoint.lower() or q.text.lower() in address(r))
        and (q.binding is None or r.binding == q.binding)
        and (q.lwm2m_version is None or r.lwm2m_version == q.lwm2m_version)
        and (q.queue_mode is None or r.queue_mode == q.queue_mode)
        and (q.secure is None or r.secure == q.secure)
        and (q.registered_after is None or r.registered_at > q.registered_after)
        and (q.registered_before is None or r.registered_at < q.registered_before)
        and (q.updated_after is None or r.updated_at > q.updated_after)
        and (q.updated_before is None or r.updated_at < q.updated_before)
    ]
    keys = {
        SortKey.ENDPOINT: lambda r: r.endpoint,
        SortKey.REGISTERED: lambda r: r.registered_at,
        SortKey.UPDATED: lambda r: r.updated_at,
        SortKey.ADDRESS: lambda r: r.address,
        SortKey.LIFETIME: lambda r: r.lifetime_s,
    }
    out.sort(key=lambda r: r.endpoint)
    out.sort(key=keys[q.sort], reverse=q.descending)  # stable: ties stay in endpoint order
    stop = None if q.limit is None else q.offset + q.limit
    return len(out), [r.endpoint for r in out[q.offset : stop]]


QUERIES = [
    RegistrationQuery(limit=10),
    RegistrationQuery(limit=10, offset=295),
    RegistrationQuery(limit=7, offset=3, descending=True),
    RegistrationQuery(limit=0),
    RegistrationQuery(),
    RegistrationQuery(text="METER-00", limit=50),
    RegistrationQuery(text="10.2.3.", limit=50),
    RegistrationQuery(text="no-such", limit=50),
    RegistrationQuery(binding="UQ", lwm2m_version="1.1", limit=20),
    RegistrationQuery(queue_mode=True, secure=False, limit=20, offset=5),
    RegistrationQuery(secure=True, limit=100),
    RegistrationQuery(registered_after=NOW - 3600, registered_before=NOW - 600, limit=30),
    RegistrationQuery(updated_after=NOW - 1800, updated_before=NOW, limit=30),
    RegistrationQuery(sort=SortKey.REGISTERED, descending=True, limit=10),
    RegistrationQuery(sort=SortKey.UPDATED, limit=10, offset=40),
    RegistrationQuery(sort=SortKey.ADDRESS, limit=25),
    RegistrationQuery(sort=SortKey.LIFETIME, descending=True, limit=200),
    RegistrationQuery(sort=SortKey.LIFETIME, text="valve", binding="T"),
]


async def test_queries_match_the_reference(stores: Any, tmp_path: FsPath) -> None:  # noqa: F811
    regs = stores.registrations
    for r in fleet(300):
        await regs.add(r)
    # Churn: a re-Register under a new id, an Update with a new address, a De-register.
    moved = fleet(300)[10]
    await regs.add(
        Registration(**{**_fields(moved), "id": "q10b", "registered_at": NOW - 5})  # type: ignore[arg-type]
    )
    await regs.update(Registration(**{**_fields(fleet(300)[11]), "address": ("10.9.9.9", 1)}))  # type: ignore[arg-type]
    await regs.remove("q12")
    everything = regs.list()
    for q in QUERIES:
        page = regs.query(q)
        assert (page.total, [r.endpoint for r in page.items]) == reference(everything, q), q


async def test_a_reopened_store_answers_the_same(tmp_path: FsPath) -> None:
    first = await open_stores("sqlite", tmp_path)
    for r in fleet(120):
        await first.registrations.add(r)
    await first.registrations.remove("q3")
    before = [first.registrations.query(q) for q in QUERIES]
    stats = first.registrations.stats(NOW)
    await first.close()
    again = await open_stores("sqlite", tmp_path)
    try:
        assert [again.registrations.query(q) for q in QUERIES] == before
        assert again.registrations.stats(NOW) == stats
    finally:
        await again.close()


async def test_stats_count_what_is_registered(stores: Any) -> None:  # noqa: F811
    regs = stores.registrations
    base = regs.stats(NOW)
    for r in fleet(40):
        await regs.add(r)
    await regs.remove("q0")
    live = regs.list()
    stats = regs.stats(NOW)
    assert stats.total == len(live) == base.total + 39
    assert stats.queue_mode - base.queue_mode == sum(1 for r in fleet(40)[1:] if r.queue_mode)
    assert sum(stats.by_binding.values()) == stats.total
    assert stats.by_version == _count(live, "lwm2m_version")
    assert stats.by_binding == _count(live, "binding")
    recent = sum(count for _, count in stats.registered_per_minute)
    last = int(NOW // 60)
    assert recent == sum(1 for r in live if last - 60 < int(r.registered_at // 60) <= last)
    assert len(stats.registered_per_minute) == 60


def _count(regs: list[Registration], attr: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in regs:
        out[getattr(r, attr)] = out.get(getattr(r, attr), 0) + 1
    return dict(sorted(out.items()))


def _fields(r: Registration) -> dict[str, object]:
    return {name: getattr(r, name) for name in Registration.__slots__}


def test_sort_keys_are_the_rest_names() -> None:
    assert {k.value for k in SortKey} == {
        "endpoint",
        "registrationDate",
        "lastUpdate",
        "address",
        "lifetime",
    }


async def test_updates_leave_the_indexes_a_fresh_store_would_build() -> None:
    """Updates take a shortcut through the indexes (only what changed moves): after a
    random mix of them, every index answers as a store filled with the end result."""
    rnd = random.Random(11)
    regs = fleet(60)
    store = await _memory_store_with(regs)
    current = {r.id: r for r in regs}
    for _ in range(400):
        old = current[rnd.choice(sorted(current))]
        changes: dict[str, Any] = rnd.choice(
            [
                {"address": (f"10.8.{rnd.randrange(4)}.1", 5683 + rnd.randrange(3))},
                {"lifetime_s": rnd.choice([60, 300]), "updated_at": NOW + rnd.randrange(600)},
                {"binding": rnd.choice(["U", "UQ"]), "queue_mode": rnd.random() < 0.5},
                {"address": old.address},  # nothing moves
            ]
        )
        new = replace(old, **changes)
        await store.update(new)
        current[new.id] = new
    await _assert_as_fresh(store, list(current.values()))


async def test_replacing_registers_leave_the_indexes_a_fresh_store_would_build() -> None:
    """A Register replacing one of its name takes a shortcut too (one pass, counts moved
    only when what they count differs): after a random mix of them, every index, the
    address lookup and the expiry answer as a store filled with the end result."""
    rnd = random.Random(12)
    regs = fleet(60)
    store = await _memory_store_with(regs)
    current = {r.endpoint: r for r in regs}
    replaced_ids = set()
    for n in range(400):
        old = current[rnd.choice(sorted(current))]
        changes: dict[str, Any] = rnd.choice(
            [
                {},  # the storm's: same everything but the id and the time
                {"address": (f"10.9.{rnd.randrange(4)}.1", 5683 + rnd.randrange(3))},
                {"binding": rnd.choice(["U", "UQ", "T"]), "queue_mode": rnd.random() < 0.5},
                {"lwm2m_version": rnd.choice(["1.0", "1.1"])},
                {"identity": rnd.choice([None, PeerIdentity(psk_identity=b"r%d" % n)])},
                {"registered_at": old.registered_at + rnd.choice([1, 59, 61, 3600])},
            ]
        )
        new = replace(old, id=f"r{n}", **changes)
        gone, added = await store.add(new)
        assert gone is old and added is new
        replaced_ids.add(old.id)
        current[new.endpoint] = new
    await _assert_as_fresh(store, list(current.values()))
    assert sorted(r.id for r in store.list()) == sorted(r.id for r in current.values())
    assert all(store.get(i) is None for i in replaced_ids)
    # No entry of a replaced registration is left behind in the lookups (a slow leak).
    assert all(store.get(r.id) is r for r in store._by_address.values())
    assert len(store._by_endpoint) == len(current)
    assert all(store.get_by_endpoint(r.endpoint) is r for r in current.values())


async def _memory_store_with(regs: list[Registration]) -> MemoryRegistrationStore:
    store = MemoryRegistrationStore()
    for r in regs:
        await store.add(r)
    return store


async def _assert_as_fresh(store: Any, regs: list[Registration]) -> None:
    """Every index of ``store`` answers as a store filled with ``regs`` alone."""
    fresh = await _memory_store_with(regs)
    for q in QUERIES:
        assert store.query(q) == fresh.query(q), q
    assert store.stats(NOW) == fresh.stats(NOW)
    holders: dict[Any, int] = {}
    for r in regs:
        holders[r.address] = holders.get(r.address, 0) + 1
    for r in regs:
        if holders[r.address] == 1:  # a shared address goes to whoever claimed it last
            assert store.get_by_address(r.address) is r
    for horizon in (NOW, NOW + 400, NOW + 90_000):
        assert sorted(r.id for r in store.expired(horizon)) == sorted(
            r.id for r in fresh.expired(horizon)
        )


async def test_text_search_between_changes_sees_each_change() -> None:
    """Search lines are made at the search after a change: a search between Registers,
    moves, re-Registers and De-registers finds what is live then, and only that."""
    rnd = random.Random(5)
    store = MemoryRegistrationStore()
    pool = fleet(40)
    live: dict[str, Registration] = {}
    searches = [
        RegistrationQuery(text=t)
        for t in ("meter", "VALVE-00", "10.1.", "10.7.7.", ":5687", "gate-003")
    ]
    for step in range(300):
        action = rnd.random()
        if action < 0.35 or not live:
            reg = rnd.choice(pool)
            # A re-Register of a held name comes under a new id.
            new = replace(reg, id=f"{reg.id}-{step}")
            await store.add(new)
            live[new.endpoint] = new
        elif action < 0.7:
            old = live[rnd.choice(sorted(live))]
            new = replace(old, address=(f"10.7.{rnd.randrange(9)}.{rnd.randrange(9)}", 5683))
            await store.update(new)
            live[new.endpoint] = new
        else:
            gone = live.pop(rnd.choice(sorted(live)))
            await store.remove(gone.id)
        for q in searches:
            page = store.query(q)
            assert (page.total, [r.endpoint for r in page.items]) == reference(
                list(live.values()), q
            ), (step, q)
    # A searched name De-registers among many live ones: no longer found.
    for reg in pool:
        if reg.endpoint not in live:
            await store.add(reg)
            live[reg.endpoint] = reg
    last = live.pop(pool[-1].endpoint)
    assert store.query(RegistrationQuery(text=last.endpoint)).total == 1
    await store.remove(last.id)
    assert store.query(RegistrationQuery(text=last.endpoint)).total == 0
    for reg in list(live.values()):
        await store.remove(reg.id)
    assert [store.query(q).total for q in searches] == [0] * len(searches)


async def test_search_lines_cost_nothing_until_searched_and_after_many_changes() -> None:
    """No name is noted for the search lines before the first text search, nor once
    half the lines are outdated: the next search builds them all, and finds what a
    search between every change would."""
    rnd = random.Random(9)
    store = MemoryRegistrationStore()
    pool = fleet(40)
    for reg in pool:
        await store.add(reg)
    index = store._query_index
    assert not index._stale and not index._lines  # a just-loaded store holds no names twice
    live = {reg.endpoint: reg for reg in pool}
    search = RegistrationQuery(text="10.")
    assert store.query(search).total == reference(list(live.values()), search)[0]
    for step in range(120):  # three times the live names, no search in between
        old = live[rnd.choice(sorted(live))]
        new = replace(old, address=(f"10.{rnd.randrange(9)}.1.{step % 9}", 5683))
        await store.update(new)
        live[new.endpoint] = new
    assert not index._lines and not index._stale
    for text in ("10.3.", "10.8.1.", "meter"):
        q = RegistrationQuery(text=text)
        page = store.query(q)
        assert (page.total, [r.endpoint for r in page.items]) == reference(list(live.values()), q)


async def test_names_removed_and_added_again_between_queries_are_listed_once() -> None:
    """The sorted names skip removed ones and hold each live one once, however names
    leave and come back between two queries (only the removed ones are remembered)."""
    rnd = random.Random(11)
    store = MemoryRegistrationStore()
    pool = fleet(30)
    live: dict[str, Registration] = {}
    everyone = RegistrationQuery()
    for step in range(600):
        reg = rnd.choice(pool)
        if reg.endpoint in live and rnd.random() < 0.5:
            await store.remove(live.pop(reg.endpoint).id)
        else:
            new = replace(reg, id=f"{reg.id}-{step}")
            await store.add(new)
            live[new.endpoint] = new
        if rnd.random() < 0.15:
            page = store.query(everyone)
            assert [r.endpoint for r in page.items] == sorted(live)
            index = store._query_index
            assert len(index._sorted) == len(set(index._sorted)) == len(live)
            assert not index._gone
    assert [r.endpoint for r in store.query(everyone).items] == sorted(live)


def test_a_name_added_again_while_live_is_listed_once() -> None:
    index = RegistrationIndex()
    first, *_ = fleet(1)
    index.added(first)
    index.added(replace(first, id="other"))  # the same name, told twice
    assert [r.id for r in index.query(RegistrationQuery()).items] == ["other"]

"""Store behaviour shared by every backend, and SQLite durability."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path as FsPath
from typing import Any

import pytest

from lwm2m.coap.peer import PeerIdentity
from lwm2m.model.path import Path
from lwm2m.security.credentials import PskCredential, SecurityEntry, X509Expectation
from lwm2m.stores import (
    ObservationRecord,
    SecurityConflict,
    StoreError,
    UnknownRegistration,
    open_stores,
)
from lwm2m.stores.records import ObjectLinks, RegisteredObject, Registration


def reg(
    rid: str, ep: str, *, port: int = 5000, updated: float = 100.0, lt: int = 60
) -> Registration:
    return Registration(
        id=rid,
        endpoint=ep,
        address=("127.0.0.1", port),
        lifetime_s=lt,
        registered_at=updated,
        updated_at=updated,
        endpoint_type=2,
        lwm2m_version="1.1",
        binding="UQ",
        queue_mode=True,
        links=ObjectLinks(
            "</1/0>,</3>;ver=1.1",
            "/",
            (RegisteredObject(1, None, (0,)), RegisteredObject(3, "1.1", ())),
            (110,),
        ),
        identity=PeerIdentity(psk_identity=b"id-" + ep.encode()),
    )


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def stores(request: Any, tmp_path: FsPath) -> AsyncIterator[Any]:
    spec = request.getfixturevalue("redis_url") if request.param == "redis" else request.param
    s = await open_stores(spec, tmp_path)
    try:
        yield s
    finally:
        await s.close()


async def test_registration_indexes(stores: Any) -> None:
    regs = stores.registrations
    old, new = await regs.add(reg("a", "dev-a"))
    assert old is None and regs.get("a") == new
    assert regs.get_by_endpoint("dev-a") == new
    assert regs.get_by_address(("127.0.0.1", 5000)) == new
    # Same endpoint again: the old one is replaced and returned.
    old, new = await regs.add(reg("b", "dev-a", port=5001))
    assert old is not None and old.id == "a"
    assert regs.get("a") is None and regs.get_by_address(("127.0.0.1", 5000)) is None
    assert len(regs) == 1
    from dataclasses import replace

    old, new = await regs.update(replace(new, lifetime_s=999))
    assert old.lifetime_s == 60 and regs.get("b").lifetime_s == 999  # type: ignore[union-attr]
    with pytest.raises(UnknownRegistration):
        await regs.update(reg("zzz", "nobody"))
    assert (await regs.remove("b")) is not None
    assert await regs.remove("b") is None
    assert regs.list() == []


async def test_expired(stores: Any) -> None:
    regs = stores.registrations
    await regs.add(reg("a", "a", updated=100, lt=10))
    await regs.add(reg("b", "b", updated=100, lt=100))
    assert regs.expired(105) == []
    assert [r.id for r in regs.expired(111)] == ["a"]
    assert regs.expired(111, grace_s=5) == []
    # Still reported until removed.
    assert [r.id for r in regs.expired(120)] == ["a"]
    await regs.remove("a")
    assert regs.expired(150) == []
    assert [r.id for r in regs.expired(250)] == ["b"]


async def test_observations(stores: Any) -> None:
    obs = stores.observations
    rec = ObservationRecord("t1", "a", "dev-a", (Path.parse("/3/0/9"),), False, 0, 1.0)
    rec2 = ObservationRecord("t2", "a", "dev-a", (Path.parse("/3/0/9"), Path.parse("/3/0/1")), True)
    await obs.add(rec)
    await obs.add(rec2)
    assert obs.get("t1") == rec
    assert {r.id for r in obs.for_registration("a")} == {"t1", "t2"}
    assert await obs.remove("t1") == rec
    assert [r.id for r in await obs.remove_for_registration("a")] == ["t2"]
    assert obs.list() == []


async def test_security(stores: Any) -> None:
    sec = stores.security
    entry = SecurityEntry("dev-1", psk=PskCredential(b"id1", b"\x01\x02"))
    await sec.put(entry)
    assert sec.get_by_psk_identity(b"id1") == entry
    with pytest.raises(SecurityConflict):
        await sec.put(SecurityEntry("dev-2", psk=PskCredential(b"id1", b"\x03")))
    await sec.put(SecurityEntry("dev-1", x509=X509Expectation(expected_names=("2:dev-1",))))
    assert sec.get_by_psk_identity(b"id1") is None
    assert await sec.remove("dev-1") is not None
    assert sec.list() == []


async def test_documents(stores: Any) -> None:
    docs = stores.documents
    assert await docs.get("cfg", "a") is None
    assert await docs.put("cfg", "b", {"x": 1}) is None
    assert await docs.put("cfg", "a", {"y": [1, 2]}) is None
    assert await docs.put("cfg", "a", {"y": 3}) == {"y": [1, 2]}
    assert await docs.items("cfg") == [("a", {"y": 3}), ("b", {"x": 1})]
    assert await docs.delete("cfg", "a") == {"y": 3}
    for i in range(5):
        await docs.append("log", {"i": i}, keep=3)
    assert await docs.tail("log", 10) == [{"i": 2}, {"i": 3}, {"i": 4}]
    assert await docs.tail("log", 1) == [{"i": 4}]
    with pytest.raises(StoreError):
        await docs.put("cfg", "bad", {"x": object()})


async def test_take_all_empties_a_namespace_once(stores: Any) -> None:
    docs = stores.documents
    assert await docs.take_all("queued:r1") == []
    await docs.put("queued:r1", "2", {"n": 2})
    await docs.put("queued:r1", "1", {"n": 1})
    await docs.put("other", "k", {"n": 0})
    # Two takers at once: every document goes to exactly one of them.
    first, second = await asyncio.gather(docs.take_all("queued:r1"), docs.take_all("queued:r1"))
    assert sorted([*first, *second]) == [("1", {"n": 1}), ("2", {"n": 2})]
    assert await docs.items("queued:r1") == [] and await docs.take_all("queued:r1") == []
    assert await docs.items("other") == [("k", {"n": 0})]  # other namespaces untouched
    await docs.put("queued:r1", "3", {"n": 3})  # a namespace taken empty fills again
    assert await docs.take_all("queued:r1") == [("3", {"n": 3})]


async def test_sqlite_take_all_sees_documents_written_before_a_reopen(tmp_path: FsPath) -> None:
    s = await open_stores("sqlite", tmp_path)
    await s.documents.put("attributes:dev", "/3/0", {"attributes": {"pmin": 1}})
    await s.close()
    s = await open_stores("sqlite", tmp_path)
    try:
        assert await s.documents.take_all("attributes:dev") == [
            ("/3/0", {"attributes": {"pmin": 1}})
        ]
        assert await s.documents.take_all("attributes:dev") == []
    finally:
        await s.close()


async def test_sqlite_survives_reopen(tmp_path: FsPath) -> None:
    s = await open_stores("sqlite", tmp_path)
    await s.registrations.add(reg("a", "dev-a"))
    await s.registrations.add(reg("b", "dev-b", port=5001))
    await s.registrations.remove("b")
    await s.observations.add(ObservationRecord("t1", "a", "dev-a", (Path.parse("/3/0/9"),)))
    await s.security.put(SecurityEntry("dev-a", psk=PskCredential(b"id", b"k")))
    await s.documents.put("cfg", "x", {"v": 1})
    await s.documents.append("log", {"n": 1})
    await s.close()
    s2 = await open_stores("sqlite", tmp_path)
    try:
        assert s2.registrations.get("a") == reg("a", "dev-a")
        assert s2.registrations.get("b") is None
        assert s2.observations.get("t1") is not None
        assert s2.security.get_by_psk_identity(b"id") is not None
        assert await s2.documents.get("cfg", "x") == {"v": 1}
        assert await s2.documents.tail("log") == [{"n": 1}]
    finally:
        await s2.close()


async def test_unknown_store_spec(tmp_path: FsPath) -> None:
    with pytest.raises(StoreError):
        await open_stores("mongodb://x", tmp_path)


async def test_redis_survives_reopen(redis_url: str, tmp_path: FsPath) -> None:
    s = await open_stores(redis_url, tmp_path)
    await s.registrations.add(reg("a", "dev-a"))
    await s.observations.add(ObservationRecord("t1", "a", "dev-a", (Path.parse("/3/0/9"),)))
    await s.close()
    s2 = await open_stores(redis_url, tmp_path)
    try:
        assert s2.registrations.get("a") == reg("a", "dev-a")
        assert s2.observations.get("t1") is not None
    finally:
        await s2.close()


async def test_sqlite_skips_unreadable_rows(
    tmp_path: FsPath, caplog: pytest.LogCaptureFixture
) -> None:
    """One corrupt row is logged and skipped; the others still load."""
    import sqlite3

    s = await open_stores("sqlite", tmp_path)
    await s.registrations.add(reg("a", "dev-a"))
    await s.observations.add(ObservationRecord("t1", "a", "dev-a", (Path.parse("/3/0/9"),)))
    await s.security.put(SecurityEntry("dev-a", psk=PskCredential(b"id", b"k")))
    await s.close()
    with sqlite3.connect(tmp_path / "lwm2m.sqlite3") as conn:
        conn.execute(
            "INSERT INTO registrations (id, endpoint, doc) VALUES ('b', 'dev-b', '{not json')"
        )
        conn.execute("INSERT INTO observations VALUES ('t2', 'a', '{\"id\": 1}')")
        conn.execute("INSERT INTO security VALUES ('dev-b', 'nope')")
        conn.execute("INSERT INTO security VALUES ('dev-c', '[]')")
        conn.execute(
            """INSERT INTO security VALUES ('dev-d', '{"endpoint": "dev-d", "x509": 1}')"""
        )
    conn.close()
    caplog.set_level("ERROR", logger="lwm2m.stores.sqlite")
    s2 = await open_stores("sqlite", tmp_path)
    try:
        assert [r.id for r in s2.registrations.list()] == ["a"]
        assert [r.id for r in s2.observations.list()] == ["t1"]
        assert [e.endpoint for e in s2.security.list()] == ["dev-a"]
        logged = [r.getMessage() for r in caplog.records]
        assert any("unreadable stored registration" in m for m in logged)
        assert any("unreadable stored observation" in m for m in logged)
        assert sum("unreadable stored security entry" in m for m in logged) == 3
    finally:
        await s2.close()


async def test_queue_mode_watchers_hear_its_first_registration(stores: Any) -> None:
    """``watch_queue_mode``: told when the store comes to hold a registration in queue mode
    (by a Register or by an Update into it), again after holding none, never for others;
    a failing watcher is logged and the write goes on."""
    regs = stores.registrations
    told: list[str] = []

    def failing() -> None:
        raise RuntimeError("a watcher's own bug")

    regs.watch_queue_mode(failing)
    regs.watch_queue_mode(lambda: told.append("held"))
    plain = dataclasses.replace(reg("p", "plain", port=5001), queue_mode=False, binding="U")
    await regs.add(plain)
    assert told == [] and not regs.holds_queue_mode
    await regs.update(dataclasses.replace(plain, queue_mode=True, binding="UQ"))
    assert told == ["held"] and regs.holds_queue_mode
    await regs.add(reg("q", "sleepy", port=5002))  # a second one: still held, not told
    assert told == ["held"]
    await regs.remove("p")
    await regs.remove("q")
    assert not regs.holds_queue_mode
    await regs.add(reg("r", "sleepy", port=5003))
    assert told == ["held", "held"]
    late: list[str] = []
    regs.watch_queue_mode(lambda: late.append("held"))  # held already: told at once
    assert late == ["held"]

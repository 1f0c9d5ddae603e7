"""Registrations read back while serving: lookups, writes and the loader agree."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path as FsPath

import pytest

from lwm2m.stores import open_stores
from lwm2m.stores.records import ObjectLinks, Registration
from lwm2m.stores.sqlite import SqliteRegistrationStore, SqliteStores


def _reg(n: int, rid: str | None = None, lifetime: int = 300) -> Registration:
    return Registration(
        id=rid or f"id{n:04d}",
        endpoint=f"ep-{n}",
        address=("127.0.0.1", 5000 + n),
        lifetime_s=lifetime,
        registered_at=1_700_000_000.0,
        updated_at=1_700_000_000.0,
        links=ObjectLinks(text="</1/0>"),
    )


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Holds the loading thread before its first chunk until the test sets it."""
    event = threading.Event()
    monkeypatch.setattr(SqliteRegistrationStore, "LOAD_CHUNK", 10)
    monkeypatch.setattr(SqliteRegistrationStore, "_load_gate", event)
    return event


async def _stored(tmp_path: FsPath, count: int) -> None:
    stores = await open_stores("sqlite", tmp_path)
    await asyncio.gather(*(stores.registrations.add(_reg(n)) for n in range(count)))
    await stores.close()


async def test_lookups_and_writes_before_the_rows_are_loaded(
    tmp_path: FsPath, gate: threading.Event
) -> None:
    await _stored(tmp_path, 40)
    stores = await open_stores("sqlite", tmp_path, load_in_background=True)
    assert isinstance(stores, SqliteStores)
    regs = stores.registrations
    try:
        assert len(regs) == 0  # the loader waits at the gate
        found = regs.get_by_endpoint("ep-5")
        assert found is not None and found.id == "id0005"
        by_id = regs.get("id0006")
        assert by_id is not None and by_id.endpoint == "ep-6"
        assert regs.get("no-such-id") is None
        removed = await regs.remove("id0007")  # a De-register of a row not loaded yet
        assert removed is not None and removed.endpoint == "ep-7"
        old, _ = await regs.add(_reg(8, rid="new8"))  # a re-Register replaces the stored row
        assert old is not None and old.id == "id0008"
        await regs.update(_reg(9, lifetime=999))  # an Update of a row not loaded yet
        gate.set()
        assert regs.loaded is not None
        assert await asyncio.wait_for(regs.loaded, 30) == 39
        assert regs.get_by_endpoint("ep-7") is None  # not brought back by the loader
        assert regs.get("id0008") is None
        assert [r.id for r in regs.list() if r.endpoint == "ep-8"] == ["new8"]
        nine = regs.get("id0009")
        assert nine is not None and nine.lifetime_s == 999
        assert len(regs) == 39
    finally:
        await stores.close()
    reopened = await open_stores("sqlite", tmp_path)
    try:
        assert len(reopened.registrations) == 39
        assert reopened.registrations.get_by_endpoint("ep-7") is None
        eight = reopened.registrations.get_by_endpoint("ep-8")
        assert eight is not None and eight.id == "new8"
    finally:
        await reopened.close()


async def test_close_while_loading(tmp_path: FsPath, gate: threading.Event) -> None:
    await _stored(tmp_path, 25)
    stores = await open_stores("sqlite", tmp_path, load_in_background=True)
    await asyncio.wait_for(stores.close(), 10)  # the loader stops at the gate
    reopened = await open_stores("sqlite", tmp_path)
    try:
        assert len(reopened.registrations) == 25
    finally:
        await reopened.close()


async def test_a_queue_mode_registration_loaded_in_the_background_is_told(
    tmp_path: FsPath, gate: threading.Event
) -> None:
    """A registration in queue mode read back while serving tells the store's watchers
    (the server then hears every datagram), as one written since the store opened does."""
    stores = await open_stores("sqlite", tmp_path)
    await stores.registrations.add(_reg(1))
    await stores.registrations.add(dataclasses.replace(_reg(2), queue_mode=True, binding="UQ"))
    await stores.close()
    reopened = await open_stores("sqlite", tmp_path, load_in_background=True)
    told: list[str] = []
    try:
        reopened.registrations.watch_queue_mode(lambda: told.append("held"))
        assert told == []  # nothing loaded yet: the loader waits at the gate
        gate.set()
        assert await asyncio.wait_for(reopened.registrations.loaded, 30) == 2
        assert told == ["held"]
    finally:
        await reopened.close()

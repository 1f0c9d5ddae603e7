"""Registrations stored as columns: exact round trips, the column-only Update, migration."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path as FsPath
from typing import Any

import pytest

from lwm2m.coap.peer import PeerIdentity
from lwm2m.stores import SQLITE_FILENAME, StoreError, open_stores
from lwm2m.stores import sqlite as sqlite_store
from lwm2m.stores.codec import (
    registration_from_row,
    registration_row,
    registration_text,
)
from lwm2m.stores.records import ObjectLinks, RecordError, RegisteredObject, Registration
from lwm2m.stores.sqlite import (
    REGISTRATION_TOUCH,
    REGISTRATION_UPSERT,
    SqliteRegistrationStore,
    SqliteStores,
    Statement,
)
from lwm2m.stores.sqlite_schema import REGISTRATION_COLUMNS

LEGACY_SCHEMA = """
CREATE TABLE registrations (id TEXT PRIMARY KEY, endpoint TEXT NOT NULL UNIQUE, doc TEXT NOT NULL);
"""


def _reg(n: int, **changes: Any) -> Registration:
    reg = Registration(
        id=f"id{n:04d}",
        endpoint=f"ep-{n}",
        address=("127.0.0.1", 5000 + n),
        lifetime_s=300,
        registered_at=1_700_000_000.25,
        updated_at=1_700_000_000.5,
        lwm2m_version="1.1",
        links=ObjectLinks(
            text=f"</1/0>,</3/0>,</3303/{n}>",
            objects=(
                RegisteredObject(1, None, (0,)),
                RegisteredObject(3, None, (0,)),
                RegisteredObject(3303, None, (n,)),
            ),
        ),
    )
    return Registration(**{**{f: getattr(reg, f) for f in reg.__slots__}, **changes})


VARIANTS: list[dict[str, Any]] = [
    {},
    {"endpoint": 'odd "name"\\ é \u2603', "sms_number": "+3361234", "endpoint_type": 7},
    {"queue_mode": True, "binding": "UQ", "lwm2m_version": "1.2", "transport": "tcp"},
    {"identity": PeerIdentity(psk_identity=b"\x00id")},
    {"identity": PeerIdentity(certificate_der=b"\x30\x82der")},
    {"address": ("::1", 1), "lifetime_s": 0, "updated_at": 0.0},
    {
        "links": ObjectLinks(
            text='</lwm2m>;rt="oma.lwm2m";ct="60 110",</lwm2m/5>;ver=1.1,</lwm2m/9>',
            root_path="/lwm2m",
            content_formats=(60, 110),
            objects=(RegisteredObject(5, "1.1", ()), RegisteredObject(9, None, ())),
        )
    },
    # Versions the compact object text cannot hold: written as JSON instead.
    {"links": ObjectLinks(objects=(RegisteredObject(3, "1,/@2", (0, 1)),))},
    {"links": ObjectLinks(objects=(RegisteredObject(3, "", (7,)), RegisteredObject(4)))},
    {"links": ObjectLinks()},
]


@pytest.mark.parametrize("changes", VARIANTS)
def test_row_round_trips_exactly(changes: dict[str, Any]) -> None:
    reg = _reg(1, **changes)
    row = registration_row(reg)
    assert len(row) == len(REGISTRATION_COLUMNS)
    assert registration_from_row(row) == reg
    # Again from the caches (the object text by identity, the objects by text).
    assert registration_from_row(registration_row(reg)) == reg


def test_row_refuses_what_json_refuses_and_a_bad_row_is_a_record_error() -> None:
    with pytest.raises(ValueError):
        registration_row(_reg(1, updated_at=float("nan")))
    row = list(registration_row(_reg(1)))
    row[REGISTRATION_COLUMNS.index("port")] = "not a port"
    with pytest.raises(RecordError):
        registration_from_row(row)
    row = list(registration_row(_reg(1)))
    row[REGISTRATION_COLUMNS.index("objects")] = "3/x"
    with pytest.raises(RecordError):
        registration_from_row(row)


def _spy(stores: SqliteStores) -> list[Statement]:
    """Every statement the stores hand to the database from now on."""
    seen: list[Statement] = []
    submit = stores._db.submit

    def spying(statements: list[Statement]) -> asyncio.Future[None]:
        seen.extend(statements)
        return submit(statements)

    stores._db.submit = spying  # type: ignore[method-assign]
    return seen


async def test_update_of_address_and_lifetime_writes_those_columns_only(
    tmp_path: FsPath,
) -> None:
    stores = await open_stores("sqlite", tmp_path)
    assert isinstance(stores, SqliteStores)
    first = _reg(1, identity=PeerIdentity(psk_identity=b"psk"))
    await stores.registrations.add(first)
    await stores.registrations.add(_reg(2))
    seen = _spy(stores)
    touched = _reg(
        1,
        identity=PeerIdentity(psk_identity=b"psk"),
        address=("10.0.0.9", 40000),
        lifetime_s=86400,
        updated_at=1_700_000_100.75,
        transport="tcp",
    )
    await stores.registrations.update(touched)
    # A new payload (new links) or a new binding rewrites the whole row.
    relinked = _reg(2, links=ObjectLinks(text="</5/0>", objects=(RegisteredObject(5, None, (0,)),)))
    await stores.registrations.update(relinked)
    rebound = _reg(2, links=relinked.links, binding="UQ", queue_mode=True, updated_at=2e9)
    await stores.registrations.update(rebound)
    assert [sql for sql, _ in seen] == [
        REGISTRATION_TOUCH,
        REGISTRATION_UPSERT,
        REGISTRATION_UPSERT,
    ]
    await stores.close()

    reopened = await open_stores("sqlite", tmp_path)
    try:
        assert reopened.registrations.get(first.id) == touched
        assert reopened.registrations.get(rebound.id) == rebound
    finally:
        await reopened.close()


async def test_statements_run_on_the_writer_thread_and_a_failure_there_refuses_the_batch(
    tmp_path: FsPath,
) -> None:
    stores = await SqliteStores.open(tmp_path / SQLITE_FILENAME, writer="thread")
    db = stores._db._batch_writer
    kept, other = _reg(0), _reg(12)
    await stores.registrations.add(kept)
    await stores.registrations.add(other)
    threads: list[threading.Thread] = []
    run_statements = db._run_statements

    def failing(batch: Any) -> Any:
        threads.append(threading.current_thread())
        run_statements(batch)  # the rows are in the open transaction...
        raise MemoryError("simulated")  # ...and go back with it

    db._run_statements = failing  # type: ignore[method-assign]
    results = await asyncio.gather(
        *(stores.registrations.add(_reg(n)) for n in range(1, 11)),
        stores.registrations.update(_reg(0, lifetime_s=9)),
        stores.registrations.remove(other.id),
        return_exceptions=True,
    )
    assert all(isinstance(r, StoreError) for r in results), results
    assert threads and threading.main_thread() not in threads
    assert sorted(stores.registrations.list(), key=lambda r: r.id) == [kept, other]
    del db._run_statements
    await stores.registrations.add(_reg(11))
    await stores.close()

    reopened = await open_stores("sqlite", tmp_path)
    try:
        assert sorted(r.id for r in reopened.registrations.list()) == ["id0000", "id0011", "id0012"]
        assert reopened.registrations.get(kept.id) == kept
    finally:
        await reopened.close()


def _legacy_file(path: FsPath, regs: list[Registration], extra: list[tuple[str, str, str]]) -> None:
    with sqlite3.connect(path) as conn:
        conn.executescript(LEGACY_SCHEMA)
        conn.executemany(
            "INSERT INTO registrations VALUES (?, ?, ?)",
            [(r.id, r.endpoint, registration_text(r)) for r in regs] + extra,
        )
    conn.close()


def _legacy_regs() -> list[Registration]:
    return [_reg(n, **changes) for n, changes in enumerate(VARIANTS)]


LEGACY_EXTRA = [
    # Readable by Registration.from_dict, not by the SQL migration (a time as a string).
    (
        "id0100",
        "ep-100",
        registration_text(_reg(100)).replace(
            '"registered_at":1700000000.25', '"registered_at":"7"'
        ),
    ),
    ("id0101", "ep-101", "{not json"),
]


@pytest.mark.parametrize("json1", [True, False], ids=["sql", "python"])
@pytest.mark.parametrize("background", [False, True], ids=["at-open", "while-serving"])
async def test_document_rows_are_migrated_to_columns(
    tmp_path: FsPath,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    json1: bool,
    background: bool,
) -> None:
    if not json1:  # as on an SQLite without JSON1: Python migrates every row
        monkeypatch.setattr(sqlite_store, "_MIGRATE_IN_SQL", "UPDATE registrations SET x = nope()")
    regs = _legacy_regs()
    _legacy_file(tmp_path / "lwm2m.sqlite3", regs, LEGACY_EXTRA)
    caplog.set_level("ERROR", logger="lwm2m.stores.sqlite")
    stores = await SqliteStores.open(tmp_path / "lwm2m.sqlite3", load_in_background=background)
    try:
        if background:
            assert stores.registrations.loaded is not None
            await asyncio.wait_for(stores.registrations.loaded, 30)
        by_id = {r.id: r for r in stores.registrations.list()}
        assert by_id.pop("id0100") == _reg(100, registered_at=7.0)
        assert by_id == {r.id: r for r in regs}
        assert any("unreadable stored registration" in r.getMessage() for r in caplog.records)
        # Every readable row is columns now; an Update of one touches its columns.
        await stores.registrations.update(_reg(0, lifetime_s=42))
    finally:
        await stores.close()
    with sqlite3.connect(tmp_path / "lwm2m.sqlite3") as conn:
        left = conn.execute("SELECT id FROM registrations WHERE registered_at IS NULL").fetchall()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()
    assert left == [("id0101",)]
    assert version == 1
    reopened = await open_stores("sqlite", tmp_path)
    try:
        assert reopened.registrations.get("id0000") == _reg(0, lifetime_s=42)
        assert len(reopened.registrations) == len(regs) + 1
    finally:
        await reopened.close()


async def test_loading_while_serving_gives_what_loading_at_open_gives(
    tmp_path: FsPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(SqliteRegistrationStore, "LOAD_CHUNK", 3)
    stores = await open_stores("sqlite", tmp_path)
    regs = [_reg(n, **changes) for n, changes in enumerate(VARIANTS * 3)]
    regs = [
        Registration(
            **{**{f: getattr(r, f) for f in r.__slots__}, "id": f"x{n}", "endpoint": f"e{n}"}
        )
        for n, r in enumerate(regs)
    ]
    await asyncio.gather(*(stores.registrations.add(r) for r in regs))
    await stores.close()
    eager = await SqliteStores.open(tmp_path / "lwm2m.sqlite3")
    eager_regs = sorted(eager.registrations.list(), key=lambda r: r.id)
    await eager.close()
    lazy = await SqliteStores.open(tmp_path / "lwm2m.sqlite3", load_in_background=True)
    try:
        assert lazy.registrations.loaded is not None
        assert await asyncio.wait_for(lazy.registrations.loaded, 30) == len(regs)
        assert sorted(lazy.registrations.list(), key=lambda r: r.id) == eager_regs
        assert eager_regs == sorted(regs, key=lambda r: r.id)
    finally:
        await lazy.close()

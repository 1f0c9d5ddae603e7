"""SQLite group commit: a write is acknowledged only by the COMMIT that holds it."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
from pathlib import Path as FsPath

import pytest
from sqlite_helpers import stored_endpoints

from lwm2m.coap.dispatch_end import dispatching
from lwm2m.coap.peer import PeerIdentity
from lwm2m.stores import SQLITE_FILENAME, StoreError, open_stores, sqlite_bulk
from lwm2m.stores.base import UnknownRegistration
from lwm2m.stores.codec import dumps, registration_row, registration_text
from lwm2m.stores.records import ObjectLinks, RegisteredObject, Registration
from lwm2m.stores.sqlite import REGISTRATION_UPSERT, SqliteStores, WriterKind
from lwm2m.stores.sqlite_bulk import single_statement


def _reg(n: int, **changes: object) -> Registration:
    reg = Registration(
        id=f"id{n:04d}",
        endpoint=f"ep-{n}",
        address=("127.0.0.1", 5000 + n),
        lifetime_s=300,
        registered_at=1_700_000_000.25,
        updated_at=1_700_000_000.5,
        links=ObjectLinks(
            text="</1/0>,</3/0>",
            objects=(RegisteredObject(1, None, (0,)), RegisteredObject(3, None, (0,))),
        ),
    )
    return Registration(**{**{f: getattr(reg, f) for f in reg.__slots__}, **changes})  # type: ignore[arg-type]


async def _open(path: FsPath, writer: WriterKind = "thread") -> SqliteStores:
    """The stores with their writer in ``writer``: a thread where the test swaps a part of
    the batch writer (the same code runs in the writer process) or traces its statements."""
    return await SqliteStores.open(path / SQLITE_FILENAME, writer=writer)


both_writers = pytest.mark.parametrize("writer", ["process", "thread"])


def _fail_commit(stores: SqliteStores) -> None:
    def commit(single: object = None) -> None:
        raise sqlite3.OperationalError("disk I/O error (simulated)")

    stores._db._batch_writer.commit = commit  # type: ignore[method-assign]


async def test_failed_commit_refuses_every_write_of_the_batch(tmp_path: FsPath) -> None:
    stores = await _open(tmp_path)
    kept = await stores.registrations.add(_reg(0))
    _fail_commit(stores)
    results = await asyncio.gather(
        *(stores.registrations.add(_reg(n)) for n in range(1, 21)),
        stores.registrations.remove(kept[1].id),
        return_exceptions=True,
    )
    assert all(isinstance(r, StoreError) for r in results), results
    # The memory view went back: nothing the disk refused is visible.
    assert [r.endpoint for r in stores.registrations.list()] == ["ep-0"]
    del stores._db._batch_writer.commit  # the real COMMIT again
    await stores.registrations.add(_reg(21))
    await stores.close()

    assert await stored_endpoints(tmp_path) == ["ep-0", "ep-21"]


_INSERT_DOC = "INSERT INTO documents (namespace, key, doc) VALUES (?, ?, ?)"


@both_writers
@pytest.mark.parametrize(
    "failing",
    [
        # a failing second statement: the job's first one goes back with it
        [(_INSERT_DOC, ("ns", "b", "{}")), ("INSERT INTO no_such_table VALUES (1)", ())],
        # a value SQLite cannot store (nor the writer process's pipe carry)
        [(_INSERT_DOC, ("ns", "b", object()))],
    ],
    ids=["statement", "value"],
)
async def test_a_failing_write_refuses_only_itself(
    tmp_path: FsPath, writer: WriterKind, failing: list[tuple[str, tuple[object, ...]]]
) -> None:
    stores = await _open(tmp_path, writer)
    db = stores._db
    results = await asyncio.gather(
        db.execute([(_INSERT_DOC, ("ns", "a", "{}"))]),
        db.execute(failing),
        db.execute([(_INSERT_DOC, ("ns", "c", "{}"))]),
        return_exceptions=True,
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], StoreError)
    await stores.close()

    reopened = await open_stores("sqlite", tmp_path)
    try:
        assert [k for k, _ in await reopened.documents.items("ns")] == ["a", "c"]
    finally:
        await reopened.close()


@both_writers
async def test_writes_of_one_loop_turn_share_a_commit(tmp_path: FsPath, writer: WriterKind) -> None:
    stores = await _open(tmp_path, writer)
    try:
        await asyncio.gather(*(stores.registrations.add(_reg(n)) for n in range(50)))
        assert stores._db.batched_writes == 50
        assert stores._db.batches < 50
    finally:
        await stores.close()


@both_writers
async def test_a_batch_gathered_in_a_dispatch_leaves_as_the_dispatch_ends(
    tmp_path: FsPath, writer: WriterKind
) -> None:
    """The writes queued by the requests the endpoint dispatches together go to the writer
    as that dispatch ends (not a loop iteration later); elsewhere the batch gathers until
    the loop's next iteration, as before."""
    stores = await _open(tmp_path, writer)
    db = stores._db
    try:
        added: list[BaseException | None] = []
        with dispatching():
            for n in range(5):
                stores.registrations.add_then(_reg(n), lambda old, error: added.append(error))
            assert len(db._pending) == 5 and db._in_flight == 0
        assert db._pending == [] and db._in_flight == 1  # handed over as the block ends
        while len(added) < 5:
            await asyncio.sleep(0.01)
        assert added == [None] * 5

        queued: list[BaseException | None] = []
        db.submit_then([(REGISTRATION_UPSERT, registration_row(_reg(10)))], queued.append)
        assert len(db._pending) == 1 and db._in_flight == 0  # no dispatch: next iteration
        await asyncio.sleep(0)
        assert db._pending == [] and db._in_flight == 1
        while len(queued) < 1:
            await asyncio.sleep(0.01)
        assert queued == [None]
    finally:
        await stores.close()
    reopened = await open_stores("sqlite", tmp_path)
    try:
        assert len(reopened.registrations) == 6
    finally:
        await reopened.close()


@both_writers
async def test_close_commits_what_is_queued(tmp_path: FsPath, writer: WriterKind) -> None:
    stores = await _open(tmp_path, writer)
    writes = [asyncio.ensure_future(stores.registrations.add(_reg(n))) for n in range(10)]
    await asyncio.sleep(0)  # queued, not yet committed
    await stores.close()
    assert all(w.done() and w.exception() is None for w in writes)
    with pytest.raises(StoreError):
        await stores.registrations.add(_reg(99))
    reopened = await open_stores("sqlite", tmp_path)
    try:
        assert len(reopened.registrations) == 10
    finally:
        await reopened.close()


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"endpoint": 'odd "name"\\ é \u2603', "sms_number": "+3361234", "endpoint_type": 7},
        {"queue_mode": True, "binding": "UQ", "lwm2m_version": "1.2"},
        {"transport": "tcp"},
        {"identity": PeerIdentity(psk_identity=b"\x00id")},
        {
            "links": ObjectLinks(
                text='</lwm2m>;rt="oma.lwm2m";ct="60 110",</lwm2m/5>;ver=1.1',
                root_path="/lwm2m",
                content_formats=(60, 110),
                objects=(RegisteredObject(5, "1.1", ()),),
            )
        },
    ],
)
def test_registration_text_is_the_document_of_to_dict(changes: dict[str, object]) -> None:
    reg = _reg(1, **changes)
    assert registration_text(reg) == dumps(reg.to_dict())
    # And again from the links cache.
    assert registration_text(reg) == dumps(reg.to_dict())


def test_registration_text_refuses_what_json_refuses() -> None:
    with pytest.raises(ValueError):
        registration_text(_reg(1, updated_at=float("nan")))


async def test_a_batch_of_one_kind_of_write_is_one_statement_and_its_own_commit(
    tmp_path: FsPath,
) -> None:
    """A storm's batch: no BEGIN and no COMMIT around it, the statement commits itself."""
    stores = await _open(tmp_path)
    traced: list[str] = []
    stores._db.connection.set_trace_callback(traced.append)
    try:
        await asyncio.gather(*(stores.registrations.add(_reg(n)) for n in range(30)))
        held = stores.registrations.list()
        await asyncio.gather(*(stores.registrations.remove(r.id) for r in held[:10]))
    finally:
        stores._db.connection.set_trace_callback(None)
        await stores.close()
    assert len(traced) == 2, traced
    assert traced[0].startswith("INSERT OR REPLACE INTO registrations")
    assert traced[1].startswith("DELETE FROM registrations")
    assert await stored_endpoints(tmp_path) == sorted(r.endpoint for r in held[10:])


async def test_a_failing_row_of_a_single_statement_batch_refuses_only_its_write(
    tmp_path: FsPath,
) -> None:
    stores = await _open(tmp_path)
    db = stores._db
    rows = [registration_row(_reg(n)) for n in range(5)]
    bad = list(registration_row(_reg(5)))
    bad[1] = None  # endpoint NOT NULL: the whole statement fails, then the long way
    traced: list[str] = []
    db.connection.set_trace_callback(traced.append)
    try:
        results = await asyncio.gather(
            *(db.execute([(REGISTRATION_UPSERT, row)]) for row in rows[:3]),
            db.execute([(REGISTRATION_UPSERT, tuple(bad))]),
            *(db.execute([(REGISTRATION_UPSERT, row)]) for row in rows[3:]),
            return_exceptions=True,
        )
    finally:
        db.connection.set_trace_callback(None)
    assert [isinstance(r, StoreError) for r in results] == [False] * 3 + [True] + [False] * 2
    assert "BEGIN IMMEDIATE" in traced  # the one statement failed: the batch went the long way
    await stores.close()
    assert await stored_endpoints(tmp_path) == [f"ep-{n}" for n in range(5)]


def test_single_statement_is_the_statement_itself_for_one_row_and_none_past_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    row = registration_row(_reg(1))
    assert single_statement(REGISTRATION_UPSERT, [row]) == (REGISTRATION_UPSERT, list(row))
    sql, params = single_statement(REGISTRATION_UPSERT, [row, row]) or ("", [])
    assert sql.count("(?") == 2 and params == [*row, *row]
    assert single_statement("INSERT INTO documents VALUES (?, ?, ?)", [("a", "b", "c")]) is None
    monkeypatch.setattr(sqlite_bulk, "MAX_VARIABLES", len(row))
    assert single_statement(REGISTRATION_UPSERT, [row, row]) is None


def _renewed(reg: Registration, lifetime_s: int) -> Registration:
    return dataclasses.replace(reg, lifetime_s=lifetime_s, updated_at=reg.updated_at + 1)


async def test_update_then_is_told_by_the_commit_and_goes_back_when_refused(
    tmp_path: FsPath,
) -> None:
    """An Update's callback form: the memory view renewed at once, ``done(old, None)`` once
    the batch committed; a refused commit puts the renewed registration back before
    ``done(None, error)``; an unknown registration is refused at once."""
    stores = await _open(tmp_path)
    registrations = stores.registrations
    try:
        assert registrations.updates_by_callback
        _, reg = await registrations.add(_reg(0))
        told: list[tuple[Registration | None, BaseException | None]] = []
        renewed = _renewed(reg, 600)
        registrations.update_then(renewed, lambda old, error: told.append((old, error)))
        assert registrations.get(reg.id) is renewed and told == []  # the commit is to come
        while not told:
            await asyncio.sleep(0.01)
        assert told == [(reg, None)]

        _fail_commit(stores)
        told.clear()
        registrations.update_then(_renewed(renewed, 900), lambda o, e: told.append((o, e)))
        while not told:
            await asyncio.sleep(0.01)
        assert told[0][0] is None and isinstance(told[0][1], StoreError)
        assert registrations.get(reg.id) is renewed  # went back
        del stores._db._batch_writer.commit  # the real COMMIT again

        told.clear()
        registrations.update_then(_reg(7), lambda o, e: told.append((o, e)))
        assert told[0][0] is None and isinstance(told[0][1], UnknownRegistration)
    finally:
        await stores.close()
    reopened = await open_stores("sqlite", tmp_path)
    try:
        stored = reopened.registrations.get(reg.id)
        assert stored is not None and stored.lifetime_s == 600
    finally:
        await reopened.close()


async def test_remove_then_is_told_by_the_commit_and_comes_back_when_refused(
    tmp_path: FsPath,
) -> None:
    stores = await _open(tmp_path)
    registrations = stores.registrations
    try:
        assert registrations.removes_by_callback
        _, first = await registrations.add(_reg(0))
        _, second = await registrations.add(_reg(1))
        told: list[tuple[Registration | None, BaseException | None]] = []
        registrations.remove_then(first.id, lambda old, error: told.append((old, error)))
        assert registrations.get(first.id) is None and told == []  # unindexed at once
        while not told:
            await asyncio.sleep(0.01)
        assert told == [(first, None)]

        _fail_commit(stores)
        told.clear()
        registrations.remove_then(second.id, lambda old, error: told.append((old, error)))
        assert registrations.get(second.id) is None
        while not told:
            await asyncio.sleep(0.01)
        assert told[0][0] is None and isinstance(told[0][1], StoreError)
        assert registrations.get_by_endpoint("ep-1") is second  # back
        del stores._db._batch_writer.commit  # the real COMMIT again

        told.clear()
        registrations.remove_then("nobody", lambda old, error: told.append((old, error)))
        assert told == [(None, None)]  # none held: told at once
    finally:
        await stores.close()
    assert await stored_endpoints(tmp_path) == ["ep-1"]

"""SQLite stores (the default): the in-memory stores plus a durable write-through.

One database file under ``--data``, in WAL mode with ``synchronous=FULL``: a
commit returns only after the WAL is fsynced, so a registration the server
has acknowledged survives a crash or power loss. Writes are funnelled to one
writer thread that commits whatever has queued up in a single transaction
(group commit): under load one fsync covers many registrations, which keeps
throughput high without giving up durability. Every mutating coroutine
resolves only after the commit that contains it.

On open, everything is read back into memory; reads never touch the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lwm2m.security.credentials import SecurityEntry
from lwm2m.stores.base import JsonDoc, StoreError, check_json_doc
from lwm2m.stores.codec import (
    dumps,
    load_doc,
    load_records,
    observation_text,
    registration_text,
    security_text,
)
from lwm2m.stores.memory import (
    MemoryObservationStore,
    MemoryRegistrationStore,
    MemorySecurityStore,
    StoreBundle,
)
from lwm2m.stores.records import ObservationRecord, Registration, security_entry_from_dict

logger = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS registrations (
    id TEXT PRIMARY KEY, endpoint TEXT NOT NULL UNIQUE, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS observations (
    id TEXT PRIMARY KEY, registration_id TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS observations_by_registration ON observations (registration_id);
CREATE TABLE IF NOT EXISTS security (endpoint TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS documents (
    namespace TEXT NOT NULL, key TEXT NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (namespace, key));
CREATE TABLE IF NOT EXISTS logs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, namespace TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS logs_by_namespace ON logs (namespace, seq);
"""

Statement = tuple[str, Sequence[Any]]


class _Job:
    __slots__ = ("fetch", "future", "loop", "statements")

    def __init__(
        self,
        statements: list[Statement],
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        fetch: bool,
    ) -> None:
        self.statements = statements
        self.loop = loop
        self.future = future
        self.fetch = fetch


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class SqliteDatabase:
    """One connection owned by a writer thread; statements run in group-committed batches."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)
        self._thread = threading.Thread(target=self._run, name=f"sqlite {path.name}", daemon=True)
        self._thread.start()
        self._closed = False

    def read_all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Synchronous read at open time (before the writer thread has work)."""
        return list(self._conn.execute(sql, params).fetchall())

    async def execute(self, statements: list[Statement]) -> None:
        """Run ``statements`` as one unit in the next group commit; returns once durable."""
        await self._submit(statements, fetch=False)

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Read through the writer thread, so a read sees every write acknowledged before it."""
        result: list[tuple[Any, ...]] = await self._submit([(sql, params)], fetch=True)
        return result

    async def _submit(self, statements: list[Statement], *, fetch: bool) -> Any:
        if self._closed:
            raise StoreError("the SQLite store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.put(_Job(statements, loop, future, fetch))
        return await future

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            batch = [job]
            while True:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                batch.append(more)
            self._run_batch(batch)

    def _run_batch(self, batch: list[_Job]) -> None:
        conn = self._conn
        results: list[tuple[_Job, Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                conn.execute("SAVEPOINT job")
                try:
                    rows: Any = None
                    for sql, params in job.statements:
                        cur = conn.execute(sql, params)
                        if job.fetch:
                            rows = cur.fetchall()
                    conn.execute("RELEASE job")
                    results.append((job, rows, None))
                except sqlite3.Error as exc:
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    results.append((job, None, StoreError(f"SQLite: {exc}")))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            logger.error("SQLite commit failed: %s", exc)
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            failure = StoreError(f"SQLite commit failed: {exc}")
            results = [(job, None, failure) for job in batch]
        for job, rows, error in results:
            # RuntimeError: the loop is gone (shutdown); nobody waits for the answer.
            with contextlib.suppress(RuntimeError):
                job.loop.call_soon_threadsafe(_resolve, job.future, rows, error)

    async def close(self) -> None:
        """Let the writer finish what is queued, then close the file."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        await asyncio.get_running_loop().run_in_executor(None, self._thread.join)
        self._conn.close()


class SqliteRegistrationStore(MemoryRegistrationStore):
    """Registrations: memory view plus one row per registration.

    A re-Register deletes the replaced row in the same transaction as it
    inserts the new one (a crash never leaves two rows for one endpoint).
    """

    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__()
        self._db = db
        docs = [doc for (doc,) in db.read_all("SELECT doc FROM registrations")]
        load_records(docs, Registration.from_dict, self._load, kind="registration", log=logger)

    async def _persist_add(self, reg: Registration, replaced: Registration | None) -> None:
        stmts: list[Statement] = []
        if replaced is not None:
            stmts.append(("DELETE FROM registrations WHERE id = ?", (replaced.id,)))
        stmts.append(("DELETE FROM registrations WHERE endpoint = ?", (reg.endpoint,)))
        stmts.append(
            (
                "INSERT INTO registrations (id, endpoint, doc) VALUES (?, ?, ?)",
                (reg.id, reg.endpoint, registration_text(reg)),
            )
        )
        await self._db.execute(stmts)

    async def _persist_update(self, reg: Registration) -> None:
        await self._db.execute(
            [("UPDATE registrations SET doc = ? WHERE id = ?", (registration_text(reg), reg.id))]
        )

    async def _persist_remove(self, reg: Registration) -> None:
        await self._db.execute([("DELETE FROM registrations WHERE id = ?", (reg.id,))])


class SqliteObservationStore(MemoryObservationStore):
    """Observations: memory view plus one row each, so they can be restored after a restart."""

    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__()
        self._db = db
        docs = [doc for (doc,) in db.read_all("SELECT doc FROM observations")]
        load_records(docs, ObservationRecord.from_dict, self._put, kind="observation", log=logger)

    async def _persist_add(self, record: ObservationRecord) -> None:
        await self._db.execute(
            [
                (
                    "INSERT OR REPLACE INTO observations (id, registration_id, doc) VALUES (?, ?, ?)",
                    (record.id, record.registration_id, observation_text(record)),
                )
            ]
        )

    async def _persist_remove(self, records: list[ObservationRecord]) -> None:
        await self._db.execute(
            [("DELETE FROM observations WHERE id = ?", (r.id,)) for r in records]
        )


class SqliteSecurityStore(MemorySecurityStore):
    """Security entries: memory view plus one row per endpoint."""

    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__()
        self._db = db
        docs = [doc for (doc,) in db.read_all("SELECT doc FROM security")]
        load_records(docs, security_entry_from_dict, self._set, kind="security entry", log=logger)

    async def _persist_put(self, entry: SecurityEntry) -> None:
        await self._db.execute(
            [
                (
                    "INSERT OR REPLACE INTO security (endpoint, doc) VALUES (?, ?)",
                    (entry.endpoint, security_text(entry)),
                )
            ]
        )

    async def _persist_remove(self, endpoint: str) -> None:
        await self._db.execute([("DELETE FROM security WHERE endpoint = ?", (endpoint,))])


class SqliteDocumentStore:
    """Documents live only on disk (they are small and rarely read)."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def get(self, namespace: str, key: str) -> JsonDoc | None:
        """One indexed SELECT; None when absent."""
        rows = await self._db.query(
            "SELECT doc FROM documents WHERE namespace = ? AND key = ?", (namespace, key)
        )
        return None if not rows else load_doc(rows[0][0])

    async def put(self, namespace: str, key: str, doc: JsonDoc) -> JsonDoc | None:
        """Returns the document it replaced (read just before the write)."""
        check_json_doc(doc)
        old = await self.get(namespace, key)
        await self._db.execute(
            [
                (
                    "INSERT OR REPLACE INTO documents (namespace, key, doc) VALUES (?, ?, ?)",
                    (namespace, key, dumps(doc)),
                )
            ]
        )
        return old

    async def delete(self, namespace: str, key: str) -> JsonDoc | None:
        """Returns the removed document; nothing is written when there was none."""
        old = await self.get(namespace, key)
        if old is not None:
            await self._db.execute(
                [("DELETE FROM documents WHERE namespace = ? AND key = ?", (namespace, key))]
            )
        return old

    async def items(self, namespace: str) -> list[tuple[str, JsonDoc]]:
        """Sorted by the database (ORDER BY key)."""
        rows = await self._db.query(
            "SELECT key, doc FROM documents WHERE namespace = ? ORDER BY key", (namespace,)
        )
        return [(str(k), load_doc(d)) for k, d in rows]

    async def append(self, namespace: str, doc: JsonDoc, *, keep: int = 1000) -> None:
        """Insert and trim in one unit: the log never exceeds ``keep`` rows."""
        check_json_doc(doc)
        await self._db.execute(
            [
                ("INSERT INTO logs (namespace, doc) VALUES (?, ?)", (namespace, dumps(doc))),
                (
                    "DELETE FROM logs WHERE namespace = ? AND seq <= ("
                    "SELECT seq FROM logs WHERE namespace = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                    (namespace, namespace, max(1, keep)),
                ),
            ]
        )

    async def tail(self, namespace: str, limit: int = 100) -> list[JsonDoc]:
        """The newest ``limit`` rows, returned oldest first."""
        if limit <= 0:
            return []
        rows = await self._db.query(
            "SELECT doc FROM logs WHERE namespace = ? ORDER BY seq DESC LIMIT ?",
            (namespace, limit),
        )
        return [load_doc(d) for (d,) in reversed(rows)]


class SqliteStores(
    StoreBundle[
        SqliteRegistrationStore, SqliteObservationStore, SqliteSecurityStore, SqliteDocumentStore
    ]
):
    """All four stores in one SQLite file."""

    def __init__(self, db: SqliteDatabase) -> None:
        super().__init__(
            SqliteRegistrationStore(db),
            SqliteObservationStore(db),
            SqliteSecurityStore(db),
            SqliteDocumentStore(db),
        )
        self._db = db

    @classmethod
    async def open(cls, path: str | Path) -> SqliteStores:
        """Open (and create) the file off the event loop: reading it back may take a while."""
        try:
            db = await asyncio.get_running_loop().run_in_executor(None, SqliteDatabase, Path(path))
            return await asyncio.get_running_loop().run_in_executor(None, cls, db)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store {path}: {exc}") from None

    async def close(self) -> None:
        """Flush pending writes and close the file."""
        await self._db.close()

"""SQLite stores (the default): the in-memory stores plus a durable write-through.

One database file under ``--data``, in WAL mode with ``synchronous=FULL``: a
commit returns only after the WAL is fsynced, so a registration the server
has acknowledged survives a crash or power loss. The writes of one event
loop turn share one transaction (group commit, see :class:`SqliteDatabase`):
under load one fsync covers a hundred registrations, which keeps throughput
high without giving up durability. Every mutating coroutine resolves only
after the commit that contains it.

On open, everything is read back into memory; reads never touch the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
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
    __slots__ = ("fetch", "future", "statements")

    def __init__(
        self, statements: list[Statement], future: asyncio.Future[Any], fetch: bool
    ) -> None:
        self.statements = statements
        self.future = future
        self.fetch = fetch


class SqliteDatabase:
    """One connection; the writes of one loop turn share one transaction and one fsync.

    Group commit: every write submitted while the loop runs one turn (and
    while the previous batch is syncing) joins one batch. The batch's
    statements run on the loop's thread, where they only touch SQLite's page
    cache (microseconds each, consecutive identical statements through one
    ``executemany``); its ``COMMIT``, the fsync of the WAL, runs on a thread of
    its own, so the loop keeps serving while the disk syncs, and the next
    batch gathers meanwhile. Every caller's future resolves after the COMMIT
    that contains its statements returned: an acknowledged write is durable.
    A failed COMMIT fails every write of the batch (none of them is
    acknowledged); a failing statement fails only its own write.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.executescript(SCHEMA)
        self._committer = ThreadPoolExecutor(1, thread_name_prefix=f"sqlite {path.name}")
        self._pending: list[_Job] = []
        self._scheduled = False
        self._committing = False
        self._idle: list[asyncio.Future[None]] = []
        self._closed = False
        #: Batches committed and writes they held, for the figures of bench/ and the logs.
        self.batches = 0
        self.batched_writes = 0

    def read_all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Synchronous read at open time (before any write is queued)."""
        return list(self._conn.execute(sql, params).fetchall())

    async def execute(self, statements: list[Statement]) -> None:
        """Run ``statements`` as one unit in the next group commit; returns once durable."""
        await self._submit(statements, fetch=False)

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Read in turn with the writes, so a read sees every write acknowledged before it."""
        result: list[tuple[Any, ...]] = await self._submit([(sql, params)], fetch=True)
        return result

    async def _submit(self, statements: list[Statement], *, fetch: bool) -> Any:
        if self._closed:
            raise StoreError("the SQLite store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append(_Job(statements, future, fetch))
        if not self._scheduled and not self._committing:
            # The rest of this loop turn's writes join the batch.
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        if self._committing or not self._pending:
            self._wake_idle()
            return
        batch, self._pending = self._pending, []
        results = self._run_statements(batch)
        if results is None:  # no transaction could be opened: nothing to commit
            return
        self._committing = True
        done = asyncio.get_running_loop().run_in_executor(self._committer, self._commit)
        done.add_done_callback(lambda f: self._committed(batch, results, f))

    def _commit(self) -> None:
        """On the committer thread: the fsync. Tests replace it to simulate a failing disk."""
        self._conn.execute("COMMIT")

    def _committed(
        self,
        batch: list[_Job],
        results: list[tuple[Any, BaseException | None]],
        done: asyncio.Future[None],
    ) -> None:
        self._committing = False
        exc = done.exception() if not done.cancelled() else StoreError("commit cancelled")
        if exc is not None:
            logger.error("SQLite commit failed: %s (%d writes refused)", exc, len(batch))
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            failure = StoreError(f"SQLite commit failed: {exc}")
            results = [(None, failure)] * len(batch)
        else:
            self.batches += 1
            self.batched_writes += len(batch)
        for job, (rows, error) in zip(batch, results, strict=True):
            _resolve(job.future, rows, error)
        if self._pending:
            self._flush()
        else:
            self._wake_idle()

    def _run_statements(self, batch: list[_Job]) -> list[tuple[Any, BaseException | None]] | None:
        """Open the batch's transaction and run its statements (not yet committed).

        First all at once, consecutive identical statements through one
        ``executemany``; when any fails, again job by job under savepoints, so
        that only the failing job is refused.
        """
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            failure = StoreError(f"SQLite: {exc}")
            for job in batch:
                _resolve(job.future, None, failure)
            return None
        try:
            return self._run_grouped(batch)
        except sqlite3.Error:
            conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")
        results: list[tuple[Any, BaseException | None]] = []
        for job in batch:
            conn.execute("SAVEPOINT job")
            try:
                rows: Any = None
                for sql, params in job.statements:
                    cur = conn.execute(sql, params)
                    if job.fetch:
                        rows = cur.fetchall()
                conn.execute("RELEASE job")
                results.append((rows, None))
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                results.append((None, StoreError(f"SQLite: {exc}")))
        return results

    def _run_grouped(self, batch: list[_Job]) -> list[tuple[Any, BaseException | None]]:
        conn = self._conn
        results: list[tuple[Any, BaseException | None]] = []
        sql: str | None = None
        rows_of: list[Sequence[Any]] = []
        for job in batch:
            if job.fetch:
                if sql is not None:
                    conn.executemany(sql, rows_of)
                    sql, rows_of = None, []
                rows: Any = None
                for q, params in job.statements:
                    rows = conn.execute(q, params).fetchall()
                results.append((rows, None))
                continue
            for q, params in job.statements:
                if q != sql:
                    if sql is not None:
                        conn.executemany(sql, rows_of)
                    sql, rows_of = q, []
                rows_of.append(params)
            results.append((None, None))
        if sql is not None:
            conn.executemany(sql, rows_of)
        return results

    def _wake_idle(self) -> None:
        if self._committing or self._pending or self._scheduled:
            return
        for waiter in self._idle:
            if not waiter.done():
                waiter.set_result(None)
        self._idle.clear()

    async def close(self) -> None:
        """Let the queued writes commit, then close the file."""
        if self._closed:
            return
        self._closed = True
        if self._committing or self._pending or self._scheduled:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._idle.append(waiter)
            await waiter
        self._committer.shutdown(wait=True)
        self._conn.close()


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


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
        # One statement: the UNIQUE endpoint makes REPLACE delete the replaced row
        # (same endpoint name) in the same transaction as the insert.
        await self._db.execute(
            [
                (
                    "INSERT OR REPLACE INTO registrations (id, endpoint, doc) VALUES (?, ?, ?)",
                    (reg.id, reg.endpoint, registration_text(reg)),
                )
            ]
        )

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

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
import functools
import gc
import logging
import sqlite3
import threading
import time
from collections.abc import Awaitable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from lwm2m.coap.dispatch_end import at_dispatch_end
from lwm2m.security.credentials import SecurityEntry
from lwm2m.stores.base import JsonDoc, StoreError, check_json_doc
from lwm2m.stores.codec import (
    dumps,
    load_doc,
    load_records,
    observation_text,
    registration_from_row,
    registration_row,
    registration_update_row,
    security_text,
)
from lwm2m.stores.memory import (
    MemoryObservationStore,
    MemoryRegistrationStore,
    MemorySecurityStore,
    StoreBundle,
    WriteDone,
)
from lwm2m.stores.records import (
    ObservationRecord,
    RecordError,
    Registration,
    security_entry_from_dict,
)
from lwm2m.stores.sqlite_batch import BatchWriter, Job, JobResult, open_connection
from lwm2m.stores.sqlite_process import WriterProcess
from lwm2m.stores.sqlite_schema import (
    REGISTRATION_COLUMNS,
    REGISTRATION_DELETE,
    REGISTRATION_SELECT,
    REGISTRATION_TOUCH,
    REGISTRATION_UPSERT,
    SCHEMA,
    Statement,
)

logger = logging.getLogger(__name__)

WriterKind = Literal["process", "thread"]


class _Job:
    """A queued write: its future, or (the hot path) the plain callback told of its end."""

    __slots__ = ("callback", "fetch", "future", "statements")

    def __init__(
        self,
        statements: list[Statement],
        future: asyncio.Future[Any] | None,
        fetch: bool,
        callback: WriteDone | None = None,
    ) -> None:
        self.statements = statements
        self.future = future
        self.fetch = fetch
        self.callback = callback

    def end(self, result: Any, error: BaseException | None) -> None:
        callback = self.callback
        if callback is not None:
            try:
                callback(error)
            except Exception:
                logger.exception("a SQLite write's callback failed")
            return
        future = self.future
        if future is None or future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


class SqliteDatabase:
    """One writing connection; the writes of one loop turn share one transaction and one fsync.

    Group commit: every write submitted while the loop runs one turn joins
    one batch, written by :class:`~lwm2m.stores.sqlite_batch.BatchWriter`:
    its statements (consecutive identical ones through one statement, see
    :mod:`lwm2m.stores.sqlite_bulk`), then its ``COMMIT`` (the fsync of the
    WAL). Every caller's future resolves (on the loop) after the COMMIT that
    contains its statements returned: an acknowledged write is durable. A
    failed COMMIT fails every write of the batch (none of them is
    acknowledged); a failing statement fails only its own write.

    Where the writing connection lives (``writer``):
    - ``"process"`` (the default): in the writer process
      (:mod:`lwm2m.stores.sqlite_writer`). Each loop turn's batch goes down
      a pipe at once; the writer joins what waits into one transaction. The
      loop never waits for the GIL of a writer thread, and SQLite's CPU is
      another process's: on two cores, a third more durable Registers/s.
    - ``"thread"``: on a thread of this process, one batch at a time (the
      next gathers meanwhile); for an embedding that cannot start processes.

    The connection of this process (:attr:`connection`) sets the schema up and
    reads at open time; after that only the writer writes.
    """

    def __init__(self, path: Path, *, writer: WriterKind = "process") -> None:
        if writer not in ("process", "thread"):
            raise ValueError(f"writer must be 'process' or 'thread', not {writer!r}")
        self.path = path
        self._conn = open_connection(str(path))
        self._conn.executescript(SCHEMA)
        self._batch_writer = BatchWriter(self._conn)
        self._thread: ThreadPoolExecutor | None = None
        self._process: WriterProcess | None = None
        if writer == "thread":
            self._write_on_a_thread()
        else:
            self._process = WriterProcess(path)
        self._pending: list[_Job] = []
        self._scheduled = False
        #: Batches handed over and not answered yet (at most one with a thread).
        self._in_flight = 0
        self._idle: list[asyncio.Future[None]] = []
        self._closed = False
        #: Batches committed and writes they held, for the figures of bench/ and the logs.
        self.batches = 0
        self.batched_writes = 0

    @property
    def connection(self) -> sqlite3.Connection:
        """This process's connection, for set-up before any write is queued (schema,
        migration, the reads at open)."""
        return self._conn

    @property
    def writer_kind(self) -> WriterKind:
        """Where the writes go now (a process that could not start left them to a thread)."""
        return "thread" if self._process is None else "process"

    def _write_on_a_thread(self) -> None:
        self._process = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"sqlite {self.path.name}")

    @property
    def writer_process(self) -> WriterProcess | None:
        """The writer process's handle (``writer="process"``)."""
        return self._process

    async def start(self) -> None:
        """Start the writer process now (it is otherwise started by the first write).

        If it cannot start (no usable ``sys.executable`` in an embedding, a
        process limit), the writes go to a thread of this process instead, with
        a warning: the same group commit, slower under a storm.
        """
        if self._process is None or self._process.pid is not None:
            return
        try:
            await self._process.start()
        except StoreError as exc:
            logger.warning("%s: writing %s on a thread of this process instead", exc, self.path)
            await self._process.close()
            self._write_on_a_thread()

    def read_all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Synchronous read at open time (before any write is queued)."""
        return list(self._conn.execute(sql, params).fetchall())

    async def execute(self, statements: list[Statement]) -> None:
        """Run ``statements`` as one unit in the next group commit; returns once durable."""
        await self.submit(statements)

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Read in turn with the writes, so a read sees every write acknowledged before it."""
        result: list[tuple[Any, ...]] = await self._enqueue([(sql, params)], fetch=True)
        return result

    def submit(self, statements: list[Statement]) -> asyncio.Future[None]:
        """:meth:`execute` without its coroutine: the future, done once durable (the hot path
        awaits it straight, one suspension for a whole Register)."""
        return self._enqueue(statements, fetch=False)

    def submit_then(self, statements: list[Statement], written: WriteDone) -> None:
        """:meth:`submit` with a callback: ``written(None)`` once durable, ``written(error)``
        once refused, called from the batch's end itself (no future, no loop turn)."""
        self._queue(_Job(statements, None, False, written))

    def _enqueue(self, statements: list[Statement], *, fetch: bool) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue(_Job(statements, future, fetch))
        return future

    def _queue(self, job: _Job) -> None:
        if self._closed:
            raise StoreError("the SQLite store is closed")
        self._pending.append(job)
        if not self._scheduled:
            # The rest of this loop turn's writes join the batch: those of the requests the
            # endpoint dispatches now, or (outside a dispatch) of the rest of this turn.
            self._scheduled = True
            if not at_dispatch_end(self._flush):
                asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            self._wake_idle()
            return
        process = self._process
        if process is None and self._in_flight:
            return  # the thread's batch ends, then this one goes (see _written)
        batch, self._pending = self._pending, []
        self._in_flight += 1
        done: asyncio.Future[list[JobResult]]
        jobs: list[Job] = [(job.fetch, job.statements) for job in batch]
        if process is not None:
            done = process.send(jobs)
        else:
            done = asyncio.get_running_loop().run_in_executor(
                self._thread, self._batch_writer.write, jobs
            )
        done.add_done_callback(lambda f: self._written(batch, f))

    def _written(self, batch: list[_Job], done: asyncio.Future[list[JobResult]]) -> None:
        self._in_flight -= 1
        exc = done.exception() if not done.cancelled() else StoreError("write cancelled")
        if exc is not None:
            logger.error("SQLite batch failed: %s (%d writes refused)", exc, len(batch))
            failure = (
                exc if isinstance(exc, StoreError) else StoreError(f"SQLite commit failed: {exc}")
            )
            for job in batch:
                job.end(None, failure)
        else:
            self.batches += 1
            self.batched_writes += len(batch)
            for job, (rows, error) in zip(batch, done.result(), strict=True):
                job.end(rows, None if error is None else StoreError(error))
        if self._pending and not self._scheduled:
            self._flush()
        else:
            self._wake_idle()

    def _wake_idle(self) -> None:
        if self._in_flight or self._pending or self._scheduled:
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
        if self._in_flight or self._pending or self._scheduled:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._idle.append(waiter)
            await waiter
        if self._process is not None:
            await self._process.close()
        if self._thread is not None:
            self._thread.shutdown(wait=True)
        self._conn.close()


_POINT_READS = {
    "id": f"{REGISTRATION_SELECT} WHERE id = ?",
    "endpoint": f"{REGISTRATION_SELECT} WHERE endpoint = ?",
}

#: A row of the document format (before the columns) to columns, in SQL (JSON1).
_MIGRATE_IN_SQL = """
UPDATE registrations SET
    host = json_extract(doc, '$.address[0]'), port = json_extract(doc, '$.address[1]'),
    lifetime_s = json_extract(doc, '$.lifetime_s'),
    updated_at = json_extract(doc, '$.updated_at'),
    endpoint_type = json_extract(doc, '$.endpoint_type'),
    lwm2m_version = coalesce(json_extract(doc, '$.lwm2m_version'), '1.0'),
    binding = coalesce(json_extract(doc, '$.binding'), 'U'),
    queue_mode = coalesce(json_extract(doc, '$.queue_mode'), 0),
    sms_number = json_extract(doc, '$.sms_number'),
    transport = coalesce(json_extract(doc, '$.transport'), 'udp'),
    links_text = coalesce(json_extract(doc, '$.links.text'), ''),
    root_path = coalesce(json_extract(doc, '$.links.root_path'), '/'),
    content_formats = coalesce(json_extract(doc, '$.links.content_formats'), ''),
    objects = coalesce(json_extract(doc, '$.links.objects'), '[]'),
    identity = json_extract(doc, '$.identity'),
    registered_at = json_extract(doc, '$.registered_at'),
    doc = ''
WHERE registered_at IS NULL AND json_valid(doc)
    AND json_type(doc, '$.registered_at') IN ('integer', 'real')
    AND json_type(doc, '$.updated_at') IN ('integer', 'real')
    AND json_type(doc, '$.lifetime_s') = 'integer'
    AND json_type(doc, '$.address[0]') = 'text' AND json_type(doc, '$.address[1]') = 'integer'
    AND json_type(doc, '$.id') = 'text' AND json_extract(doc, '$.id') = id
    AND json_type(doc, '$.endpoint') = 'text' AND json_extract(doc, '$.endpoint') = endpoint
"""


#: ``PRAGMA user_version`` of a file whose registrations are stored as columns.
_COLUMNS_VERSION = 1


def migrate_registrations(conn: sqlite3.Connection) -> int:
    """Rewrite rows of the document format (one JSON ``doc`` per row) as columns.

    Once per database written before the columns: in SQL where SQLite has
    JSON1 (seconds for a million rows), row by row in Python for the rest.
    A row neither can read stays as it is and is skipped at load, as
    before. Returns the number of rows rewritten.
    """
    if conn.execute("PRAGMA user_version").fetchone()[0] >= _COLUMNS_VERSION:
        return 0
    present = {row[1] for row in conn.execute("PRAGMA table_info(registrations)")}
    conn.execute("BEGIN IMMEDIATE")
    try:
        for column in REGISTRATION_COLUMNS:
            if column not in present:
                conn.execute(f"ALTER TABLE registrations ADD COLUMN {column}")
        migrated = 0
        with contextlib.suppress(sqlite3.OperationalError):  # no JSON1: Python does it all
            migrated += conn.execute(_MIGRATE_IN_SQL).rowcount
        rows = conn.execute(
            "SELECT id, doc FROM registrations WHERE registered_at IS NULL"
        ).fetchall()
        for rid, doc in rows:
            try:
                reg = Registration.from_dict(load_doc(doc))
            except (RecordError, StoreError, ValueError):
                continue
            if reg.id != rid:
                continue
            conn.execute(REGISTRATION_UPSERT, registration_row(reg))
            migrated += 1
        conn.execute(f"PRAGMA user_version = {_COLUMNS_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if migrated:
        logger.info("%d stored registrations rewritten as columns", migrated)
    return migrated


def decode_rows(rows: Sequence[Sequence[Any]]) -> list[Registration]:
    """Registrations of ``rows``; an unreadable row is logged and skipped, not fatal."""
    regs: list[Registration] = []
    for row in rows:
        try:
            regs.append(registration_from_row(row))
        except (RecordError, StoreError, ValueError) as exc:
            logger.error("skipping unreadable stored registration: %s", exc)
    return regs


class SqliteRegistrationStore(MemoryRegistrationStore):
    """Registrations: memory view plus one row per registration.

    A re-Register replaces the old row in the same statement as it inserts
    the new one (a crash never leaves two rows for one endpoint).

    With ``load=False`` and :meth:`start_loading`, the stored registrations
    are read back by a thread in chunks while the server already serves: a
    million rows take tens of seconds, and a fleet coming back after the
    restart must not wait for them. Until the load is over, a lookup by id or
    endpoint name that misses the memory view reads that one row (an indexed
    SELECT), so conflicts (4.09), Updates and De-registers of registrations
    not loaded yet are answered as after the load; a name written since the
    load began is never overwritten by the older stored row. Lookups by
    address, :meth:`list` and ``len`` see the loaded part only.
    """

    #: Rows per chunk handed from the loading thread to the event loop. The loop
    #: indexes a chunk in one go (~6 us a row): 1,000 keep that stall to milliseconds
    #: for the requests served during the load.
    LOAD_CHUNK = 1000
    #: Tests hold the loading thread here (before each chunk) to act mid-load.
    _load_gate: threading.Event | None = None

    def __init__(self, db: SqliteDatabase, *, load: bool = True) -> None:
        super().__init__()
        self._db = db
        self._loading = False
        self._touched: set[str] = set()
        self._point: sqlite3.Connection | None = None
        self._stop_loading = threading.Event()
        self._load_thread: threading.Thread | None = None
        self.loaded: asyncio.Future[int] | None = None
        migrate_registrations(db.connection)
        if load:
            for reg in decode_rows(db.read_all(REGISTRATION_SELECT)):
                self._load(reg)
            _settle_garbage_collector()

    # -- loading while serving
    def start_loading(self) -> asyncio.Future[int]:
        """Start reading the stored registrations back; the future gives their count."""
        loop = asyncio.get_running_loop()
        self._loading = True
        self._point = sqlite3.connect(str(self._db.path), check_same_thread=False)
        self.loaded = loop.create_future()
        self._load_thread = threading.Thread(
            target=self._read_rows,
            args=(loop, time.perf_counter()),
            daemon=True,
            name="sqlite load",
        )
        self._load_thread.start()
        return self.loaded

    def _read_rows(self, loop: asyncio.AbstractEventLoop, started: float) -> None:
        """On the loading thread: read and decode chunks, index them on the loop."""
        conn = sqlite3.connect(str(self._db.path))
        try:
            cur = conn.execute(REGISTRATION_SELECT)
            while not self._stop_loading.is_set():
                gate = self._load_gate
                while gate is not None and not gate.wait(0.05):
                    if self._stop_loading.is_set():
                        return
                rows = cur.fetchmany(self.LOAD_CHUNK)
                if not rows:
                    break
                loop.call_soon_threadsafe(self._index_loaded, decode_rows(rows))
        except sqlite3.Error as exc:
            logger.error("reading the stored registrations failed: %s", exc)
        finally:
            conn.close()
            with contextlib.suppress(RuntimeError):  # the loop is gone
                loop.call_soon_threadsafe(self._loading_done, started)

    def _index_loaded(self, regs: list[Registration]) -> None:
        touched = self._touched
        by_endpoint = self._by_endpoint
        for reg in regs:
            # Written since the load began, or already read by a lookup: memory is newer.
            if reg.endpoint not in touched and reg.endpoint not in by_endpoint:
                self._index(reg)
        _settle_garbage_collector()

    def _loading_done(self, started: float) -> None:
        self._loading = False
        self._touched.clear()
        if self._point is not None:
            self._point.close()
            self._point = None
        count = len(self._by_id)
        if not self._stop_loading.is_set():
            logger.info("%d registrations loaded in %.1f s", count, time.perf_counter() - started)
        if self.loaded is not None and not self.loaded.done():
            self.loaded.set_result(count)

    def _read_one(self, column: str, value: str) -> Registration | None:
        """While loading: the stored row of a registration not in memory yet (then indexed)."""
        point = self._point
        if point is None:
            return None
        row = point.execute(_POINT_READS[column], (value,)).fetchone()
        if row is None:
            return None
        try:
            reg = registration_from_row(row)
        except (RecordError, StoreError, ValueError):
            return None
        if reg.endpoint in self._touched or reg.endpoint in self._by_endpoint:
            return None  # memory knows better (written since, or another id now)
        self._index(reg)
        return reg

    async def stop_loading(self) -> None:
        """Stop the loading thread (closing the store mid-load)."""
        self._stop_loading.set()
        thread = self._load_thread
        if thread is not None and thread.is_alive():
            await asyncio.get_running_loop().run_in_executor(None, thread.join)

    def get(self, registration_id: str) -> Registration | None:
        """From memory; while loading, from the row when not loaded yet."""
        reg = self._by_id.get(registration_id)
        if reg is None and self._loading:
            reg = self._read_one("id", registration_id)
        return reg

    def get_by_endpoint(self, endpoint: str) -> Registration | None:
        """From memory; while loading, from the row when not loaded yet."""
        reg = self._by_endpoint.get(endpoint)
        if reg is None and self._loading:
            reg = self._read_one("endpoint", endpoint)
        return reg

    # The memory store's add, update and remove read the old registration with get(), which
    # reads its row while loading; the hooks below mark the name, so that the loader skips
    # the stored row of a name written (or removed) since the load began.
    def _persist_add(self, reg: Registration, replaced: Registration | None) -> Awaitable[None]:
        return self._db.submit([self._add_statement(reg)])

    def _persist_add_then(
        self, reg: Registration, replaced: Registration | None, written: WriteDone
    ) -> None:
        self._db.submit_then([self._add_statement(reg)], written)

    def _add_statement(self, reg: Registration) -> Statement:
        if self._loading:
            self._touched.add(reg.endpoint)
        return (REGISTRATION_UPSERT, registration_row(reg))

    def _persist_update(self, reg: Registration, old: Registration) -> Awaitable[None]:
        return self._db.submit([self._update_statement(reg, old)])

    def _persist_update_then(
        self, reg: Registration, old: Registration, written: WriteDone
    ) -> None:
        self._db.submit_then([self._update_statement(reg, old)], written)

    def _update_statement(self, reg: Registration, old: Registration) -> Statement:
        """The columns an Update changed (address, lifetime, time), or the whole row."""
        if self._loading:
            self._touched.add(reg.endpoint)
        if _same_but_touched(old, reg):
            return (REGISTRATION_TOUCH, registration_update_row(reg))
        return (REGISTRATION_UPSERT, registration_row(reg))

    def _persist_remove(self, reg: Registration) -> Awaitable[None]:
        return self._db.submit([self._remove_statement(reg)])

    def _persist_remove_then(self, reg: Registration, written: WriteDone) -> None:
        self._db.submit_then([self._remove_statement(reg)], written)

    def _remove_statement(self, reg: Registration) -> Statement:
        if self._loading:
            self._touched.add(reg.endpoint)
        return (REGISTRATION_DELETE, (reg.id,))


def _same_but_touched(old: Registration, new: Registration) -> bool:
    """``new`` differs from ``old`` at most in the columns of :data:`REGISTRATION_TOUCH`."""
    return (
        (new.links is old.links or new.links == old.links)
        and new.endpoint == old.endpoint
        and new.registered_at == old.registered_at
        and new.endpoint_type == old.endpoint_type
        and new.lwm2m_version == old.lwm2m_version
        and new.binding == old.binding
        and new.queue_mode == old.queue_mode
        and new.sms_number == old.sms_number
        and new.identity == old.identity
    )


def _settle_garbage_collector() -> None:
    """Move everything alive now out of the cyclic garbage collector's sight (``gc.freeze``).

    Called after loaded registrations are indexed: a million of them are
    several million container objects, and every full collection walked them
    all (a pause of a second under a storm, and half the loading time). They
    hold no reference cycles; reference counting still frees the ones that
    are replaced or removed later.
    """
    gc.freeze()


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
    """Documents live only on disk (they are small and rarely read); the names of the
    namespaces that hold any are kept in memory, so :meth:`take_all` of an empty one
    (every De-register asks for the registration's queued requests and attributes)
    reads nothing. This process is the file's only writer while it serves."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        #: namespace -> number of the last put into it (0: found at open); see take_all.
        self._namespaces: dict[str, int] = {
            str(ns): 0 for (ns,) in db.read_all("SELECT DISTINCT namespace FROM documents")
        }
        self._puts = 0

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
        self._puts += 1  # with the submit below in one step: a take_all from now on looks
        self._namespaces[namespace] = self._puts
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

    def may_hold(self, namespace: str) -> bool:
        return namespace in self._namespaces

    async def take_all(self, namespace: str) -> list[tuple[str, JsonDoc]]:
        """Nothing read for a namespace that holds no document; else one DELETE ...
        RETURNING in the group commit, so of two takers each row goes to one."""
        seen = self._namespaces.get(namespace)
        if seen is None:
            return []
        rows = await self._db.query(
            "DELETE FROM documents WHERE namespace = ? RETURNING key, doc", (namespace,)
        )
        if not rows and self._namespaces.get(namespace) == seen:
            # Empty, and no put began since: one that did may have landed after the DELETE.
            del self._namespaces[namespace]
        return sorted((str(k), load_doc(d)) for k, d in rows)

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

    def __init__(self, db: SqliteDatabase, *, load_registrations: bool = True) -> None:
        super().__init__(
            SqliteRegistrationStore(db, load=load_registrations),
            SqliteObservationStore(db),
            SqliteSecurityStore(db),
            SqliteDocumentStore(db),
        )
        self._db = db

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        load_in_background: bool = False,
        writer: WriterKind = "process",
    ) -> SqliteStores:
        """Open (and create) the file off the event loop: reading it back may take a while.

        ``load_in_background``: return at once and read the registrations back
        while serving (see :class:`SqliteRegistrationStore`); the command does
        this, so a restart with a million registrations answers at once.
        ``writer``: where the writing connection lives (see :class:`SqliteDatabase`).
        """
        loop = asyncio.get_running_loop()
        try:
            db = await loop.run_in_executor(
                None, functools.partial(SqliteDatabase, Path(path), writer=writer)
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store {path}: {exc}") from None
        try:
            stores = await loop.run_in_executor(
                None, functools.partial(cls, db, load_registrations=not load_in_background)
            )
            # After the set-up (schema, migration) of this process's connection.
            await db.start()
        except BaseException as exc:
            await db.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot open SQLite store {path}: {exc}") from None
            raise
        if load_in_background:
            stores.registrations.start_loading()
        return stores

    def counters(self) -> dict[str, float]:
        """For /metrics: group commits, the writes they held, and the writer process's
        restarts after it died (an alert: each refused the writes it had not answered)."""
        db = self._db
        process = db.writer_process
        return {
            "sqlite_commits_total": float(db.batches),
            "sqlite_writes_total": float(db.batched_writes),
            "sqlite_writer_deaths_total": float(process.deaths if process is not None else 0),
        }

    async def close(self) -> None:
        """Flush pending writes and close the file."""
        await self.registrations.stop_loading()
        await self._db.close()

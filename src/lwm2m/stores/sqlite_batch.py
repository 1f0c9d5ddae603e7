"""One group commit: the statements of a batch of writes, then one fsync.

Runs wherever the SQLite store's writing connection lives: in the writer
process (:mod:`lwm2m.stores.sqlite_writer`, the default) or on the store's
writer thread. Standard library only, for the writer process's start.

A write (a *job*) is a list of statements that stand or fall together; a
job that reads returns its rows. A batch of jobs shares one transaction:
one fsync for a hundred registrations. A failing statement refuses its own
job only (the batch is then run again job by job under savepoints); a
failing COMMIT refuses every job of the batch.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence
from typing import Any

from lwm2m.stores.sqlite_bulk import run_group, single_statement
from lwm2m.stores.sqlite_schema import Statement

#: ``(reads, statements)``: the statements of one write, or of one read when ``reads``.
Job = tuple[bool, Sequence[Statement]]
#: Per job: ``(rows, None)`` (rows None for a write) or ``(None, "why it was refused")``.
JobResult = tuple[Any, str | None]


def open_connection(path: str) -> sqlite3.Connection:
    """The writing connection: autocommit (the batch opens its own transactions), WAL,
    and a COMMIT that returns only once the WAL is fsynced."""
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def single_statement_of(batch: Sequence[Job]) -> Statement | None:
    """The one statement that does all of ``batch``, or None: it reads, mixes
    statements, or has no bulk form."""
    first = batch[0][1]
    if not first:
        return None
    sql = first[0][0]
    rows: list[Sequence[Any]] = []
    for reads, statements in batch:
        if reads:
            return None
        for q, params in statements:
            if q != sql:
                return None
            rows.append(params)
    return single_statement(sql, rows)


class BatchWriter:
    """Writes batches of jobs on one connection, each batch durable before it returns."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def write(self, batch: Sequence[Job]) -> list[JobResult]:
        """The batch's statements, then its COMMIT; the result of each job.

        A batch of one kind of write (a storm's Registers, Updates or
        De-registers) that fits one statement runs as that statement alone,
        its own transaction: SQLite steps once, and on the writer thread that
        is one hand-over of the GIL instead of three. If it fails nothing of
        it is kept, and the batch runs the long way.

        Raises when nothing of the batch is durable (no transaction, a
        failure that is not a statement's, a failed COMMIT): every job of the
        batch is then refused.
        """
        if not batch:
            return []
        single = single_statement_of(batch)
        if single is not None:
            try:
                self.commit(single)
                return [(None, None)] * len(batch)
            except sqlite3.Error:
                pass  # a row's constraint, or the disk: the long way tells which
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            results = self._run_statements(batch)
            self.commit()
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        return results

    def commit(self, single: Statement | None = None) -> None:
        """The fsync, by the COMMIT of the open transaction or by ``single``, a statement
        run as its own transaction. The one durability point (tests replace it to
        simulate a failing disk)."""
        if single is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute(*single)

    def _run_statements(self, batch: Sequence[Job]) -> list[JobResult]:
        """Run the batch's statements in the open transaction (not yet committed).

        First all at once, consecutive identical statements through one
        multi-row statement; when any fails, again job by job under
        savepoints, so that only the failing job is refused.
        """
        conn = self.conn
        try:
            return self._run_grouped(batch)
        except sqlite3.Error:
            conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")
        results: list[JobResult] = []
        for reads, statements in batch:
            conn.execute("SAVEPOINT job")
            try:
                rows: Any = None
                for sql, params in statements:
                    cur = conn.execute(sql, params)
                    if reads:
                        rows = cur.fetchall()
                conn.execute("RELEASE job")
                results.append((rows, None))
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                results.append((None, f"SQLite: {exc}"))
        return results

    def _run_grouped(self, batch: Sequence[Job]) -> list[JobResult]:
        conn = self.conn
        results: list[JobResult] = []
        sql: str | None = None
        rows_of: list[Sequence[Any]] = []
        for reads, statements in batch:
            if reads:
                if sql is not None:
                    run_group(conn, sql, rows_of)
                    sql, rows_of = None, []
                rows: Any = None
                for q, params in statements:
                    rows = conn.execute(q, params).fetchall()
                results.append((rows, None))
                continue
            for q, params in statements:
                if q != sql:
                    if sql is not None:
                        run_group(conn, sql, rows_of)
                    sql, rows_of = q, []
                rows_of.append(params)
            results.append((None, None))
        if sql is not None:
            run_group(conn, sql, rows_of)
        return results

"""One SQL statement for a group of identical writes, so the writer thread takes the GIL once.

Why: sqlite3's ``executemany`` binds each row holding the GIL and releases
it around each step, so a group of 128 rows hands the GIL between the writer
thread and the event loop about 256 times. The loop only gives it up at its
next system call, so the writer waits for the loop, and each hand-over costs
the loop a futex wake-up and a cross-core switch: with SQLite the loop spent
30 µs more per registration request than with the memory store. One
multi-row statement binds every value in one go and steps once.

Each form below keeps the meaning of running its rows one after the other:
``INSERT OR REPLACE`` rows apply in order (a later row replaces an earlier
one of the same name), an Update group keeps the last row per id, a delete
group removes each id once. A form only applies to the exact statement text
it is registered for; anything else runs as ``executemany``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

#: SQLite's default ceiling on bound parameters per statement (3.32+).
MAX_VARIABLES = 32_766

T = TypeVar("T")
Rows = Sequence[Sequence[Any]]
#: From rows of the single-row statement to (sql, parameters) of multi-row statements.
BulkForm = Callable[[Rows], list[tuple[str, list[Any]]]]

_FORMS: dict[str, BulkForm] = {}


def register_form(sql: str, form: BulkForm) -> None:
    """Let groups of ``sql`` run through ``form`` (statements are module constants)."""
    _FORMS[sql] = form


def run_group(conn: sqlite3.Connection, sql: str, rows: Rows) -> None:
    """Run ``sql`` once per row, as one multi-row statement when a form is known."""
    form = _FORMS.get(sql) if len(rows) > 1 else None
    if form is None:
        conn.executemany(sql, rows)
        return
    for bulk_sql, params in form(rows):
        conn.execute(bulk_sql, params)


def single_statement(sql: str, rows: Rows) -> tuple[str, list[Any]] | None:
    """``sql`` once per row as exactly one statement, or None (no form, or too many
    values for one statement)."""
    form = _FORMS.get(sql)
    if form is None:
        return None
    if len(rows) == 1:
        return sql, list(rows[0])
    statements = form(rows)
    return statements[0] if len(statements) == 1 else None


def _chunks(rows: Sequence[T], width: int) -> list[Sequence[T]]:
    """``rows`` cut so that a chunk binds at most :data:`MAX_VARIABLES` values."""
    per = max(1, MAX_VARIABLES // max(1, width))
    return [rows[i : i + per] for i in range(0, len(rows), per)]


def _flat(rows: Rows) -> list[Any]:
    return [value for row in rows for value in row]


def insert_form(head: str, width: int) -> BulkForm:
    """``head`` is ``INSERT ... INTO t (columns) VALUES``; rows apply in their order."""
    one = "(" + ", ".join("?" * width) + ")"

    def form(rows: Rows) -> list[tuple[str, list[Any]]]:
        return [
            (f"{head} {', '.join([one] * len(chunk))}", _flat(chunk))
            for chunk in _chunks(rows, width)
        ]

    return form


def update_form(table: str, columns: Sequence[str], key: str) -> BulkForm:
    """``UPDATE table SET columns WHERE key = ?`` rows (values, then the key): last row per key wins."""
    width = len(columns) + 1
    one = "(" + ", ".join("?" * width) + ")"
    # VALUES names its columns column1, column2, ...; the key is the last one.
    sets = ", ".join(f"{c} = v.column{i + 1}" for i, c in enumerate(columns))

    def form(rows: Rows) -> list[tuple[str, list[Any]]]:
        last = list({row[-1]: row for row in rows}.values())
        return [
            (
                f"UPDATE {table} SET {sets} FROM (VALUES {', '.join([one] * len(chunk))}) AS v "
                f"WHERE {table}.{key} = v.column{width}",
                _flat(chunk),
            )
            for chunk in _chunks(last, width)
        ]

    return form


def delete_form(table: str, key: str) -> BulkForm:
    """``DELETE FROM table WHERE key = ?`` rows: one ``IN`` list."""

    def form(rows: Rows) -> list[tuple[str, list[Any]]]:
        keys = list(dict.fromkeys(row[0] for row in rows))
        return [
            (
                f"DELETE FROM {table} WHERE {key} IN ({', '.join('?' * len(chunk))})",
                list(chunk),
            )
            for chunk in _chunks(keys, 1)
        ]

    return form

"""Multi-row statements of a group commit mean what their rows one by one mean.

The batch of a loop turn runs each group of identical registration writes as
one statement (:mod:`lwm2m.stores.sqlite_bulk`); any sequence of Registers,
Updates and De-registers, grouped or not, must leave the same table as the
same rows executed one at a time, including names replaced within the
group, the same id updated twice and groups wider than SQLite's limit on
bound parameters.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m.stores import sqlite_bulk
from lwm2m.stores.codec import registration_row, registration_update_row
from lwm2m.stores.records import ObjectLinks, RegisteredObject, Registration
from lwm2m.stores.sqlite import (
    REGISTRATION_DELETE,
    REGISTRATION_TOUCH,
    REGISTRATION_UPSERT,
    SCHEMA,
)
from lwm2m.stores.sqlite_bulk import run_group

Op = tuple[str, tuple[Any, ...]]


def _reg(n: int, name: int, port: int, lifetime: int) -> Registration:
    return Registration(
        id=f"id{n}",
        endpoint=f"ep-{name}",
        address=("127.0.0.1", port),
        lifetime_s=lifetime,
        registered_at=1_700_000_000.0 + n,
        updated_at=1_700_000_000.5 + port,
        links=ObjectLinks(text=f"</3/{n}>", objects=(RegisteredObject(3, None, (n,)),)),
    )


def _op(kind: str, n: int, name: int, port: int, lifetime: int) -> Op:
    reg = _reg(n, name, port, lifetime)
    if kind == "upsert":
        return (REGISTRATION_UPSERT, registration_row(reg))
    if kind == "touch":
        return (REGISTRATION_TOUCH, registration_update_row(reg))
    return (REGISTRATION_DELETE, (reg.id,))


ops = st.lists(
    st.builds(
        _op,
        st.sampled_from(["upsert", "upsert", "touch", "delete"]),
        st.integers(0, 7),  # few ids and names: replacements and repeats within a group
        st.integers(0, 5),
        st.integers(1, 65_535),
        st.integers(1, 86_400),
    ),
    max_size=60,
)


@contextmanager
def _connection() -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        conn.executescript(SCHEMA)
        yield conn
    finally:
        conn.close()


def _table(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT * FROM registrations ORDER BY id").fetchall()


def _groups(sequence: list[Op]) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
    """Consecutive identical statements, as the group commit hands them over."""
    sql: str | None = None
    rows: list[tuple[Any, ...]] = []
    for q, params in sequence:
        if q != sql and sql is not None:
            yield sql, rows
            rows = []
        sql = q
        rows.append(params)
    if sql is not None:
        yield sql, rows


def _one_by_one(sequence: list[Op]) -> list[tuple[Any, ...]]:
    with _connection() as conn:
        for sql, params in sequence:
            conn.execute(sql, params)
        return _table(conn)


def _grouped(sequence: list[Op]) -> list[tuple[Any, ...]]:
    with _connection() as conn:
        for sql, rows in _groups(sequence):
            run_group(conn, sql, rows)
        return _table(conn)


@settings(max_examples=150, deadline=None)
@given(first=ops, then=ops)
def test_grouped_statements_leave_the_table_one_by_one_would(
    first: list[Op], then: list[Op]
) -> None:
    sequence = first + then
    assert _grouped(sequence) == _one_by_one(sequence)


@pytest.mark.parametrize("limit", [19, 40, 100])
def test_groups_wider_than_the_parameter_limit_are_cut(
    monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    monkeypatch.setattr(sqlite_bulk, "MAX_VARIABLES", limit)
    sequence = [_op("upsert", n, n, 1000 + n, 60) for n in range(8)]
    sequence += [_op("upsert", 8, 3, 7, 60)]  # replaces ep-3 in a later chunk
    sequence += [_op("touch", n, n, 2000 + n, 120) for n in range(9)]
    sequence += [_op("delete", n, n, 0, 1) for n in (1, 2, 1, 5)]
    assert _grouped(sequence) == _one_by_one(sequence)
    assert len(_grouped(sequence)) == 5  # 9 written, ep-3 replaced, 3 ids deleted


def test_a_group_runs_as_one_statement() -> None:
    with _connection() as conn:
        traced: list[str] = []
        conn.set_trace_callback(traced.append)
        rows = [_op("upsert", n, n, 1000 + n, 60)[1] for n in range(50)]
        run_group(conn, REGISTRATION_UPSERT, rows)
        assert len(traced) == 1
        assert len(_table(conn)) == 50


def test_a_failing_row_fails_the_whole_statement() -> None:
    """The group commit then runs the batch job by job, so only the bad write is refused."""
    good = _op("upsert", 1, 1, 1000, 60)[1]
    bad = list(_op("upsert", 2, 2, 1001, 60)[1])
    bad[1] = None  # endpoint NOT NULL: the second row violates a constraint
    with _connection() as conn:
        with pytest.raises(sqlite3.Error):
            run_group(conn, REGISTRATION_UPSERT, [good, bad])
        assert _table(conn) == []


def test_renewed_is_replace_with_the_update_fields() -> None:
    """The registrar's Update builds the new registration with ``renewed``; it must keep
    every other field as ``dataclasses.replace`` would (a field added later included)."""
    from dataclasses import replace

    from lwm2m.coap.peer import PeerIdentity

    old = Registration(
        id="abc",
        endpoint="ep",
        address=("127.0.0.1", 1),
        lifetime_s=60,
        registered_at=1.0,
        updated_at=2.0,
        endpoint_type=1,
        lwm2m_version="1.1",
        binding="UQ",
        queue_mode=True,
        sms_number="+33",
        links=ObjectLinks(text="</3/0>", objects=(RegisteredObject(3, None, (0,)),)),
        identity=PeerIdentity(psk_identity=b"id"),
        transport="tcp",
    )
    changes: dict[str, Any] = {
        "address": ("10.0.0.1", 2),
        "transport": "udp",
        "updated_at": 9.0,
        "lifetime_s": 300,
        "sms_number": None,
        "binding": "U",
        "queue_mode": False,
        "links": ObjectLinks(text="</5/0>"),
    }
    assert old.renewed(**changes) == replace(old, **changes)

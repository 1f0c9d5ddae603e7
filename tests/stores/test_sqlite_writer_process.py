"""The SQLite writer process: writes leave the server's process, and its end refuses nothing
it acknowledged.

Real processes and a real file throughout: the writer is started, killed with
SIGKILL, and outlives nothing (a server killed with SIGKILL takes it along once
the batch in hand is committed).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path as FsPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlite_helpers import stored_endpoints

from lwm2m.stores import SQLITE_FILENAME, StoreError, open_stores, sqlite_process
from lwm2m.stores.records import ObjectLinks, RegisteredObject, Registration
from lwm2m.stores.sqlite import SqliteStores
from lwm2m.stores.sqlite_process import WriterProcess
from lwm2m.stores.sqlite_writer import FrameError, FrameReader, frame

SRC = FsPath(__file__).resolve().parents[2] / "src"


def _reg(n: int) -> Registration:
    return Registration(
        id=f"id{n:05d}",
        endpoint=f"ep-{n}",
        address=("127.0.0.1", 5000 + n % 1000),
        lifetime_s=300,
        registered_at=1_700_000_000.0,
        updated_at=1_700_000_000.0,
        links=ObjectLinks(text="</3/0>", objects=(RegisteredObject(3, None, (0,)),)),
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (not reaped yet) is gone for this purpose.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


async def _open_with_writer(
    path: FsPath, monkeypatch: pytest.MonkeyPatch
) -> tuple[SqliteStores, WriterProcess]:
    """The stores, their running writer process, and a writer restarted at once after a death."""
    monkeypatch.setattr(sqlite_process, "RESTART_AFTER_S", 0.0)
    stores = await open_stores("sqlite", path)
    assert isinstance(stores, SqliteStores)
    writer = stores._db.writer_process
    assert writer is not None and writer.pid is not None
    return stores, writer


async def test_the_writes_run_in_the_writer_process(tmp_path: FsPath) -> None:
    stores = await open_stores("sqlite", tmp_path)
    assert isinstance(stores, SqliteStores)
    db = stores._db
    writer = db.writer_process
    assert writer is not None
    pid = writer.pid
    assert pid is not None and pid != os.getpid() and _alive(pid)
    await asyncio.gather(*(stores.registrations.add(_reg(n)) for n in range(40)))
    await stores.documents.put("ns", "k", {"a": 1})
    assert await stores.documents.get("ns", "k") == {"a": 1}
    # This process's connection wrote nothing: the writer did.
    assert db.connection.total_changes == 0
    await stores.close()
    assert _wait_gone(pid, 5.0)
    assert await stored_endpoints(tmp_path) == sorted(f"ep-{n}" for n in range(40))


async def test_a_killed_writer_refuses_what_it_had_not_answered_and_a_new_one_takes_over(
    tmp_path: FsPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    stores, writer = await _open_with_writer(tmp_path, monkeypatch)
    first_pid = writer.pid
    assert first_pid is not None
    await stores.registrations.add(_reg(0))
    adds = [asyncio.ensure_future(stores.registrations.add(_reg(n))) for n in range(1, 301)]
    await asyncio.sleep(0)  # sent down the pipe
    os.kill(first_pid, signal.SIGKILL)
    results = await asyncio.gather(*adds, return_exceptions=True)
    refused = {n for n, r in enumerate(results, 1) if isinstance(r, StoreError)}
    assert refused, "the writer answered everything before it was killed: no test"
    assert writer.deaths == 1
    held = {r.endpoint for r in stores.registrations.list()}
    # Refused writes left the memory view; acknowledged ones stay.
    assert all(f"ep-{n}" not in held for n in refused)
    assert all(f"ep-{n}" in held for n in range(1, 301) if n not in refused)
    # The next write starts a new writer.
    await stores.registrations.add(_reg(1000))
    assert writer.pid is not None and writer.pid != first_pid
    counters = stores.counters()
    assert counters["sqlite_writer_deaths_total"] == 1
    assert counters["sqlite_writes_total"] == 302 - len(refused)
    await stores.close()
    stored = set(await stored_endpoints(tmp_path))
    # Every acknowledged write is durable (a refused one may or may not be: it was never
    # acknowledged, so the client registers again).
    acknowledged = {f"ep-{n}" for n in range(1, 301) if n not in refused} | {"ep-0", "ep-1000"}
    assert acknowledged <= stored


async def test_the_writer_ends_with_a_server_killed_by_sigkill(tmp_path: FsPath) -> None:
    """The writer's input ends with the server: it commits what it holds and exits."""
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal, sys
        from lwm2m.stores import open_stores
        sys.path.insert(0, {str(FsPath(__file__).parent)!r})
        from test_sqlite_writer_process import _reg

        async def main():
            stores = await open_stores("sqlite", {str(tmp_path)!r})
            await asyncio.gather(*(stores.registrations.add(_reg(n)) for n in range(50)))
            print(stores._db.writer_process.pid, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=subprocess.PIPE, env=env
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == -signal.SIGKILL
    writer_pid = int(out.split()[0])
    assert await asyncio.get_running_loop().run_in_executor(None, _wait_gone, writer_pid)
    assert await stored_endpoints(tmp_path) == sorted(f"ep-{n}" for n in range(50))


async def test_the_writer_outlasts_sigterm_and_sigint_and_ends_with_its_input(
    tmp_path: FsPath,
) -> None:
    """A signal to the whole process group (Ctrl-C, a service manager) must not end the
    writer while the server stops and still writes."""
    stores = await open_stores("sqlite", tmp_path)
    assert isinstance(stores, SqliteStores)
    writer = stores._db.writer_process
    assert writer is not None and writer.pid is not None
    pid = writer.pid
    os.kill(pid, signal.SIGTERM)
    os.kill(pid, signal.SIGINT)
    await asyncio.sleep(0.2)
    await stores.registrations.add(_reg(1))
    assert writer.pid == pid and writer.deaths == 0
    await stores.close()
    assert _wait_gone(pid, 5.0)
    assert await stored_endpoints(tmp_path) == ["ep-1"]


async def test_a_writer_that_cannot_start_leaves_the_writes_to_a_thread(
    tmp_path: FsPath, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sqlite_process.sys, "executable", str(tmp_path / "no-python"))
    with caplog.at_level(logging.WARNING, logger="lwm2m.stores.sqlite"):
        stores = await SqliteStores.open(tmp_path / SQLITE_FILENAME)
    assert "cannot start the SQLite writer process" in caplog.text
    assert "on a thread of this process instead" in caplog.text
    try:
        assert stores._db.writer_kind == "thread" and stores._db.writer_process is None
        await stores.registrations.add(_reg(1))
    finally:
        await stores.close()
    monkeypatch.undo()
    assert await stored_endpoints(tmp_path) == ["ep-1"]


async def test_a_writer_that_cannot_open_the_file_says_so(tmp_path: FsPath) -> None:
    writer = WriterProcess(tmp_path / "missing-directory" / "x.db")
    with pytest.raises(StoreError, match="did not start"):
        await writer.start()
    await writer.close()


async def test_a_batch_larger_than_the_pipe_and_a_large_answer(tmp_path: FsPath) -> None:
    """Megabytes each way: the pipe's buffer fills, the rest waits for the writer."""
    stores = await open_stores("sqlite", tmp_path)
    try:
        doc = {"blob": "x" * 2000}
        await asyncio.gather(*(stores.documents.put("big", f"k{n:04d}", doc) for n in range(3000)))
        items = await stores.documents.items("big")
        assert len(items) == 3000 and items[0] == ("k0000", doc)
    finally:
        await stores.close()


def _containers(inner: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.lists(inner, max_size=4) | st.tuples(inner, inner)


messages = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    _containers,
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(st.lists(messages, max_size=6), st.lists(st.integers(1, 50), max_size=20))
def test_frames_cut_anywhere_come_out_whole_and_in_order(
    sent: list[object], cuts: list[int]
) -> None:
    stream = b"".join(frame(m) for m in sent)
    reader = FrameReader()
    received: list[object] = []
    at = 0
    for size in [*cuts, len(stream)]:
        received += reader.feed(stream[at : at + size])
        at += size
    assert received == sent and reader.pending == 0


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_garbage_is_a_frame_error_or_an_incomplete_frame(data: bytes) -> None:
    """No other exception: a broken stream is told as such (the writer then stops)."""
    reader = FrameReader()
    with contextlib.suppress(FrameError):
        reader.feed(data)


async def test_a_new_writer_that_dies_at_start_refuses_the_writes_sent_to_it(
    tmp_path: FsPath, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stores, writer = await _open_with_writer(tmp_path, monkeypatch)
    assert writer.pid is not None
    os.kill(writer.pid, signal.SIGKILL)
    while writer.pid is not None:  # its end of output is seen
        await asyncio.sleep(0.01)
    # The next writer is started by the next write, and ends at once.
    monkeypatch.setattr(sqlite_process.sys, "executable", "/bin/false")
    with caplog.at_level(logging.ERROR):
        with pytest.raises(StoreError, match="writer process ended"):
            await stores.registrations.add(_reg(1))
        assert stores.registrations.get_by_endpoint("ep-1") is None
        monkeypatch.undo()
        monkeypatch.setattr(sqlite_process, "RESTART_AFTER_S", 0.0)
        await stores.registrations.add(_reg(2))  # a sound writer again
        gc.collect()  # the failed start's future is gone now: no "never retrieved" error
        await asyncio.sleep(0)
    assert "never retrieved" not in caplog.text
    await stores.close()
    assert await stored_endpoints(tmp_path) == ["ep-2"]

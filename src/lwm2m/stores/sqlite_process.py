"""The server's side of the SQLite writer process (:mod:`lwm2m.stores.sqlite_writer`).

Sends each loop turn's writes down a pipe at once, without waiting for the
batch before (the writer joins what waits into one batch), and resolves
each message's future when the writer's answer comes back. Everything runs
on the event loop: a non-blocking write, a reader callback; no thread.

If the writer dies (killed, out of memory), every write it had not
answered is refused (it may or may not be durable: it was never
acknowledged) and the next write starts a new writer, at most once a
second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import lwm2m
from lwm2m.stores.base import StoreError
from lwm2m.stores.sqlite_batch import Job, JobResult
from lwm2m.stores.sqlite_writer import FrameError, FrameReader, frame

logger = logging.getLogger(__name__)

#: Seconds a new writer may take to open the file and say it is ready.
START_TIMEOUT_S = 30.0
#: Seconds between two starts after the writer died.
RESTART_AFTER_S = 1.0
#: Seconds ``close`` waits for the writer to end after its input closed, before killing it.
STOP_TIMEOUT_S = 10.0


def _package_root() -> str:
    """The directory holding the ``lwm2m`` package this process runs, for the child's
    ``sys.path`` (whatever path tricks the parent used, the child runs the same code)."""
    return str(Path(lwm2m.__file__).resolve().parent.parent)


class WriterProcess:
    """One writer process for one database file; :meth:`send` after :meth:`start`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._proc: subprocess.Popen[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._to_child = -1
        self._from_child = -1
        self._out = bytearray()
        self._writing_out = False
        self._reader = FrameReader()
        self._seq = 0
        #: Sent messages not answered yet, in order.
        self._waiting: deque[tuple[int, asyncio.Future[list[JobResult]]]] = deque()
        self._ready: asyncio.Future[int] | None = None
        self._started_at = -RESTART_AFTER_S
        self._closing = False
        #: Times the writer died (for /metrics).
        self.deaths = 0

    @property
    def pid(self) -> int | None:
        """The running writer's process id."""
        return self._proc.pid if self._proc is not None else None

    # -- start
    async def start(self) -> None:
        """Start the writer and wait until it has the file open (StoreError otherwise)."""
        self._spawn(asyncio.get_running_loop())
        assert self._ready is not None
        try:
            await asyncio.wait_for(asyncio.shield(self._ready), START_TIMEOUT_S)
        except TimeoutError:
            self._kill()
            raise StoreError(
                f"the SQLite writer process did not start within {START_TIMEOUT_S:.0f} s"
            ) from None

    def _spawn(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._started_at = time.monotonic()
        env = dict(os.environ)
        root = _package_root()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        try:
            proc = subprocess.Popen(
                # -S: no site-packages scan (the package root is on PYTHONPATH); start in ~30 ms.
                [sys.executable, "-S", "-m", "lwm2m.stores.sqlite_writer", str(self.path)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
                close_fds=True,
            )
        except OSError as exc:
            raise StoreError(f"cannot start the SQLite writer process: {exc}") from None
        assert proc.stdin is not None and proc.stdout is not None
        self._proc = proc
        self._to_child = proc.stdin.fileno()
        self._from_child = proc.stdout.fileno()
        os.set_blocking(self._to_child, False)
        os.set_blocking(self._from_child, False)
        self._ready = loop.create_future()
        loop.add_reader(self._from_child, self._on_readable)

    # -- send
    def send(self, jobs: list[Job]) -> asyncio.Future[list[JobResult]]:
        """Queue ``jobs`` for the writer; the future gives their results once committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[JobResult]] = loop.create_future()
        if self._closing:
            future.set_exception(StoreError("the SQLite store is closed"))
            return future
        if self._proc is None:
            if time.monotonic() - self._started_at < RESTART_AFTER_S:
                future.set_exception(StoreError("the SQLite writer process is restarting"))
                return future
            try:
                self._spawn(loop)
            except StoreError as exc:
                future.set_exception(exc)
                return future
        try:
            data = frame((self._seq + 1, jobs))
        except ValueError:  # a value marshal cannot carry: refuse its job, send the rest
            return self._send_sendable(jobs)
        self._seq += 1
        self._waiting.append((self._seq, future))
        self._out += data
        if not self._writing_out:
            self._write_out()
        return future

    def _send_sendable(self, jobs: list[Job]) -> asyncio.Future[list[JobResult]]:
        """:meth:`send` of the jobs whose values can be sent; the others are refused, as
        SQLite refuses a value it cannot bind (the thread writer's way)."""
        refused: dict[int, str] = {}
        for i, job in enumerate(jobs):
            try:
                frame(job)
            except ValueError as exc:
                refused[i] = f"SQLite: a value of this write cannot be stored: {exc}"
        sent = self.send([job for i, job in enumerate(jobs) if i not in refused])
        merged: asyncio.Future[list[JobResult]] = asyncio.get_running_loop().create_future()

        def merge(done: asyncio.Future[list[JobResult]]) -> None:
            error = done.exception()
            if error is not None:
                merged.set_exception(error)
                return
            results = iter(done.result())
            merged.set_result(
                [(None, refused[i]) if i in refused else next(results) for i in range(len(jobs))]
            )

        sent.add_done_callback(merge)
        return merged

    def _write_out(self) -> None:
        out = self._out
        try:
            while out:
                written = os.write(self._to_child, out)
                del out[:written]
        except BlockingIOError:
            if not self._writing_out:
                self._writing_out = True
                assert self._loop is not None
                self._loop.add_writer(self._to_child, self._write_out)
            return
        except OSError as exc:  # the writer is gone; its end of output says more
            self._died(f"cannot write to it: {exc}")
            return
        if self._writing_out:
            self._writing_out = False
            assert self._loop is not None
            self._loop.remove_writer(self._to_child)

    # -- answers
    def _on_readable(self) -> None:
        try:
            data = os.read(self._from_child, 1 << 20)
        except BlockingIOError:
            return
        except OSError as exc:
            self._died(f"cannot read from it: {exc}")
            return
        if not data:
            self._died("it ended")
            return
        try:
            messages = self._reader.feed(data)
        except FrameError as exc:
            self._died(str(exc))
            return
        for message in messages:
            if isinstance(message, tuple):  # ("ready", pid)
                if self._ready is not None and not self._ready.done():
                    self._ready.set_result(message[1])
                continue
            for seq, outcome in message:
                expected, future = self._waiting.popleft()
                if expected != seq:  # cannot happen with a sane writer
                    self._died(f"answer {seq} where {expected} was due")
                    return
                if future.done():
                    continue
                if isinstance(outcome, str):
                    future.set_exception(StoreError(outcome))
                else:
                    future.set_result(outcome)

    def _died(self, why: str) -> None:
        proc = self._proc
        if proc is None:
            return
        self._detach()
        status = _reap(proc)
        refused = len(self._waiting)
        if not self._closing:
            self.deaths += 1
            logger.error(
                "the SQLite writer process (pid %d) is gone: %s (exit status %s); "
                "%d unanswered write(s) refused, the next write starts a new one",
                proc.pid,
                why,
                status,
                refused,
            )
        failure = StoreError(f"the SQLite writer process ended ({why}): write not acknowledged")
        while self._waiting:
            _, future = self._waiting.popleft()
            if not future.done():
                future.set_exception(failure)
        ready = self._ready
        if ready is not None and not ready.done():
            ready.set_exception(StoreError(f"the SQLite writer process did not start: {why}"))
            ready.exception()  # retrieved: only start() awaits it, a restart by send() does not

    def _detach(self) -> None:
        """Forget the current process's pipes (it is gone or going)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.remove_reader(self._from_child)
            if self._writing_out:
                loop.remove_writer(self._to_child)
        self._writing_out = False
        self._out = bytearray()
        self._reader = FrameReader()  # a frame cut by the death is not the next writer's
        proc = self._proc
        self._proc = None
        if proc is not None:
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()

    def _kill(self) -> None:
        proc = self._proc
        self._detach()
        if proc is not None:
            _reap(proc)

    # -- stop
    async def close(self) -> None:
        """End the writer once it answered everything sent (the caller waited for that)."""
        self._closing = True
        proc = self._proc
        if proc is None:
            return
        loop = asyncio.get_running_loop()
        while self._out and self._proc is not None:  # the last bytes still queued
            await asyncio.sleep(0.001)
        if self._proc is None:
            return
        if loop is self._loop:
            loop.remove_reader(self._from_child)
        assert proc.stdin is not None
        with contextlib.suppress(OSError):
            proc.stdin.close()  # end of input: the writer exits
        try:
            await asyncio.wait_for(loop.run_in_executor(None, proc.wait), STOP_TIMEOUT_S)
        except TimeoutError:
            logger.error("the SQLite writer process did not end; killed")
            proc.kill()
            await loop.run_in_executor(None, proc.wait)
        self._proc = None
        assert proc.stdout is not None
        with contextlib.suppress(OSError):
            proc.stdout.close()


def _reap(proc: subprocess.Popen[bytes]) -> int:
    """The exit status of a writer whose pipes are closed; killed first if still running."""
    if proc.poll() is None:
        with contextlib.suppress(OSError):
            proc.kill()
    return proc.wait()

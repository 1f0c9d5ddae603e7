"""The SQLite writer process: the store's one writing connection, outside the server.

Why a process: in the server, SQLite's work for a storm of Registers (the
B-tree updates, the WAL frames, the fsync) took the event loop's core and
its GIL in turn, and each hand-over of the GIL to a writer thread waited
for the busy loop (0.6-1 ms a batch, twice): the durable Register rate was
bound by that, not by the loop's own work. Here SQLite runs on the other
core with its own interpreter, and the loop spends one pipe write per loop
turn and one read per batch (docs/performance.md, sixth pass).

Protocol, over the child's stdin and stdout (both then pointed away, so a
stray print cannot corrupt it): frames of a 4-byte big-endian length and a
:mod:`marshal` body (parent and child are the same interpreter).
- parent -> child: ``(seq, jobs)``, the writes of one loop turn, in order;
- child -> parent: first ``("ready", pid)``, then per batch
  ``[(seq, results), ...]`` where results is a list of
  :data:`~lwm2m.stores.sqlite_batch.JobResult` or, when the whole batch
  failed, the reason as a string.
The child joins every message already waiting into one batch (group commit
across loop turns), answers only after its COMMIT returned, and exits at
end of input (the server closed it, or died: a ``kill -9`` of the server
ends the writer once the batch in hand is committed).

Run as ``python -m lwm2m.stores.sqlite_writer PATH``; imports the standard
library and three small modules of this package only.
"""

from __future__ import annotations

import marshal
import os
import select
import signal
import sqlite3
import struct
import sys
from typing import Any

from lwm2m.stores.sqlite_batch import BatchWriter, Job, JobResult, open_connection

_LENGTH = struct.Struct("!I")
#: A frame longer than this is a broken stream, not a message.
MAX_FRAME = 1 << 30
#: Jobs joined into one batch at most: bounds a batch's latency and memory.
MAX_BATCH_JOBS = 4096


def frame(message: Any) -> bytes:
    """``message`` (marshal's types only) as one frame."""
    body = marshal.dumps(message)
    return _LENGTH.pack(len(body)) + body


class FrameError(Exception):
    """The byte stream is not a sequence of frames."""


class FrameReader:
    """Frames out of a byte stream fed in arbitrary pieces."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Any]:
        """The messages ``data`` completes (none when a frame is still partial)."""
        buffer = self._buffer
        buffer += data
        messages: list[Any] = []
        start = 0
        end = len(buffer)
        while end - start >= 4:
            (length,) = _LENGTH.unpack_from(buffer, start)
            if length > MAX_FRAME:
                raise FrameError(f"frame of {length} bytes")
            if end - start - 4 < length:
                break
            body = bytes(buffer[start + 4 : start + 4 + length])
            try:
                messages.append(marshal.loads(body))
            except (EOFError, ValueError, TypeError) as exc:
                raise FrameError(f"unreadable frame: {exc}") from None
            start += 4 + length
        if start:
            del buffer[:start]
        return messages

    @property
    def pending(self) -> int:
        """Bytes of a frame not complete yet."""
        return len(self._buffer)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _next_batch(fd: int, reader: FrameReader) -> list[tuple[int, list[Job]]] | None:
    """Block for one message, then take every message already waiting (up to
    :data:`MAX_BATCH_JOBS` jobs); None at end of input."""
    messages: list[tuple[int, list[Job]]] = []
    jobs = 0
    while not messages:
        data = os.read(fd, 1 << 20)
        if not data:
            return None
        for seq, batch in reader.feed(data):
            messages.append((seq, batch))
            jobs += len(batch)
    while jobs < MAX_BATCH_JOBS and select.select([fd], [], [], 0)[0]:
        data = os.read(fd, 1 << 20)
        if not data:
            break  # end of input: this batch first, the next read says so
        for seq, batch in reader.feed(data):
            messages.append((seq, batch))
            jobs += len(batch)
    return messages


def serve(path: str, requests: int, replies: int) -> int:
    """Write what ``requests`` asks until its end; answer on ``replies``."""
    try:
        writer = BatchWriter(open_connection(path))
    except sqlite3.Error as exc:
        print(f"lwm2m sqlite writer: cannot open {path}: {exc}", file=sys.stderr, flush=True)
        return 1
    _write_all(replies, frame(("ready", os.getpid())))
    reader = FrameReader()
    try:
        while True:
            messages = _next_batch(requests, reader)
            if messages is None:
                return 0
            jobs = [job for _, batch in messages for job in batch]
            outcome: list[JobResult] | str
            try:
                outcome = writer.write(jobs)
            except Exception as exc:  # nothing of the batch is durable
                outcome = f"SQLite commit failed: {exc}"
            answers: list[tuple[int, list[JobResult] | str]] = []
            start = 0
            for seq, batch in messages:
                if isinstance(outcome, str):
                    answers.append((seq, outcome))
                else:
                    answers.append((seq, outcome[start : start + len(batch)]))
                start += len(batch)
            _write_all(replies, frame(answers))
    except FrameError as exc:
        print(f"lwm2m sqlite writer: {exc}", file=sys.stderr, flush=True)
        return 2
    except BrokenPipeError:
        return 0  # the server is gone; what it sent is committed
    finally:
        writer.conn.close()


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m lwm2m.stores.sqlite_writer DATABASE", file=sys.stderr)
        return 2
    # Its life follows the server's through the pipe, not through signals: a Ctrl-C or
    # a SIGTERM to the whole process group must not end it while the server stops and
    # still writes. The end of its input ends it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    requests, replies = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    return serve(argv[1], requests, replies)


if __name__ == "__main__":
    sys.exit(main(sys.argv))

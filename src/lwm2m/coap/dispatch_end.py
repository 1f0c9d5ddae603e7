"""Work put off to the end of the endpoint's dispatch of one loop turn's requests.

Why: the SQLite store gathers the writes of a loop turn into one group commit
by scheduling its flush with ``call_soon``. On uvloop the endpoint dispatches
the datagrams of a turn (up to 32) together, itself from a ``call_soon``
callback, so the store's flush ran one loop iteration later: after that
iteration's reads, whose datagrams were decoded first. Every commit's requests
waited for them, and with the answer held until the commit, that wait is part
of each durable Register's latency (a closed loop of 128 requests in flight
then leaves the loop idle part of the time).

Within :func:`dispatching` (the endpoint's dispatch of a turn), a batch that
gathers what the handlers queue asks :func:`at_dispatch_end` instead of
``call_soon``: its flush runs as the dispatch ends, with exactly the writes of
the requests just dispatched. Outside a dispatch (a timer, a task, asyncio's own
loop, which dispatches each datagram alone) :func:`at_dispatch_end` says no and
the caller schedules as before, so a batch still gathers a whole turn there.

Per thread, not per context: the scope is the synchronous extent of the
dispatch, and a task started inside it must not inherit it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)


class _Scope(threading.local):
    def __init__(self) -> None:
        self.pending: list[Callable[[], object]] | None = None


_scope = _Scope()


@contextmanager
def dispatching() -> Iterator[None]:
    """Run what :func:`at_dispatch_end` was given inside, once the block ends (in order;
    one that fails is logged and the others still run). Nested, each block runs its own.

    The block must not suspend (no ``await`` in it): whatever the loop ran meanwhile
    would be inside it too.
    """
    outer = _scope.pending
    pending: list[Callable[[], object]] = []
    _scope.pending = pending
    try:
        yield
    finally:
        _scope.pending = outer
        for callback in pending:
            try:
                callback()
            except Exception:
                logger.exception("%r, run at the end of a dispatch, failed", callback)


def at_dispatch_end(callback: Callable[[], object]) -> bool:
    """Call ``callback()`` when the dispatch running now ends; False (and nothing done)
    when no dispatch is running: the caller schedules it itself."""
    pending = _scope.pending
    if pending is None:
        return False
    pending.append(callback)
    return True

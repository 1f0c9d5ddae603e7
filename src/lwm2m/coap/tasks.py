"""Ending tasks at a stop without losing the stopper's own cancellation.

Why not ``task.cancel()`` then ``await task`` under ``suppress(CancelledError)``:
the ``CancelledError`` that await raises may be the awaiting task's own (a stop
bounded by ``asyncio.timeout``, a shutdown cancelling everything), and
suppressing it left that stop running, unbounded. ``asyncio.wait`` raises only
the waiter's own cancellation, never the tasks' outcomes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any] | None]) -> None:
    """Cancel ``tasks`` (None entries skipped) and wait until each has ended, whatever it
    ended with; a cancellation of the caller itself is raised, not swallowed."""
    pending = [task for task in tasks if task is not None]
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    for task in pending:
        if not task.cancelled():
            task.exception()  # retrieved: whatever it ended with is not logged again


async def wait_then_cancel(tasks: Iterable[asyncio.Future[Any] | None], timeout: float) -> None:
    """Give ``tasks`` up to ``timeout`` seconds to end by themselves, then
    :func:`cancel_and_wait` the rest. A cancellation of the caller still ends them
    all and is then raised (``asyncio.wait_for`` under ``suppress`` swallowed it, or
    left the tasks running)."""
    pending = [task for task in tasks if task is not None]
    try:
        if pending:
            await asyncio.wait(pending, timeout=timeout)
    finally:
        await cancel_and_wait(pending)

"""cancel_and_wait and wait_then_cancel: tasks end whatever they end with; the caller's own
cancel is kept."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest

from lwm2m.coap.tasks import cancel_and_wait, wait_then_cancel


async def test_every_task_ends_and_no_outcome_is_reported_later(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def sleeper() -> None:
        await asyncio.sleep(60)

    async def failing_on_cancel() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    async def done() -> int:
        return 1

    finished = asyncio.ensure_future(done())
    await asyncio.sleep(0)
    tasks = [asyncio.ensure_future(sleeper()), asyncio.ensure_future(failing_on_cancel())]
    await asyncio.sleep(0)
    await cancel_and_wait([*tasks, None, finished])
    assert all(task.done() for task in tasks)
    assert tasks[0].cancelled() and isinstance(tasks[1].exception(), RuntimeError)
    del tasks
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        gc.collect()
    assert "never retrieved" not in caplog.text


async def test_a_cancel_of_the_caller_is_not_swallowed() -> None:
    """A task that takes long to end (here: it ignores the first cancel) does not hold a
    caller that is itself cancelled, as a bounded stop is."""
    release = asyncio.Event()

    async def stubborn() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await release.wait()

    task = asyncio.ensure_future(stubborn())
    await asyncio.sleep(0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await cancel_and_wait([task])
    assert not task.done()
    release.set()
    await task


async def test_wait_then_cancel_lets_a_task_finish_in_time_and_cancels_one_that_does_not() -> None:
    async def quick() -> int:
        await asyncio.sleep(0.01)
        return 7

    async def stuck() -> None:
        await asyncio.Event().wait()

    finishing, hanging = asyncio.ensure_future(quick()), asyncio.ensure_future(stuck())
    await wait_then_cancel([finishing, None, hanging], 0.2)
    assert finishing.result() == 7
    assert hanging.cancelled()


async def test_wait_then_cancel_cancelled_itself_still_ends_its_tasks_then_raises() -> None:
    """The shape it replaced (``wait_for(shield(task))`` under ``suppress``) either
    swallowed the caller's cancel or left the task running."""
    hanging = asyncio.ensure_future(asyncio.Event().wait())
    waiting = asyncio.ensure_future(wait_then_cancel([hanging], 30))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert hanging.cancelled()

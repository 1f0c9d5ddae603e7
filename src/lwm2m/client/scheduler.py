"""One timer heap for many devices.

Ten thousand simulated devices each need an Update timer and maybe
notification timers, but none of them needs a task while idle. A
:class:`Scheduler` keeps every timer in one heap and arms a single event-loop
callback for the earliest; callbacks are plain functions that start a task
only when there is work (sending an Update, a notification).

:class:`ManualScheduler` has a clock that only moves when a test says so.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Timer:
    """A scheduled callback; :meth:`cancel` is O(1) (the heap entry is skipped later)."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Scheduler:
    """Timers on the running event loop's clock (monotonic seconds)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._handle: asyncio.TimerHandle | None = None
        self._armed_at: float | None = None

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(when, callback)
        heapq.heappush(self._heap, (when, next(self._seq), timer))
        if self._armed_at is None or when < self._armed_at:
            self._arm()
        return timer

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> Timer:
        return self.call_at(self.now() + max(0.0, delay_s), callback)

    def __len__(self) -> int:
        return sum(1 for _, _, t in self._heap if not t.cancelled)

    def _arm(self) -> None:
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
            self._armed_at = None
        if not self._heap:
            return
        when = self._heap[0][0]
        self._armed_at = when
        self._handle = asyncio.get_running_loop().call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._armed_at = None
        self.run_due(self.now())
        self._arm()

    def run_due(self, now: float) -> int:
        """Run every timer due at ``now``; returns how many ran."""
        ran = 0
        while self._heap and self._heap[0][0] <= now:
            _, _, timer = heapq.heappop(self._heap)
            if timer.cancelled:
                continue
            timer.cancelled = True
            ran += 1
            try:
                timer.callback()
            except Exception:
                logger.exception("timer callback failed")
        return ran

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._armed_at = None
        self._heap.clear()


class ManualScheduler(Scheduler):
    """A scheduler whose clock moves only with :meth:`advance` (tests)."""

    def __init__(self, start: float = 1000.0) -> None:
        super().__init__()
        self._now = start

    def now(self) -> float:
        return self._now

    def _arm(self) -> None:
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)

    def advance(self, seconds: float) -> int:
        """Move the clock and run what became due (in order); returns how many ran."""
        target = self._now + seconds
        ran = 0
        while self._heap and self._heap[0][0] <= target:
            self._now = max(self._now, self._heap[0][0])
            ran += self.run_due(self._now)
        self._now = target
        return ran


def wall_clock() -> float:
    """Seconds since the epoch (the Device object's Current Time)."""
    return time.time()

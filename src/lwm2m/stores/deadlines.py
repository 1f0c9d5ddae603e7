"""When each registration's lifetime ends, by the second: what the expiry sweep reads.

Why not a heap of ``(deadline, id)`` tuples, as before: at a million registrations
that was 96 bytes each (the tuple and its float) and a push of twenty levels per
Register and per Update. Here an id waits in the list of the second its deadline
falls in: 8 bytes, and a push is an append.

Entries are not removed when a registration ends or its deadline moves; the sweep
skips those (lazy deletion), and the owner rebuilds the index when stale entries
outnumber the live ones (see :attr:`Deadlines.entries`).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable

#: The second of a deadline that is no number of seconds (infinite or NaN): never due.
_NEVER = 1 << 62


class Deadlines:
    """Keys (registration ids) grouped by the second of their deadline."""

    __slots__ = ("_buckets", "_seconds", "entries")

    def __init__(self) -> None:
        self._buckets: dict[int, list[str]] = {}
        #: The seconds that have a bucket, as a heap: the earliest first.
        self._seconds: list[int] = []
        #: Entries held, stale ones included: the owner rebuilds when they pile up.
        self.entries = 0

    def push(self, deadline: float, key: str) -> None:
        """``key``'s deadline is now ``deadline`` (an earlier entry of it becomes stale)."""
        second = _second(deadline)
        bucket = self._buckets.get(second)
        if bucket is None:
            self._buckets[second] = [key]
            heapq.heappush(self._seconds, second)
        else:
            bucket.append(key)
        self.entries += 1

    def rebuild(self, deadlines: Iterable[tuple[float, str]]) -> None:
        """Only these entries, the stale ones dropped."""
        self._buckets = {}
        self._seconds = []
        self.entries = 0
        for deadline, key in deadlines:
            self.push(deadline, key)

    def due(
        self, now: float, grace_s: float, deadline_of: Callable[[str], float | None]
    ) -> list[str]:
        """The keys whose current deadline (``deadline_of``, None when the key is gone) plus
        ``grace_s`` is before ``now``, each once, the earliest seconds first.

        They stay in the index (a sweep that fails to remove one finds it again next
        time); the stale entries met on the way are dropped.
        """
        seconds = self._seconds
        buckets = self._buckets
        result: list[str] = []
        seen: set[str] = set()
        kept: list[int] = []
        # A second's deadlines are all at or after it: none is due before it is.
        while seconds and seconds[0] + grace_s < now:
            second = heapq.heappop(seconds)
            bucket = buckets.pop(second)
            live: list[str] = []
            for key in bucket:
                if key in seen:
                    continue
                deadline = deadline_of(key)
                if deadline is None or _second(deadline) != second:
                    continue  # gone, or its deadline moved to another second
                seen.add(key)
                live.append(key)
                if deadline + grace_s < now:
                    result.append(key)
            self.entries -= len(bucket) - len(live)
            if live:
                buckets[second] = live
                kept.append(second)
        for second in kept:
            heapq.heappush(seconds, second)
        return result


def _second(deadline: float) -> int:
    try:
        return math.floor(deadline)
    except (OverflowError, ValueError):
        return -_NEVER if deadline < 0 else _NEVER

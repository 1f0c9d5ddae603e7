"""Rate-limiting log lines that the network can trigger.

A misbehaving fleet (a thousand devices with a wrong key, one device retrying
a refused Register every second) must not be able to flood the server's log,
yet an operator must still learn that it happens and how often. Each kind of
line gets a token bucket: a burst passes, then lines pass at a low steady rate,
and what was held back is counted and reported as one summary line per
interval ("N more ... not logged").

Pure: the caller passes ``now`` (monotonic seconds); nothing here reads a
clock or logs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

#: Lines of one key that may pass at once.
DEFAULT_BURST = 20
#: Lines of one key per second once the burst is used up (6 a minute).
DEFAULT_RATE_PER_S = 0.1
#: At most one summary of suppressed lines per this many seconds.
DEFAULT_SUMMARY_INTERVAL_S = 60.0


@dataclass(slots=True)
class TokenBucket:
    """``capacity`` tokens, refilled at ``rate_per_s``; a line costs one token."""

    capacity: float
    rate_per_s: float
    tokens: float
    updated: float

    def take(self, now: float) -> bool:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate_per_s)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class LogLimiter:
    """Token buckets per key, and the count of lines each key had suppressed.

    Keys should come from a small fixed set (a refusal's kind and reason), never
    from the network: one bucket per key is kept for good.
    """

    def __init__(
        self,
        *,
        burst: int = DEFAULT_BURST,
        rate_per_s: float = DEFAULT_RATE_PER_S,
        summary_interval_s: float = DEFAULT_SUMMARY_INTERVAL_S,
    ) -> None:
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.burst = burst
        self.rate_per_s = rate_per_s
        self.summary_interval_s = summary_interval_s
        self._buckets: dict[str, TokenBucket] = {}
        self._suppressed: Counter[str] = Counter()
        #: When the oldest line of the pending summary was suppressed.
        self._pending_since: float | None = None

    def allow(self, key: str, now: float) -> bool:
        """True: log the line. False: it is counted for the next summary instead."""
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(float(self.burst), self.rate_per_s, float(self.burst), now)
            self._buckets[key] = bucket
        if bucket.take(now):
            return True
        self._suppressed[key] += 1
        if self._pending_since is None:
            self._pending_since = now
        return False

    @property
    def pending(self) -> int:
        """Lines suppressed since the last summary."""
        return sum(self._suppressed.values())

    def summary_due_at(self) -> float | None:
        """When the pending summary becomes due (None: nothing suppressed)."""
        if self._pending_since is None:
            return None
        return self._pending_since + self.summary_interval_s

    def take_summary(self, now: float, *, force: bool = False) -> dict[str, int] | None:
        """The suppressed counts per key once the interval has passed (or ``force``), then reset."""
        due = self.summary_due_at()
        if due is None or (not force and now < due):
            return None
        counts = dict(self._suppressed)
        self._suppressed.clear()
        self._pending_since = None
        return counts

"""Log lines of registrations that stay readable, and affordable, in a storm.

One INFO line per Register, Update and De-register is what an operator wants
from a handful of devices, and what sinks a server when a whole fleet comes
back after an outage: formatting and writing a line costs about as much as
serving the request. So the lines go out at INFO within a budget (a token
bucket, ``lines_per_s`` with a ``burst``); beyond it they go to DEBUG only,
and :meth:`RegistrationLog.summary` (called periodically by the server)
writes one INFO line with the counts of the interval instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

#: Per-registration INFO lines per second beyond the burst.
DEFAULT_LINES_PER_S = 20.0
DEFAULT_BURST = 200.0


class RegistrationLog:
    """Counts registration activity and logs it line by line while the budget lasts."""

    __slots__ = (
        "_burst",
        "_clock",
        "_last",
        "_logger",
        "_rate",
        "_summary_at",
        "_tokens",
        "deregistered",
        "expired",
        "registered",
        "suppressed",
        "updated",
    )

    def __init__(
        self,
        logger: logging.Logger,
        *,
        lines_per_s: float = DEFAULT_LINES_PER_S,
        burst: float = DEFAULT_BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._rate = lines_per_s
        self._burst = burst
        self._tokens = burst
        self._clock = clock
        self._last = clock()
        self._summary_at = self._last
        self.registered = 0
        self.updated = 0
        self.deregistered = 0
        self.expired = 0
        #: Lines that went to DEBUG only since the last summary.
        self.suppressed = 0

    def line(self, msg: str, *args: object) -> None:
        """One registration's line: INFO within the budget, else DEBUG (and counted)."""
        emit = self.emitter()
        if emit is not None:
            emit(msg, *args)

    def emitter(self) -> Callable[..., None] | None:
        """Where the next line goes: ``logger.info`` within the budget, else (counted)
        ``logger.debug``; None when that goes nowhere (DEBUG off), so that a storm's
        Registers beyond the budget do not even build their lines' arguments."""
        logger = self._logger
        if self._tokens < 1.0:
            now = self._clock()
            self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
            self._last = now
            if self._tokens < 1.0:
                # Beyond the budget (a storm): one level check, not two, a request.
                self.suppressed += 1
                return logger.debug if logger.isEnabledFor(logging.DEBUG) else None
        if not logger.isEnabledFor(logging.INFO):
            return logger.debug if logger.isEnabledFor(logging.DEBUG) else None
        self._tokens -= 1.0
        return logger.info

    def summary(self, live: int) -> None:
        """One INFO line with the counts since the last summary (none when nothing happened)."""
        now = self._clock()
        counts = (self.registered, self.updated, self.deregistered, self.expired)
        if any(counts):
            self._logger.info(
                "registrations: %d live; in the last %.0f s: %d Register, %d Update, "
                "%d De-register, %d expired%s",
                live,
                now - self._summary_at,
                *counts,
                f" ({self.suppressed} lines at DEBUG only)" if self.suppressed else "",
            )
        self._summary_at = now
        self.registered = self.updated = self.deregistered = self.expired = 0
        self.suppressed = 0

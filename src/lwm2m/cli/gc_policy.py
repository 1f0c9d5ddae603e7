"""The cyclic garbage collector's thresholds for a long-running server process.

Why: under a registration storm every request allocates a few dozen
container objects (the message, its coroutines and futures, the new
registration), and with CPython's default first threshold (700) the young
generation was collected every dozen requests, the middle one every hundred,
and the whole heap (every registration held) whenever the survivors reached
a quarter of it. Measured with ``bench/server.py`` on the SQLite store: a
fifth of the loop's CPU time per request, and the p99 latency of Updates
and De-registers went from about 12 ms to 90-120 ms. Registrations and the
indexes hold no reference cycles, so reference counting frees them; the
collector only has the short-lived cycles of the request machinery to find,
and finds them as well a little later. Memory held by waiting garbage stays
small: at most ten thousand young objects.
"""

from __future__ import annotations

import gc

#: Young-generation allocations between collections (CPython's default: 700).
YOUNG_THRESHOLD = 10_000
#: Young collections per middle one, middle collections per full one (defaults: 10, 10).
OLDER_THRESHOLDS = (10, 10)


def tune_for_server() -> None:
    """Collect less often; called once by the commands that run a server."""
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)

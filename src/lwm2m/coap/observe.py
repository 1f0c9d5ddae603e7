"""Observe (RFC 7641) pieces that need no engine state."""

from __future__ import annotations

OBSERVE_REGISTER = 0
OBSERVE_DEREGISTER = 1
SEQUENCE_MODULUS = 1 << 24
_HALF = 1 << 23
FRESHNESS_WINDOW_S = 128.0
"""RFC 7641 3.4: after this long, any notification is taken as newer."""
CON_NOTIFICATION_INTERVAL_S = 24 * 3600.0
"""RFC 7641 4.5: send a CON notification at least this often to detect dead clients."""


def is_fresh(v1: int, t1: float, v2: int, t2: float) -> bool:
    """Whether notification (v2 received at t2) is newer than (v1 at t1), RFC 7641 3.4."""
    return (
        (v1 < v2 and v2 - v1 < _HALF)
        or (v1 > v2 and v1 - v2 > _HALF)
        or t2 > t1 + FRESHNESS_WINDOW_S
    )

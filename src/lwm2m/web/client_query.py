"""The query parameters of ``GET /api/clients`` and the JSON of ``GET /api/stats``.

Without any of these parameters the list stays Leshan's plain array of every
client, so Leshan scripts keep working; with any of them it becomes a page,
``{"total", "offset", "limit", "items"}`` (see docs/rest-api.md). Each bad
value is a 400 naming the parameter, never a silently ignored filter.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lwm2m.stores.query import RegistrationQuery, SortKey
from lwm2m.web.backend import FleetStats, InvalidInput

#: A page holds at most this many clients (the UI asks for 100).
MAX_LIMIT = 1000
#: Without ``limit=``, a page holds this many.
DEFAULT_LIMIT = 100
MAX_TEXT = 200

#: Every parameter that turns the answer into a page.
PARAMETERS = (
    "limit",
    "offset",
    "q",
    "sort",
    "binding",
    "lwm2m",
    "queuemode",
    "sleeping",
    "secure",
    "registeredAfter",
    "registeredBefore",
    "updatedAfter",
    "updatedBefore",
)

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


@dataclass(frozen=True, slots=True)
class ClientListQuery:
    """What the parameters asked for: the store query, and the filter only the server knows."""

    query: RegistrationQuery
    sleeping: bool | None


def is_paged(params: Mapping[str, str]) -> bool:
    """Whether the caller asked for a page (any known parameter present)."""
    return any(name in params for name in PARAMETERS)


def parse_client_query(params: Mapping[str, str]) -> ClientListQuery:
    """The parameters as a query; :class:`InvalidInput` (400) names the first bad one."""
    limit = _int(params, "limit", DEFAULT_LIMIT, 0, MAX_LIMIT)
    offset = _int(params, "offset", 0, 0, None)
    text = params.get("q")
    if text is not None:
        text = text.strip()
        if len(text) > MAX_TEXT or any(ord(c) < 32 for c in text):
            raise InvalidInput(f"q: at most {MAX_TEXT} printable characters")
    sort_text = params.get("sort", "endpoint")
    descending = sort_text.startswith("-")
    try:
        sort = SortKey(sort_text.removeprefix("-"))
    except ValueError:
        names = ", ".join(k.value for k in SortKey)
        raise InvalidInput(
            f"sort: unknown key {sort_text!r} (one of {names}; prefix - for descending)"
        ) from None
    query = RegistrationQuery(
        text=text or None,
        binding=_text(params, "binding"),
        lwm2m_version=_text(params, "lwm2m"),
        queue_mode=_bool(params, "queuemode"),
        secure=_bool(params, "secure"),
        registered_after=_time(params, "registeredAfter"),
        registered_before=_time(params, "registeredBefore"),
        updated_after=_time(params, "updatedAfter"),
        updated_before=_time(params, "updatedBefore"),
        sort=sort,
        descending=descending,
        offset=offset,
        limit=limit,
    )
    return ClientListQuery(query, _bool(params, "sleeping"))


def stats_json(stats: FleetStats) -> dict[str, Any]:
    """The :class:`lwm2m.web.schemas.Stats` shape."""
    regs = stats.registrations
    return {
        "registrations": regs.total,
        "states": {
            "awake": regs.total - stats.sleeping,
            "sleeping": stats.sleeping,
            "queueMode": regs.queue_mode,
            "secure": regs.secure,
        },
        "bindings": dict(regs.by_binding),
        "lwm2mVersions": dict(regs.by_version),
        "registrationsPerMinute": [
            {"minute": _iso(start), "count": count} for start, count in regs.registered_per_minute
        ],
        "refusalsTotal": stats.refusals_total,
        "refusalsPerMinute": [
            {"minute": _iso(start), "count": count} for start, count in stats.refusals_per_minute
        ],
    }


def _iso(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat()


def _int(params: Mapping[str, str], name: str, default: int, low: int, high: int | None) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    bound = f"{low}..{high}" if high is not None else f">= {low}"
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name}: must be an integer {bound}, got {raw!r}") from None
    if value < low or (high is not None and value > high):
        raise InvalidInput(f"{name}: must be an integer {bound}, got {raw!r}")
    return value


def _text(params: Mapping[str, str], name: str) -> str | None:
    raw = params.get(name)
    if raw is None:
        return None
    if not raw or len(raw) > 20 or not raw.isprintable():
        raise InvalidInput(f"{name}: expected a short value, got {raw!r}")
    return raw


def _bool(params: Mapping[str, str], name: str) -> bool | None:
    raw = params.get(name)
    if raw is None:
        return None
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise InvalidInput(f"{name}: expected true or false, got {raw!r}")


def _time(params: Mapping[str, str], name: str) -> float | None:
    """ISO 8601 (``2026-12-04T21:00:00Z``; no zone means UTC) or Unix seconds."""
    raw = params.get(name)
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            return seconds
        raise InvalidInput(f"{name}: not a finite time: {raw!r}")
    try:
        when = datetime.datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(
            f"{name}: expected an ISO 8601 date-time or Unix seconds, got {raw!r}"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()

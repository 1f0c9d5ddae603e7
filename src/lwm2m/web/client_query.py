"""The query parameters of ``GET /api/clients`` and the JSON of ``GET /api/stats``.

Without any of these parameters the list stays Leshan's plain array of every
client, so Leshan scripts keep working; with any of them it becomes a page,
``{"total", "offset", "limit", "items"}`` (see docs/rest-api.md). The parameters'
types and bounds are in the OpenAPI schema, so FastAPI checks them: a bad
value is a 400 naming the parameter, never a silently ignored filter.
"""

from __future__ import annotations

import datetime
import enum
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

#: ``sort=`` values: a key, ascending, or ``-key``, descending.
SortParam = enum.Enum(  # type: ignore[misc]
    "SortParam", {v: v for k in SortKey for v in (k.value, "-" + k.value)}, type=str
)
#: No control characters in a search (it is echoed in the page).
TEXT_PATTERN = r"^[^\x00-\x1f\x7f]*$"
#: A binding mode or a version: short, printable, no spaces.
TOKEN_PATTERN = r"^[!-~]{1,20}$"


@dataclass(frozen=True, slots=True)
class ClientListQuery:
    """What the parameters asked for: the store query, and the filter only the server knows."""

    query: RegistrationQuery
    sleeping: bool | None


def is_paged(params: Mapping[str, str]) -> bool:
    """Whether the caller asked for a page (any known parameter present)."""
    return any(name in params for name in PARAMETERS)


def client_list_query(
    *,
    limit: int | None = None,
    offset: int | None = None,
    q: str | None = None,
    sort: str | None = None,
    binding: str | None = None,
    lwm2m: str | None = None,
    queuemode: bool | None = None,
    sleeping: bool | None = None,
    secure: bool | None = None,
    registered_after: datetime.datetime | float | None = None,
    registered_before: datetime.datetime | float | None = None,
    updated_after: datetime.datetime | float | None = None,
    updated_before: datetime.datetime | float | None = None,
) -> ClientListQuery:
    """The parameters (already checked against the OpenAPI schema by FastAPI) as a store query."""
    key = sort or SortKey.ENDPOINT.value
    text = (q or "").strip()
    return ClientListQuery(
        RegistrationQuery(
            text=text or None,
            binding=binding,
            lwm2m_version=lwm2m,
            queue_mode=queuemode,
            secure=secure,
            registered_after=_seconds(registered_after, "registeredAfter"),
            registered_before=_seconds(registered_before, "registeredBefore"),
            updated_after=_seconds(updated_after, "updatedAfter"),
            updated_before=_seconds(updated_before, "updatedBefore"),
            sort=SortKey(key.removeprefix("-")),
            descending=key.startswith("-"),
            offset=offset or 0,
            limit=DEFAULT_LIMIT if limit is None else limit,
        ),
        sleeping,
    )


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


def _seconds(when: datetime.datetime | float | None, name: str) -> float | None:
    """Wall-clock seconds; a date-time without a zone is UTC."""
    if when is None:
        return None
    if isinstance(when, datetime.datetime):
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        return when.timestamp()
    if not math.isfinite(when):
        raise InvalidInput(f"{name}: not a finite time: {when!r}")
    return float(when)

"""``/api/stats``: the fleet overview of the web UI, from counters the store keeps up to date."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from lwm2m.web.backend import DeviceManager
from lwm2m.web.client_query import stats_json
from lwm2m.web.errors import STORE_ERRORS
from lwm2m.web.schemas import Stats


def build_stats_router(devices: DeviceManager) -> APIRouter:
    """``GET /api/stats``; it costs the same with ten clients or a million (no listing)."""
    router = APIRouter(prefix="/api/stats", tags=["clients"])

    @router.get("", response_model=Stats, summary="Fleet overview", responses=STORE_ERRORS)
    async def stats() -> dict[str, Any]:
        return stats_json(await devices.fleet_stats())

    return router

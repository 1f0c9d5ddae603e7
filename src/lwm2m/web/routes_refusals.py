"""``GET /api/refusals``: why a device does not show up.

The web UI's client search asks it for the names typed in the filter; an
operator's script can too. See :mod:`lwm2m.web.refusals`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastapi import APIRouter, Query

from lwm2m.web.errors import STORE_ERRORS
from lwm2m.web.refusals import RefusalSource, RefusalsView, recent_refusals


def build_refusals_router(
    sources: Sequence[RefusalSource], is_registered: Callable[[str], bool]
) -> APIRouter:
    router = APIRouter(tags=["refusals"])

    @router.get(
        "/api/refusals",
        response_model=RefusalsView,
        summary="Recent refusals: Registers, Request Bootstraps, DTLS handshakes",
        description="The last refusals per endpoint name (a bounded memory of recently refused "
        "names, a few refusals each), most recent first, and the last refusals that name no "
        "endpoint (failed DTLS handshakes, requests without ep). `ep` selects one name exactly; "
        "`search` keeps names containing it (case-insensitive) and unnamed refusals whose "
        "address, identity or error contains it.",
        responses=STORE_ERRORS,
    )
    async def list_refusals(
        ep: str | None = Query(default=None, max_length=255),
        search: str | None = Query(default=None, max_length=255),
        limit: int = Query(default=20, ge=1, le=200),
    ) -> RefusalsView:
        return recent_refusals(
            sources,
            is_registered=is_registered,
            endpoint=ep,
            search=search or None,
            limit=limit,
        )

    return router

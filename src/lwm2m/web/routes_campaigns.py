"""Firmware campaigns over HTTP: ``/api/campaigns`` and their SSE events.

The body of ``POST /api/campaigns`` is read and checked by
:meth:`CampaignSpec.parse` rather than by a pydantic model, so that every
refusal is a 400 naming the field (pydantic would answer 422 with its own
wording), and a corrupted image a 422 naming the image.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request

from lwm2m.server.firmware.campaign_records import Campaign, CampaignError
from lwm2m.server.firmware.campaigns import CampaignManager
from lwm2m.web.backend import WebEvent
from lwm2m.web.errors import STORE_ERRORS, ApiError
from lwm2m.web.schemas import ErrorBody

MAX_BODY_BYTES = 4 * 1024 * 1024

_CREATE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["firmware"],
                    "properties": {
                        "firmware": {"type": "string", "description": "image id"},
                        "endpoints": {"type": "array", "items": {"type": "string"}},
                        "filter": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                            "description": 'e.g. {"endpoint": "meter-*", "/3/0/1": "Model X"}',
                        },
                        "method": {"type": "string", "enum": ["push", "coap", "http"]},
                        "concurrency": {"type": "integer", "minimum": 1},
                        "timeout": {"type": "number", "description": "seconds per attempt"},
                        "retries": {"type": "integer", "minimum": 0},
                    },
                }
            }
        },
    }
}

_ERRORS: dict[int | str, dict[str, Any]] = {
    **STORE_ERRORS,
    400: {"model": ErrorBody, "description": "A field is missing or wrong (named)."},
    404: {"model": ErrorBody, "description": "No such campaign."},
    409: {"model": ErrorBody, "description": "Not possible in the campaign's state."},
    422: {"model": ErrorBody, "description": "The firmware image is corrupted."},
}


def campaign_view(campaign: Campaign) -> dict[str, Any]:
    """The summary plus one entry per device (state, attempts, last result, error)."""
    return {
        **campaign.summary(),
        "devices": [campaign.devices[ep].to_json() for ep in sorted(campaign.devices)],
    }


def build_campaigns_router(campaigns: CampaignManager) -> APIRouter:
    router = APIRouter(prefix="/api/campaigns", tags=["firmware"])

    @router.get("", summary="Firmware campaigns, oldest first", responses=STORE_ERRORS)
    async def list_campaigns() -> list[dict[str, Any]]:
        return [c.summary() for c in campaigns.list()]

    @router.post(
        "",
        status_code=201,
        summary="Start a firmware campaign",
        openapi_extra=_CREATE_BODY,
        responses=_ERRORS,
    )
    async def create(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, "campaign body too large")
        try:
            body = json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the body is not JSON: {exc}") from None
        try:
            campaign = await campaigns.create(body)
        except CampaignError as exc:
            raise ApiError(exc.status, str(exc)) from None
        return campaign_view(campaign)

    @router.get("/{campaign_id}", summary="A campaign and its devices", responses=_ERRORS)
    async def show(campaign_id: str) -> dict[str, Any]:
        try:
            return campaign_view(campaigns.get(campaign_id))
        except CampaignError as exc:
            raise ApiError(exc.status, str(exc)) from None

    for verb in ("pause", "resume", "cancel"):
        router.add_api_route(
            f"/{{campaign_id}}/{verb}",
            _control(campaigns, verb),
            methods=["POST"],
            name=f"{verb}_campaign",
            summary=f"{verb.capitalize()} a campaign",
            responses=_ERRORS,
        )
    return router


def _control(campaigns: CampaignManager, verb: str) -> Any:
    async def control(campaign_id: str) -> dict[str, Any]:
        try:
            campaign = await getattr(campaigns, verb)(campaign_id)
        except CampaignError as exc:
            raise ApiError(exc.status, str(exc)) from None
        summary: dict[str, Any] = campaign.summary()
        return summary

    return control


def campaign_events(campaigns: CampaignManager) -> Any:
    """An SSE source: ``CAMPAIGN`` progress and ``CAMPAIGN_DEVICE`` results (all streams)."""

    async def source(endpoint: str | None) -> AsyncIterator[WebEvent]:
        async for event in campaigns.subscribe():
            device = event.data.get("endpoint") if event.kind == "CAMPAIGN_DEVICE" else None
            if endpoint is not None and device != endpoint:
                continue
            yield WebEvent(event.kind, device, event.data)

    return source

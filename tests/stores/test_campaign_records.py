"""Campaigns and their device records survive a reopen of every persistent store alike."""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Any

import pytest

from lwm2m.server.firmware.campaign_machine import DeviceRecord, Method, Phase
from lwm2m.server.firmware.campaign_records import (
    Campaign,
    CampaignSpec,
    CampaignState,
    CampaignStore,
)
from lwm2m.stores import open_stores


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_campaign_survives_reopen(backend: str, request: Any, tmp_path: FsPath) -> None:
    spec = request.getfixturevalue("redis_url") if backend == "redis" else backend
    campaign = Campaign(
        id="c0ffee000001",
        spec=CampaignSpec(
            firmware="0123456789abcdef",
            method=Method.COAP,
            filter={"endpoint": "meter-*", "/3/0/1": "Model X"},
            concurrency=5,
            timeout_s=12.5,
            retries=2,
        ),
        version="2.0",
        image_name="demo",
        created=1_700_000_000.0,
        state=CampaignState.PAUSED,
        devices={
            "meter-1": DeviceRecord("meter-1"),
            "meter/2": DeviceRecord(
                "meter/2",
                phase=Phase.UPDATING,
                attempts=2,
                result=0,
                error="timed out while checking",
                executed=True,
                delivered=True,
                old_version="1.0",
                attempt_started=1_700_000_100.0,
                deadline=1_700_000_112.5,
                poll_at=1_700_000_105.0,
            ),
        },
    )
    stores = await open_stores(spec, tmp_path)
    store = CampaignStore(stores.documents)
    for record in campaign.devices.values():
        await store.save_device(campaign.id, record)
    await store.save(campaign)
    await stores.close()
    stores = await open_stores(spec, tmp_path)
    try:
        (loaded,) = [c for c in await CampaignStore(stores.documents).load() if c.id == campaign.id]
    finally:
        await stores.close()
    assert loaded == campaign

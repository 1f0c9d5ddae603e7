"""Firmware campaigns over simulated devices on real sockets: results per device, control, restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path as FsPath

import pytest
from campaign_helpers import Rig, StubbornInstaller, firmware, fleet, package, start_rig, until

from lwm2m.client.client import LwM2MClient
from lwm2m.server.firmware.campaign_records import CampaignError, CampaignState, CorruptedImage
from lwm2m.stores.memory import MemoryStores


@pytest.fixture
async def rig(tmp_path: FsPath) -> AsyncIterator[Rig]:
    started = await start_rig(MemoryStores(), tmp_path)
    try:
        yield started
    finally:
        await started.stop()


async def test_small_push_campaign_updates_and_confirms(rig: Rig) -> None:
    image = await rig.repository.add(package("2.0"), name="demo", version="2.0")
    sim = fleet(rig.server, 4, failing={3})
    await sim.start()
    try:
        await until(lambda: len(rig.server.registrations()) == 4)
        campaign = await rig.campaigns.create(
            {"firmware": image.id, "filter": {"endpoint": "dev-*"}, "timeout": 20, "retries": 1}
        )
        async with asyncio.timeout(30):
            await rig.campaigns.wait_ended(campaign.id)
    finally:
        await sim.stop()
    states = {ep: r.phase.value for ep, r in campaign.devices.items()}
    assert states == {"dev-0": "updated", "dev-1": "updated", "dev-2": "updated", "dev-3": "failed"}
    failed = campaign.devices["dev-3"]
    assert failed.attempts == 2 and failed.result == 8
    assert "firmware update failed (Update Result 8)" in failed.error
    assert campaign.devices["dev-0"].new_version == "2.0"
    assert campaign.devices["dev-0"].old_version == "1.0.0"
    assert campaign.state is CampaignState.FINISHED

"""Firmware campaigns over simulated devices on real sockets: results per device, control, restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path as FsPath

import pytest
from campaign_helpers import (
    CountingInstaller,
    Rig,
    StubbornInstaller,
    firmware,
    fleet,
    package,
    start_rig,
    until,
)

from lwm2m.client.client import LwM2MClient
from lwm2m.client.objects.firmware import AcceptingInstaller, update_fails
from lwm2m.server.events import UpdatedEvent
from lwm2m.server.firmware.campaign_records import CampaignError, CampaignState
from lwm2m.stores import open_stores
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


async def test_two_hundred_devices_with_ten_percent_failures(rig: Rig) -> None:
    image = await rig.repository.add(package("2.0"), name="demo", version="2.0")

    def fw_fail_rate(client: LwM2MClient, index: int) -> None:
        # What `lwm2m client --count 200 --fw-fail-rate 0.1 --fw-seed 7` does.
        fails = update_fails(7, client.endpoint_name, 0.1)
        firmware(client).installer = AcceptingInstaller(fail_updates=fails)

    sim = fleet(rig.server, 200, customize=fw_fail_rate)
    await sim.start()
    try:
        await until(lambda: len(rig.server.registrations()) == 200, timeout=30)
        campaign = await rig.campaigns.create(
            {
                "firmware": image.id,
                "filter": {"endpoint": "dev-*"},
                "concurrency": 50,
                "timeout": 20,
                "retries": 1,
            }
        )
        async with asyncio.timeout(50):
            await rig.campaigns.wait_ended(campaign.id)
    finally:
        await sim.stop()
    failing = {c.endpoint_name for c in sim.clients if update_fails(7, c.endpoint_name, 0.1)}
    assert 10 <= len(failing) <= 30  # about 10 %
    for client in sim.clients:
        record = campaign.devices[client.endpoint_name]
        version = client.instance(3, 0).get(3)  # type: ignore[union-attr]
        if client.endpoint_name in failing:
            assert record.phase.value == "failed", record
            assert record.attempts == 2 and record.result == 8
            assert record.error == "firmware update failed (Update Result 8)"
            assert version == "1.0.0"
        else:
            assert record.phase.value == "updated", record
            assert record.attempts == 1 and record.new_version == "2.0"
            assert version == "2.0"
    totals = campaign.totals()
    assert totals["updated"] == 200 - len(failing) and totals["failed"] == len(failing)
    counts = rig.campaigns.counters()
    assert counts["campaign_devices_updated_total"] == 200 - len(failing)
    assert counts["campaign_devices_failed_total"] == len(failing)
    assert counts["campaign_retries_total"] == len(failing)


async def test_pause_holds_new_devices_and_resume_finishes(rig: Rig) -> None:
    image = await rig.repository.add(package("2.0"), name="demo", version="2.0")
    sim = fleet(rig.server, 6)
    await sim.start()
    try:
        await until(lambda: len(rig.server.registrations()) == 6)
        campaign = await rig.campaigns.create(
            {"firmware": image.id, "filter": {"endpoint": "dev-*"}, "concurrency": 1}
        )
        await rig.campaigns.pause(campaign.id)
        # The device under way (if any) finishes; no other starts.
        await until(
            lambda: all(r.phase.value in ("pending", "updated") for r in campaign.devices.values())
        )
        await rig.server.read("dev-5", "/3/0/3")  # a round trip: the launcher had its chance
        pending = [ep for ep, r in campaign.devices.items() if r.phase.value == "pending"]
        assert len(pending) >= 5 and campaign.state is CampaignState.PAUSED
        with pytest.raises(CampaignError):
            await rig.campaigns.pause(campaign.id)
        await rig.campaigns.resume(campaign.id)
        async with asyncio.timeout(30):
            await rig.campaigns.wait_ended(campaign.id)
    finally:
        await sim.stop()
    assert campaign.state is CampaignState.FINISHED
    assert [r.phase.value for r in campaign.devices.values()] == ["updated"] * 6


async def test_success_without_new_version_is_unconfirmed(rig: Rig) -> None:
    image = await rig.repository.add(package("2.0"), name="demo", version="2.0")

    def stubborn(client: LwM2MClient, index: int) -> None:
        firmware(client).installer = StubbornInstaller()

    sim = fleet(rig.server, 1, customize=stubborn)
    await sim.start()
    try:
        await until(lambda: len(rig.server.registrations()) == 1)
        campaign = await rig.campaigns.create(
            {"firmware": image.id, "endpoints": ["dev-0"], "method": "coap", "timeout": 20}
        )
        async with asyncio.timeout(30):
            await rig.campaigns.wait_ended(campaign.id)
    finally:
        await sim.stop()
    record = campaign.devices["dev-0"]
    assert record.phase.value == "unconfirmed" and record.result == 1
    assert "still runs '1.0.0'" in record.error


async def test_offline_device_waits_then_updates_when_it_registers(rig: Rig) -> None:
    image = await rig.repository.add(package("2.0"), name="demo", version="2.0")
    # With no campaign running, campaigns listen to nothing: the registrar builds no event.
    assert not rig.server.events.heard
    campaign = await rig.campaigns.create(
        {"firmware": image.id, "endpoints": ["dev-0", "dev-1"], "timeout": 20}
    )
    await until(lambda: all(r.phase.value == "waiting" for r in campaign.devices.values()))
    # The Register that wakes dev-0's driver reaches it as an event.
    assert rig.server.events.heard
    sim = fleet(rig.server, 1)  # dev-0 comes online; dev-1 never does
    await sim.start()
    try:
        await until(lambda: campaign.devices["dev-0"].phase.value == "updated", timeout=30)
        assert campaign.devices["dev-1"].phase.value == "waiting"
        await rig.campaigns.cancel(campaign.id)
        async with asyncio.timeout(10):
            await rig.campaigns.wait_ended(campaign.id)
    finally:
        await sim.stop()
    assert campaign.devices["dev-1"].phase.value == "cancelled"
    assert campaign.state is CampaignState.CANCELLED
    assert not rig.server.events.heard


async def test_offline_device_fails_at_its_deadline(rig: Rig) -> None:
    image = await rig.repository.add(package("2.0"), name="demo", version="2.0")
    campaign = await rig.campaigns.create(
        {"firmware": image.id, "endpoints": ["ghost"], "timeout": 0.3, "retries": 3}
    )
    async with asyncio.timeout(10):
        await rig.campaigns.wait_ended(campaign.id)
    record = campaign.devices["ghost"]
    assert record.phase.value == "failed" and record.attempts == 1
    assert record.error == "offline: did not register within the timeout"


async def test_restart_mid_campaign_resumes_and_updates_nobody_twice(tmp_path: FsPath) -> None:
    release = asyncio.Event()
    installers: dict[str, CountingInstaller] = {}

    def counting(client: LwM2MClient, index: int) -> None:
        installers[client.endpoint_name] = firmware(client).installer = CountingInstaller(release)

    stores = await open_stores("sqlite", tmp_path)
    first = await start_rig(stores, tmp_path)
    port = first.server.coap_address[1]
    image = await first.repository.add(package("2.0"), name="demo", version="2.0")
    sim = fleet(first.server, 6, customize=counting)
    await sim.start()
    second: Rig | None = None
    try:
        await until(lambda: len(first.server.registrations()) == 6)
        campaign = await first.campaigns.create(
            {"firmware": image.id, "filter": {"endpoint": "dev-*"}, "concurrency": 3, "timeout": 30}
        )
        # Three devices were told to update (installs held back); three wait for a slot.
        await until(lambda: sum(r.executed for r in campaign.devices.values()) == 3)
        executed = {ep for ep, r in campaign.devices.items() if r.executed}
        await first.stop()
        await stores.close()

        stores = await open_stores("sqlite", tmp_path)
        second = await start_rig(stores, tmp_path, coap_port=port)
        resumed = second.campaigns.get(campaign.id)
        assert {ep for ep, r in resumed.devices.items() if r.executed} == executed
        release.set()
        async with asyncio.timeout(40):
            await second.campaigns.wait_ended(campaign.id)
    finally:
        await sim.stop()
        if second is not None:
            await second.stop()
        await stores.close()
    assert [r.phase.value for r in resumed.devices.values()] == ["updated"] * 6, {
        ep: (r.phase.value, r.error, r.attempts) for ep, r in resumed.devices.items()
    }
    for endpoint, installer in installers.items():
        assert len(installer.installed) == 1, endpoint  # updated once
        if endpoint in executed:
            assert installer.checks == 1, endpoint  # and never delivered again


async def test_cancel_confirms_the_device_under_way_and_cancels_the_rest(rig: Rig) -> None:
    image = await rig.repository.add(package("2.0"), name="demo", version="2.0")
    release = asyncio.Event()

    def held(client: LwM2MClient, index: int) -> None:
        firmware(client).installer = CountingInstaller(release)

    sim = fleet(rig.server, 3, customize=held)
    await sim.start()
    try:
        await until(lambda: len(rig.server.registrations()) == 3)
        campaign = await rig.campaigns.create(
            {"firmware": image.id, "filter": {"endpoint": "dev-*"}, "concurrency": 1}
        )
        await until(lambda: campaign.devices["dev-0"].executed)
        await rig.campaigns.cancel(campaign.id)
        await until(lambda: campaign.devices["dev-2"].phase.value == "cancelled")
        assert campaign.devices["dev-0"].phase.value == "updating"
        release.set()
        async with asyncio.timeout(20):
            await rig.campaigns.wait_ended(campaign.id)
    finally:
        release.set()
        await sim.stop()
    states = [r.phase.value for r in campaign.devices.values()]
    assert states == ["updated", "cancelled", "cancelled"]
    assert campaign.state is CampaignState.CANCELLED
    assert firmware(sim.clients[1]).package == b"" and firmware(sim.clients[1]).get(3) == 0


async def test_queue_mode_device_is_updated_when_it_wakes(tmp_path: FsPath) -> None:
    # The server deems the device asleep 2 s after its last message; the device itself
    # stays reachable longer, so that a slow machine cannot make it miss its own update.
    rig = await start_rig(MemoryStores(), tmp_path, awake_time_s=2.0)
    image = await rig.repository.add(package("2.0"), name="demo", version="2.0")
    sim = fleet(rig.server, 1, queue_mode=True, awake_time_s=30.0)
    try:
        with rig.server.events.subscribe() as events:
            await sim.start()
            async with asyncio.timeout(10):
                async for event in events:
                    if type(event).__name__ == "SleepingEvent":
                        break
        registration = rig.server.get_registration("dev-0")
        assert registration is not None and registration.queue_mode
        campaign = await rig.campaigns.create(
            {"firmware": image.id, "endpoints": ["dev-0"], "timeout": 30}
        )
        # The check waits in the server's queue while the device sleeps.
        await until(lambda: rig.server.queue.queued(registration.id) == 1)
        assert campaign.devices["dev-0"].phase.value == "checking"
        assert firmware(sim.clients[0]).get(3) == 0
        sim.clients[0].sleep()
        sim.clients[0].wake()  # an Update: the server sends what waited
        async with asyncio.timeout(30):
            await rig.campaigns.wait_ended(campaign.id)
    finally:
        await sim.stop()
        await rig.stop()
    assert campaign.devices["dev-0"].phase.value == "updated"


async def test_filter_and_image_target_are_checked_on_each_device(rig: Rig) -> None:
    image = await rig.repository.add(
        package("2.0"), name="demo", version="2.0", target={"/3/0/0": "lwm2m-py"}
    )

    def model(client: LwM2MClient, index: int) -> None:
        client.instance(3, 0).set(1, "Model X" if index % 2 else "Model Y")  # type: ignore[union-attr]

    sim = fleet(rig.server, 4, customize=model)
    await sim.start()
    try:
        await until(lambda: len(rig.server.registrations()) == 4)
        campaign = await rig.campaigns.create(
            {"firmware": image.id, "filter": {"endpoint": "dev-*", "/3/0/1": "Model X"}}
        )
        async with asyncio.timeout(20):
            await rig.campaigns.wait_ended(campaign.id)
    finally:
        await sim.stop()
    states = {ep: r.phase.value for ep, r in campaign.devices.items()}
    assert states == {
        "dev-0": "skipped",
        "dev-1": "updated",
        "dev-2": "skipped",
        "dev-3": "updated",
    }
    assert "filter" in campaign.devices["dev-0"].error
    assert firmware(sim.clients[0]).installer.installed == []  # type: ignore[attr-defined]


async def test_stop_is_not_held_by_an_event_that_comes_with_it(tmp_path: FsPath) -> None:
    """A device's event that reaches its driver in the loop turn of ``stop()`` does not keep
    the driver running: on Python 3.11 a driver waiting with ``asyncio.wait_for`` lost the
    cancel then, and ``stop()`` waited for the device's deadline."""
    release = asyncio.Event()

    def held(client: LwM2MClient, index: int) -> None:
        firmware(client).installer = CountingInstaller(release)

    rig = await start_rig(MemoryStores(), tmp_path)
    image = await rig.repository.add(package("2.0"), name="demo", version="2.0")
    sim = fleet(rig.server, 1, customize=held)
    await sim.start()
    try:
        await until(lambda: len(rig.server.registrations()) == 1)
        campaign = await rig.campaigns.create(
            {"firmware": image.id, "endpoints": ["dev-0"], "timeout": 60}
        )
        await until(lambda: campaign.devices["dev-0"].executed)  # installing, held back
        await until(lambda: campaign.devices["dev-0"].phase.value == "updating")
        reg = rig.server.get_registration("dev-0")
        assert reg is not None
        # The device's Update, published as the stop begins (same loop turn).
        rig.server.events.publish(
            UpdatedEvent("dev-0", reg.updated_at, previous=reg, registration=reg)
        )
        async with asyncio.timeout(20):  # a hang detector: the deadline is 60 s away
            await rig.campaigns.stop()
    finally:
        release.set()
        await sim.stop()
        await rig.server.stop()

"""The firmware and campaign pages in a real headless Chromium against a live server and devices."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path as FsPath

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

sys.path.insert(0, str(FsPath(__file__).parents[1] / "server"))

from campaign_helpers import CountingInstaller, Rig, firmware, fleet, package, start_rig, until
from test_browser import ARGS, CHROMIUM

from lwm2m.client.client import LwM2MClient
from lwm2m.client.simulator import Simulator
from lwm2m.stores.memory import MemoryStores
from lwm2m.web.app import WebServer, create_app

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} missing (apt-get install chromium)"
    ),
]


class Site:
    def __init__(self, rig: Rig, sim: Simulator, base_url: str, release: asyncio.Event) -> None:
        self.rig = rig
        self.sim = sim
        self.base_url = base_url
        self.release = release


@pytest.fixture
async def site(tmp_path: FsPath) -> AsyncIterator[Site]:
    release = asyncio.Event()

    def held(client: LwM2MClient, index: int) -> None:
        firmware(client).installer = CountingInstaller(release)

    rig = await start_rig(MemoryStores(), tmp_path)
    web = WebServer(create_app(rig.server, None, campaigns=rig.campaigns), "127.0.0.1", 0)
    await web.start()
    sim = fleet(rig.server, 3, customize=held)
    await sim.start()
    try:
        await until(lambda: len(rig.server.registrations()) == 3)
        yield Site(rig, sim, f"http://127.0.0.1:{web.port}", release)
    finally:
        release.set()
        await sim.stop()
        await web.stop()
        await rig.stop()


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with async_playwright() as pw:
        browser: Browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        tab = await context.new_page()
        errors: list[str] = []
        tab.on("pageerror", lambda exc: errors.append(str(exc)))
        yield tab
        await context.close()
        await browser.close()
    assert errors == [], errors


async def test_upload_roll_out_pause_resume_and_finish(page: Page, site: Site) -> None:
    await page.goto(f"{site.base_url}/#/firmware")
    await expect(page.locator("#live")).to_have_text("live")
    await expect(page.locator("#firmware-images")).to_contain_text("No images yet")

    await page.click("#upload-firmware")
    await page.set_input_files(
        'dialog input[name="file"]',
        files=[
            {
                "name": "demo-2.0.bin",
                "mimeType": "application/octet-stream",
                "buffer": package("2.0"),
            }
        ],
    )
    await page.fill('dialog input[name="version"]', "2.0")
    await page.click('dialog button[type="submit"]')
    row = page.locator("#firmware-images tbody tr").first
    await expect(row).to_contain_text("demo-2.0.bin")
    await expect(row).to_contain_text("2.0")

    await row.locator('button[data-action="campaign"]').click()
    await page.fill('dialog input[name="pattern"]', "dev-*")
    await page.fill('dialog input[name="concurrency"]', "1")
    await page.click('dialog button[type="submit"]')
    await expect(page.locator("#campaign-state")).to_have_text("running")
    devices = page.locator("#campaign-devices tbody tr")
    await expect(devices).to_have_count(3)
    # The first device updates (its install is held back); the other two wait for a slot.
    await expect(page.locator('tr[data-endpoint="dev-0"] .badge')).to_have_text("updating")
    await expect(page.locator('tr[data-endpoint="dev-2"] .badge')).to_have_text("pending")

    await page.click('button[data-action="pause"]')
    await expect(page.locator("#campaign-state")).to_have_text("paused")
    await expect(page.locator('button[data-action="resume"]')).to_be_visible()
    await page.click('button[data-action="resume"]')
    await expect(page.locator("#campaign-state")).to_have_text("running")

    site.release.set()
    await expect(page.locator("#campaign-state")).to_have_text("finished", timeout=20_000)
    for endpoint in ("dev-0", "dev-1", "dev-2"):
        badge = page.locator(f'tr[data-endpoint="{endpoint}"] .badge')
        await expect(badge).to_have_text("updated")
    await expect(page.locator('[data-total="updated"]')).to_have_text("3")
    await expect(page.locator('tr[data-endpoint="dev-1"]')).to_contain_text("1.0.0 → 2.0")

    await expect(page.locator(".campaign-head")).not_to_contain_text("null")
    await page.click('a[href="#/firmware"] >> nth=-1')
    listed = page.locator("#campaigns tbody tr").first
    await expect(listed).to_contain_text("finished")
    await expect(listed).to_contain_text("3/3")

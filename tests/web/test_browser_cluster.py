"""The cluster panel of the Clients page, in a real headless Chromium, over two server nodes
sharing a real redis-server."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path as FsPath

from playwright.async_api import Page, expect
from test_browser import browser, page, pytestmark  # noqa: F401  (fixtures, markers)
from test_cluster_api import register, web_node
from web_fakes import Live

from lwm2m.coap.codes import Code
from lwm2m.coap.endpoint import Endpoint


async def test_the_panel_shows_nodes_heartbeats_and_owned_devices(
    page: Page,  # noqa: F811
    redis_url: str,
    tmp_path: FsPath,
) -> None:
    device = await Endpoint.create("127.0.0.1", 0)
    try:
        async with web_node(redis_url, tmp_path, "a") as a:
            async with AsyncExitStack() as c_life:
                c = await c_life.enter_async_context(web_node(redis_url, tmp_path, "c"))
                reply = await device.request(register("dev-1"), c.server.coap_address, timeout=5)
                assert reply.code == Code.CREATED
                await c.nodes.heartbeat()
                await page.goto(str(a.http.base_url) + "/#/clients")
                panel = page.locator(".cluster-card")
                await expect(panel).to_be_visible()
                row_a = panel.locator('tr[data-node="a"]')
                row_c = panel.locator('tr[data-node="c"]')
                await expect(row_a).to_have_attribute("data-state", "alive")
                await expect(row_a).to_contain_text("(this node)")
                await expect(row_c).to_have_attribute("data-state", "alive")
                await expect(row_c.locator(".owned")).to_have_text("1")
                await expect(row_a.locator(".owned")).to_have_text("0")
                await expect(row_c.locator(".heartbeat")).to_contain_text("s ago")
                await expect(panel).to_contain_text("2 alive")
            # c stopped cleanly: its key is gone at once, the panel says so on its next refresh.
            await expect(row_c).to_have_attribute("data-state", "gone", timeout=10_000)
            await expect(panel).to_contain_text("1 alive, 1 gone")
    finally:
        await device.close()


async def test_no_panel_without_a_cluster(page: Page, live: Live) -> None:  # noqa: F811
    await page.goto(live.base_url + "/#/clients")
    await expect(page.locator(".overview")).to_be_visible()
    await expect(page.locator(".cluster-card")).to_be_hidden()

"""The web UI in a real headless Chromium (Debian's, through Playwright) against a live server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect
from web_fakes import FakeDevices, Live

from lwm2m.coap.codes import Code
from lwm2m.coap.endpoint import Endpoint
from lwm2m.coap.message import Message
from lwm2m.web.app import WebServer, build_app

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} missing (apt-get install chromium)"
    ),
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        instance = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield instance
        await instance.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    await context.close()
    assert errors == [], errors


async def open_client(page: Page, live: Live, endpoint: str) -> None:
    await page.goto(f"{live.base_url}/#/clients/{endpoint}")
    await expect(page.locator('button[data-op="read"][data-path="/3/0/9"]')).to_be_visible()


async def test_client_appears_live(page: Page, live: Live) -> None:
    await page.goto(live.base_url + "/")
    await expect(page.locator("#live")).to_have_text("live")
    await expect(page.locator(".empty-title")).to_be_visible()
    await live.add_client("dev-ui-1")
    row = page.locator('tr[data-endpoint="dev-ui-1"]')
    await expect(row).to_be_visible()
    await expect(row).to_contain_text("online")
    await row.click()
    await expect(page.locator(".client-title h1")).to_have_text("dev-ui-1")


async def test_read_a_resource(page: Page, live: Live) -> None:
    device = await live.add_client("dev-ui-2")
    device.instance(3).set(9, 64)
    await open_client(page, live, "dev-ui-2")
    await page.click('button[data-op="read"][data-path="/3/0/9"]')
    await expect(page.locator('.value[data-path="/3/0/9"]')).to_have_text("64")
    await expect(page.locator(".mini-log")).to_contain_text("Read /3/0/9 → CONTENT")


async def test_write_a_value(page: Page, live: Live) -> None:
    device = await live.add_client("dev-ui-3")
    await open_client(page, live, "dev-ui-3")
    await page.click('button[data-op="write"][data-path="/3/0/14"]')
    field = page.locator("dialog .value-input")
    await field.fill("+05")
    await page.click('dialog button[type="submit"]')
    await expect(page.locator('.value[data-path="/3/0/14"]')).to_have_text("+05")
    assert device.instance(3).get(14) == "+05"


async def test_write_is_typed_by_the_model(page: Page, live: Live) -> None:
    await live.add_client("dev-ui-4")
    await open_client(page, live, "dev-ui-4")
    await page.click('button[data-op="write"][data-path="/1/0/1"]')
    field = page.locator("dialog .value-input")
    assert await field.get_attribute("type") == "number"  # Lifetime is an Integer
    await field.fill("12.5")
    await page.click('dialog button[type="submit"]')
    # The browser refuses a fraction for an integer input: nothing is sent.
    assert await field.evaluate("el => el.validity.stepMismatch") is True
    await expect(page.locator("dialog")).to_be_visible()
    await field.fill("120")
    await page.click('dialog button[type="submit"]')
    await expect(page.locator('.value[data-path="/1/0/1"]')).to_have_text("120")


async def test_observe_and_see_it_change(page: Page, live: Live) -> None:
    device = await live.add_client("dev-ui-5")
    device.instance(3).set(9, 80)
    await open_client(page, live, "dev-ui-5")
    button = page.locator('button[data-op="observe"][data-path="/3/0/9"]')
    await button.click()
    await expect(button).to_have_attribute("aria-pressed", "true")
    value = page.locator('.value[data-path="/3/0/9"]')
    await expect(value).to_have_text("80")
    device.instance(3).set(9, 42)
    await expect(value).to_have_text("42")
    device.instance(3).set(9, 37)
    await expect(value).to_have_text("37")
    chart = page.locator('.res-row[data-path="/3/0/9"] svg.chart')
    await expect(chart).to_be_visible()
    await expect(chart).to_contain_text("3 values")


async def test_token_is_asked_once_and_kept(page: Page) -> None:
    devices = FakeDevices()
    devices.add("dev-token", {"/3/0/9": 5})
    app = build_app(devices, None, api_token="tok-123", keepalive_s=0.5)
    web = WebServer(app, "127.0.0.1", 0)
    await web.start()
    try:
        await page.goto(f"http://127.0.0.1:{web.port}/")
        prompt = page.locator('dialog input[type="password"]')
        await expect(prompt).to_be_visible()
        await prompt.fill("tok-123")
        await page.click('dialog button[type="submit"]')
        await expect(page.locator('tr[data-endpoint="dev-token"]')).to_be_visible()
        await expect(page.locator("#live")).to_have_text("live")
        assert await page.evaluate("sessionStorage.getItem('lwm2m.token')") == "tok-123"
        await page.reload()
        await expect(page.locator('tr[data-endpoint="dev-token"]')).to_be_visible()
        await expect(page.locator("dialog[open]")).to_have_count(0)
    finally:
        await web.stop()


async def test_set_notification_attributes(page: Page, live: Live) -> None:
    await live.add_client("dev-ui-6")
    await open_client(page, live, "dev-ui-6")
    await page.click('button[data-op="attributes"][data-path="/3/0/9"]')
    await expect(page.locator("dialog")).to_contain_text("No attributes set")
    await page.locator("dialog label:has-text('pmax') input").fill("30")
    await page.click('dialog button[type="submit"]')
    await expect(page.locator(".mini-log")).to_contain_text("Write-Attributes /3/0/9 → CHANGED")
    links = (await live.http.get("/api/clients/dev-ui-6/3/0/9/discover")).json()["objectLinks"]
    assert {"url": "/3/0/9", "attributes": {"pmax": "30"}} in links


async def test_interactive_docs_render_without_internet(page: Page, live: Live) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    await page.goto(f"{live.base_url}/docs")
    await expect(page.locator(".swagger-ui .information-container")).to_contain_text(
        "lwm2m REST API"
    )
    await expect(page.locator(".opblock-summary-path").first).to_be_visible()
    assert all(url.startswith(live.base_url) for url in requested), requested


async def test_coap_log_panel_shows_the_messages_of_a_read(page: Page, live: Live) -> None:
    device = await live.add_client("dev-ui-log")
    device.instance(3).set(9, 71)
    await open_client(page, live, "dev-ui-log")
    panel = page.locator(".coap-log")
    await expect(panel).to_be_empty()
    await page.click("#coaplog-toggle")
    await expect(page.locator("#coaplog-toggle")).to_have_attribute("aria-pressed", "true")
    # The log's own stream must be open before the Read, or its messages go unseen.
    await expect(page.locator("#coaplog-toggle")).to_have_attribute("data-live", "true")
    await page.click('button[data-op="read"][data-path="/3/0/9"]')
    await expect(page.locator('.value[data-path="/3/0/9"]')).to_have_text("71")
    request = panel.locator('li.out[data-code="GET"]')
    await expect(request).to_have_count(1)
    await expect(request).to_contain_text('Uri-Path: "3", "0", "9"')
    await expect(panel.locator('li.in[data-code="2.05"]')).to_have_count(1)
    await page.click("#coaplog-toggle")  # off: the server stops tracing
    await expect(page.locator("#coaplog-toggle")).to_have_text("Start")
    await expect(page.locator("#coaplog-toggle")).to_have_attribute("data-live", "false")


async def test_client_search_shows_why_a_name_was_refused(page: Page, live: Live) -> None:
    """A device that never shows up: the search for its name says it was refused, and why."""
    entry = {"endpoint": "dev-9", "psk": {"identity": "dev-9-id", "key": "000102030405"}}
    assert (await live.http.put("/api/security/clients", json=entry)).status_code < 300
    device = await Endpoint.create("127.0.0.1", 0)  # registers without DTLS: refused
    try:
        register = Message(Code.POST, uri_path=("rd",), uri_query=("ep=dev-9",), payload=b"</1>")
        for _ in range(3):
            reply = await device.request(register, live.server.coap_address, timeout=10)
            assert reply.code == Code.BAD_REQUEST
        source = f"127.0.0.1:{device.local_address[1]}"
    finally:
        await device.close()
    await live.add_client("dev-90")
    await page.goto(live.base_url + "/")
    await expect(page.locator('tr[data-endpoint="dev-90"]')).to_be_visible()
    await page.fill('input[aria-label="Filter clients"]', "dev-9")
    refusal = page.locator('li.refusal[data-endpoint="dev-9"]')
    await expect(refusal).to_contain_text(
        "no registration; refused 3 times, last: 4.00 endpoint has credentials but "
        "registered without DTLS at "
    )
    await expect(refusal).to_contain_text(f" from {source}")
    await expect(refusal).to_contain_text("must register over a secure (DTLS) connection")
    await expect(page.locator("li.refusal")).to_have_count(1)  # dev-90 was never refused
    await page.fill('input[aria-label="Filter clients"]', "dev-90")
    await expect(page.locator(".refusals-card")).to_be_hidden()

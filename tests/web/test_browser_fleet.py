"""The Clients page with thousands of registrations, in a real headless Chromium."""

from __future__ import annotations

import re
from dataclasses import replace

from playwright.async_api import Page, expect
from test_browser import browser, page, pytestmark  # noqa: F401  (fixtures, markers)
from test_client_list import fill
from web_fakes import Live

FLEET = 3000


async def open_clients(page: Page, live: Live) -> None:  # noqa: F811
    await page.goto(live.base_url + "/#/clients")
    await expect(page.locator('tr[data-endpoint="dev-0000"]')).to_be_visible()


async def test_pages_of_a_large_fleet(page: Page, live: Live) -> None:  # noqa: F811
    await fill(live, FLEET)
    await open_clients(page, live)
    rows = page.locator("tr[data-endpoint]")
    await expect(rows).to_have_count(100)
    await expect(page.locator(".page-where")).to_have_text(f"1\u2013100 of {FLEET}")
    await page.click('button[aria-label="Next page"]')
    await expect(rows.first).to_have_attribute("data-endpoint", "dev-0100")
    await expect(page.locator(".page-where")).to_have_text(f"101\u2013200 of {FLEET}")
    await page.click('button[aria-label="Previous page"]')
    await expect(rows.first).to_have_attribute("data-endpoint", "dev-0000")


async def test_search_as_you_type_and_filters(page: Page, live: Live) -> None:  # noqa: F811
    await fill(live, FLEET)
    await open_clients(page, live)
    search = page.locator("input[type=search]")
    await search.press_sequentially("dev-012")
    rows = page.locator("tr[data-endpoint]")
    await expect(rows).to_have_count(10)
    await expect(rows.first).to_have_attribute("data-endpoint", "dev-0120")
    await search.press_sequentially("3")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-endpoint", "dev-0123")
    await search.fill("10.0.3.")
    await expect(page.locator(".page-head .muted")).to_have_text("750 matching clients")
    await search.fill("")
    await page.select_option('select[aria-label="Show only"]', "sleeping")
    await expect(page.locator(".page-head .muted")).to_have_text("1000 matching clients")
    await expect(rows.first).to_contain_text("sleeping")
    await page.locator('input[aria-label="LwM2M version"]').fill("1.0")
    await expect(page.locator(".page-head .muted")).to_have_text("500 matching clients")


async def test_overview_counts_and_chart(page: Page, live: Live) -> None:  # noqa: F811
    await fill(live, FLEET)
    await open_clients(page, live)
    overview = page.locator(".overview")
    await expect(overview.locator('[data-stat="registered"] .stat-value')).to_have_text(str(FLEET))
    await expect(overview.locator('[data-stat="sleeping"] .stat-value')).to_have_text("1000")
    await expect(overview.locator('[data-stat="binding UQ"] .stat-value')).to_have_text("1000")
    await expect(overview.locator('[data-stat="LwM2M 1.1"] .stat-value')).to_have_text("1500")
    await expect(overview.locator("svg.chart polyline")).to_have_count(1)
    await overview.locator('[data-stat="binding UQ"]').click()
    await expect(page.locator(".page-head .muted")).to_have_text("1000 matching clients")


async def test_live_events_touch_only_the_rows_on_screen(page: Page, live: Live) -> None:  # noqa: F811
    await fill(live, FLEET)
    # dev-0001 as if it had registered from this host before a restart: a real
    # client of that name from 127.0.0.1 is the same client, so it may re-register.
    old = live.server.stores.registrations.get_by_endpoint("dev-0001")
    await live.server.stores.registrations.update(replace(old, address=("127.0.0.1", 9)))
    await open_clients(page, live)
    row = page.locator('tr[data-endpoint="dev-0001"]')
    await expect(row).to_contain_text("127.0.0.1:9")
    await live.add_client("dev-0001")
    await expect(row).not_to_contain_text("127.0.0.1:9")
    await expect(row).to_contain_text(re.compile(r"127\.0\.0\.1:\d+"))
    await expect(row).to_contain_text("60s")  # the real client's lifetime
    # One that sorts after every row on screen adds no row; the overview counts it.
    await live.add_client("zz-offscreen")
    registered = page.locator('.overview [data-stat="registered"] .stat-value')
    await expect(registered).to_have_text(str(FLEET + 1))
    await expect(page.locator("tr[data-endpoint]")).to_have_count(100)
    await expect(page.locator('tr[data-endpoint="zz-offscreen"]')).to_have_count(0)
    # One that sorts among the rows on screen takes its place there.
    await live.add_client("dev-0000-new")
    await expect(page.locator("tr[data-endpoint]").nth(1)).to_have_attribute(
        "data-endpoint", "dev-0000-new"
    )
    await expect(page.locator("tr[data-endpoint]")).to_have_count(100)

"""Benchmark of the Clients page and GET /api/clients at fleet scale, in a real browser.

    PYTHONPATH=src python bench/clients_ui.py [--clients 100000] [--store memory|sqlite]

Registrations go straight into the server's store (what a restart loads),
then Debian's Chromium (through Playwright, as tests/web/test_browser.py)
opens the Clients page. Printed, each the median of ``--repeat`` runs:

- ``GET /api/clients`` (Leshan's full list: the old way) and ``?limit=100``;
- the page's first rows, from navigation start to the first row in the DOM;
- a search typed into the page, from the keystroke to the matching rows
  (includes the page's debounce), and the same search's API call alone.

Figures are printed; nothing is asserted (timings belong here, not in tests).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time

import httpx
from playwright.async_api import async_playwright

from lwm2m.server.server import LwM2MServer, ServerConfig
from lwm2m.stores import open_stores
from lwm2m.stores.records import Registration
from lwm2m.web.app import WebServer, create_app

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


async def timed(call: object, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = await call()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000, result


async def main(args: argparse.Namespace) -> None:
    data = tempfile.mkdtemp(prefix="lwm2m-bench-")
    stores = await open_stores(args.store, data)
    server = LwM2MServer(
        config=ServerConfig(host="127.0.0.1", coap_port=0, coaps_port=0), stores=stores
    )
    now = time.time()
    start = time.perf_counter()
    for i in range(args.clients):
        await stores.registrations.add(
            Registration(
                id=f"r{i}",
                endpoint=f"dev-{i:06d}",
                address=(f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", 5683),
                lifetime_s=86400,
                registered_at=now - i % 3600,
                updated_at=now - i % 600,
                lwm2m_version="1.1" if i % 2 else "1.0",
                binding="UQ" if i % 3 == 0 else "U",
                queue_mode=i % 3 == 0,
            )
        )
    print(
        f"{args.clients} registrations into the {args.store} store in {time.perf_counter() - start:.1f} s"
    )
    await server.start()
    web = WebServer(create_app(server, None), "127.0.0.1", 0)
    await web.start()
    base = f"http://127.0.0.1:{web.port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=120) as http:
            full_ms, full = await timed(lambda: http.get("/api/clients"), max(1, args.repeat // 3))
            print(
                f"GET /api/clients (full list, old way): {full_ms:.0f} ms, {len(full.content) / 1e6:.1f} MB"
            )  # type: ignore[attr-defined]
            await http.get("/api/clients", params={"limit": 100})
            page_ms, _ = await timed(
                lambda: http.get("/api/clients", params={"limit": 100}), args.repeat
            )
            print(f"GET /api/clients?limit=100: {page_ms:.1f} ms")
            deep_ms, _ = await timed(
                lambda: http.get(
                    "/api/clients", params={"limit": 100, "offset": args.clients // 2}
                ),
                args.repeat,
            )
            print(f"GET /api/clients?limit=100&offset={args.clients // 2}: {deep_ms:.1f} ms")
            q_ms, _ = await timed(
                lambda: http.get("/api/clients", params={"limit": 100, "q": "dev-0421"}),
                args.repeat,
            )
            print(f"GET /api/clients?limit=100&q=dev-0421 (search): {q_ms:.1f} ms")
            f_ms, _ = await timed(
                lambda: http.get(
                    "/api/clients",
                    params={"limit": 100, "binding": "UQ", "sort": "-registrationDate"},
                ),
                args.repeat,
            )
            print(f"GET /api/clients?limit=100&binding=UQ&sort=-registrationDate: {f_ms:.1f} ms")
            s_ms, _ = await timed(lambda: http.get("/api/stats"), args.repeat)
            print(f"GET /api/stats: {s_ms:.1f} ms")
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            firsts, searches = [], []
            for n in range(args.repeat):
                page = await (await browser.new_context()).new_page()
                page.on("pageerror", lambda exc: print("page error:", exc, file=sys.stderr))
                start = time.perf_counter()
                await page.goto(base + "/#/clients")
                await page.wait_for_selector('tr[data-endpoint="dev-000000"]')
                firsts.append(time.perf_counter() - start)
                term = f"dev-00{n % 9 + 1}2"
                start = time.perf_counter()
                await page.fill("input[type=search]", term)
                await page.wait_for_selector(f'tr[data-endpoint="{term}00"]')
                await page.wait_for_function(
                    "t => [...document.querySelectorAll('tr[data-endpoint]')].every(r => r.dataset.endpoint.includes(t))",
                    arg=term,
                )
                searches.append(time.perf_counter() - start)
                await page.context.close()
            await browser.close()
        print(
            f"Clients page, first rows: {statistics.median(firsts) * 1000:.0f} ms (median of {args.repeat})"
        )
        print(
            f"Search typed in the page, keystroke to rows (incl. 150 ms debounce): {statistics.median(searches) * 1000:.0f} ms"
        )
    finally:
        await web.stop()
        await server.stop()
        await stores.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--store", default="memory", choices=["memory", "sqlite"])
    parser.add_argument("--repeat", type=int, default=5)
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)

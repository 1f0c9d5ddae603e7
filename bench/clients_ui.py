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
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
from playwright.async_api import async_playwright

from lwm2m.server.server import LwM2MServer, ServerConfig
from lwm2m.stores import open_stores
from lwm2m.stores.records import Registration
from lwm2m.web.app import WebServer, create_app

T = TypeVar("T")

CHROMIUM = "/usr/bin/chromium"
FIRST_ROW_JS = """new MutationObserver((_, observer) => {
  if (document.querySelector("tr[data-endpoint]")) {
    window.firstRowAt = performance.now();
    observer.disconnect();
  }
}).observe(document, { childList: true, subtree: true });"""

SEARCH_JS = """term => new Promise(done => {
  const input = document.querySelector("input[type=search]");
  const body = document.querySelector("table.clients-table tbody");
  const start = performance.now();
  new MutationObserver((_, observer) => {
    const rows = [...body.querySelectorAll("tr[data-endpoint]")];
    if (rows.length && rows.every(r => r.dataset.endpoint.includes(term))) {
      observer.disconnect();
      done(performance.now() - start);
    }
  }).observe(body, { childList: true });
  input.value = term;
  input.dispatchEvent(new Event("input"));
})"""

#: the page's search debounce (SEARCH_DELAY_MS in views/clients.js)
DEBOUNCE_MS = 150
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]


async def timed(call: Callable[[], Awaitable[T]], repeat: int) -> tuple[float, T]:
    """Median ms of ``repeat`` calls, and the last call's result (``repeat`` 0: median raises)."""
    times: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = await call()
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

    def registration(i: int) -> Registration:
        return Registration(
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

    # Batches in flight: the SQLite store group-commits them (one fsync per batch).
    for first in range(0, args.clients, 1000):
        batch = range(first, min(first + 1000, args.clients))
        await asyncio.gather(*(stores.registrations.add(registration(i)) for i in batch))
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
            )
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
            firsts, searches, olds, fetches = [], [], [], []
            for n in range(args.repeat):
                page = await (await browser.new_context()).new_page()
                page.on("pageerror", lambda exc: print("page error:", exc, file=sys.stderr))
                await page.add_init_script(FIRST_ROW_JS)
                await page.goto(base + "/#/clients")
                await page.wait_for_selector('tr[data-endpoint="dev-000000"]')
                # Milliseconds since navigation start, taken inside the page.
                firsts.append(await page.evaluate("window.firstRowAt") / 1000)
                term = f"dev-00{n % 9 + 1}2"
                # Timed inside the page (no Playwright round trips): from the
                # input event to the rows of the answer in the DOM.
                elapsed = await page.evaluate(SEARCH_JS, term)
                searches.append(elapsed / 1000)
                fetches.append(
                    await page.evaluate(
                        "() => performance.getEntriesByType('resource')"
                        ".filter(e => e.name.includes('q=')).pop().duration"
                    )
                )
                if n < 2:
                    # The old page's first step alone: fetch and parse the full list.
                    olds.append(
                        await page.evaluate(
                            "async () => { const t = performance.now();"
                            " await (await fetch('/api/clients')).json();"
                            " return performance.now() - t; }"
                        )
                    )
                await page.context.close()
            await browser.close()
        print(
            f"Clients page, navigation start to first rows: {statistics.median(firsts) * 1000:.0f} ms (median of {args.repeat})"
        )
        search_ms = statistics.median(searches) * 1000
        print(
            f"Search typed in the page, keystroke to rows: {search_ms:.0f} ms"
            f" ({DEBOUNCE_MS} ms debounce + {search_ms - DEBOUNCE_MS:.0f} ms answering)"
        )
        print(
            f"  of which the search request, seen by the page: {statistics.median(fetches):.0f} ms"
        )
        print(
            "Old page's first step, fetch + parse of the full list in the page:"
            f" {statistics.median(olds):.0f} ms"
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
    options = parser.parse_args()
    # The searches type dev-0012 ... dev-0092: each must match rows, or the page never
    # shows an answer and the search waits forever.
    if options.clients < 10_000:
        parser.error("--clients must be at least 10000 (the searched names dev-00N2.. must exist)")
    if options.repeat < 1:
        parser.error("--repeat must be at least 1")
    asyncio.run(main(options))
    sys.exit(0)

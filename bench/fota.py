"""Firmware campaigns: devices updated per minute, push vs pull, side by side.

Runs one server (memory store, firmware repository in a temporary directory,
the web app for HTTP pulls) and N simulated devices in this process, uploads
a 1 MB image, and runs one campaign per delivery method over every device at
the given concurrency: push (Write /5/0/0 with Block1), pull over CoAP
(Block2 from ``/fw/{id}``) and pull over HTTP. Each device has its firmware
version reset between runs so every run updates every device. Prints, per
method, devices updated, wall time and devices per minute.

    python bench/fota.py --count 100 --concurrency 50 --size 1000000

Each method runs on its own: ``--methods push coap``. Server and devices share one process and one core's worth of event loop, so
the figures are a floor for a server on its own machine. Traffic stays on
127.0.0.1; everything stops by itself. Nothing is asserted (figures only).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path as FsPath

from lwm2m.client.client import LwM2MClient
from lwm2m.client.config import ClientConfig, FactoryAccount
from lwm2m.client.objects.firmware import FirmwareUpdate, simulated_package
from lwm2m.client.simulator import Simulator
from lwm2m.model.registry import default_registry
from lwm2m.server import LwM2MServer, ServerConfig
from lwm2m.server.firmware import FirmwareRepository
from lwm2m.server.firmware.campaigns import CampaignManager
from lwm2m.stores.memory import MemoryStores
from lwm2m.web.app import WebServer, create_app

METHODS = ("push", "coap", "http")


async def run(args: argparse.Namespace) -> int:
    # Devices pull over HTTP with urllib in worker threads and the server reads image
    # chunks in worker threads too: with both in one process, the default pool (a few
    # workers) fills with blocked downloads and starves the server that would end them.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=2 * args.concurrency + 8)
    )
    with tempfile.TemporaryDirectory() as data:
        stores = MemoryStores()
        repository = await FirmwareRepository.open(
            stores.documents, FsPath(data), max_image_bytes=args.size + 1
        )
        server = LwM2MServer(
            stores, config=ServerConfig(coap_port=0, request_timeout_s=60.0), firmware=repository
        )
        await server.start()
        campaigns = CampaignManager(server, repository, poll_s=2.0)
        await campaigns.start()
        web = WebServer(create_app(server, None, campaigns=campaigns), "127.0.0.1", 0)
        await web.start()
        server.http_address = ("127.0.0.1", web.port)
        host, port = server.coap_address
        config = ClientConfig(
            "fota",
            servers=(FactoryAccount(f"coap://{host}:{port}", lifetime_s=600),),
            local_host="127.0.0.1",
        )
        sim = Simulator(config, args.count, registry=default_registry(), rate_per_s=1000)
        await sim.start()
        rows: list[tuple[str, int, int, float]] = []
        try:
            while len(server.registrations()) < args.count:
                await asyncio.sleep(0.05)
            for n, method in enumerate(args.methods):
                version = f"2.{n}"
                stored = await repository.add(
                    simulated_package(version, args.size, name="bench"),
                    name="bench",
                    version=version,
                )
                for client in sim.clients:
                    reset(client)
                started = time.perf_counter()
                campaign = await campaigns.create(
                    {
                        "firmware": stored.id,
                        "filter": {"endpoint": "fota-*"},
                        "method": method,
                        "concurrency": args.concurrency,
                        "timeout": args.timeout,
                        "retries": 0,
                    }
                )
                await campaigns.wait_ended(campaign.id)
                elapsed = time.perf_counter() - started
                totals = campaign.totals()
                rows.append((method, totals["updated"], totals["total"], elapsed))
        finally:
            await sim.stop()
            await web.stop()
            await campaigns.stop()
            await server.stop()
    print(
        f"firmware campaigns: {args.count} devices, image {args.size:,} bytes, "
        f"concurrency {args.concurrency}"
    )
    print(f"{'method':<8}{'updated':>12}{'seconds':>10}{'devices/min':>14}")
    for method, updated, total, elapsed in rows:
        print(
            f"{method:<8}{f'{updated}/{total}':>12}{elapsed:>10.1f}{60 * updated / elapsed:>14.1f}"
        )
    return 0


def reset(client: LwM2MClient) -> None:
    """Back to the old version and an idle Firmware Update object, for the next run."""
    device = client.instance(3, 0)
    if device is not None:
        device.set(3, "1.0.0")
    fw = client.instance(5, 0)
    if isinstance(fw, FirmwareUpdate):
        fw.set(5, 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100, help="devices (default 100)")
    parser.add_argument("--concurrency", type=int, default=50, help="default 50")
    parser.add_argument("--size", type=int, default=1_000_000, help="image bytes (default 1 MB)")
    parser.add_argument("--timeout", type=float, default=600.0, help="per device attempt, s")
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS, default=list(METHODS), help="default: all three"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(run(args))


if __name__ == "__main__":
    raise SystemExit(main())

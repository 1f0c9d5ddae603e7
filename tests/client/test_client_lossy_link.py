"""A fleet behind a NAT on a lossy link stays registered (issue 14).

300 simulated devices (lifetime 20 s) register to a real server through
:class:`LossyRelay` (one upstream port per device, as behind a NAT); then the
link turns bad: 15 % loss each way (so 28 % of exchanges lose their request or
their response), 5 % duplicates, 0-60 ms delays. Sampled every second for
36 s, the server must hold a live registration (within its lifetime, no
grace) for >= 99.8 % of the device-seconds, and server reads through the link
(12 s each at most) must succeed >= 95 % (reads cut by the restart below are
reported, not counted: they fail because the server stops, not because of the
link). At 10 s the server restarts on its SQLite store and port; at 18 s five
devices are rebound to new NAT ports: the server must follow each one's new
address after its next Update and reach it there.

The fleet registers on a clean link: on this one a first Register loses four
exchanges in a row for 0.6 % of the devices, which then wait 30-45 s for the
fifth transmission, with or without any scheduling of Updates.

CoAP timing: the devices keep RFC 7252's defaults (ACK_TIMEOUT 2 s, so
MAX_TRANSMIT_WAIT 93 s), as in the issue's measurement: their Update goes at
half the 20 s lifetime and gets three transmissions before the end. The
server is configured with ACK_TIMEOUT 1 s (SERVER_PARAMS) so that one read
gets four transmissions within its 12 s: the read figure then measures the
link, not a 2 s timer racing the test's own clock. What counts for
"registered" is that a request reaches the server, so the old scheduling
(Update 2 s before the end, its retransmission 2-3 s later) lapses whenever
the first Update is lost on the way in (15 %), about 1 % of the
device-seconds; the new one only when three in a row are (0.3 %), and then
for the time a Register takes.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path as FsPath

import pytest
from lossy_relay import Address, LossyRelay

from lwm2m.client.config import ClientConfig, FactoryAccount
from lwm2m.client.simulator import Simulator
from lwm2m.coap.codes import Code
from lwm2m.coap.endpoint import Endpoint
from lwm2m.coap.params import TransmissionParameters
from lwm2m.model.registry import default_registry
from lwm2m.server import LwM2MServer
from lwm2m.server import ServerConfig as LwM2MServerConfig
from lwm2m.server.errors import ServerError
from lwm2m.stores import Stores, open_stores

DEVICES = 300
LIFETIME_S = 20
MEASURE_S = 36
READ_TIMEOUT_S = 12.0
SERVER_PARAMS = TransmissionParameters(ack_timeout_s=1.0)


@dataclass
class Running:
    server: LwM2MServer
    stores: Stores


class ServerHost:
    """The server on a fixed port, restartable on the same SQLite directory."""

    def __init__(self, data_dir: FsPath) -> None:
        self.data_dir = data_dir
        self.port = 0
        self.current: Running | None = None
        self.up = asyncio.Event()
        #: how many times the server started (a read that spans a restart is not the link's)
        self.generation = 0

    async def start(self) -> Address:
        stores = await open_stores("sqlite", self.data_dir)
        server = LwM2MServer(stores, config=LwM2MServerConfig(coap_port=self.port))
        endpoint = await Endpoint.create(
            "127.0.0.1", self.port, handler=server.handle, params=SERVER_PARAMS
        )
        await server.start_with(endpoint)
        self.port = server.coap_address[1]
        self.current = Running(server, stores)
        self.generation += 1
        self.up.set()
        return ("127.0.0.1", self.port)

    async def stop(self) -> None:
        self.up.clear()
        if self.current is not None:
            await self.current.server.stop()
            await self.current.stores.close()
            self.current = None

    async def server(self) -> LwM2MServer:
        """The running server (waits through a restart)."""
        await asyncio.wait_for(self.up.wait(), 10)
        assert self.current is not None
        return self.current.server


@asynccontextmanager
async def fleet(relay_address: Address) -> AsyncIterator[Simulator]:
    base = ClientConfig(
        "lossy",
        servers=(
            FactoryAccount(f"coap://{relay_address[0]}:{relay_address[1]}", lifetime_s=LIFETIME_S),
        ),
        local_host="127.0.0.1",
    )
    simulator = Simulator(base, DEVICES, registry=default_registry(), rate_per_s=100, seed=14)
    try:
        await simulator.start()
        yield simulator
    finally:
        # No De-register: on this link it could take MAX_TRANSMIT_WAIT per device.
        for client in simulator.clients:
            await client.stop(deregister=False)
        simulator.scheduler.close()


async def until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` (a tenth of a second apart: spinning would starve 300 devices)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"not reached within {timeout} s: {what}")
        await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_fleet_stays_registered_on_a_lossy_nat_link(tmp_path: FsPath) -> None:
    host = ServerHost(tmp_path)
    server_address = await host.start()
    relay = LossyRelay(server_address, random.Random(2026))
    relay_address = await relay.start()
    try:
        async with fleet(relay_address) as simulator:
            names = [c.endpoint_name for c in simulator.clients]

            def registered() -> int:
                assert host.current is not None
                now = time.time()
                regs = (host.current.server.get_registration(n) for n in names)
                return sum(1 for r in regs if r is not None and r.expires_at >= now)

            await until(
                lambda: (
                    registered() == DEVICES
                    and all(c.sessions[1].registered for c in simulator.clients)
                ),
                30,
                "every device registered",
            )
            relay.impair(loss=0.15, duplicate=0.05, max_delay_s=0.06)
            loop = asyncio.get_running_loop()
            begin = loop.time()
            end = begin + MEASURE_S
            samples: list[int] = []
            reads: list[bool] = []
            interrupted = 0  # reads cut by the server restart (not counted)
            rebound: dict[str, Address] = {}  # endpoint -> the address before rebinding
            followed: dict[str, bool] = {}

            async def sample() -> None:
                tick = begin
                while tick < end:
                    tick += 1.0
                    await asyncio.sleep(max(0.0, tick - loop.time()))
                    await host.server()
                    samples.append(registered())

            async def read_one(name: str) -> bool:
                server = await host.server()
                try:
                    response = await server.read(name, "/3/0/0", timeout=READ_TIMEOUT_S)
                except ServerError:
                    return False
                return response.code == Code.CONTENT

            async def read_load() -> None:
                rng = random.Random(7)
                pending: set[asyncio.Task[None]] = set()

                async def one(name: str) -> None:
                    nonlocal interrupted
                    generation = host.generation
                    ok = await read_one(name)
                    if ok or (host.generation == generation and host.up.is_set()):
                        reads.append(ok)
                    else:
                        interrupted += 1

                while loop.time() < end - READ_TIMEOUT_S:
                    candidates = [n for n in names if n not in rebound]
                    task = asyncio.ensure_future(one(rng.choice(candidates)))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    await asyncio.sleep(0.2)
                if pending:
                    await asyncio.gather(*pending)

            async def restart_server() -> None:
                await asyncio.sleep(10)
                await host.stop()
                await host.start()

            async def rebind_some() -> None:
                await asyncio.sleep(18)
                server = await host.server()
                for client in simulator.clients[:5]:
                    reg = server.get_registration(client.endpoint_name)
                    assert reg is not None and client.local_address is not None
                    rebound[client.endpoint_name] = reg.address
                    relay.rebind(client.local_address)

            async def follow(client_index: int) -> None:
                await asyncio.sleep(18.5)
                client = simulator.clients[client_index]
                name = client.endpoint_name
                assert client.local_address is not None

                def moved() -> bool:
                    assert host.current is not None
                    reg = host.current.server.get_registration(name)
                    new = relay.upstream_address(client.local_address)  # type: ignore[arg-type]
                    return (
                        reg is not None and new is not None and reg.address == new != rebound[name]
                    )

                # Its next Update may be lost on every try until its lifetime ends; it then
                # registers again at once, from the new port: within two lifetimes either way.
                await until(moved, 2 * LIFETIME_S, f"the server follows {name} to its new port")
                for _ in range(3):  # a single read may be lost on this link
                    if await read_one(name):
                        followed[name] = True
                        return
                followed[name] = False

            await asyncio.gather(
                sample(),
                read_load(),
                restart_server(),
                rebind_some(),
                *(follow(i) for i in range(5)),
            )

            device_seconds = DEVICES * len(samples)
            share = sum(samples) / device_seconds
            print(
                f"registered {share:.4%} of {device_seconds} device-seconds (min {min(samples)}); "
                f"reads {sum(reads)}/{len(reads)} (+{interrupted} cut by the restart); {relay.stats}"
            )
            assert len(samples) >= MEASURE_S - 1
            assert share >= 0.998, samples
            assert len(reads) >= 80 and sum(reads) / len(reads) >= 0.95
            assert followed == dict.fromkeys(rebound, True)
    finally:
        await relay.close()
        await host.stop()

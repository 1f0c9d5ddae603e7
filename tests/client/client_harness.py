"""Helpers for the client tests (a uniquely named module: tests/*/conftest.py all exist)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from client_rawserver import Address, RawServer

from lwm2m.client.client import LwM2MClient
from lwm2m.client.scheduler import ManualScheduler


class Harness:
    """A client on a manual clock, registered to a raw server."""

    def __init__(self, client: LwM2MClient, server: RawServer, scheduler: ManualScheduler) -> None:
        self.client = client
        self.server = server
        self.scheduler = scheduler
        self.address: Address = ("127.0.0.1", 0)
        self.register: object = None


MakeClient = Callable[..., Awaitable[Harness]]


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Yield to the loop until ``predicate`` holds (no wall-clock sleeping)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0)


async def make_bootstrapping_client(
    make_client: MakeClient, server: RawServer, bs: RawServer, *, bootstrap_after_failures: int
) -> tuple[Harness, list[object]]:
    """A client with an LwM2M server account and a bootstrap account on ``bs``.

    Its bootstrap attempts are recorded (in the list returned) and fail, so a
    test sees whether and when the registration procedure falls back to them.
    """
    from lwm2m.client.config import FactoryAccount

    h = await make_client(
        register=False,
        servers=(
            FactoryAccount(server.uri, lifetime_s=60),
            FactoryAccount(bs.uri, short_server_id=0, bootstrap=True),
        ),
        bootstrap_after_failures=bootstrap_after_failures,
    )
    called: list[object] = []

    async def bootstrapper(client: object) -> bool:
        called.append(client)
        return False

    h.client.bootstrapper = bootstrapper
    return h, called

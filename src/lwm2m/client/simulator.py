"""Many simulated devices in one process: ``lwm2m client --count N``.

Every device is a full :class:`LwM2MClient` with its own UDP socket; they
share the model registry and one timer heap, so an idle device costs no task.
Devices start at a bounded rate (a server flooded with N simultaneous
Registers helps nobody), and stop together: none starts an exchange any more,
and De-registers go out in a window paced by the server's answers, for as
long as the server keeps answering (see :meth:`Simulator.stop`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from lwm2m.client.client import LwM2MClient
from lwm2m.client.config import ClientConfig
from lwm2m.client.registration import RegistrationState
from lwm2m.client.scheduler import Scheduler
from lwm2m.coap.tasks import cancel_and_wait
from lwm2m.model.registry import ModelRegistry

logger = logging.getLogger(__name__)

#: De-registers in flight at once while a fleet stops (the server's answers pace the rest).
DEREGISTER_WINDOW = 500


@dataclass(slots=True)
class Summary:
    devices: int = 0
    started: int = 0
    registered: int = 0
    failed: int = 0
    registrations: int = 0
    updates: int = 0
    requests_served: int = 0
    notifications_sent: int = 0

    def line(self) -> str:
        return (
            f"devices {self.started}/{self.devices}  registered {self.registered}  "
            f"failed {self.failed}  updates {self.updates}  requests served {self.requests_served}  "
            f"notifications {self.notifications_sent}"
        )


def device_endpoint(base: str, index: int, count: int) -> str:
    """``base-00042``: a numeric suffix as wide as the largest index."""
    width = len(str(count - 1))
    return f"{base}-{index:0{width}d}"


class Simulator:
    def __init__(
        self,
        base: ClientConfig,
        count: int,
        *,
        registry: ModelRegistry,
        rate_per_s: float = 500.0,
        customize: Callable[[LwM2MClient], None] | None = None,
        seed: int | None = None,
    ) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        self.base = base
        self.count = count
        self.registry = registry
        self.rate_per_s = rate_per_s
        self.customize = customize
        self.scheduler = Scheduler()
        self.rng = random.Random(seed)
        self.clients: list[LwM2MClient] = []
        self._starting: asyncio.Task[None] | None = None
        self._to_deregister = 0
        self._deregistered = 0

    def make_client(self, index: int) -> LwM2MClient:
        config = dataclasses.replace(
            self.base,
            endpoint=device_endpoint(self.base.endpoint, index, self.count),
            state_file=None,
            serial_number=f"SN{index:08d}",
        )
        client = LwM2MClient(
            config,
            registry=self.registry,
            scheduler=self.scheduler,
            rng=random.Random(self.rng.getrandbits(64)),
        )
        if self.customize is not None:
            self.customize(client)
        return client

    async def start(self) -> None:
        """Create and start every device, ``rate_per_s`` at most per second (in the background)."""
        self._starting = asyncio.ensure_future(self._start_all())
        await self._starting

    async def _start_all(self) -> None:
        loop = asyncio.get_running_loop()
        begin = loop.time()
        for index in range(self.count):
            client = self.make_client(index)
            self.clients.append(client)
            try:
                await client.start()
            except OSError as exc:
                logger.error("device %s cannot start: %s", client.endpoint_name, exc)
                continue
            due = begin + (index + 1) / self.rate_per_s
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)

    def summary(self) -> Summary:
        result = Summary(devices=self.count, started=sum(1 for c in self.clients if c.running))
        for client in self.clients:
            sessions = list(client.sessions.values())
            if sessions and all(s.registered for s in sessions):
                result.registered += 1
            elif any(s.state is RegistrationState.FAILED for s in sessions):
                result.failed += 1
            for s in sessions:
                result.registrations += s.registrations
                result.updates += s.updates
            result.requests_served += client.stats.requests_served
            result.notifications_sent += client.stats.notifications_sent
        return result

    def deregistered(self) -> int:
        """Devices whose every registration ended with a confirmed De-register."""
        return self._deregistered

    def registered_at_stop(self) -> int:
        """Devices that were registered when the stop began (the ones to de-register)."""
        return self._to_deregister

    async def stop(self, timeout_s: float | None = None, *, release: bool = True) -> int:
        """De-register every device (best effort) and close their sockets; returns how many.

        ``release=False`` leaves the sockets and tasks as they are, for a process
        that exits right after: the OS closes 10,000 sockets faster than 10,000
        orderly closes, which would push the exit past the stop's deadline.

        All devices stop starting Registers and Updates at once, then the
        De-registers go out at most ``DEREGISTER_WINDOW`` at a time, so a
        fleet is paced by the server's answers. The stop gives up when no
        De-register has been answered for ``timeout_s`` seconds: a server
        that keeps answering gets every device de-registered, an unreachable
        one costs ``timeout_s`` in all (not one retransmission sequence per
        device).
        """
        if self._starting is not None and not self._starting.done():
            await cancel_and_wait([self._starting])
        for client in self.clients:
            client.begin_stop()
        pending = [c for c in self.clients if c.registered_anywhere()]
        self._to_deregister = len(pending)
        loop = asyncio.get_running_loop()
        last_progress = loop.time()
        queue = iter(pending)

        async def deregister_some() -> None:
            # A fixed set of workers sharing one iterator: cancelling them is
            # cheap, unlike thousands of coroutines queued on a semaphore.
            nonlocal last_progress
            for client in queue:
                try:
                    confirmed = await client.deregister_all()
                except Exception:
                    logger.exception("de-registering %s failed", client.endpoint_name)
                    continue
                last_progress = loop.time()
                if confirmed:
                    self._deregistered += 1

        workers = min(DEREGISTER_WINDOW, len(pending))
        work = asyncio.gather(*(deregister_some() for _ in range(workers)))
        try:
            while not work.done():
                if timeout_s is None:
                    await asyncio.wait({work})
                    break
                idle_left = last_progress + timeout_s - loop.time()
                if idle_left <= 0:
                    logger.warning(
                        "no De-register answered for %.1f s: %d devices left registered",
                        timeout_s,
                        self._to_deregister - self._deregistered,
                    )
                    break
                await asyncio.wait({work}, timeout=idle_left)
        finally:
            await cancel_and_wait([work])
            if release:
                await asyncio.gather(
                    *(c.stop(deregister=False) for c in self.clients), return_exceptions=True
                )
                self.scheduler.close()
        return self._deregistered

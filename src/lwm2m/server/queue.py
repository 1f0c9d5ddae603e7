"""Queue mode (LwM2M 1.0 8.4 / 1.1 6.5): hold requests until a sleeping client shows up.

A queue-mode client is awake right after it sent anything (Register, Update,
a response, a notification) and is considered asleep once ``awake_time_s``
passes without traffic (default 93 s, the CoAP MAX_TRANSMIT_WAIT the spec
suggests). Requests made while it sleeps wait here, at most ``max_queued``
per client (the rest fail fast with :class:`QueueFull`), and go out in order
when it next shows up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from lwm2m.server.errors import ClientNotFound, ClientTimeout, QueueFull
from lwm2m.server.events import AwakeEvent, ServerEventBus, SleepingEvent
from lwm2m.stores.records import Registration

DEFAULT_AWAKE_TIME_S = 93.0
DEFAULT_MAX_QUEUED = 32


@dataclass(slots=True)
class _ClientState:
    endpoint: str
    awake: bool = True
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    waiting: int = 0
    timer: asyncio.TimerHandle | None = None
    gone: bool = False


class QueueMode:
    def __init__(
        self,
        events: ServerEventBus,
        *,
        awake_time_s: float = DEFAULT_AWAKE_TIME_S,
        max_queued: int = DEFAULT_MAX_QUEUED,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.events = events
        self.awake_time_s = awake_time_s
        self.max_queued = max_queued
        self.clock = clock
        self._clients: dict[str, _ClientState] = {}

    def is_awake(self, registration: Registration) -> bool:
        if not registration.queue_mode:
            return True
        return self.is_awake_id(registration.id)

    def is_awake_id(self, registration_id: str) -> bool:
        """:meth:`is_awake` of a queue-mode client known by its id only."""
        state = self._clients.get(registration_id)
        # Unknown (e.g. loaded from the store after a restart): asleep until it shows up.
        return state is not None and state.awake

    def awake_count(self) -> int:
        """Queue-mode clients awake now: the fleet overview's complement of the sleeping ones."""
        return sum(1 for state in self._clients.values() if state.awake and not state.gone)

    def queued(self, registration_id: str) -> int:
        state = self._clients.get(registration_id)
        return 0 if state is None else state.waiting

    def on_activity(self, registration: Registration) -> bool:
        """The client sent something: it is awake for another ``awake_time_s``.

        True when it was asleep (or unknown to this node) until now: the
        moment to send what is queued for it.
        """
        if not registration.queue_mode:
            if registration.id not in self._clients:
                return False  # never in queue mode here: a storm's every client
            # Left queue mode (Update without Q): waiting requests may go now.
            self.forget(registration.id, gone=False)
            return True
        woke = False
        state = self._clients.get(registration.id)
        if state is None:
            state = _ClientState(registration.endpoint, awake=False)
            self._clients[registration.id] = state
        if not state.awake:
            woke = True
            state.awake = True
            state.wake.set()
            self.events.publish(AwakeEvent(registration.endpoint, self.clock(), registration.id))
        if state.timer is not None:
            state.timer.cancel()
        loop = asyncio.get_running_loop()
        state.timer = loop.call_later(self.awake_time_s, self._fall_asleep, registration.id)
        return woke

    def _fall_asleep(self, registration_id: str) -> None:
        state = self._clients.get(registration_id)
        if state is None or not state.awake:
            return
        state.awake = False
        state.wake.clear()
        state.timer = None
        self.events.publish(SleepingEvent(state.endpoint, self.clock(), registration_id))

    def sleep_now(self, registration_id: str) -> None:
        """Consider the client asleep at once (it said so, or an operator did)."""
        state = self._clients.get(registration_id)
        if state is not None and state.timer is not None:
            state.timer.cancel()
        self._fall_asleep(registration_id)

    async def wait_awake(self, registration: Registration, timeout: float | None) -> None:
        """Return when the client is awake; raise when the queue is full or time runs out."""
        if self.is_awake(registration):
            return
        state = self._clients.get(registration.id)
        if state is None:
            state = _ClientState(registration.endpoint, awake=False)
            self._clients[registration.id] = state
        if state.waiting >= self.max_queued:
            raise QueueFull(
                f"{self.max_queued} requests already wait for sleeping client {registration.endpoint!r}"
            )
        state.waiting += 1
        try:
            if timeout is None:
                await state.wake.wait()
            else:
                try:
                    async with asyncio.timeout(timeout):  # a cancel is never lost (3.11)
                        await state.wake.wait()
                except TimeoutError:
                    raise ClientTimeout(
                        f"client {registration.endpoint!r} stayed asleep for {timeout} s"
                    ) from None
        finally:
            state.waiting -= 1
        if state.gone:
            raise ClientNotFound(registration.endpoint)

    @contextlib.contextmanager
    def parked(self, registration: Registration) -> Iterator[None]:
        """Count a request waiting for the client (queued in the store) in :meth:`queued`."""
        state = self._clients.get(registration.id)
        if state is None:
            state = _ClientState(registration.endpoint, awake=False)
            self._clients[registration.id] = state
        state.waiting += 1
        try:
            yield
        finally:
            state.waiting -= 1

    def forget(self, registration_id: str, *, gone: bool = True) -> None:
        """Drop the client's state; waiters are released (with :class:`ClientNotFound`
        when the registration is ``gone``)."""
        state = self._clients.pop(registration_id, None)
        if state is None:
            return
        if state.timer is not None:
            state.timer.cancel()
        state.gone = gone
        state.wake.set()

    def close(self) -> None:
        for rid in list(self._clients):
            self.forget(rid)

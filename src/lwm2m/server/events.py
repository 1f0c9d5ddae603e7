"""Server events and the bus that fans them out to subscribers.

Events are frozen values; a subscriber gets each one at most once, in order.
Each subscription has a bounded buffer: a subscriber that stops reading loses
the oldest events (and sees ``dropped`` grow) instead of growing the server's
memory without bound or slowing down registration handling.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from lwm2m.model.nodes import Node
from lwm2m.model.path import Path
from lwm2m.server.content import TimedValue
from lwm2m.stores.records import ObservationRecord, Registration

logger = logging.getLogger(__name__)

DEFAULT_SUBSCRIBER_BUFFER = 1024


class EventType(enum.Enum):
    REGISTRATION = "registration"
    UPDATED = "updated"
    DEREGISTRATION = "deregistration"
    NOTIFICATION = "notification"
    SLEEPING = "sleeping"
    AWAKE = "awake"
    SEND = "send"


@dataclass(frozen=True, slots=True)
class ServerEvent:
    """Base of every event; ``endpoint`` is the client's Endpoint Client Name."""

    type: ClassVar[EventType]
    endpoint: str
    time: float  # wall clock seconds


@dataclass(frozen=True, slots=True)
class RegistrationEvent(ServerEvent):
    """A client registered; ``replaced`` is its previous registration (re-Register)."""

    type: ClassVar[EventType] = EventType.REGISTRATION
    registration: Registration
    replaced: Registration | None = None


@dataclass(frozen=True, slots=True)
class UpdatedEvent(ServerEvent):
    type: ClassVar[EventType] = EventType.UPDATED
    previous: Registration
    registration: Registration


@dataclass(frozen=True, slots=True)
class DeregistrationEvent(ServerEvent):
    """A registration ended: De-register, lifetime expiry (``expired``) or replacement."""

    type: ClassVar[EventType] = EventType.DEREGISTRATION
    registration: Registration
    expired: bool = False
    replaced: bool = False


@dataclass(frozen=True, slots=True)
class NotificationEvent(ServerEvent):
    """A notification of an observation, decoded.

    ``values`` maps each reported path to its node (one entry for a single
    observation). ``content`` is the node of the observed path when it is a
    single observation, else None. ``records`` are the reported values with
    absolute measurement times (SenML relative times resolved against the
    server's clock at reception; see :func:`lwm2m.server.content.timed_values`),
    empty for formats without records (TLV, text, opaque).
    """

    type: ClassVar[EventType] = EventType.NOTIFICATION
    observation: ObservationRecord
    values: Mapping[Path, Node]
    content_format: int | None = None
    sequence: int | None = None  # the Observe option value
    confirmable: bool = False
    records: tuple[TimedValue, ...] = ()

    @property
    def content(self) -> Node | None:
        if self.observation.composite:
            return None
        return self.values.get(self.observation.path)


@dataclass(frozen=True, slots=True)
class SleepingEvent(ServerEvent):
    """A queue-mode client is considered asleep (its awake time ran out)."""

    type: ClassVar[EventType] = EventType.SLEEPING
    registration_id: str


@dataclass(frozen=True, slots=True)
class AwakeEvent(ServerEvent):
    """A queue-mode client showed up; queued requests go out now."""

    type: ClassVar[EventType] = EventType.AWAKE
    registration_id: str


@dataclass(frozen=True, slots=True)
class SendEvent(ServerEvent):
    """Data a client pushed with the Send operation (``POST /dp``).

    ``records``: every reported value in payload order with its absolute
    measurement time (relative SenML times resolved at reception), as for
    :class:`NotificationEvent`.
    """

    type: ClassVar[EventType] = EventType.SEND
    registration_id: str
    values: Mapping[Path, Node] = field(default_factory=dict)
    content_format: int | None = None
    records: tuple[TimedValue, ...] = ()


class Subscription:
    """One subscriber's bounded buffer; an async iterator of events."""

    def __init__(self, bus: EventBus, endpoint: str | None, maxsize: int) -> None:
        self._bus = bus
        self.endpoint = endpoint
        self._buffer: deque[ServerEvent] = deque(maxlen=maxsize)
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.dropped = 0

    def _push(self, event: ServerEvent) -> None:
        if self._closed:
            return
        if self._buffer.maxlen is not None and len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
        self._buffer.append(event)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._bus._unsubscribe(self)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    @property
    def closed(self) -> bool:
        return self._closed

    def get_nowait(self) -> ServerEvent | None:
        return self._buffer.popleft() if self._buffer else None

    async def get(self) -> ServerEvent:
        """The next event; raises StopAsyncIteration once closed and drained."""
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._buffer.popleft()

    def __aiter__(self) -> AsyncIterator[ServerEvent]:
        return self

    async def __anext__(self) -> ServerEvent:
        return await self.get()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Publish/subscribe for :class:`ServerEvent`; publishing never blocks."""

    def __init__(self, buffer_size: int = DEFAULT_SUBSCRIBER_BUFFER) -> None:
        self._buffer_size = buffer_size
        self._all: list[Subscription] = []
        self._by_endpoint: dict[str, list[Subscription]] = {}

    def subscribe(self, endpoint: str | None = None, *, buffer: int | None = None) -> Subscription:
        """Events of one endpoint, or of all when ``endpoint`` is None.

        Use as ``with bus.subscribe() as sub: async for event in sub: ...``;
        closing the subscription ends the iteration.
        """
        sub = Subscription(self, endpoint, buffer or self._buffer_size)
        if endpoint is None:
            self._all.append(sub)
        else:
            self._by_endpoint.setdefault(endpoint, []).append(sub)
        return sub

    def publish(self, event: ServerEvent) -> None:
        for sub in self._all:
            sub._push(event)
        subs = self._by_endpoint.get(event.endpoint)
        if subs:
            for sub in subs:
                sub._push(event)

    @property
    def subscriber_count(self) -> int:
        return len(self._all) + sum(len(v) for v in self._by_endpoint.values())

    def close(self) -> None:
        """End every subscription (server shutdown)."""
        for sub in [*self._all, *(s for v in self._by_endpoint.values() for s in v)]:
            sub.close()

    def _unsubscribe(self, sub: Subscription) -> None:
        if sub.endpoint is None:
            if sub in self._all:
                self._all.remove(sub)
            return
        subs = self._by_endpoint.get(sub.endpoint)
        if subs and sub in subs:
            subs.remove(sub)
            if not subs:
                del self._by_endpoint[sub.endpoint]

"""The event bus both server roles publish on (LwM2M server and bootstrap server).

One implementation, typed by the events it carries: the LwM2M server has an
``EventBus[ServerEvent]`` (:mod:`lwm2m.server.events`), the bootstrap server
an ``EventBus[BootstrapEvent]`` (:mod:`lwm2m.bootstrap.events`), and the web
layer reads both the same way.

Rules:

1. Publishing never blocks and never fails: it runs inside request handling
   (a Register, a bootstrap step), which must not wait on a slow reader.
2. Each subscription has a bounded buffer. A subscriber that stops reading
   loses the oldest events (``dropped`` counts them) instead of growing the
   server's memory without bound.
3. A subscriber gets each event at most once, in publication order; it may
   ask for one endpoint's events only.
4. Synchronous listeners run inside :meth:`EventBus.publish`; one that
   raises is logged and the others still run.
5. An event nobody receives need not exist: a publisher on a hot path (a
   Register of a storm) builds its event only when :meth:`EventBus.hears` its
   kind (the value of its class's ``type``): a listener may name the kinds it
   wants, and gets only those.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Generic, Protocol, TypeVar

logger = logging.getLogger(__name__)

DEFAULT_SUBSCRIBER_BUFFER = 1024


class EndpointEvent(Protocol):
    """What the bus needs of an event: the endpoint name it concerns."""

    @property
    def endpoint(self) -> str: ...


E = TypeVar("E", bound=EndpointEvent)


def event_kind(event: object) -> str | None:
    """What a listener names to get ``event``: the value of its class's ``type`` (the events
    of both roles have one, an enum); None for an event without one."""
    kind = getattr(type(event), "type", None)
    value = getattr(kind, "value", None)
    return value if isinstance(value, str) else None


class Subscription(Generic[E]):
    """One subscriber's bounded buffer; an async iterator of events.

    Use as ``with bus.subscribe() as sub: async for event in sub: ...``;
    closing it (or the bus) ends the iteration once the buffer is drained.
    """

    def __init__(self, bus: EventBus[E], endpoint: str | None, maxsize: int) -> None:
        self._bus = bus
        self.endpoint = endpoint
        self._buffer: deque[E] = deque(maxlen=maxsize)
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.dropped = 0

    def _push(self, event: E) -> None:
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

    def get_nowait(self) -> E | None:
        return self._buffer.popleft() if self._buffer else None

    async def get(self, timeout: float | None = None) -> E:
        """The next event; ``TimeoutError`` after ``timeout`` seconds,
        ``StopAsyncIteration`` once closed and drained."""
        if self._buffer:
            return self._buffer.popleft()
        async with asyncio.timeout(timeout):
            while not self._buffer:
                if self._closed:
                    raise StopAsyncIteration
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
        return self._buffer.popleft()

    def __aiter__(self) -> AsyncIterator[E]:
        return self

    async def __anext__(self) -> E:
        return await self.get()

    def __enter__(self) -> Subscription[E]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus(Generic[E]):
    """Publish/subscribe for one role's events: async subscriptions and sync listeners."""

    def __init__(self, buffer_size: int = DEFAULT_SUBSCRIBER_BUFFER) -> None:
        self._buffer_size = buffer_size
        self._all: list[Subscription[E]] = []
        self._by_endpoint: dict[str, list[Subscription[E]]] = {}
        #: Each listener with the kinds it asked for (None: every event).
        self._listeners: list[tuple[Callable[[E], None], frozenset[str] | None]] = []

    @property
    def heard(self) -> bool:
        """Whether a published event reaches anything (a listener or a subscription).

        Publishing with nothing to receive costs the event's construction and
        a call for nothing; a storm of Registers publishes two per request.
        """
        return bool(self._listeners or self._all or self._by_endpoint)

    def hears(self, kind: str) -> bool:
        """Whether an event of ``kind`` (see :func:`event_kind`) reaches anything: a
        subscription (they get every kind), or a listener that did not leave it out."""
        if self._all or self._by_endpoint:
            return True
        for _, kinds in self._listeners:  # noqa: SIM110 - no generator per call (hot path)
            if kinds is None or kind in kinds:
                return True
        return False

    def subscribe(
        self, endpoint: str | None = None, *, buffer: int | None = None
    ) -> Subscription[E]:
        """Events of one endpoint, or of all when ``endpoint`` is None."""
        sub = Subscription(self, endpoint, buffer or self._buffer_size)
        if endpoint is None:
            self._all.append(sub)
        else:
            self._by_endpoint.setdefault(endpoint, []).append(sub)
        return sub

    def add_listener(
        self, listener: Callable[[E], None], *, kinds: Iterable[str] | None = None
    ) -> Callable[[], None]:
        """Call ``listener`` with every event as it is published, or with those of ``kinds``
        only; returns the remover.

        For bookkeeping that must see every event (a history, a counter),
        which a bounded subscription could drop. Naming the kinds spares the
        publishers the others' events while nothing else hears them.
        """
        entry = (listener, None if kinds is None else frozenset(kinds))
        self._listeners.append(entry)

        def remove() -> None:
            for i, known in enumerate(self._listeners):
                if known is entry:
                    del self._listeners[i]
                    return

        return remove

    def publish(self, event: E) -> None:
        listeners = self._listeners
        if listeners:
            kind: str | None = None
            for listener, kinds in list(listeners):
                if kinds is not None:
                    if kind is None:
                        kind = event_kind(event) or ""
                    if kind not in kinds:
                        continue
                try:
                    listener(event)
                except Exception:
                    logger.exception("event listener failed on %r", event)
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
        """End every subscription (the role is shutting down)."""
        for sub in [*self._all, *(s for v in self._by_endpoint.values() for s in v)]:
            sub.close()

    def _unsubscribe(self, sub: Subscription[E]) -> None:
        if sub.endpoint is None:
            if sub in self._all:
                self._all.remove(sub)
            return
        subs = self._by_endpoint.get(sub.endpoint)
        if subs and sub in subs:
            subs.remove(sub)
            if not subs:
                del self._by_endpoint[sub.endpoint]

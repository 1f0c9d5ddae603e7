"""Typed bootstrap session events and the small bus the REST layer subscribes to.

Every event names its session and endpoint and carries a wall-clock time.
A session emits :class:`SessionStarted`, then one :class:`SessionRequest`
and one :class:`SessionAnswer` per Bootstrap operation, then exactly one of
:class:`SessionFinished` / :class:`SessionFailed`. A Request Bootstrap that
is refused before any session exists (unknown endpoint, bad query, busy)
emits :class:`BootstrapRejected`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, fields
from typing import ClassVar

logger = logging.getLogger(__name__)


class BootstrapEventType(enum.Enum):
    STARTED = "started"
    REQUEST = "request"
    ANSWER = "answer"
    FINISHED = "finished"
    FAILED = "failed"
    REJECTED = "rejected"


class SessionMode(enum.Enum):
    CLIENT_INITIATED = "client_initiated"
    SERVER_INITIATED = "server_initiated"


class Operation(enum.Enum):
    """The Bootstrap Interface operations the server sends."""

    DELETE = "delete"
    DISCOVER = "discover"
    READ = "read"
    WRITE = "write"
    FINISH = "finish"


class FailureReason(enum.Enum):
    UNKNOWN_ENDPOINT = "unknown_endpoint"
    BAD_REQUEST = "bad_request"
    BUSY = "busy"
    TIMEOUT = "timeout"
    ERROR_RESPONSE = "error_response"
    TRANSPORT = "transport"
    ENCODING = "encoding"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class BootstrapEvent:
    type: ClassVar[BootstrapEventType]
    session_id: str
    endpoint: str
    time: float

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {"type": self.type.value}
        for f in fields(self):
            value = getattr(self, f.name)
            data[f.name] = value.value if isinstance(value, enum.Enum) else value
        return data


@dataclass(frozen=True, slots=True)
class SessionStarted(BootstrapEvent):
    type: ClassVar[BootstrapEventType] = BootstrapEventType.STARTED
    mode: SessionMode
    address: str
    content_format: int


@dataclass(frozen=True, slots=True)
class SessionRequest(BootstrapEvent):
    type: ClassVar[BootstrapEventType] = BootstrapEventType.REQUEST
    step: int
    operation: Operation
    path: str
    content_format: int | None = None
    payload_size: int = 0


@dataclass(frozen=True, slots=True)
class SessionAnswer(BootstrapEvent):
    type: ClassVar[BootstrapEventType] = BootstrapEventType.ANSWER
    step: int
    operation: Operation
    path: str
    code: str
    success: bool
    diagnostic: str = ""


@dataclass(frozen=True, slots=True)
class SessionFinished(BootstrapEvent):
    type: ClassVar[BootstrapEventType] = BootstrapEventType.FINISHED


@dataclass(frozen=True, slots=True)
class SessionFailed(BootstrapEvent):
    type: ClassVar[BootstrapEventType] = BootstrapEventType.FAILED
    reason: FailureReason
    message: str
    code: str | None = None


@dataclass(frozen=True, slots=True)
class BootstrapRejected(BootstrapEvent):
    """A Request Bootstrap answered 4.00 without a session (``session_id`` is still unique)."""

    type: ClassVar[BootstrapEventType] = BootstrapEventType.REJECTED
    address: str
    reason: FailureReason
    message: str


Listener = Callable[[BootstrapEvent], None]


class EventStream:
    """One subscriber's bounded queue; iterate with ``async for``; ``close()`` to stop."""

    def __init__(self, bus: EventBus, maxsize: int) -> None:
        self._bus = bus
        self._queue: deque[BootstrapEvent] = deque(maxlen=maxsize)
        self._wakeup = asyncio.Event()
        self._closed = False
        self.dropped = 0

    def _push(self, event: BootstrapEvent) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(event)
        self._wakeup.set()

    def close(self) -> None:
        self._closed = True
        self._bus._streams.discard(self)
        self._wakeup.set()

    def __aiter__(self) -> AsyncIterator[BootstrapEvent]:
        return self

    async def __anext__(self) -> BootstrapEvent:
        while not self._queue:
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._queue.popleft()

    async def get(self, timeout: float | None = None) -> BootstrapEvent:
        """The next event (raises ``TimeoutError`` after ``timeout`` seconds)."""
        return await asyncio.wait_for(self.__anext__(), timeout)


class EventBus:
    """Synchronous listeners plus bounded async streams; a failing listener is logged, not fatal."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._streams: set[EventStream] = set()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` for every event; returns the unsubscribe function."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def stream(self, maxsize: int = 1024) -> EventStream:
        """A new async stream of events (oldest dropped beyond ``maxsize``)."""
        stream = EventStream(self, maxsize)
        self._streams.add(stream)
        return stream

    def publish(self, event: BootstrapEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                logger.exception("bootstrap event listener failed on %s", event.type.value)
        for stream in list(self._streams):
            stream._push(event)

"""Typed bootstrap session events, published on the bus both roles share.

Every event names its session and endpoint and carries a wall-clock time.
A session emits :class:`SessionStarted`, then one :class:`SessionRequest`
and one :class:`SessionAnswer` per Bootstrap operation, then exactly one of
:class:`SessionFinished` / :class:`SessionFailed`. A Request Bootstrap that
is refused before any session exists (unknown endpoint, bad query, busy)
emits :class:`BootstrapRejected`.

They travel on :class:`lwm2m.protocol.events.EventBus` (typed here as
:data:`BootstrapEventBus`): bounded async subscriptions for the REST layer,
synchronous listeners for bookkeeping that must see every event.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from typing import ClassVar

from lwm2m.protocol.events import EventBus


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


#: The bus of :class:`BootstrapServer` (the same implementation as the LwM2M server's).
BootstrapEventBus = EventBus[BootstrapEvent]

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
from dataclasses import MISSING, dataclass, field, fields
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
    #: None: this node published it; else the cluster node it was relayed from.
    origin: str | None = field(default=None, kw_only=True, compare=False)

    def to_json(self) -> dict[str, object]:
        """The event's fields (``origin`` aside: a relayed event shows as on its node)."""
        data: dict[str, object] = {"type": self.type.value}
        for f in fields(self):
            if f.name == "origin":
                continue
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

_BY_TYPE: dict[str, type[BootstrapEvent]] = {
    cls.type.value: cls
    for cls in (
        SessionStarted,
        SessionRequest,
        SessionAnswer,
        SessionFinished,
        SessionFailed,
        BootstrapRejected,
    )
}
_ENUMS: dict[str, type[enum.Enum]] = {
    "mode": SessionMode,
    "operation": Operation,
    "reason": FailureReason,
}
_PLAIN: dict[str, tuple[type, ...]] = {
    "session_id": (str,),
    "endpoint": (str,),
    "time": (float, int),
    "address": (str,),
    "content_format": (int, type(None)),
    "step": (int,),
    "path": (str,),
    "payload_size": (int,),
    "code": (str, type(None)),
    "success": (bool,),
    "diagnostic": (str,),
    "message": (str,),
}


def bootstrap_event_from_json(data: object, *, origin: str | None = None) -> BootstrapEvent:
    """The event :meth:`BootstrapEvent.to_json` wrote, as another node sent it.

    The text comes from the network (another cluster node through Redis): any field
    missing, unknown or of the wrong type is a ``ValueError``, never a half-built event.
    """
    if not isinstance(data, dict):
        raise ValueError("bootstrap event: not a JSON object")
    cls = _BY_TYPE.get(data.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise ValueError(f"bootstrap event: unknown type {data.get('type')!r}")
    kwargs: dict[str, object] = {}
    for f in fields(cls):
        if f.name == "origin":
            continue
        if f.name not in data:
            if f.default is not MISSING:
                continue
            raise ValueError(f"bootstrap event {cls.type.value}: {f.name} missing")
        value = data[f.name]
        if f.name in _ENUMS:
            try:
                value = _ENUMS[f.name](value)
            except ValueError:
                raise ValueError(f"bootstrap event: {f.name} {value!r} unknown") from None
        elif not isinstance(value, _PLAIN.get(f.name, ())) or (
            isinstance(value, bool) and bool not in _PLAIN.get(f.name, ())
        ):
            raise ValueError(f"bootstrap event: {f.name} has the wrong type")
        kwargs[f.name] = float(value) if f.name == "time" else value
    extra = set(data) - {f.name for f in fields(cls)} - {"type"}
    if extra:
        raise ValueError(f"bootstrap event: unknown fields {sorted(extra)}")
    return cls(**kwargs, origin=origin)  # type: ignore[arg-type]

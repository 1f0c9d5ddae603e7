"""Typed device-management requests and the responses that answer them.

Rule: an operation lives in one class. ``XRequest`` is a ``Request[XResponse]``:
it says how to become a CoAP request for one registration
(:meth:`Request.to_message`) and how to read the client's answer
(:meth:`Request.to_response`). :meth:`LwM2MServer.send
<lwm2m.server.server.LwM2MServer.send>` takes any request and returns its
typed response, and the web layer passes requests through unchanged, so a
new operation is a new class here (plus its REST route), not a method in
every layer (STYLE.md patterns 7 and 14).

Theory of operation: :meth:`Request.run` is the only place a request meets
the server, through the small :class:`Downlink` protocol of three primitives
the server implements for one client and one timeout: a CoAP exchange
(queue-mode wait, CON request, error codes already raised as
:class:`~lwm2m.protocol.errors.RemoteError`), starting an observation, and
cancelling observations. Most requests use the exchange (the default
:meth:`Request.run`); the Observe and Cancel-Observation classes override
:meth:`Request.run` to use the other two. Building and decoding stay pure:
the server does the I/O, the queue and the observation bookkeeping.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from lwm2m.coap.codes import Code
from lwm2m.coap.message import Message
from lwm2m.formats.errors import FormatError
from lwm2m.formats.media import ContentFormat
from lwm2m.model.nodes import (
    LwM2MObject,
    Node,
    ObjectInstance,
    Resource,
    ResourceInstance,
    Value,
)
from lwm2m.model.path import Path, PathError
from lwm2m.model.registry import ModelRegistry
from lwm2m.protocol.attributes import ALL_ATTRIBUTES, AttributeError_, AttributeUpdate
from lwm2m.server import payloads
from lwm2m.server.errors import InvalidResponse
from lwm2m.server.object_links import Link, LinkFormatError, parse_discover
from lwm2m.stores.records import ObservationRecord, Registration

R = TypeVar("R", covariant=True)


def uri_path(registration: Registration, path: Path) -> tuple[str, ...]:
    """Uri-Path segments for ``path`` on that client (below its alternate root path)."""
    root = registration.links.root_path
    prefix = tuple(s for s in root.split("/") if s) if root != "/" else ()
    return prefix + path.segments()


@dataclass(frozen=True, slots=True)
class Target:
    """The client a request goes to, and the model its payloads are coded with.

    Built by the server at send time (after a queue-mode wait, so the
    registration is the current one), because the format and the Uri-Path
    depend on what the client announced.
    """

    registration: Registration
    model: ModelRegistry | None

    def uri_path(self, path: Path) -> tuple[str, ...]:
        return uri_path(self.registration, path)

    def format_for(self, path: Path | None, requested: int | None) -> int:
        """The payload format: the caller's, else the client's preferred one."""
        if requested is not None:
            return requested
        return payloads.preferred_format(self.registration, path)

    def accept(self, path: Path, requested: int | None) -> int | None:
        """The Accept option of a Read/Observe, None for no option."""
        if requested is not None:
            return requested
        # 1.0 clients get no Accept (several reject it); they answer TLV or text.
        if self.registration.lwm2m_version == "1.0":
            return None
        return payloads.preferred_format(self.registration, path)

    def decode(self, answer: Message, path: Path) -> Node:
        try:
            return payloads.decode(answer.content_format, answer.payload, path, self.model)
        except FormatError as exc:
            raise InvalidResponse(f"cannot decode the answer for {path}: {exc}") from None


#: What a started observation gives back: its record, the first values, their format.
Observed = tuple[ObservationRecord, Mapping[Path, Node], int | None]


class Downlink(Protocol):
    """What the server offers a request for one client, within one timeout.

    A Protocol so that requests depend on no server class, and a test can run
    a request against a scripted client.
    """

    async def exchange(self, build: Callable[[Target], Message]) -> tuple[Target, Message]:
        """Send ``build(target)`` and return the 2.xx answer (errors are raised)."""
        ...

    async def observe(self, request: ObservingRequest[object]) -> Observed:
        """Start the observation ``request`` describes and keep it."""
        ...

    async def cancel_observations(
        self, matches: Callable[[ObservationRecord], bool], *, active: bool
    ) -> int:
        """Cancel the client's observations ``matches`` picks; how many there were."""
        ...


class Request(Generic[R]):
    """A request answered by an ``R``; subclasses are frozen dataclasses.

    Subclasses of an exchange implement :meth:`to_message` and
    :meth:`to_response`; others override :meth:`run`.
    """

    __slots__ = ()

    def to_message(self, target: Target) -> Message:
        raise NotImplementedError

    def to_response(self, answer: Message, target: Target) -> R:
        raise NotImplementedError

    async def run(self, downlink: Downlink) -> R:
        target, answer = await downlink.exchange(self.to_message)
        return self.to_response(answer, target)


class ObservingRequest(Request[R]):
    """A request that starts an observation (Observe, Observe-Composite)."""

    __slots__ = ()

    @property
    def observed_paths(self) -> tuple[Path, ...]:
        raise NotImplementedError

    @property
    def composite(self) -> bool:
        raise NotImplementedError

    @property
    def requested_format(self) -> int | None:
        raise NotImplementedError

    def observed(
        self, record: ObservationRecord, values: Mapping[Path, Node], fmt: int | None
    ) -> R:
        """The response once the observation is established."""
        raise NotImplementedError

    async def run(self, downlink: Downlink) -> R:
        record, values, fmt = await downlink.observe(self)
        return self.observed(record, values, fmt)


# --------------------------------------------------------------------------- responses


@dataclass(frozen=True, slots=True)
class ReadResponse:
    content: Node
    content_format: int | None = None
    code: Code = Code.CONTENT


@dataclass(frozen=True, slots=True)
class DiscoverResponse:
    links: tuple[Link, ...]
    text: str = ""
    code: Code = Code.CONTENT


@dataclass(frozen=True, slots=True)
class WriteResponse:
    code: Code = Code.CHANGED


@dataclass(frozen=True, slots=True)
class WriteAttributesResponse:
    code: Code = Code.CHANGED


@dataclass(frozen=True, slots=True)
class ExecuteResponse:
    code: Code = Code.CHANGED


@dataclass(frozen=True, slots=True)
class CreateResponse:
    """``location`` is the created instance (from Location-Path), when the client said."""

    location: Path | None = None
    code: Code = Code.CREATED


@dataclass(frozen=True, slots=True)
class DeleteResponse:
    code: Code = Code.DELETED


@dataclass(frozen=True, slots=True)
class ReadCompositeResponse:
    values: Mapping[Path, Node] = field(default_factory=dict)
    content_format: int | None = None
    code: Code = Code.CONTENT


@dataclass(frozen=True, slots=True)
class WriteCompositeResponse:
    code: Code = Code.CHANGED


@dataclass(frozen=True, slots=True)
class ObserveResponse:
    observation: ObservationRecord
    content: Node
    content_format: int | None = None
    code: Code = Code.CONTENT


@dataclass(frozen=True, slots=True)
class ObserveCompositeResponse:
    observation: ObservationRecord
    values: Mapping[Path, Node] = field(default_factory=dict)
    content_format: int | None = None
    code: Code = Code.CONTENT


@dataclass(frozen=True, slots=True)
class CancelObservationResponse:
    """How many observations were cancelled (0: none matched)."""

    cancelled: int


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class ReadRequest(Request[ReadResponse]):
    path: Path
    format: int | None = None

    def to_message(self, target: Target) -> Message:
        accept = target.accept(self.path, self.format)
        return Message(Code.GET, uri_path=target.uri_path(self.path), accept=accept)

    def to_response(self, answer: Message, target: Target) -> ReadResponse:
        node = target.decode(answer, self.path)
        return ReadResponse(node, answer.content_format, Code(answer.code))


@dataclass(frozen=True, slots=True)
class DiscoverRequest(Request[DiscoverResponse]):
    path: Path

    def to_message(self, target: Target) -> Message:
        return Message(
            Code.GET, uri_path=target.uri_path(self.path), accept=int(ContentFormat.LINK_FORMAT)
        )

    def to_response(self, answer: Message, target: Target) -> DiscoverResponse:
        try:
            links = parse_discover(answer.payload)
        except LinkFormatError as exc:
            raise InvalidResponse(f"Discover answer is not link-format: {exc}") from None
        return DiscoverResponse(links, answer.payload.decode("utf-8"), Code(answer.code))


@dataclass(frozen=True, slots=True)
class WriteRequest(Request[WriteResponse]):
    """Write: ``replace=True`` is PUT (replace), ``False`` is POST (partial update)."""

    path: Path
    content: Node
    replace: bool = True
    format: int | None = None

    @classmethod
    def of(
        cls, path: Path, value: Node | Value, *, replace: bool = True, format: int | None = None
    ) -> WriteRequest:
        """A Write of a node, or of a plain value to a resource (instance) path."""
        return cls(path, as_node(path, value), replace, format)

    def to_message(self, target: Target) -> Message:
        fmt = target.format_for(self.path, self.format)
        return Message(
            Code.PUT if self.replace else Code.POST,
            uri_path=target.uri_path(self.path),
            content_format=fmt,
            payload=payloads.encode(fmt, self.content, self.path, target.model),
        )

    def to_response(self, answer: Message, target: Target) -> WriteResponse:
        return WriteResponse(Code(answer.code))


@dataclass(frozen=True, slots=True)
class WriteAttributesRequest(Request[WriteAttributesResponse]):
    path: Path
    attributes: AttributeUpdate

    @classmethod
    def of(
        cls, path: Path, attributes: AttributeUpdate | Mapping[str, int | float | None]
    ) -> WriteAttributesRequest:
        """``attributes`` maps pmin/pmax/gt/lt/st/epmin/epmax to a value, or None to remove it."""
        if isinstance(attributes, AttributeUpdate):
            return cls(path, attributes)
        return cls(path, attribute_update(attributes))

    def to_message(self, target: Target) -> Message:
        return Message(
            Code.PUT, uri_path=target.uri_path(self.path), uri_query=self.attributes.to_query()
        )

    def to_response(self, answer: Message, target: Target) -> WriteAttributesResponse:
        return WriteAttributesResponse(Code(answer.code))


@dataclass(frozen=True, slots=True)
class ExecuteRequest(Request[ExecuteResponse]):
    path: Path
    arguments: str | None = None

    def to_message(self, target: Target) -> Message:
        payload = b"" if self.arguments is None else self.arguments.encode("utf-8")
        return Message(
            Code.POST,
            uri_path=target.uri_path(self.path),
            payload=payload,
            content_format=int(ContentFormat.TEXT) if payload else None,
        )

    def to_response(self, answer: Message, target: Target) -> ExecuteResponse:
        return ExecuteResponse(Code(answer.code))


@dataclass(frozen=True, slots=True)
class CreateRequest(Request[CreateResponse]):
    """Create ``content`` (an instance, or an object holding it) in object ``path``.

    The instance ID travels in the payload; a client may choose another and
    says so in Location-Path.
    """

    path: Path
    content: ObjectInstance | LwM2MObject
    format: int | None = None

    def __post_init__(self) -> None:
        if not self.path.is_object:
            raise ValueError(f"Create targets an object path, not {self.path}")

    def to_message(self, target: Target) -> Message:
        assert self.path.object_id is not None
        # The payload carries the instance (with its ID) inside the object.
        body: Node = (
            LwM2MObject.of(self.path.object_id, [self.content])
            if isinstance(self.content, ObjectInstance)
            else self.content
        )
        fmt = target.format_for(self.path, self.format)
        return Message(
            Code.POST,
            uri_path=target.uri_path(self.path),
            content_format=fmt,
            payload=payloads.encode(fmt, body, self.path, target.model),
        )

    def to_response(self, answer: Message, target: Target) -> CreateResponse:
        location: Path | None = None
        if answer.location_path:
            segments = list(answer.location_path)
            root = [s for s in target.registration.links.root_path.split("/") if s]
            if segments[: len(root)] == root:
                segments = segments[len(root) :]
            with contextlib.suppress(PathError):
                location = Path.from_segments(segments)
        return CreateResponse(location, Code(answer.code))


@dataclass(frozen=True, slots=True)
class DeleteRequest(Request[DeleteResponse]):
    path: Path

    def to_message(self, target: Target) -> Message:
        return Message(Code.DELETE, uri_path=target.uri_path(self.path))

    def to_response(self, answer: Message, target: Target) -> DeleteResponse:
        return DeleteResponse(Code(answer.code))


@dataclass(frozen=True, slots=True)
class ReadCompositeRequest(Request[ReadCompositeResponse]):
    paths: tuple[Path, ...]
    format: int | None = None

    def to_message(self, target: Target) -> Message:
        fmt = target.format_for(None, self.format)
        return Message(
            Code.FETCH,
            uri_path=target.uri_path(Path()),
            content_format=fmt,
            accept=fmt,
            payload=payloads.encode_paths(fmt, self.paths),
        )

    def to_response(self, answer: Message, target: Target) -> ReadCompositeResponse:
        try:
            values = payloads.decode_composite(
                answer.content_format, answer.payload, self.paths, target.model
            )
        except FormatError as exc:
            raise InvalidResponse(f"cannot decode Read-Composite answer: {exc}") from None
        return ReadCompositeResponse(values, answer.content_format, Code(answer.code))


@dataclass(frozen=True, slots=True)
class WriteCompositeRequest(Request[WriteCompositeResponse]):
    values: Mapping[Path, Node | Value]
    format: int | None = None

    def to_message(self, target: Target) -> Message:
        fmt = target.format_for(None, self.format)
        return Message(
            Code.IPATCH,
            uri_path=target.uri_path(Path()),
            content_format=fmt,
            payload=payloads.encode_composite(fmt, self.values, target.model),
        )

    def to_response(self, answer: Message, target: Target) -> WriteCompositeResponse:
        return WriteCompositeResponse(Code(answer.code))


@dataclass(frozen=True, slots=True)
class ObserveRequest(ObservingRequest[ObserveResponse]):
    path: Path
    format: int | None = None

    @property
    def observed_paths(self) -> tuple[Path, ...]:
        return (self.path,)

    @property
    def composite(self) -> bool:
        return False

    @property
    def requested_format(self) -> int | None:
        return self.format

    def to_message(self, target: Target) -> Message:
        accept = target.accept(self.path, self.format)
        return Message(Code.GET, uri_path=target.uri_path(self.path), accept=accept, observe=0)

    def observed(
        self, record: ObservationRecord, values: Mapping[Path, Node], fmt: int | None
    ) -> ObserveResponse:
        return ObserveResponse(record, values[self.path], fmt)


@dataclass(frozen=True, slots=True)
class ObserveCompositeRequest(ObservingRequest[ObserveCompositeResponse]):
    paths: tuple[Path, ...]
    format: int | None = None

    @property
    def observed_paths(self) -> tuple[Path, ...]:
        return self.paths

    @property
    def composite(self) -> bool:
        return True

    @property
    def requested_format(self) -> int | None:
        return self.format

    def to_message(self, target: Target) -> Message:
        fmt = target.format_for(None, self.format)
        return Message(
            Code.FETCH,
            uri_path=target.uri_path(Path()),
            content_format=fmt,
            accept=fmt,
            payload=payloads.encode_paths(fmt, self.paths),
            observe=0,
        )

    def observed(
        self, record: ObservationRecord, values: Mapping[Path, Node], fmt: int | None
    ) -> ObserveCompositeResponse:
        return ObserveCompositeResponse(record, dict(values), fmt)


@dataclass(frozen=True, slots=True)
class CancelObservationRequest(Request[CancelObservationResponse]):
    """Cancel the single-path observations of ``path``.

    ``active``: reactively (GET with Observe=1); otherwise passively (forget
    it and answer the next notification with RST).
    """

    path: Path
    active: bool = True

    def matches(self, record: ObservationRecord) -> bool:
        return not record.composite and record.path == self.path

    async def run(self, downlink: Downlink) -> CancelObservationResponse:
        count = await downlink.cancel_observations(self.matches, active=self.active)
        return CancelObservationResponse(count)


@dataclass(frozen=True, slots=True)
class CancelCompositeObservationRequest(Request[CancelObservationResponse]):
    """Cancel the composite observations of exactly these paths (in any order)."""

    paths: tuple[Path, ...]
    active: bool = True

    def matches(self, record: ObservationRecord) -> bool:
        return record.composite and set(record.paths) == set(self.paths)

    async def run(self, downlink: Downlink) -> CancelObservationResponse:
        count = await downlink.cancel_observations(self.matches, active=self.active)
        return CancelObservationResponse(count)


def observing_request(
    record: ObservationRecord,
) -> ObserveRequest | ObserveCompositeRequest:
    """The request that establishes the observation ``record`` describes."""
    if record.composite:
        return ObserveCompositeRequest(record.paths, record.content_format)
    return ObserveRequest(record.path, record.content_format)


def as_node(path: Path, value: Node | Value) -> Node:
    """A node as given, or a plain value wrapped as the resource (instance) at ``path``."""
    if isinstance(value, LwM2MObject | ObjectInstance | Resource | ResourceInstance):
        return value
    if path.is_resource:
        assert path.resource_id is not None
        return Resource.single(path.resource_id, value)
    if path.is_resource_instance:
        assert path.resource_instance_id is not None
        return ResourceInstance(path.resource_instance_id, value)
    raise ValueError(f"a plain value can only be written to a resource path, not {path}")


def attribute_update(values: Mapping[str, int | float | None]) -> AttributeUpdate:
    """The update for ``{"pmin": 10, "gt": None}``: None removes that attribute."""
    to_set: list[tuple[str, int | float]] = []
    to_remove: list[str] = []
    for name, value in values.items():
        if name not in ALL_ATTRIBUTES:
            raise AttributeError_(f"unknown attribute {name!r}")
        if value is None:
            to_remove.append(name)
        else:
            to_set.append((name, value))
    return AttributeUpdate(tuple(to_set), tuple(to_remove))

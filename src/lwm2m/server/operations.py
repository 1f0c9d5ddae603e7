"""Typed device-management requests and responses (Read, Write, Observe, ...).

Each ``<Op>Request`` knows how to become a CoAP request for one registration
(:meth:`to_message`) and which ``<Op>Response`` answers it. Building and
decoding are pure: the :class:`~lwm2m.server.server.LwM2MServer` does the
I/O, queue mode and observation bookkeeping around them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from lwm2m.coap.codes import Code, ContentFormat
from lwm2m.coap.message import Message
from lwm2m.model.nodes import Node, Value
from lwm2m.model.path import Path
from lwm2m.protocol.attributes import AttributeUpdate
from lwm2m.server.links import Link
from lwm2m.stores.records import ObservationRecord, Registration


def uri_path(registration: Registration, path: Path) -> tuple[str, ...]:
    """Uri-Path segments for ``path`` on that client (below its alternate root path)."""
    root = registration.links.root_path
    prefix = tuple(s for s in root.split("/") if s) if root != "/" else ()
    return prefix + path.segments()


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class ReadRequest:
    path: Path
    format: int | None = None

    def to_message(self, reg: Registration, fmt: int | None) -> Message:
        return Message(Code.GET, uri_path=uri_path(reg, self.path), accept=fmt)


@dataclass(frozen=True, slots=True)
class DiscoverRequest:
    path: Path

    def to_message(self, reg: Registration) -> Message:
        return Message(
            Code.GET, uri_path=uri_path(reg, self.path), accept=int(ContentFormat.LINK_FORMAT)
        )


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """Write: ``replace=True`` is PUT (replace), ``False`` is POST (partial update)."""

    path: Path
    content: Node
    replace: bool = True
    format: int | None = None

    def to_message(self, reg: Registration, fmt: int, payload: bytes) -> Message:
        return Message(
            Code.PUT if self.replace else Code.POST,
            uri_path=uri_path(reg, self.path),
            content_format=fmt,
            payload=payload,
        )


@dataclass(frozen=True, slots=True)
class WriteAttributesRequest:
    path: Path
    attributes: AttributeUpdate

    def to_message(self, reg: Registration) -> Message:
        return Message(
            Code.PUT, uri_path=uri_path(reg, self.path), uri_query=self.attributes.to_query()
        )


@dataclass(frozen=True, slots=True)
class ExecuteRequest:
    path: Path
    arguments: str | None = None

    def to_message(self, reg: Registration) -> Message:
        payload = b"" if self.arguments is None else self.arguments.encode("utf-8")
        return Message(
            Code.POST,
            uri_path=uri_path(reg, self.path),
            payload=payload,
            content_format=int(ContentFormat.TEXT) if payload else None,
        )


@dataclass(frozen=True, slots=True)
class CreateRequest:
    """Create an instance in object ``path`` (the instance ID may be chosen by the client)."""

    path: Path
    content: Node
    format: int | None = None

    def to_message(self, reg: Registration, fmt: int, payload: bytes) -> Message:
        return Message(
            Code.POST, uri_path=uri_path(reg, self.path), content_format=fmt, payload=payload
        )


@dataclass(frozen=True, slots=True)
class DeleteRequest:
    path: Path

    def to_message(self, reg: Registration) -> Message:
        return Message(Code.DELETE, uri_path=uri_path(reg, self.path))


@dataclass(frozen=True, slots=True)
class ReadCompositeRequest:
    paths: tuple[Path, ...]
    format: int | None = None

    def to_message(
        self, reg: Registration, request_format: int, payload: bytes, accept: int
    ) -> Message:
        return Message(
            Code.FETCH,
            uri_path=uri_path(reg, Path()),
            content_format=request_format,
            accept=accept,
            payload=payload,
        )


@dataclass(frozen=True, slots=True)
class WriteCompositeRequest:
    values: Mapping[Path, Node | Value]
    format: int | None = None

    def to_message(self, reg: Registration, fmt: int, payload: bytes) -> Message:
        return Message(
            Code.IPATCH, uri_path=uri_path(reg, Path()), content_format=fmt, payload=payload
        )


@dataclass(frozen=True, slots=True)
class ObserveRequest:
    path: Path
    format: int | None = None

    def to_message(self, reg: Registration, fmt: int | None) -> Message:
        return Message(Code.GET, uri_path=uri_path(reg, self.path), accept=fmt, observe=0)


@dataclass(frozen=True, slots=True)
class ObserveCompositeRequest:
    paths: tuple[Path, ...]
    format: int | None = None

    def to_message(
        self, reg: Registration, request_format: int, payload: bytes, accept: int
    ) -> Message:
        return Message(
            Code.FETCH,
            uri_path=uri_path(reg, Path()),
            content_format=request_format,
            accept=accept,
            payload=payload,
            observe=0,
        )


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

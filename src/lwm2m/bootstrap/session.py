"""One bootstrap session: Delete, Discover, Read, Write Security / Server / Access Control, Finish.

The sequence is the same for both initiations (seed 5.1.2.3 and 7.1): the
client-initiated one starts after the 2.04 answer to ``POST /bs``, the
server-initiated one straight away. Every request waits for its answer
before the next is sent (the Bootstrap Interface is ordered); the first
failure ends the session and is recorded, no Bootstrap-Finish is sent then.

The runner talks to a :class:`Requester` (what
:class:`lwm2m.coap.endpoint.Endpoint` provides), so tests can drive it with
a scripted fake and the server plugs in real UDP or DTLS endpoints.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from lwm2m.bootstrap.events import (
    BootstrapEvent,
    FailureReason,
    Operation,
    SessionAnswer,
    SessionFailed,
    SessionFinished,
    SessionRequest,
)
from lwm2m.bootstrap.history import SessionRecord, SessionStatus, Step
from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.errors import CoapError, RequestTimeout
from lwm2m.coap.message import Message
from lwm2m.coap.peer import Address
from lwm2m.formats import registry as formats
from lwm2m.formats.errors import FormatError
from lwm2m.formats.jsonview import node_to_json
from lwm2m.formats.link_format import parse_links
from lwm2m.formats.media import ContentFormat
from lwm2m.model.path import Path, PathError
from lwm2m.model.registry import ModelRegistry
from lwm2m.protocol.bootstrap_config import BootstrapConfig
from lwm2m.protocol.provisioning import SECURITY_OBJECT, assign_security_instances, plan_writes

logger = logging.getLogger(__name__)

DEFAULT_REQUEST_TIMEOUT_S = 30.0


class Requester(Protocol):
    """The one thing a session needs from the CoAP layer (``Endpoint.request``)."""

    async def request(
        self, message: Message, address: Address, *, timeout: float | None = None
    ) -> Message: ...


@dataclass(frozen=True, slots=True)
class _Op:
    operation: Operation
    code: Code
    path: Path | None  # None: /bs (Bootstrap-Finish)
    payload: bytes = b""
    content_format: int | None = None
    expected: Code = Code.CHANGED
    accept: int | None = None

    @property
    def path_text(self) -> str:
        return "/bs" if self.path is None else str(self.path)


class SessionError(Exception):
    """Ends a session; carries what the record says about the failure."""

    def __init__(self, reason: FailureReason, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.code = code


def delete_operations(config: BootstrapConfig) -> list[_Op]:
    return [_Op(Operation.DELETE, Code.DELETE, p, expected=Code.DELETED) for p in config.delete]


def discover_operation() -> _Op:
    return _Op(
        Operation.DISCOVER,
        Code.GET,
        Path(SECURITY_OBJECT),
        expected=Code.CONTENT,
        accept=int(ContentFormat.LINK_FORMAT),
    )


def read_operation(path: Path, accept: int) -> _Op:
    """Bootstrap-Read (LwM2M 1.1): GET with the session's format as Accept."""
    return _Op(Operation.READ, Code.GET, path, expected=Code.CONTENT, accept=accept)


def read_content(
    response: Message, path: Path, model: ModelRegistry | None
) -> tuple[dict[str, Any] | None, str]:
    """A Bootstrap-Read answer as JSON (or None and why it could not be decoded)."""
    fmt = response.content_format
    if fmt is None:
        return None, "Bootstrap-Read answer without Content-Format"
    try:
        node = formats.decode(response.payload, path, fmt, model)
        return node_to_json(node, path, model), ""
    except (FormatError, ValueError) as exc:
        return None, f"undecodable Bootstrap-Read answer: {exc}"


def write_operations(
    config: BootstrapConfig,
    content_format: int,
    model: ModelRegistry | None,
    security_ids: Mapping[int, int] | None = None,
) -> list[_Op]:
    """Writes then Bootstrap-Finish; encoding errors surface here, before anything is sent."""
    ops: list[_Op] = []
    for write in plan_writes(config, security_ids):
        try:
            payload = formats.encode(write.instance, write.path, content_format, model)
        except FormatError as exc:
            raise SessionError(
                FailureReason.ENCODING, f"cannot encode {write.path}: {exc}"
            ) from None
        ops.append(_Op(Operation.WRITE, Code.PUT, write.path, payload, content_format))
    ops.append(_Op(Operation.FINISH, Code.POST, None))
    return ops


def existing_security_instances(payload: bytes) -> dict[int, int | None]:
    """Security instances in a Bootstrap-Discover answer: ID -> ``ssid`` (None: bootstrap account)."""
    result: dict[int, int | None] = {}
    for link in parse_links(payload):
        try:
            path = Path.parse(link.target)
        except PathError:
            continue
        if path.object_id != SECURITY_OBJECT or path.instance_id is None or path.depth != 2:
            continue
        ssid_text = link.get("ssid")
        ssid = int(ssid_text) if ssid_text is not None and ssid_text.isdigit() else None
        result[path.instance_id] = ssid
    return result


def _request_message(op: _Op) -> Message:
    segments = ("bs",) if op.path is None else op.path.segments()
    return Message(
        code=op.code,
        type=MessageType.CON,
        uri_path=segments,
        payload=op.payload,
        content_format=op.content_format if op.payload else None,
        accept=op.accept,
    )


def _diagnostic(response: Message) -> str:
    if not response.payload or response.content_format not in (None, 0):
        return ""
    return response.payload[:200].decode("utf-8", errors="replace")


def _dotted(code: Code | int) -> str:
    return code.dotted if isinstance(code, Code) else f"{int(code) >> 5}.{int(code) & 31:02d}"


class SessionRunner:
    """Runs one session against one client address; reports through callbacks."""

    def __init__(
        self,
        requester: Requester,
        *,
        publish: Callable[[BootstrapEvent], None],
        update: Callable[[SessionRecord], None],
        clock: Callable[[], float],
        model: ModelRegistry | None = None,
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
    ) -> None:
        self._requester = requester
        self._publish = publish
        self._update = update
        self._clock = clock
        self._model = model
        self._timeout = request_timeout_s

    async def run(
        self, record: SessionRecord, config: BootstrapConfig, address: Address
    ) -> SessionRecord:
        """Send every operation; returns the ended record (FINISHED or FAILED)."""
        assert record.content_format is not None
        fmt = record.content_format
        self._record = record
        index = 0
        try:
            # Encode everything once before sending anything: a config the
            # format cannot carry fails without touching the client.
            write_operations(config, fmt, self._model)
            for op in delete_operations(config):
                record, _ = await self._send(record, index, op, address)
                index += 1
            security_ids: dict[int, int] | None = None
            if config.discover:
                record, response = await self._send(
                    record, index, discover_operation(), address, tolerate=True
                )
                index += 1
                if response is not None:
                    try:
                        existing = existing_security_instances(response.payload)
                    except FormatError as exc:
                        logger.info(
                            "%s: unusable Bootstrap-Discover answer: %s", record.endpoint, exc
                        )
                    else:
                        security_ids = assign_security_instances(config, existing)
            for path in config.read:
                record = await self._read(record, index, path, fmt, address)
                index += 1
            for op in write_operations(config, fmt, self._model, security_ids):
                record, _ = await self._send(record, index, op, address)
                index += 1
        except SessionError as exc:
            return self._fail(self._record, exc.reason, exc.message, exc.code)
        now = self._clock()
        record = replace(record, status=SessionStatus.FINISHED, ended_at=now)
        self._publish(SessionFinished(record.id, record.endpoint, now))
        logger.info("bootstrap of %s at %s finished", record.endpoint, record.address)
        return record

    async def run_read(self, record: SessionRecord, path: Path, address: Address) -> SessionRecord:
        """A session of one Bootstrap-Read (no Finish: the client's state is unchanged).

        FINISHED when the client answered 2.05 with a decodable payload (the
        step's ``content``), else FAILED with the client's code or the reason.
        """
        assert record.content_format is not None
        self._record = record
        try:
            record, response = await self._send(
                record, 0, read_operation(path, record.content_format), address
            )
        except SessionError as exc:
            return self._fail(self._record, exc.reason, exc.message, exc.code)
        assert response is not None
        record = self._attach_content(record, 0, path, response)
        step = record.steps[-1]
        if step.content is None:
            return self._fail(record, FailureReason.ENCODING, step.diagnostic)
        now = self._clock()
        record = replace(record, status=SessionStatus.FINISHED, ended_at=now)
        self._publish(SessionFinished(record.id, record.endpoint, now))
        return record

    async def _read(
        self, record: SessionRecord, index: int, path: Path, fmt: int, address: Address
    ) -> SessionRecord:
        """One Bootstrap-Read of a session's plan: recorded; a refusal does not end the
        session (a LwM2M 1.0 client has no Bootstrap-Read)."""
        record, response = await self._send(
            record, index, read_operation(path, fmt), address, tolerate=True
        )
        if response is None:
            return record
        return self._attach_content(record, index, path, response)

    def _attach_content(
        self, record: SessionRecord, index: int, path: Path, response: Message
    ) -> SessionRecord:
        content, problem = read_content(response, path, self._model)
        step = next(s for s in record.steps if s.index == index)
        if content is None:
            step = replace(step, diagnostic=problem)
        else:
            step = replace(step, content=content)
        record = record.with_step(step)
        self._note(record)
        return record

    def _fail(
        self, record: SessionRecord, reason: FailureReason, message: str, code: str | None = None
    ) -> SessionRecord:
        now = self._clock()
        record = replace(
            record,
            status=SessionStatus.FAILED,
            ended_at=now,
            failure=reason,
            message=message,
            code=code,
        )
        self._publish(SessionFailed(record.id, record.endpoint, now, reason, message, code))
        logger.warning("bootstrap of %s at %s failed: %s", record.endpoint, record.address, message)
        return record

    def _note(self, record: SessionRecord) -> None:
        self._record = record
        self._update(record)

    async def _send(
        self,
        record: SessionRecord,
        index: int,
        op: _Op,
        address: Address,
        *,
        tolerate: bool = False,
    ) -> tuple[SessionRecord, Message | None]:
        """Send one operation; with ``tolerate`` an error answer is recorded, not fatal."""
        sent_at = self._clock()
        step = Step(index, op.operation, op.path_text, sent_at, op.content_format, len(op.payload))
        record = record.with_step(step)
        self._note(record)
        self._publish(
            SessionRequest(
                record.id,
                record.endpoint,
                sent_at,
                index,
                op.operation,
                op.path_text,
                op.content_format,
                len(op.payload),
            )
        )
        try:
            response = await self._requester.request(
                _request_message(op), address, timeout=self._timeout
            )
        except RequestTimeout:
            self._note(record.with_step(replace(step, diagnostic="no answer")))
            raise SessionError(
                FailureReason.TIMEOUT,
                f"{op.operation.value} {op.path_text}: no answer from the client",
            ) from None
        except CoapError as exc:
            self._note(record.with_step(replace(step, diagnostic=str(exc))))
            raise SessionError(
                FailureReason.TRANSPORT, f"{op.operation.value} {op.path_text}: {exc}"
            ) from None
        answered_at = self._clock()
        code = _dotted(response.code)
        diagnostic = _diagnostic(response)
        success = int(response.code) == int(op.expected)
        record = record.with_step(
            replace(step, code=code, answered_at=answered_at, diagnostic=diagnostic)
        )
        self._note(record)
        self._publish(
            SessionAnswer(
                record.id,
                record.endpoint,
                answered_at,
                index,
                op.operation,
                op.path_text,
                code,
                success,
                diagnostic,
            )
        )
        if not success and tolerate:
            return record, None
        if not success:
            detail = f" ({diagnostic})" if diagnostic else ""
            raise SessionError(
                FailureReason.ERROR_RESPONSE,
                f"{op.operation.value} {op.path_text}: client answered {code}{detail}, expected {_dotted(op.expected)}",
                code,
            )
        return record, response

"""Bootstrap session records and their history.

A :class:`SessionRecord` is the whole story of one session: who, how
(client- or server-initiated), every request with its answer, and how it
ended. Running sessions live in memory; each ended session is appended to
the ``bootstrap-history`` log of a :class:`~lwm2m.stores.base.DocumentStore`
(memory, SQLite or Redis) so that history survives a restart when ``--data``
is given.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from lwm2m.bootstrap.events import FailureReason, Operation, SessionMode
from lwm2m.stores.base import DocumentStore

HISTORY_NAMESPACE = "bootstrap-history"
DEFAULT_HISTORY_LIMIT = 1000


class SessionStatus(enum.Enum):
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Step:
    """One Bootstrap operation the server sent and what the client answered."""

    index: int
    operation: Operation
    path: str
    sent_at: float
    content_format: int | None = None
    payload_size: int = 0
    code: str | None = None  # "2.04"; None: no answer (timeout, transport error)
    answered_at: float | None = None
    diagnostic: str = ""
    #: A Bootstrap-Read answer as :func:`lwm2m.formats.jsonview.node_to_json` shows it.
    content: dict[str, Any] | None = None

    @property
    def success(self) -> bool:
        return self.code is not None and self.code.startswith("2.")

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "operation": self.operation.value,
            "path": self.path,
            "sent_at": self.sent_at,
            "content_format": self.content_format,
            "payload_size": self.payload_size,
            "code": self.code,
            "answered_at": self.answered_at,
            "diagnostic": self.diagnostic,
            "content": self.content,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Step:
        return cls(
            index=int(data["index"]),
            operation=Operation(data["operation"]),
            path=str(data["path"]),
            sent_at=float(data["sent_at"]),
            content_format=data.get("content_format"),
            payload_size=int(data.get("payload_size", 0)),
            code=data.get("code"),
            answered_at=data.get("answered_at"),
            diagnostic=str(data.get("diagnostic", "")),
            content=content if isinstance(content := data.get("content"), dict) else None,
        )


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One bootstrap session; also the result :meth:`BootstrapServer.push` returns."""

    id: str
    endpoint: str
    mode: SessionMode
    address: str
    started_at: float
    status: SessionStatus = SessionStatus.RUNNING
    content_format: int | None = None
    config_fingerprint: str | None = None
    steps: tuple[Step, ...] = ()
    ended_at: float | None = None
    failure: FailureReason | None = None
    message: str = ""
    code: str | None = None  # the client's error code when failure is ERROR_RESPONSE

    @property
    def ok(self) -> bool:
        return self.status is SessionStatus.FINISHED

    def with_step(self, step: Step) -> SessionRecord:
        steps = [s for s in self.steps if s.index != step.index]
        steps.append(step)
        return replace(self, steps=tuple(sorted(steps, key=lambda s: s.index)))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "endpoint": self.endpoint,
            "mode": self.mode.value,
            "address": self.address,
            "started_at": self.started_at,
            "status": self.status.value,
            "content_format": self.content_format,
            "config_fingerprint": self.config_fingerprint,
            "steps": [s.to_json() for s in self.steps],
            "ended_at": self.ended_at,
            "failure": None if self.failure is None else self.failure.value,
            "message": self.message,
            "code": self.code,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionRecord:
        failure = data.get("failure")
        return cls(
            id=str(data["id"]),
            endpoint=str(data["endpoint"]),
            mode=SessionMode(data["mode"]),
            address=str(data["address"]),
            started_at=float(data["started_at"]),
            status=SessionStatus(data["status"]),
            content_format=data.get("content_format"),
            config_fingerprint=data.get("config_fingerprint"),
            steps=tuple(Step.from_json(s) for s in data.get("steps", [])),
            ended_at=data.get("ended_at"),
            failure=None if failure is None else FailureReason(failure),
            message=str(data.get("message", "")),
            code=data.get("code"),
        )


@dataclass
class SessionHistory:
    """Running sessions and the most recent ended ones (newest last)."""

    documents: DocumentStore | None = None
    limit: int = DEFAULT_HISTORY_LIMIT
    _running: dict[str, SessionRecord] = field(default_factory=dict)
    _ended: deque[SessionRecord] = field(default_factory=deque)

    def __post_init__(self) -> None:
        self._ended = deque(self._ended, maxlen=self.limit)

    async def load(self) -> None:
        """Read the persisted history (call once at start)."""
        if self.documents is None:
            return
        for doc in await self.documents.tail(HISTORY_NAMESPACE, self.limit):
            try:
                self._ended.append(SessionRecord.from_json(doc))
            except (KeyError, ValueError, TypeError):
                continue  # a record written by an incompatible version: skip it

    def started(self, record: SessionRecord) -> None:
        self._running[record.id] = record

    def updated(self, record: SessionRecord) -> None:
        if record.id in self._running:
            self._running[record.id] = record

    async def ended(self, record: SessionRecord) -> None:
        self._running.pop(record.id, None)
        self._ended.append(record)
        if self.documents is not None:
            await self.documents.append(HISTORY_NAMESPACE, record.to_json(), keep=self.limit)

    def get(self, session_id: str) -> SessionRecord | None:
        if session_id in self._running:
            return self._running[session_id]
        for record in reversed(self._ended):
            if record.id == session_id:
                return record
        return None

    def running(self, endpoint: str | None = None) -> list[SessionRecord]:
        return [r for r in self._running.values() if endpoint is None or r.endpoint == endpoint]

    def list(
        self,
        endpoint: str | None = None,
        *,
        status: SessionStatus | None = None,
        limit: int = 100,
    ) -> Sequence[SessionRecord]:
        """Sessions, newest first (running ones before ended ones)."""
        result: list[SessionRecord] = []
        pool = [*reversed(list(self._running.values())), *reversed(self._ended)]
        for record in pool:
            if endpoint is not None and record.endpoint != endpoint:
                continue
            if status is not None and record.status is not status:
                continue
            result.append(record)
            if len(result) >= limit:
                break
        return result

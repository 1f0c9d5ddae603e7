"""Bootstrap session records and their history.

A :class:`SessionRecord` is the whole story of one session: who, how
(client- or server-initiated), every request with its answer, and how it
ended. Running sessions live in memory; each ended session is appended to
the ``bootstrap-history`` log of a :class:`~lwm2m.stores.base.DocumentStore`
(memory, SQLite or Redis) so that history survives a restart when ``--data``
is given.

Several nodes may share that store (Redis). A running session is also kept in
the ``bootstrap-running`` namespace, one document per endpoint, rewritten after
every step with the node running it and when it last moved
(``{"node", "heartbeat", "record"}``), so that every node lists it, refuses a
second session of that endpoint (checked through the store, not atomically:
two Request Bootstraps of one endpoint reaching two nodes in the same
instant may both start), and sees it end. The session itself cannot move: its
requests go out of the node's socket (and DTLS session) the client talks to.
A running document not moved for ``stale_after_s`` belongs to a node that
stopped mid-session: the first reader ends it as failed (``cancelled``) in the
history. :meth:`SessionHistory.shared_list` and :meth:`SessionHistory.shared_get`
read the store; the synchronous reads give this node's own view.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from lwm2m.bootstrap.events import FailureReason, Operation, SessionMode
from lwm2m.stores.base import DocumentStore, StoreError

logger = logging.getLogger(__name__)

HISTORY_NAMESPACE = "bootstrap-history"
RUNNING_NAMESPACE = "bootstrap-running"
#: A running session whose document did not move for this long is taken as abandoned.
DEFAULT_STALE_AFTER_S = 300.0
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
    #: Names this process among the nodes sharing the store.
    node: str = "local"
    stale_after_s: float = DEFAULT_STALE_AFTER_S
    clock: Callable[[], float] = time.time
    _running: dict[str, SessionRecord] = field(default_factory=dict)
    _ended: deque[SessionRecord] = field(default_factory=deque)
    _dirty: dict[str, SessionRecord] = field(default_factory=dict)
    _writers: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._ended = deque(self._ended, maxlen=self.limit)

    async def load(self) -> None:
        """Read the persisted history (call once at start).

        Sessions this node left running when it stopped are ended as failed.
        """
        if self.documents is None:
            return
        for doc in await self.documents.tail(HISTORY_NAMESPACE, self.limit):
            try:
                self._ended.append(SessionRecord.from_json(doc))
            except (KeyError, ValueError, TypeError):
                continue  # a record written by an incompatible version: skip it
        for endpoint, doc in await self.documents.items(RUNNING_NAMESPACE):
            if doc.get("node") == self.node:
                await self._abandon(endpoint, doc, "its bootstrap server restarted")

    def started(self, record: SessionRecord) -> None:
        self._running[record.id] = record
        self._write_running(record)

    def updated(self, record: SessionRecord) -> None:
        if record.id in self._running:
            self._running[record.id] = record
            self._write_running(record)

    async def ended(self, record: SessionRecord) -> None:
        was_running = self._running.pop(record.id, None) is not None
        self._ended.append(record)
        if self.documents is None:
            return
        self._dirty.pop(record.id, None)
        writer = self._writers.get(record.id)
        if writer is not None:
            await asyncio.gather(writer, return_exceptions=True)
        if was_running:
            await self._drop_running(record)
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
        pool = [*reversed(list(self._running.values())), *reversed(self._ended)]
        return _select(pool, endpoint, status, limit)

    async def running_elsewhere(self, endpoint: str) -> SessionRecord | None:
        """A session of ``endpoint`` another node runs now (None without a shared store)."""
        if self.documents is None:
            return None
        doc = await self.documents.get(RUNNING_NAMESPACE, endpoint)
        if doc is None or doc.get("node") == self.node:
            return None
        return await self._live(endpoint, doc)

    async def shared_list(
        self,
        endpoint: str | None = None,
        *,
        status: SessionStatus | None = None,
        limit: int = 100,
    ) -> Sequence[SessionRecord]:
        """Like :meth:`list`, over every node sharing the store."""
        if self.documents is None:
            return self.list(endpoint, status=status, limit=limit)
        running: dict[str, SessionRecord] = {}
        for key, doc in await self.documents.items(RUNNING_NAMESPACE):
            record = await self._live(key, doc)
            if record is not None:
                running[record.id] = record
        running.update(self._running)  # this node's own are the newest
        ended: list[SessionRecord] = []
        for doc in await self.documents.tail(HISTORY_NAMESPACE, self.limit):
            try:
                record = SessionRecord.from_json(doc)
            except (KeyError, ValueError, TypeError):
                continue
            if record.id not in running:
                ended.append(record)
        newest_first = sorted(running.values(), key=lambda r: r.started_at, reverse=True)
        return _select([*newest_first, *reversed(ended)], endpoint, status, limit)

    async def shared_get(self, session_id: str) -> SessionRecord | None:
        """Like :meth:`get`, over every node sharing the store."""
        for record in await self.shared_list(limit=self.limit + 1_000_000):
            if record.id == session_id:
                return record
        return None

    async def flush(self) -> None:
        """Wait until the running sessions' documents are written (tests, shutdown)."""
        while self._writers:
            await asyncio.gather(*list(self._writers.values()), return_exceptions=True)

    # Private

    def _write_running(self, record: SessionRecord) -> None:
        """Rewrite the running document in the background, newest record last."""
        if self.documents is None:
            return
        self._dirty[record.id] = record
        if record.id not in self._writers:
            task = asyncio.get_running_loop().create_task(self._writer(record.id))
            self._writers[record.id] = task

    async def _writer(self, session_id: str) -> None:
        assert self.documents is not None
        try:
            while (record := self._dirty.pop(session_id, None)) is not None:
                doc = {"node": self.node, "heartbeat": self.clock(), "record": record.to_json()}
                try:
                    await self.documents.put(RUNNING_NAMESPACE, record.endpoint, doc)
                except StoreError as exc:  # the session goes on without its shared view
                    logger.warning("running bootstrap session %s not stored: %s", session_id, exc)
        finally:
            self._writers.pop(session_id, None)

    async def _drop_running(self, record: SessionRecord) -> None:
        assert self.documents is not None
        doc = await self.documents.get(RUNNING_NAMESPACE, record.endpoint)
        if doc is None:
            return
        stored = doc.get("record")
        if isinstance(stored, dict) and stored.get("id") == record.id:
            await self.documents.delete(RUNNING_NAMESPACE, record.endpoint)

    async def _live(self, endpoint: str, doc: dict[str, Any]) -> SessionRecord | None:
        """The running record of ``doc``; None (and ended in the history) when abandoned."""
        heartbeat = doc.get("heartbeat")
        if not isinstance(heartbeat, int | float) or (
            self.clock() - heartbeat > self.stale_after_s and doc.get("node") != self.node
        ):
            await self._abandon(endpoint, doc, "its node stopped during the session")
            return None
        try:
            return SessionRecord.from_json(doc["record"])
        except (KeyError, ValueError, TypeError):
            return None

    async def _abandon(self, endpoint: str, doc: dict[str, Any], why: str) -> None:
        assert self.documents is not None
        if await self.documents.delete(RUNNING_NAMESPACE, endpoint) is None:
            return  # another reader ended it
        try:
            record = SessionRecord.from_json(doc["record"])
        except (KeyError, ValueError, TypeError):
            return
        now = self.clock()
        ended = replace(
            record,
            status=SessionStatus.FAILED,
            ended_at=now,
            failure=FailureReason.CANCELLED,
            message=f"abandoned: {why}",
        )
        self._ended.append(ended)
        await self.documents.append(HISTORY_NAMESPACE, ended.to_json(), keep=self.limit)


def _select(
    pool: Sequence[SessionRecord],
    endpoint: str | None,
    status: SessionStatus | None,
    limit: int,
) -> list[SessionRecord]:
    result: list[SessionRecord] = []
    for record in pool:
        if endpoint is not None and record.endpoint != endpoint:
            continue
        if status is not None and record.status is not status:
            continue
        result.append(record)
        if len(result) >= limit:
            break
    return result

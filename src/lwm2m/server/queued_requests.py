"""Requests for sleeping queue-mode clients, kept in the document store so any node sends them.

Rule 1: a queued request is data, not a coroutine. The request is built
against the registration when it is queued and kept, as its encoded CoAP
message with its id, its deadline and the node that queued it, in the
``queued:<registration id>`` namespace of the
:class:`~lwm2m.stores.base.DocumentStore` (keys sort in queueing order). A
node that sees the client wake up (its own activity listener) sends what is
queued, whichever node queued it: behind a load balancer only that node can
reach the device.

Rule 2: a request is sent at most once. The sender first deletes the
document; only the node whose delete returned it sends it (a Redis
transaction HGET+HDEL: of two nodes that both see the wake, one wins). A
caller giving up deletes its own document the same way: if that finds
nothing, the request is already on its way and the caller's timeout stands.

Rule 3: what cannot cross nodes stays where it is. The caller awaiting the
answer (a REST request, a ``server.read``) is a future on the node that
queued it; the answer reaches it directly when that node sent the request,
else through :class:`QueueRelay` (with a Redis store, a pub/sub channel).
When the caller's node is gone, or the caller gave up, the answer is logged
(INFO) and dropped, as a timed-out queued request is today. Requests past
their deadline are dropped by the node that pops them, unsent.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from lwm2m.coap.codec import decode, encode
from lwm2m.coap.errors import MessageFormatError
from lwm2m.coap.message import Message
from lwm2m.stores.base import DocumentStore, JsonDoc, StoreError

logger = logging.getLogger(__name__)

NAMESPACE_PREFIX = "queued:"


def namespace(registration_id: str) -> str:
    """The document namespace holding one registration's queued requests."""
    return NAMESPACE_PREFIX + registration_id


@dataclass(frozen=True, slots=True)
class QueuedRequest:
    """One request waiting in the store for its client to wake up."""

    id: str
    registration_id: str
    endpoint: str
    node: str
    queued_at: float
    #: Wall clock second after which the request is dropped unsent (None: never).
    deadline: float | None
    message: Message

    @property
    def key(self) -> str:
        """Sorts in queueing order within the registration's namespace."""
        return f"{int(self.queued_at * 1_000_000):020d}-{self.id}"

    def to_json(self) -> JsonDoc:
        return {
            "id": self.id,
            "registration_id": self.registration_id,
            "endpoint": self.endpoint,
            "node": self.node,
            "queued_at": self.queued_at,
            "deadline": self.deadline,
            "message": _pack(self.message),
        }

    @classmethod
    def from_json(cls, doc: JsonDoc) -> QueuedRequest:
        """Raises ValueError for a document this version cannot read."""
        try:
            deadline = doc.get("deadline")
            return cls(
                id=str(doc["id"]),
                registration_id=str(doc["registration_id"]),
                endpoint=str(doc["endpoint"]),
                node=str(doc["node"]),
                queued_at=float(doc["queued_at"]),
                deadline=None if deadline is None else float(deadline),
                message=_unpack(doc["message"]),
            )
        except (KeyError, TypeError, ValueError, MessageFormatError) as exc:
            raise ValueError(f"unreadable queued request: {exc}") from None


@dataclass(frozen=True, slots=True)
class QueuedResult:
    """What became of a queued request: the client's answer, or why there is none."""

    response: Message | None = None
    #: "timeout", "reset", "error: <text>" when no response came.
    error: str | None = None

    def to_json(self) -> JsonDoc:
        return {
            "response": None if self.response is None else _pack(self.response),
            "error": self.error,
        }

    @classmethod
    def from_json(cls, doc: JsonDoc) -> QueuedResult:
        raw = doc.get("response")
        error = doc.get("error")
        try:
            response = None if raw is None else _unpack(raw)
        except (TypeError, ValueError, MessageFormatError) as exc:
            raise ValueError(f"unreadable queued result: {exc}") from None
        if response is None and not isinstance(error, str):
            raise ValueError("queued result without response nor error")
        return cls(response, error if isinstance(error, str) else None)


class QueueRelay(Protocol):
    """Carries news between nodes: "something was queued", "here is your answer"."""

    async def queued(self, registration_id: str) -> None:
        """Tell the other nodes that ``registration_id`` has a new queued request."""
        ...

    async def answered(self, node: str, request_id: str, result: QueuedResult) -> None:
        """Hand ``result`` to the caller waiting on ``node``."""
        ...


class LocalRelay:
    """One node alone (memory or SQLite store): there is nobody to tell."""

    async def queued(self, registration_id: str) -> None:
        return None

    async def answered(self, node: str, request_id: str, result: QueuedResult) -> None:
        logger.info("answer to queued request %s: its caller is gone", request_id)


Sender = Callable[[Message], Awaitable[QueuedResult]]


class QueuedRequests:
    """The store-backed queue of every queue-mode client, seen from one node."""

    def __init__(
        self,
        documents: DocumentStore,
        *,
        node_id: str,
        clock: Callable[[], float],
        relay: QueueRelay | None = None,
    ) -> None:
        self.documents = documents
        self.node_id = node_id
        self.clock = clock
        self.relay: QueueRelay = relay if relay is not None else LocalRelay()
        self._waiters: dict[str, asyncio.Future[QueuedResult]] = {}
        self._draining: set[str] = set()
        self._again: set[str] = set()

    async def count(self, registration_id: str) -> int:
        """Requests queued for the registration, on every node."""
        return len(await self.documents.items(namespace(registration_id)))

    async def enqueue(
        self,
        registration_id: str,
        endpoint: str,
        message: Message,
        timeout: float | None,
    ) -> tuple[QueuedRequest, asyncio.Future[QueuedResult]]:
        """Store the request; the future resolves with its result, on this node."""
        now = self.clock()
        request = QueuedRequest(
            id=secrets.token_hex(8),
            registration_id=registration_id,
            endpoint=endpoint,
            node=self.node_id,
            queued_at=now,
            deadline=None if timeout is None else now + timeout,
            message=message.with_(mid=0, token=b""),
        )
        future: asyncio.Future[QueuedResult] = asyncio.get_running_loop().create_future()
        self._waiters[request.id] = future
        try:
            await self.documents.put(namespace(registration_id), request.key, request.to_json())
        except BaseException:
            self._waiters.pop(request.id, None)
            raise
        return request, future

    async def withdraw(self, request: QueuedRequest) -> bool:
        """The caller gives up: True when the request was removed unsent."""
        self._waiters.pop(request.id, None)
        try:
            return (
                await self.documents.delete(namespace(request.registration_id), request.key)
                is not None
            )
        except StoreError as exc:
            logger.warning("could not withdraw queued request %s: %s", request.id, exc)
            return False

    async def drain(
        self, registration_id: str, send: Sender, awake: Callable[[], bool] = lambda: True
    ) -> int:
        """Send, in order, every request queued for an awake client; returns how many went.

        Stops when ``awake()`` turns False (the client fell asleep meanwhile):
        the rest waits for its next wake-up.

        A drain asked for while one runs for the registration on this node makes
        that one read the queue again; across nodes the atomic delete keeps each
        request to one sender.
        """
        if registration_id in self._draining:
            self._again.add(registration_id)  # the running drain reads the queue once more
            return 0
        self._draining.add(registration_id)
        sent = 0
        ns = namespace(registration_id)
        try:
            while True:
                self._again.discard(registration_id)
                items = await self.documents.items(ns)
                if not awake() or (not items and registration_id not in self._again):
                    return sent
                for key, _ in items:
                    if not awake():
                        return sent
                    doc = await self.documents.delete(ns, key)
                    if doc is None:
                        continue  # another node popped it
                    if await self._send_one(doc, send):
                        sent += 1
        finally:
            self._draining.discard(registration_id)
            self._again.discard(registration_id)

    def may_hold(self, registration_id: str) -> bool:
        """False when the store knows, without I/O, that nothing is queued for it."""
        return self.documents.may_hold(namespace(registration_id))

    async def drop_registration(self, registration_id: str) -> None:
        """The registration is gone: its queued requests will never go."""
        for _, doc in await self.documents.take_all(namespace(registration_id)):
            await self._deliver(doc, QueuedResult(error="gone"))

    def answer(self, request_id: str, result: QueuedResult) -> bool:
        """A result for a caller on this node (from the relay); False when nobody waits."""
        future = self._waiters.pop(request_id, None)
        if future is None or future.done():
            return False
        future.set_result(result)
        return True

    def close(self) -> None:
        """This node stops: its callers get "gone"; their requests stay queued for another node."""
        for future in self._waiters.values():
            if not future.done():
                future.set_result(QueuedResult(error="gone"))
        self._waiters.clear()

    # Private

    async def _send_one(self, doc: JsonDoc, send: Sender) -> bool:
        try:
            request = QueuedRequest.from_json(doc)
        except ValueError as exc:
            logger.error("dropping a queued request: %s", exc)
            return False
        if request.deadline is not None and self.clock() > request.deadline:
            logger.info(
                "queued request %s for %s dropped unsent: its deadline passed",
                request.id,
                request.endpoint,
            )
            await self._deliver(doc, QueuedResult(error="timeout"))
            return False
        result = await send(request.message)
        await self._deliver(doc, result)
        return True

    async def _deliver(self, doc: JsonDoc, result: QueuedResult) -> None:
        request_id = str(doc.get("id"))
        if self.answer(request_id, result):
            return
        node = doc.get("node")
        if isinstance(node, str) and node != self.node_id:
            try:
                await self.relay.answered(node, request_id, result)
            except StoreError as exc:
                logger.warning("answer to queued request %s not relayed: %s", request_id, exc)
            return
        logger.info(
            "queued request %s for %s done (%s): its caller is gone",
            request_id,
            doc.get("endpoint"),
            result.error or f"{result.response.code if result.response else ''}",
        )


def _pack(message: Message) -> str:
    return base64.b64encode(encode(message)).decode("ascii")


def _unpack(raw: Any) -> Message:
    if not isinstance(raw, str):
        raise ValueError("message is not a string")
    return decode(base64.b64decode(raw.encode("ascii"), validate=True))

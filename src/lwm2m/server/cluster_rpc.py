"""Requests from one server node to another over Redis pub/sub (issue 12).

Only the node that owns a device (``reg:owner``) can reach it through a load
balancer or over DTLS, so a node asked to talk to a device it does not own
hands the request to the owner. This module is the transport: it carries an
opaque HTTP-shaped request and its answer, and knows nothing of the web layer
that fills and serves them (:mod:`lwm2m.web.forwarding`).

Rules:

1. Each node subscribes, on one pub/sub connection, to ``<prefix>rpc:<node id>``
   (requests to it) and ``<prefix>rpc:<node id>:reply`` (answers to its own
   calls). Answers are matched to calls by a random token.
2. A call PUBLISHes its envelope; Redis returns how many subscribers got it, so
   zero means nobody listens on that node: :class:`NoListener` at once, no wait.
3. Every envelope carries a deadline (Unix seconds; nodes' clocks are assumed
   NTP-synchronised, as the heartbeats are). The caller gives up at its timeout
   (:class:`RpcTimeout`); the serving node drops a request whose deadline has
   passed and cancels its handler when the deadline passes meanwhile: nobody
   waits for that answer any more.
4. Bounded: a node keeps at most ``max_in_flight`` calls of its own pending
   (:class:`RpcBusy` beyond) and serves at most ``max_in_flight`` requests at
   once (beyond, it answers "busy" at once instead of queueing).
5. Envelopes come from the network: a malformed one is logged (rate-limited)
   and dropped; nothing another node publishes stops the listener.
6. :meth:`ClusterRpc.stop` unsubscribes, fails every pending call with
   :class:`RpcClosed` and cancels the requests being served.
7. A lost subscription (Redis restarted) fails the pending calls at once (their
   answers may be lost) and is subscribed again with backoff
   (:mod:`lwm2m.stores.redis_subscription`); the node serves again once back.

Envelopes are JSON. A request: ``{"v": 1, "token", "reply", "from",
"deadline", "method", "path", "query", "headers": [[name, value], ...],
"body": base64}``. An answer: ``{"v": 1, "token", "status", "headers",
"body"}``, or ``{"v": 1, "token", "error": "busy" | "failed", "message"}``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from lwm2m.protocol.log_limit import LogLimiter
from lwm2m.stores.base import StoreError
from lwm2m.stores.redis import RedisConnection
from lwm2m.stores.redis_subscription import Subscription

logger = logging.getLogger(__name__)

#: Calls pending and requests served at once, per node.
DEFAULT_MAX_IN_FLIGHT = 256
#: The largest envelope accepted (a device operation's body is at most 1 MiB, base64 grows it).
MAX_ENVELOPE = 2 << 20
VERSION = 1

Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class RpcRequest:
    """An HTTP-shaped request from node ``origin``, to be answered before ``deadline``."""

    method: str
    path: str
    query: str = ""
    headers: Headers = ()
    body: bytes = b""
    origin: str = ""
    deadline: float = 0.0


@dataclass(frozen=True, slots=True)
class RpcResponse:
    """What the serving node answered."""

    status: int
    headers: Headers = ()
    body: bytes = b""


Handler = Callable[[RpcRequest], Awaitable[RpcResponse]]


class RpcError(Exception):
    """A forwarded call that got no answer from the other node."""


class NoListener(RpcError):
    """Nobody is subscribed to the node's channel: the node is not running."""


class RpcTimeout(RpcError):
    """No answer before the caller's timeout."""


class RpcBusy(RpcError):
    """Too many requests in flight, on this node or on the serving one."""


class RpcFailed(RpcError):
    """The serving node could not run the request (its handler raised)."""


class RpcClosed(RpcError):
    """This node's transport stopped (or never started)."""


class EnvelopeError(ValueError):
    """An envelope that is not what rule 5 accepts."""


class ClusterRpc:
    """One node's end of the transport: :meth:`call` other nodes, serve them with ``handler``."""

    def __init__(
        self,
        redis: RedisConnection,
        node_id: str,
        *,
        handler: Handler | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        clock: Callable[[], float] = time.time,
        limiter: LogLimiter | None = None,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.node_id = node_id
        #: Serves requests from other nodes; None answers them "failed".
        self.handler = handler
        self.max_in_flight = max_in_flight
        self._redis = redis
        self._clock = clock
        self._limiter = limiter if limiter is not None else LogLimiter()
        self._pending: dict[str, asyncio.Future[RpcResponse]] = {}
        self._serving: set[asyncio.Task[None]] = set()
        self._subscription: Subscription | None = None
        self._closing = False
        #: Requests from other nodes that this node ran to an answer (what tests count).
        self.served = 0
        #: Envelopes dropped as malformed.
        self.malformed = 0
        #: Requests dropped because their deadline had passed.
        self.expired = 0

    def channel(self, node_id: str) -> str:
        """Where requests to ``node_id`` are published."""
        return self._redis.key(f"rpc:{node_id}")

    @property
    def reply_channel(self) -> str:
        return self.channel(self.node_id) + ":reply"

    async def start(self) -> None:
        """Subscribe; requests and answers are accepted once this returns."""
        self._subscription = Subscription(
            self._redis,
            [self.channel(self.node_id), self.reply_channel],
            self._on_message,
            name="cluster RPC",
            on_lost=self._fail_pending,
        )
        await self._subscription.start()

    async def stop(self) -> None:
        """Rule 6: unsubscribe, fail pending calls, cancel what is being served."""
        self._closing = True
        for future in self._pending.values():
            if not future.done():
                future.set_exception(RpcClosed(f"node {self.node_id} is stopping"))
        self._pending.clear()
        if self._subscription is not None:
            await self._subscription.close()
        tasks = list(self._serving)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def call(self, node_id: str, request: RpcRequest, timeout: float) -> RpcResponse:
        """Have ``node_id`` run ``request``; its answer, or an :class:`RpcError`.

        ``request.origin`` and ``request.deadline`` are filled here. Redis
        failing is a :class:`~lwm2m.stores.base.StoreError`.
        """
        if self._closing or self._subscription is None:
            raise RpcClosed(f"node {self.node_id} does not forward (stopped or not started)")
        if len(self._pending) >= self.max_in_flight:
            raise RpcBusy(f"{len(self._pending)} forwarded requests already wait on this node")
        token = secrets.token_hex(16)
        future: asyncio.Future[RpcResponse] = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        try:
            envelope = _request_envelope(
                request,
                token=token,
                reply=self.reply_channel,
                origin=self.node_id,
                deadline=self._clock() + timeout,
            )
            (receivers,) = await self._redis.run(("PUBLISH", self.channel(node_id), envelope))
            if not receivers:
                raise NoListener(f"nobody listens on node {node_id}'s channel")
            try:
                return await asyncio.wait_for(future, timeout)
            except TimeoutError:
                raise RpcTimeout(f"node {node_id} did not answer within {timeout:g} s") from None
        finally:
            self._pending.pop(token, None)

    # Private

    def _on_message(self, channel: str, data: bytes) -> None:
        try:
            doc = _decode(data)
            if channel == self.channel(self.node_id):
                self._on_request(doc)
            else:
                self._on_reply(doc)
        except (ValueError, TypeError, OverflowError) as exc:
            # EnvelopeError, and whatever else odd input may raise: never fatal.
            self._drop(channel, str(exc))

    def _fail_pending(self) -> None:
        """The subscription dropped: answers published meanwhile are lost, so the
        calls waiting for them fail now rather than at their timeout."""
        for future in self._pending.values():
            if not future.done():
                future.set_exception(RpcClosed("the cluster RPC subscription was lost"))

    def _on_request(self, doc: dict[str, Any]) -> None:
        request, token, reply = _parse_request(doc, self._redis.key("rpc:"))
        if request.deadline <= self._clock():
            self.expired += 1
            logger.debug("forwarded request %s from %s dropped: deadline passed", token, reply)
            return
        if len(self._serving) >= self.max_in_flight:
            self._spawn(
                self._answer(reply, _error_envelope(token, "busy", f"node {self.node_id} is busy"))
            )
            return
        self._spawn(self._serve(request, token, reply))

    def _on_reply(self, doc: dict[str, Any]) -> None:
        token, outcome = _parse_reply(doc)
        future = self._pending.get(token)
        if future is None or future.done():
            logger.debug("answer %s arrived after its call ended", token)
            return
        if isinstance(outcome, RpcError):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    def _spawn(self, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    async def _serve(self, request: RpcRequest, token: str, reply: str) -> None:
        remaining = request.deadline - self._clock()
        try:
            if self.handler is None:
                raise RuntimeError("this node serves no forwarded requests")
            response = await asyncio.wait_for(self.handler(request), remaining)
        except TimeoutError:
            self.expired += 1
            logger.info(
                "forwarded %s %s from %s passed its deadline; not answered",
                request.method,
                request.path,
                request.origin,
            )
            return
        except Exception as exc:
            logger.exception("forwarded %s %s failed", request.method, request.path)
            await self._answer(reply, _error_envelope(token, "failed", str(exc)))
            return
        self.served += 1
        await self._answer(reply, _reply_envelope(token, response))

    async def _answer(self, channel: str, envelope: str) -> None:
        try:
            await self._redis.run(("PUBLISH", channel, envelope))
        except StoreError as exc:
            logger.warning("answer to a forwarded request not sent: %s", exc)

    def _drop(self, channel: str, reason: str) -> None:
        self.malformed += 1
        now = time.monotonic()
        summary = self._limiter.take_summary(now)
        if summary:
            logger.warning(
                "%d more malformed cluster RPC envelopes not logged", sum(summary.values())
            )
        if self._limiter.allow("malformed", now):
            logger.warning("malformed cluster RPC envelope on %s dropped: %s", channel, reason)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _decode(data: Any) -> dict[str, Any]:
    if not isinstance(data, bytes | str):
        raise EnvelopeError("not a string")
    if len(data) > MAX_ENVELOPE:
        raise EnvelopeError(f"{len(data)} bytes, more than {MAX_ENVELOPE}")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EnvelopeError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise EnvelopeError("not a JSON object")
    if doc.get("v") != VERSION:
        raise EnvelopeError(f"version {doc.get('v')!r}, expected {VERSION}")
    return doc


def _field(doc: dict[str, Any], name: str, kind: type[Any] | tuple[type[Any], ...]) -> Any:
    value = doc.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise EnvelopeError(f"field {name!r} missing or of the wrong type")
    return value


def _headers(doc: dict[str, Any]) -> Headers:
    raw = _field(doc, "headers", list)
    headers: list[tuple[str, str]] = []
    for item in raw:
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not all(isinstance(part, str) for part in item)
        ):
            raise EnvelopeError("headers must be [name, value] string pairs")
        headers.append((item[0], item[1]))
    return tuple(headers)


def _body(doc: dict[str, Any]) -> bytes:
    try:
        return base64.b64decode(_field(doc, "body", str), validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError("body is not base64") from None


def _parse_request(doc: dict[str, Any], channel_of_origin: str) -> tuple[RpcRequest, str, str]:
    """``channel_of_origin`` + the caller's id + ``:reply`` is the only channel answered:
    an envelope cannot make this node publish anywhere else."""
    token = _field(doc, "token", str)
    reply = _field(doc, "reply", str)
    path = _field(doc, "path", str)
    if not path.startswith("/"):
        raise EnvelopeError("path must start with /")
    origin = _field(doc, "from", str)
    if reply != f"{channel_of_origin}{origin}:reply":
        raise EnvelopeError("reply is not the calling node's reply channel")
    deadline = float(_field(doc, "deadline", (int, float)))
    if not math.isfinite(deadline):
        raise EnvelopeError("deadline is not a number")
    request = RpcRequest(
        method=_field(doc, "method", str),
        path=path,
        query=_field(doc, "query", str),
        headers=_headers(doc),
        body=_body(doc),
        origin=origin,
        deadline=deadline,
    )
    return request, token, reply


def _parse_reply(doc: dict[str, Any]) -> tuple[str, RpcResponse | RpcError]:
    token = _field(doc, "token", str)
    if "error" in doc:
        kind = _field(doc, "error", str)
        message = str(doc.get("message", ""))
        return token, (RpcBusy(message) if kind == "busy" else RpcFailed(message))
    status = _field(doc, "status", int)
    if not 100 <= status <= 599:
        raise EnvelopeError(f"status {status} is not an HTTP status")
    return token, RpcResponse(status, _headers(doc), _body(doc))


def _request_envelope(
    request: RpcRequest, *, token: str, reply: str, origin: str, deadline: float
) -> str:
    return json.dumps(
        {
            "v": VERSION,
            "token": token,
            "reply": reply,
            "from": origin,
            "deadline": deadline,
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "headers": [list(h) for h in request.headers],
            "body": base64.b64encode(request.body).decode("ascii"),
        }
    )


def _reply_envelope(token: str, response: RpcResponse) -> str:
    return json.dumps(
        {
            "v": VERSION,
            "token": token,
            "status": response.status,
            "headers": [list(h) for h in response.headers],
            "body": base64.b64encode(response.body).decode("ascii"),
        }
    )


def _error_envelope(token: str, kind: str, message: str) -> str:
    return json.dumps({"v": VERSION, "token": token, "error": kind, "message": message})

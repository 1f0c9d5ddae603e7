"""One CoAP-over-TCP connection (RFC 8323) as a sans-I/O state machine.

Rules:

1. Everything that changes the connection's state lives here; the asyncio
   layer (:mod:`lwm2m.coap.tcp_transport`) only moves bytes, reads the clock
   and runs handlers.  ``now`` is passed in, randomness comes from the
   ``random.Random`` given at construction.
2. Our Capabilities and Settings Message (CSM) is the first frame we send
   (RFC 8323 5.3), queued at construction.  The peer's first frame must be a
   CSM too: anything else, or none within ``csm_timeout_s``, aborts.
3. There are no message IDs, no CON/ACK and no retransmission: the stream is
   reliable.  Requests and responses match by token only; a response whose
   token we do not wait for is dropped (there is no RST over TCP).
4. A frame that cannot be parsed, a second CSM that lowers nothing we know,
   or a frame larger than our Max-Message-Size aborts the connection with an
   Abort (7.05) whose diagnostic says why; the connection is then closed and
   reports :class:`ConnectionClosed`.  Nothing a peer sends raises out of
   :meth:`receive_data`.
5. Observe (RFC 7641 over RFC 8323 7): notifications are ordered by the
   stream, so a client delivers every notification in arrival order without
   the sequence-number freshness test; Observe values still increase.  A
   client cancels actively (GET with Observe=1, same token); a notification
   for an unknown token is dropped.
6. Block-wise without BERT (we never send the Block-Wise-Transfer option).
   A body larger than the peer's Max-Message-Size (less ``header_room``) is
   sliced into 1024-byte blocks: a response with Block2 (the body cached for
   the follow-ups), a request with Block1 (the next block on each 2.31
   Continue).  A sliced response we receive is followed to its end; a
   Block1 request we receive is reassembled (up to ``max_body_size``) before
   the application sees it.
7. Keep-alive: after ``keepalive_s`` without receiving anything we Ping; no
   frame within ``pong_timeout_s`` after that closes the connection.

Timers: one deadline (:meth:`get_timer`), handled by :meth:`handle_timer`.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import random
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from lwm2m.coap.codes import Code
from lwm2m.coap.errors import CoapError, EndpointClosed
from lwm2m.coap.events import (
    ClientObservationEnded,
    Event,
    NotificationAcknowledged,
    NotificationReceived,
    RequestFailed,
    RequestReceived,
    ResponseReceived,
    ServerObservationEnded,
)
from lwm2m.coap.message import Block, Message
from lwm2m.coap.peer import Peer
from lwm2m.coap.tcp_framing import (
    DEFAULT_MAX_MESSAGE_SIZE,
    Abort,
    Capabilities,
    FrameDecoder,
    FrameError,
    Ping,
    Pong,
    Release,
    Signal,
    encode_frame,
    encode_signal,
)
from lwm2m.coap.values import value_class

__all__ = [
    "CapabilitiesReceived",
    "ConnectionClosed",
    "ConnectionLost",
    "PongReceived",
    "TcpConfig",
    "TcpConnection",
]

logger = logging.getLogger(__name__)

_BLOCK_SZX: Final = 6  # 1024-byte blocks
_BLOCK_CACHE_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class TcpConfig:
    """Per-connection settings, shared by every connection of a transport."""

    #: What we accept in one frame (advertised in our CSM).
    max_message_size: int = 1 << 20
    #: Ping after this long without receiving anything; None: never.
    keepalive_s: float | None = 60.0
    #: Close when nothing arrives this long after a keep-alive Ping.
    pong_timeout_s: float = 30.0
    #: Abort when the peer's CSM has not arrived this long after the connection opened.
    csm_timeout_s: float = 30.0
    #: Room kept for code, token and options when deciding to slice a body.
    header_room: int = 128
    #: Largest request body reassembled from Block1 blocks (4.13 beyond).
    max_body_size: int = 16 << 20


class ConnectionLost(CoapError):
    """An established observation ended because its connection closed.

    Not an :class:`EndpointClosed`: the observation is not over for the
    application, which may register it again once the peer reconnects.
    """


@value_class
class CapabilitiesReceived(Event):
    """The peer's CSM arrived (the first one, or an update)."""

    capabilities: Capabilities


@value_class
class PongReceived(Event):
    """The answer to :meth:`TcpConnection.send_ping` ``ping_id``."""

    ping_id: int


@value_class
class ConnectionClosed(Event):
    """The connection is over: ``aborted`` when either side sent Abort; ``by_peer`` who ended it."""

    reason: str
    by_peer: bool
    aborted: bool


class TcpConnection:
    """Requests, responses, observations and signals of one stream (see the module rules)."""

    def __init__(
        self,
        peer: Peer,
        config: TcpConfig,
        rng: random.Random,
        now: float,
        *,
        ids: Iterator[int] | None = None,
        tracer: Callable[[str, Message], None] | None = None,
    ) -> None:
        """``ids`` numbers requests and observations (share one among connections
        for ids unique per transport); ``tracer(direction, message)`` sees every
        request and response in (``"in"``) and out (``"out"``), signals excluded."""
        self.peer = peer
        self._ids = ids if ids is not None else itertools.count(1)
        self.tracer = tracer
        self.config = config
        self._rng = rng
        self._decoder = FrameDecoder(config.max_message_size)
        self._out: list[bytes] = [
            encode_signal(Capabilities(max_message_size=config.max_message_size))
        ]
        self._events: deque[Event] = deque()
        #: What the peer accepts; RFC 8323 5.3.1 default until its CSM says more.
        self.peer_max_message_size = DEFAULT_MAX_MESSAGE_SIZE
        self.peer_csm: Capabilities | None = None
        self.closed = False
        self.released = False
        # our requests: token -> request id; id -> (request message, observe, body so far)
        self._by_token: dict[bytes, int] = {}
        self._outgoing: dict[int, _Outgoing] = {}
        # requests we serve: id -> (token, message); observations we serve: id -> token
        self._incoming: dict[int, Message] = {}
        self._serving: dict[int, _Serving] = {}
        self._serving_by_token: dict[bytes, int] = {}
        self._block_cache: dict[tuple[str, tuple[str, ...]], tuple[Message, float]] = {}
        #: Block1 bodies being received, by (path, query); final Block1 to echo, by request id
        self._block1_bodies: dict[tuple[str, tuple[str, ...]], bytearray] = {}
        self._block1_final: dict[int, Block] = {}
        self._pings: dict[bytes, int] = {}
        self._opened_at = now
        self._last_rx = now
        self._keepalive_ping_at: float | None = None

    # ------------------------------------------------------------------ input

    def receive_data(self, data: bytes, now: float) -> None:
        """Feed bytes read from the stream; malformed input aborts (never raises)."""
        if self.closed:
            return
        self._last_rx = now
        self._keepalive_ping_at = None
        try:
            for frame in self._decoder.feed(data):
                if self.closed:
                    return
                if self.peer_csm is None and not isinstance(frame, Capabilities):
                    self.abort("the first message must be a CSM (RFC 8323 5.3)")
                    return
                if isinstance(frame, Message):
                    self._message(frame, now)
                else:
                    self._signal(frame)
        except FrameError as exc:
            logger.debug("malformed frame from %s: %s", self.peer.address, exc)
            self.abort(f"malformed frame: {exc}")

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def get_timer(self) -> float | None:
        if self.closed:
            return None
        if self.peer_csm is None:
            return self._opened_at + self.config.csm_timeout_s
        if self._keepalive_ping_at is not None:
            return self._keepalive_ping_at + self.config.pong_timeout_s
        if self.config.keepalive_s is None:
            return None
        return self._last_rx + self.config.keepalive_s

    def handle_timer(self, now: float) -> None:
        deadline = self.get_timer()
        if deadline is None or now < deadline:
            return
        if self.peer_csm is None:
            self.abort("no CSM from the peer")
        elif self._keepalive_ping_at is not None:
            self._close("no answer to the keep-alive Ping", by_peer=False, aborted=False)
        else:
            self._keepalive_ping_at = now
            self._out.append(encode_signal(Ping(self._token(4))))
        self._expire_blocks(now)

    # ------------------------------------------------------------------ our requests

    def send_request(self, message: Message, now: float, *, observe: bool = False) -> int:
        """Queue a request; its answer comes as ResponseReceived (or RequestFailed)."""
        request_id = self._new_id()
        if self.closed or self.released:
            self._events.append(RequestFailed(request_id, EndpointClosed("connection closed")))
            return request_id
        token = message.token
        if not token or token in self._by_token:
            token = self._token(8)
        if observe and message.observe is None:
            message = message.with_(observe=0)
        message = message.with_(token=token)
        out = _Outgoing(message, observe)
        self._outgoing[request_id] = out
        self._by_token[token] = request_id
        size = 1 << (_BLOCK_SZX + 4)
        if len(message.payload) > max(size, self.peer_max_message_size - self.config.header_room):
            out.upload = message.payload
            self._send(
                message.with_(
                    payload=message.payload[:size],
                    block1=Block(0, True, _BLOCK_SZX),
                    size1=len(message.payload),
                )
            )
            return request_id
        self._send(message)
        return request_id

    def cancel_request(self, request_id: int) -> None:
        """Forget a request or observation (a later answer is dropped)."""
        out = self._outgoing.pop(request_id, None)
        if out is not None:
            self._by_token.pop(out.message.token, None)

    def deregister_observation(self, request_id: int) -> int | None:
        """Cancel our observation actively: GET with Observe=1 and its token; the new request id."""
        out = self._outgoing.pop(request_id, None)
        if out is None or not out.observe or self.closed:
            return None
        message = out.message.with_(observe=1)
        dereg_id = self._new_id()
        self._outgoing[dereg_id] = _Outgoing(message, False)
        self._by_token[message.token] = dereg_id
        self._send(message)
        return dereg_id

    def send_ping(self) -> int:
        """Ping (7.02); the peer's Pong comes as PongReceived."""
        ping_id = self._new_id()
        token = self._token(4)
        self._pings[token] = ping_id
        self._out.append(encode_signal(Ping(token)))
        return ping_id

    # ------------------------------------------------------------------ serving

    def respond(self, request_id: int, response: Message, now: float) -> None:
        """Answer a RequestReceived; a 2.xx answer to an observe registration starts it."""
        request = self._incoming.pop(request_id, None)
        if request is None or self.closed:
            return
        final = self._block1_final.pop(request_id, None)
        if final is not None:
            response = response.with_(block1=final)
        obs_id = self._serving_by_token.get(request.token)
        serving = self._serving.get(obs_id) if obs_id is not None else None
        if serving is not None and serving.request_id == request_id:
            if response.code < 96:
                serving.counter += 1
                response = response.with_(observe=serving.counter)
            else:
                self._end_serving(obs_id, "ended with an error response")  # type: ignore[arg-type]
        self._send_response(request, response, now)

    def decline(self, request_id: int) -> None:
        """Leave a request unanswered for good (No-Response)."""
        self._incoming.pop(request_id, None)
        self._block1_final.pop(request_id, None)

    def start_observation(self, request_id: int) -> int:
        """Make the GET/FETCH ``request_id`` (Observe=0) an observation; its id."""
        request = self._incoming.get(request_id)
        if request is None or request.observe != 0:
            raise ValueError("not an observe registration")
        old = self._serving_by_token.get(request.token)
        if old is not None:
            self._end_serving(old, "re-registered")
        obs_id = self._new_id()
        self._serving[obs_id] = _Serving(request.token, request_id)
        self._serving_by_token[request.token] = obs_id
        return obs_id

    def notify(self, obs_id: int, message: Message, now: float) -> int:
        """Send a notification; the stream delivers it (NotificationAcknowledged at once).

        A non-2.xx notification is the last one.  KeyError once the observation is over.
        """
        serving = self._serving[obs_id]
        request = Message(Code.GET, token=serving.token)
        delivery = self._new_id()
        if message.code < 96:
            serving.counter += 1
            self._send_response(request, message.with_(observe=serving.counter), now)
            self._events.append(NotificationAcknowledged(obs_id, delivery))
        else:
            self._send_response(request, message.with_(observe=None), now)
            self._end_serving(obs_id, "ended with an error notification", report=False)
        return delivery

    def cancel_observation(self, obs_id: int) -> None:
        self._end_serving(obs_id, "cancelled locally", report=False)

    # ------------------------------------------------------------------ ending

    def release(self, diagnostic: str = "") -> None:
        """Send Release (7.04): we will close once our output is written."""
        if self.closed:
            return
        self._out.append(encode_signal(Release(diagnostic=diagnostic)))
        self._close(diagnostic or "released", by_peer=False, aborted=False)

    def abort(self, diagnostic: str) -> None:
        """Send Abort (7.05) with ``diagnostic`` and close."""
        if self.closed:
            return
        self._out.append(encode_signal(Abort(diagnostic)))
        self._close(diagnostic, by_peer=False, aborted=True)

    def connection_lost(self, reason: str) -> None:
        """The stream ended under us (EOF, reset)."""
        self._close(reason, by_peer=True, aborted=False)

    # Private

    def _new_id(self) -> int:
        return next(self._ids)

    def _send(self, message: Message) -> None:
        if self.tracer is not None:
            self.tracer("out", message)
        self._out.append(encode_frame(message))

    def _token(self, size: int) -> bytes:
        while True:
            token = self._rng.getrandbits(size * 8).to_bytes(size, "big")
            if token not in self._by_token and token not in self._pings:
                return token

    def _close(self, reason: str, *, by_peer: bool, aborted: bool) -> None:
        if self.closed:
            return
        self.closed = True
        error: CoapError = EndpointClosed(f"connection closed: {reason}")
        for request_id, out in list(self._outgoing.items()):
            if out.observe and out.established:
                lost = ConnectionLost(f"connection closed: {reason}")
                self._events.append(RequestFailed(request_id, lost))
            else:
                self._events.append(RequestFailed(request_id, error))
        self._outgoing.clear()
        self._by_token.clear()
        for obs_id in list(self._serving):
            self._end_serving(obs_id, f"connection closed: {reason}")
        self._incoming.clear()
        self._pings.clear()
        self._events.append(ConnectionClosed(reason, by_peer, aborted))

    def _signal(self, signal: Signal) -> None:
        match signal:
            case Capabilities(max_message_size=size):
                first = self.peer_csm is None
                self.peer_csm = signal
                if size is not None:
                    self.peer_max_message_size = size
                elif first:
                    self.peer_max_message_size = DEFAULT_MAX_MESSAGE_SIZE
                self._events.append(CapabilitiesReceived(signal))
            case Ping(token=token, custody=custody):
                self._out.append(encode_signal(Pong(token, custody)))
            case Pong(token=token):
                ping_id = self._pings.pop(token, None)
                if ping_id is None and self._pings:
                    # libcoap 4.3 answers with an empty token; the stream keeps
                    # Pongs in the order of the Pings, so the oldest is answered.
                    ping_id = self._pings.pop(next(iter(self._pings)))
                if ping_id is not None:
                    self._events.append(PongReceived(ping_id))
            case Release(diagnostic=diag):
                self.released = True
                self._close(f"peer released the connection {diag!r}", by_peer=True, aborted=False)
            case Abort(diagnostic=diag):
                self._close(f"peer aborted: {diag!r}", by_peer=True, aborted=True)

    def _message(self, msg: Message, now: float) -> None:
        if self.tracer is not None:
            self.tracer("in", msg)
        if msg.is_request:
            self._request(msg, now)
        elif msg.is_response:
            self._response(msg, now)

    def _request(self, msg: Message, now: float) -> None:
        if msg.block2 is not None and msg.block2.num > 0:
            cached = self._block_cache.get((msg.path_str, msg.uri_query))
            if cached is not None:
                self._send_block(msg, cached[0], msg.block2.num, min(msg.block2.szx, _BLOCK_SZX))
                return
        final: Block | None = None
        if msg.block1 is not None:
            assembled = self._block1(msg)
            if assembled is None:
                return
            msg, final = assembled
        if msg.observe == 1:
            obs_id = self._serving_by_token.get(msg.token)
            if obs_id is not None:
                self._end_serving(obs_id, "cancelled by the client")
        request_id = self._new_id()
        self._incoming[request_id] = msg
        if final is not None:
            self._block1_final[request_id] = final
        self._events.append(RequestReceived(request_id, msg, self.peer))

    def _block1(self, msg: Message) -> tuple[Message, Block] | None:
        """Take one Block1 block: the whole request once complete, else None (answered here)."""
        block = msg.block1
        assert block is not None
        key = (msg.path_str, msg.uri_query)
        if block.num == 0:
            self._block1_bodies[key] = bytearray()
        body = self._block1_bodies.get(key)
        if body is None or block.offset != len(body):
            self._block1_bodies.pop(key, None)
            self._send(Message(Code.REQUEST_ENTITY_INCOMPLETE, token=msg.token))
            return None
        body += msg.payload
        if len(body) > self.config.max_body_size:
            del self._block1_bodies[key]
            self._send(
                Message(
                    Code.REQUEST_ENTITY_TOO_LARGE,
                    token=msg.token,
                    size1=self.config.max_body_size,
                )
            )
            return None
        if block.more:
            self._send(Message(Code.CONTINUE, token=msg.token, block1=block))
            return None
        del self._block1_bodies[key]
        return msg.with_(payload=bytes(body), block1=None, size1=None), block

    def _response(self, msg: Message, now: float) -> None:
        request_id = self._by_token.get(msg.token)
        if request_id is None:
            logger.debug("dropping a response with an unknown token from %s", self.peer.address)
            return
        out = self._outgoing[request_id]
        if out.upload is not None:
            if msg.code == Code.CONTINUE and msg.block1 is not None:
                size = msg.block1.size
                start = (msg.block1.num + 1) * size
                if start < len(out.upload):
                    chunk = out.upload[start : start + size]
                    self._send(
                        out.message.with_(
                            payload=chunk,
                            block1=Block(
                                msg.block1.num + 1, start + size < len(out.upload), msg.block1.szx
                            ),
                        )
                    )
                    return
            out.upload = None  # the final response (or an error) ends the upload
            out.message = out.message.with_(payload=b"")
        block = msg.block2
        if block is not None and (block.more or out.body):
            if block.offset != len(out.body) or (out.etag is not None and msg.etag != out.etag):
                out.body.clear()  # representation changed under us: start over
                out.etag = None
                if block.num != 0:
                    self._follow(out, 0, block.szx)
                    return
            out.body += msg.payload
            out.etag = msg.etag
            if block.more:
                self._follow(out, block.num + 1, block.szx)
                return
            msg = msg.with_(payload=bytes(out.body), block2=None)
            out.body.clear()
        if out.observe and out.established:
            if msg.observe is None or msg.code >= 96:
                self.cancel_request(request_id)
                self._events.append(ClientObservationEnded(request_id, "ended by the server"))
            self._events.append(NotificationReceived(request_id, msg))
            return
        if out.observe and msg.observe is not None and msg.code < 96:
            out.established = True
        else:
            self.cancel_request(request_id)
        self._events.append(ResponseReceived(request_id, msg))

    def _follow(self, out: _Outgoing, num: int, szx: int) -> None:
        follow = out.message.with_(block2=Block(num, False, szx), observe=None)
        self._send(follow)

    def _send_response(self, request: Message, response: Message, now: float) -> None:
        response = response.with_(token=request.token)
        limit = self.peer_max_message_size - self.config.header_room
        if len(response.payload) > limit and response.block2 is None:
            key = (request.path_str, request.uri_query)
            self._block_cache[key] = (response, now + _BLOCK_CACHE_S)
            szx = min(request.block2.szx, _BLOCK_SZX) if request.block2 else _BLOCK_SZX
            self._send_block(request, response, 0, szx)
            return
        self._send(response)

    def _send_block(self, request: Message, body: Message, num: int, szx: int) -> None:
        size = 1 << (szx + 4)
        start = num * size
        if start >= len(body.payload):
            self._send(Message(Code.BAD_OPTION, token=request.token))
            return
        chunk = body.payload[start : start + size]
        more = start + size < len(body.payload)
        etag = body.etag or (hashlib.blake2b(body.payload, digest_size=8).digest(),)
        block = body.with_(
            token=request.token,
            payload=chunk,
            block2=Block(num, more, szx),
            size2=len(body.payload) if num == 0 else None,
            etag=etag,
            observe=body.observe if num == 0 else None,
        )
        self._send(block)

    def _expire_blocks(self, now: float) -> None:
        for key, (_, expires) in list(self._block_cache.items()):
            if expires <= now:
                del self._block_cache[key]

    def _end_serving(self, obs_id: int, reason: str, *, report: bool = True) -> None:
        serving = self._serving.pop(obs_id, None)
        if serving is None:
            return
        self._serving_by_token.pop(serving.token, None)
        if report:
            self._events.append(ServerObservationEnded(obs_id, reason))


class _Outgoing:
    __slots__ = ("body", "established", "etag", "message", "observe", "upload")

    def __init__(self, message: Message, observe: bool) -> None:
        self.message = message
        self.observe = observe
        self.upload: bytes | None = None
        self.established = False
        self.body = bytearray()
        self.etag: tuple[bytes, ...] | None = None


class _Serving:
    __slots__ = ("counter", "request_id", "token")

    def __init__(self, token: bytes, request_id: int) -> None:
        self.token = token
        self.request_id = request_id
        self.counter = 1

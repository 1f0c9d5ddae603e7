"""The asyncio CoAP endpoint every role uses: one UDP socket that serves and sends.

A thin pump around :class:`~lwm2m.coap.engine.Engine`: datagrams from the
socket (through the optional security layer) go into the engine, the
engine's datagrams go out, its single timer becomes one ``loop.call_at``, and
its events resolve futures or start handler tasks.  All protocol decisions
live in the engine, so this module only deals with asyncio.

A server must reach a device on the very port the device registered from
(NAT bindings), hence one socket for both directions.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import functools
import ipaddress
import logging
import random
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, Final

from lwm2m.coap.codec import decode
from lwm2m.coap.codes import Code, is_response_code, is_success_code
from lwm2m.coap.dispatch_end import dispatching
from lwm2m.coap.engine import Engine
from lwm2m.coap.errors import (
    CoapError,
    EndpointClosed,
    MessageFormatError,
    ObservationCancelled,
    RequestTimeout,
    SecureConnectionFailed,
)
from lwm2m.coap.events import (
    RequestReceived,
)
from lwm2m.coap.exchanges import Exchanges
from lwm2m.coap.later import Later
from lwm2m.coap.loop import reads_datagrams_in_batches
from lwm2m.coap.message import Message
from lwm2m.coap.params import TransmissionParameters
from lwm2m.coap.peer import Address, Peer, PeerIdentity, normalize_address
from lwm2m.coap.security_layer import (
    HandshakeCompleted,
    HandshakeFailed,
    SecurityLayer,
    SessionClosed,
)
from lwm2m.coap.traffic import TrafficCounter

__all__ = [
    "NO_RESPONSE",
    "Address",
    "ClientObservation",
    "Endpoint",
    "Handler",
    "IncomingRequest",
    "MessageTracer",
    "NoResponse",
    "OrphanNotificationHandler",
    "Peer",
    "PeerIdentity",
    "ServerObservation",
    "TransmissionParameters",
]

logger = logging.getLogger(__name__)

#: Receive buffer a server asks for (:meth:`Endpoint.create` ``receive_buffer``): room for
#: some thousands of requests arriving at once (a re-registration storm) where the default
#: holds a few hundred. The kernel takes the memory only while datagrams wait in it.
SERVER_RECEIVE_BUFFER: Final = 4 << 20
#: The largest receive buffer that can be asked for (the socket option is a C int).
MAX_RECEIVE_BUFFER: Final = (1 << 31) - 1

_INTERNAL_ERROR = Message(Code.INTERNAL_SERVER_ERROR)
_NOT_FOUND = Message(Code.NOT_FOUND)


class IncomingRequest:
    """A request for the handler: the (reassembled) message and who sent it."""

    __slots__ = ("_endpoint", "_observation", "_request_id", "message", "peer")

    def __init__(self, endpoint: Endpoint, request_id: int, message: Message, peer: Peer) -> None:
        self._endpoint = endpoint
        self._request_id = request_id
        self._observation: ServerObservation | None = None
        self.message = message
        self.peer = peer

    def start_observation(self, on_cancel: Callable[[], None] | None = None) -> ServerObservation:
        """Turn this GET/FETCH with Observe=0 into an observation.

        The response the handler returns then carries Observe (if it is 2.xx;
        an error response ends the observation at once).  ``on_cancel`` runs
        when the observation ends for any reason other than :meth:`ServerObservation.cancel`.
        Raises ValueError for a request that is not an observe registration.
        """
        if self._observation is not None:
            return self._observation
        ep = self._endpoint
        obs_id = ep._engine.start_observation(self._request_id, ep._loop.time())
        self._observation = ServerObservation(ep, obs_id, self.peer, on_cancel)
        ep._server_observations[obs_id] = self._observation
        return self._observation

    def __repr__(self) -> str:
        return f"<IncomingRequest {self.message.code!s} {self.message.path_str} from {self.peer.address}>"


class ServerObservation:
    """An observation a peer holds on us; :meth:`notify` sends notifications."""

    __slots__ = ("_deliveries", "_endpoint", "_id", "_on_cancel", "cancelled", "peer", "reason")

    def __init__(
        self,
        endpoint: Endpoint,
        obs_id: int,
        peer: Peer,
        on_cancel: Callable[[], None] | None,
    ) -> None:
        self._endpoint = endpoint
        self._id = obs_id
        self._on_cancel = on_cancel
        self._deliveries: dict[int, asyncio.Future[None]] = {}
        self.peer = peer
        self.cancelled = False
        self.reason = ""

    async def notify(self, response: Message, *, confirmable: bool = False) -> None:
        """Send a notification; a CON one returns once acknowledged.

        A non-2.xx response is sent as the final notification and ends the
        observation.  Raises :class:`ObservationCancelled` once the observation
        is over (RST, deregistration, unacknowledged CON notification, cancel),
        ValueError when called before the handler's response to the registration.
        """
        if self.cancelled:
            raise ObservationCancelled(self.reason or "observation cancelled")
        ep = self._endpoint
        if ep._closed:
            raise EndpointClosed("endpoint closed")
        now = ep._loop.time()
        try:
            delivery = ep._engine.notify(self._id, response, now, confirmable=confirmable)
        except KeyError:
            raise ObservationCancelled(self.reason or "observation ended") from None
        if not is_success_code(response.code):
            self._ended("ended with an error notification", call_back=False)
            ep._pump(now)
            return
        if not confirmable:
            ep._pump(now)
            return
        fut: asyncio.Future[None] = ep._loop.create_future()
        self._deliveries[delivery] = fut
        ep._pump(now)
        try:
            await fut
        finally:
            self._deliveries.pop(delivery, None)

    def cancel(self) -> None:
        """Stop notifying (nothing is sent; the client's entry ages out)."""
        if self.cancelled:
            return
        ep = self._endpoint
        ep._engine.cancel_observation(self._id)
        self._ended("cancelled locally", call_back=False)

    def _acknowledged(self, delivery: int) -> None:
        fut = self._deliveries.get(delivery)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _ended(self, reason: str, *, call_back: bool = True) -> None:
        if self.cancelled:
            return
        self.cancelled = True
        self.reason = reason
        self._endpoint._server_observations.pop(self._id, None)
        for fut in self._deliveries.values():
            if not fut.done():
                fut.set_exception(ObservationCancelled(reason))
        if call_back and self._on_cancel is not None:
            try:
                self._on_cancel()
            except Exception:
                logger.exception("observation on_cancel callback failed")


_END = object()


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class ClientObservation:
    """An observation we hold on a peer: ``await first()``, then ``async for`` notifications."""

    def __init__(self, endpoint: Endpoint, request_id: int, timeout: float | None) -> None:
        self._endpoint = endpoint
        self.request_id = request_id
        self._timeout = timeout
        self._first: asyncio.Future[Message] = endpoint._loop.create_future()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._error: BaseException | None = None
        self.active = True
        self.reason = ""

    async def first(self) -> Message:
        """The response to the registering GET (raises RequestTimeout, ResetReceived, ...)."""
        try:
            if self._timeout is None:
                return await asyncio.shield(self._first)
            return await asyncio.wait_for(asyncio.shield(self._first), self._timeout)
        except CoapError:
            raise
        except TimeoutError:
            await self.cancel(active=False)
            raise RequestTimeout(
                f"no response to the observe request within {self._timeout} s"
            ) from None

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        while True:
            item = await self._queue.get()
            if item is _END:
                self._queue.put_nowait(_END)  # later iterators end too
                if self._error is not None and not isinstance(
                    self._error, EndpointClosed | ObservationCancelled
                ):
                    raise self._error
                return
            yield item

    async def cancel(self, *, active: bool = True, timeout: float | None = None) -> None:
        """End the observation: actively (GET with Observe=1) or passively (forget; RST next).

        ``timeout`` bounds the wait for the answer to the deregistration (which
        never raises: the observation is gone locally either way).
        """
        if not self.active:
            return
        ep = self._endpoint
        self._end("cancelled")
        if ep._closed:
            return
        ep._client_observations.pop(self.request_id, None)
        now = ep._loop.time()
        established = self._first.done() and not self._first.exception()
        if not active or not established:
            ep._engine.cancel_request(self.request_id, now)
            ep._pump(now)
            return
        dereg_id = ep._engine.deregister_observation(self.request_id, now)
        if dereg_id is None:
            return
        try:
            await ep._await_response(dereg_id, timeout, now)
        except CoapError as exc:
            logger.debug("deregistration of observation %d failed: %s", self.request_id, exc)

    def _response(self, msg: Message) -> None:
        if not self._first.done():
            self._first.set_result(msg)
        if msg.observe is None or not is_success_code(msg.code):
            self._end("not established: the response carries no Observe")

    def _failed(self, error: CoapError) -> None:
        if not self._first.done():
            self._first.set_exception(error)
            self._first.exception()  # retrieved: first() may never be awaited
        self._error = error
        self._end(str(error))

    def _notification(self, msg: Message) -> None:
        if self.active:
            self._queue.put_nowait(msg)

    def _end(self, reason: str) -> None:
        if not self.active:
            return
        self.active = False
        self.reason = reason
        if not self._first.done():
            self._first.set_exception(ObservationCancelled(reason))
            self._first.exception()
        self._queue.put_nowait(_END)


class NoResponse(enum.Enum):
    """Type of :data:`NO_RESPONSE` (a one-member enum, so type checkers know the singleton)."""

    NO_RESPONSE = "no response"


NO_RESPONSE: Final = NoResponse.NO_RESPONSE
"""What a handler returns to leave a request unanswered on purpose.

Nothing at all is sent for it (no ACK, no response, no RST; see
:meth:`Engine.decline <lwm2m.coap.engine.Engine.decline>`): the peer's CON
request times out.  For a server that must ignore a peer, such as an LwM2M
client while that server's account is disabled (LwM2M 1.1 E.2).
"""

Handler = Callable[[IncomingRequest], Awaitable[Message | NoResponse] | Message | NoResponse]
"""Answers a request: a coroutine function, or a plain function that returns the
answer itself when it has it at once and an awaitable otherwise (no coroutine is
then created for a request answered on the spot)."""

OrphanNotificationHandler = Callable[[Message, Peer], bool]
"""Claims (True) or refuses (False) a notification/response with an unknown token."""

MessageTracer = Callable[[str, Message, Address], None]
"""Sees every CoAP message: ``("in" | "out", message, peer address)``."""


#: (granted, asked) receive buffer sizes already told as capped, by this process.
_CAPS_TOLD: set[tuple[int, int]] = set()


def _ask_receive_buffer(sock: socket.socket, size: int) -> None:
    """Ask for a receive buffer of ``size`` bytes; what the system caps is told, not fatal
    (a smaller buffer drops more of a storm, it serves all the same)."""
    if not 0 < size <= MAX_RECEIVE_BUFFER:
        raise ValueError(
            f"receive_buffer must be a positive number of bytes up to {MAX_RECEIVE_BUFFER}, "
            f"not {size}"
        )
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    except OSError as exc:  # BSDs and macOS refuse above kern.ipc.maxsockbuf
        logger.info("UDP receive buffer of %d bytes refused (%s): system default kept", size, exc)
        return
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    if sys.platform.startswith("linux"):
        granted //= 2  # Linux reports twice the size it holds data for
    if granted < size and (granted, size) not in _CAPS_TOLD:
        # Once: a server opens up to four sockets (CoAP and CoAPS, IPv4 and IPv6).
        _CAPS_TOLD.add((granted, size))
        logger.info(
            "UDP receive buffer capped at %d of the %d bytes asked for (Linux: raise "
            "net.core.rmem_max): a storm of requests may overflow it and be retransmitted",
            granted,
            size,
        )


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._endpoint._datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        logger.debug("socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._endpoint._connection_lost()


class Endpoint:
    """A CoAP endpoint on one UDP socket (optionally under a security layer)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        engine: Engine,
        handler: Handler | None,
        security: SecurityLayer | None,
        eager_handlers: bool = False,
        traffic: TrafficCounter | None = None,
        inline_handlers: bool = False,
    ) -> None:
        self._loop = loop
        self._eager = eager_handlers
        self._inline = inline_handlers
        # inline handlers suspended on a future: future -> (coroutine, its context, callback)
        self._parked: dict[
            asyncio.Future[Any],
            tuple[Coroutine[Any, Any, None], contextvars.Context, Callable[[Any], None]],
        ] = {}
        self._flush_pending = False  # a _flush is scheduled for this loop turn
        #: Datagrams dispatched once per loop turn (uvloop) rather than one by one.
        self._batch_reads = reads_datagrams_in_batches(loop)
        self._in_eager_step = False  # a handler's eager first step runs inside _pump
        self._sock: socket.socket | None = None
        self._engine = engine
        self._handler = handler
        self._security = security
        #: Security-layer outcomes, for metrics (always 0 on plain UDP).
        self.handshakes_completed = 0
        self.handshakes_failed = 0
        #: datagrams and bytes through the socket (see :mod:`lwm2m.coap.traffic`)
        self.traffic = traffic if traffic is not None else TrafficCounter()
        self._transport: asyncio.DatagramTransport | None = None
        self._closed = False
        self._lost: asyncio.Future[None] = loop.create_future()
        self._exchanges = Exchanges()
        # the tables themselves, for the request path (no attribute hop per request)
        self._pending = self._exchanges.pending
        self._client_observations = self._exchanges.client_observations
        self._server_observations = self._exchanges.server_observations
        self._route = self._exchanges.route
        self._tasks: set[asyncio.Task[None]] = set()
        self._listeners: list[Callable[[Peer], None]] = []
        self._orphan_handler: OrphanNotificationHandler | None = None
        self._tracers: list[MessageTracer] = []
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self.local_address: Address = ("", 0)

    @classmethod
    async def create(
        cls,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        handler: Handler | None = None,
        security: SecurityLayer | None = None,
        params: TransmissionParameters | None = None,
        rng: random.Random | None = None,
        eager_handlers: bool | None = None,
        traffic: TrafficCounter | None = None,
        inline_handlers: bool = False,
        receive_buffer: int | None = None,
    ) -> Endpoint:
        """Bind a UDP socket on (host, port) and start serving ``handler``.

        ``eager_handlers`` (the default) starts each handler's Task eagerly
        (Python 3.12+ ``eager_start``): its first step runs inside the
        datagram callback, as the current task, and a handler that answers
        without suspending costs no loop iteration.  ``False`` schedules the
        Task instead.  Python 3.11 has no eager tasks: there handlers always
        start in a scheduled Task.  Either way ``asyncio.current_task()`` is
        the handler's Task, so ``asyncio.timeout()`` works from its first line.
        ``traffic`` counts what the socket carries; pass one counter to
        several endpoints for a common total.

        ``inline_handlers`` (any Python version; it overrides
        ``eager_handlers``) runs the handler's first step inside the datagram
        callback without any Task: a handler that answers without suspending
        costs neither a Task nor a loop iteration.  One that suspends on a
        future is parked on it and continues in a Task of its own once that
        future is done (from its second step on, ``asyncio.current_task()``
        is that Task).  Only for handlers whose first step needs no Task: no
        ``asyncio.timeout()``, ``wait_for()`` (3.12+) or ``current_task()``
        before their first suspension.  The handler runs in a copy of the
        context either way.

        ``receive_buffer`` asks the kernel for a socket receive buffer of that
        many bytes (None: the system's default, about 200 KB on Linux). A storm
        of a few hundred requests at once overflows the default, and every
        datagram dropped there costs its sender a retransmission two or more
        seconds later. The kernel caps the request (Linux: at
        ``net.core.rmem_max``); :attr:`receive_buffer` says what was granted.
        """
        loop = asyncio.get_running_loop()
        engine = Engine(params or TransmissionParameters(), rng=rng or random.Random())
        if eager_handlers is None:
            eager_handlers = True
        endpoint = cls(loop, engine, handler, security, eager_handlers, traffic, inline_handlers)
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP)
        family, _, _, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            if receive_buffer is not None:
                _ask_receive_buffer(sock, receive_buffer)
            sock.bind(sockaddr)
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Protocol(endpoint), sock=sock
            )
        except BaseException:
            sock.close()
            raise
        endpoint._transport = transport
        endpoint._sock = sock
        endpoint.local_address = normalize_address(sock.getsockname())
        return endpoint

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def receive_buffer(self) -> int:
        """The socket's receive buffer as the kernel reports it (Linux doubles what it
        grants, for its own bookkeeping, and reports the double); 0 without a socket."""
        sock = self._sock
        if sock is None or sock.fileno() < 0:
            return 0
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ public API

    async def request(
        self, message: Message, address: Address, *, timeout: float | None = None
    ) -> Message:
        """Send a request and return the final response (4.xx/5.xx included).

        Raises RequestTimeout, ResetReceived, SecureConnectionFailed,
        RequestEntityTooLarge or EndpointClosed.  Cancelling the call frees
        the exchange (retransmissions stop, a late response gets RST).
        """
        if self._closed:
            raise EndpointClosed("endpoint closed")
        address = normalize_address(address)
        if not _is_ip_literal(address[0]):
            address = await self._resolve(address)
        now = self._loop.time()
        request_id = self._engine.send_request(message, address, now)
        return await self._await_response(request_id, timeout, now)

    async def _resolve(self, address: Address) -> Address:
        """A host name to the numeric address responses will come from."""
        family = self._sock.family if self._sock is not None else socket.AF_UNSPEC
        infos = await self._loop.getaddrinfo(
            address[0], address[1], family=family, type=socket.SOCK_DGRAM
        )
        if not infos:
            raise OSError(f"cannot resolve {address[0]!r}")
        return normalize_address(infos[0][4])

    async def _await_response(self, request_id: int, timeout: float | None, now: float) -> Message:
        fut: asyncio.Future[Message] = self._loop.create_future()
        self._pending[request_id] = fut
        self._pump(now)
        try:
            if timeout is None:
                return await fut
            return await asyncio.wait_for(fut, timeout)
        except CoapError:
            raise
        except TimeoutError:
            raise RequestTimeout(f"no response within {timeout} s") from None
        finally:
            if self._pending.pop(request_id, None) is not None and not self._closed:
                now = self._loop.time()
                self._engine.cancel_request(request_id, now)
                self._pump(now)

    def observe(
        self, message: Message, address: Address, *, timeout: float | None = None
    ) -> ClientObservation:
        """Register an observation (GET/FETCH with Observe=0); see :class:`ClientObservation`.

        ``address`` must be numeric (this call does not wait for name resolution).
        """
        if self._closed:
            raise EndpointClosed("endpoint closed")
        address = normalize_address(address)
        if not _is_ip_literal(address[0]):
            raise ValueError(f"observe() needs a numeric address, not {address[0]!r}")
        now = self._loop.time()
        request_id = self._engine.send_request(message, address, now, observe=True)
        observation = ClientObservation(self, request_id, timeout)
        self._client_observations[request_id] = observation
        self._pump(now)
        return observation

    def set_orphan_notification_handler(self, cb: OrphanNotificationHandler | None) -> None:
        """Offer ``cb(message, peer)`` every notification/response with an unknown token.

        Without a handler (or when it returns False) such a message is
        answered with RST, which makes the peer cancel its observation.  A
        handler that recognises the token (e.g. from observations persisted
        before a restart) returns True: a CON message is then ACKed, and the
        message is the handler's.  If the handler calls
        :meth:`adopt_observation` for the token, this notification and the
        later ones flow through the returned :class:`ClientObservation`.  The
        handler runs inside the datagram callback: it must not block, and an
        exception it raises counts as False.
        """
        self._orphan_handler = cb
        self._engine.set_orphan_filter(None if cb is None else self._claim_orphan)

    def _claim_orphan(
        self, message: Message, address: Address, identity: PeerIdentity | None
    ) -> bool:
        handler = self._orphan_handler
        if handler is None:
            return False
        try:
            return handler(message, Peer(address, identity)) is True
        except Exception:
            logger.exception("orphan notification handler failed for %s", address)
            return False

    def adopt_observation(
        self, request: Message, address: Address, token: bytes, notification: Message
    ) -> ClientObservation:
        """Take over an observation an earlier run registered with ``token`` at ``address``.

        ``request`` is the registering GET/FETCH (it is reused by an active
        :meth:`ClientObservation.cancel`, GET with Observe=1); ``notification``
        is the message that revealed the observation: :meth:`ClientObservation.first`
        returns it.  Meant to be called from the orphan notification handler,
        which then returns True so that this notification is delivered through
        the observation too.  Raises ValueError if the token is empty or in use.
        """
        if self._closed:
            raise EndpointClosed("endpoint closed")
        address = normalize_address(address)
        request_id = self._engine.adopt_observation(request, address, token, self._loop.time())
        observation = ClientObservation(self, request_id, None)
        observation._first.set_result(notification)
        self._client_observations[request_id] = observation
        return observation

    async def ping(self, address: Address, timeout: float | None = None) -> bool:
        """CoAP ping (an empty CON, RFC 7252 4.3): True once the peer answers (RST or empty ACK).

        False when no answer came within ``timeout`` (None: the CON
        retransmissions, up to MAX_TRANSMIT_WAIT).  Raises EndpointClosed, and
        SecureConnectionFailed when the DTLS handshake with the peer fails.
        """
        if self._closed:
            raise EndpointClosed("endpoint closed")
        address = normalize_address(address)
        if not _is_ip_literal(address[0]):
            address = await self._resolve(address)
        now = self._loop.time()
        ping_id = self._engine.send_ping(address, now)
        try:
            await self._await_response(ping_id, timeout, now)
        except RequestTimeout:
            return False
        return True

    def add_message_tracer(self, cb: MessageTracer) -> None:
        """Call ``cb(direction, message, address)`` for every CoAP message (a message log).

        ``direction`` is ``"in"`` for each datagram that decodes as CoAP (after
        DTLS decryption, duplicates included) and ``"out"`` for each message
        sent (ACK, RST and retransmissions included).  The callback runs inside
        the socket callback: it must be quick and must not call back into this
        endpoint; its exceptions are logged and ignored.  Without tracers the
        endpoint does no extra work.
        """
        self._tracers.append(cb)

    def remove_message_tracer(self, cb: MessageTracer) -> None:
        """Stop calling ``cb``; ValueError if it was not added."""
        self._tracers.remove(cb)

    def _trace(self, direction: str, data: bytes, address: Address) -> None:
        try:
            msg = decode(data)
        except MessageFormatError:
            return  # not CoAP: nothing to log (the engine drops or rejects it)
        for cb in list(self._tracers):
            try:
                cb(direction, msg, address)
            except Exception:
                logger.exception("message tracer failed")

    def add_activity_listener(self, cb: Callable[[Peer], None]) -> None:
        """Call ``cb(peer)`` on every valid CoAP datagram received (queue mode wake-ups)."""
        self._listeners.append(cb)

    def remove_activity_listener(self, cb: Callable[[Peer], None]) -> None:
        self._listeners.remove(cb)

    async def close(self) -> None:
        """Stop serving; pending requests and observations fail with EndpointClosed."""
        if self._closed:
            return
        if self._flush_pending:
            self._flush()  # answers of handlers that finished this loop turn
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        error = EndpointClosed("endpoint closed")
        self._exchanges.fail_all(error)
        self._pending.clear()
        self._client_observations.clear()
        for fut, (coro, ctx, callback) in list(self._parked.items()):
            # Cancelled at the await it is parked on, as the cancel of its Task would do.
            fut.remove_done_callback(callback)
            self._continue_in_task(coro, ctx, eager=False).cancel()
        self._parked.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._transport is not None:
            self._transport.close()
            await self._lost

    async def __aenter__(self) -> Endpoint:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ pump

    def _connection_lost(self) -> None:
        if not self._lost.done():
            self._lost.set_result(None)

    def _datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if self._closed:
            return
        if len(addr) != 2:
            addr = (addr[0], addr[1])
        traffic = self.traffic
        traffic.datagrams_received += 1
        traffic.bytes_received += len(data)
        now = self._loop.time()
        engine = self._engine
        security = self._security
        try:
            if security is None:
                if self._tracers:
                    self._trace("in", data, addr)
                if engine.receive_datagram(data, addr, now) and self._listeners:
                    self._notify_activity(engine.plain_peer(addr))
            else:
                for plaintext, peer in security.receive_datagram(data, addr, now):
                    if self._tracers:
                        self._trace("in", plaintext, peer.address)
                    if (
                        engine.receive_datagram(plaintext, peer.address, now, peer.identity)
                        and self._listeners
                    ):
                        self._notify_activity(peer)
        except Exception:
            # Nothing a peer sends may stop the endpoint.
            logger.exception("failed to process a datagram from %s", addr)
        if not self._batch_reads:
            try:
                self._pump(now)
            except Exception:
                logger.exception("failed to dispatch after a datagram from %s", addr)
        elif not self._flush_pending:
            # One pump per loop turn for every datagram read in it (uvloop reads up to 32
            # a wake-up), not one each: their requests are dispatched and their answers
            # leave together, once this turn's reads are done. Answered one by one, each
            # answer woke its sender on its own and each pump re-armed the timer: a storm
            # of Registers on the memory store cost 34 us of CPU a request, 21 us so (the
            # SQLite store's answers were already sent a commit at a time).
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    def _notify_activity(self, peer: Peer) -> None:
        for cb in self._listeners:
            try:
                cb(peer)
            except Exception:
                logger.exception("activity listener failed")

    def _pump(self, now: float) -> None:
        """Dispatch engine (and security) events, send datagrams, re-arm the timer."""
        engine = self._engine
        if self._security is not None:
            self._pump_secure(now)
            return
        while True:
            event = engine.next_event()
            if event is None:
                break
            self._dispatch(event)
        out = engine.datagrams_to_send(now)
        transport = self._transport
        if out and transport is not None and not self._closed:
            if self._tracers:
                for data, address in out:
                    self._trace("out", data, address)
            sock = self._sock
            traffic = self.traffic
            for data, address in out:
                # Straight to the socket: the transport's sendto costs more per
                # call; it only takes over when the kernel pushes back.
                if sock is None:
                    transport.sendto(data, address)
                else:
                    try:
                        sock.sendto(data, address)
                    except (BlockingIOError, InterruptedError):
                        transport.sendto(data, address)
                    except OSError as exc:
                        logger.debug("sendto %s failed: %s", address, exc)
                        continue
                traffic.datagrams_sent += 1
                traffic.bytes_sent += len(data)
        self._arm_timer()

    def _pump_secure(self, now: float) -> None:
        """Like :meth:`_pump`, with the layer in between.

        Handing plaintext to the layer can itself produce events (a refused
        handshake fails at once), so engine and layer are drained in turn
        until neither has anything left.
        """
        engine = self._engine
        security = self._security
        assert security is not None
        for _ in range(100):
            moved = False
            while (event := engine.next_event()) is not None:
                moved = True
                self._dispatch(event)
            while (sec_event := security.next_event()) is not None:
                moved = True
                self._security_event(sec_event, now)
            out = engine.datagrams_to_send(now)
            if out and not self._closed:
                moved = True
                for data, address in out:
                    if self._tracers:
                        self._trace("out", data, address)
                    security.send(data, address, now)
            if not moved:
                break
        transport = self._transport
        if transport is not None and not self._closed:
            traffic = self.traffic
            for data, address in security.datagrams_to_send():
                traffic.datagrams_sent += 1
                traffic.bytes_sent += len(data)
                transport.sendto(data, address)
        self._arm_timer()

    def _arm_timer(self) -> None:
        when = self._engine.get_timer()
        security = self._security
        if security is not None:
            sec = security.get_timer()
            if sec is not None and (when is None or sec < when):
                when = sec
        if when is None or self._closed:
            return
        current = self._timer_at
        if current is not None and current <= when:
            return  # an earlier (or equal) wake-up is already set; it re-arms
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        if self._closed:
            return
        now = self._loop.time()
        try:
            self._engine.handle_timer(now)
            if self._security is not None:
                self._security.handle_timer(now)
        except Exception:
            logger.exception("timer processing failed")
        self._pump(now)

    def _dispatch(self, event: object) -> None:
        if type(event) is RequestReceived:
            self._start_handler(event)
        else:
            self._route(event)

    def _security_event(self, event: object, now: float) -> None:
        if isinstance(event, HandshakeFailed):
            self.handshakes_failed += 1
            logger.info("secure session with %s failed: %s", event.address, event.reason)
            self._engine.fail_peer(
                event.address,
                SecureConnectionFailed(
                    f"DTLS handshake with {event.address} failed: {event.reason}"
                ),
                now,
            )
        elif isinstance(event, SessionClosed):
            logger.debug("secure session with %s closed: %s", event.address, event.reason)
        elif isinstance(event, HandshakeCompleted):
            self.handshakes_completed += 1
            logger.debug("secure session with %s established", event.address)

    # ------------------------------------------------------------------ handlers

    def _start_handler(self, event: RequestReceived) -> None:
        request = IncomingRequest(self, event.request_id, event.message, event.peer)
        handler = self._handler
        if handler is None:
            self._engine.respond(event.request_id, _NOT_FOUND, self._loop.time())
            return
        try:
            pending = handler(request)  # a coroutine function's body does not run yet
        except Exception:
            logger.exception("handler failed for %r", request)
            pending = _INTERNAL_ERROR
        if isinstance(pending, (Message, NoResponse)):
            # Answered on the spot: the pump this dispatch runs in sends it.
            self._answer(request, pending)
            return
        if isinstance(pending, Later):
            # Answered by a callback (a durable Register, from its batch's commit).
            if pending.done:
                self._answer(request, pending.result())
            else:
                pending.then(functools.partial(self._answer_later, request))
            return
        if self._inline:
            self._start_inline(self._serve(request, pending))
            return
        if sys.version_info >= (3, 12) and self._eager:
            # Eager start: the Task runs its first step right here, as the
            # current task, so asyncio.timeout() and wait_for() work from the
            # handler's first line.  Most handlers answer without suspending:
            # their Task is done before this returns and never goes through
            # the event loop; the pump this dispatch runs in sends the answer.
            outer = self._in_eager_step
            self._in_eager_step = True
            try:
                task = asyncio.Task(
                    self._serve(request, pending), loop=self._loop, eager_start=True
                )
            finally:
                self._in_eager_step = outer
            if not task.done():
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            return
        self._spawn(self._serve(request, pending))

    def _start_inline(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run the first step of ``coro`` (a :meth:`_serve`) here, outside any Task.

        Python 3.11 has no eager tasks: a Task per request costs its object,
        its registration and a loop iteration before the handler even starts,
        for handlers (the registrar on a memory store) that answer at once.
        """
        ctx = contextvars.copy_context()
        outer = self._in_eager_step
        self._in_eager_step = True  # the pump this dispatch runs in sends the answer
        try:
            yielded = ctx.run(coro.send, None)
        except StopIteration:
            return
        except asyncio.CancelledError:
            return  # the handler cancelled itself: as its Task would, it ends unanswered
        finally:
            self._in_eager_step = outer
        self._park(coro, ctx, yielded)

    def _park(
        self, coro: Coroutine[Any, Any, None], ctx: contextvars.Context, yielded: object
    ) -> None:
        """Wait for the future a suspended inline handler awaits, then step it on, still inline.

        Every step of an inline handler runs outside a Task, its later steps
        included (as its first one always did): a handler resumed from the
        group commit of SQLite, for a hundred registrations at once, costs no
        Task each. A handler that needs a Task (``asyncio.timeout``) does not
        belong on an inline endpoint; a bare yield hands it to one.
        """
        if (
            isinstance(yielded, asyncio.Future)
            and yielded._asyncio_future_blocking
            and yielded.get_loop() is self._loop
        ):
            yielded._asyncio_future_blocking = False  # what a Task does with it
            fut: asyncio.Future[Any] = yielded

            def resume(_: object) -> None:
                if self._parked.pop(fut, None) is not None:  # else close() took it over
                    self._resume_inline(coro, ctx)

            self._parked[fut] = (coro, ctx, resume)
            fut.add_done_callback(resume)
            return
        # A bare yield (asyncio.sleep(0)) or anything else: a Task takes it from here.
        self._continue_in_task(coro, ctx)

    def _resume_inline(self, coro: Coroutine[Any, Any, None], ctx: contextvars.Context) -> None:
        """The next step of a parked handler whose future is done (its result, or its error,
        is what the ``await`` then returns or raises, as in a Task's step)."""
        try:
            yielded = ctx.run(coro.send, None)
        except StopIteration:
            return
        except asyncio.CancelledError:
            return
        self._park(coro, ctx, yielded)

    def _continue_in_task(
        self, coro: Coroutine[Any, Any, None], ctx: contextvars.Context, *, eager: bool = True
    ) -> asyncio.Task[None]:
        """A Task for the rest of a suspended handler (whose awaited future is done)."""
        if eager and sys.version_info >= (3, 12):
            # The future's callback resumes it at once, inside this callback
            # (which must not run in ``ctx``: the eager step enters it).
            task = asyncio.Task(coro, loop=self._loop, context=ctx, eager_start=True)
        else:
            task = self._loop.create_task(coro, context=ctx)
        if not task.done():
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return task

    def _flush(self) -> None:
        """Dispatch the datagrams read during this loop turn, and send what they and the
        handlers that finished in it answered."""
        self._flush_pending = False
        if self._closed:
            return
        try:
            # What the handlers queued to gather (the SQLite store's group commit) leaves
            # as this dispatch ends, not a loop iteration later (see coap.dispatch_end).
            with dispatching():
                self._pump(self._loop.time())
        except Exception:
            logger.exception("failed to send the handlers' answers")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _checked(response: object) -> Message | None:
        """The handler's response, None for NO_RESPONSE; TypeError for anything else."""
        if type(response) is Message and is_response_code(response.code):
            return response
        if response is NO_RESPONSE:
            return None
        if not isinstance(response, Message) or not response.is_response:
            raise TypeError(f"handler returned {response!r}, not a response Message")
        return response

    def _answer(self, request: IncomingRequest, result: object) -> None:
        """Answer with a handler's immediate result (5.00 when it is no response Message)."""
        try:
            response = self._checked(result)
        except TypeError:
            logger.exception("handler failed for %r", request)
            response = _INTERNAL_ERROR
        if response is None:
            self._engine.decline(request._request_id)
        else:
            self._engine.respond(request._request_id, response, self._loop.time())

    def _answer_later(self, request: IncomingRequest, result: object) -> None:
        """Send the answer of a handler that did not answer on the spot (awaited, or a
        :class:`Later`), with the others of this loop turn."""
        if self._closed:
            return
        self._answer(request, result)
        if not self._in_eager_step and not self._flush_pending:
            # One pump per loop turn for all the handlers answering in it, not one each.
            self._flush_pending = True
            self._loop.call_soon(self._flush)

    async def _serve(self, request: IncomingRequest, pending: Awaitable[object]) -> None:
        """Await the handler's answer for ``request`` (inline or in a Task) and send it."""
        try:
            result = await pending
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("handler failed for %r", request)
            result = _INTERNAL_ERROR
        self._answer_later(request, result)

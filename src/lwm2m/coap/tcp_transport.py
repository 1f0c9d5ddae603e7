"""CoAP over TCP and TLS for asyncio: the roles' endpoint interface over streams.

A thin pump around :class:`~lwm2m.coap.tcp_connection.TcpConnection`, one per
stream: bytes read go into the connection (through the optional TLS session),
its output is written, its one timer becomes a ``loop.call_at``, its events
resolve futures or start handler tasks.  Protocol decisions live in the
connection.

:class:`TcpEndpoint` offers what :class:`lwm2m.coap.endpoint.Endpoint` offers
the roles (``request``, ``observe``, ``ping``, activity listeners, message
tracers, a handler for incoming requests), so a role picks the transport and
nothing else changes.  Addresses name connections:

* a *listening* endpoint (server, bootstrap server) reaches a peer only over
  the connection the peer opened; a request to an address without one raises
  :class:`NotConnected` at once (the role decides to wait for the device);
* a *connecting* endpoint (client) opens a connection on the first request
  to an address and reopens it after it closed.

Connections are kept while idle (keep-alive Ping per :class:`TcpConfig`) and
bounded in number: beyond ``max_connections`` a new one is aborted with a
diagnostic.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import socket
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, cast

from lwm2m.coap.codes import Code
from lwm2m.coap.endpoint import (
    NO_RESPONSE,
    ClientObservation,
    Endpoint,
    Handler,
    IncomingRequest,
    MessageTracer,
    NoResponse,
    ServerObservation,
)
from lwm2m.coap.errors import (
    CoapError,
    EndpointClosed,
    ObservationCancelled,
    RequestTimeout,
    SecureConnectionFailed,
)
from lwm2m.coap.events import (
    Event,
    RequestReceived,
)
from lwm2m.coap.exchanges import Exchanges
from lwm2m.coap.message import Message
from lwm2m.coap.peer import Address, Peer, PeerIdentity, normalize_address
from lwm2m.coap.tcp_connection import (
    ConnectionClosed,
    ConnectionLost,
    PongReceived,
    TcpConfig,
    TcpConnection,
)
from lwm2m.coap.traffic import TrafficCounter

__all__ = ["ConnectionLost", "NotConnected", "StreamSecurity", "TcpEndpoint", "TlsSessionError"]

logger = logging.getLogger(__name__)

_INTERNAL_ERROR = Message(Code.INTERNAL_SERVER_ERROR)
_NOT_FOUND = Message(Code.NOT_FOUND)

#: No answer within this long fails a request when the caller gives no timeout
#: (RFC 7252 MAX_TRANSMIT_WAIT, what a UDP request would wait at most).
DEFAULT_REQUEST_TIMEOUT_S = 93.0


class NotConnected(CoapError):
    """A listening endpoint has no connection from that address (the device must reconnect)."""


class TlsSessionError(CoapError):
    """The TLS session failed (handshake refused, bad record, close alert)."""


class StreamSession(Protocol):
    """A TLS session over memory buffers (see :mod:`lwm2m.coap.tls`)."""

    established: bool
    peer_identity: PeerIdentity | None

    def receive(self, data: bytes) -> bytes:
        """Ciphertext in, plaintext out; raises TlsSessionError."""
        ...

    def send(self, data: bytes) -> None: ...

    def data_to_send(self) -> bytes: ...

    def start(self) -> None:
        """Begin the handshake (a client writes its ClientHello)."""
        ...


class StreamSecurity(Protocol):
    """Builds one TLS session per stream."""

    def session(self, server_side: bool, address: Address) -> StreamSession: ...


class TcpEndpoint:
    """CoAP over TCP (or TLS) with the interface of :class:`~lwm2m.coap.endpoint.Endpoint`."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        handler: Handler | None,
        *,
        config: TcpConfig,
        listening: bool,
        security: StreamSecurity | None,
        rng: random.Random,
        max_connections: int,
        traffic: TrafficCounter | None,
        local_host: str | None,
    ) -> None:
        self._loop = loop
        self._handler = handler
        self.config = config
        self.listening = listening
        self._security = security
        self._rng = rng
        self.max_connections = max_connections
        self.traffic = traffic if traffic is not None else TrafficCounter()
        self._local_host = local_host
        self._ids = itertools.count(1)
        self._links: dict[Address, _Link] = {}
        #: every open socket, with or without a connection (TLS handshake, refused)
        self._streams: set[_Stream] = set()
        self._connecting: dict[Address, asyncio.Future[_Link]] = {}
        self._exchanges = Exchanges()
        self._pending = self._exchanges.pending
        self._client_observations = self._exchanges.client_observations
        self._server_observations = self._exchanges.server_observations
        self._route = self._exchanges.route
        self._pings: dict[int, asyncio.Future[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._listeners: list[Callable[[Peer], None]] = []
        self._connection_listeners: list[Callable[[Peer, bool], None]] = []
        self._tracers: list[MessageTracer] = []
        self._server: asyncio.Server | None = None
        self._closed = False
        self.handshakes_completed = 0
        self.handshakes_failed = 0
        self.local_address: Address = ("", 0)

    @classmethod
    async def listen(
        cls,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        handler: Handler | None = None,
        config: TcpConfig | None = None,
        security: StreamSecurity | None = None,
        max_connections: int = 10_000,
        rng: random.Random | None = None,
        traffic: TrafficCounter | None = None,
    ) -> TcpEndpoint:
        """Listen on (host, port) for peers that connect (server, bootstrap server)."""
        loop = asyncio.get_running_loop()
        endpoint = cls(
            loop,
            handler,
            config=config or TcpConfig(),
            listening=True,
            security=security,
            rng=rng or random.Random(),
            max_connections=max_connections,
            traffic=traffic,
            local_host=None,
        )
        endpoint._server = await loop.create_server(
            lambda: _Stream(endpoint, server_side=True), host, port, reuse_address=True
        )
        endpoint.local_address = normalize_address(endpoint._server.sockets[0].getsockname())
        return endpoint

    @classmethod
    def connector(
        cls,
        *,
        handler: Handler | None = None,
        config: TcpConfig | None = None,
        security: StreamSecurity | None = None,
        local_host: str | None = None,
        rng: random.Random | None = None,
        traffic: TrafficCounter | None = None,
    ) -> TcpEndpoint:
        """An endpoint that connects to peers on demand (client); must run in a loop."""
        return cls(
            asyncio.get_running_loop(),
            handler,
            config=config or TcpConfig(),
            listening=False,
            security=security,
            rng=rng or random.Random(),
            max_connections=1 << 30,
            traffic=traffic,
            local_host=local_host,
        )

    @property
    def closed(self) -> bool:
        return self._closed

    def is_connected(self, address: Address) -> bool:
        """A connection with ``address`` is open (and its CSM exchange started)."""
        link = self._links.get(normalize_address(address))
        return link is not None and not link.conn.closed

    @property
    def connection_count(self) -> int:
        return len(self._links)

    def peer(self, address: Address) -> Peer | None:
        """The peer (with its TLS identity) connected from ``address``."""
        link = self._links.get(normalize_address(address))
        return None if link is None else link.conn.peer

    # ------------------------------------------------------------------ public API

    async def request(
        self, message: Message, address: Address, *, timeout: float | None = None
    ) -> Message:
        """Send a request over the connection with ``address``; the final response.

        Raises NotConnected (listening, no connection), EndpointClosed (the
        connection closed first), RequestTimeout, SecureConnectionFailed.
        """
        link = await self._link(address)
        request_id = link.conn.send_request(message, self._loop.time())
        return await self._await_response(link, request_id, timeout)

    def observe(
        self, message: Message, address: Address, *, timeout: float | None = None
    ) -> ClientObservation:
        """Register an observation over the open connection with ``address``."""
        if self._closed:
            raise EndpointClosed("endpoint closed")
        link = self._links.get(normalize_address(address))
        if link is None or link.conn.closed:
            raise NotConnected(f"no connection with {address}")
        request_id = link.conn.send_request(message, self._loop.time(), observe=True)
        observation = _TcpClientObservation(self, link, request_id, timeout)
        self._client_observations[request_id] = observation
        self._pump(link)
        return observation

    async def ping(self, address: Address, timeout: float | None = None) -> bool:
        """Ping (7.02): True once the Pong arrives, False without one within ``timeout``."""
        link = await self._link(address)
        ping_id = link.conn.send_ping()
        fut: asyncio.Future[None] = self._loop.create_future()
        self._pings[ping_id] = fut
        self._pump(link)
        try:
            await asyncio.wait_for(fut, timeout or DEFAULT_REQUEST_TIMEOUT_S)
        except TimeoutError:
            return False
        finally:
            self._pings.pop(ping_id, None)
        return True

    async def disconnect(self, address: Address, diagnostic: str = "") -> None:
        """Release (7.04) the connection with ``address``, if any."""
        link = self._links.get(normalize_address(address))
        if link is not None:
            link.conn.release(diagnostic)
            self._pump(link)

    def set_orphan_notification_handler(self, cb: Callable[[Message, Peer], bool] | None) -> None:
        """Accepted for interface parity: over TCP an unknown token is simply dropped.

        Observations do not outlive their connection, so there is nothing to
        adopt after a restart.
        """

    def adopt_observation(
        self, request: Message, address: Address, token: bytes, notification: Message
    ) -> ClientObservation:
        raise ValueError("observations do not survive a TCP connection")

    def add_message_tracer(self, cb: MessageTracer) -> None:
        """``cb(direction, message, address)`` for every request and response (signals excluded)."""
        self._tracers.append(cb)
        for link in self._links.values():
            self._trace_link(link)

    def remove_message_tracer(self, cb: MessageTracer) -> None:
        self._tracers.remove(cb)
        if not self._tracers:
            for link in self._links.values():
                link.conn.tracer = None

    def _trace_link(self, link: _Link) -> None:
        """Let ``link``'s connection report its messages to the tracers (costs nothing without)."""
        if not self._tracers or link.conn.tracer is not None:
            return
        tracers = self._tracers
        address = link.conn.peer.address

        def trace(direction: str, message: Message) -> None:
            for cb in list(tracers):
                try:
                    cb(direction, message, address)
                except Exception:
                    logger.exception("message tracer failed")

        link.conn.tracer = trace

    def add_activity_listener(self, cb: Callable[[Peer], None]) -> None:
        """``cb(peer)`` on every message received (as for UDP)."""
        self._listeners.append(cb)

    def remove_activity_listener(self, cb: Callable[[Peer], None]) -> None:
        self._listeners.remove(cb)

    def add_connection_listener(self, cb: Callable[[Peer, bool], None]) -> None:
        """``cb(peer, up)``: a connection became usable (True) or closed (False)."""
        self._connection_listeners.append(cb)

    async def close(self) -> None:
        """Release every connection, stop listening; pending requests fail.

        Bounded: a stream whose peer does not read what is left to write
        (or that is still in its TLS handshake) is aborted, not waited for.
        """
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        for link in list(self._links.values()):
            link.conn.release("endpoint closing")
            self._pump(link)  # writes the Release, then closes the stream
        for stream in list(self._streams):
            transport = stream.transport
            if transport is not None and transport.get_write_buffer_size():
                transport.abort()
            else:
                stream.close()
        for fut in self._connecting.values():
            fut.cancel()
        error = EndpointClosed("endpoint closed")
        self._exchanges.fail_all(error)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> TcpEndpoint:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ connections

    async def _link(self, address: Address) -> _Link:
        if self._closed:
            raise EndpointClosed("endpoint closed")
        address = normalize_address(address)
        link = self._links.get(address)
        if link is not None and not link.conn.closed:
            return link
        if self.listening:
            raise NotConnected(f"no connection from {address[0]}:{address[1]}")
        pending = self._connecting.get(address)
        if pending is None:
            pending = self._loop.create_future()
            self._connecting[address] = pending
            self._spawn(self._connect(address, pending))
        return await asyncio.shield(pending)

    async def _connect(self, address: Address, done: asyncio.Future[_Link]) -> None:
        try:
            local = (self._local_host, 0) if self._local_host else None
            stream = _Stream(self, server_side=False, connect_to=address)
            await self._loop.create_connection(
                lambda: stream, address[0], address[1], local_addr=local
            )
            link = await stream.ready
            if not done.done():
                done.set_result(link)
        except (OSError, CoapError) as exc:
            if not done.done():
                done.set_exception(
                    exc if isinstance(exc, CoapError) else EndpointClosed(f"cannot connect: {exc}")
                )
                done.exception()
        finally:
            self._connecting.pop(address, None)

    def _opened(self, stream: _Stream, peer: Peer) -> _Link | None:
        """A stream is usable (TLS done): make its connection, or refuse it."""
        if self._closed or (self.listening and len(self._links) >= self.max_connections):
            return None
        conn = TcpConnection(
            peer,
            self.config,
            self._rng,
            self._loop.time(),
            ids=self._ids,
        )
        old = self._links.get(peer.address)
        link = _Link(conn, stream)
        self._links[peer.address] = link
        if old is not None:
            old.conn.abort("replaced by a new connection")
            self._pump(old)
        for cb in self._connection_listeners:
            try:
                cb(peer, True)
            except Exception:
                logger.exception("connection listener failed")
        return link

    def _pump(self, link: _Link) -> None:
        conn = link.conn
        while (event := conn.next_event()) is not None:
            self._dispatch(link, event)
        data = conn.data_to_send()
        if data:
            link.stream.write(data)
        if conn.closed:
            self._forget(link)
            link.stream.close()
            return
        deadline = conn.get_timer()
        if deadline != link.timer_at:
            if link.timer is not None:
                link.timer.cancel()
                link.timer = None
            link.timer_at = deadline
            if deadline is not None:
                link.timer = self._loop.call_at(deadline, self._on_timer, link)

    def _on_timer(self, link: _Link) -> None:
        link.timer = None
        link.timer_at = None
        link.conn.handle_timer(self._loop.time())
        self._pump(link)

    def _forget(self, link: _Link) -> None:
        if link.timer is not None:
            link.timer.cancel()
            link.timer = None
        if self._links.get(link.conn.peer.address) is link:
            del self._links[link.conn.peer.address]
            for cb in self._connection_listeners:
                try:
                    cb(link.conn.peer, False)
                except Exception:
                    logger.exception("connection listener failed")

    def _dispatch(self, link: _Link, event: Event) -> None:
        if type(event) is RequestReceived:
            self._start_handler(link, event)
        elif self._route(event):
            pass
        elif isinstance(event, PongReceived):
            ping = self._pings.pop(event.ping_id, None)
            if ping is not None and not ping.done():
                ping.set_result(None)
        elif isinstance(event, ConnectionClosed):
            level = logging.INFO if event.aborted else logging.DEBUG
            logger.log(level, "connection with %s closed: %s", link.conn.peer.address, event.reason)

    def _received(self, link: _Link, data: bytes) -> None:
        self.traffic.bytes_received += len(data)
        conn = link.conn
        conn.receive_data(data, self._loop.time())
        if self._listeners and not conn.closed:
            for cb in self._listeners:
                try:
                    cb(conn.peer)
                except Exception:
                    logger.exception("activity listener failed")
        self._pump(link)

    def _lost(self, link: _Link, reason: str) -> None:
        link.conn.connection_lost(reason)
        self._pump(link)

    # ------------------------------------------------------------------ handlers

    async def _await_response(self, link: _Link, request_id: int, timeout: float | None) -> Message:
        fut: asyncio.Future[Message] = self._loop.create_future()
        self._pending[request_id] = fut
        self._pump(link)
        wait = DEFAULT_REQUEST_TIMEOUT_S if timeout is None else timeout
        try:
            return await asyncio.wait_for(fut, wait)
        except TimeoutError:
            raise RequestTimeout(f"no response within {wait} s") from None
        finally:
            if self._pending.pop(request_id, None) is not None and not link.conn.closed:
                link.conn.cancel_request(request_id)

    def _start_handler(self, link: _Link, event: RequestReceived) -> None:
        request = _TcpIncomingRequest(self, link, event.request_id, event.message, event.peer)
        handler = self._handler
        if handler is None:
            link.conn.respond(event.request_id, _NOT_FOUND, self._loop.time())
            return
        self._spawn(self._serve(link, request, handler))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, link: _Link, request: _TcpIncomingRequest, handler: Handler) -> None:
        try:
            answer = handler(request)
            response: object = answer if isinstance(answer, (Message, NoResponse)) else await answer
            if response is not NO_RESPONSE and (
                not isinstance(response, Message) or not response.is_response
            ):
                raise TypeError(f"handler returned {response!r}, not a response Message")
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("handler failed for %r", request)
            response = _INTERNAL_ERROR
        if link.conn.closed:
            return
        if response is NO_RESPONSE:
            link.conn.decline(request.request_id)
        else:
            link.conn.respond(request.request_id, response, self._loop.time())
        self._pump(link)


class _Link:
    """One open connection: the protocol state, its stream, its timer."""

    __slots__ = ("conn", "stream", "timer", "timer_at")

    def __init__(self, conn: TcpConnection, stream: _Stream) -> None:
        self.conn = conn
        self.stream = stream
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at: float | None = None

    @property
    def transport(self) -> asyncio.Transport:
        assert self.stream.transport is not None
        return self.stream.transport


class _Stream(asyncio.Protocol):
    """Bytes of one socket, through TLS when the endpoint has security."""

    def __init__(
        self, endpoint: TcpEndpoint, *, server_side: bool, connect_to: Address | None = None
    ) -> None:
        self.endpoint = endpoint
        self.server_side = server_side
        self.transport: asyncio.Transport | None = None
        self.link: _Link | None = None
        self.tls: StreamSession | None = None
        self.address: Address = connect_to or ("", 0)
        self.ready: asyncio.Future[_Link] = endpoint._loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.endpoint._streams.add(self)
        self.address = normalize_address(transport.get_extra_info("peername"))
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        security = self.endpoint._security
        if security is None:
            self._open(Peer(self.address, transport="tcp"))
            return
        self.tls = security.session(self.server_side, self.address)
        self.tls.start()
        self._flush_tls()

    def data_received(self, data: bytes) -> None:
        endpoint = self.endpoint
        if self.tls is None:
            if self.link is not None:
                endpoint._received(self.link, data)
            return
        was_established = self.tls.established
        try:
            plaintext = self.tls.receive(data)
        except TlsSessionError as exc:
            self._tls_failed(str(exc), during_handshake=not was_established)
            return
        if not was_established and self.tls.established:
            endpoint.handshakes_completed += 1
            self._open(Peer(self.address, self.tls.peer_identity, "tcp"))
        self._flush_tls()
        if plaintext and self.link is not None:
            endpoint._received(self.link, plaintext)

    def eof_received(self) -> bool | None:
        return None  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.endpoint._streams.discard(self)
        if self.link is not None:
            self.endpoint._lost(self.link, str(exc) if exc else "closed by the peer")
        if not self.ready.done():
            self.ready.set_exception(
                SecureConnectionFailed("TLS handshake did not complete")
                if self.tls is not None
                else EndpointClosed("connection lost before it was usable")
            )
            self.ready.exception()

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.tls is not None:
            self.tls.send(data)
            self._flush_tls()
            return
        self.endpoint.traffic.bytes_sent += len(data)
        transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    # Private

    def _open(self, peer: Peer) -> None:
        link = self.endpoint._opened(self, peer)
        if link is None:
            # Refused (connection limit, endpoint closing): say why, then close.
            refusal = TcpConnection(peer, self.endpoint.config, random.Random(0), 0.0)
            refusal.abort("connection limit reached")
            self.write(refusal.data_to_send())
            self.close()
            return
        self.link = link
        self.endpoint._trace_link(link)
        self.endpoint._pump(link)
        if not self.ready.done():
            self.ready.set_result(link)

    def _flush_tls(self) -> None:
        assert self.tls is not None and self.transport is not None
        out = self.tls.data_to_send()
        if out and not self.transport.is_closing():
            self.endpoint.traffic.bytes_sent += len(out)
            self.transport.write(out)

    def _tls_failed(self, reason: str, *, during_handshake: bool) -> None:
        if during_handshake:
            self.endpoint.handshakes_failed += 1
        logger.info("TLS with %s failed: %s", self.address, reason)
        if self.tls is not None:
            self._flush_tls()  # the alert
        if not self.ready.done():
            self.ready.set_exception(SecureConnectionFailed(f"TLS with {self.address}: {reason}"))
            self.ready.exception()
        self.close()


class _TcpIncomingRequest(IncomingRequest):
    """An IncomingRequest whose observation lives on a TCP connection."""

    __slots__ = ("_link", "_tcp", "request_id")

    def __init__(
        self,
        endpoint: TcpEndpoint,
        link: _Link,
        request_id: int,
        message: Message,
        peer: Peer,
    ) -> None:
        super().__init__(cast(Endpoint, endpoint), request_id, message, peer)
        self._tcp = endpoint
        self._link = link
        self.request_id = request_id

    def start_observation(self, on_cancel: Callable[[], None] | None = None) -> ServerObservation:
        if self._observation is not None:
            return self._observation
        obs_id = self._link.conn.start_observation(self.request_id)
        observation = _TcpServerObservation(self._tcp, self._link, obs_id, self.peer, on_cancel)
        self._tcp._server_observations[obs_id] = observation
        self._observation = observation
        return observation


class _TcpServerObservation(ServerObservation):
    """Notifications go down the connection; the stream's delivery counts as acknowledged."""

    __slots__ = ("_link", "_tcp")

    def __init__(
        self,
        endpoint: TcpEndpoint,
        link: _Link,
        obs_id: int,
        peer: Peer,
        on_cancel: Callable[[], None] | None,
    ) -> None:
        super().__init__(cast(Endpoint, endpoint), obs_id, peer, on_cancel)
        self._tcp = endpoint
        self._link = link

    async def notify(self, response: Message, *, confirmable: bool = False) -> None:
        if self.cancelled:
            raise ObservationCancelled(self.reason or "observation cancelled")
        if self._tcp._closed:
            raise EndpointClosed("endpoint closed")
        try:
            self._link.conn.notify(self._id, response, self._tcp._loop.time())
        except KeyError:
            raise ObservationCancelled(self.reason or "observation ended") from None
        if response.code >= 96:
            self._ended("ended with an error notification", call_back=False)
        self._tcp._pump(self._link)

    def cancel(self) -> None:
        if self.cancelled:
            return
        self._link.conn.cancel_observation(self._id)
        self._ended("cancelled locally", call_back=False)


class _TcpClientObservation(ClientObservation):
    """An observation we hold over a connection; it ends when the connection does."""

    def __init__(
        self, endpoint: TcpEndpoint, link: _Link, request_id: int, timeout: float | None
    ) -> None:
        super().__init__(cast(Endpoint, endpoint), request_id, timeout)
        self._tcp = endpoint
        self._link = link

    async def cancel(self, *, active: bool = True, timeout: float | None = None) -> None:
        if not self.active:
            return
        ep = self._tcp
        self._end("cancelled")
        ep._client_observations.pop(self.request_id, None)
        conn = self._link.conn
        established = self._first.done() and not self._first.exception()
        if ep._closed or conn.closed or not active or not established:
            conn.cancel_request(self.request_id)
            return
        dereg_id = conn.deregister_observation(self.request_id)
        if dereg_id is None:
            return
        try:
            await ep._await_response(self._link, dereg_id, timeout)
        except CoapError as exc:
            logger.debug("deregistration of observation %d failed: %s", self.request_id, exc)

"""The LwM2M server: registration interface plus device management and reporting.

:class:`LwM2MServer` composes small parts: the :class:`Registrar` (``/rd``),
:class:`QueueMode`, :class:`Observations`, the stores and the
:class:`~lwm2m.protocol.events.EventBus`. It owns the CoAP endpoints (plain UDP and, when
configured, DTLS) and is the request handler they call.

Every device-management operation is a typed request of
:mod:`lwm2m.server.operations` passed to :meth:`LwM2MServer.send`; the
per-operation methods (:meth:`LwM2MServer.read`, ...) only build the request.
It goes as a CON request to the address the client last registered or
updated from, over the transport it used (DTLS
registrations are reached over DTLS). Errors: :class:`ClientNotFound` for an
unknown endpoint name, :class:`ClientTimeout`, :class:`RemoteError` with the
client's code for 4.xx/5.xx answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from lwm2m.coap.codes import Code, is_success_code
from lwm2m.coap.endpoint import SERVER_RECEIVE_BUFFER, Handler
from lwm2m.coap.errors import CoapError, RequestTimeout, ResetReceived
from lwm2m.coap.message import Message
from lwm2m.coap.peer import Address, Peer
from lwm2m.coap.tasks import cancel_and_wait
from lwm2m.formats.errors import FormatError
from lwm2m.formats.media import ContentFormat
from lwm2m.model.nodes import LwM2MObject, Node, ObjectInstance, Value
from lwm2m.model.path import Path
from lwm2m.model.registry import ModelRegistry, default_registry
from lwm2m.protocol.attributes import AttributeUpdate
from lwm2m.protocol.errors import RemoteError
from lwm2m.protocol.handshake_failures import tapped
from lwm2m.protocol.refusals import SERVER_REFUSALS, RefusalLog
from lwm2m.server import payloads
from lwm2m.server.attributes_set import Attributes, ServerAttributes
from lwm2m.server.errors import (
    ClientNotFound,
    ClientTimeout,
    InvalidResponse,
    ObservationNotFound,
    QueueFull,
    ServerError,
)
from lwm2m.server.events import SendEvent, ServerEventBus
from lwm2m.server.firmware.coap import URI_SEGMENT, serve_firmware
from lwm2m.server.firmware.repository import FirmwareRepository
from lwm2m.server.observations import Observations, decode_values
from lwm2m.server.operations import (
    CreateRequest,
    CreateResponse,
    DeleteRequest,
    DeleteResponse,
    DiscoverRequest,
    DiscoverResponse,
    ExecuteRequest,
    ExecuteResponse,
    ObserveCompositeRequest,
    ObserveCompositeResponse,
    Observed,
    ObserveRequest,
    ObserveResponse,
    ObservingRequest,
    ReadCompositeRequest,
    ReadCompositeResponse,
    ReadRequest,
    ReadResponse,
    Request,
    Target,
    WriteAttributesRequest,
    WriteAttributesResponse,
    WriteCompositeRequest,
    WriteCompositeResponse,
    WriteRequest,
    WriteResponse,
    observing_request,
)
from lwm2m.server.queue import DEFAULT_AWAKE_TIME_S, DEFAULT_MAX_QUEUED, QueueMode
from lwm2m.server.queued_requests import QueuedRequests, QueuedResult
from lwm2m.server.registrar import (
    DEFAULT_LIFETIME_GRACE_S,
    Registrar,
    RegistrarConfig,
    identity_key,
)
from lwm2m.stores.base import StoreError, Stores
from lwm2m.stores.memory import MemoryStores
from lwm2m.stores.records import ObservationRecord, Registration
from lwm2m.stores.sqlite import SqliteStores

if TYPE_CHECKING:
    from lwm2m.coap.endpoint import MessageTracer
    from lwm2m.coap.tcp_transport import TcpEndpoint

logger = logging.getLogger(__name__)

#: Unknown notification tokens remembered, so their next notification gets RST at once.
_UNKNOWN_TOKENS_KEPT = 4096

PathLike = Path | str
R = TypeVar("R")


class ServerEndpoint(Protocol):
    """The part of :class:`lwm2m.coap.endpoint.Endpoint` the server uses."""

    local_address: Address
    handshakes_completed: int
    handshakes_failed: int

    async def request(
        self, message: Message, address: Address, *, timeout: float | None = None
    ) -> Message: ...

    def observe(
        self, message: Message, address: Address, *, timeout: float | None = None
    ) -> Any: ...

    def add_activity_listener(self, cb: Callable[[Peer], None]) -> None: ...

    def add_message_tracer(self, cb: MessageTracer) -> None: ...

    def remove_message_tracer(self, cb: MessageTracer) -> None: ...

    def set_orphan_notification_handler(
        self, cb: Callable[[Message, Peer], bool] | None
    ) -> None: ...

    def adopt_observation(
        self, request: Message, address: Address, token: bytes, notification: Message
    ) -> Any: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Run-time settings of :class:`LwM2MServer` (built by the command or by tests)."""

    host: str = "127.0.0.1"
    coap_port: int = 5683
    #: DTLS port; used only when ``dtls`` is set. 0 picks a free port.
    coaps_port: int = 5684
    #: A :class:`lwm2m.coap.dtls.DtlsServerConfig`; None disables CoAP over DTLS.
    dtls: Any = None
    lifetime_grace_s: float = DEFAULT_LIFETIME_GRACE_S
    expiry_interval_s: float = 1.0
    awake_time_s: float = DEFAULT_AWAKE_TIME_S
    max_queued: int = DEFAULT_MAX_QUEUED
    #: Default per-request timeout; None leaves it to CoAP retransmission (~93 s).
    request_timeout_s: float | None = None
    require_security_when_known: bool = True
    #: Only endpoints with an entry in the security store may register.
    known_endpoints_only: bool = False
    #: Host name or address devices use to reach this server in firmware Package URIs;
    #: None: the bound host (or, bound to a wildcard, the local address routing to the device).
    public_host: str | None = None
    #: CoAP over TCP (RFC 8323) port; None disables, 0 picks a free port.
    coap_tcp_port: int | None = None
    #: CoAP over TLS port (needs ``dtls``: the same credentials); None disables.
    coaps_tcp_port: int | None = None
    #: Ping an idle TCP/TLS connection after this long (None: never).
    tcp_keepalive_s: float | None = 60.0
    #: Open TCP/TLS connections kept at most, per port; more are aborted.
    tcp_max_connections: int = 10_000
    #: Seconds between INFO summaries of registration activity (counts, not lines).
    summary_interval_s: float = 10.0
    #: Bytes of receive buffer asked for the UDP sockets (None: the system's default).
    udp_receive_buffer: int | None = SERVER_RECEIVE_BUFFER


def _path(p: PathLike) -> Path:
    return p if isinstance(p, Path) else Path.parse(p)


class LwM2MServer:
    """An LwM2M server; use ``async with LwM2MServer(...) as server:`` or start()/stop()."""

    def __init__(
        self,
        stores: Stores | None = None,
        *,
        config: ServerConfig | None = None,
        model: ModelRegistry | None = None,
        clock: Callable[[], float] = time.time,
        firmware: FirmwareRepository | None = None,
    ) -> None:
        self.config = config or ServerConfig()
        #: Firmware images served at ``/fw/{id}`` (None: no firmware repository).
        self.firmware = firmware
        #: Where the web app listens, for ``http://`` Package URIs (set by whoever starts it).
        self.http_address: Address | None = None
        self.stores: Stores = stores if stores is not None else MemoryStores()
        self.model = model if model is not None else default_registry()
        self.clock = clock
        self.events = ServerEventBus()
        self.queue = QueueMode(
            self.events,
            awake_time_s=self.config.awake_time_s,
            max_queued=self.config.max_queued,
            clock=clock,
        )
        #: Requests for sleeping queue-mode clients, in the document store (any node sends them).
        self.queued = QueuedRequests(
            self.stores.documents,
            node_id=str(getattr(self.stores, "node_id", None) or "local"),
            clock=clock,
        )
        self._queue_relay: Any = None
        #: The Write-Attributes accepted by clients, in the document store (every node sees them).
        self.attributes = ServerAttributes(self.stores.documents)
        self.observations = Observations(
            self.stores.observations,
            self.events,
            model=self.model,
            clock=clock,
            on_activity=self._observation_activity,
        )
        #: Refused Registers and failed DTLS handshakes, for the operator (log, metrics, web UI).
        self.refusals = RefusalLog("server", SERVER_REFUSALS, clock=clock)
        self.registrar = Registrar(
            self.stores.registrations,
            self.stores.security,
            self.events,
            config=RegistrarConfig(
                lifetime_grace_s=self.config.lifetime_grace_s,
                require_security_when_known=self.config.require_security_when_known,
                known_endpoints_only=self.config.known_endpoints_only,
            ),
            clock=clock,
            on_removed=self._registration_removed,
            on_contact=self._client_contact,
            refusals=self.refusals,
        )
        self._coap: ServerEndpoint | None = None
        self._coaps: ServerEndpoint | None = None
        self._coap_tcp: TcpEndpoint | None = None
        self._coaps_tcp: TcpEndpoint | None = None
        #: endpoint name -> woken when that client registers or updates (TCP reconnects)
        self._reconnects: dict[str, asyncio.Event] = {}
        #: Tokens of notifications being matched against a shared store, and those it did
        #: not know (refused with RST when they come again).
        self._adopting: set[str] = set()
        self._unknown_tokens: OrderedDict[str, None] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._expiry_task: asyncio.Task[None] | None = None
        self._started = False
        #: The endpoints whose datagrams :meth:`_activity` hears once a registration in
        #: queue mode is held (before, it would have nothing to do for any of them).
        self._activity_sources: list[ServerEndpoint | TcpEndpoint] = []
        self._hearing_activity = False
        self.stores.registrations.watch_queue_mode(self._queue_mode_held)

    @property
    def inline_handlers(self) -> bool:
        """Whether :meth:`handle` may start outside a Task (``Endpoint(inline_handlers=True)``).

        True on the memory and SQLite stores: the first step of every request
        either answers (a memory store never suspends) or suspends on a plain
        future (SQLite's group commit), without needing ``asyncio.current_task()``
        before that. A Redis client sets up timeouts that need a Task.
        """
        return type(self.stores) in (MemoryStores, SqliteStores)

    def counters(self) -> dict[str, float]:
        """Monotonic counters for /metrics (Prometheus ``_total`` names)."""
        secure = self._coaps
        return {
            "dtls_handshakes_total": float(secure.handshakes_completed if secure else 0),
            "dtls_handshake_failures_total": float(secure.handshakes_failed if secure else 0),
            **self.stores.counters(),
        }

    # ================================================================== lifecycle
    async def start(self) -> None:
        """Bind the endpoints and start the lifetime sweep."""
        from lwm2m.coap.endpoint import Endpoint

        if self._started:
            return
        self._coap = await Endpoint.create(
            self.config.host,
            self.config.coap_port,
            handler=self.handle_now,
            inline_handlers=self.inline_handlers,
            receive_buffer=self.config.udp_receive_buffer,
        )
        self._hear(self._coap)
        if self.config.dtls is not None:
            from lwm2m.coap.dtls import DtlsServer

            try:
                self._coaps = await Endpoint.create(
                    self.config.host,
                    self.config.coaps_port,
                    handler=self.handle_now,
                    security=tapped(DtlsServer(self.config.dtls), self.refusals),
                    inline_handlers=self.inline_handlers,
                    receive_buffer=self.config.udp_receive_buffer,
                )
            except BaseException:
                await self._coap.close()
                self._coap = None
                raise
            self._hear(self._coaps)
        try:
            await self._start_tcp(self.handle_now)
        except BaseException:
            for ep in (self._coap, self._coaps):
                if ep is not None:
                    await ep.close()
            self._coap = self._coaps = None
            raise
        await self._after_start()

    async def start_with(
        self,
        coap: ServerEndpoint,
        coaps: ServerEndpoint | None = None,
        *,
        tcp_handler: Handler | None = None,
    ) -> None:
        """Start on endpoints created by the caller (their handler must call :meth:`handle`).

        The TCP/TLS ports of the config are opened here, with ``tcp_handler``
        (default :meth:`handle`) as their handler.
        """
        self._coap = coap
        self._coaps = coaps
        self._hear(coap)
        if coaps is not None:
            self._hear(coaps)
        await self._start_tcp(tcp_handler or self.handle_now)
        await self._after_start()

    async def _start_tcp(self, handler: Handler) -> None:
        """Listen for CoAP over TCP and TLS (RFC 8323) as the config says."""
        from lwm2m.coap.tcp_connection import TcpConfig
        from lwm2m.coap.tcp_transport import TcpEndpoint

        config = self.config
        tcp_config = TcpConfig(keepalive_s=config.tcp_keepalive_s)
        if config.coap_tcp_port is not None:
            self._coap_tcp = await TcpEndpoint.listen(
                config.host,
                config.coap_tcp_port,
                handler=handler,
                config=tcp_config,
                max_connections=config.tcp_max_connections,
            )
            self._hear(self._coap_tcp)
        if config.coaps_tcp_port is not None:
            if config.dtls is None:
                raise ValueError("coaps+tcp needs credentials: set the dtls config too")
            from lwm2m.coap.tls import TlsServer

            try:
                self._coaps_tcp = await TcpEndpoint.listen(
                    config.host,
                    config.coaps_tcp_port,
                    handler=handler,
                    config=tcp_config,
                    security=TlsServer(config.dtls),
                    max_connections=config.tcp_max_connections,
                )
            except BaseException:
                if self._coap_tcp is not None:
                    await self._coap_tcp.close()
                    self._coap_tcp = None
                raise
            self._hear(self._coaps_tcp)

    async def _after_start(self) -> None:
        assert self._coap is not None
        await self._start_queue_relay()
        self._coap.set_orphan_notification_handler(self._orphan_plain)
        if self._coaps is not None:
            self._coaps.set_orphan_notification_handler(self._orphan_secure)
        self._started = True
        loop = asyncio.get_running_loop()
        self._expiry_task = loop.create_task(self._expiry_loop(), name="lwm2m expiry")
        logger.info(
            "LwM2M server listening on coap://%s:%d%s (%d registrations restored)",
            *self.coap_address,
            "".join(
                f" and {scheme}://{address[0]}:{address[1]}"
                for scheme, address in (
                    ("coaps", self.coaps_address),
                    ("coap+tcp", self.coap_tcp_address),
                    ("coaps+tcp", self.coaps_tcp_address),
                )
                if address is not None
            ),
            len(self.stores.registrations),
        )

    async def stop(self) -> None:
        """Stop serving; the stores stay open (the caller owns them)."""
        if not self._started:
            return
        self._started = False
        await cancel_and_wait([self._expiry_task, *self._tasks])
        self._tasks.clear()
        self.queue.close()
        self.queued.close()
        if self._queue_relay is not None:
            await self._queue_relay.close()
            self._queue_relay = None
        await self.observations.close()
        for ep in (self._coap, self._coaps, self._coap_tcp, self._coaps_tcp):
            if ep is not None:
                await ep.close()
        self._activity_sources.clear()
        self.events.close()
        self.refusals.close()

    async def __aenter__(self) -> LwM2MServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def coap_address(self) -> Address:
        if self._coap is None:
            raise RuntimeError("server not started")
        return self._coap.local_address

    @property
    def coaps_address(self) -> Address | None:
        return None if self._coaps is None else self._coaps.local_address

    @property
    def coap_tcp_address(self) -> Address | None:
        """Where coap+tcp:// clients connect (None: TCP disabled)."""
        return None if self._coap_tcp is None else self._coap_tcp.local_address

    @property
    def coaps_tcp_address(self) -> Address | None:
        """Where coaps+tcp:// clients connect (None: TLS disabled)."""
        return None if self._coaps_tcp is None else self._coaps_tcp.local_address

    def is_connected(self, endpoint: str) -> bool:
        """A TCP/TLS client has its connection open (always True over UDP)."""
        reg = self._registration(endpoint)
        tcp = self._tcp_endpoint_for(reg)
        return tcp is None or tcp.is_connected(reg.address)

    def add_message_tracer(self, cb: MessageTracer) -> None:
        """Pass ``cb`` to the CoAP endpoints' ``add_message_tracer`` (a CoAP message log)."""
        for ep in (self._coap, self._coaps, self._coap_tcp, self._coaps_tcp):
            if ep is not None:
                ep.add_message_tracer(cb)

    def remove_message_tracer(self, cb: MessageTracer) -> None:
        """Undo :meth:`add_message_tracer`; a tracer never added is ignored."""
        for ep in (self._coap, self._coaps, self._coap_tcp, self._coaps_tcp):
            if ep is not None:
                with contextlib.suppress(ValueError):
                    ep.remove_message_tracer(cb)

    # ================================================================== registrations
    def registrations(self) -> list[Registration]:
        return self.stores.registrations.list()

    def get_registration(self, endpoint: str) -> Registration | None:
        """From this node's memory: in a cluster (``stores.registrations.partial``) a miss
        proves nothing, and :meth:`fetch_registration` is the answer for the fleet."""
        return self.stores.registrations.get_by_endpoint(endpoint)

    async def fetch_registration(self, endpoint: str) -> Registration | None:
        """The registration of ``endpoint`` wherever the fleet holds it (Redis on a miss)."""
        return await self.stores.registrations.fetch_by_endpoint(endpoint)

    def is_awake(self, endpoint: str) -> bool:
        reg = self._registration(endpoint)
        return self.queue.is_awake(reg)

    async def deregister(self, endpoint: str) -> Registration:
        """Remove a client's registration on the operator's request."""
        reg = await self._fetch_registration(endpoint)
        await self.registrar.remove(reg, "deregistered")
        return reg

    async def check_expiry(self) -> list[Registration]:
        """Remove registrations past lifetime + grace now (the sweep does it every second)."""
        return await self.registrar.expire()

    def observations_of(self, endpoint: str) -> list[ObservationRecord]:
        reg = self._registration(endpoint)
        return self.stores.observations.for_registration(reg.id)

    async def fetch_observations_of(self, endpoint: str) -> list[ObservationRecord]:
        """As :meth:`observations_of`, wherever the fleet holds them (Redis on a miss)."""
        reg = await self._fetch_registration(endpoint)
        return await self.stores.observations.fetch_for_registration(reg.id)

    # ================================================================== request handling
    async def handle(self, request: Any) -> Message:
        """The request handler as a coroutine function (``IncomingRequest`` -> response)."""
        answer = self.handle_now(request)
        return answer if isinstance(answer, Message) else await answer

    def handle_now(self, request: Any) -> Message | Awaitable[Message]:
        """The endpoints' request handler: the response, or an awaitable of it.

        Registers and Updates on a store that writes nothing through are answered
        on the spot (:meth:`Registrar.answer`): a storm of them costs no coroutine;
        a durable Register (SQLite) is a :class:`~lwm2m.coap.later.Later`, answered
        from its batch's commit, no coroutine either.
        """
        message: Message = request.message
        peer: Peer = request.peer
        path = message.uri_path
        if path and path[0] == "rd":
            return self.registrar.answer(message, peer)
        if path == ("dp",):
            return self._handle_send(message, peer)
        if path and path[0] == URI_SEGMENT and self.firmware is not None:
            return serve_firmware(self.firmware, message)
        return Message(Code.NOT_FOUND)

    def _client_contact(self, reg: Registration, updated: bool) -> None:
        """After a Register or an Update (the registrar's ``on_contact``): queued
        requests, waiting reconnects, dormant observations."""
        if self.queue.on_activity(reg):
            self._spawn(self._send_queued(reg.id))
        if self._reconnects:
            waiting = self._reconnects.pop(reg.endpoint, None)
            if waiting is not None:
                waiting.set()
        if updated and self._has_dormant_observations(reg):
            self._spawn(self.restore_observations(reg))

    def firmware_uri(self, image_id: str, registration: Registration, method: str) -> str:
        """The Package URI (/5/0/1) to give a device for pulling ``image_id``.

        ``method`` "coap" gives ``coaps://`` to a device registered over DTLS (it pulls
        through its DTLS session) and ``coap://`` otherwise; "http" gives the web app's
        ``/fw/{id}``. The host is ``public_host``, else the bound address, else (bound to a
        wildcard) the local address the system routes to the device from.
        """
        path = f"/{URI_SEGMENT}/{urllib.parse.quote(image_id, safe='')}"
        if method == "http":
            if self.http_address is None:
                raise ValueError("no HTTP server is known to serve firmware (http_address unset)")
            return f"http://{self._uri_host(self.http_address, registration)}{path}"
        if method not in ("coap", "coaps"):
            raise ValueError(f"unknown firmware delivery method {method!r} (coap or http)")
        if registration.secure:
            if self.coaps_address is None:
                raise ValueError("the device registered over DTLS but no DTLS endpoint runs")
            return f"coaps://{self._uri_host(self.coaps_address, registration)}{path}"
        return f"coap://{self._uri_host(self.coap_address, registration)}{path}"

    def _uri_host(self, bound: Address, registration: Registration) -> str:
        host = self.config.public_host or bound[0]
        if not self.config.public_host and host in ("", "0.0.0.0", "::"):
            host = _local_address_towards(registration.address, ipv6=host == "::") or host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{host}:{bound[1]}"

    async def _handle_send(self, message: Message, peer: Peer) -> Message:
        if message.code != Code.POST:
            return Message(Code.METHOD_NOT_ALLOWED)
        reg = await self.stores.registrations.fetch_by_address(peer.address)
        if reg is None and peer.identity is not None:
            reg = await self._moved_secure_client(peer)
        if reg is None or (reg.identity is not None and reg.identity != peer.identity):
            return _diagnostic(Code.NOT_FOUND, "not registered: Send needs a registration")
        received_at = self.clock()
        try:
            values, records = payloads.decode_reported(
                message.content_format, message.payload, None, self.model, received_at
            )
        except FormatError as exc:
            return _diagnostic(Code.BAD_REQUEST, f"cannot decode Send payload: {exc}")
        self.events.publish(
            SendEvent(
                reg.endpoint,
                received_at,
                registration_id=reg.id,
                values=values,
                content_format=message.content_format,
                records=records,
            )
        )
        return Message(Code.CHANGED)

    async def _moved_secure_client(self, peer: Peer) -> Registration | None:
        """The registration of a DTLS client heard from an address no registration has.

        In a cluster that is a device whose node died: the load balancer moved it
        here and it re-handshook, so the Send it was sending comes from a new
        address before any Update. Its proven identity names it (the PSK identity's
        security entry, the certificate's CN ``ep`` or ``ept:ep``); when its
        registration's owner is gone it is taken over here (same id, this address)
        and the Send is kept. In NoSec the address is all there is: the client gets
        4.04 and registers again, as LwM2M has it.
        """
        identity = peer.identity
        if identity is None or not self.stores.registrations.partial:
            return None
        names: list[str] = []
        if identity.psk_identity is not None:
            entry = await self.stores.security.fetch_by_psk_identity(identity.psk_identity)
            if entry is not None:
                names.append(entry.endpoint)
        elif identity.certificate_der is not None:
            from lwm2m.security.x509 import CertificateError, common_names

            try:
                for cn in common_names(identity.certificate_der):
                    ept, colon, ep = cn.partition(":")
                    names.append(ep if colon and ept.isdigit() else cn)
            except (CertificateError, ValueError):
                return None
        for name in names:
            reg = await self.stores.registrations.fetch_by_endpoint(name)
            if (
                reg is not None
                and reg.address != peer.address
                and identity_key(reg.identity, "") == identity_key(identity, "")
            ):
                return await self.stores.registrations.take_over(reg, peer.address)
        return None

    def _hear(self, endpoint: ServerEndpoint | TcpEndpoint) -> None:
        """Hear ``endpoint``'s datagrams (:meth:`_activity`), now or once queue mode is held."""
        self._activity_sources.append(endpoint)
        if self._hearing_activity:
            endpoint.add_activity_listener(self._activity)

    def _queue_mode_held(self) -> None:
        """The store holds a registration in queue mode: from now on every datagram
        counts as its sender's activity. Until then a storm's datagrams cost no call."""
        if self._hearing_activity:
            return
        self._hearing_activity = True
        for endpoint in self._activity_sources:
            endpoint.add_activity_listener(self._activity)

    def _activity(self, peer: Peer) -> None:
        registrations = self.stores.registrations
        if not registrations.holds_queue_mode:
            return  # queue mode was held, and is no longer: no lookup per datagram
        reg = registrations.get_by_address(peer.address)
        if reg is not None and reg.queue_mode and self.queue.on_activity(reg):
            self._spawn(self._send_queued(reg.id))

    def _observation_activity(self, record: ObservationRecord) -> None:
        reg = self.stores.registrations.get(record.registration_id)
        if reg is not None and reg.queue_mode and self.queue.on_activity(reg):
            self._spawn(self._send_queued(reg.id))

    def _registration_removed(
        self, registration: Registration, reason: str
    ) -> Awaitable[None] | None:
        """What a registration's end leaves to do; None when it left nothing (a storm's
        replaced registrations, and De-registers of clients given no attributes and
        holding no observation or queued request: no coroutine each)."""
        self.queue.forget(registration.id)
        if (
            (reason == "replaced" or not self.attributes.may_hold(registration.endpoint))
            and not self.queued.may_hold(registration.id)
            and not self.observations.may_hold(registration.id)
        ):
            return None
        return self._registration_removed_rest(registration, reason)

    async def _registration_removed_rest(self, registration: Registration, reason: str) -> None:
        if reason != "replaced":
            try:
                await self.attributes.forget(registration.endpoint)
            except StoreError as exc:
                logger.warning("attributes of %s not forgotten: %s", registration.endpoint, exc)
        try:
            await self.queued.drop_registration(registration.id)
        except StoreError as exc:
            logger.warning("queued requests of %s not dropped: %s", registration.endpoint, exc)
        await self.observations.drop_registration(registration.id)

    async def _expiry_loop(self) -> None:
        loop = asyncio.get_running_loop()
        summary_at = loop.time() + self.config.summary_interval_s
        while True:
            await asyncio.sleep(self.config.expiry_interval_s)
            try:
                await self.registrar.expire()
            except Exception:
                logger.exception("registration expiry sweep failed")
            if loop.time() >= summary_at:
                summary_at = loop.time() + self.config.summary_interval_s
                try:
                    count = await self.stores.registrations.fetch_count()
                except StoreError as exc:
                    logger.warning("registration count unavailable for the summary: %s", exc)
                    count = len(self.stores.registrations)
                self.registrar.log.summary(count)

    def _orphan_plain(self, message: Message, peer: Peer) -> bool:
        return self._adopt_observation(message, peer, secure=False)

    def _orphan_secure(self, message: Message, peer: Peer) -> bool:
        return self._adopt_observation(message, peer, secure=True)

    def _adopt_observation(self, message: Message, peer: Peer, *, secure: bool) -> bool:
        """A notification whose token the endpoint does not know: one of ours from before a restart?

        Accepted only for a stored observation that is not live, coming from
        its registration's address over the same transport and, on DTLS,
        from the registered identity (a token alone proves nothing).  The
        observation is then adopted: this notification and the later ones
        are decoded and published like any other, and cancel works as usual.
        Runs inside the endpoint's datagram callback, hence synchronous.

        With a shared store (a cluster) this node's memory may not hold the
        observation or its registration, or the device comes from a new address
        because its node is gone: the notification is then acknowledged and the
        decision taken once both are read from the store (:meth:`_adopt_later`).
        """
        if not self._started or not message.token:
            return False
        oid = message.token.hex()
        record = self.stores.observations.get(oid)
        if record is not None and self.observations.is_live(record.id):
            return False
        reg = None if record is None else self.stores.registrations.get(record.registration_id)
        if (reg is None or reg.address != peer.address) and self.stores.registrations.partial:
            return self._adopt_later(oid, message, peer, secure=secure)
        if record is None:
            return False
        return self._adopt(record, reg, message, peer, secure=secure)

    def _adopt_later(self, oid: str, message: Message, peer: Peer, *, secure: bool) -> bool:
        """Claim the notification (ACK) while the store is read; a token the store did not
        know is refused (RST) when it comes again."""
        if oid in self._unknown_tokens:
            return False
        if oid not in self._adopting:
            self._adopting.add(oid)
            self._spawn(self._adopt_from_store(oid, message, peer, secure=secure))
        return True

    async def _adopt_from_store(
        self, oid: str, message: Message, peer: Peer, *, secure: bool
    ) -> None:
        adopted = False
        try:
            record = await self.stores.observations.fetch(oid)
            reg = (
                None
                if record is None
                else await self.stores.registrations.fetch(record.registration_id)
            )
            if (
                record is not None
                and reg is not None
                and reg.address != peer.address
                and identity_key(reg.identity, reg.address[0] if not secure else "")
                == identity_key(peer.identity, peer.address[0] if not secure else "")
            ):
                # The same client (identity; in NoSec the same IP address) from a new
                # address: its node is gone and the load balancer sent it here.
                reg = await self.stores.registrations.take_over(reg, peer.address) or reg
            if record is not None and not self.observations.is_live(record.id):
                adopted = self._adopt(record, reg, message, peer, secure=secure)
        except StoreError as exc:
            logger.warning("observation %s not adopted: store failure: %s", oid, exc)
        finally:
            self._adopting.discard(oid)
        if not adopted:
            self._unknown_tokens[oid] = None
            while len(self._unknown_tokens) > _UNKNOWN_TOKENS_KEPT:
                self._unknown_tokens.popitem(last=False)

    def _adopt(
        self,
        record: ObservationRecord,
        reg: Registration | None,
        message: Message,
        peer: Peer,
        *,
        secure: bool,
    ) -> bool:
        if reg is None or reg.address != peer.address or (reg.identity is not None) != secure:
            logger.info(
                "refusing notification for observation %s from %s: not the registered client",
                record.id,
                peer.address,
            )
            return False
        if secure and identity_key(reg.identity, "") != identity_key(peer.identity, ""):
            logger.info(
                "refusing notification for observation %s from %s: another DTLS identity",
                record.id,
                peer.address,
            )
            return False
        endpoint = self._coaps if secure else self._coap
        if endpoint is None:
            return False
        try:
            request = observing_request(record).to_message(Target(reg, self.model))
        except FormatError as exc:
            logger.warning("cannot rebuild observation %s on %s: %s", record.id, reg.endpoint, exc)
            return False
        try:
            handle = endpoint.adopt_observation(request, peer.address, message.token, message)
        except ValueError:  # adopted meanwhile (a retransmission raced its fetch)
            return False
        self.observations.adopt(record, handle)
        logger.info("observation %s on %s adopted", record.id, reg.endpoint)
        return True

    def _has_dormant_observations(self, reg: Registration) -> bool:
        return any(
            not self.observations.is_live(rec.id)
            for rec in self.stores.observations.for_registration(reg.id)
        )

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def wait_background(self) -> None:
        """Wait for background work started so far (observations being restored)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def restore_observations(self, registration: Registration) -> int:
        """Observe again every stored observation of this client that is not live."""
        restored = 0
        for record in await self.stores.observations.fetch_for_registration(registration.id):
            if self.observations.is_live(record.id):
                continue
            await self.stores.observations.remove(record.id)
            if self.observations.is_live(record.id):
                # Adopted by a notification meanwhile: keep it as it is.
                await self.stores.observations.add(record)
                continue
            try:
                await self.send(registration.endpoint, observing_request(record))
                restored += 1
            except (ServerError, RemoteError, FormatError) as exc:
                logger.info(
                    "could not restore observation %s on %s: %s",
                    record.id,
                    registration.endpoint,
                    exc,
                )
        return restored

    # ================================================================== request core
    def _registration(self, endpoint: str) -> Registration:
        reg = self.stores.registrations.get_by_endpoint(endpoint)
        if reg is None:
            raise ClientNotFound(endpoint)
        return reg

    async def _fetch_registration(self, endpoint: str) -> Registration:
        """As :meth:`_registration`, for a registration of the whole fleet (Redis on a miss)."""
        reg = await self.stores.registrations.fetch_by_endpoint(endpoint)
        if reg is None:
            raise ClientNotFound(endpoint)
        return reg

    def _endpoint_for(self, reg: Registration) -> ServerEndpoint:
        ep: ServerEndpoint | None = self._tcp_endpoint_for(reg)
        if ep is None:
            ep = self._coaps if reg.identity is not None else self._coap
        if ep is None:
            raise ServerError("server not started")
        return ep

    def _tcp_endpoint_for(self, reg: Registration) -> TcpEndpoint | None:
        if reg.transport != "tcp":
            return None
        ep = self._coaps_tcp if reg.identity is not None else self._coap_tcp
        if ep is None:
            raise ServerError(f"{reg.endpoint!r} registered over TCP, which is not enabled")
        return ep

    async def _connected(self, endpoint: str) -> Registration:
        """The registration of ``endpoint`` once its TCP connection is open.

        A TCP client whose connection closed is unreachable until it
        reconnects and registers or updates again (from a new address): the
        request waits for that, as for a sleeping queue-mode client.
        """
        while True:
            reg = await self._fetch_registration(endpoint)
            tcp = self._tcp_endpoint_for(reg)
            if tcp is None or tcp.is_connected(reg.address):
                return reg
            waiting = self._reconnects.setdefault(endpoint, asyncio.Event())
            await waiting.wait()

    async def _exchange(
        self,
        endpoint: str,
        build: Callable[[Target], Message],
        timeout: float | None,
    ) -> tuple[Target, Message]:
        """One CON request built for the current registration; its 2.xx answer."""
        reg = await self._fetch_registration(endpoint)
        if reg.queue_mode and not self.queue.is_awake(reg):
            return await self._queued_exchange(reg, build, timeout)
        try:
            async with asyncio.timeout(timeout):
                if reg.transport == "tcp":
                    reg = await self._connected(endpoint)
                target = Target(reg, self.model)
                response = await self._endpoint_for(reg).request(build(target), reg.address)
        except TimeoutError:
            raise ClientTimeout(f"no answer from {endpoint!r} within {timeout} s") from None
        except RequestTimeout:
            raise ClientTimeout(f"no answer from {endpoint!r}") from None
        except ResetReceived:
            raise RemoteError(Code.EMPTY, "the client answered with RST") from None
        except CoapError as exc:
            raise ServerError(f"request to {endpoint!r} failed: {exc}") from None
        _check(response)
        return target, response

    async def _queued_exchange(
        self, reg: Registration, build: Callable[[Target], Message], timeout: float | None
    ) -> tuple[Target, Message]:
        """Queue the request in the store for whichever node sees the client wake up.

        The request is built now, against the current registration. The
        answer comes back to this call when it is still waiting; else it is
        logged by the node that sent it (see :mod:`lwm2m.server.queued_requests`).
        """
        if await self.queued.count(reg.id) >= self.config.max_queued:
            raise QueueFull(
                f"{self.config.max_queued} requests already wait for sleeping client "
                f"{reg.endpoint!r}"
            )
        target = Target(reg, self.model)
        request, future = await self.queued.enqueue(reg.id, reg.endpoint, build(target), timeout)
        try:
            await self.queued.relay.queued(reg.id)
        except StoreError as exc:
            logger.warning("other nodes not told of a request queued for %s: %s", reg.endpoint, exc)
        if self.queue.is_awake(reg):
            self._spawn(self._send_queued(reg.id))  # woke while we queued
        try:
            with self.queue.parked(reg):
                result = await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            withdrawn = await self.queued.withdraw(request)
            detail = "stayed asleep" if withdrawn else "did not answer"
            raise ClientTimeout(f"client {reg.endpoint!r} {detail} for {timeout} s") from None
        except asyncio.CancelledError:
            await asyncio.shield(self.queued.withdraw(request))
            raise
        if result.response is None:
            if result.error == "gone":
                raise ClientNotFound(reg.endpoint)
            if result.error == "timeout":
                raise ClientTimeout(f"no answer from {reg.endpoint!r}")
            if result.error == "reset":
                raise RemoteError(Code.EMPTY, "the client answered with RST")
            raise ServerError(f"request to {reg.endpoint!r} failed: {result.error}")
        _check(result.response)
        return target, result.response

    async def _send_queued(self, registration_id: str) -> None:
        """The client is awake on this node: send what is queued for it, from here."""

        def awake() -> bool:
            # This node's view of the client's wake state. In a cluster the registration
            # may leave this node's memory for a moment (another node's Update raced this
            # one's, and this node's own write puts it back): that does not put the client
            # to sleep, and the store's atomic delete keeps each request to one sender.
            reg = self.stores.registrations.get(registration_id)
            if reg is not None:
                return self.queue.is_awake(reg)
            return self.queue.is_awake_id(registration_id)

        try:
            await self.queued.drain(
                registration_id, lambda m: self._send_one(registration_id, m), awake
            )
        except StoreError as exc:
            logger.warning("queued requests of registration %s not sent: %s", registration_id, exc)

    async def _send_one(self, registration_id: str, message: Message) -> QueuedResult:
        reg = await self.stores.registrations.fetch(registration_id)
        if reg is None:
            return QueuedResult(error="gone")
        try:
            if reg.transport == "tcp":
                reg = await self._connected(reg.endpoint)
            response = await self._endpoint_for(reg).request(message, reg.address)
        except RequestTimeout:
            return QueuedResult(error="timeout")
        except ResetReceived:
            return QueuedResult(error="reset")
        except (CoapError, ServerError) as exc:
            return QueuedResult(error=f"error: {exc}")
        return QueuedResult(response=response)

    def _queued_news(self, registration_id: str) -> None:
        """Another node queued a request: send it when the client is awake here."""
        reg = self.stores.registrations.get(registration_id)
        if reg is not None and reg.queue_mode and self.queue.is_awake(reg):
            self._spawn(self._send_queued(registration_id))

    async def _start_queue_relay(self) -> None:
        """With a Redis store, hear of requests queued and answered on the other nodes."""
        redis = getattr(self.stores, "redis", None)
        if redis is None:
            return
        from lwm2m.server.queue_relay import RedisQueueRelay

        relay = RedisQueueRelay(
            redis, self.queued.node_id, on_queued=self._queued_news, on_answer=self.queued.answer
        )
        await relay.start()
        self._queue_relay = relay
        self.queued.relay = relay

    # ================================================================== operations
    async def send(self, endpoint: str, request: Request[R], timeout: float | None = None) -> R:
        """Send any typed request to the client ``endpoint`` and return its typed response.

        The one way to operate a device: the wrappers below (:meth:`read`,
        :meth:`write`, ...) build a request and call this, and the web layer
        passes its requests here unchanged. ``timeout`` covers a queue-mode
        wait and the exchange (default ``config.request_timeout_s``).
        """
        limit = self.config.request_timeout_s if timeout is None else timeout
        response = await request.run(_ClientLink(self, endpoint, limit))
        if isinstance(request, WriteAttributesRequest):
            try:
                await self.attributes.record(endpoint, request.path, request.attributes)
            except StoreError as exc:
                logger.warning("attributes set on %s not recorded: %s", endpoint, exc)
        return response

    async def attributes_set(self, endpoint: str) -> dict[Path, Attributes]:
        """The attributes the server's accepted Write-Attributes left on ``endpoint``, per path."""
        return await self.attributes.of(endpoint)

    async def read(
        self,
        endpoint: str,
        path: PathLike,
        *,
        format: int | None = None,
        timeout: float | None = None,
    ) -> ReadResponse:
        return await self.send(endpoint, ReadRequest(_path(path), format), timeout)

    async def discover(
        self, endpoint: str, path: PathLike, *, timeout: float | None = None
    ) -> DiscoverResponse:
        return await self.send(endpoint, DiscoverRequest(_path(path)), timeout)

    async def write(
        self,
        endpoint: str,
        path: PathLike,
        value: Node | Value,
        *,
        replace: bool = True,
        format: int | None = None,
        timeout: float | None = None,
    ) -> WriteResponse:
        """Write a node (or a plain value to a resource / resource instance path)."""
        request = WriteRequest.of(_path(path), value, replace=replace, format=format)
        return await self.send(endpoint, request, timeout)

    async def write_attributes(
        self,
        endpoint: str,
        path: PathLike,
        attributes: AttributeUpdate | Mapping[str, int | float | None],
        *,
        timeout: float | None = None,
    ) -> WriteAttributesResponse:
        """``attributes`` maps pmin/pmax/gt/lt/st/epmin/epmax to a value, or None to remove it."""
        request = WriteAttributesRequest.of(_path(path), attributes)
        return await self.send(endpoint, request, timeout)

    async def execute(
        self,
        endpoint: str,
        path: PathLike,
        arguments: str | None = None,
        *,
        timeout: float | None = None,
    ) -> ExecuteResponse:
        return await self.send(endpoint, ExecuteRequest(_path(path), arguments), timeout)

    async def create(
        self,
        endpoint: str,
        path: PathLike,
        instance: ObjectInstance | LwM2MObject,
        *,
        format: int | None = None,
        timeout: float | None = None,
    ) -> CreateResponse:
        """Create ``instance`` (an ObjectInstance, or its resources) in object ``path``."""
        return await self.send(endpoint, CreateRequest(_path(path), instance, format), timeout)

    async def delete(
        self, endpoint: str, path: PathLike, *, timeout: float | None = None
    ) -> DeleteResponse:
        return await self.send(endpoint, DeleteRequest(_path(path)), timeout)

    async def read_composite(
        self,
        endpoint: str,
        paths: Iterable[PathLike],
        *,
        format: int | None = None,
        timeout: float | None = None,
    ) -> ReadCompositeResponse:
        request = ReadCompositeRequest(tuple(_path(p) for p in paths), format)
        return await self.send(endpoint, request, timeout)

    async def write_composite(
        self,
        endpoint: str,
        values: Mapping[PathLike, Node | Value],
        *,
        format: int | None = None,
        timeout: float | None = None,
    ) -> WriteCompositeResponse:
        request = WriteCompositeRequest({_path(p): v for p, v in values.items()}, format)
        return await self.send(endpoint, request, timeout)

    async def observe(
        self,
        endpoint: str,
        path: PathLike,
        *,
        format: int | None = None,
        timeout: float | None = None,
    ) -> ObserveResponse:
        """Observe a path; notifications arrive as :class:`NotificationEvent` on :attr:`events`."""
        return await self.send(endpoint, ObserveRequest(_path(path), format), timeout)

    async def observe_composite(
        self,
        endpoint: str,
        paths: Iterable[PathLike],
        *,
        format: int | None = None,
        timeout: float | None = None,
    ) -> ObserveCompositeResponse:
        request = ObserveCompositeRequest(tuple(_path(p) for p in paths), format)
        return await self.send(endpoint, request, timeout)

    async def _start_observation(
        self, endpoint: str, request: ObservingRequest[object], timeout: float | None
    ) -> Observed:
        """Establish ``request``'s observation and hand it to :attr:`observations`."""
        reg = await self._fetch_registration(endpoint)
        token = secrets.token_bytes(8)
        handle: Any = None
        try:
            async with asyncio.timeout(timeout):
                if reg.queue_mode:
                    await self.queue.wait_awake(reg, None)
                    reg = await self._fetch_registration(endpoint)
                if reg.transport == "tcp":
                    reg = await self._connected(endpoint)
                message = request.to_message(Target(reg, self.model)).with_(token=token)
                handle = self._endpoint_for(reg).observe(message, reg.address)
                first: Message = await handle.first()
        except TimeoutError:
            await _quiet_cancel(handle)
            raise ClientTimeout(f"no answer from {endpoint!r} within {timeout} s") from None
        except RequestTimeout:
            await _quiet_cancel(handle)
            raise ClientTimeout(f"no answer from {endpoint!r}") from None
        except ResetReceived:
            raise RemoteError(Code.EMPTY, "the client answered with RST") from None
        except CoapError as exc:
            await _quiet_cancel(handle)
            raise ServerError(f"observe on {endpoint!r} failed: {exc}") from None
        try:
            _check(first)
        except RemoteError:
            await _quiet_cancel(handle, active=False)
            raise
        paths = request.observed_paths
        record = ObservationRecord(
            id=(first.token or token).hex(),
            registration_id=reg.id,
            endpoint=reg.endpoint,
            paths=paths,
            composite=request.composite,
            content_format=request.requested_format,
            created_at=self.clock(),
        )
        try:
            values = decode_values(record, first, self.model)
        except FormatError as exc:
            await _quiet_cancel(handle)
            raise InvalidResponse(f"cannot decode Observe answer: {exc}") from None
        if first.observe is None:
            # The client answered without Observe: it does not keep the observation.
            await _quiet_cancel(handle, active=False)
            raise InvalidResponse(f"{endpoint!r} did not accept the observation of {paths[0]}")
        if await self.stores.registrations.fetch(reg.id) is None:
            await _quiet_cancel(handle, active=False)
            raise ClientNotFound(endpoint)
        await self.observations.add(record, handle)
        return record, values, first.content_format

    async def cancel_observation(
        self,
        endpoint: str,
        observation: ObservationRecord | str,
        *,
        active: bool = True,
    ) -> ObservationRecord:
        """Cancel reactively (``active``: GET with Observe=1) or passively (RST the next one)."""
        oid = observation if isinstance(observation, str) else observation.id
        record = await self.stores.observations.fetch(oid)
        if record is None or record.endpoint != endpoint:
            raise ObservationNotFound(f"no observation {oid} on {endpoint!r}")
        reg = await self.stores.registrations.fetch(record.registration_id)
        if active and reg is not None and reg.queue_mode and not self.queue.is_awake(reg):
            # Reactive cancel of a sleeping client: forget now, RST its next notification.
            active = False
        cancelled = await self.observations.cancel(oid, active=active)
        return cancelled or record

    async def cancel_observations(self, endpoint: str, path: PathLike | None = None) -> int:
        """Cancel every observation of ``endpoint`` (on ``path``, when given)."""
        p = None if path is None else _path(path)
        return await self._cancel_matching(
            endpoint, lambda rec: p is None or p in rec.paths, active=True, timeout=None
        )

    async def _cancel_matching(
        self,
        endpoint: str,
        matches: Callable[[ObservationRecord], bool],
        *,
        active: bool,
        timeout: float | None,
    ) -> int:
        count = 0
        try:
            async with asyncio.timeout(timeout):
                for rec in await self.fetch_observations_of(endpoint):
                    if matches(rec):
                        await self.cancel_observation(endpoint, rec, active=active)
                        count += 1
        except TimeoutError:
            raise ClientTimeout(
                f"cancelling observations of {endpoint!r} took more than {timeout} s"
            ) from None
        return count


@dataclass(frozen=True, slots=True)
class _ClientLink:
    """:class:`~lwm2m.server.operations.Downlink` to one client within one timeout."""

    server: LwM2MServer
    endpoint: str
    timeout: float | None

    async def exchange(self, build: Callable[[Target], Message]) -> tuple[Target, Message]:
        return await self.server._exchange(self.endpoint, build, self.timeout)

    async def observe(self, request: ObservingRequest[object]) -> Observed:
        return await self.server._start_observation(self.endpoint, request, self.timeout)

    async def cancel_observations(
        self, matches: Callable[[ObservationRecord], bool], *, active: bool
    ) -> int:
        return await self.server._cancel_matching(
            self.endpoint, matches, active=active, timeout=self.timeout
        )


def _check(response: Message) -> None:
    code = int(response.code)
    if is_success_code(code):
        return
    text = response.payload.decode("utf-8", "replace") if response.payload else ""
    raise RemoteError(Code.from_byte(code), text)


def _diagnostic(code: Code, text: str) -> Message:
    return Message(code, payload=text.encode("utf-8"), content_format=int(ContentFormat.TEXT))


async def _quiet_cancel(handle: Any, *, active: bool = False) -> None:
    if handle is None:
        return
    with contextlib.suppress(Exception):
        await handle.cancel(active=active)


def _local_address_towards(address: Address, *, ipv6: bool) -> str | None:
    """The local address the routing table picks to reach ``address`` (no packet is sent)."""
    family = socket.AF_INET6 if ipv6 or ":" in address[0] else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(address)
            local: str = probe.getsockname()[0]
    except OSError:
        return None
    return local

"""The LwM2M client: objects, one CoAP endpoint, registrations, observations.

::

    client = LwM2MClient(ClientConfig("dev-1", servers=(FactoryAccount("coap://127.0.0.1:5683"),)))
    client.add_instance(Temperature(0))
    await client.start()
    ...
    await client.stop()          # de-registers

Many clients can share one :class:`~lwm2m.model.registry.ModelRegistry` and
one :class:`~lwm2m.client.scheduler.Scheduler` (the simulator runs thousands
in one process that way); each has its own UDP socket.

Seams for the client-side bootstrap (``lwm2m.client.bootstrap``):

* :attr:`LwM2MClient.bootstrap_request_handler` receives every request coming
  from the bootstrap server's address (Bootstrap-Write/Delete/Discover/Finish);
* :attr:`LwM2MClient.bootstrapper` is awaited when the client has no server
  to register to, or registration keeps failing; it returns True once new
  accounts are in the store, and the client then registers to them;
* :meth:`LwM2MClient.restart_sessions`, :meth:`ObjectStore.create_instance`,
  :meth:`ObjectStore.write_instance`, :meth:`ObjectStore.delete_instance`,
  :meth:`ObservationManager.remove_server` and :meth:`LwM2MClient.save_state`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from lwm2m.client import payload_codec, state
from lwm2m.client.acl import AccessControl
from lwm2m.client.config import (
    MODE_CERTIFICATE,
    MODE_NOSEC,
    MODE_PSK,
    ClientConfig,
    parse_server_uri,
)
from lwm2m.client.dispatcher import Hooks, RequestDispatcher
from lwm2m.client.instance import Instance
from lwm2m.client.link_payloads import registration_payload
from lwm2m.client.observe import AttributeStore, Observation, ObservationManager, Rendered
from lwm2m.client.registration import (
    RegistrationInfo,
    RegistrationState,
    ServerSession,
    Transport,
)
from lwm2m.client.scheduler import Scheduler, Timer
from lwm2m.client.store import (
    ACCESS_CONTROL,
    SECURITY,
    SERVER,
    ClientObject,
    InstanceFactory,
    ObjectStore,
    ServerAccount,
)
from lwm2m.client.stored_values import Stored
from lwm2m.coap.codes import Code
from lwm2m.coap.endpoint import NO_RESPONSE, Endpoint, IncomingRequest, NoResponse
from lwm2m.coap.errors import CoapError, EndpointClosed, ObservationCancelled
from lwm2m.coap.message import Message
from lwm2m.coap.peer import Address, Peer, normalize_address
from lwm2m.coap.security_layer import SecurityLayer
from lwm2m.coap.tcp_transport import TcpEndpoint
from lwm2m.coap.traffic import TrafficCounter
from lwm2m.formats.media import ContentFormat
from lwm2m.model.nodes import Node
from lwm2m.model.path import Path
from lwm2m.model.registry import ModelRegistry, default_registry
from lwm2m.protocol.errors import LwM2MError

if TYPE_CHECKING:
    from lwm2m.coap.dtls_client import DtlsClientConfig

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

#: the other family's counterpart of a wildcard / loopback ``local_host``
_WILDCARD = {socket.AF_INET: "0.0.0.0", socket.AF_INET6: "::"}
_LOOPBACK = {socket.AF_INET: "127.0.0.1", socket.AF_INET6: "::1"}


def address_family(address: Address) -> socket.AddressFamily:
    """AF_INET6 for a numeric IPv6 address (it has colons), else AF_INET."""
    return socket.AF_INET6 if ":" in address[0] else socket.AF_INET


BootstrapHandler = Callable[[IncomingRequest], Awaitable[Message]]
Bootstrapper = Callable[["LwM2MClient"], Awaitable[bool]]


@dataclass(slots=True)
class ClientStats:
    """What the client did, for Connectivity Statistics (7), the simulator and tests.

    The message counts are LwM2M-level (requests, responses, notifications);
    the bytes come from ``traffic``, which every socket of the client shares,
    so they are the datagrams really sent and received: retransmissions,
    ACKs, blocks and DTLS included.
    """

    requests_served: int = 0
    notifications_sent: int = 0
    messages_sent: int = 0
    messages_received: int = 0
    traffic: TrafficCounter = field(default_factory=TrafficCounter)

    @property
    def bytes_sent(self) -> int:
        return self.traffic.bytes_sent

    @property
    def bytes_received(self) -> int:
        return self.traffic.bytes_received


class LwM2MClient:
    """One LwM2M device: its objects, its server accounts, and the sockets to reach them.

    The client owns the state a device keeps across the LwM2M interfaces, so
    that each interface sees the same truth: the object store (the Security
    and Server instances in it are the accounts), the access control and
    notification attributes servers wrote, one :class:`ServerSession` per
    registered server, and the observations. Requests from any server go
    through one :class:`RequestDispatcher`; what the client says on its own
    (Register/Update, notifications, Send) goes out through the endpoint of
    the account concerned: one plain UDP socket, and one DTLS socket per
    secured Security instance (built by :mod:`lwm2m.security.client_config`).

    Time comes from the :class:`Scheduler` and randomness from ``rng`` so
    that a simulator can run thousands of clients on one loop and tests can
    drive lifetimes with a manual clock. ``stats`` counts what the sockets
    carried (Connectivity Statistics, object 7).
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        registry: ModelRegistry | None = None,
        scheduler: Scheduler | None = None,
        rng: random.Random | None = None,
        core_objects: bool = True,
    ) -> None:
        self.config = config
        self.registry = registry if registry is not None else default_registry()
        self.scheduler = scheduler if scheduler is not None else Scheduler()
        self.rng = rng if rng is not None else random.Random()
        self.store = ObjectStore(self.registry)
        self.acl = AccessControl(self.store)
        self.attributes = AttributeStore()
        self.stats = ClientStats()
        self.observations = ObservationManager(
            self.scheduler,
            self.attributes,
            self._render_notification,
            self._deliver_notification,
            self._sample,
            self._pmin_pmax,
            self._has_reader,
            reachable=self._server_reachable,
            storing=self._notification_storing,
            stored_limit=config.stored_notifications_max,
        )
        self.dispatcher = RequestDispatcher(
            self.store,
            self.acl,
            self.attributes,
            self.observations,
            Hooks(
                server_for=self._server_for,
                changed=self.state_changed,
                default_format=lambda ssid: self.default_format,
            ),
        )
        self.sessions: dict[int, ServerSession] = {}
        self.bootstrap_request_handler: BootstrapHandler | None = None
        self.bootstrapper: Bootstrapper | None = None
        self.bootstrapped = False
        self.on_event: Callable[[LwM2MClient, str], None] | None = None
        self._endpoints: dict[object, Endpoint | TcpEndpoint] = {}
        self._addresses: dict[Address, int] = {}
        self._bootstrap_addresses: set[Address] = set()
        self._running = False
        self._stopping = False
        self._factory: dict[str, object] | None = None
        self._save_pending = False
        self._bootstrapping: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        # queue mode
        self._sleeping = False
        self._awake = asyncio.Event()
        self._awake.set()
        self._awake_timer: Timer | None = None
        self.store.add_change_listener(self._value_changed)
        self.store.add_structure_listener(self._structure_changed)
        if core_objects:
            from lwm2m.client.objects import install_core_objects

            install_core_objects(self)
        self.install_factory_configuration()

    # -- objects ---------------------------------------------------------------------------

    def add_instance(self, instance: Instance, object_id: int | None = None) -> Instance:
        """Expose an application's object instance; servers see it at the next Update."""
        return self.store.add_instance(instance, object_id)

    def add_object(self, object_id: int, factory: InstanceFactory | None = None) -> ClientObject:
        """Declare an object, empty; ``factory`` makes the instances servers Create."""
        return self.store.add_object(object_id, factory)

    def instance(self, object_id: int, instance_id: int = 0) -> Instance | None:
        """The live instance (None when absent), for the application to read or set."""
        return self.store.instance(object_id, instance_id)

    def _resource_target(self, path: Path | str) -> tuple[Instance, int]:
        p = Path.parse(path) if isinstance(path, str) else path
        if p.depth != 3:
            raise ValueError(f"{p} is not a resource path /o/i/r")
        inst = self.store.instance(p.object_id or 0, p.instance_id or 0)
        if inst is None:
            inst = self.store.create_instance(p.object_id or 0, p.instance_id or 0)
        return inst, p.resource_id or 0

    def reader(self, path: Path | str) -> Callable[[F], F]:
        """Decorator: ``@client.reader("/3303/0/5700") def temperature() -> float``.

        For values that live outside the client (a sensor): every Read and
        notification calls ``fn``, so nothing stale is reported. The instance
        is created (empty, typed by the model) when it does not exist yet.
        """

        def register(fn: F) -> F:
            inst, rid = self._resource_target(path)
            inst.add_reader(rid, fn)
            return fn

        return register

    def writer(self, path: Path | str) -> Callable[[F], F]:
        """Decorator: ``@client.writer("/3311/0/5851") def dim(value: int) -> None``.

        For the application to act on a server's Write; ``fn`` gets the value
        already typed by the model; if it raises, the value is not stored.
        """

        def register(fn: F) -> F:
            inst, rid = self._resource_target(path)
            inst.add_writer(rid, fn)
            return fn

        return register

    def executor(self, path: Path | str) -> Callable[[F], F]:
        """Decorator: ``@client.executor("/3311/0/5605") async def reset(args: str) -> None``.

        Binds a server's Execute to application code; ``args`` is the raw
        Execute argument string.
        """

        def register(fn: F) -> F:
            inst, rid = self._resource_target(path)
            inst.add_executor(rid, fn)
            return fn

        return register

    @property
    def endpoint_name(self) -> str:
        """The name servers know this device by (Register ``ep``)."""
        return self.config.endpoint

    @property
    def default_format(self) -> int:
        """What the client answers in when a server asks for none: TLV for 1.0, SenML CBOR after."""
        return (
            ContentFormat.LWM2M_TLV
            if self.config.lwm2m_version == "1.0"
            else ContentFormat.SENML_CBOR
        )

    def install_factory_configuration(self) -> None:
        """(Re)create Security/Server instances from the configured factory accounts.

        Called at construction and by Factory Reset, so that a device always
        has a way back to its servers, whatever bootstrap wrote since.
        """
        for oid in (SECURITY, SERVER, ACCESS_CONTROL):
            self.store.add_object(oid)
            for inst in self.store.instances(oid):
                self.store.delete_instance(oid, inst.id)
        for index, server in enumerate(self.config.servers):
            self.store.create_instance(SECURITY, index, server.security_values())
            if not server.bootstrap:
                values = server.server_values()
                values.update(self.config.retry_values())
                self.store.create_instance(SERVER, None, values)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Between :meth:`start` and :meth:`stop`; value changes only act while running."""
        return self._running

    async def start(self) -> None:
        """Load the state file, open the socket and register to every server.

        The state file comes first so that a restarted device registers with
        what bootstrap and servers wrote, not with its factory accounts.
        Calling it on a running client does nothing.
        """
        if self._running:
            return
        if self._factory is None:
            self._factory = state.snapshot(self.store)
        if self.config.state_file:
            saved = state.load(self.config.state_file)
            if saved is not None:
                self.bootstrapped = state.restore(self.store, saved)
                state.restore_attributes(self.store, self.attributes, saved)
        self._running = True
        await self._open_endpoint()
        await self.restart_sessions()

    async def _open_endpoint(self) -> None:
        await self._plain_endpoint(self._home_family())

    def _home_family(self) -> socket.AddressFamily:
        """The family of the configured ``local_host`` (a host name counts as IPv4)."""
        try:
            ip = ipaddress.ip_address(self.config.local_host)
        except ValueError:
            return socket.AF_INET
        return socket.AF_INET6 if ip.version == 6 else socket.AF_INET

    def _local_host(self, family: socket.AddressFamily) -> str:
        """Where to bind a socket of ``family``.

        ``local_host`` serves its own family as configured; for the other one
        its wildcard or loopback counterpart is used (``0.0.0.0`` <-> ``::``,
        ``127.0.0.1``/``localhost`` <-> ``::1``). A specific address has no
        counterpart: reaching a server of the other family is then an error.
        """
        host = self.config.local_host
        if family == self._home_family():
            return host
        wanted = "IPv6" if family == socket.AF_INET6 else "IPv4"
        if host == "localhost":
            return _LOOPBACK[family]
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise OSError(f"local_host {host!r} gives no {wanted} address to bind") from None
        if ip.is_unspecified:
            return _WILDCARD[family]
        if ip.is_loopback:
            return _LOOPBACK[family]
        raise OSError(f"local_host {host} is not {wanted}: cannot reach an {wanted} server")

    async def _plain_endpoint(self, family: socket.AddressFamily) -> Endpoint:
        key = ("plain", family)
        endpoint = self._endpoints.get(key)
        assert endpoint is None or isinstance(endpoint, Endpoint)
        if endpoint is None:
            # The configured local_port is for the socket of local_host's own
            # family; a socket of the other family takes any free port.
            port = self.config.local_port if family == self._home_family() else 0
            endpoint = await Endpoint.create(
                self._local_host(family),
                port,
                handler=self._handle,
                params=self.config.transmission,
                traffic=self.stats.traffic,
            )
            self._endpoints[key] = endpoint
        return endpoint

    async def plain_endpoint(self, address: Address) -> Endpoint:
        """The unsecured CoAP socket for ``address`` (IPv4 or IPv6), opened on first use.

        Shared by every plain account of that family, so that all servers see
        the device at one address (one NAT binding to keep alive).
        """
        return await self._plain_endpoint(address_family(address))

    @property
    def local_address(self) -> Address | None:
        """The plain socket's address (None before start): what Connectivity Monitoring reports."""
        ep = self._endpoints.get(("plain", self._home_family()))
        return None if ep is None else ep.local_address

    async def endpoint_for(
        self, account: ServerAccount, address: Address | None = None
    ) -> Endpoint | TcpEndpoint:
        """The socket that talks to ``account``: a plain one, or a DTLS one per Security instance.

        A DTLS socket per Security instance keeps each account's credentials
        and sessions apart. Its family is that of ``address``, the account's
        resolved address (resolved here when not given). Raises
        :class:`LwM2MError` for a Security instance that cannot be used.
        """
        scheme, _, _ = parse_server_uri(account.uri)
        if address is None:
            address = await self.resolve(account.uri)
        family = address_family(address)
        if scheme.endswith("+tcp"):
            return self._tcp_endpoint(account, scheme, family)
        if scheme == "coap" or account.security_mode == MODE_NOSEC:
            return await self._plain_endpoint(family)
        key = ("dtls", account.security_instance, family)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            endpoint = await Endpoint.create(
                self._local_host(family),
                0,
                handler=self._handle,
                params=self.config.transmission,
                security=self._security_layer(account),
                traffic=self.stats.traffic,
            )
            self._endpoints[key] = endpoint
        return endpoint

    def _tcp_endpoint(
        self, account: ServerAccount, scheme: str, family: socket.AddressFamily
    ) -> TcpEndpoint:
        """CoAP over TCP (one connector for every plain account) or TLS (one per Security instance).

        A connector opens a connection per server on first use and again
        after it closed; see :meth:`_tcp_connection_changed` for reconnection.
        """
        from lwm2m.coap.tcp_connection import TcpConfig

        secure = scheme == "coaps+tcp" and account.security_mode != MODE_NOSEC
        key = ("tls", account.security_instance, family) if secure else ("tcp", family)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            security = None
            if secure:
                from lwm2m.coap.tls import TlsClient

                security = TlsClient(self._dtls_config(account))
            endpoint = TcpEndpoint.connector(
                handler=self._handle,
                config=TcpConfig(keepalive_s=self.config.tcp_keepalive_s),
                security=security,
                local_host=self._local_host(family),
                rng=self.rng,
                traffic=self.stats.traffic,
            )
            endpoint.add_connection_listener(self._tcp_connection_changed)
            self._endpoints[key] = endpoint
        assert isinstance(endpoint, TcpEndpoint)
        return endpoint

    def _tcp_connection_changed(self, peer: Peer, up: bool) -> None:
        """A server's TCP connection closed: reconnect (by an Update) after a back-off.

        The server cannot reach us until we reconnect, so we do not wait for
        the next periodic Update.  The Update's own failure handling (the
        registration retry procedure) backs off further if the server is gone.
        """
        if up or self._stopping or not self._running:
            return
        ssid = self._addresses.get(peer.address)
        session = self.sessions.get(ssid) if ssid is not None else None
        if session is None or not session.registered:
            return
        delay = self.rng.uniform(0.0, self.config.tcp_reconnect_backoff_s)
        logger.info(
            "%s: connection to %s:%d closed, reconnecting in %.1f s",
            self.endpoint_name,
            *peer.address,
            delay,
        )
        self.scheduler.call_later(delay, session.request_update)

    def _security_layer(self, account: ServerAccount) -> SecurityLayer:
        """DTLS for ``account``, built from its Security instance by the one builder.

        An unusable instance (unsupported mode, bad key or certificate) raises
        :class:`LwM2MError`, so that the account is reported and skipped.
        """
        from lwm2m.coap.dtls import DtlsClient

        return DtlsClient(self._dtls_config(account))

    def _dtls_config(self, account: ServerAccount) -> DtlsClientConfig:
        """The credentials and checks of ``account`` (DTLS and TLS alike)."""
        from lwm2m.security.client_config import dtls_client_config
        from lwm2m.security.credentials import SecurityConfigError

        if account.security_mode not in (MODE_PSK, MODE_CERTIFICATE):
            raise LwM2MError(
                f"security mode {account.security_mode} is not supported by this client"
            )
        _, host, _ = parse_server_uri(account.uri)
        try:
            config = dtls_client_config(
                account.security_mode,
                account.public_key_or_identity,
                account.server_public_key,
                account.secret_key,
                host,
                certificate_usage=account.certificate_usage,
            )
        except SecurityConfigError as exc:
            raise LwM2MError(f"Security instance {account.security_instance}: {exc}") from None
        return config

    async def resolve(self, uri: str) -> Address:
        """The UDP address of a server URI, IPv4 or IPv6 (``coap://[::1]``).

        A name with addresses of both families resolves to one of the
        family of ``local_host`` (IPv4 unless that is an IPv6 address).
        """
        _, host, port = parse_server_uri(uri)
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        usable = [info for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]
        if not usable:
            raise OSError(f"cannot resolve {host}")
        home = self._home_family()
        chosen = next((info for info in usable if info[0] == home), usable[0])
        return normalize_address(chosen[4])

    async def restart_sessions(self) -> None:
        """Stop every registration and register to the accounts the store holds now.

        The way a change of accounts takes effect (bootstrap finished, state
        restored): sessions are rebuilt from the store rather than patched. An
        account that cannot be resolved or secured is logged and skipped, so
        one bad account does not keep the device off the others.
        """
        if self._stopping:
            return
        for session in self.sessions.values():
            session.stop()
        self.sessions.clear()
        self._addresses.clear()
        self._bootstrap_addresses.clear()
        bs = self.store.bootstrap_account()
        if bs is not None:
            try:
                self._bootstrap_addresses.add(await self.resolve(bs.uri))
            except OSError as exc:
                logger.warning("cannot resolve bootstrap server %s: %s", bs.uri, exc)
        accounts = self.store.server_accounts()
        if not accounts:
            if bs is not None:
                self.start_bootstrap()
            else:
                logger.warning("%s: no server account to register to", self.endpoint_name)
            return
        for account in accounts:
            try:
                address = await self.resolve(account.uri)
                endpoint = await self.endpoint_for(account, address)
            except (OSError, LwM2MError) as exc:
                logger.error("server %s unusable: %s", account.uri, exc)
                continue
            self._addresses[address] = account.short_server_id
            session = ServerSession(
                account,
                Transport(address, self._requester(endpoint)),
                self._registration_info,
                lambda: registration_payload(self.store),
                self.scheduler,
                self.rng,
                exchange_s=self._exchange_s(),
                on_event=self._session_event,
            )
            self.sessions[account.short_server_id] = session
            session.start()

    def _exchange_s(self) -> float:
        """The longest one request can take: MAX_TRANSMIT_WAIT, or the configured timeout."""
        wait = self.config.transmission.max_transmit_wait_s
        timeout = self.config.request_timeout_s
        return wait if timeout is None else min(wait, timeout)

    def _requester(
        self, endpoint: Endpoint | TcpEndpoint
    ) -> Callable[[Message, Address], Awaitable[Message]]:
        async def request(message: Message, address: Address) -> Message:
            self._set_awake()
            self.stats.messages_sent += 1
            response = await endpoint.request(
                message, address, timeout=self.config.request_timeout_s
            )
            self.stats.messages_received += 1
            self._touch()
            return response

        return request

    def _registration_info(self) -> RegistrationInfo:
        return RegistrationInfo(
            self.config.endpoint,
            self.config.endpoint_type,
            self.config.lwm2m_version,
            self.config.queue_mode,
        )

    def _session_event(self, session: ServerSession, what: str) -> None:
        if what == "registered":
            if session.registrations > 1 and not session.server_forgot:
                # Back after Disable or an unanswered Update/Register: the
                # observations live on; stored notifications (Server resource 6)
                # go out now.
                self.observations.resume(session.short_server_id)
            else:
                # A first registration, or one after the server said it forgot
                # us (Update refused), starts without observations.
                self.observations.cancel_server(session.short_server_id)
        if (
            what == "registration-failed"
            and session.account.bootstrap_on_failure
            and self.store.bootstrap_account() is not None
            and self.bootstrapper is not None
        ):
            logger.warning(
                "%s: registration keeps failing, falling back to bootstrap", self.endpoint_name
            )
            self.start_bootstrap()
        if self.on_event is not None:
            self.on_event(self, what)

    def start_bootstrap(self) -> None:
        """Run the bootstrapper (client-initiated bootstrap) in the background.

        In the background because it is reached from registration failures
        and request handlers, which must not wait for a whole bootstrap. A
        second call while one runs does nothing.
        """
        if self._stopping:
            return
        if self.bootstrapper is None:
            logger.warning("%s: bootstrap needed but no bootstrapper installed", self.endpoint_name)
            return
        if self._bootstrapping is not None and not self._bootstrapping.done():
            return
        self._bootstrapping = asyncio.ensure_future(self._run_bootstrap())

    async def _run_bootstrap(self) -> None:
        assert self.bootstrapper is not None
        for session in self.sessions.values():
            session.stop()
        try:
            ok = await self.bootstrapper(self)
        except Exception:
            logger.exception("%s: bootstrap failed", self.endpoint_name)
            ok = False
        if ok:
            self.bootstrapped = True
            self.save_state()
            self._bootstrapping = None
            await self.restart_sessions()

    @property
    def stopping(self) -> bool:
        """Between :meth:`begin_stop` and the end of :meth:`stop`: no exchange starts."""
        return self._stopping

    def begin_stop(self) -> None:
        """Start no Register, Update or bootstrap from now on (the device is going away).

        Synchronous, so that a fleet can be told all at once before any
        De-register is awaited.
        """
        if not self._running or self._stopping:
            return
        self._stopping = True
        for session in self.sessions.values():
            session.stopping = True
        if self._bootstrapping is not None:
            self._bootstrapping.cancel()
        if self._awake_timer is not None:
            self._awake_timer.cancel()

    def registered_anywhere(self) -> bool:
        """Registered to at least one server: a stop then owes a De-register."""
        return any(s.registered for s in self.sessions.values())

    async def deregister_all(self) -> bool:
        """De-register from every server it is registered to (seed 5.2.3), concurrently.

        True when every such server confirmed (2.02); cancelling the call
        abandons the De-registers still unanswered.
        """
        registered = [s for s in self.sessions.values() if s.registered]
        if not registered:
            return True
        results = await asyncio.gather(
            *(s.deregister() for s in registered), return_exceptions=True
        )
        return all(r is True for r in results)

    async def stop(self, *, deregister: bool = True, timeout_s: float | None = None) -> bool:
        """De-register (best effort, within ``timeout_s``) and close the sockets.

        Returns True when every registration was confirmed removed by its
        server (or there was none); False when a server did not answer in
        time: it then forgets the device when the lifetime ends.
        """
        if not self._running:
            return True
        self.begin_stop()
        confirmed = not self.registered_anywhere()
        try:
            if deregister:
                try:
                    async with asyncio.timeout(timeout_s):
                        confirmed = await self.deregister_all()
                except TimeoutError:
                    logger.warning(
                        "%s: de-register not answered within %.1f s; stopping anyway",
                        self.endpoint_name,
                        timeout_s,
                    )
                    confirmed = False
        finally:
            await self._close()
        return confirmed

    async def _close(self) -> None:
        """Release everything without a word to the servers (the end of every stop)."""
        self._running = False
        self._stopping = False
        for session in self.sessions.values():
            session.stop()
        self.observations.clear()
        if self._bootstrapping is not None:
            self._bootstrapping.cancel()
        if self._awake_timer is not None:
            self._awake_timer.cancel()
        self._flush_state()
        for endpoint in self._endpoints.values():
            await endpoint.close()
        self._endpoints.clear()
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:  # reboot/factory reset run as one of these tasks
                task.cancel()

    async def reboot(self) -> None:
        """Device Reboot (3/0/4): drop every session and come back from the saved state."""
        logger.info("%s: rebooting", self.endpoint_name)
        await self.stop(deregister=False)
        await self.start()

    async def factory_reset(self) -> None:
        """Device Factory Reset (3/0/5): de-register, forget everything, start from factory config.

        The De-registers are waited for at most ``config.deregister_timeout_s``,
        as a stop's are: the reset goes on whether the servers answered or not.
        """
        logger.info("%s: factory reset", self.endpoint_name)
        await self.stop(deregister=True, timeout_s=self.config.deregister_timeout_s)
        self.attributes = self.observations.attributes = self.dispatcher.attributes = (
            AttributeStore()
        )
        if self.config.state_file:
            state.remove(self.config.state_file)
        if self._factory is not None:
            keep = self._factory.get("objects", {})
            assert isinstance(keep, dict)
            for obj in self.store.objects():
                wanted = keep.get(str(obj.id), {})
                for inst in list(obj):
                    if str(inst.id) not in wanted:
                        self.store.delete_instance(obj.id, inst.id)
            state.restore(self.store, self._factory)
        self.bootstrapped = False
        await self.start()

    def after_response(self, action: Callable[[], Awaitable[None]]) -> None:
        """Run ``action`` once the current request has been answered (Reboot, Factory Reset).

        The server must get its 2.04 before the device goes away, or it
        would retransmit to a client that no longer knows the request.
        """
        self.spawn(action())

    def spawn(self, coro: Awaitable[object]) -> None:
        """Run ``coro`` as a task the client owns: cancelled at :meth:`stop`, failures logged."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "%s: background task failed", self.endpoint_name, exc_info=task.exception()
            )

    # -- requests from servers ---------------------------------------------------------

    def _server_for(self, peer: Peer) -> int | None:
        # Only the address a server account resolved to may act as that server.
        return self._addresses.get(peer.address)

    async def _handle(self, request: IncomingRequest) -> Message | NoResponse:
        self.stats.messages_received += 1
        if self._disabled_server(request.peer):
            # LwM2M 1.1 E.2 (Disable, 1/x/4): until the Disable Timeout ends the
            # client ignores that server; its CON requests go unacknowledged.
            return NO_RESPONSE
        if self._sleeping:
            await self._awake.wait()  # queue mode: served once awake again
        self._touch()
        if (
            request.peer.address in self._bootstrap_addresses
            and request.peer.address not in self._addresses
        ):
            if self.bootstrap_request_handler is None:
                return Message(code=Code.UNAUTHORIZED, payload=b"no bootstrap in progress")
            response = await self.bootstrap_request_handler(request)
        else:
            response = await self.dispatcher.handle(request)
        self.stats.requests_served += 1
        self.stats.messages_sent += 1
        return response

    def _disabled_server(self, peer: Peer) -> bool:
        ssid = self._addresses.get(peer.address)
        if ssid is None:
            return False
        session = self.sessions.get(ssid)
        return session is not None and session.state is RegistrationState.DISABLED

    def expect_bootstrap_from(self, address: Address) -> None:
        """Route requests from ``address`` to :attr:`bootstrap_request_handler`.

        Bootstrap requests are recognised by where they come from: the
        bootstrap server is not a registered server and has no Short Server ID.
        """
        self._bootstrap_addresses.add(address)

    # -- changes -----------------------------------------------------------------------------

    def _value_changed(self, path: Path) -> None:
        self.observations.value_changed(path)
        if path.object_id == SERVER and self._running:
            self._server_object_changed()

    def _server_object_changed(self) -> None:
        accounts = {a.short_server_id: a for a in self.store.server_accounts()}
        for ssid, session in self.sessions.items():
            account = accounts.get(ssid)
            if account is None:
                continue
            old = session.account
            session.set_account(account)
            if old.lifetime_s != account.lifetime_s or old.binding != account.binding:
                session.request_update()

    def _structure_changed(self, object_id: int) -> None:
        if not self._running:
            return
        if object_id in (SECURITY, SERVER):
            self._forget_deleted_accounts()
        if object_id in (SECURITY, ACCESS_CONTROL):
            return
        for session in self.sessions.values():
            if session.registered:
                session.request_update()

    def _forget_deleted_accounts(self) -> None:
        """A deleted server account takes its observations and attributes with it."""
        live = {a.short_server_id for a in self.store.server_accounts()}
        gone = {ssid for ssid, _, _ in self.attributes.items() if ssid not in live}
        gone |= {obs.ssid for obs in self.observations.all() if obs.ssid not in live}
        for ssid in gone:
            self.observations.remove_server(ssid)
        if gone:
            self.state_changed()

    def trigger_update(self, short_server_id: int | None = None) -> None:
        """Send an Update now (to one server or all): Registration Update Trigger.

        For servers that want a fresh registration (1/x/8) and for the
        application after it changed something servers must learn at once.
        """
        for ssid, session in self.sessions.items():
            if short_server_id is None or ssid == short_server_id:
                session.request_update()

    def state_changed(self) -> None:
        """Persistent values changed: save the state file soon (coalesced).

        Coalesced to one write per loop iteration, since a Bootstrap-Write or
        a multi-resource Write changes many values at once.
        """
        if not self.config.state_file or self._save_pending:
            return
        self._save_pending = True
        asyncio.get_running_loop().call_soon(self._flush_state)

    def _flush_state(self) -> None:
        self._save_pending = False
        if self.config.state_file:
            self.save_state()

    def save_state(self) -> None:
        """Write the state file now, so that a crash after this keeps what was provisioned."""
        if self.config.state_file:
            state.save(
                self.config.state_file,
                state.snapshot(
                    self.store, bootstrapped=self.bootstrapped, attributes=self.attributes
                ),
            )

    # -- observations ------------------------------------------------------------------------

    def _pmin_pmax(self, ssid: int) -> tuple[int, int | None]:
        session = self.sessions.get(ssid)
        if session is None:
            return 0, None
        return session.account.default_pmin_s, session.account.default_pmax_s

    def _has_reader(self, path: Path) -> bool:
        if path.depth < 3:
            return False
        inst = self.store.instance(path.object_id or 0, path.instance_id or 0)
        return inst is not None and inst.has_reader(path.resource_id or 0)

    async def _sample(self, paths: tuple[Path, ...]) -> dict[Path, Stored]:
        return await self.dispatcher.leaf_values(paths)

    def _server_reachable(self, ssid: int) -> bool:
        """Registered and not disabled: notifications can go out now."""
        session = self.sessions.get(ssid)
        return session is not None and session.registered

    def _notification_storing(self, ssid: int) -> bool:
        """Server resource 6 (default true): keep notifications while unreachable."""
        session = self.sessions.get(ssid)
        return session is None or session.account.notification_storing

    def _confirmable(self, obs: Observation) -> bool:
        attrs = self.observations.attributes_for(obs)
        return bool(attrs.con) if attrs.con is not None else self.config.notify_confirmable

    async def _render_notification(self, obs: Observation) -> Rendered:
        try:
            if obs.composite:
                nodes: dict[Path, Node] = {}
                for path in obs.paths:
                    try:
                        nodes[path] = await self.dispatcher.read_node(path, None)
                    except LwM2MError:
                        continue
                payload = payload_codec.encode_composite(nodes, obs.content_format, self.registry)
            else:
                node = await self.dispatcher.read_node(obs.paths[0], None)
                payload = payload_codec.encode(
                    node, obs.paths[0], obs.content_format, self.registry
                )
            values = await self.dispatcher.leaf_values(obs.paths)
        except LwM2MError as exc:
            # The observed node is gone: a final error notification ends the observation.
            return Rendered(Message(code=exc.code), {}, final=True)
        return Rendered(
            Message(code=Code.CONTENT, payload=payload, content_format=obs.content_format), values
        )

    async def _deliver_notification(self, obs: Observation, message: Message) -> bool:
        notify = getattr(obs.handle, "notify", None)
        if notify is None:
            return False
        if message.code >= 0x80:
            with contextlib.suppress(CoapError):
                await notify(message, confirmable=self._confirmable(obs))
            return False
        if self._sleeping:
            self.wake()
        try:
            await notify(message, confirmable=self._confirmable(obs))
        except (ObservationCancelled, EndpointClosed):
            return False
        self.stats.notifications_sent += 1
        self.stats.messages_sent += 1
        return True

    # -- Send (Information Reporting, 1.1) -----------------------------------------------

    async def send(
        self,
        paths: Iterable[Path | str],
        *,
        short_server_id: int | None = None,
        content_format: int = ContentFormat.SENML_CBOR,
    ) -> Code | int:
        """``POST /dp`` with the current values of ``paths``; returns the server's code.

        LwM2M 1.1 Send: the device reports on its own initiative, without an
        observation. Disabled accounts are skipped (E.2); with several
        servers the last one's code is returned. Raises :class:`LwM2MError`
        when no server can receive it.
        """
        nodes: dict[Path, Node] = {}
        for item in paths:
            path = Path.parse(item) if isinstance(item, str) else item
            nodes[path] = await self.dispatcher.read_node(path, None)
        payload = payload_codec.encode_composite(nodes, content_format, self.registry)
        targets = [
            s
            for ssid, s in self.sessions.items()
            if (short_server_id is None or ssid == short_server_id)
            # a disabled account gets no message until its Disable Timeout ends (E.2)
            and s.state is not RegistrationState.DISABLED
        ]
        if not targets:
            raise LwM2MError("no server to send to")
        result: Code | int = Code.CHANGED
        for session in targets:
            message = Message(
                code=Code.POST, uri_path=("dp",), content_format=content_format, payload=payload
            )
            response = await session.transport.request(message, session.transport.address)
            result = Code.from_byte(response.code)
        return result

    # -- queue mode ----------------------------------------------------------------------

    @property
    def sleeping(self) -> bool:
        """Queue mode: requests wait for the next wake-up (the server queues them meanwhile)."""
        return self._sleeping

    def _touch(self) -> None:
        if not self.config.queue_mode or not self._running:
            return
        if self._awake_timer is not None:
            self._awake_timer.cancel()
        self._awake_timer = self.scheduler.call_later(self.config.awake_time_s, self.sleep)

    def _set_awake(self) -> None:
        if self._sleeping:
            self._sleeping = False
            self._awake.set()
            logger.info("%s: awake", self.endpoint_name)

    def sleep(self) -> None:
        """Queue mode: stop serving requests until the next Update (or :meth:`wake`).

        Called when the awake time ends; a device may call it earlier to save
        power once it has nothing more to say.
        """
        if self._awake_timer is not None:
            self._awake_timer.cancel()
            self._awake_timer = None
        if not self._sleeping:
            self._sleeping = True
            self._awake.clear()
            logger.info("%s: sleeping", self.endpoint_name)

    def wake(self) -> None:
        """Leave queue-mode sleep: send an Update so the server delivers queued requests.

        The server only learns a queue-mode device is reachable from a message
        it sends, hence the Update.
        """
        if self._sleeping:
            self._set_awake()
            self.trigger_update()
        self._touch()

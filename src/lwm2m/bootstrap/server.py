"""The LwM2M Bootstrap Server: client- and server-initiated bootstrap (seed 7.1, 5.1.2.3).

Client initiated: ``POST /bs?ep=..&ept=..`` is answered 2.04 Changed when
the endpoint has a configuration, then a session runs against the address
the request came from. Unknown Endpoint Client Name and Type, a missing or
malformed ``ep``: 4.00 Bad Request (seed 002 table 20). Server initiated:
:meth:`BootstrapServer.push` runs the same session against a known address
without any request, and :meth:`BootstrapServer.on_registration` does it
when a client whose configuration changed registers to the co-located
LwM2M Server.

One session per endpoint at a time: a second Request Bootstrap (or push)
while one runs is refused (4.00 / a failed result with reason ``busy``).
Every session, and every refusal, is kept in :attr:`BootstrapServer.sessions`
and published on :attr:`BootstrapServer.events`. A refused Request Bootstrap
and a failed DTLS handshake also go to :attr:`BootstrapServer.refusals`
(a rate-limited WARNING line, ``lwm2m_bootstrap_rejected_total{reason}``,
the endpoint's recent refusals).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from lwm2m.bootstrap.events import (
    BootstrapEventBus,
    BootstrapRejected,
    FailureReason,
    SessionMode,
    SessionStarted,
)
from lwm2m.bootstrap.history import (
    DEFAULT_STALE_AFTER_S,
    SessionHistory,
    SessionRecord,
    SessionStatus,
)
from lwm2m.bootstrap.session import DEFAULT_REQUEST_TIMEOUT_S, Requester, SessionRunner
from lwm2m.bootstrap.store import ConfigStore
from lwm2m.coap.codes import Code
from lwm2m.coap.endpoint import SERVER_RECEIVE_BUFFER
from lwm2m.coap.message import Message
from lwm2m.coap.peer import Address, Peer
from lwm2m.formats.media import ContentFormat
from lwm2m.model.path import Path, PathError
from lwm2m.model.registry import ModelRegistry, default_registry
from lwm2m.protocol.bootstrap_config import (
    BootstrapConfig,
    BootstrapConfigError,
    ContentFormatChoice,
    parse_read_path,
)
from lwm2m.protocol.handshake_failures import tapped
from lwm2m.protocol.refusals import BOOTSTRAP_REFUSALS, RefusalKind, RefusalLog
from lwm2m.protocol.registration import (
    BootstrapRequestParams,
    RegistrationParamError,
    parse_bootstrap_query,
)
from lwm2m.stores.base import DocumentStore

if TYPE_CHECKING:
    from lwm2m.coap.endpoint import Endpoint, Handler, IncomingRequest, NoResponse
    from lwm2m.coap.security_layer import SecurityLayer
    from lwm2m.coap.tcp_transport import StreamSecurity, TcpEndpoint

logger = logging.getLogger(__name__)

DEFAULT_COAP_PORT = 5783
DEFAULT_COAPS_PORT = 5784

#: pct values we can write in (legacy TLV 1542 is answered in 11542).
_PCT_FORMATS = {
    int(ContentFormat.LWM2M_TLV): int(ContentFormat.LWM2M_TLV),
    int(ContentFormat.OMA_TLV_OLD): int(ContentFormat.LWM2M_TLV),
    int(ContentFormat.SENML_JSON): int(ContentFormat.SENML_JSON),
    int(ContentFormat.SENML_CBOR): int(ContentFormat.SENML_CBOR),
}


class IdentityCheck(Protocol):
    """Does a DTLS-proven peer identity belong to this endpoint? (None on plain UDP)."""

    def __call__(self, peer: Peer, params: BootstrapRequestParams) -> str | None:
        """None when acceptable, else the reason for refusing."""
        ...


def format_address(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_address(text: str) -> Address:
    """``HOST:PORT`` or ``[v6]:PORT`` (the REST ``address`` parameter); raises ValueError."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isascii() or not port_text.isdigit():
        raise ValueError(f"{text!r} is not HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write IPv6 addresses as [addr]:port")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"{text!r}: port out of range 1-65535")
    return host, port


def choose_content_format(
    config: BootstrapConfig, pct: int | None, lwm2m_version: str | None = None
) -> int:
    """The format of the Bootstrap-Writes.

    The client's ``pct`` when we support it; else the configured format; else,
    when the client's LwM2M version is known (it registered to the co-located
    server), SenML CBOR for 1.1+ and TLV for 1.0; else TLV, which every 1.0 and
    1.1 client reads.
    """
    if pct is not None and pct in _PCT_FORMATS:
        return _PCT_FORMATS[pct]
    if config.content_format is not None:
        return config.content_format.value
    if lwm2m_version is not None and not lwm2m_version.startswith("1.0"):
        return int(ContentFormat.SENML_CBOR)
    return ContentFormatChoice.TLV.value


class BootstrapServer:
    """Bootstrap configurations, sessions and their history; CoAP endpoints when started.

    Public API (used by ``lwm2m bootstrap``, ``lwm2m server`` and the REST layer):

    - :attr:`configs` (:class:`~lwm2m.bootstrap.store.ConfigStore`): validated CRUD;
    - :attr:`sessions` (:class:`~lwm2m.bootstrap.history.SessionHistory`): running and past sessions;
    - :attr:`events` (:class:`~lwm2m.protocol.events.EventBus`): typed session events;
    - :meth:`push`: server-initiated bootstrap of an endpoint at an address;
    - :meth:`read`: server-initiated Bootstrap-Read of ``/1`` or ``/2`` (a session of its own);
    - :meth:`on_registration` / :meth:`registration_listener`: the co-located server hook.
    """

    def __init__(
        self,
        *,
        documents: DocumentStore | None = None,
        model: ModelRegistry | None = None,
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        clock: Callable[[], float] = time.time,
        history_limit: int = 1000,
        identity_check: IdentityCheck | None = None,
        node_id: str | None = None,
    ) -> None:
        self.configs = ConfigStore(documents)
        #: Other nodes share the document store (``node_id`` given): read through, not the view.
        self._shared = node_id is not None
        self.sessions = SessionHistory(
            documents,
            history_limit,
            node=node_id or "local",
            # A step waits at most request_timeout_s; a session silent for several is dead.
            stale_after_s=max(DEFAULT_STALE_AFTER_S, 4 * request_timeout_s),
            clock=clock,
        )
        self.events = BootstrapEventBus()
        self.model = model if model is not None else default_registry()
        self.request_timeout_s = request_timeout_s
        self._clock = clock
        self._identity_check = identity_check
        #: Refused Request Bootstraps and failed DTLS handshakes, for the operator.
        self.refusals = RefusalLog("bootstrap", BOOTSTRAP_REFUSALS, clock=clock)
        self._active: dict[str, asyncio.Task[SessionRecord]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Removers of the listeners on co-located servers (:meth:`follow_server`).
        self._unfollow: list[Callable[[], None]] = []
        self._endpoints: list[Endpoint | TcpEndpoint] = []
        self._push_endpoint: Requester | None = None
        #: False once stopping: a Request Bootstrap then gets no answer (see stop_accepting)
        self._accepting = True
        self.coap_address: Address | None = None
        self.coaps_address: Address | None = None
        self.coap_tcp_address: Address | None = None
        self.coaps_tcp_address: Address | None = None

    # ------------------------------------------------------------------ life cycle

    async def load(self) -> list[BootstrapConfigError]:
        """Read persisted configurations and history; returns configs that no longer validate."""
        problems = await self.configs.load()
        await self.sessions.load()
        return problems

    async def start(
        self,
        host: str = "127.0.0.1",
        coap_port: int = DEFAULT_COAP_PORT,
        *,
        coaps_port: int = 0,
        dtls: SecurityLayer | None = None,
        coap_tcp_port: int | None = None,
        coaps_tcp_port: int | None = None,
        tls: StreamSecurity | None = None,
        receive_buffer: int | None = SERVER_RECEIVE_BUFFER,
    ) -> None:
        """Open the CoAP endpoint, and the CoAPs one when ``dtls`` is given (port 0: any free port).

        (The commands treat ``--coaps-port 0`` as "disabled" by passing no ``dtls``.)
        ``coap_tcp_port`` and ``coaps_tcp_port`` (with ``tls``) add CoAP over TCP
        and TLS (RFC 8323) for client-initiated bootstrap; None leaves them off.
        ``receive_buffer``: of the UDP sockets (see :meth:`Endpoint.create`; None: the
        system's default), for a fleet asking to be bootstrapped all at once.
        """
        from lwm2m.coap.endpoint import Endpoint

        holder: list[Endpoint] = []
        plain = await Endpoint.create(
            host, coap_port, handler=self._handler(holder), receive_buffer=receive_buffer
        )
        holder.append(plain)
        self._endpoints.append(plain)
        self._push_endpoint = plain
        self.coap_address = plain.local_address
        if dtls is not None:
            secure_holder: list[Endpoint] = []
            secure = await Endpoint.create(
                host,
                coaps_port,
                handler=self._handler(secure_holder),
                security=tapped(dtls, self.refusals),
                receive_buffer=receive_buffer,
            )
            secure_holder.append(secure)
            self._endpoints.append(secure)
            self.coaps_address = secure.local_address
        await self._start_tcp(host, coap_tcp_port, coaps_tcp_port, tls)
        logger.info(
            "bootstrap server on coap %s%s",
            format_address(plain.local_address),
            f", coaps {format_address(self.coaps_address)}" if self.coaps_address else "",
        )

    async def _start_tcp(
        self,
        host: str,
        coap_tcp_port: int | None,
        coaps_tcp_port: int | None,
        tls: StreamSecurity | None,
    ) -> None:
        from lwm2m.coap.tcp_transport import TcpEndpoint

        for port, security in ((coap_tcp_port, None), (coaps_tcp_port, tls)):
            if port is None or (port == coaps_tcp_port and security is None):
                continue
            holder: list[Requester] = []
            endpoint = await TcpEndpoint.listen(
                host, port, handler=self._handler(holder), security=security
            )
            holder.append(endpoint)
            self._endpoints.append(endpoint)
            if security is None:
                self.coap_tcp_address = endpoint.local_address
            else:
                self.coaps_tcp_address = endpoint.local_address

    def attach(self, requester: Requester) -> Handler:
        """Serve on an endpoint created elsewhere: returns its handler; pushes go through it."""
        self._push_endpoint = requester
        return self._handler_for(requester)

    def stop_accepting(self) -> None:
        """Shutting down: leave new Request Bootstraps unanswered (the device retransmits,
        and a restarted server serves it) while the sessions in flight finish."""
        self._accepting = False

    async def wait_idle(self) -> None:
        """Wait until no session is running (tests, shutdown)."""
        while self._active:
            await asyncio.gather(*list(self._active.values()), return_exceptions=True)

    async def stop(self) -> None:
        """Alias of :meth:`close` (what ``lwm2m server`` calls on its embedded bootstrap server)."""
        await self.close()

    def follow_server(self, server: Any) -> None:
        """Watch a co-located LwM2M server's events (``server.events.subscribe()``) and
        re-bootstrap registering clients whose configuration changed."""
        # A listener, not a subscription: it runs as each event is published and returns at
        # once for all but REGISTRATION, so a storm of Updates costs it nothing (a
        # subscription woke a task and went through an async iterator for every event).
        # Named kind: the server builds no other event for it (a storm's Updates and the
        # de-registrations of replaced registrations) while nothing else listens.
        self._unfollow.append(
            server.events.add_listener(self.registration_listener(), kinds=("registration",))
        )

    async def close(self) -> None:
        for unfollow in self._unfollow:
            unfollow()
        self._unfollow.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        for endpoint in self._endpoints:
            await endpoint.close()
        self._endpoints.clear()
        await self.sessions.flush()
        self.refusals.close()

    # ------------------------------------------------------------------ Request Bootstrap

    def _handler(self, holder: Sequence[Requester]) -> Handler:
        from lwm2m.coap.endpoint import NO_RESPONSE

        async def handle(request: IncomingRequest) -> Message | NoResponse:
            if not self._accepting:
                return NO_RESPONSE
            return await self.handle_request(request.message, request.peer, holder[0])

        return handle

    def _handler_for(self, requester: Requester) -> Handler:
        from lwm2m.coap.endpoint import NO_RESPONSE

        async def handle(request: IncomingRequest) -> Message | NoResponse:
            if not self._accepting:
                return NO_RESPONSE
            return await self.handle_request(request.message, request.peer, requester)

        return handle

    async def handle_request(self, message: Message, peer: Peer, requester: Requester) -> Message:
        """Answer one incoming CoAP request (only ``POST /bs`` is served)."""
        if message.uri_path != ("bs",):
            return Message(Code.NOT_FOUND)
        if message.code != Code.POST:
            return Message(Code.METHOD_NOT_ALLOWED)
        try:
            params = parse_bootstrap_query(message.uri_query)
        except RegistrationParamError as exc:
            ep = message.query().get("ep", "")
            await self._reject(ep, peer, FailureReason.BAD_REQUEST, str(exc))
            return _bad_request(str(exc))
        config = await self.configs.fetch(params.endpoint)
        if config is None or (
            params.endpoint_type is not None
            and config.endpoint_type is not None
            and params.endpoint_type != config.endpoint_type
        ):
            reason = "Unknown Endpoint Client Name and Endpoint Client Type"
            await self._reject(params.endpoint, peer, FailureReason.UNKNOWN_ENDPOINT, reason)
            return _bad_request(reason)
        if self._identity_check is not None:
            problem = self._identity_check(peer, params)
            if problem is not None:
                label = "security_required" if peer.identity is None else "identity_mismatch"
                await self._reject(params.endpoint, peer, FailureReason.BAD_REQUEST, problem, label)
                return _bad_request(problem)
        if params.endpoint in self._active or await self.sessions.running_elsewhere(
            params.endpoint
        ):
            reason = "a bootstrap session for this endpoint is already running"
            await self._reject(params.endpoint, peer, FailureReason.BUSY, reason)
            return _bad_request(reason)
        fmt = choose_content_format(config, params.preferred_content_format)
        # The task starts after this handler returns, so the 2.04 goes out first.
        self._start(config, peer.address, requester, SessionMode.CLIENT_INITIATED, fmt)
        return Message(Code.CHANGED)

    async def _reject(
        self,
        endpoint: str,
        peer: Peer,
        reason: FailureReason,
        message: str,
        label: str | None = None,
    ) -> SessionRecord:
        """A refused Request Bootstrap: in the history, on the bus, and to the operator.

        ``label`` is the refusal's metric reason when it is finer than ``reason``.
        """
        record = await self._rejected(endpoint, format_address(peer.address), reason, message)
        self.refusals.record(
            RefusalKind.BOOTSTRAP,
            label or reason.value,
            message,
            peer.address,
            endpoint=endpoint or None,
            identity=peer.identity,
            code=Code.BAD_REQUEST.dotted,
        )
        return record

    async def _rejected(
        self, endpoint: str, address: str, reason: FailureReason, message: str
    ) -> SessionRecord:
        now = self._clock()
        record = SessionRecord(
            id=_new_id(),
            endpoint=endpoint,
            mode=SessionMode.CLIENT_INITIATED,
            address=address,
            started_at=now,
            status=SessionStatus.FAILED,
            ended_at=now,
            failure=reason,
            message=message,
        )
        self.events.publish(BootstrapRejected(record.id, endpoint, now, address, reason, message))
        await self.sessions.ended(record)
        return record

    # ------------------------------------------------------------------ sessions

    def _start(
        self,
        config: BootstrapConfig,
        address: Address,
        requester: Requester,
        mode: SessionMode,
        content_format: int,
    ) -> asyncio.Task[SessionRecord]:
        now = self._clock()
        record = SessionRecord(
            id=_new_id(),
            endpoint=config.endpoint,
            mode=mode,
            address=format_address(address),
            started_at=now,
            content_format=content_format,
            config_fingerprint=config.fingerprint,
        )
        self.sessions.started(record)
        self.events.publish(
            SessionStarted(record.id, record.endpoint, now, mode, record.address, content_format)
        )
        task = asyncio.get_running_loop().create_task(
            self._run(record, config, address, requester), name=f"bootstrap {config.endpoint}"
        )
        self._active[config.endpoint] = task
        self._tasks.add(task)

        def done(t: asyncio.Task[SessionRecord]) -> None:
            self._tasks.discard(t)
            if self._active.get(config.endpoint) is t:
                del self._active[config.endpoint]

        task.add_done_callback(done)
        return task

    async def _run(
        self, record: SessionRecord, config: BootstrapConfig, address: Address, requester: Requester
    ) -> SessionRecord:
        runner = self._runner(requester)
        try:
            result = await runner.run(record, config, address)
        except asyncio.CancelledError:
            current = self.sessions.get(record.id) or record
            now = self._clock()
            result = replace(
                current,
                status=SessionStatus.FAILED,
                ended_at=now,
                failure=FailureReason.CANCELLED,
                message="bootstrap server shut down",
            )
            await asyncio.shield(self.sessions.ended(result))
            raise
        if result.ok:
            await self.configs.mark_applied(config.endpoint, config.fingerprint)
        await self.sessions.ended(result)
        return result

    async def push(
        self,
        endpoint: str,
        address: Address | str,
        *,
        content_format: int | None = None,
    ) -> SessionRecord:
        """Server-initiated bootstrap: run the whole sequence against ``address`` now.

        Returns the ended record: ``ok`` when Bootstrap-Finish was accepted,
        else ``failure`` says why (``unknown_endpoint``, ``busy``, ``timeout``
        = no answer, ``error_response`` = the client refused with ``code``, ...).
        """
        addr = parse_address(address) if isinstance(address, str) else address
        text = format_address(addr)
        config = await self.configs.fetch(endpoint)
        if config is None:
            return await self._reject_push(
                endpoint,
                text,
                FailureReason.UNKNOWN_ENDPOINT,
                "no bootstrap configuration for this endpoint",
            )
        requester = await self._push_requester(endpoint, text)
        if isinstance(requester, SessionRecord):
            return requester  # refused
        fmt = content_format if content_format is not None else choose_content_format(config, None)
        task = self._start(config, addr, requester, SessionMode.SERVER_INITIATED, fmt)
        return await asyncio.shield(task)

    async def read(
        self,
        endpoint: str,
        address: Address | str,
        path: Path | str,
        *,
        content_format: int | None = None,
    ) -> SessionRecord:
        """Server-initiated Bootstrap-Read of ``path`` (``/1``, ``/1/i``, ``/2``, ``/2/i``).

        A session of its own, recorded in the history like any other: no
        Bootstrap-Finish is sent, the client keeps its state. The answer is the
        step's ``content`` (``record.steps[0].content``, JSON as the REST API shows
        nodes). Accept: ``content_format``, else the endpoint's configured format,
        else SenML CBOR (the read is LwM2M 1.1, every 1.1 client has SenML CBOR).
        Needs no bootstrap configuration; ``busy`` while a session for the
        endpoint runs. Raises ValueError for a path outside /1 and /2.
        """
        try:
            target = parse_read_path(str(path))
        except PathError as exc:
            raise ValueError(str(exc)) from None
        addr = parse_address(address) if isinstance(address, str) else address
        text = format_address(addr)
        requester = await self._push_requester(endpoint, text)
        if isinstance(requester, SessionRecord):
            return requester  # refused
        config = await self.configs.fetch(endpoint)
        if content_format is not None:
            fmt = content_format
        elif config is not None and config.content_format is not None:
            fmt = config.content_format.value
        else:
            fmt = int(ContentFormat.SENML_CBOR)
        now = self._clock()
        record = SessionRecord(
            id=_new_id(),
            endpoint=endpoint,
            mode=SessionMode.SERVER_INITIATED,
            address=text,
            started_at=now,
            content_format=fmt,
        )
        self.sessions.started(record)
        self.events.publish(
            SessionStarted(record.id, endpoint, now, record.mode, record.address, fmt)
        )
        runner = self._runner(requester)
        task = asyncio.get_running_loop().create_task(
            self._finish_read(runner, record, target, addr), name=f"bootstrap read {endpoint}"
        )
        self._active[endpoint] = task
        self._tasks.add(task)

        def done(t: asyncio.Task[SessionRecord]) -> None:
            self._tasks.discard(t)
            if self._active.get(endpoint) is t:
                del self._active[endpoint]

        task.add_done_callback(done)
        return await asyncio.shield(task)

    async def _finish_read(
        self, runner: SessionRunner, record: SessionRecord, path: Path, address: Address
    ) -> SessionRecord:
        try:
            result = await runner.run_read(record, path, address)
        except asyncio.CancelledError:
            current = self.sessions.get(record.id) or record
            cancelled = replace(
                current,
                status=SessionStatus.FAILED,
                ended_at=self._clock(),
                failure=FailureReason.CANCELLED,
                message="bootstrap server shut down",
            )
            await asyncio.shield(self.sessions.ended(cancelled))
            raise
        await self.sessions.ended(result)
        return result

    def _runner(self, requester: Requester) -> SessionRunner:
        return SessionRunner(
            requester,
            publish=self.events.publish,
            update=self.sessions.updated,
            clock=self._clock,
            model=self.model,
            request_timeout_s=self.request_timeout_s,
        )

    async def _push_requester(self, endpoint: str, address: str) -> Requester | SessionRecord:
        """What a server-initiated session sends with, or its refused record when none can start."""
        if endpoint in self._active or await self.sessions.running_elsewhere(endpoint):
            return await self._reject_push(
                endpoint,
                address,
                FailureReason.BUSY,
                "a bootstrap session for this endpoint is already running",
            )
        if self._push_endpoint is None:
            return await self._reject_push(
                endpoint, address, FailureReason.TRANSPORT, "the bootstrap server is not started"
            )
        return self._push_endpoint

    async def _reject_push(
        self, endpoint: str, address: str, reason: FailureReason, message: str
    ) -> SessionRecord:
        record = await self._rejected(endpoint, address, reason, message)
        logger.info("bootstrap of %s (%r) not started: %s", address, endpoint, message)
        record = replace(record, mode=SessionMode.SERVER_INITIATED)
        return record

    async def on_registration(
        self, endpoint: str, address: Address, lwm2m_version: str | None = None
    ) -> SessionRecord | None:
        """Co-located server hook: re-bootstrap a registering client whose config changed."""
        config = await self.configs.fetch(endpoint)
        if config is None or not self.configs.needs_bootstrap(endpoint) or endpoint in self._active:
            return None
        logger.info("configuration of %s changed: server-initiated bootstrap", endpoint)
        fmt = choose_content_format(config, None, lwm2m_version)
        return await self.push(endpoint, address, content_format=fmt)

    def registration_listener(self) -> Callable[[Any], None]:
        """A listener for the LwM2M server's events: acts on REGISTRATION events only.

        Duck-typed (``event.type.value == "registration"``, ``event.registration.address``)
        so the bootstrap package does not depend on the server package.
        """

        def listener(event: Any) -> None:
            kind = getattr(getattr(event, "type", None), "value", None)
            registration = getattr(event, "registration", None)
            if kind != "registration" or registration is None:
                return
            if getattr(event, "origin", None) is not None:
                return  # relayed from another cluster node, whose bootstrap server acts on it
            endpoint = registration.endpoint
            if not self._shared and not self.configs.needs_bootstrap(endpoint):
                return  # this process alone writes the configurations: its view is exact
            if getattr(registration, "identity", None) is not None:
                # Registered over DTLS: our plain endpoint cannot reach that socket, and
                # the bootstrap server does not start DTLS handshakes as a client.
                logger.info("%s changed configuration not pushed: registered over DTLS", endpoint)
                return
            version = getattr(registration, "lwm2m_version", None)
            task = asyncio.get_running_loop().create_task(
                self.on_registration(
                    endpoint, registration.address, version if isinstance(version, str) else None
                )
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        return listener


def _bad_request(reason: str) -> Message:
    return Message(Code.BAD_REQUEST, payload=reason.encode("utf-8"), content_format=0)


def _new_id() -> str:
    return secrets.token_hex(8)

"""The LwM2M server: registration interface plus device management and reporting.

:class:`LwM2MServer` composes small parts: the :class:`Registrar` (``/rd``),
:class:`QueueMode`, :class:`Observations`, the stores and the
:class:`EventBus`. It owns the CoAP endpoints (plain UDP and, when
configured, DTLS) and is the request handler they call.

Every device-management operation is a CON request sent to the address the
client last registered or updated from, over the transport it used (DTLS
registrations are reached over DTLS). Errors: :class:`ClientNotFound` for an
unknown endpoint name, :class:`RequestTimeout`, :class:`RemoteError` with the
client's code for 4.xx/5.xx answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from lwm2m.coap.codes import Code, ContentFormat
from lwm2m.coap.errors import CoapError, ResetReceived
from lwm2m.coap.errors import RequestTimeout as CoapRequestTimeout
from lwm2m.coap.message import Message
from lwm2m.coap.peer import Address, Peer
from lwm2m.formats.errors import FormatError
from lwm2m.model.nodes import LwM2MObject, Node, ObjectInstance, Value
from lwm2m.model.path import Path, PathError
from lwm2m.model.registry import ModelRegistry, default_registry
from lwm2m.protocol.attributes import AttributeUpdate
from lwm2m.protocol.errors import RemoteError
from lwm2m.server import content
from lwm2m.server.errors import (
    ClientNotFound,
    InvalidResponse,
    ObservationNotFound,
    RequestTimeout,
    ServerError,
)
from lwm2m.server.events import EventBus, SendEvent
from lwm2m.server.links import LinkFormatError, parse_discover
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
    ObserveRequest,
    ObserveResponse,
    ReadCompositeRequest,
    ReadCompositeResponse,
    ReadRequest,
    ReadResponse,
    WriteAttributesRequest,
    WriteAttributesResponse,
    WriteCompositeRequest,
    WriteCompositeResponse,
    WriteRequest,
    WriteResponse,
)
from lwm2m.server.queue import DEFAULT_AWAKE_TIME_S, DEFAULT_MAX_QUEUED, QueueMode
from lwm2m.server.registrar import (
    DEFAULT_LIFETIME_GRACE_S,
    Registrar,
    RegistrarConfig,
    identity_key,
)
from lwm2m.stores.base import Stores
from lwm2m.stores.memory import MemoryStores
from lwm2m.stores.records import ObservationRecord, Registration

logger = logging.getLogger(__name__)

PathLike = Path | str


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
    ) -> None:
        self.config = config or ServerConfig()
        self.stores: Stores = stores if stores is not None else MemoryStores()
        self.model = model if model is not None else default_registry()
        self.clock = clock
        self.events = EventBus()
        self.queue = QueueMode(
            self.events,
            awake_time_s=self.config.awake_time_s,
            max_queued=self.config.max_queued,
            clock=clock,
        )
        self.observations = Observations(
            self.stores.observations,
            self.events,
            model=self.model,
            clock=clock,
            on_activity=self._observation_activity,
        )
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
        )
        self._coap: ServerEndpoint | None = None
        self._coaps: ServerEndpoint | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._expiry_task: asyncio.Task[None] | None = None
        self._started = False

    def counters(self) -> dict[str, float]:
        """Monotonic counters for /metrics (Prometheus ``_total`` names)."""
        secure = self._coaps
        return {
            "dtls_handshakes_total": float(secure.handshakes_completed if secure else 0),
            "dtls_handshake_failures_total": float(secure.handshakes_failed if secure else 0),
        }

    # ================================================================== lifecycle
    async def start(self) -> None:
        """Bind the endpoints and start the lifetime sweep."""
        from lwm2m.coap.endpoint import Endpoint

        if self._started:
            return
        self._coap = await Endpoint.create(
            self.config.host, self.config.coap_port, handler=self._handle_plain
        )
        self._coap.add_activity_listener(self._activity)
        if self.config.dtls is not None:
            from lwm2m.coap.dtls import DtlsServer

            try:
                self._coaps = await Endpoint.create(
                    self.config.host,
                    self.config.coaps_port,
                    handler=self._handle_secure,
                    security=DtlsServer(self.config.dtls),
                )
            except BaseException:
                await self._coap.close()
                self._coap = None
                raise
            self._coaps.add_activity_listener(self._activity)
        await self._after_start()

    async def start_with(self, coap: ServerEndpoint, coaps: ServerEndpoint | None = None) -> None:
        """Start on endpoints created by the caller (their handler must call :meth:`handle`)."""
        self._coap = coap
        self._coaps = coaps
        coap.add_activity_listener(self._activity)
        if coaps is not None:
            coaps.add_activity_listener(self._activity)
        await self._after_start()

    async def _after_start(self) -> None:
        assert self._coap is not None
        self._coap.set_orphan_notification_handler(self._orphan_plain)
        if self._coaps is not None:
            self._coaps.set_orphan_notification_handler(self._orphan_secure)
        self._started = True
        loop = asyncio.get_running_loop()
        self._expiry_task = loop.create_task(self._expiry_loop(), name="lwm2m expiry")
        logger.info(
            "LwM2M server listening on coap://%s:%d%s (%d registrations restored)",
            *self.coap_address,
            f" and coaps://{self.coaps_address[0]}:{self.coaps_address[1]}"
            if self.coaps_address
            else "",
            len(self.stores.registrations),
        )

    async def stop(self) -> None:
        """Stop serving; the stores stay open (the caller owns them)."""
        if not self._started:
            return
        self._started = False
        for task in (self._expiry_task, *self._tasks):
            if task is not None:
                task.cancel()
        for task in (self._expiry_task, *self._tasks):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._tasks.clear()
        self.queue.close()
        await self.observations.close()
        for ep in (self._coap, self._coaps):
            if ep is not None:
                await ep.close()
        self.events.close()

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

    def add_message_tracer(self, cb: Callable[[str, Message, Address], None]) -> None:
        """Pass ``cb`` to the CoAP endpoints' ``add_message_tracer`` (a CoAP message log)."""
        for ep in (self._coap, self._coaps):
            add = getattr(ep, "add_message_tracer", None)
            if add is not None:
                add(cb)

    def remove_message_tracer(self, cb: Callable[[str, Message, Address], None]) -> None:
        for ep in (self._coap, self._coaps):
            remove = getattr(ep, "remove_message_tracer", None)
            if remove is not None:
                with contextlib.suppress(ValueError):
                    remove(cb)

    # ================================================================== registrations
    def registrations(self) -> list[Registration]:
        return self.stores.registrations.list()

    def get_registration(self, endpoint: str) -> Registration | None:
        return self.stores.registrations.get_by_endpoint(endpoint)

    def is_awake(self, endpoint: str) -> bool:
        reg = self._registration(endpoint)
        return self.queue.is_awake(reg)

    async def deregister(self, endpoint: str) -> Registration:
        """Remove a client's registration on the operator's request."""
        reg = self._registration(endpoint)
        await self.registrar.remove(reg, "deregistered")
        return reg

    async def check_expiry(self) -> list[Registration]:
        """Remove registrations past lifetime + grace now (the sweep does it every second)."""
        return await self.registrar.expire()

    def observations_of(self, endpoint: str) -> list[ObservationRecord]:
        reg = self._registration(endpoint)
        return self.stores.observations.for_registration(reg.id)

    # ================================================================== request handling
    async def handle(self, request: Any) -> Message:
        """The endpoint's request handler (``IncomingRequest`` -> response)."""
        message: Message = request.message
        peer: Peer = request.peer
        path = message.uri_path
        if path and path[0] == "rd":
            response = await self.registrar.handle(message, peer)
            if response.code in (Code.CREATED, Code.CHANGED):
                reg = self.stores.registrations.get_by_address(peer.address)
                if reg is not None:
                    self.queue.on_activity(reg)
                    if response.code == Code.CHANGED and self._has_dormant_observations(reg):
                        self._spawn(self.restore_observations(reg))
            return response
        if path == ("dp",):
            return await self._handle_send(message, peer)
        return Message(Code.NOT_FOUND)

    async def _handle_plain(self, request: Any) -> Message:
        return await self.handle(request)

    async def _handle_secure(self, request: Any) -> Message:
        return await self.handle(request)

    async def _handle_send(self, message: Message, peer: Peer) -> Message:
        if message.code != Code.POST:
            return Message(Code.METHOD_NOT_ALLOWED)
        reg = self.stores.registrations.get_by_address(peer.address)
        if reg is None or (reg.identity is not None and reg.identity != peer.identity):
            return _diagnostic(Code.NOT_FOUND, "not registered: Send needs a registration")
        received_at = self.clock()
        try:
            values, records = content.decode_reported(
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

    def _activity(self, peer: Peer) -> None:
        reg = self.stores.registrations.get_by_address(peer.address)
        if reg is not None and reg.queue_mode:
            self.queue.on_activity(reg)

    def _observation_activity(self, record: ObservationRecord) -> None:
        reg = self.stores.registrations.get(record.registration_id)
        if reg is not None and reg.queue_mode:
            self.queue.on_activity(reg)

    async def _registration_removed(self, registration: Registration, reason: str) -> None:
        self.queue.forget(registration.id)
        await self.observations.drop_registration(registration.id)

    async def _expiry_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.expiry_interval_s)
            try:
                await self.registrar.expire()
            except Exception:
                logger.exception("registration expiry sweep failed")

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
        """
        if not self._started or not message.token:
            return False
        record = self.stores.observations.get(message.token.hex())
        if record is None or self.observations.is_live(record.id):
            return False
        reg = self.stores.registrations.get(record.registration_id)
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
            request = self._observe_message(
                reg, record.paths, record.composite, record.content_format
            )
        except FormatError as exc:
            logger.warning("cannot rebuild observation %s on %s: %s", record.id, reg.endpoint, exc)
            return False
        handle = endpoint.adopt_observation(request, peer.address, message.token, message)
        self.observations.adopt(record, handle)
        logger.info("observation %s on %s adopted after a restart", record.id, reg.endpoint)
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
        for record in self.stores.observations.for_registration(registration.id):
            if self.observations.is_live(record.id):
                continue
            await self.stores.observations.remove(record.id)
            if self.observations.is_live(record.id):
                # Adopted by a notification meanwhile: keep it as it is.
                await self.stores.observations.add(record)
                continue
            try:
                if record.composite:
                    await self.observe_composite(
                        registration.endpoint, record.paths, format=record.content_format
                    )
                else:
                    await self.observe(
                        registration.endpoint, record.path, format=record.content_format
                    )
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

    def _endpoint_for(self, reg: Registration) -> ServerEndpoint:
        ep = self._coaps if reg.identity is not None else self._coap
        if ep is None:
            raise ServerError("server not started")
        return ep

    async def _exchange(
        self,
        endpoint: str,
        build: Callable[[Registration], Message],
        timeout: float | None,
    ) -> tuple[Registration, Message]:
        timeout = self.config.request_timeout_s if timeout is None else timeout
        reg = self._registration(endpoint)
        try:
            async with asyncio.timeout(timeout):
                if reg.queue_mode:
                    await self.queue.wait_awake(reg, None)
                    # The client may have re-registered (new address) while we waited.
                    reg = self._registration(endpoint)
                response = await self._endpoint_for(reg).request(build(reg), reg.address)
        except TimeoutError:
            raise RequestTimeout(f"no answer from {endpoint!r} within {timeout} s") from None
        except CoapRequestTimeout:
            raise RequestTimeout(f"no answer from {endpoint!r}") from None
        except ResetReceived:
            raise RemoteError(Code.EMPTY, "the client answered with RST") from None
        except CoapError as exc:
            raise ServerError(f"request to {endpoint!r} failed: {exc}") from None
        _check(response)
        return reg, response

    # ================================================================== operations
    async def read(
        self,
        endpoint: str,
        path: PathLike,
        *,
        format: int | None = None,
        timeout: float | None = None,
    ) -> ReadResponse:
        req = ReadRequest(_path(path), format)
        _, resp = await self._exchange(
            endpoint, lambda r: req.to_message(r, self._accept(r, req.path, format)), timeout
        )
        return ReadResponse(self._decode(resp, req.path), resp.content_format, Code(resp.code))

    async def discover(
        self, endpoint: str, path: PathLike, *, timeout: float | None = None
    ) -> DiscoverResponse:
        req = DiscoverRequest(_path(path))
        _, resp = await self._exchange(endpoint, req.to_message, timeout)
        try:
            links = parse_discover(resp.payload)
        except LinkFormatError as exc:
            raise InvalidResponse(f"Discover answer is not link-format: {exc}") from None
        return DiscoverResponse(links, resp.payload.decode("utf-8"), Code(resp.code))

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
        p = _path(path)
        node = _as_node(p, value)
        req = WriteRequest(p, node, replace, format)

        def build(reg: Registration) -> Message:
            fmt = format if format is not None else content.preferred_format(reg, p)
            return req.to_message(reg, fmt, content.encode(fmt, node, p, self.model))

        _, resp = await self._exchange(endpoint, build, timeout)
        return WriteResponse(Code(resp.code))

    async def write_attributes(
        self,
        endpoint: str,
        path: PathLike,
        attributes: AttributeUpdate | Mapping[str, int | float | None],
        *,
        timeout: float | None = None,
    ) -> WriteAttributesResponse:
        """``attributes`` maps pmin/pmax/gt/lt/st/epmin/epmax to a value, or None to remove it."""
        update = (
            attributes if isinstance(attributes, AttributeUpdate) else _attribute_update(attributes)
        )
        req = WriteAttributesRequest(_path(path), update)
        _, resp = await self._exchange(endpoint, req.to_message, timeout)
        return WriteAttributesResponse(Code(resp.code))

    async def execute(
        self,
        endpoint: str,
        path: PathLike,
        arguments: str | None = None,
        *,
        timeout: float | None = None,
    ) -> ExecuteResponse:
        req = ExecuteRequest(_path(path), arguments)
        _, resp = await self._exchange(endpoint, req.to_message, timeout)
        return ExecuteResponse(Code(resp.code))

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
        p = _path(path)
        if not p.is_object:
            raise ValueError(f"Create targets an object path, not {p}")
        req = CreateRequest(p, instance, format)
        # The payload carries the instance (with its ID) inside the object.
        assert p.object_id is not None
        body: Node = (
            LwM2MObject.of(p.object_id, [instance])
            if isinstance(instance, ObjectInstance)
            else instance
        )

        def build(reg: Registration) -> Message:
            fmt = format if format is not None else content.preferred_format(reg, p)
            return req.to_message(reg, fmt, content.encode(fmt, body, p, self.model))

        reg, resp = await self._exchange(endpoint, build, timeout)
        location: Path | None = None
        if resp.location_path:
            segments = list(resp.location_path)
            root = [s for s in reg.links.root_path.split("/") if s]
            if segments[: len(root)] == root:
                segments = segments[len(root) :]
            with contextlib.suppress(PathError):
                location = Path.from_segments(segments)
        return CreateResponse(location, Code(resp.code))

    async def delete(
        self, endpoint: str, path: PathLike, *, timeout: float | None = None
    ) -> DeleteResponse:
        req = DeleteRequest(_path(path))
        _, resp = await self._exchange(endpoint, req.to_message, timeout)
        return DeleteResponse(Code(resp.code))

    async def read_composite(
        self,
        endpoint: str,
        paths: Iterable[PathLike],
        *,
        format: int | None = None,
        timeout: float | None = None,
    ) -> ReadCompositeResponse:
        req = ReadCompositeRequest(tuple(_path(p) for p in paths), format)

        def build(reg: Registration) -> Message:
            fmt = format if format is not None else content.preferred_format(reg, None)
            return req.to_message(reg, fmt, content.encode_paths(fmt, req.paths), fmt)

        _, resp = await self._exchange(endpoint, build, timeout)
        try:
            values = content.decode_composite(
                resp.content_format, resp.payload, req.paths, self.model
            )
        except FormatError as exc:
            raise InvalidResponse(f"cannot decode Read-Composite answer: {exc}") from None
        return ReadCompositeResponse(values, resp.content_format, Code(resp.code))

    async def write_composite(
        self,
        endpoint: str,
        values: Mapping[PathLike, Node | Value],
        *,
        format: int | None = None,
        timeout: float | None = None,
    ) -> WriteCompositeResponse:
        items = {_path(p): v for p, v in values.items()}
        req = WriteCompositeRequest(items, format)

        def build(reg: Registration) -> Message:
            fmt = format if format is not None else content.preferred_format(reg, None)
            return req.to_message(reg, fmt, content.encode_composite(fmt, items, self.model))

        _, resp = await self._exchange(endpoint, build, timeout)
        return WriteCompositeResponse(Code(resp.code))

    async def observe(
        self,
        endpoint: str,
        path: PathLike,
        *,
        format: int | None = None,
        timeout: float | None = None,
    ) -> ObserveResponse:
        """Observe a path; notifications arrive as :class:`NotificationEvent` on :attr:`events`."""
        p = _path(path)
        record, first, content_format = await self._start_observation(
            endpoint,
            (p,),
            False,
            format,
            lambda r: self._observe_message(r, (p,), False, format),
            timeout,
        )
        return ObserveResponse(record, first[p], content_format)

    async def observe_composite(
        self,
        endpoint: str,
        paths: Iterable[PathLike],
        *,
        format: int | None = None,
        timeout: float | None = None,
    ) -> ObserveCompositeResponse:
        ps = tuple(_path(p) for p in paths)
        record, first, content_format = await self._start_observation(
            endpoint,
            ps,
            True,
            format,
            lambda r: self._observe_message(r, ps, True, format),
            timeout,
        )
        return ObserveCompositeResponse(record, first, content_format)

    def _observe_message(
        self, reg: Registration, paths: tuple[Path, ...], composite: bool, format: int | None
    ) -> Message:
        """The registering GET (single path) or FETCH (composite), without token."""
        if not composite:
            return ObserveRequest(paths[0], format).to_message(
                reg, self._accept(reg, paths[0], format)
            )
        fmt = format if format is not None else content.preferred_format(reg, None)
        return ObserveCompositeRequest(paths, format).to_message(
            reg, fmt, content.encode_paths(fmt, paths), fmt
        )

    async def _start_observation(
        self,
        endpoint: str,
        paths: tuple[Path, ...],
        composite: bool,
        format: int | None,
        build: Callable[[Registration], Message],
        timeout: float | None,
    ) -> tuple[ObservationRecord, dict[Path, Node], int | None]:
        timeout = self.config.request_timeout_s if timeout is None else timeout
        reg = self._registration(endpoint)
        token = secrets.token_bytes(8)
        handle: Any = None
        try:
            async with asyncio.timeout(timeout):
                if reg.queue_mode:
                    await self.queue.wait_awake(reg, None)
                    reg = self._registration(endpoint)
                message = build(reg).with_(token=token)
                handle = self._endpoint_for(reg).observe(message, reg.address)
                first: Message = await handle.first()
        except TimeoutError:
            await _quiet_cancel(handle)
            raise RequestTimeout(f"no answer from {endpoint!r} within {timeout} s") from None
        except CoapRequestTimeout:
            await _quiet_cancel(handle)
            raise RequestTimeout(f"no answer from {endpoint!r}") from None
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
        record = ObservationRecord(
            id=(first.token or token).hex(),
            registration_id=reg.id,
            endpoint=reg.endpoint,
            paths=paths,
            composite=composite,
            content_format=format,
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
        if self.stores.registrations.get(reg.id) is None:
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
        record = self.stores.observations.get(oid)
        if record is None or record.endpoint != endpoint:
            raise ObservationNotFound(f"no observation {oid} on {endpoint!r}")
        reg = self.stores.registrations.get(record.registration_id)
        if active and reg is not None and reg.queue_mode and not self.queue.is_awake(reg):
            # Reactive cancel of a sleeping client: forget now, RST its next notification.
            active = False
        cancelled = await self.observations.cancel(oid, active=active)
        return cancelled or record

    async def cancel_observations(self, endpoint: str, path: PathLike | None = None) -> int:
        """Cancel every observation of ``endpoint`` (on ``path``, when given)."""
        p = None if path is None else _path(path)
        count = 0
        for rec in self.observations_of(endpoint):
            if p is None or p in rec.paths:
                await self.cancel_observation(endpoint, rec)
                count += 1
        return count

    # ================================================================== helpers
    def _accept(self, reg: Registration, path: Path, format: int | None) -> int | None:
        if format is not None:
            return format
        # 1.0 clients get no Accept (several reject it); they answer TLV or text.
        if reg.lwm2m_version == "1.0":
            return None
        return content.preferred_format(reg, path)

    def _decode(self, resp: Message, path: Path) -> Node:
        try:
            return content.decode(resp.content_format, resp.payload, path, self.model)
        except FormatError as exc:
            raise InvalidResponse(f"cannot decode the answer for {path}: {exc}") from None


def _check(response: Message) -> None:
    code = int(response.code)
    if 64 <= code < 96:
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


def _as_node(path: Path, value: Node | Value) -> Node:
    from lwm2m.model.nodes import (
        LwM2MObject,
        ObjectInstance,
        Resource,
        ResourceInstance,
    )

    if isinstance(value, LwM2MObject | ObjectInstance | Resource | ResourceInstance):
        return value
    if path.is_resource:
        assert path.resource_id is not None
        return Resource.single(path.resource_id, value)
    if path.is_resource_instance:
        assert path.resource_instance_id is not None
        return ResourceInstance(path.resource_instance_id, value)
    raise ValueError(f"a plain value can only be written to a resource path, not {path}")


def _attribute_update(values: Mapping[str, int | float | None]) -> AttributeUpdate:
    from lwm2m.protocol.attributes import ALL_ATTRIBUTES, AttributeError_

    to_set: list[tuple[str, int | float]] = []
    to_remove: list[str] = []
    for name, value in values.items():
        if name not in ALL_ATTRIBUTES:
            raise AttributeError_(f"unknown attribute {name!r}")
        if value is None:
            to_remove.append(name)
        else:
            to_set.append((name, value))
    return AttributeUpdate(tuple(to_set), tuple(to_remove))

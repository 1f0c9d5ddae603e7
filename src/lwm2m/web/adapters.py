"""The web layer's backend protocols over the real LwM2M server and bootstrap server.

Here, and only here, the roles' records, responses, events and exceptions
become the web layer's :mod:`lwm2m.web.backend` shapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from lwm2m.bootstrap.events import BootstrapEvent, FailureReason
from lwm2m.coap.codes import Code
from lwm2m.coap.message import Message
from lwm2m.coap.peer import Address
from lwm2m.coap.tasks import cancel_and_wait
from lwm2m.formats.errors import FormatError
from lwm2m.model.registry import ModelRegistry
from lwm2m.protocol.attributes import AttributeError_
from lwm2m.protocol.bootstrap_config import BootstrapConfigError
from lwm2m.protocol.errors import RemoteError
from lwm2m.security.credentials import SecurityEntry
from lwm2m.server.errors import (
    ClientNotFound,
    ClientTimeout,
    ObservationNotFound,
    QueueFull,
    ServerError,
)
from lwm2m.server.events import (
    AwakeEvent,
    DeregistrationEvent,
    NotificationEvent,
    RegistrationEvent,
    SendEvent,
    ServerEvent,
    SleepingEvent,
    UpdatedEvent,
)
from lwm2m.server.operations import Request
from lwm2m.stores.base import SecurityConflict, SecurityStore
from lwm2m.stores.query import RegistrationQuery, per_minute
from lwm2m.stores.records import Registration
from lwm2m.web.backend import (
    BackendError,
    ClientInfo,
    ClientPage,
    ClusterNode,
    DeviceError,
    DeviceTimeout,
    FleetStats,
    InvalidInput,
    JsonObject,
    LinkInfo,
    UnknownClient,
    WebEvent,
)
from lwm2m.web.coaplog import coap_log_event
from lwm2m.web.present import client_json, composite_json, notification_json

if TYPE_CHECKING:
    from lwm2m.bootstrap.server import BootstrapServer
    from lwm2m.server.cluster_nodes import ClusterNodes
    from lwm2m.server.server import LwM2MServer

T = TypeVar("T")
R = TypeVar("R")
logger = logging.getLogger(__name__)

#: COAPLOG events one client's stream may hold unread before new ones are dropped.
COAP_LOG_BUFFER = 500


def _time(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)


def _address(address: tuple[str, int]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def registration_links(reg: Registration) -> tuple[LinkInfo, ...]:
    """``</3>;ver=1.1``, ``</3/0>`` ... from what the client announced."""
    links: list[LinkInfo] = []
    for obj in reg.links.objects:
        if obj.version is not None or not obj.instances:
            attrs: dict[str, str | None] = {} if obj.version is None else {"ver": obj.version}
            links.append(LinkInfo(f"/{obj.id}", attrs))
        links.extend(LinkInfo(f"/{obj.id}/{i}") for i in obj.instances)
    return tuple(links)


def client_info(reg: Registration, *, sleeping: bool = False) -> ClientInfo:
    """The web view of a registration; ``sleeping`` comes from the queue, which the record does not hold."""
    return ClientInfo(
        endpoint=reg.endpoint,
        registration_id=reg.id,
        address=_address(reg.address),
        lifetime_s=reg.lifetime_s,
        lwm2m_version=reg.lwm2m_version,
        binding=reg.binding,
        queue_mode=reg.queue_mode,
        registered_at=_time(reg.registered_at),
        last_update=_time(reg.updated_at),
        links=registration_links(reg),
        endpoint_type=reg.endpoint_type,
        sms_number=reg.sms_number,
        root_path=reg.root_path,
        secure=reg.secure,
        sleeping=sleeping,
        transport=("coaps" if reg.secure else "coap") + ("+tcp" if reg.transport == "tcp" else ""),
    )


def _code(code: Code | int) -> Code | None:
    if isinstance(code, Code):
        return code
    with contextlib.suppress(ValueError):
        return Code(code)
    return None


def _web_error(endpoint: str, exc: Exception) -> BackendError | None:
    """The web layer's form of a server failure (None: not one of the server's)."""
    match exc:
        case ClientNotFound():
            return UnknownClient(f"no registered client with endpoint {endpoint!r}")
        case ClientTimeout():
            return DeviceTimeout(str(exc))
        case RemoteError():
            code = _code(exc.code)
            if code is Code.EMPTY:
                return DeviceError(f"{endpoint!r} rejected the request (RST)")
            label = str(code) if code is not None else str(exc.code)
            detail = f": {exc.message}" if exc.message else ""
            return DeviceError(f"device answered {label}{detail}", code)
        case QueueFull():
            return DeviceError(f"request queue of sleeping client full: {exc}")
        case ObservationNotFound() | FormatError() | AttributeError_():
            return InvalidInput(str(exc))
        case ServerError():
            return DeviceError(str(exc))
    return None


class ServerAdapter:
    """:class:`lwm2m.web.backend.DeviceManager` over :class:`LwM2MServer`."""

    def __init__(self, server: LwM2MServer) -> None:
        self._server = server

    @property
    def model(self) -> ModelRegistry:
        """The server's own model, so the REST layer types values exactly as the server decodes them."""
        return self._server.model

    def _info(self, reg: Registration) -> ClientInfo:
        sleeping = reg.queue_mode and not self._server.queue.is_awake(reg)
        return client_info(reg, sleeping=sleeping)

    async def list_clients(self) -> Sequence[ClientInfo]:
        """Every registration of the fleet, with its queue-mode sleep state (one unbounded
        page: with a cluster's fleet in Redis, pages are what scales)."""
        page = await self._server.stores.registrations.fetch_query(RegistrationQuery())
        return [self._info(r) for r in page.items]

    async def query_clients(self, query: RegistrationQuery, *, sleeping: bool | None) -> ClientPage:
        """The store's page; only its items become :class:`ClientInfo`."""
        if sleeping is not None:
            awake = self._server.queue.is_awake
            # Only queue-mode clients can sleep: the store narrows to them first.
            if sleeping:
                query = replace(query, queue_mode=True, where=lambda r: not awake(r))
            else:
                query = replace(query, where=awake)
        page = await self._server.stores.registrations.fetch_query(query)
        return ClientPage(page.total, tuple(self._info(r) for r in page.items))

    async def fleet_stats(self) -> FleetStats:
        """The store's counters; sleeping = queue-mode clients minus the awake ones."""
        now = time.time()
        stats = await self._server.stores.registrations.fetch_stats(now)
        sleeping = max(0, stats.queue_mode - self._server.queue.awake_count())
        log = self._server.refusals
        # Per minute from what the refusal log remembers (the last few per name,
        # the last unnamed ones): exact unless a burst outgrew that memory.
        times = [r.time for _, entry in log.endpoints() for r in entry.recent]
        times.extend(r.time for r in log.unnamed())
        return FleetStats(
            stats,
            sleeping,
            float(sum(log.counts().values())),
            per_minute(times, now),
        )

    def get_client(self, endpoint: str) -> ClientInfo | None:
        """One registration by endpoint name from this node's memory (None: not there)."""
        reg = self._server.get_registration(endpoint)
        return None if reg is None else self._info(reg)

    async def fetch_client(self, endpoint: str) -> ClientInfo | None:
        """One registration by endpoint name, wherever the fleet holds it (None: not registered)."""
        reg = await self._server.fetch_registration(endpoint)
        return None if reg is None else self._info(reg)

    async def send(self, endpoint: str, request: Request[R], timeout: float) -> R:
        """The server's :meth:`~lwm2m.server.server.LwM2MServer.send`, with web errors.

        Any request class goes through unchanged: nothing here knows the
        operations.
        """
        reg = await self._server.fetch_registration(endpoint)
        asleep = reg is not None and reg.queue_mode and not self._server.queue.is_awake(reg)
        try:
            return await self._server.send(endpoint, request, timeout)
        except Exception as exc:
            error = _web_error(endpoint, exc)
            if error is None:
                raise
            if asleep and isinstance(error, DeviceTimeout):
                error = DeviceTimeout(
                    f"{endpoint!r} is asleep (queue mode) and did not wake up in time; "
                    "the queued request was dropped"
                )
            raise error from None

    async def events(self, endpoint: str | None) -> AsyncIterator[WebEvent]:
        """The server's events; for one client also its CoAP messages (COAPLOG)."""
        subscription = self._server.events.subscribe(endpoint)
        if endpoint is None:
            try:
                async for event in subscription:
                    web_event = self.web_event(event)
                    if web_event is not None:
                        yield web_event
            finally:
                subscription.close()
            return
        merged: asyncio.Queue[WebEvent | None] = asyncio.Queue()
        dropped_logs = 0

        def tracer(direction: str, msg: Message, address: Address) -> None:
            nonlocal dropped_logs
            reg = self._server.get_registration(endpoint)
            if reg is None or tuple(reg.address) != address:
                return
            if merged.qsize() >= COAP_LOG_BUFFER:
                dropped_logs += 1  # a reader that stalls loses log lines, not memory
                return
            merged.put_nowait(coap_log_event(direction, msg, endpoint, int(time.time() * 1000)))

        async def forward() -> None:
            try:
                async for event in subscription:
                    web_event = self.web_event(event)
                    if web_event is not None:
                        merged.put_nowait(web_event)
            finally:
                merged.put_nowait(None)

        pump = asyncio.create_task(forward())
        self._server.add_message_tracer(tracer)
        try:
            while (item := await merged.get()) is not None:
                yield item
        finally:
            self._server.remove_message_tracer(tracer)
            subscription.close()
            await cancel_and_wait([pump])
            if dropped_logs:
                logger.debug("%d COAPLOG events for %s dropped", dropped_logs, endpoint)

    def web_event(self, event: ServerEvent) -> WebEvent | None:
        """The SSE form of a server event (Leshan's event names and data shapes)."""
        ep = event.endpoint
        data: dict[str, Any]
        # A Register or Update is the client's own activity: on the node that took it
        # the client is awake. Relayed from another node (``origin``), this node's
        # queue does not know the client, so it is shown as on the node it came from.
        info = self._info if event.origin is None else client_info
        match event:
            case RegistrationEvent():
                data = client_json(info(event.registration))
            case UpdatedEvent():
                data = {
                    "registration": client_json(info(event.registration)),
                    "previous": client_json(client_info(event.previous)),
                }
            case DeregistrationEvent():
                data = client_json(client_info(event.registration))
                data["expired"] = event.expired
                data["replaced"] = event.replaced
            case NotificationEvent():
                record = event.observation
                if record.composite:
                    data = {
                        "ep": ep,
                        "kind": "composite",
                        "paths": [str(p) for p in record.paths],
                        "val": composite_json(dict(event.values), self._server.model),
                    }
                else:
                    data = notification_json(ep, record.path, event.content, self._server.model)
            case SleepingEvent() | AwakeEvent():
                data = {"ep": ep}
            case SendEvent():
                data = {"ep": ep, "val": composite_json(dict(event.values), self._server.model)}
            case _:
                return None
        return WebEvent(event.type.name, ep, data)

    # -- security store -------------------------------------------------------

    def list_security(self) -> Sequence[SecurityEntry]:
        """Straight from the server's security store, which the DTLS layer reads too."""
        return self._server.stores.security.list()

    def get_security(self, endpoint: str) -> SecurityEntry | None:
        """One entry of the server's security store."""
        return self._server.stores.security.get(endpoint)

    async def put_security(self, entry: SecurityEntry) -> None:
        """Through :func:`put_security_entry`, so an identity clash is a 400."""
        await put_security_entry(self._server.stores.security, entry)

    async def delete_security(self, endpoint: str) -> bool:
        """True when there was an entry to delete."""
        return await self._server.stores.security.remove(endpoint) is not None

    def counters(self) -> Mapping[str, float]:
        """The server's counters (DTLS handshakes ...) for /metrics."""
        return self._server.counters()


async def put_security_entry(store: SecurityStore, entry: SecurityEntry) -> None:
    """Add or replace ``entry``; a PSK identity another endpoint holds is bad input (400)."""
    try:
        await store.put(entry)
    except SecurityConflict as exc:
        raise InvalidInput(str(exc)) from None


HIDDEN = "<hidden>"


def _restore_hidden_keys(doc: dict[str, Any], stored: Mapping[str, Any] | None) -> dict[str, Any]:
    """Put back secrets the UI saw as ``<hidden>`` (listing redacts them) from the stored config."""
    if stored is None:
        return doc
    pairs: list[tuple[Any, Any]] = [(doc.get("bootstrap_server"), stored.get("bootstrap_server"))]
    new_servers, old_servers = doc.get("servers"), stored.get("servers")
    if isinstance(new_servers, list) and isinstance(old_servers, list):
        pairs += list(zip(new_servers, old_servers, strict=False))
    for new, old in pairs:
        if not isinstance(new, dict) or not isinstance(old, dict):
            continue
        new_sec, old_sec = new.get("security"), old.get("security")
        if (
            isinstance(new_sec, dict)
            and isinstance(old_sec, dict)
            and new_sec.get("key") == HIDDEN
            and "key" in old_sec
        ):
            new_sec["key"] = old_sec["key"]
    return doc


class BootstrapAdapter:
    """:class:`lwm2m.web.backend.BootstrapManager` over :class:`BootstrapServer`."""

    def __init__(self, bootstrap: BootstrapServer) -> None:
        self._bs = bootstrap

    async def list_configs(self) -> Mapping[str, JsonObject]:
        """Redacted (keys as ``<hidden>``): listings must not leak secrets."""
        return {c.endpoint: c.to_json(redact=True) for c in await self._bs.configs.fetch_all()}

    async def get_config(self, endpoint: str) -> JsonObject | None:
        """Redacted like :meth:`list_configs`."""
        config = await self._bs.configs.fetch(endpoint)
        return None if config is None else config.to_json(redact=True)

    async def put_config(self, endpoint: str, config: JsonObject) -> JsonObject:
        """Validate and store; secrets the UI saw as ``<hidden>`` keep their stored value."""
        old = await self._bs.configs.fetch(endpoint)
        doc = _restore_hidden_keys(
            json.loads(json.dumps(config)), None if old is None else old.to_json()
        )
        try:
            stored = await self._bs.configs.put(endpoint, doc)
        except BootstrapConfigError as exc:
            raise InvalidInput(str(exc)) from None
        return stored.to_json(redact=True)

    async def delete_config(self, endpoint: str) -> bool:
        """True when there was a configuration to delete."""
        return await self._bs.configs.delete(endpoint) is not None

    async def sessions(self, endpoint: str | None) -> Sequence[JsonObject]:
        """The session history as JSON, newest first (running sessions before ended ones)."""
        return [r.to_json() for r in await self._bs.sessions.shared_list(endpoint)]

    async def push(self, endpoint: str, address: tuple[str, int], *, timeout: float) -> JsonObject:
        """Run a server-initiated session, waiting at most ``timeout``.

        The session is shielded: when the wait ends first it carries on and its
        outcome lands in the history. A failed session becomes the typed error of
        its reason (timeout 504, unknown endpoint 404, bad request 400, else 502).
        """
        task = asyncio.ensure_future(self._bs.push(endpoint, address))
        # The session may outlive this request (timeout): its outcome lands in the history.
        task.add_done_callback(_retrieve)
        try:
            record = await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            raise DeviceTimeout(
                f"the bootstrap session with {endpoint!r} did not end within {timeout:g} s "
                "(it continues; see /api/bootstrap/sessions)"
            ) from None
        if record.ok:
            return record.to_json()
        reason = record.failure
        message = record.message or (reason.value if reason is not None else "failed")
        if reason is FailureReason.TIMEOUT:
            raise DeviceTimeout(message)
        if reason is FailureReason.UNKNOWN_ENDPOINT:
            raise UnknownClient(message)
        if reason is FailureReason.BAD_REQUEST:
            raise InvalidInput(message)
        code = None
        if record.code is not None:
            with contextlib.suppress(ValueError):
                code = Code.from_dotted(record.code)
        raise DeviceError(message, code)

    async def events(self, endpoint: str | None) -> AsyncIterator[WebEvent]:
        """The bootstrap server's events as ``BOOTSTRAP_*`` web events."""
        with self._bs.events.subscribe(endpoint) as subscription:
            async for event in subscription:
                yield bootstrap_web_event(event)

    def counters(self) -> Mapping[str, float]:
        """Sessions running now, for /metrics."""
        return {"sessions_running": float(len(self._bs.sessions.running()))}


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.warning("bootstrap push failed: %r", task.exception())


def bootstrap_web_event(event: BootstrapEvent) -> WebEvent:
    """``BOOTSTRAP_STARTED``, ``BOOTSTRAP_REQUEST``, ... with the event's JSON plus ``ep``."""
    data = event.to_json()
    data["ep"] = event.endpoint
    return WebEvent(f"BOOTSTRAP_{event.type.name}", event.endpoint, data)


class ClusterAdapter:
    """:class:`lwm2m.web.backend.ClusterView` over the server's node registry."""

    def __init__(self, nodes: ClusterNodes) -> None:
        self._nodes = nodes

    @property
    def node_id(self) -> str:
        return self._nodes.node_id

    @property
    def shared(self) -> bool:
        return self._nodes.shared

    async def nodes(self) -> Sequence[ClusterNode]:
        """Every node the registry lists; a Redis failure is the routes' 503."""
        return await self._nodes.list()

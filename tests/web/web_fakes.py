"""In-memory backends for the web layer: a device tree per client, a config store.

They implement :class:`lwm2m.web.backend.DeviceManager` / ``BootstrapManager``
the way the real adapters do (typed errors, events), so route, SSE and
metrics behaviour is tested without CoAP.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from lwm2m.coap.codes import Code
from lwm2m.model.nodes import LwM2MObject, Node, ObjectInstance, Resource, ResourceInstance, Value
from lwm2m.model.path import Path
from lwm2m.model.registry import ModelRegistry, default_registry
from lwm2m.security.credentials import SecurityEntry
from lwm2m.server.object_links import Link
from lwm2m.server.operations import (
    CancelCompositeObservationRequest,
    CancelObservationRequest,
    CancelObservationResponse,
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
    Request,
    WriteAttributesRequest,
    WriteAttributesResponse,
    WriteCompositeRequest,
    WriteCompositeResponse,
    WriteRequest,
    WriteResponse,
)
from lwm2m.stores.memory import MemorySecurityStore
from lwm2m.stores.query import RegistrationQuery, RegistrationStats
from lwm2m.stores.records import ObservationRecord
from lwm2m.web.adapters import put_security_entry
from lwm2m.web.app import WebServer
from lwm2m.web.backend import (
    ClientInfo,
    ClientPage,
    DeviceError,
    DeviceTimeout,
    FleetStats,
    InvalidInput,
    LinkInfo,
    UnknownClient,
    WebEvent,
)
from lwm2m.web.present import notification_json

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
R = TypeVar("R")


class EventFanout:
    def __init__(self) -> None:
        self._queues: list[tuple[str | None, asyncio.Queue[WebEvent | None]]] = []
        #: set each time a subscriber goes away (tests await it)
        self.unsubscribed = asyncio.Event()
        self.subscribed = asyncio.Event()

    def publish(self, event: WebEvent) -> None:
        for ep, queue in self._queues:
            if ep is None or ep == event.endpoint:
                queue.put_nowait(event)

    @property
    def subscribers(self) -> int:
        return len(self._queues)

    def close(self) -> None:
        for _, queue in self._queues:
            queue.put_nowait(None)

    async def events(self, endpoint: str | None) -> AsyncIterator[WebEvent]:
        item: tuple[str | None, asyncio.Queue[WebEvent | None]] = (endpoint, asyncio.Queue())
        self._queues.append(item)
        self.subscribed.set()
        try:
            while True:
                event = await item[1].get()
                if event is None:
                    return
                yield event
        finally:
            self._queues.remove(item)
            self.unsubscribed.set()


def client(endpoint: str, objects: Sequence[str] = ("/1/0", "/3/0", "/3303/0")) -> ClientInfo:
    return ClientInfo(
        endpoint=endpoint,
        registration_id=f"reg-{endpoint}",
        address="127.0.0.1:56830",
        lifetime_s=300,
        lwm2m_version="1.1",
        binding="U",
        queue_mode=False,
        registered_at=T0,
        last_update=T0,
        links=tuple(LinkInfo(o) for o in objects),
    )


class FakeDevices:
    """A device manager whose devices are dicts of resource path -> value."""

    def __init__(self) -> None:
        self._model = default_registry()
        self.clients: dict[str, ClientInfo] = {}
        self.values: dict[str, dict[Path, Value]] = {}
        self.security_store = MemorySecurityStore()
        self.bus = EventFanout()
        self.calls: list[tuple[str, str, Any]] = []
        self.observed: dict[str, set[Path]] = {}
        self.composite_observed: dict[str, list[frozenset[Path]]] = {}
        self.timeout_endpoints: set[str] = set()
        # One handler per request class: the fake's side of the generic send.
        self._handlers: dict[type[Any], Callable[[str, Any, float], Any]] = {
            ReadRequest: self._read,
            DiscoverRequest: self._discover,
            WriteRequest: self._write,
            WriteAttributesRequest: self._write_attributes,
            ExecuteRequest: self._execute,
            CreateRequest: self._create,
            DeleteRequest: self._delete,
            ReadCompositeRequest: self._read_composite,
            WriteCompositeRequest: self._write_composite,
            ObserveRequest: self._observe,
            CancelObservationRequest: self._cancel_observation,
            ObserveCompositeRequest: self._observe_composite,
            CancelCompositeObservationRequest: self._cancel_composite_observation,
        }

    @property
    def model(self) -> ModelRegistry:
        return self._model

    @property
    def security(self) -> dict[str, SecurityEntry]:
        """The stored entries by endpoint (a snapshot, for assertions)."""
        return {e.endpoint: e for e in self.security_store.list()}

    def add(self, endpoint: str, values: Mapping[str, Value]) -> None:
        self.clients[endpoint] = client(endpoint)
        self.values[endpoint] = {Path.parse(k): v for k, v in values.items()}
        self.bus.publish(WebEvent("REGISTRATION", endpoint, {"endpoint": endpoint}))

    async def list_clients(self) -> Sequence[ClientInfo]:
        return list(self.clients.values())

    def get_client(self, endpoint: str) -> ClientInfo | None:
        return self.clients.get(endpoint)

    async def fetch_client(self, endpoint: str) -> ClientInfo | None:
        return self.clients.get(endpoint)

    async def query_clients(self, query: RegistrationQuery, *, sleeping: bool | None) -> ClientPage:
        # The fake answers the search and the endpoint order only: filter
        # semantics are tested against the real stores (tests/stores, test_client_list).
        items = sorted(self.clients.values(), key=lambda c: c.endpoint)
        if query.text:
            text = query.text.lower()
            items = [c for c in items if text in c.endpoint.lower() or text in c.address]
        if sleeping is not None:
            items = [c for c in items if c.sleeping == sleeping]
        stop = None if query.limit is None else query.offset + query.limit
        return ClientPage(len(items), tuple(items[query.offset : stop]))

    async def fleet_stats(self) -> FleetStats:
        return FleetStats(
            RegistrationStats(len(self.clients), 0, 0, {"U": len(self.clients)}, {}), 0
        )

    def _tree(self, endpoint: str) -> dict[Path, Value]:
        if endpoint not in self.clients:
            raise UnknownClient(f"no registered client {endpoint!r}")
        if endpoint in self.timeout_endpoints:
            raise DeviceTimeout(f"no answer from {endpoint!r}")
        return self.values[endpoint]

    def node(self, endpoint: str, path: Path) -> Node:
        tree = self._tree(endpoint)
        leaves = {p: v for p, v in tree.items() if p.startswith(path)}
        if not leaves:
            raise DeviceError("device answered 4.04 Not Found", Code.NOT_FOUND)

        def resource(rpath: Path) -> Resource:
            assert rpath.resource_id is not None
            if rpath in tree:
                return Resource.single(rpath.resource_id, tree[rpath])
            items = {p.resource_instance_id: v for p, v in tree.items() if p.parent == rpath}
            return Resource.multiple(rpath.resource_id, items)  # type: ignore[arg-type]

        def instance(ipath: Path) -> ObjectInstance:
            assert ipath.instance_id is not None
            rids = sorted({p.resource_id for p in leaves if p.startswith(ipath)})  # type: ignore[type-var]
            return ObjectInstance.of(ipath.instance_id, [resource(ipath.child(r)) for r in rids])  # type: ignore[arg-type]

        if path.is_resource:
            return resource(path)
        if path.is_instance:
            return instance(path)
        if path.is_object:
            assert path.object_id is not None
            iids = sorted({p.instance_id for p in leaves})
            return LwM2MObject.of(path.object_id, [instance(path.child(i)) for i in iids])  # type: ignore[arg-type]
        raise DeviceError("device answered 4.00 Bad Request", Code.BAD_REQUEST)

    async def send(self, endpoint: str, request: Request[R], timeout: float) -> R:
        """Dispatch on the request's class, as a device dispatches on method and path."""
        handler = self._handlers.get(type(request))
        if handler is None:
            raise DeviceError("device answered 4.05 Method Not Allowed", Code.METHOD_NOT_ALLOWED)
        response: R = handler(endpoint, request, timeout)
        return response

    def _read(self, endpoint: str, request: ReadRequest, timeout: float) -> ReadResponse:
        self.calls.append(("read", endpoint, (request.path, request.format, timeout)))
        return ReadResponse(self.node(endpoint, request.path), request.format)

    def _discover(
        self, endpoint: str, request: DiscoverRequest, timeout: float
    ) -> DiscoverResponse:
        tree = self._tree(endpoint)
        path = request.path
        links = tuple(Link(str(p), ()) for p in sorted(tree) if p.startswith(path))
        return DiscoverResponse((Link(str(path), (("pmin", "10"),)), *links))

    def _store(self, endpoint: str, path: Path, node: Node) -> None:
        tree = self._tree(endpoint)
        if isinstance(node, Resource):
            for p in [p for p in tree if p.startswith(path)]:
                del tree[p]
            if node.instances is not None:
                for ri, value in node.instances.items():
                    tree[path.child(ri)] = value
            else:
                assert node.value is not None
                tree[path] = node.value
        elif isinstance(node, ResourceInstance):
            tree[path] = node.value
        elif isinstance(node, ObjectInstance):
            for res in node.resources.values():
                if res.value is not None:
                    tree[path.child(res.id)] = res.value

    def _write(self, endpoint: str, request: WriteRequest, timeout: float) -> WriteResponse:
        path, node = request.path, request.content
        self.calls.append(("write", endpoint, (path, node, request.replace)))
        self._tree(endpoint)
        if path not in self.values[endpoint] and not path.is_instance:
            raise DeviceError("device answered 4.04 Not Found", Code.NOT_FOUND)
        self._store(endpoint, path, node)
        if path in self.observed.get(endpoint, set()):
            self.notify(endpoint, path)
        return WriteResponse()

    def notify(self, endpoint: str, path: Path) -> None:
        node = self.node(endpoint, path)
        data = notification_json(endpoint, path, node, self._model)
        self.bus.publish(WebEvent("NOTIFICATION", endpoint, data))

    def _write_attributes(
        self, endpoint: str, request: WriteAttributesRequest, timeout: float
    ) -> WriteAttributesResponse:
        self._tree(endpoint)
        self.calls.append(("write_attributes", endpoint, (request.path, request.attributes)))
        return WriteAttributesResponse()

    def _execute(self, endpoint: str, request: ExecuteRequest, timeout: float) -> ExecuteResponse:
        self._tree(endpoint)
        self.calls.append(("execute", endpoint, (request.path, request.arguments)))
        return ExecuteResponse()

    def _create(self, endpoint: str, request: CreateRequest, timeout: float) -> CreateResponse:
        path, node = request.path, request.content
        assert isinstance(node, ObjectInstance)
        self.calls.append(("create", endpoint, (path, node)))
        self._store(endpoint, path.child(node.id), node)
        return CreateResponse(path.child(node.id))

    def _delete(self, endpoint: str, request: DeleteRequest, timeout: float) -> DeleteResponse:
        tree = self._tree(endpoint)
        doomed = [p for p in tree if p.startswith(request.path)]
        if not doomed:
            raise DeviceError("device answered 4.04 Not Found", Code.NOT_FOUND)
        for p in doomed:
            del tree[p]
        return DeleteResponse()

    def _values(self, endpoint: str, paths: Sequence[Path]) -> dict[Path, Node]:
        """What a composite answer holds: the requested paths the device has."""
        tree = self._tree(endpoint)
        return {p: self.node(endpoint, p) for p in paths if any(q.startswith(p) for q in tree)}

    def _read_composite(
        self, endpoint: str, request: ReadCompositeRequest, timeout: float
    ) -> ReadCompositeResponse:
        return ReadCompositeResponse(self._values(endpoint, request.paths))

    def _write_composite(
        self, endpoint: str, request: WriteCompositeRequest, timeout: float
    ) -> WriteCompositeResponse:
        for p, node in request.values.items():
            assert not isinstance(node, str | int | float | bool | bytes)
            self._store(endpoint, p, node)  # type: ignore[arg-type]
        return WriteCompositeResponse()

    def _record(self, endpoint: str, paths: tuple[Path, ...], composite: bool) -> ObservationRecord:
        return ObservationRecord(
            id=f"obs-{len(self.calls)}",
            registration_id=f"reg-{endpoint}",
            endpoint=endpoint,
            paths=paths,
            composite=composite,
            created_at=0.0,
        )

    def _observe(self, endpoint: str, request: ObserveRequest, timeout: float) -> ObserveResponse:
        node = self.node(endpoint, request.path)
        self.observed.setdefault(endpoint, set()).add(request.path)
        return ObserveResponse(self._record(endpoint, (request.path,), False), node)

    def _cancel_observation(
        self, endpoint: str, request: CancelObservationRequest, timeout: float
    ) -> CancelObservationResponse:
        self._tree(endpoint)
        observed = self.observed.get(endpoint, set())
        if request.path in observed:
            observed.discard(request.path)
            return CancelObservationResponse(1)
        return CancelObservationResponse(0)

    def _observe_composite(
        self, endpoint: str, request: ObserveCompositeRequest, timeout: float
    ) -> ObserveCompositeResponse:
        values = self._values(endpoint, request.paths)
        self.composite_observed.setdefault(endpoint, []).append(frozenset(request.paths))
        return ObserveCompositeResponse(self._record(endpoint, request.paths, True), values)

    def _cancel_composite_observation(
        self, endpoint: str, request: CancelCompositeObservationRequest, timeout: float
    ) -> CancelObservationResponse:
        self._tree(endpoint)
        observed = self.composite_observed.get(endpoint, [])
        key = frozenset(request.paths)
        count = observed.count(key)
        self.composite_observed[endpoint] = [k for k in observed if k != key]
        return CancelObservationResponse(count)

    def events(self, endpoint: str | None) -> AsyncIterator[WebEvent]:
        return self.bus.events(endpoint)

    def list_security(self) -> Sequence[SecurityEntry]:
        return self.security_store.list()

    def get_security(self, endpoint: str) -> SecurityEntry | None:
        return self.security_store.get(endpoint)

    async def put_security(self, entry: SecurityEntry) -> None:
        await put_security_entry(self.security_store, entry)

    async def delete_security(self, endpoint: str) -> bool:
        return await self.security_store.remove(endpoint) is not None

    def counters(self) -> Mapping[str, float]:
        return {"dtls_handshakes_total": 3}


class FakeBootstrap:
    def __init__(self) -> None:
        self.configs: dict[str, dict[str, Any]] = {}
        self.history: list[dict[str, Any]] = []
        self.bus = EventFanout()
        self.push_result: dict[str, Any] | Exception = {"result": "finished"}

    async def list_configs(self) -> Mapping[str, dict[str, Any]]:
        return dict(self.configs)

    async def get_config(self, endpoint: str) -> dict[str, Any] | None:
        return self.configs.get(endpoint)

    async def put_config(self, endpoint: str, config: dict[str, Any]) -> dict[str, Any]:
        if "servers" not in config:
            raise InvalidInput(f'clients["{endpoint}"]: missing key "servers"')
        self.configs[endpoint] = config
        return config

    async def delete_config(self, endpoint: str) -> bool:
        return self.configs.pop(endpoint, None) is not None

    async def sessions(self, endpoint: str | None) -> Sequence[dict[str, Any]]:
        return [s for s in self.history if endpoint is None or s.get("endpoint") == endpoint]

    async def push(
        self, endpoint: str, address: tuple[str, int], *, timeout: float
    ) -> dict[str, Any]:
        if isinstance(self.push_result, Exception):
            raise self.push_result
        result = {"endpoint": endpoint, "address": f"{address[0]}:{address[1]}", **self.push_result}
        self.history.append(result)
        self.bus.publish(WebEvent("BOOTSTRAP_FINISHED", endpoint, {"ep": endpoint}))
        return result

    def events(self, endpoint: str | None) -> AsyncIterator[WebEvent]:
        return self.bus.events(endpoint)

    def counters(self) -> Mapping[str, float]:
        return {"sessions_total": len(self.history)}


@dataclass
class Running:
    devices: FakeDevices
    bootstrap: FakeBootstrap
    web: WebServer
    http: httpx.AsyncClient
    base_url: str


class SseReader:
    """Reads ``event:``/``data:`` blocks from an httpx streaming response."""

    def __init__(self, lines: AsyncIterator[str]) -> None:
        self._lines = lines
        self.comments: list[str] = []

    async def next_comment(self) -> str:
        async for line in self._lines:
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                return line[1:].strip()
        raise EOFError("event stream ended")

    async def next(self) -> tuple[str, Any]:
        import json

        kind, data = "message", []
        async for line in self._lines:
            if line == "":
                if data:
                    return kind, json.loads("\n".join(data))
                kind = "message"
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
            elif line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
        raise EOFError("event stream ended")

    async def wait_for(self, event: str, **match: Any) -> Any:
        """The next ``event`` whose data has the ``match`` items (10 s at most)."""
        async with asyncio.timeout(10):
            while True:
                got, data = await self.next()
                if got == event and all(data.get(k) == v for k, v in match.items()):
                    return data


@dataclass
class Live:
    server: Any
    bootstrap: Any
    web: WebServer
    http: httpx.AsyncClient
    base_url: str
    add_client: Callable[..., Awaitable[Any]]

"""``/api/clients``: registrations and device operations (Leshan's ClientServlet paths).

``{path}`` is an LwM2M path without the leading slash (``3/0/1``). Every
device operation takes ``timeout`` (seconds, default 5) and answers 200 with
a :class:`DeviceResult` carrying the CoAP code, or an error (404 unknown
client, 400 bad input, 502 device error, 504 timeout). A request to a
sleeping queue-mode client waits in the server's queue until the client
wakes up or ``timeout`` runs out (then 504).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, Protocol, TypeVar
from urllib.parse import unquote_plus

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam

from lwm2m.coap.codes import Code
from lwm2m.formats.media import ContentFormat
from lwm2m.model.nodes import Node, ObjectInstance
from lwm2m.model.path import Path
from lwm2m.protocol.attributes import AttributeError_, Attributes, parse_attribute_query
from lwm2m.server import operations
from lwm2m.server.operations import (
    CancelCompositeObservationRequest,
    CancelObservationRequest,
    CreateRequest,
    CreateResponse,
    DeleteRequest,
    DiscoverRequest,
    DiscoverResponse,
    ExecuteRequest,
    ObserveCompositeRequest,
    ObserveCompositeResponse,
    ObserveRequest,
    ObserveResponse,
    ReadCompositeRequest,
    ReadCompositeResponse,
    ReadRequest,
    ReadResponse,
    WriteAttributesRequest,
    WriteCompositeRequest,
    WriteRequest,
)
from lwm2m.web.backend import (
    BackendError,
    ClientInfo,
    DeviceError,
    DeviceManager,
    DeviceResponse,
    DeviceTimeout,
    InvalidInput,
    LinkInfo,
    UnknownClient,
)
from lwm2m.web.client_query import (
    MAX_LIMIT,
    MAX_TEXT,
    TEXT_PATTERN,
    TOKEN_PATTERN,
    SortParam,
    client_list_query,
    is_paged,
)
from lwm2m.web.errors import DEVICE_ERRORS, STORE_ERRORS
from lwm2m.web.metrics import Metrics
from lwm2m.web.param_patterns import FORMAT_PATTERN, PATH_PATTERN, PATHS_PATTERN
from lwm2m.web.present import (
    client_json,
    node_from_json,
    object_def_json,
    parse_format,
    parse_path,
    parse_paths,
    parse_timeout,
    result_json,
)
from lwm2m.web.request_bodies import create_instance_id
from lwm2m.web.schemas import CancelResult, Client, ClientPageSchema, DeviceResult, ObjectSpec

T = TypeVar("T")
R = TypeVar("R")

#: the largest JSON body a device operation accepts
MAX_BODY = 1 << 20

TIMEOUT_Q = Query(
    default=None, description="Seconds to wait for the device (default 5).", gt=0, le=600
)
FORMAT_Q = Query(
    default=None,
    description="Content format: TLV, JSON, SENML_JSON, SENML_CBOR, CBOR, TEXT, OPAQUE (or a number).",
    max_length=40,
    json_schema_extra={"pattern": FORMAT_PATTERN},
)
NODEFORMAT_Q = Query(
    default=None,
    description="Leshan's name for format.",
    max_length=40,
    json_schema_extra={"pattern": FORMAT_PATTERN},
)
# The patterns are the schema's word only: the parsers (parse_path ...) check the
# text and name the precise reason, which a pattern mismatch would not.
PATH_P = PathParam(
    description="An LwM2M path without the leading slash: 3, 3/0, 3/0/1, 5/0/1/2.",
    json_schema_extra={"pattern": PATH_PATTERN},
)
WHEN = "ISO 8601 date-time (no zone: UTC) or Unix seconds; exclusive."
SORT_Q = Query(default=None, description="Sort key; -key descends (default endpoint).")
PATHS_Q = Query(
    description="Comma-separated paths: /3/0/1,/3/0/2",
    max_length=4000,
    json_schema_extra={"pattern": PATHS_PATTERN},
)

_JSON_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "description": 'A resource: {"value": ...}; a multiple resource: '
                    '{"instances": {"0": ...}}; an instance: '
                    '{"resources": [{"id": 1, "value": ...}]} (see docs/rest-api.md).',
                    "type": "object",
                }
            }
        },
    }
}

_EXECUTE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {
            "text/plain": {
                "schema": {"type": "string", "description": "Execute arguments: 0='v',1"}
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"arguments": {"type": "string"}},
                    "description": 'Execute: {"arguments": ...}; Create: the instance JSON.',
                }
            },
        },
    }
}

_COMPOSITE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": 'Path -> value JSON, e.g. {"/3/0/14": {"value": "+02"}}.',
                    "additionalProperties": {"type": "object"},
                }
            }
        },
    }
}


def outcome(exc: BaseException | None) -> str:
    """The ``result`` label of ``lwm2m_requests_total`` for a failure (or success)."""
    if exc is None:
        return "success"
    if isinstance(exc, DeviceTimeout):
        return "timeout"
    if isinstance(exc, DeviceError):
        return "device_error"
    if isinstance(exc, UnknownClient):
        return "unknown_client"
    if isinstance(exc, InvalidInput):
        return "invalid"
    return "error"


async def read_body(request: Request) -> bytes:
    """The request body, refusing more than :data:`MAX_BODY` bytes without buffering them."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise InvalidInput(f"body larger than {MAX_BODY} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise InvalidInput(f"body larger than {MAX_BODY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, *, required: bool = True) -> Any:
    """The body as JSON, size-bounded; a missing body is a 400 only when ``required``."""
    body = await read_body(request)
    if not body.strip():
        if required:
            raise InvalidInput("a JSON body is required")
        return None
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidInput("body is not valid JSON: nested too deeply") from None


async def registered(devices: DeviceManager, endpoint: str) -> ClientInfo:
    """The client's registration; :class:`UnknownClient` (404) when it has none."""
    info = await devices.fetch_client(endpoint)
    if info is None:
        raise UnknownClient(f"no registered client with endpoint {endpoint!r}")
    return info


class _Coded(Protocol):
    """Any typed response: each carries the CoAP code of the device's answer."""

    @property
    def code(self) -> Code: ...


def _coded(response: _Coded) -> DeviceResponse:
    return DeviceResponse(response.code)


def _with_node(response: ReadResponse | ObserveResponse) -> DeviceResponse:
    return DeviceResponse(response.code, node=response.content)


def _with_links(response: DiscoverResponse) -> DeviceResponse:
    links = tuple(LinkInfo(link.target, dict(link.params)) for link in response.links)
    return DeviceResponse(response.code, links=links)


def _with_location(response: CreateResponse) -> DeviceResponse:
    location = None if response.location is None else str(response.location)
    return DeviceResponse(response.code, location=location)


def _with_values(
    paths: Sequence[Path], response: ReadCompositeResponse | ObserveCompositeResponse
) -> DeviceResponse:
    """Every requested path, with what the device sent for it (None when it sent nothing)."""
    found: dict[Path, Node | None] = {p: None for p in paths}
    found.update(response.values)
    return DeviceResponse(response.code, composite=found)


def _number(fmt: ContentFormat | None) -> int | None:
    return None if fmt is None else int(fmt)


def build_clients_router(devices: DeviceManager, metrics: Metrics) -> APIRouter:
    """``/api/clients``: the registrations and every device operation, over one ``send``."""
    router = APIRouter(prefix="/api/clients", tags=["clients"])

    async def counted(operation: str, call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, counting its outcome in the request metrics."""
        try:
            result = await call()
        except BackendError as exc:
            metrics.requests.inc((operation, outcome(exc)))
            raise
        metrics.requests.inc((operation, "success"))
        return result

    async def run(
        operation: str,
        endpoint: str,
        request: operations.Request[R],
        timeout: float,
        answer: Callable[[R], DeviceResponse],
        path: Path | None,
    ) -> dict[str, Any]:
        """Send ``request``, count the outcome, and answer the :class:`DeviceResult` JSON."""

        async def on_registered_client() -> R:
            await registered(devices, endpoint)
            return await devices.send(endpoint, request, timeout)

        response = await counted(operation, on_registered_client)
        return result_json(answer(response), path, devices.model)

    async def known(endpoint: str) -> None:
        await registered(devices, endpoint)

    async def with_paths(
        operation: str,
        make: Callable[[tuple[Path, ...], int | None], operations.Request[R]],
        answer: Callable[[Sequence[Path], R], DeviceResponse],
        endpoint: str,
        paths: str,
        format: str | None,
        timeout: float | None,
    ) -> dict[str, Any]:
        await known(endpoint)
        path_list = tuple(parse_paths(paths))
        fmt = _number(parse_format(format))
        t = parse_timeout(timeout)
        request = make(path_list, fmt)
        return await run(
            operation, endpoint, request, t, lambda response: answer(path_list, response), None
        )

    async def with_path(
        operation: str,
        make: Callable[[Path, int | None], operations.Request[R]],
        answer: Callable[[R], DeviceResponse],
        endpoint: str,
        path: str,
        format: str | None,
        timeout: float | None,
    ) -> dict[str, Any]:
        await known(endpoint)
        p = parse_path(path)
        fmt = _number(parse_format(format))
        t = parse_timeout(timeout)
        return await run(operation, endpoint, make(p, fmt), t, answer, p)

    @router.get(
        "",
        response_model=list[Client] | ClientPageSchema,
        summary="List registered clients (all, or one page)",
        description="Without parameters: every client, Leshan's array. With any of them: "
        "a page {total, offset, limit, items} (docs/rest-api.md).",
        responses=STORE_ERRORS,
    )
    async def list_clients(
        request: Request,
        limit: int | None = Query(None, ge=0, le=MAX_LIMIT, description="Page size (default 100)."),
        offset: int | None = Query(None, ge=0, description="Clients to skip (default 0)."),
        q: str | None = Query(
            None,
            max_length=MAX_TEXT,
            pattern=TEXT_PATTERN,
            description="Substring of endpoint name or address, any case.",
        ),
        sort: SortParam | None = SORT_Q,
        binding: str | None = Query(
            None, pattern=TOKEN_PATTERN, description="Binding mode, exactly (U, UQ, T ...)."
        ),
        lwm2m: str | None = Query(
            None, pattern=TOKEN_PATTERN, description="LwM2M version, exactly (1.0, 1.1 ...)."
        ),
        queuemode: bool | None = Query(None),
        sleeping: bool | None = Query(None, description="Queue-mode client asleep now."),
        secure: bool | None = Query(None, description="Registered over DTLS."),
        registeredAfter: Annotated[
            datetime.datetime | float | None, Query(description=WHEN)
        ] = None,
        registeredBefore: Annotated[
            datetime.datetime | float | None, Query(description=WHEN)
        ] = None,
        updatedAfter: Annotated[datetime.datetime | float | None, Query(description=WHEN)] = None,
        updatedBefore: Annotated[datetime.datetime | float | None, Query(description=WHEN)] = None,
    ) -> list[dict[str, Any]] | dict[str, Any]:
        if not is_paged(request.query_params):
            return [
                client_json(c)
                for c in sorted(await devices.list_clients(), key=lambda c: c.endpoint)
            ]
        asked = client_list_query(
            limit=limit,
            offset=offset,
            q=q,
            sort=None if sort is None else sort.value,
            binding=binding,
            lwm2m=lwm2m,
            queuemode=queuemode,
            sleeping=sleeping,
            secure=secure,
            registered_after=registeredAfter,
            registered_before=registeredBefore,
            updated_after=updatedAfter,
            updated_before=updatedBefore,
        )
        page = await devices.query_clients(asked.query, sleeping=asked.sleeping)
        return {
            "total": page.total,
            "offset": asked.query.offset,
            "limit": asked.query.limit,
            "items": [client_json(c) for c in page.items],
        }

    # Composite routes come before /{endpoint}/{path} so "composite" is not read as a path.
    @router.get(
        "/{endpoint}/composite",
        response_model=DeviceResult,
        response_model_exclude_none=True,
        summary="Read-Composite",
        responses=DEVICE_ERRORS,
    )
    async def read_composite(
        endpoint: str,
        paths: str = PATHS_Q,
        format: str | None = FORMAT_Q,
        nodeformat: str | None = NODEFORMAT_Q,
        timeout: float | None = TIMEOUT_Q,
    ) -> dict[str, Any]:
        return await with_paths(
            "read_composite",
            ReadCompositeRequest,
            _with_values,
            endpoint,
            paths,
            format or nodeformat,
            timeout,
        )

    @router.put(
        "/{endpoint}/composite",
        response_model=DeviceResult,
        response_model_exclude_none=True,
        summary="Write-Composite",
        responses=DEVICE_ERRORS,
        openapi_extra=_COMPOSITE_BODY,
    )
    async def write_composite(
        request: Request,
        endpoint: str,
        format: str | None = FORMAT_Q,
        nodeformat: str | None = NODEFORMAT_Q,
        timeout: float | None = TIMEOUT_Q,
    ) -> dict[str, Any]:
        await known(endpoint)
        fmt = _number(parse_format(format or nodeformat))
        t = parse_timeout(timeout)
        data = await read_json(request)
        if not isinstance(data, dict) or not data:
            raise InvalidInput("body must be a non-empty JSON object of path -> value")
        values: dict[Path, Node] = {}
        for key, item in data.items():
            path = parse_path(key)
            if path.depth < 3:
                raise InvalidInput(
                    f"{path}: Write-Composite targets resources or resource instances"
                )
            values[path] = node_from_json(item, path, devices.model)
        return await run(
            "write_composite", endpoint, WriteCompositeRequest(values, fmt), t, _coded, None
        )

    @router.post(
        "/{endpoint}/composite/observe",
        response_model=DeviceResult,
        response_model_exclude_none=True,
        summary="Observe-Composite",
        description="Notifications arrive as NOTIFICATION events with kind=composite.",
        responses=DEVICE_ERRORS,
    )
    async def observe_composite(
        endpoint: str,
        paths: str = PATHS_Q,
        format: str | None = FORMAT_Q,
        nodeformat: str | None = NODEFORMAT_Q,
        timeout: float | None = TIMEOUT_Q,
    ) -> dict[str, Any]:
        return await with_paths(
            "observe_composite",
            ObserveCompositeRequest,
            _with_values,
            endpoint,
            paths,
            format or nodeformat,
            timeout,
        )

    @router.delete(
        "/{endpoint}/composite/observe",
        response_model=CancelResult,
        summary="Cancel a composite observation",
        responses=DEVICE_ERRORS,
    )
    async def cancel_observe_composite(
        endpoint: str,
        paths: str = Query(description="The observed paths, comma-separated", max_length=4000),
        active: bool = Query(default=True),
        timeout: float | None = TIMEOUT_Q,
    ) -> dict[str, Any]:
        await known(endpoint)
        cancel = CancelCompositeObservationRequest(tuple(parse_paths(paths)), active)
        t = parse_timeout(timeout)
        response = await counted("cancel_observation", lambda: devices.send(endpoint, cancel, t))
        return {"cancelled": response.cancelled}

    @router.get(
        "/{endpoint}",
        response_model=Client,
        summary="One registered client",
        responses=STORE_ERRORS,
    )
    async def get_client(endpoint: str) -> dict[str, Any]:
        return client_json(await registered(devices, endpoint))

    @router.get(
        "/{endpoint}/{path:path}/discover",
        response_model=DeviceResult,
        response_model_exclude_none=True,
        summary="Discover",
        responses=DEVICE_ERRORS,
    )
    async def discover(
        endpoint: str, path: str = PATH_P, timeout: float | None = TIMEOUT_Q
    ) -> dict[str, Any]:
        await known(endpoint)
        p = parse_path(path)
        t = parse_timeout(timeout)
        return await run("discover", endpoint, DiscoverRequest(p), t, _with_links, p)

    @router.put(
        "/{endpoint}/{path:path}/attributes",
        response_model=DeviceResult,
        response_model_exclude_none=True,
        summary="Write-Attributes",
        description="Query parameters pmin, pmax, gt, lt, st, epmin, epmax; "
        "a parameter without a value (`?pmin`) removes the attribute.",
        responses=DEVICE_ERRORS,
    )
    async def write_attributes(
        request: Request,
        endpoint: str,
        path: str = PATH_P,
        pmin: str | None = Query(default=None, max_length=20),
        pmax: str | None = Query(default=None, max_length=20),
        gt: str | None = Query(default=None, max_length=40),
        lt: str | None = Query(default=None, max_length=40),
        st: str | None = Query(default=None, max_length=40),
        epmin: str | None = Query(default=None, max_length=20),
        epmax: str | None = Query(default=None, max_length=20),
        timeout: float | None = TIMEOUT_Q,
    ) -> dict[str, Any]:
        await known(endpoint)
        p = parse_path(path)
        t = parse_timeout(timeout)
        items: list[str] = []
        for part in request.url.query.split("&"):
            if not part:
                continue
            key, has_value, value = part.partition("=")
            if key == "timeout":
                continue
            key = unquote_plus(key)
            value = unquote_plus(value)
            items.append(f"{key}={value}" if has_value and value != "" else key)
        try:
            update = parse_attribute_query(items)
            # Inconsistent values within this request (pmax < pmin ...) are refused here;
            # the device checks them against the attributes it already holds.
            Attributes(**dict(update.set)).validate()  # type: ignore[arg-type]
        except AttributeError_ as exc:
            raise InvalidInput(f"attributes: {exc}") from None
        if update.is_empty():
            raise InvalidInput(
                "attributes: give at least one of pmin, pmax, gt, lt, st, epmin, epmax"
            )
        return await run(
            "write_attributes", endpoint, WriteAttributesRequest(p, update), t, _coded, p
        )

    @router.post(
        "/{endpoint}/{path:path}/observe",
        response_model=DeviceResult,
        response_model_exclude_none=True,
        summary="Observe",
        description="Starts an observation; notifications arrive as NOTIFICATION events on /api/event.",
        responses=DEVICE_ERRORS,
    )
    async def observe(
        endpoint: str,
        path: str = PATH_P,
        format: str | None = FORMAT_Q,
        timeout: float | None = TIMEOUT_Q,
    ) -> dict[str, Any]:
        return await with_path(
            "observe", ObserveRequest, _with_node, endpoint, path, format, timeout
        )

    @router.delete(
        "/{endpoint}/{path:path}/observe",
        response_model=CancelResult,
        summary="Cancel observation",
        description="active=true (default) sends a cancelling GET; false only forgets it (RST on next notification).",
        responses=DEVICE_ERRORS,
    )
    async def cancel_observe(
        endpoint: str,
        path: str = PATH_P,
        active: bool = Query(default=True),
        timeout: float | None = TIMEOUT_Q,
    ) -> dict[str, Any]:
        await known(endpoint)
        cancel = CancelObservationRequest(parse_path(path), active)
        t = parse_timeout(timeout)
        response = await counted("cancel_observation", lambda: devices.send(endpoint, cancel, t))
        return {"cancelled": response.cancelled}

    @router.get(
        "/{endpoint}/{path:path}",
        response_model=DeviceResult,
        response_model_exclude_none=True,
        summary="Read",
        responses=DEVICE_ERRORS,
    )
    async def read(
        endpoint: str,
        path: str = PATH_P,
        format: str | None = FORMAT_Q,
        timeout: float | None = TIMEOUT_Q,
    ) -> dict[str, Any]:
        return await with_path("read", ReadRequest, _with_node, endpoint, path, format, timeout)

    @router.put(
        "/{endpoint}/{path:path}",
        response_model=DeviceResult,
        response_model_exclude_none=True,
        summary="Write",
        description="replace=true (default) is a Write-Replace (PUT), false a partial update (POST).",
        responses=DEVICE_ERRORS,
        openapi_extra=_JSON_BODY,
    )
    async def write(
        request: Request,
        endpoint: str,
        path: str = PATH_P,
        replace: bool = Query(default=True),
        format: str | None = FORMAT_Q,
        timeout: float | None = TIMEOUT_Q,
    ) -> dict[str, Any]:
        await known(endpoint)
        p = parse_path(path)
        if p.depth < 2:
            raise InvalidInput("Write targets an instance, a resource or a resource instance")
        if not replace and p.depth != 2:
            raise InvalidInput("replace=false (partial update) targets an object instance")
        fmt = _number(parse_format(format))
        t = parse_timeout(timeout)
        node = node_from_json(await read_json(request), p, devices.model)
        return await run("write", endpoint, WriteRequest(p, node, replace, fmt), t, _coded, p)

    @router.post(
        "/{endpoint}/{path:path}",
        response_model=DeviceResult,
        response_model_exclude_none=True,
        summary="Execute (resource) or Create (object)",
        description='On /o/i/r: Execute, the body (text, or JSON {"arguments": ...}) is the argument list. '
        "On /o: Create, the body is the new instance JSON (id defaults to 0).",
        responses=DEVICE_ERRORS,
        openapi_extra=_EXECUTE_BODY,
    )
    async def execute_or_create(
        request: Request,
        endpoint: str,
        path: str = PATH_P,
        format: str | None = FORMAT_Q,
        timeout: float | None = TIMEOUT_Q,
    ) -> dict[str, Any]:
        await known(endpoint)
        p = parse_path(path)
        t = parse_timeout(timeout)
        fmt = _number(parse_format(format))
        if p.is_resource:
            args = await _execute_arguments(request)
            return await run("execute", endpoint, ExecuteRequest(p, args), t, _coded, p)
        if p.is_object:
            data = await read_json(request)
            node = _instance_for_create(data, p, devices)
            create = CreateRequest(p, node, fmt)
            return await run("create", endpoint, create, t, _with_location, None)
        raise InvalidInput("POST targets a resource (Execute) or an object (Create)")

    @router.delete(
        "/{endpoint}/{path:path}",
        response_model=DeviceResult,
        response_model_exclude_none=True,
        summary="Delete",
        responses=DEVICE_ERRORS,
    )
    async def delete(
        endpoint: str, path: str = PATH_P, timeout: float | None = TIMEOUT_Q
    ) -> dict[str, Any]:
        await known(endpoint)
        p = parse_path(path)
        if not p.is_instance:
            raise InvalidInput("Delete targets an object instance (/o/i)")
        t = parse_timeout(timeout)
        return await run("delete", endpoint, DeleteRequest(p), t, _coded, p)

    return router


async def _execute_arguments(request: Request) -> str | None:
    body = await read_body(request)
    if not body.strip():
        return None
    ctype = request.headers.get("content-type", "")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput("Execute arguments must be UTF-8 text") from None
    if ctype.startswith("application/json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"body is not valid JSON: {exc}") from None
        except RecursionError:
            raise InvalidInput("body is not valid JSON: nested too deeply") from None
        if data is None:
            return None
        if isinstance(data, str):
            return data or None
        if not isinstance(data, dict) or set(data) - {"arguments"}:
            raise InvalidInput('Execute body must be {"arguments": "..."} or plain text')
        args = data.get("arguments")
        if args is not None and not isinstance(args, str):
            raise InvalidInput("arguments must be a string")
        return args or None
    return text


def _instance_for_create(data: Any, path: Path, devices: DeviceManager) -> ObjectInstance:
    """The new instance: ``{"id": 1, "resources": {...}}`` (``id`` defaults to 0)."""
    ident = create_instance_id(data)  # number or numeric string, as Leshan reads it
    assert path.object_id is not None
    node = node_from_json({**data, "id": ident}, Path(path.object_id, ident), devices.model)
    assert isinstance(node, ObjectInstance)  # an instance path gives an instance node
    return node


def announced_objects(links: tuple[LinkInfo, ...] | list[LinkInfo]) -> dict[int, str | None]:
    """Object ID -> announced version (``</3>;ver=1.1``) from registration links."""
    result: dict[int, str | None] = {}
    for link in links:
        parts = [p for p in link.url.split("/") if p]
        if not parts or not parts[0].isascii() or not parts[0].isdigit():
            continue
        oid = int(parts[0])
        version = link.attributes.get("ver")
        if oid not in result or version is not None:
            result[oid] = version if version is not None else result.get(oid)
    return result


def build_model_router(devices: DeviceManager) -> APIRouter:
    """``/api/objectspecs``: the object definitions, per client at the versions it announced."""
    router = APIRouter(prefix="/api/objectspecs", tags=["model"])

    @router.get(
        "",
        response_model=list[ObjectSpec],
        summary="Every object definition the server knows",
        responses=STORE_ERRORS,
    )
    async def all_specs() -> list[dict[str, Any]]:
        return [object_def_json(o) for o in devices.model]

    @router.get(
        "/{endpoint}",
        response_model=list[ObjectSpec],
        summary="Definitions of the objects a client announced (at its versions)",
        responses=STORE_ERRORS,
    )
    async def client_specs(endpoint: str) -> list[dict[str, Any]]:
        info = await registered(devices, endpoint)
        specs = []
        for oid, version in sorted(announced_objects(info.links).items()):
            obj = devices.model.resolve(oid, version)
            if obj is not None:
                specs.append(object_def_json(obj))
        return specs

    return router

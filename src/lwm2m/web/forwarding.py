"""REST requests to a device owned by another cluster node, forwarded to that node (issue 12).

Through a UDP load balancer or over DTLS, only the owner of a registration (the
node that received its last Register or Update) can reach the device. So on a
node sharing a Redis store with others, a REST request that talks to a device
(every route under ``/api/clients/{endpoint}/...``: Read, Write, Execute,
Create, Delete, Observe and its cancel, Write-Attributes, Discover, the
composite operations) is handed to the owner when this node is not the owner:

- owner alive (its liveness key exists): the HTTP request goes to the owner over
  :mod:`lwm2m.server.cluster_rpc`; the owner runs it through its own ASGI app
  (same validation, operations and errors) and its answer (status, body,
  content type) is answered here verbatim, with ``X-LwM2M-Served-By``;
- owner gone: **503** with the reason; the device's next message reaches a node
  through the load balancer, which then owns it;
- no answer in time: **504** with the reason. The wait is
  ``max(--cluster-forward-timeout, the request's own ?timeout= + margin)``.

The owner runs a forwarded request (marked ``X-LwM2M-Forwarded-From``) locally
even when the ownership moved meanwhile: a request is forwarded at most once,
so no loop; the device may then answer (plain UDP) or time out (504), which is
what a node that lost the device can do.

Reads of registrations (``GET /api/clients``, ``GET /api/clients/{endpoint}``,
stats) are answered from the store on any node and never forwarded. Without
Redis there is no :class:`Forwarding` and nothing changes.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs

from fastapi import FastAPI, Request, Response

from lwm2m.server.cluster_rpc import (
    NoListener,
    RpcBusy,
    RpcClosed,
    RpcError,
    RpcFailed,
    RpcRequest,
    RpcResponse,
    RpcTimeout,
)
from lwm2m.stores.base import StoreError
from lwm2m.web.errors import error_response

logger = logging.getLogger(__name__)

#: Set on a request that another node forwarded: it is never forwarded again.
FORWARDED_FROM = "x-lwm2m-forwarded-from"
#: Set on an answer that came from the owner node.
SERVED_BY = "x-lwm2m-served-by"
#: Default of ``--cluster-forward-timeout``.
DEFAULT_FORWARD_TIMEOUT_S = 10.0
#: Added to a request's own ``?timeout=`` (Redis hops, the owner's queue).
DEFAULT_MARGIN_S = 2.0
#: The device operations' default timeout (routes_clients: 5 s).
DEFAULT_OPERATION_TIMEOUT_S = 5.0

#: Request headers the owner needs to run the request as it was sent.
REQUEST_HEADERS = ("content-type", "accept", "authorization")
#: Response headers relayed with the owner's answer.
RESPONSE_HEADERS = ("content-type", "allow", "location", "www-authenticate")
DEVICE_METHODS = frozenset({"GET", "PUT", "POST", "DELETE"})


class Owners(Protocol):
    """Who owns a device, and whether a node is alive (``server.cluster_owners``)."""

    async def owner_of(self, endpoint: str) -> str | None: ...

    async def alive(self, node_id: str) -> bool: ...


class Transport(Protocol):
    """Calls to other nodes (``server.cluster_rpc.ClusterRpc``)."""

    node_id: str

    async def call(self, node_id: str, request: RpcRequest, timeout: float) -> RpcResponse: ...


@dataclass(frozen=True, slots=True)
class Forwarding:
    """What a node needs to forward: its transport, the owner look-up and the waits."""

    rpc: Transport
    owners: Owners
    timeout_s: float = DEFAULT_FORWARD_TIMEOUT_S
    margin_s: float = DEFAULT_MARGIN_S


def device_endpoint(method: str, path: str) -> str | None:
    """The endpoint a request talks to the device of, or None when it reads no device."""
    if method not in DEVICE_METHODS:
        return None
    parts = path.split("/")  # "", "api", "clients", endpoint, operation path...
    if len(parts) < 5 or parts[1] != "api" or parts[2] != "clients" or not parts[3]:
        return None
    if not any(parts[4:]):
        return None
    return parts[3]


def forward_wait(query: str, forwarding: Forwarding) -> float:
    """How long to wait for the owner: the operation's own timeout honoured."""
    values = parse_qs(query).get("timeout", [])
    asked = DEFAULT_OPERATION_TIMEOUT_S
    if values:
        with contextlib.suppress(ValueError):  # the owner answers 400
            asked = float(values[-1])
        if not math.isfinite(asked) or asked <= 0:
            asked = DEFAULT_OPERATION_TIMEOUT_S
    return max(forwarding.timeout_s, min(asked, 600.0) + forwarding.margin_s)


def gone_reason(owner: str) -> str:
    return (
        f"owner node {owner} is gone; the device will be taken over by the node that "
        "receives its next message"
    )


def install_forwarding(
    app: FastAPI, forwarding: Forwarding, authorized: Callable[[Request], bool]
) -> None:
    """Forward device operations on endpoints other nodes own (a middleware of ``app``).

    Install it before the origin and host checks, so it runs after them; requests
    that ``authorized`` refuses stay here and get this node's 401.
    """

    @app.middleware("http")
    async def forward(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        endpoint = device_endpoint(request.method, request.url.path)
        if endpoint is None or FORWARDED_FROM in request.headers or not authorized(request):
            return await call_next(request)
        try:
            owner = await forwarding.owners.owner_of(endpoint)
            if owner is None or owner == forwarding.rpc.node_id:
                return await call_next(request)
            if not await forwarding.owners.alive(owner):
                return error_response(503, gone_reason(owner))
            return await _forward(request, owner, forwarding)
        except StoreError as exc:
            return error_response(503, f"cannot find the device's owner node: {exc}")


def asgi_handler(app: Any) -> Callable[[RpcRequest], Awaitable[RpcResponse]]:
    """Run a forwarded request through ``app`` (the owner's own routes, errors and checks)."""

    async def handle(request: RpcRequest) -> RpcResponse:
        headers = [
            (name.encode("latin-1"), value.encode("latin-1")) for name, value in request.headers
        ]
        headers += [
            (b"host", b"localhost"),  # the caller checked the Host its client used
            (FORWARDED_FROM.encode(), request.origin.encode("latin-1", "replace")),
            (b"content-length", str(len(request.body)).encode()),
        ]
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": "http",
            "path": request.path,
            "raw_path": request.path.encode("utf-8"),
            "query_string": request.query.encode("latin-1", "replace"),
            "root_path": "",
            "headers": headers,
            "client": None,
            "server": None,
        }
        sent_body = False
        status = 500
        response_headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": request.body, "more_body": False}
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                for name, value in message.get("headers", ()):
                    text = name.decode("latin-1").lower()
                    if text in RESPONSE_HEADERS:
                        response_headers.append((text, value.decode("latin-1")))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await app(scope, receive, send)
        return RpcResponse(status, tuple(response_headers), b"".join(chunks))

    return handle


# Private


async def _forward(request: Request, owner: str, forwarding: Forwarding) -> Response:
    query = request.url.query
    wait = forward_wait(query, forwarding)
    rpc_request = RpcRequest(
        method=request.method,
        path=request.url.path,
        query=query,
        headers=tuple(
            (name, request.headers[name]) for name in REQUEST_HEADERS if name in request.headers
        ),
        body=await request.body(),
    )
    try:
        answer = await forwarding.rpc.call(owner, rpc_request, wait)
    except NoListener:
        return error_response(503, gone_reason(owner) + " (nothing listens on its channel)")
    except RpcTimeout:
        return error_response(504, f"owner node {owner} did not answer within {wait:g} s")
    except RpcBusy as exc:
        return error_response(503, f"owner node {owner} is busy: {exc}")
    except RpcFailed as exc:
        return error_response(502, f"owner node {owner} could not run the request: {exc}")
    except RpcClosed as exc:
        return error_response(503, f"this node does not forward any more: {exc}")
    except RpcError as exc:
        return error_response(503, f"owner node {owner}: {exc}")
    logger.debug(
        "%s %s forwarded to %s: %d", request.method, request.url.path, owner, answer.status
    )
    headers = dict(answer.headers)
    headers[SERVED_BY] = owner
    return Response(content=answer.body, status_code=answer.status, headers=headers)

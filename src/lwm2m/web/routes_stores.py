"""Security store (``/api/security/clients``, as in Leshan) and bootstrap (``/api/bootstrap``).

Security entries use the ``--security`` file format and its parser, so the
REST API accepts exactly what the file accepts. PSK keys are write-only:
listing shows identities, never keys.

Bootstrap configurations use the bootstrap server's ``--config`` format per
endpoint (``GET/PUT/DELETE /api/bootstrap/{endpoint}``; ``POST`` is accepted
too, as Leshan's bootstrap demo adds configurations with it).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Query, Request

from lwm2m.security.credentials import SecurityConfigError, parse_security_entries
from lwm2m.web.backend import (
    BootstrapManager,
    DeviceManager,
    InvalidInput,
    UnknownClient,
)
from lwm2m.web.errors import DEVICE_ERRORS, STORE_ERRORS
from lwm2m.web.present import parse_timeout, security_json
from lwm2m.web.request_bodies import bootstrap_doc, security_doc
from lwm2m.web.routes_clients import read_json
from lwm2m.web.schemas import BootstrapSession, PushResult, SecurityBody, SecurityView

_CONFIG_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "One client's bootstrap configuration (the --config file format, "
                    "see lwm2m.protocol.bootstrap_config): servers, bootstrap_server, acl, delete ...",
                }
            }
        },
    }
}


def _put_and_post(
    router: APIRouter,
    path: str,
    handler: Callable[..., Awaitable[dict[str, Any]]],
    *,
    put: tuple[str, str],
    post: tuple[str, str],
    **options: Any,
) -> None:
    """Route both PUT and POST of ``path`` to ``handler`` (Leshan's UIs use one or the other).

    ``put`` and ``post`` are each method's (route name, summary); the names keep
    the OpenAPI operation IDs of two separately declared routes.
    """
    for method, (name, summary) in (("PUT", put), ("POST", post)):
        router.add_api_route(path, handler, methods=[method], name=name, summary=summary, **options)


def build_security_router(devices: DeviceManager) -> APIRouter:
    """``/api/security/clients``: the credentials the DTLS layer checks."""
    router = APIRouter(prefix="/api/security", tags=["security"])

    @router.get(
        "/clients",
        response_model=list[SecurityView],
        summary="List security entries",
        responses=STORE_ERRORS,
    )
    async def list_entries() -> list[dict[str, Any]]:
        return [security_json(e) for e in sorted(devices.list_security(), key=lambda e: e.endpoint)]

    @router.get(
        "/clients/{endpoint}",
        response_model=SecurityView,
        summary="One security entry",
        responses=STORE_ERRORS,
    )
    async def get_entry(endpoint: str) -> dict[str, Any]:
        entry = devices.get_security(endpoint)
        if entry is None:
            raise UnknownClient(f"no security entry for endpoint {endpoint!r}")
        return security_json(entry)

    async def put(body: SecurityBody) -> dict[str, Any]:
        doc = security_doc(body.model_dump(exclude_none=True))
        try:
            (entry,) = parse_security_entries(json.dumps([doc]))
        except SecurityConfigError as exc:
            raise InvalidInput(str(exc).removeprefix("entry 0 ")) from None
        await devices.put_security(entry)
        return security_json(entry)

    _put_and_post(
        router,
        "/clients",
        put,
        put=("put_entry", "Add or replace a security entry (Leshan's PUT)"),
        post=("post_entry", "Add or replace a security entry"),
        response_model=SecurityView,
        responses=STORE_ERRORS,
    )
    # Leshan's demo UIs PUT to "api/security/clients/": answer there rather than redirect.
    router.add_api_route(
        "/clients/",
        put,
        methods=["PUT", "POST"],
        response_model=SecurityView,
        include_in_schema=False,
    )

    @router.delete(
        "/clients/{endpoint}",
        status_code=204,
        summary="Remove a security entry",
        responses=STORE_ERRORS,
    )
    async def delete_entry(endpoint: str) -> None:
        if not await devices.delete_security(endpoint):
            raise UnknownClient(f"no security entry for endpoint {endpoint!r}")

    return router


_PORT = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
#: A host name's characters: anything but controls, blanks and ``:[]/``, spelled out
#: because ``\s`` means other characters in ECMA-262 (the schema's dialect: U+0085 is
#: no blank there) than in Python and in the Rust engine that validates the query
#: (a schema-valid ``h\x85st:69`` was refused, found by the fuzzer).
_HOST_CHAR = r"[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff:\[\]/]"
ADDRESS_PATTERN = r"^(\[[0-9A-Fa-f:.]+\]|" + _HOST_CHAR + "+):" + _PORT + "$"


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInput(f"address: {text!r} is not HOST:PORT")
    return host, int(port)


def build_bootstrap_router(bootstrap: BootstrapManager) -> APIRouter:
    """``/api/bootstrap``: bootstrap configurations, session history and server-initiated bootstrap."""
    router = APIRouter(prefix="/api/bootstrap", tags=["bootstrap"])

    @router.get(
        "",
        response_model=dict[str, dict[str, Any]],
        summary="All bootstrap configurations by endpoint",
        responses=STORE_ERRORS,
    )
    async def list_configs() -> dict[str, Any]:
        return dict(await bootstrap.list_configs())

    @router.get(
        "/sessions",
        response_model=list[BootstrapSession],
        summary="Recent bootstrap sessions (newest last)",
        responses=STORE_ERRORS,
    )
    async def sessions(ep: str | None = Query(default=None, max_length=255)) -> list[Any]:
        return list(await bootstrap.sessions(ep))

    @router.get(
        "/{endpoint}",
        response_model=dict[str, Any],
        summary="One bootstrap configuration",
        responses=STORE_ERRORS,
    )
    async def get_config(endpoint: str) -> dict[str, Any]:
        config = await bootstrap.get_config(endpoint)
        if config is None:
            raise UnknownClient(f"no bootstrap configuration for endpoint {endpoint!r}")
        return config

    async def put(request: Request, endpoint: str) -> dict[str, Any]:
        data = await read_json(request)
        if not isinstance(data, dict):
            raise InvalidInput("body must be a JSON object (one client's configuration)")
        return await bootstrap.put_config(endpoint, bootstrap_doc(endpoint, data))

    _put_and_post(
        router,
        "/{endpoint}",
        put,
        put=("put_config", "Add or replace a bootstrap configuration"),
        post=("post_config", "Add or replace a bootstrap configuration (Leshan's POST)"),
        response_model=dict[str, Any],
        responses=STORE_ERRORS,
        openapi_extra=_CONFIG_BODY,
    )

    @router.delete(
        "/{endpoint}",
        status_code=204,
        summary="Remove a bootstrap configuration",
        responses=STORE_ERRORS,
    )
    async def delete_config(endpoint: str) -> None:
        if not await bootstrap.delete_config(endpoint):
            raise UnknownClient(f"no bootstrap configuration for endpoint {endpoint!r}")

    @router.post(
        "/{endpoint}/push",
        response_model=PushResult,
        summary="Server-initiated bootstrap",
        description="Runs a bootstrap session towards the client at `address`; 200 with the "
        "session result, 502 (device error) or 504 (no answer) with the reason.",
        responses=DEVICE_ERRORS,
    )
    async def push(
        endpoint: str,
        address: str = Query(
            description="HOST:PORT of the client ([v6]:port for IPv6)",
            max_length=300,
            pattern=ADDRESS_PATTERN,
        ),
        timeout: float | None = Query(
            default=None, gt=0, le=600, description="Seconds (default 30)."
        ),
    ) -> dict[str, Any]:
        addr = _address(address)
        t = 30.0 if timeout is None else parse_timeout(timeout)
        if await bootstrap.get_config(endpoint) is None:
            raise UnknownClient(f"no bootstrap configuration for endpoint {endpoint!r}")
        return await bootstrap.push(endpoint, addr, timeout=t)

    return router

"""The FastAPI application: REST API, event stream, metrics and the web UI.

``create_app(server, bootstrap)`` is what the ``lwm2m server`` and
``lwm2m bootstrap`` commands call; ``serve(app, host, port)`` runs it with
uvicorn inside the already running asyncio loop (next to the CoAP
endpoints) and returns once the HTTP server has shut down.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import os
import socket
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterator,
    Mapping,
    Sequence,
)
from importlib import metadata, resources
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlsplit

import uvicorn
from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles

from lwm2m.coap.tasks import cancel_and_wait
from lwm2m.web.backend import BootstrapManager, ClusterView, DeviceManager
from lwm2m.web.errors import STORE_ERRORS, ApiError, error_response, install_error_handlers
from lwm2m.web.events import DEFAULT_KEEPALIVE_S, EventHub, EventSource
from lwm2m.web.forwarding import Forwarding, install_forwarding
from lwm2m.web.metrics import CONTENT_TYPE, Metrics
from lwm2m.web.refusals import RefusalSource, refusal_counters
from lwm2m.web.routes_campaigns import build_campaigns_router, campaign_events
from lwm2m.web.routes_clients import build_clients_router, build_model_router
from lwm2m.web.routes_cluster import build_cluster_router, cluster_gauges, read_nodes
from lwm2m.web.routes_firmware import build_download_router, build_firmware_router
from lwm2m.web.routes_refusals import build_refusals_router
from lwm2m.web.routes_stats import build_stats_router
from lwm2m.web.routes_stores import build_bootstrap_router, build_security_router
from lwm2m.web.schemas import ServerInfo

if TYPE_CHECKING:
    from lwm2m.bootstrap.server import BootstrapServer
    from lwm2m.server.cluster_nodes import ClusterNodes
    from lwm2m.server.firmware import FirmwareRepository
    from lwm2m.server.firmware.campaigns import CampaignManager
    from lwm2m.server.server import LwM2MServer

logger = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="Needed when the server runs with --api-token.")


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def same_origin(request: Request) -> bool:
    """No ``Origin`` header (not a browser), or one naming this very host and port."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host")
    if origin == "null" or host is None:
        return False
    parsed = urlsplit(origin)
    return parsed.scheme in ("http", "https") and parsed.netloc.lower() == host.lower()


def trusted_host(request: Request, extra: Collection[str] = ()) -> bool:
    """The ``Host`` header names an IP address, localhost, or a host listed in ``extra``."""
    header = request.headers.get("host")
    if header is None:
        return True  # HTTP/1.0 without Host: not a browser
    name = urlsplit(f"//{header}").hostname or ""
    if name == "localhost" or name.endswith(".localhost") or name in extra:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def check_bind(host: str, api_token: str | None) -> str | None:
    """The warning to print when the API would be reachable from other hosts without a token."""
    if api_token:
        return None
    if host in ("localhost", "ip6-localhost"):
        return None
    try:
        if ipaddress.ip_address(host.strip("[]")).is_loopback:
            return None
    except ValueError:
        pass
    where = "all interfaces" if host in ("", "0.0.0.0", "::") else host
    return (
        f"the REST API and web UI listen on {where} without authentication: anyone who can "
        "reach this port can read, write and execute on every registered device. "
        "Use --api-token TOKEN, or --host 127.0.0.1."
    )


def bearer_ok(request: Request, api_token: str | None) -> bool:
    """No token required, or the request's bearer token is the right one."""
    if api_token is None:
        return True
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), api_token.encode()
    )


def _token_guard(api_token: str) -> Callable[..., Awaitable[None]]:
    expected = api_token.encode()

    async def guard(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        given = credentials.credentials.encode() if credentials is not None else b""
        if credentials is None or not hmac.compare_digest(given, expected):
            raise ApiError(401, "missing or wrong bearer token (Authorization: Bearer TOKEN)")

    return guard


def _version() -> str:
    try:
        return metadata.version("lwm2m")
    except metadata.PackageNotFoundError:
        return "unknown"


def build_app(
    devices: DeviceManager | None,
    bootstrap: BootstrapManager | None,
    *,
    api_token: str | None = None,
    keepalive_s: float = DEFAULT_KEEPALIVE_S,
    count_events: bool = True,
    trusted_hosts: Collection[str] = (),
    firmware: FirmwareRepository | None = None,
    campaigns: CampaignManager | None = None,
    refusals: Sequence[RefusalSource] = (),
    forwarding: Forwarding | None = None,
    cluster: ClusterView | None = None,
    counters: Callable[[], Mapping[str, float]] | None = None,
) -> FastAPI:
    """The app over the web layer's backend protocols (tests give in-memory ones).

    ``cluster`` adds ``GET /api/cluster`` and the cluster gauges of ``/metrics``;
    ``counters`` adds more counters to ``/metrics`` (the cluster event relay's).

    ``firmware`` adds ``/api/firmware`` and the devices' download route ``/fw/{id}``;
    ``campaigns`` adds ``/api/campaigns`` and CAMPAIGN events on the event stream.
    ``refusals`` are the roles' refusal logs (``/api/refusals`` and the refusal
    metrics read them). ``forwarding`` (a node of a cluster) hands device operations
    on endpoints another node owns to that node (:mod:`lwm2m.web.forwarding`).

    Without ``api_token``, requests must name this server by IP address or
    ``localhost`` (or one of ``trusted_hosts``) in their ``Host`` header, which
    defeats DNS rebinding against an unauthenticated API.
    """
    metrics = Metrics()
    extra_counters = counters
    sources: list[EventSource] = []
    if devices is not None:
        sources.append(devices.events)
    if bootstrap is not None:
        sources.append(bootstrap.events)
    if campaigns is not None:
        sources.append(campaign_events(campaigns))
    hub = EventHub(sources, keepalive_s=keepalive_s)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        counters = (
            [asyncio.create_task(_count_events(s, metrics)) for s in sources]
            if count_events
            else []
        )
        try:
            yield
        finally:
            hub.close()
            await cancel_and_wait(counters)

    app = FastAPI(
        title="lwm2m REST API",
        version=_version(),
        description="Registered LwM2M clients, device operations, live events, security "
        "store and bootstrap configurations. Paths and parameters follow Eclipse Leshan's "
        "demo server; see docs/rest-api.md.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    _install_docs(app)
    app.state.hub = hub
    app.state.metrics = metrics
    install_error_handlers(app)
    # Without a token, no security requirement is declared (the OpenAPI document stays honest).
    guard = [Depends(_token_guard(api_token))] if api_token else []
    if forwarding is not None:
        # Added first, so it runs after the origin and host checks below.
        install_forwarding(app, forwarding, lambda request: bearer_ok(request, api_token))

    @app.middleware("http")
    async def same_origin_writes(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # A web page elsewhere must not drive devices through a browser that can reach
        # this API (a text/plain POST needs no CORS preflight): refuse unsafe requests
        # a browser marked as coming from another origin. curl and scripts send no Origin.
        if request.method not in SAFE_METHODS and not same_origin(request):
            return error_response(403, "cross-origin request refused")
        if api_token is None and not trusted_host(request, trusted_hosts):
            # DNS rebinding: a name the attacker controls, pointed at this address.
            return error_response(
                403,
                "host name not trusted without --api-token: use an IP address or localhost",
            )
        return await call_next(request)

    @app.middleware("http")
    async def count_http(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        response = await call_next(request)
        metrics.http_requests.inc((f"{response.status_code // 100}xx",))
        return response

    @app.get(
        "/api/server",
        response_model=ServerInfo,
        tags=["server"],
        summary="What this process serves",
        dependencies=guard,
        responses=STORE_ERRORS,
    )
    async def server_info() -> dict[str, Any]:
        return {
            "version": app.version,
            "lwm2mServer": devices is not None,
            "bootstrapServer": bootstrap is not None,
            "authRequired": api_token is not None,
        }

    @app.get(
        "/api/event",
        tags=["events"],
        summary="Server-sent events",
        description="text/event-stream of REGISTRATION, UPDATED, DEREGISTRATION, NOTIFICATION, "
        "SLEEPING, AWAKE, SEND and BOOTSTRAP_* events with JSON data; `ep` limits it to one client "
        "and adds COAPLOG events (that client's CoAP messages).",
        dependencies=guard,
        response_class=StreamingResponse,
        responses={
            200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}},
            **STORE_ERRORS,
        },
    )
    async def event_stream(
        ep: str | None = Query(default=None, max_length=255),
    ) -> StreamingResponse:
        return StreamingResponse(
            hub.stream(ep or None),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @app.get(
        "/metrics",
        tags=["server"],
        summary="Prometheus metrics",
        dependencies=guard,
        response_class=Response,
        responses={
            200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
            **STORE_ERRORS,
        },
    )
    async def metrics_page() -> Response:
        counters: dict[str, float] = {}
        registrations = None
        configs = None
        if devices is not None:
            # The fleet's count (a cluster node's memory holds only part of it).
            registrations = (await devices.fleet_stats()).registrations.total
            counters.update(devices.counters())
        if bootstrap is not None:
            configs = len(await bootstrap.list_configs())
            counters.update({f"bootstrap_{k}": v for k, v in bootstrap.counters().items()})
        if campaigns is not None:
            counters.update(campaigns.counters())
        if extra_counters is not None:
            counters.update(extra_counters())
        gauges = []
        if cluster is not None:
            try:
                gauges = cluster_gauges(await read_nodes(cluster), time.time())
            except ApiError as exc:  # Redis away: the rest of the metrics still answer
                logger.warning("/metrics without the cluster gauges: %s", exc.message)
        text = metrics.render(
            registrations=registrations,
            bootstrap_configs=configs,
            backend_counters=counters,
            labelled=refusal_counters(refusals),
            gauges=gauges,
        )
        return Response(text, media_type=CONTENT_TYPE)

    if devices is not None:
        app.include_router(build_clients_router(devices, metrics), dependencies=guard)
        app.include_router(build_stats_router(devices), dependencies=guard)
        app.include_router(build_security_router(devices), dependencies=guard)
        app.include_router(build_model_router(devices), dependencies=guard)
    if bootstrap is not None:
        app.include_router(build_bootstrap_router(bootstrap), dependencies=guard)
    if firmware is not None:
        app.include_router(build_firmware_router(firmware), dependencies=guard)
        app.include_router(build_download_router(firmware))
    if campaigns is not None:
        app.include_router(build_campaigns_router(campaigns), dependencies=guard)
    if cluster is not None:
        app.include_router(build_cluster_router(cluster), dependencies=guard)
    app.include_router(
        build_refusals_router(
            refusals,
            lambda ep: devices is not None and devices.get_client(ep) is not None,
        ),
        dependencies=guard,
    )

    static = resources.files("lwm2m.web") / "static"
    app.mount("/", StaticFiles(directory=str(static), html=True), name="ui")
    return app


def _docs_assets() -> FsPath | None:
    """Swagger UI and ReDoc files shipped by the ``fastapi-offline`` package, if installed."""
    try:
        import fastapi_offline
    except ImportError:
        return None
    assets = FsPath(fastapi_offline.__file__).parent / "static"
    return assets if (assets / "swagger-ui-bundle.js").is_file() else None


def _install_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` served from local files: the host may be offline."""
    assets = _docs_assets()
    title = f"{app.title} - docs"
    openapi_url = app.openapi_url or "/openapi.json"
    if assets is not None:
        app.mount("/docs-assets", StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        if assets is None:  # FastAPI's page, loading Swagger UI from a CDN
            return get_swagger_ui_html(openapi_url=openapi_url, title=title)
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=title,
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc_ui() -> HTMLResponse:
        if assets is None:
            return get_redoc_html(openapi_url=openapi_url, title=title)
        return get_redoc_html(
            openapi_url=openapi_url,
            title=title,
            redoc_js_url="/docs-assets/redoc.standalone.js",
            redoc_favicon_url="/docs-assets/favicon.png",
            with_google_fonts=False,
        )


async def _count_events(source: EventSource, metrics: Metrics) -> None:
    events = source(None)
    try:
        async for event in events:
            metrics.events.inc((event.kind,))
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


def create_app(
    server: LwM2MServer | None,
    bootstrap: BootstrapServer | None,
    *,
    api_token: str | None = None,
    trusted_hosts: Collection[str] = (),
    campaigns: CampaignManager | None = None,
    forwarding: Forwarding | None = None,
    cluster: ClusterNodes | None = None,
    counters: Callable[[], Mapping[str, float]] | None = None,
) -> FastAPI:
    """The app for a running LwM2M server and/or bootstrap server (the commands' entry).

    ``cluster``: the node registry; without one, a server's app still answers
    ``/api/cluster`` with this node alone (its id from the store, else host-pid).
    """
    from lwm2m.server.cluster_nodes import ClusterNodes
    from lwm2m.web.adapters import BootstrapAdapter, ClusterAdapter, ServerAdapter

    if cluster is None and server is not None:
        cluster = ClusterNodes.of_server(server, _local_node_id(server))

    return build_app(
        ServerAdapter(server) if server is not None else None,
        BootstrapAdapter(bootstrap) if bootstrap is not None else None,
        api_token=api_token,
        trusted_hosts=trusted_hosts,
        firmware=server.firmware if server is not None else None,
        campaigns=campaigns,
        refusals=[role.refusals for role in (server, bootstrap) if role is not None],
        forwarding=forwarding,
        cluster=ClusterAdapter(cluster) if cluster is not None else None,
        counters=counters,
    )


def _local_node_id(server: LwM2MServer) -> str:
    node_id = getattr(server.stores, "node_id", None)
    if isinstance(node_id, str):
        return node_id
    return f"{socket.gethostname()}-{os.getpid()}"


class _Uvicorn(uvicorn.Server):
    """uvicorn's server, ending event streams before it waits for connections to close."""

    def __init__(self, config: uvicorn.Config, hub: EventHub | None) -> None:
        super().__init__(config)
        self._hub = hub

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._hub is not None:
            self._hub.close()
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The embedding command owns SIGINT/SIGTERM (it stops the CoAP side too, then
        # cancels serve()); uvicorn must not replace its handlers.
        yield


class WebServer:
    """A running HTTP server: ``await start()``, ``port``, ``await stop()``."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 8080) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=5,
            ws="none",
        )
        self._server = _Uvicorn(config, getattr(app.state, "hub", None))
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Return once the socket listens (so ``port`` is known), or raise the start-up error."""
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises the start-up error (port in use ...)
                raise RuntimeError("the HTTP server stopped during start-up")
            await asyncio.sleep(0.01)

    @property
    def port(self) -> int:
        """The bound port: what a test or ``--http-port 0`` needs to know."""
        for server in self._server.servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        raise RuntimeError("the HTTP server is not listening")

    async def wait(self) -> None:
        """Until the server stops on its own; shielded, so a cancelled waiter does not stop it."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def stop(self) -> None:
        """Graceful shutdown: open event streams end first, then connections close."""
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def serve(
    app: FastAPI, host: str, port: int, *, ready: Callable[[int], None] | None = None
) -> None:
    """Serve until cancelled; on cancellation shut down cleanly, then re-raise.

    ``ready`` is called with the bound port once the server listens (port 0 picks one).
    """
    web = WebServer(app, host, port)
    await web.start()
    if ready is not None:
        ready(web.port)
    logger.info(
        "web UI and REST API on http://%s:%d/", host if ":" not in host else f"[{host}]", web.port
    )
    try:
        await web.wait()
    except asyncio.CancelledError:
        await web.stop()
        raise

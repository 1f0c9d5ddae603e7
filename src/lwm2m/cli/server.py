"""``lwm2m server``: the LwM2M server with its bootstrap server, REST API and web UI.

Embedded bootstrap server hook: when not disabled with ``--no-bootstrap``
and the module ``lwm2m.bootstrap.embedded`` exists, its
``async start(args, stores, server) -> handle`` is awaited after the LwM2M server
started; ``handle`` is passed to the web app as ``bootstrap`` and its
``async stop()`` is awaited at shutdown.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lwm2m.cli.gc_policy import tune_for_server
from lwm2m.cli.inputs import ConfigurationError, load_models, load_security
from lwm2m.cli.shutdown import (
    RequestGate,
    StopSignals,
    add_stop_timeout_argument,
    bounded,
    check_stop_timeout,
    disarm_watchdog,
)
from lwm2m.coap.endpoint import MAX_RECEIVE_BUFFER, SERVER_RECEIVE_BUFFER
from lwm2m.server.firmware.repository import DEFAULT_MAX_IMAGE_BYTES
from lwm2m.server.queue import DEFAULT_AWAKE_TIME_S, DEFAULT_MAX_QUEUED
from lwm2m.server.registrar import DEFAULT_LIFETIME_GRACE_S

if TYPE_CHECKING:
    from lwm2m.bootstrap.server import BootstrapServer
    from lwm2m.server.cluster_events import ClusterEvents
    from lwm2m.server.cluster_nodes import ClusterNodes

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--coap-port", type=int, default=5683, help="CoAP (UDP) port")
    parser.add_argument(
        "--coaps-port", type=int, default=5684, help="CoAP over DTLS port (0 disables)"
    )
    parser.add_argument(
        "--coap-tcp-port",
        type=int,
        default=0,
        help="CoAP over TCP (RFC 8323, coap+tcp://) port; IANA's is 5683 (default 0: disabled)",
    )
    parser.add_argument(
        "--coaps-tcp-port",
        type=int,
        default=0,
        help="CoAP over TLS (coaps+tcp://) port, same credentials as DTLS; IANA's is 5684"
        " (default 0: disabled)",
    )
    parser.add_argument(
        "--tcp-keepalive",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="Ping idle TCP/TLS connections after this long (0: never; default 60)",
    )
    parser.add_argument(
        "--tcp-max-connections",
        type=int,
        default=10_000,
        help="open TCP/TLS connections kept per port; more are aborted (default 10000)",
    )
    parser.add_argument(
        "--http-port", type=int, default=8080, help="REST API and web UI port (0 disables)"
    )
    parser.add_argument("--data", default="./lwm2m-data", help="data directory (SQLite store)")
    parser.add_argument(
        "--store", default="sqlite", help="sqlite (default), memory, or a redis://host:port/db URL"
    )
    parser.add_argument(
        "--node-id",
        default=None,
        help="this node's name among the servers sharing a Redis store, recorded as the owner "
        "of the registrations it receives (default: host-pid)",
    )
    parser.add_argument(
        "--cluster-forward-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="with a Redis store: how long a REST request forwarded to the node owning the "
        "device waits for its answer (at least; a request's own ?timeout= plus 2 s when "
        "longer), then 504 (default 10)",
    )
    parser.add_argument(
        "--dtls-ticket-rotation",
        type=float,
        default=12 * 3600.0,
        help="with a redis:// store: seconds between rotations of the DTLS session-ticket keys "
        "the nodes share, so a device resumes its session on any node (default 43200)",
    )
    parser.add_argument(
        "--cluster-heartbeat",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="with a Redis store: seconds between this node's heartbeats; a node is gone "
        "3 intervals after its last one (default 1)",
    )
    parser.add_argument("--models", help="directory of extra object definitions (DDF XML)")
    parser.add_argument("--security", help="JSON file of client credentials (PSK, X.509)")
    parser.add_argument("--ca", help="PEM file of CAs trusted for client certificates")
    parser.add_argument("--cert", help="server certificate (PEM) for DTLS with X.509")
    parser.add_argument("--key", help="private key (PEM) of --cert")
    parser.add_argument(
        "--lifetime-grace",
        type=float,
        default=DEFAULT_LIFETIME_GRACE_S,
        help="seconds a registration outlives its lifetime before removal",
    )
    parser.add_argument(
        "--awake-time",
        type=float,
        default=DEFAULT_AWAKE_TIME_S,
        help="seconds a queue-mode client stays awake after its last message",
    )
    parser.add_argument(
        "--queue-size",
        type=int,
        default=DEFAULT_MAX_QUEUED,
        help="requests that may wait for one sleeping queue-mode client",
    )
    parser.add_argument(
        "--known-endpoints-only",
        action="store_true",
        help="accept Register only from endpoints in the security store (else 4.00)",
    )
    parser.add_argument("--no-bootstrap", action="store_true", help="no embedded bootstrap server")
    parser.add_argument(
        "--bootstrap-coap-port", type=int, default=5783, help="embedded bootstrap server, CoAP"
    )
    parser.add_argument(
        "--bootstrap-coaps-port",
        type=int,
        default=5784,
        help="embedded bootstrap server, CoAP over DTLS (0 disables)",
    )
    parser.add_argument(
        "--bootstrap-coap-tcp-port",
        type=int,
        default=0,
        help="embedded bootstrap server, CoAP over TCP (default 0: disabled)",
    )
    parser.add_argument(
        "--bootstrap-coaps-tcp-port",
        type=int,
        default=0,
        help="embedded bootstrap server, CoAP over TLS (default 0: disabled)",
    )
    parser.add_argument("--bootstrap-config", help="bootstrap configurations file (JSON)")
    parser.add_argument("--api-token", help="bearer token required by the REST API")
    add_stop_timeout_argument(parser, "finish the requests and bootstrap sessions in flight")
    parser.add_argument(
        "--firmware-max-size",
        type=int,
        default=DEFAULT_MAX_IMAGE_BYTES,
        metavar="BYTES",
        help="largest firmware image accepted (images live in DATA/firmware/)",
    )
    parser.add_argument(
        "--udp-receive-buffer",
        type=int,
        default=SERVER_RECEIVE_BUFFER,
        metavar="BYTES",
        help="receive buffer asked for each UDP socket, to hold a storm of requests arriving "
        "at once (the kernel caps it; Linux: net.core.rmem_max); 0: the system's default "
        f"(default {SERVER_RECEIVE_BUFFER})",
    )
    parser.add_argument(
        "--public-host",
        help="host name devices reach this server by, used in firmware Package URIs "
        "(default: the bound address, or the local address routing to the device)",
    )


def run(args: argparse.Namespace) -> int:
    problem = check_stop_timeout(args.stop_timeout)
    if not args.cluster_forward_timeout > 0:
        problem = "--cluster-forward-timeout must be positive"
    if problem is None and not args.cluster_heartbeat > 0:
        problem = "--cluster-heartbeat must be a positive number of seconds"
    if problem is None and not 0 <= args.udp_receive_buffer <= MAX_RECEIVE_BUFFER:
        problem = (
            f"--udp-receive-buffer must be a number of bytes up to {MAX_RECEIVE_BUFFER}, "
            "or 0 for the system's default"
        )
    if problem is not None:
        logger.error("%s", problem)
        return 2
    try:
        from lwm2m.coap.loop import install_best_event_loop

        install_best_event_loop()
    except ImportError:
        pass
    try:
        tune_for_server()
        return asyncio.run(_main(args))
    except ConfigurationError as exc:
        logger.error("%s", exc)
        return 2
    finally:
        disarm_watchdog()


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"{what} {path}: {exc.strerror or exc}") from None


async def _main(args: argparse.Namespace) -> int:
    from lwm2m.server.server import LwM2MServer, ServerConfig
    from lwm2m.stores import StoreError, open_stores

    # Installed before anything starts: a SIGTERM that arrives while the server is still
    # starting is then a graceful stop once it has started, not a kill by the default handler.
    signals = StopSignals("server", stop_timeout_s=args.stop_timeout)
    signals.install()
    model = load_models(args.models)
    try:
        # A restart with a million registrations serves while it reads them back.
        stores = await open_stores(
            args.store, args.data, load_in_background=True, node_id=args.node_id
        )
    except StoreError as exc:
        raise ConfigurationError(str(exc)) from None
    ticket_keys = None
    try:
        await load_security(args.security, stores)
        dtls = None
        if args.coaps_port or args.coaps_tcp_port:
            ticket_keys = await _start_ticket_keys(args, stores)
            dtls = _dtls_config(args, stores, ticket_keys)
        firmware = await _firmware(args, stores)
        server = LwM2MServer(
            stores,
            model=model,
            firmware=firmware,
            config=ServerConfig(
                host=args.host,
                coap_port=args.coap_port,
                coaps_port=args.coaps_port,
                dtls=dtls,
                coap_tcp_port=args.coap_tcp_port or None,
                coaps_tcp_port=args.coaps_tcp_port or None,
                tcp_keepalive_s=args.tcp_keepalive or None,
                tcp_max_connections=args.tcp_max_connections,
                lifetime_grace_s=args.lifetime_grace,
                awake_time_s=args.awake_time,
                max_queued=args.queue_size,
                known_endpoints_only=args.known_endpoints_only,
                public_host=args.public_host,
                udp_receive_buffer=args.udp_receive_buffer or None,
            ),
        )
        gate = RequestGate()
        try:
            await _start_gated(server, gate, args, dtls)
        except OSError as exc:
            raise ConfigurationError(f"cannot bind: {exc}") from None
        try:
            bootstrap = await _start_bootstrap(args, stores, server)
        except Exception:
            await server.stop()
            raise
        if bootstrap is not None:
            # Registering clients whose bootstrap configuration changed get re-bootstrapped.
            bootstrap.follow_server(server)
        campaigns = await _start_campaigns(server)
        try:
            cluster = await _start_cluster(args, stores, server, bootstrap)
        except Exception:
            for role in (campaigns, bootstrap, server):
                if role is not None:
                    await role.stop()
            raise
        rpc = _cluster_rpc(args, stores)
        try:
            web_task = await _start_web(args, server, bootstrap, campaigns, rpc, cluster)
        except BaseException:
            await cluster.stop(0)
            raise
        # Beats start once the web app is imported: that import holds the loop for
        # seconds on a loaded machine, longer than a short heartbeat's TTL.
        await cluster.start_heartbeat()
        waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(signals.requested.wait())]
        if web_task is not None:
            waiters.append(web_task)
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        await _stop(args.stop_timeout, gate, waiters, server, bootstrap, campaigns, cluster)
        if rpc is not None:
            await rpc.stop()
        return 0
    finally:
        if ticket_keys is not None:
            await ticket_keys.close()
        await stores.close()


async def _start_gated(server: Any, gate: RequestGate, args: argparse.Namespace, dtls: Any) -> None:
    """Start ``server`` on endpoints whose requests pass ``gate`` (closed when stopping)."""
    from lwm2m.coap.endpoint import Endpoint

    handler = gate.admit(server.handle_now)
    inline = server.inline_handlers
    receive_buffer = server.config.udp_receive_buffer
    coap = await Endpoint.create(
        args.host,
        args.coap_port,
        handler=handler,
        inline_handlers=inline,
        receive_buffer=receive_buffer,
    )
    coaps = None
    if dtls is not None and args.coaps_port:
        from lwm2m.coap.dtls import DtlsServer

        try:
            coaps = await Endpoint.create(
                args.host,
                args.coaps_port,
                handler=handler,
                security=DtlsServer(dtls),
                inline_handlers=inline,
                receive_buffer=receive_buffer,
            )
        except BaseException:
            await coap.close()
            raise
    try:
        await server.start_with(coap, coaps, tcp_handler=handler)
    except BaseException:
        for endpoint in (coap, coaps):
            if endpoint is not None:
                await endpoint.close()
        raise


async def _stop(
    timeout_s: float,
    gate: RequestGate,
    waiters: list[asyncio.Future[Any]],
    server: Any,
    bootstrap: BootstrapServer | None,
    campaigns: Any = None,
    cluster: Cluster | None = None,
) -> None:
    """Answer nothing new, let what is in flight finish, close; all within ``timeout_s``.

    Registrations are committed to the store before their 2.01/2.04 goes
    out, so whatever is cut short at the deadline was never acknowledged.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    logger.info("stopping (at most %g s)", timeout_s)
    gate.close()
    if bootstrap is not None:
        bootstrap.stop_accepting()
    in_flight = [gate.drained()]
    if bootstrap is not None:
        in_flight.append(bootstrap.wait_idle())
    await bounded(asyncio.gather(*in_flight), deadline - loop.time(), "requests in flight")
    for task in waiters:
        if not task.done():
            task.cancel()
    await bounded(
        asyncio.gather(*waiters, return_exceptions=True), deadline - loop.time(), "web server"
    )
    if bootstrap is not None:
        await bounded(bootstrap.stop(), deadline - loop.time(), "bootstrap server")
    if campaigns is not None:
        # Stored as they go: a restart resumes them.
        await bounded(campaigns.stop(), deadline - loop.time(), "firmware campaigns")
    if cluster is not None:
        # The heartbeat key goes now (the others see this node gone at once); the
        # events still queued go out within what is left of the deadline.
        await bounded(cluster.stop(deadline - loop.time()), deadline - loop.time(), "cluster")
    # Closing the endpoints never waits on a peer: no deadline can be missed here.
    await server.stop()
    logger.info("stopped")


async def _firmware(args: argparse.Namespace, stores: Any) -> Any:
    """The firmware repository: files under ``--data``/firmware, metadata in the store;
    with a Redis store the bytes too, so every node serves every image."""
    from lwm2m.server.firmware import FirmwareRepository

    if args.firmware_max_size <= 0:
        raise ConfigurationError("--firmware-max-size must be positive")
    from lwm2m.stores.redis import RedisStores

    blobs = None
    if isinstance(stores, RedisStores):
        from lwm2m.server.firmware.shared_images import RedisImageBlobs

        blobs = RedisImageBlobs(stores.redis)
    try:
        return await FirmwareRepository.open(
            stores.documents, args.data, max_image_bytes=args.firmware_max_size, blobs=blobs
        )
    except OSError as exc:
        raise ConfigurationError(f"firmware directory under {args.data}: {exc}") from None


async def _start_ticket_keys(args: argparse.Namespace, stores: Any) -> Any:
    """Session-ticket keys shared through Redis when the store is Redis, else None.

    Nodes behind one load balancer then resume each other's DTLS sessions; a
    single node keeps OpenSSL's own key (docs/cluster.md).
    """
    redis = getattr(stores, "redis", None)
    if redis is None:
        return None
    from lwm2m.stores.redis_ticket_keys import RedisTicketKeys

    try:
        keys = RedisTicketKeys(redis, rotation_s=args.dtls_ticket_rotation)
    except ValueError as exc:
        raise ConfigurationError(f"--dtls-ticket-rotation: {exc}") from None
    await keys.start()
    return keys


def _dtls_config(args: argparse.Namespace, stores: Any, ticket_keys: Any = None) -> Any:
    """DTLS with PSK from the security store, and X.509 when --cert/--key are given."""
    if bool(args.cert) != bool(args.key):
        raise ConfigurationError("--cert and --key go together")
    from lwm2m.coap.dtls import DtlsServerConfig

    security = stores.security

    def psk_lookup(identity: bytes) -> bytes | None:
        entry = security.get_by_psk_identity(identity)
        return None if entry is None or entry.psk is None else bytes(entry.psk.key)

    def is_trusted(der: bytes) -> bool:
        return any(e.x509 is not None and e.x509.certificate_der == der for e in security.list())

    cas: tuple[bytes, ...] = (_read(args.ca, "--ca"),) if args.ca else ()
    try:
        return DtlsServerConfig(
            psk_lookup=psk_lookup,
            certificate_pem=_read(args.cert, "--cert") if args.cert else None,
            private_key_pem=_read(args.key, "--key") if args.key else None,
            trusted_ca_pems=cas,
            is_trusted_certificate=is_trusted,
            require_client_certificate=False,
            ticket_keys=ticket_keys,
            session_lifetime_s=None if ticket_keys is None else ticket_keys.session_lifetime_s,
        )
    except ValueError as exc:
        raise ConfigurationError(f"DTLS: {exc}") from None


async def _start_bootstrap(
    args: argparse.Namespace, stores: Any, server: Any
) -> BootstrapServer | None:
    if args.no_bootstrap:
        return None
    from lwm2m.bootstrap.embedded import BootstrapStartError, start

    try:
        return await start(args, stores, server)
    except BootstrapStartError as exc:
        raise ConfigurationError(f"bootstrap server: {exc}") from None
    except OSError as exc:
        raise ConfigurationError(f"bootstrap server cannot bind: {exc}") from None
    except ValueError as exc:
        raise ConfigurationError(f"bootstrap server: {exc}") from None


async def _start_campaigns(server: Any) -> Any:
    """Firmware campaigns (with a firmware repository); stored ones resume here."""
    if server.firmware is None:
        return None
    from lwm2m.server.firmware.campaigns import CampaignManager
    from lwm2m.stores.redis import RedisStores

    cluster = None
    if isinstance(server.stores, RedisStores):  # every node drives the devices it owns
        from lwm2m.server.firmware.campaign_cluster import CampaignCluster

        cluster = CampaignCluster(server.stores.redis, server.stores.node_id)
    campaigns = CampaignManager(server, server.firmware, cluster=cluster)
    await campaigns.start()
    return campaigns


def _cluster_rpc(args: argparse.Namespace, stores: Any) -> Any:
    """With a Redis store and a REST API: this node's end of the forwarding transport."""
    from lwm2m.stores.redis import RedisStores

    if not isinstance(stores, RedisStores) or not args.http_port:
        return None
    from lwm2m.server.cluster_rpc import ClusterRpc

    return ClusterRpc(stores.redis, stores.node_id)


class Cluster:
    """This node among the nodes sharing its store: its heartbeat, and the event relay
    (Redis only; without it the registry answers this node alone)."""

    def __init__(self, nodes: ClusterNodes, relay: ClusterEvents | None) -> None:
        self.nodes = nodes
        self.relay = relay

    def counters(self) -> dict[str, float]:
        return self.relay.counters() if self.relay is not None else {}

    async def start_heartbeat(self) -> None:
        """The first beat, then one per interval (nothing without Redis)."""
        await self.nodes.start()

    async def stop(self, timeout_s: float) -> None:
        await self.nodes.stop()
        if self.relay is not None:
            await self.relay.stop(max(0.0, timeout_s))


async def _start_cluster(
    args: argparse.Namespace, stores: Any, server: Any, bootstrap: Any
) -> Cluster:
    """With a Redis store: heartbeats and the event relay; else the one-node registry."""
    from lwm2m.server.cluster_events import ClusterEvents, EventLane, server_lane
    from lwm2m.server.cluster_nodes import ClusterNodes
    from lwm2m.stores import StoreError
    from lwm2m.stores.redis import RedisStores, default_node_id

    if not isinstance(stores, RedisStores):
        return Cluster(ClusterNodes.of_server(server, args.node_id or default_node_id()), None)
    lanes: list[EventLane[Any]] = [server_lane(server.events)]
    if bootstrap is not None:
        from lwm2m.bootstrap.events import bootstrap_event_from_json

        lanes.append(
            EventLane(
                "bootstrap",
                bootstrap.events,
                lambda event: event.to_json(),
                lambda data, origin: bootstrap_event_from_json(data, origin=origin),
            )
        )
    relay = ClusterEvents(stores.redis, stores.node_id, lanes)
    nodes = ClusterNodes.of_server(
        server, stores.node_id, stores.redis, interval_s=args.cluster_heartbeat
    )
    try:
        await relay.start()
    except (StoreError, OSError, stores.redis.error) as exc:
        await relay.stop(0)
        raise ConfigurationError(f"cluster registry on Redis: {exc}") from None
    logger.info(
        "cluster node %s: heartbeat every %g s, events relayed on %s",
        stores.node_id,
        args.cluster_heartbeat,
        relay.channel,
    )
    return Cluster(nodes, relay)


async def _start_web(
    args: argparse.Namespace,
    server: Any,
    bootstrap: Any,
    campaigns: Any = None,
    rpc: Any = None,
    cluster: Cluster | None = None,
) -> asyncio.Task[None] | None:
    """The REST API and web UI; with ``rpc`` (a cluster node) it forwards device operations
    to their owner node and serves the ones other nodes forward to it."""
    if not args.http_port:
        return None
    try:
        from lwm2m.web.app import check_bind, create_app, serve
    except ImportError as exc:
        logger.warning("web UI unavailable: %s", exc)
        return None
    warning = check_bind(args.host, args.api_token)
    if warning:
        logger.warning("%s", warning)
    # Devices fetch http:// Package URIs naming --public-host: a name the operator declared.
    trusted = (args.public_host,) if args.public_host else ()
    forwarding = None
    if rpc is not None:
        from lwm2m.server.cluster_owners import ClusterOwners
        from lwm2m.web.forwarding import Forwarding

        forwarding = Forwarding(
            rpc, ClusterOwners(server.stores.redis), timeout_s=args.cluster_forward_timeout
        )
    app = create_app(
        server,
        bootstrap,
        api_token=args.api_token,
        trusted_hosts=trusted,
        campaigns=campaigns,
        forwarding=forwarding,
        cluster=cluster.nodes if cluster is not None else None,
        counters=cluster.counters if cluster is not None else None,
    )
    if rpc is not None:
        from lwm2m.stores import StoreError
        from lwm2m.web.forwarding import asgi_handler

        rpc.handler = asgi_handler(app)
        try:
            await rpc.start()
        except StoreError as exc:
            raise ConfigurationError(f"cluster forwarding: {exc}") from None

    def ready(port: int) -> None:
        # http:// firmware Package URIs name this port.
        server.http_address = (args.host, port)
        if cluster is not None:
            cluster.nodes.beat_soon()  # the other nodes learn the address now

    return asyncio.ensure_future(serve(app, args.host, args.http_port, ready=ready))

"""``lwm2m bootstrap``: a standalone LwM2M Bootstrap Server (with REST API when ``--http-port``)."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

from lwm2m.bootstrap.server import DEFAULT_COAP_PORT, DEFAULT_COAPS_PORT
from lwm2m.cli.gc_policy import tune_for_server
from lwm2m.cli.inputs import ConfigurationError, load_models, load_security
from lwm2m.cli.shutdown import (
    StopSignals,
    add_stop_timeout_argument,
    bounded,
    check_stop_timeout,
    disarm_watchdog,
)

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--coap-port", type=int, default=DEFAULT_COAP_PORT, help="CoAP (UDP) port")
    parser.add_argument(
        "--coaps-port",
        type=int,
        default=DEFAULT_COAPS_PORT,
        help="CoAP over DTLS port (0 disables; needs --security PSK entries or --cert/--key)",
    )
    parser.add_argument(
        "--coap-tcp-port",
        type=int,
        default=0,
        help="CoAP over TCP (RFC 8323) port (default 0: disabled)",
    )
    parser.add_argument(
        "--coaps-tcp-port",
        type=int,
        default=0,
        help="CoAP over TLS port, same credentials as DTLS (default 0: disabled)",
    )
    parser.add_argument("--http-port", type=int, default=0, help="REST API / web UI port (0: none)")
    parser.add_argument("--config", help="bootstrap configurations (JSON; Leshan's store accepted)")
    parser.add_argument(
        "--data", help="data directory: configurations and session history survive restarts"
    )
    parser.add_argument(
        "--store",
        help="memory, sqlite or a redis:// URL (default: sqlite with --data, else memory)",
    )
    parser.add_argument("--security", help="JSON file of client credentials for DTLS (PSK, X.509)")
    parser.add_argument("--cert", help="bootstrap server certificate (PEM) for DTLS with X.509")
    parser.add_argument("--key", help="private key (PEM) of --cert")
    parser.add_argument("--ca", help="PEM file of CAs trusted for client certificates")
    parser.add_argument(
        "--request-timeout", type=float, default=30.0, help="seconds to wait for each answer"
    )
    parser.add_argument("--api-token", help="bearer token required by the REST API")
    parser.add_argument("--models", help="directory of extra object definitions (DDF XML)")
    add_stop_timeout_argument(parser, "let the bootstrap sessions in flight finish")


def run(args: argparse.Namespace) -> int:
    from lwm2m.bootstrap.embedded import BootstrapStartError

    problem = check_stop_timeout(args.stop_timeout)
    if problem is not None:
        logger.error("%s", problem)
        return 2
    try:
        tune_for_server()
        return asyncio.run(_main(args))
    except (BootstrapStartError, ConfigurationError) as exc:
        logger.error("%s", exc)
        return 2
    finally:
        disarm_watchdog()


async def _main(args: argparse.Namespace) -> int:
    from lwm2m.bootstrap.embedded import BootstrapStartError, read_option_file, start_embedded
    from lwm2m.stores import StoreError, open_stores

    spec = args.store or ("sqlite" if args.data else "memory")
    try:
        stores = await open_stores(spec, args.data or "lwm2m-data")
    except StoreError as exc:
        raise BootstrapStartError(str(exc)) from None
    try:
        await load_security(args.security, stores)
        if bool(args.cert) != bool(args.key):
            raise BootstrapStartError("--cert and --key go together")
        ca = read_option_file(args.ca, "--ca")
        model = load_models(args.models)
        bs = await start_embedded(
            stores,
            host=args.host,
            coap_port=args.coap_port,
            coaps_port=args.coaps_port,
            coap_tcp_port=args.coap_tcp_port or None,
            coaps_tcp_port=args.coaps_tcp_port or None,
            config_file=args.config,
            cert_pem=read_option_file(args.cert, "--cert"),
            key_pem=read_option_file(args.key, "--key"),
            ca_pems=(ca,) if ca else (),
            request_timeout_s=args.request_timeout,
            model=model,
        )
        try:
            await _serve(args, bs)
        finally:
            await bs.close()
        return 0
    finally:
        await stores.close()


async def _serve(args: argparse.Namespace, bs: Any) -> None:
    signals = StopSignals("bootstrap", stop_timeout_s=args.stop_timeout)
    signals.install()
    waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(signals.requested.wait())]
    if args.http_port:
        try:
            from lwm2m.web.app import check_bind, create_app, serve
        except ImportError as exc:
            logger.warning("REST API unavailable: %s", exc)
        else:
            warning = check_bind(args.host, args.api_token)
            if warning:
                logger.warning("%s", warning)
            app = create_app(None, bs, api_token=args.api_token)
            waiters.append(asyncio.ensure_future(serve(app, args.host, args.http_port)))
    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    # Answer no new Request Bootstrap; the sessions in flight finish within the deadline
    # (one cut short never got its Bootstrap-Finish: the device bootstraps again).
    loop = asyncio.get_running_loop()
    deadline = loop.time() + args.stop_timeout
    logger.info("stopping (at most %g s)", args.stop_timeout)
    bs.stop_accepting()
    await bounded(bs.wait_idle(), deadline - loop.time(), "bootstrap sessions in flight")
    for task in waiters:
        if not task.done():
            task.cancel()
    await bounded(
        asyncio.gather(*waiters, return_exceptions=True), deadline - loop.time(), "web server"
    )

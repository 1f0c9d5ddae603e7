"""Starting a Bootstrap Server: standalone (``lwm2m bootstrap``) or inside ``lwm2m server``.

``lwm2m server`` imports this module and awaits :func:`start` with its parsed
arguments and its stores; the returned :class:`BootstrapServer` is handed to
the web app and stopped at shutdown. :func:`start_embedded` is the same with
explicit parameters.

DTLS (``coaps``): clients authenticate to the Bootstrap Server with the
credentials of the security store (PSK identity/key, X.509). The Request
Bootstrap of a DTLS peer must name the endpoint its credentials belong to
(:func:`identity_checker`), so one device's key cannot fetch another's
configuration, and an endpoint that has credentials must use them (no plain CoAP).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Any

from lwm2m.bootstrap.config_file import load_config_file
from lwm2m.bootstrap.server import DEFAULT_COAP_PORT, BootstrapServer
from lwm2m.coap.peer import Peer
from lwm2m.protocol.bootstrap_config import BootstrapConfigError
from lwm2m.protocol.registration import BootstrapRequestParams
from lwm2m.stores.base import SecurityStore, Stores

if TYPE_CHECKING:
    from lwm2m.coap.security_layer import SecurityLayer
    from lwm2m.model.registry import ModelRegistry

logger = logging.getLogger(__name__)


class BootstrapStartError(Exception):
    """A bad option or input file for the bootstrap server (the command exits with 2)."""


def identity_checker(security: SecurityStore, *, require_dtls: bool = True) -> Any:
    """The DTLS identity rule: PSK identity / certificate must belong to the requesting ``ep``.

    With ``require_dtls`` (the server has a CoAPs endpoint), an endpoint that has
    credentials may not bootstrap over plain CoAP.
    """

    def check(peer: Peer, params: BootstrapRequestParams) -> str | None:
        identity = peer.identity
        if identity is None:
            # Like the LwM2M server: an endpoint with credentials must use them.
            if require_dtls and security.get(params.endpoint) is not None:
                return "this endpoint has credentials: bootstrap over DTLS"
            return None
        if identity.psk_identity is not None:
            entry = security.get_by_psk_identity(identity.psk_identity)
            if entry is None or entry.endpoint != params.endpoint:
                return "PSK identity does not belong to this Endpoint Client Name"
            return None
        if identity.certificate_der is not None:
            entry = security.get(params.endpoint)
            if entry is not None and entry.x509 is not None and entry.x509.certificate_der:
                if entry.x509.certificate_der == identity.certificate_der:
                    return None
                return "certificate does not match the one stored for this endpoint"
            from lwm2m.security.x509 import CertificateError, check_registration_name

            try:
                check_registration_name(
                    identity.certificate_der, params.endpoint_type, params.endpoint
                )
            except CertificateError as exc:
                return str(exc)
            return None
        return None

    return check


def build_dtls(
    security: SecurityStore,
    *,
    cert_pem: bytes | None = None,
    key_pem: bytes | None = None,
    ca_pems: tuple[bytes, ...] = (),
) -> SecurityLayer:
    """A DTLS server layer with PSK from ``security`` and X.509 when a certificate is given."""
    from lwm2m.coap.dtls import DtlsServer, DtlsServerConfig

    def psk_lookup(identity: bytes) -> bytes | None:
        entry = security.get_by_psk_identity(identity)
        return None if entry is None or entry.psk is None else bytes(entry.psk.key)

    def is_trusted(der: bytes) -> bool:
        return any(e.x509 is not None and e.x509.certificate_der == der for e in security.list())

    try:
        config = DtlsServerConfig(
            psk_lookup=psk_lookup,
            certificate_pem=cert_pem,
            private_key_pem=key_pem,
            trusted_ca_pems=ca_pems,
            is_trusted_certificate=is_trusted,
            require_client_certificate=False,
        )
    except ValueError as exc:
        raise BootstrapStartError(f"DTLS: {exc}") from None
    return DtlsServer(config)


def read_option_file(path: str | None, what: str) -> bytes | None:
    if not path:
        return None
    try:
        return FsPath(path).read_bytes()
    except OSError as exc:
        raise BootstrapStartError(f"{what} {path}: {exc.strerror or exc}") from None


async def start_embedded(
    stores: Stores,
    *,
    host: str = "127.0.0.1",
    coap_port: int = DEFAULT_COAP_PORT,
    coaps_port: int = 0,
    coap_tcp_port: int | None = None,
    coaps_tcp_port: int | None = None,
    config_file: str | None = None,
    cert_pem: bytes | None = None,
    key_pem: bytes | None = None,
    ca_pems: tuple[bytes, ...] = (),
    request_timeout_s: float | None = None,
    server: Any = None,
    model: ModelRegistry | None = None,
) -> BootstrapServer:
    """Load configurations and history, open the endpoints, follow ``server``'s registrations."""
    kwargs: dict[str, Any] = {}
    if request_timeout_s is not None:
        kwargs["request_timeout_s"] = request_timeout_s
    dtls: SecurityLayer | None = None
    tls: Any = None
    if coaps_tcp_port is not None:
        has_psk = any(e.psk is not None for e in stores.security.list())
        if has_psk or cert_pem is not None:
            from lwm2m.coap.dtls import DtlsServer
            from lwm2m.coap.tls import TlsServer

            layer = build_dtls(stores.security, cert_pem=cert_pem, key_pem=key_pem, ca_pems=ca_pems)
            assert isinstance(layer, DtlsServer)
            tls = TlsServer(layer.config)  # the same credentials and checks as DTLS
        else:
            logger.warning(
                "coaps+tcp disabled: no PSK credentials in the security store and no --cert/--key"
            )
    if coaps_port:
        has_psk = any(e.psk is not None for e in stores.security.list())
        if has_psk or cert_pem is not None:
            dtls = build_dtls(stores.security, cert_pem=cert_pem, key_pem=key_pem, ca_pems=ca_pems)
        else:
            logger.warning(
                "coaps disabled: no PSK credentials in the security store and no --cert/--key"
            )
    checker = identity_checker(stores.security, require_dtls=dtls is not None or tls is not None)
    if model is None and server is not None:
        model = getattr(server, "model", None)
    node_id = getattr(stores, "node_id", None)  # only stores shared by several nodes have one
    if isinstance(node_id, str):
        kwargs.setdefault("node_id", node_id)
    bs = BootstrapServer(documents=stores.documents, identity_check=checker, model=model, **kwargs)
    for problem in await bs.load():
        logger.warning("stored bootstrap configuration ignored: %s", problem)
    if config_file:
        try:
            configs = load_config_file(config_file)
        except BootstrapConfigError as exc:
            raise BootstrapStartError(str(exc)) from None
        await bs.configs.put_all(configs)
        logger.info("%d bootstrap configuration(s) loaded from %s", len(configs), config_file)
    try:
        await bs.start(
            host,
            coap_port,
            coaps_port=coaps_port,
            dtls=dtls,
            coap_tcp_port=coap_tcp_port,
            coaps_tcp_port=coaps_tcp_port if tls is not None else None,
            tls=tls,
        )
    except OSError as exc:
        await bs.close()
        raise BootstrapStartError(f"cannot bind the bootstrap server: {exc}") from None
    if server is not None:
        bs.follow_server(server)
    return bs


async def start(args: argparse.Namespace, stores: Stores, server: Any = None) -> BootstrapServer:
    """The hook of ``lwm2m server`` (reads the options it knows, defaults for the rest)."""
    cert_pem = read_option_file(getattr(args, "cert", None), "--cert")
    key_pem = read_option_file(getattr(args, "key", None), "--key")
    ca = read_option_file(getattr(args, "ca", None), "--ca")
    return await start_embedded(
        stores,
        host=getattr(args, "host", "127.0.0.1"),
        coap_port=getattr(args, "bootstrap_coap_port", DEFAULT_COAP_PORT),
        coaps_port=getattr(args, "bootstrap_coaps_port", 0) or 0,
        coap_tcp_port=getattr(args, "bootstrap_coap_tcp_port", 0) or None,
        coaps_tcp_port=getattr(args, "bootstrap_coaps_tcp_port", 0) or None,
        config_file=getattr(args, "bootstrap_config", None),
        cert_pem=cert_pem,
        key_pem=key_pem,
        ca_pems=(ca,) if ca else (),
        server=server,
    )

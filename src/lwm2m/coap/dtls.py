"""DTLS 1.2 for CoAP: the security layers the endpoint plugs in.

``Endpoint.create(..., security=DtlsServer(DtlsServerConfig(...)))`` for a
server, ``DtlsClient(DtlsClientConfig(...))`` for a client. Both are sans-I/O
objects implementing :class:`lwm2m.coap.security_layer.SecurityLayer` over
pyOpenSSL memory BIOs; see docs/security.md for the behaviour.
"""

from __future__ import annotations

from lwm2m.coap.dtls_binding import has_psk_support
from lwm2m.coap.dtls_client import (
    DtlsClient,
    DtlsClientConfig,
    OwnCertificate,
    PskSecret,
    ServerCertificateCheck,
)
from lwm2m.coap.dtls_server import CertificateLookup, DtlsServer, DtlsServerConfig, PskLookup
from lwm2m.coap.security_layer import (
    HandshakeCompleted,
    HandshakeFailed,
    SecurityEvent,
    SecurityLayer,
    SessionClosed,
)

__all__ = [
    "CertificateLookup",
    "DtlsClient",
    "DtlsClientConfig",
    "DtlsServer",
    "DtlsServerConfig",
    "HandshakeCompleted",
    "HandshakeFailed",
    "OwnCertificate",
    "PskLookup",
    "PskSecret",
    "SecurityEvent",
    "SecurityLayer",
    "ServerCertificateCheck",
    "SessionClosed",
    "has_psk_support",
]


def _conforms(server: DtlsServer, client: DtlsClient) -> tuple[SecurityLayer, SecurityLayer]:
    """Never called: lets mypy prove both layers satisfy the endpoint's protocol."""
    return server, client

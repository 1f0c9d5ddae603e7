"""Certificate Usage (Security resource 15) through the client's production path.

Each case starts a DTLS server on 127.0.0.1 and an ``LwM2MClient`` whose
factory Security instance carries the usage; the client builds its DTLS layer
itself and either registers (accepted) or refuses the server's certificate
during a real handshake over UDP (refused, for the stated reason).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from lwm2m.client.client import LwM2MClient
from lwm2m.client.config import MODE_CERTIFICATE, ClientConfig, FactoryAccount
from lwm2m.coap.codes import Code
from lwm2m.coap.dtls import DtlsServer, DtlsServerConfig
from lwm2m.coap.endpoint import Endpoint, IncomingRequest
from lwm2m.coap.message import Message
from lwm2m.coap.peer import Address
from lwm2m.model.registry import default_registry
from lwm2m.security.certs import IssuedCertificate, make_ca, make_cert

REGISTRY = default_registry()
TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Pki:
    ca: IssuedCertificate
    other_ca: IssuedCertificate
    device: IssuedCertificate
    server: IssuedCertificate  # issued by ca, names 127.0.0.1
    expired_server: IssuedCertificate  # issued by ca, names 127.0.0.1, expired
    misnamed_server: IssuedCertificate  # issued by ca, names another host


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca = make_ca("usage test CA")
    past = datetime.now(UTC) - timedelta(days=30)
    return Pki(
        ca=ca,
        other_ca=make_ca("someone else's CA"),
        device=make_cert(ca, "dev-usage"),
        server=make_cert(ca, "lwm2m server", ["127.0.0.1"]),
        expired_server=make_cert(
            ca, "old lwm2m server", ["127.0.0.1"], past - timedelta(days=10), past
        ),
        misnamed_server=make_cert(ca, "other server", ["other.example.test"]),
    )


class Failures(logging.Handler):
    """What the stack logs (a refused handshake names its reason), as an awaitable stream."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.reasons: asyncio.Queue[str] = asyncio.Queue()

    def emit(self, record: logging.LogRecord) -> None:
        self.reasons.put_nowait(record.getMessage())

    async def wait_for(self, text: str) -> str:
        while True:
            reason = await asyncio.wait_for(self.reasons.get(), TIMEOUT_S)
            if text in reason:
                return reason


@pytest.fixture
async def failures() -> AsyncIterator[Failures]:
    handler = Failures()
    logger = logging.getLogger("lwm2m")
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


class Resolving(LwM2MClient):
    """A client whose DNS knows one more name (the test machine's DNS knows none)."""

    def __init__(self, config: ClientConfig, names: dict[str, Address]) -> None:
        super().__init__(config, registry=REGISTRY)
        self.names = names

    async def resolve(self, uri: str) -> Address:
        for name, address in self.names.items():
            if f"//{name}:" in uri:
                return address
        return await super().resolve(uri)


async def run(
    pki: Pki,
    presented: IssuedCertificate,
    server_public_key: bytes,
    usage: int | None,
    *,
    host: str = "127.0.0.1",
) -> tuple[LwM2MClient, Endpoint, asyncio.Queue[IncomingRequest]]:
    seen: asyncio.Queue[IncomingRequest] = asyncio.Queue()

    async def handle(request: IncomingRequest) -> Message:
        seen.put_nowait(request)
        if request.message.code == Code.POST:
            return Message(Code.CREATED, location_path=("rd", "u"))
        return Message(Code.DELETED)

    layer = DtlsServer(
        DtlsServerConfig(
            certificate_pem=presented.cert_pem,
            private_key_pem=presented.key_pem,
            trusted_ca_pems=(pki.ca.cert_pem,),
        )
    )
    server = await Endpoint.create("127.0.0.1", 0, handler=handle, security=layer)
    port = server.local_address[1]
    client = Resolving(
        ClientConfig(
            "dev-usage",
            servers=(
                FactoryAccount(
                    f"coaps://{host}:{port}",
                    security_mode=MODE_CERTIFICATE,
                    client_certificate=pki.device.der,
                    secret_key=pki.device.key.private_bytes(
                        Encoding.DER, PrivateFormat.PKCS8, NoEncryption()
                    ),
                    server_public_key=server_public_key,
                    certificate_usage=usage,
                ),
            ),
            local_host="127.0.0.1",
        ),
        {host: server.local_address},
    )
    await client.start()
    return client, server, seen


async def accepted(
    pki: Pki, presented: IssuedCertificate, server_public_key: bytes, usage: int | None, **kw: str
) -> None:
    client, server, seen = await run(pki, presented, server_public_key, usage, **kw)
    try:
        register = await asyncio.wait_for(seen.get(), TIMEOUT_S)
        assert register.message.uri_path == ("rd",)
        assert register.peer.identity is not None
        assert register.peer.identity.certificate_der == pki.device.der
    finally:
        await client.stop()
        await server.close()


async def refused(
    pki: Pki,
    failures: Failures,
    presented: IssuedCertificate,
    server_public_key: bytes,
    usage: int | None,
    reason: str,
    **kw: str,
) -> None:
    client, server, seen = await run(pki, presented, server_public_key, usage, **kw)
    try:
        await failures.wait_for(reason)
        assert seen.empty()  # no Register reached the server
    finally:
        await client.stop(deregister=False)
        await server.close()


# --------------------------------------------------------------------- 0 CA constraint


async def test_usage_0_accepts_a_server_certified_by_the_ca(pki: Pki) -> None:
    await accepted(pki, pki.server, pki.ca.der, 0)


async def test_usage_0_refuses_a_server_certified_by_another_ca(
    pki: Pki, failures: Failures
) -> None:
    await refused(pki, failures, pki.server, pki.other_ca.der, 0, "server certificate rejected")


# ---------------------------------------------------- 1 service certificate constraint


async def test_usage_1_accepts_the_pinned_certificate(pki: Pki) -> None:
    await accepted(pki, pki.server, pki.server.der, 1)


async def test_usage_1_refuses_the_pinned_certificate_once_expired(
    pki: Pki, failures: Failures
) -> None:
    await refused(pki, failures, pki.expired_server, pki.expired_server.der, 1, "expired on")


# ------------------------------------------------------------ 2 trust anchor assertion


async def test_usage_2_accepts_a_server_certified_by_the_anchor(pki: Pki) -> None:
    await accepted(pki, pki.server, pki.ca.der, 2)


async def test_usage_2_refuses_a_certificate_not_naming_the_uri_host(
    pki: Pki, failures: Failures
) -> None:
    await refused(
        pki,
        failures,
        pki.misnamed_server,
        pki.ca.der,
        2,
        "does not name the server host '127.0.0.1'",
    )


async def test_usage_2_refuses_an_expired_server_certificate(pki: Pki, failures: Failures) -> None:
    await refused(pki, failures, pki.expired_server, pki.ca.der, 2, "expired")


# --------------------------------------------------------- 3 domain-issued certificate


async def test_usage_3_accepts_the_pinned_certificate_without_pkix_checks(pki: Pki) -> None:
    # RFC 6698: usage 3 tests no PKIX validation; the exact match is the trust.
    await accepted(pki, pki.expired_server, pki.expired_server.der, 3)


async def test_usage_3_refuses_any_other_certificate(pki: Pki, failures: Failures) -> None:
    await refused(
        pki,
        failures,
        pki.server,
        pki.expired_server.der,
        3,
        "does not match the stored server certificate",
    )


# ------------------------------------------------------------ resource 15 absent


async def test_without_usage_a_pinned_server_certificate_is_usage_3(
    pki: Pki, failures: Failures
) -> None:
    await accepted(pki, pki.misnamed_server, pki.misnamed_server.der, None)
    await refused(
        pki,
        failures,
        pki.server,
        pki.misnamed_server.der,
        None,
        "does not match the stored server certificate",
    )


async def test_without_usage_a_ca_is_a_trust_anchor(pki: Pki, failures: Failures) -> None:
    await accepted(pki, pki.server, pki.ca.der, None)
    await refused(
        pki, failures, pki.misnamed_server, pki.ca.der, None, "does not name the server host"
    )


# ------------------------------------------------------------------ host names


async def test_a_wildcard_certificate_covers_one_label(pki: Pki) -> None:
    wildcard = make_cert(pki.ca, "acme servers", ["*.acme.test"])
    await accepted(pki, wildcard, pki.ca.der, 2, host="lwm2m.acme.test")


async def test_a_wildcard_on_a_top_level_domain_covers_nothing(
    pki: Pki, failures: Failures
) -> None:
    too_wide = make_cert(pki.ca, "everything", ["*.test"])
    await refused(
        pki,
        failures,
        too_wide,
        pki.ca.der,
        2,
        "does not name the server host 'acme.test'",
        host="acme.test",
    )

"""Security object instance -> DtlsClientConfig, checked with real handshakes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from lwm2m.coap.dtls import DtlsClient, DtlsServer, DtlsServerConfig
from lwm2m.security.certs import IssuedCertificate, make_ca, make_cert
from lwm2m.security.client_config import (
    CertificateUsage,
    ServerTrust,
    dtls_client_config,
    effective_usage,
    server_trust,
)
from lwm2m.security.credentials import PskCredential, SecurityConfigError, X509Expectation

Pki = tuple[IssuedCertificate, IssuedCertificate, IssuedCertificate]

SERVER = ("127.0.0.1", 5684)
CLIENT = ("127.0.0.1", 40000)


def handshake(client: DtlsClient, server: DtlsServer) -> bool:
    client.send(b"x", SERVER, 0.0)
    for _ in range(20):
        moved = False
        for data, _ in client.datagrams_to_send():
            moved = True
            server.receive_datagram(data, CLIENT, 0.0)
        for data, _ in server.datagrams_to_send():
            moved = True
            client.receive_datagram(data, SERVER, 0.0)
        if not moved:
            break
    return server.is_established(CLIENT) and client.is_established(SERVER)


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca = make_ca()
    return ca, make_cert(ca, "srv", ["lwm2m.example.test"]), make_cert(ca, "1:dev-1")


def cert_server(pki: Pki) -> DtlsServer:
    ca, srv, _ = pki
    return DtlsServer(
        DtlsServerConfig(
            certificate_pem=srv.cert_pem,
            private_key_pem=srv.key_pem,
            trusted_ca_pems=(ca.cert_pem,),
        )
    )


def der_key(issued: IssuedCertificate) -> bytes:
    return issued.key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())


def test_psk_mode() -> None:
    config = dtls_client_config(0, b"id", b"", b"\x01\x02", "lwm2m.example.test")
    assert config.psk == PskCredential(b"id", b"\x01\x02")
    server = DtlsServer(DtlsServerConfig(psk_lookup={b"id": b"\x01\x02"}.get))
    assert handshake(DtlsClient(config), server)


@pytest.mark.parametrize("usage", [None, 1, 3])
def test_certificate_mode_direct_trust(pki: Pki, usage: int | None) -> None:
    _, srv, dev = pki
    config = dtls_client_config(
        2, dev.der, srv.der, der_key(dev), "127.0.0.1", certificate_usage=usage
    )
    assert isinstance(config.server_trust, ServerTrust)
    assert config.server_trust.expectation == X509Expectation(certificate_der=srv.der)
    assert handshake(DtlsClient(config), cert_server(pki))  # host not checked under direct trust


@pytest.mark.parametrize("usage", [None, 0, 2])
def test_certificate_mode_indirect_trust(pki: Pki, usage: int | None) -> None:
    ca, _, dev = pki
    good = dtls_client_config(
        2, dev.der, ca.der, der_key(dev), "lwm2m.example.test", certificate_usage=usage
    )
    assert isinstance(good.server_trust, ServerTrust)
    assert good.server_trust.expectation == X509Expectation(ca_pems=(ca.cert_pem,))
    assert handshake(DtlsClient(good), cert_server(pki))
    wrong_host = dtls_client_config(
        2, dev.der, ca.der, der_key(dev), "127.0.0.1", certificate_usage=usage
    )
    assert not handshake(DtlsClient(wrong_host), cert_server(pki))


def test_pem_is_accepted_too(pki: Pki) -> None:
    ca, _, dev = pki
    config = dtls_client_config(2, dev.cert_pem, ca.cert_pem, dev.key_pem, "lwm2m.example.test")
    assert handshake(DtlsClient(config), cert_server(pki))


@pytest.mark.parametrize(
    ("mode", "identity", "server_key", "secret", "message"),
    [
        (1, b"", b"", b"", "Security Mode 1 (Raw Public Key) is not supported"),
        (3, b"", b"", b"", "Security Mode 3 (NoSec) needs no DTLS configuration"),
        (4, b"", b"", b"", "Security Mode 4 is not supported"),
        (2, b"junk", b"", b"", "Public Key or Identity is not an X.509 certificate (DER or PEM)"),
    ],
)
def test_unusable_instances(
    mode: int, identity: bytes, server_key: bytes, secret: bytes, message: str
) -> None:
    with pytest.raises(SecurityConfigError) as info:
        dtls_client_config(mode, identity, server_key, secret, "h")
    assert str(info.value).startswith(message)


def test_bad_secret_key_and_usage(pki: Pki) -> None:
    ca, _, dev = pki
    with pytest.raises(SecurityConfigError, match="Secret Key is not an unencrypted private key"):
        dtls_client_config(2, dev.der, ca.der, b"\x30\x03junk", "h")
    with pytest.raises(
        SecurityConfigError, match=r"Server Public Key is not an X\.509 certificate"
    ):
        dtls_client_config(2, dev.der, b"", der_key(dev), "h")
    with pytest.raises(SecurityConfigError, match="Certificate Usage 7 is not 0-3"):
        server_trust(ca.der, 7)


def test_usage_0_needs_a_ca_certificate(pki: Pki) -> None:
    _, srv, _ = pki
    with pytest.raises(
        SecurityConfigError, match=r"Certificate Usage 0 \(CA constraint\) needs a CA"
    ):
        server_trust(srv.der, 0)


@pytest.mark.parametrize(
    ("which", "usage", "expected"),
    [
        ("srv", None, CertificateUsage.DOMAIN_ISSUED_CERTIFICATE),
        ("ca", None, CertificateUsage.TRUST_ANCHOR_ASSERTION),
        ("ca", 3, CertificateUsage.DOMAIN_ISSUED_CERTIFICATE),
        ("srv", 1, CertificateUsage.SERVICE_CERTIFICATE_CONSTRAINT),
    ],
)
def test_the_usage_applied(
    pki: Pki, which: str, usage: int | None, expected: CertificateUsage
) -> None:
    ca, srv, _ = pki
    assert effective_usage((ca if which == "ca" else srv).der, usage) is expected


def test_usage_1_judges_the_validity_period_by_the_clock(pki: Pki) -> None:
    _, srv, _ = pki
    during = srv.cert.not_valid_before_utc + timedelta(seconds=1)
    after = srv.cert.not_valid_after_utc + timedelta(seconds=1)
    assert server_trust(srv.der, 1, clock=lambda: during).check(srv.cert, "h", "any") is None
    reason = server_trust(srv.der, 1, clock=lambda: after).check(srv.cert, "h", None)
    assert reason is not None and "expired on" in reason
    # usage 3 pins without PKIX checks
    assert server_trust(srv.der, 3, clock=lambda: after).check(srv.cert, "h", None) is None


def test_indirect_trust_reports_the_chain_error_first(pki: Pki) -> None:
    ca, srv, _ = pki
    trust = server_trust(ca.der, 2)
    assert trust.ca_pems == (ca.cert_pem,)
    assert trust.check(srv.cert, "lwm2m.example.test", None) is None
    assert (
        trust.check(srv.cert, "lwm2m.example.test", "certificate has expired")
        == "server certificate rejected: certificate has expired"
    )
    assert server_trust(srv.der, 3).ca_pems == ()


def test_server_trust_needs_a_certificate_or_a_ca() -> None:
    with pytest.raises(SecurityConfigError, match="needs the server's certificate or a CA"):
        ServerTrust(X509Expectation())

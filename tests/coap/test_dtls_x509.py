"""Certificate handshakes: direct and indirect trust on both sides, failures, names."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from test_dtls_helpers import CLIENT_ADDR, PSK_ID, PSK_KEY, SERVER_ADDR, Link, psk_store

from lwm2m.coap.dtls import DtlsClient, DtlsClientConfig, DtlsServer, DtlsServerConfig
from lwm2m.coap.peer import PeerIdentity
from lwm2m.security.certs import IssuedCertificate, make_ca, make_cert
from lwm2m.security.client_config import ServerTrust
from lwm2m.security.credentials import PskCredential, X509Credential, X509Expectation
from lwm2m.security.x509 import NameMismatch, check_registration_name


@pytest.fixture(scope="module")
def ca() -> IssuedCertificate:
    return make_ca("test root")


@pytest.fixture(scope="module")
def server_cert(ca: IssuedCertificate) -> IssuedCertificate:
    return make_cert(ca, "lwm2m.example.test", ["localhost", "127.0.0.1", "*.example.test"])


@pytest.fixture(scope="module")
def device_cert(ca: IssuedCertificate) -> IssuedCertificate:
    return make_cert(ca, "1:dev-1")


def server_for(
    server_cert: IssuedCertificate,
    cas: tuple[IssuedCertificate, ...] = (),
    direct: tuple[bytes, ...] = (),
    **options: object,
) -> DtlsServer:
    known = set(direct)
    return DtlsServer(
        DtlsServerConfig(
            certificate_pem=server_cert.cert_pem,
            private_key_pem=server_cert.key_pem,
            trusted_ca_pems=tuple(c.cert_pem for c in cas),
            is_trusted_certificate=(lambda der: der in known) if direct else None,
            **options,  # type: ignore[arg-type]
        )
    )


def client_for(
    device: IssuedCertificate,
    trust: X509Expectation,
    host: str | None = "localhost",
    chain: tuple[bytes, ...] = (),
) -> DtlsClient:
    return DtlsClient(
        DtlsClientConfig(
            certificate=X509Credential(device.cert_pem, device.key_pem, chain),
            server_trust=ServerTrust(trust),
            server_host=host,
        )
    )


def test_indirect_trust_both_ways(
    ca: IssuedCertificate, server_cert: IssuedCertificate, device_cert: IssuedCertificate
) -> None:
    link = Link(
        client=client_for(device_cert, X509Expectation(ca_pems=(ca.cert_pem,))),
        server=server_for(server_cert, cas=(ca,)),
    )
    link.client_send(b"register")
    [(payload, peer)] = link.server_received
    assert payload == b"register"
    assert peer.identity == PeerIdentity(certificate_der=device_cert.der)
    assert (
        link.server._sessions[CLIENT_ADDR].connection.get_cipher_name() == "ECDHE-ECDSA-AES128-CCM8"
    )
    # the client learns the server certificate too
    assert link.client.peer_identity(SERVER_ADDR) == PeerIdentity(certificate_der=server_cert.der)
    # what the LwM2M server then checks at Register
    assert peer.identity is not None and peer.identity.certificate_der is not None
    check_registration_name(peer.identity.certificate_der, 1, "dev-1")
    with pytest.raises(NameMismatch):
        check_registration_name(peer.identity.certificate_der, 1, "dev-2")


def test_direct_trust_with_self_signed_certificates() -> None:
    server_self = make_cert(None, "server", ["localhost"])
    device_self = make_cert(None, "dev-1")
    link = Link(
        client=client_for(
            device_self, X509Expectation(certificate_der=server_self.der), host="not-checked"
        ),
        server=server_for(server_self, direct=(device_self.der,)),
    )
    link.client_send(b"x")
    assert link.server_received[0][1].identity == PeerIdentity(certificate_der=device_self.der)


def test_direct_trust_of_a_ca_issued_client_without_trusting_its_ca(
    server_cert: IssuedCertificate, device_cert: IssuedCertificate, ca: IssuedCertificate
) -> None:
    link = Link(
        client=client_for(device_cert, X509Expectation(ca_pems=(ca.cert_pem,))),
        server=server_for(server_cert, direct=(device_cert.der,)),
    )
    link.client_send(b"x")
    assert link.server_received


def test_untrusted_client_ca_is_rejected(
    server_cert: IssuedCertificate, ca: IssuedCertificate
) -> None:
    other_ca = make_ca("someone else")
    stranger = make_cert(other_ca, "1:dev-1")
    link = Link(
        client=client_for(stranger, X509Expectation(ca_pems=(ca.cert_pem,))),
        server=server_for(server_cert, cas=(ca,)),
    )
    link.client_send(b"x")
    assert link.server_received == []
    [failure] = link.failed(link.server_events)
    assert "client certificate rejected" in failure.reason
    assert "issuer" in failure.reason
    assert link.failed(link.client_events)  # the server's alert reached the client


def test_expired_client_certificate_is_rejected(
    ca: IssuedCertificate, server_cert: IssuedCertificate
) -> None:
    past = datetime.now(UTC) - timedelta(days=30)
    expired = make_cert(ca, "1:dev-1", (), past - timedelta(days=10), past)
    link = Link(
        client=client_for(expired, X509Expectation(ca_pems=(ca.cert_pem,))),
        server=server_for(server_cert, cas=(ca,)),
    )
    link.client_send(b"x")
    [failure] = link.failed(link.server_events)
    assert "expired" in failure.reason


def test_client_without_certificate_is_rejected_by_a_certificate_server(
    server_cert: IssuedCertificate, ca: IssuedCertificate
) -> None:
    client = DtlsClient(DtlsClientConfig(psk=PskCredential(PSK_ID, PSK_KEY)))
    link = Link(client=client, server=server_for(server_cert, cas=(ca,)))
    link.client_send(b"x")
    assert link.server_received == []
    assert link.failed(link.client_events)


def test_server_offering_psk_and_certificates_accepts_a_psk_client(
    server_cert: IssuedCertificate, ca: IssuedCertificate
) -> None:
    server = server_for(server_cert, cas=(ca,), psk_lookup=psk_store({PSK_ID: PSK_KEY}))
    client = DtlsClient(DtlsClientConfig(psk=PskCredential(PSK_ID, PSK_KEY)))
    link = Link(client=client, server=server)
    link.client_send(b"x")
    assert link.server_received[0][1].identity == PeerIdentity(psk_identity=PSK_ID)


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        ("localhost", True),
        ("127.0.0.1", True),
        ("a.example.test", True),  # wildcard SAN
        ("example.test", False),
        ("a.b.example.test", False),
        ("lwm2m.example.test", True),  # via the wildcard, the CN is not used when SANs exist
        ("127.0.0.2", False),
        ("evil.test", False),
    ],
)
def test_client_checks_the_server_name(
    ca: IssuedCertificate,
    server_cert: IssuedCertificate,
    device_cert: IssuedCertificate,
    host: str,
    ok: bool,
) -> None:
    link = Link(
        client=client_for(device_cert, X509Expectation(ca_pems=(ca.cert_pem,)), host=host),
        server=server_for(server_cert, cas=(ca,)),
    )
    link.client_send(b"x")
    if ok:
        assert link.server_received
    else:
        [failure] = link.failed(link.client_events)
        assert f"does not name the server host {host!r}" in failure.reason
        assert link.server_received == []


def test_client_requires_the_expected_names(
    ca: IssuedCertificate, server_cert: IssuedCertificate, device_cert: IssuedCertificate
) -> None:
    trust = X509Expectation(ca_pems=(ca.cert_pem,), expected_names=("other.example.test",))
    link = Link(client=client_for(device_cert, trust), server=server_for(server_cert, cas=(ca,)))
    link.client_send(b"x")
    [failure] = link.failed(link.client_events)
    assert "lacks the expected names" in failure.reason


def test_client_rejects_a_server_from_an_untrusted_ca(
    server_cert: IssuedCertificate, device_cert: IssuedCertificate, ca: IssuedCertificate
) -> None:
    other_ca = make_ca("not mine")
    link = Link(
        client=client_for(device_cert, X509Expectation(ca_pems=(other_ca.cert_pem,))),
        server=server_for(server_cert, cas=(ca,)),
    )
    link.client_send(b"x")
    [failure] = link.failed(link.client_events)
    assert "server certificate rejected" in failure.reason


def test_client_direct_trust_mismatch_is_rejected(
    server_cert: IssuedCertificate, device_cert: IssuedCertificate, ca: IssuedCertificate
) -> None:
    pinned = make_cert(ca, "another server", ["localhost"])
    link = Link(
        client=client_for(device_cert, X509Expectation(certificate_der=pinned.der)),
        server=server_for(server_cert, cas=(ca,)),
    )
    link.client_send(b"x")
    [failure] = link.failed(link.client_events)
    assert "does not match the stored server certificate" in failure.reason


def test_server_chain_through_an_intermediate(
    device_cert: IssuedCertificate, ca: IssuedCertificate
) -> None:
    intermediate = make_ca("intermediate", issuer=ca)
    leaf = make_cert(intermediate, "server", ["localhost"])
    server = DtlsServer(
        DtlsServerConfig(
            certificate_pem=leaf.cert_pem,
            private_key_pem=leaf.key_pem,
            chain_pems=(intermediate.cert_pem,),
            trusted_ca_pems=(ca.cert_pem,),
        )
    )
    link = Link(
        client=client_for(device_cert, X509Expectation(ca_pems=(ca.cert_pem,))), server=server
    )
    link.client_send(b"x")
    assert link.server_received


def test_certificate_sessions_resume_with_the_certificate_identity(
    ca: IssuedCertificate, server_cert: IssuedCertificate, device_cert: IssuedCertificate
) -> None:
    link = Link(
        client=client_for(device_cert, X509Expectation(ca_pems=(ca.cert_pem,))),
        server=server_for(server_cert, cas=(ca,)),
    )
    link.client_send(b"first")
    link.client.reset(SERVER_ADDR)
    link.client_send(b"second")
    assert link.server.session_resumed(CLIENT_ADDR) is True
    assert link.server_received[-1][1].identity == PeerIdentity(certificate_der=device_cert.der)


def test_certificate_flights_are_split_to_the_mtu(
    ca: IssuedCertificate, server_cert: IssuedCertificate, device_cert: IssuedCertificate
) -> None:
    link = Link(
        client=client_for(device_cert, X509Expectation(ca_pems=(ca.cert_pem,))),
        server=server_for(server_cert, cas=(ca,), mtu=300),
    )
    link.client_send(b"x")
    assert link.server_received
    assert max(len(d) for d in link.to_client) <= 300


def test_a_failing_trust_lookup_refuses_the_handshake_cleanly(
    ca: IssuedCertificate, server_cert: IssuedCertificate, device_cert: IssuedCertificate
) -> None:
    def broken_store(der: bytes) -> bool:
        raise RuntimeError("store offline")

    server = DtlsServer(
        DtlsServerConfig(
            certificate_pem=server_cert.cert_pem,
            private_key_pem=server_cert.key_pem,
            is_trusted_certificate=broken_store,
        )
    )
    link = Link(
        client=client_for(device_cert, X509Expectation(ca_pems=(ca.cert_pem,))), server=server
    )
    link.client_send(b"x")
    [failure] = link.failed(link.server_events)
    assert failure.reason == "client certificate rejected: store offline"
    assert server.session_count() == 0

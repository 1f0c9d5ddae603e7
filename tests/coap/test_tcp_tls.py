"""CoAP over TLS (coaps+tcp) on loopback: PSK and X.509 with the DTLS configs and rules."""

from __future__ import annotations

import pytest

from lwm2m.coap.codes import Code
from lwm2m.coap.dtls import DtlsClientConfig, DtlsServerConfig
from lwm2m.coap.endpoint import Handler, IncomingRequest
from lwm2m.coap.errors import SecureConnectionFailed
from lwm2m.coap.message import Message
from lwm2m.coap.peer import Peer, PeerIdentity
from lwm2m.coap.tcp_transport import TcpEndpoint
from lwm2m.coap.tls import TlsClient, TlsServer
from lwm2m.security.certs import IssuedCertificate, make_ca, make_cert
from lwm2m.security.client_config import ServerTrust
from lwm2m.security.credentials import PskCredential, X509Credential, X509Expectation
from lwm2m.security.x509 import NameMismatch, check_registration_name

TIMEOUT = 10.0
PSK_ID = b"dev-1-id"
PSK_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")


def handler_recording(peers: list[Peer]) -> Handler:
    async def handle(request: IncomingRequest) -> Message:
        peers.append(request.peer)
        return Message(Code.CONTENT, payload=b"secret")

    return handle


async def exchange(server_config: DtlsServerConfig, client_config: DtlsClientConfig) -> Peer:
    peers: list[Peer] = []
    server = await TcpEndpoint.listen(
        "127.0.0.1",
        0,
        handler=handler_recording(peers),
        security=TlsServer(server_config),
    )
    client = TcpEndpoint.connector(security=TlsClient(client_config))
    try:
        response = await client.request(
            Message(Code.GET, uri_path=("3", "0")), server.local_address, timeout=TIMEOUT
        )
        assert response.payload == b"secret"
        assert server.handshakes_completed == 1
        (peer,) = peers
        assert peer.transport == "tcp"
        return peer
    finally:
        await client.close()
        await server.close()


async def test_psk_over_tls_proves_the_identity() -> None:
    keys = {PSK_ID: PSK_KEY}
    peer = await exchange(
        DtlsServerConfig(psk_lookup=keys.get),
        DtlsClientConfig(psk=PskCredential(PSK_ID, PSK_KEY)),
    )
    assert peer.identity == PeerIdentity(psk_identity=PSK_ID)


async def test_wrong_psk_fails_the_handshake_and_not_the_server() -> None:
    keys = {PSK_ID: PSK_KEY}
    server = await TcpEndpoint.listen(
        "127.0.0.1", 0, security=TlsServer(DtlsServerConfig(psk_lookup=keys.get))
    )
    client = TcpEndpoint.connector(
        security=TlsClient(DtlsClientConfig(psk=PskCredential(PSK_ID, b"\x99" * 16)))
    )
    try:
        with pytest.raises(SecureConnectionFailed):
            await client.request(Message(Code.GET), server.local_address, timeout=TIMEOUT)
        good = TcpEndpoint.connector(
            security=TlsClient(DtlsClientConfig(psk=PskCredential(PSK_ID, PSK_KEY)))
        )
        async with good:  # the server goes on serving
            response = await good.request(Message(Code.GET), server.local_address, timeout=TIMEOUT)
            assert response.code == Code.NOT_FOUND  # no handler: 4.04
    finally:
        await client.close()
        await server.close()


@pytest.fixture(scope="module")
def ca() -> IssuedCertificate:
    return make_ca("tls test root")


async def test_x509_over_tls_with_the_lwm2m_name_rules(ca: IssuedCertificate) -> None:
    server_cert = make_cert(ca, "lwm2m.example.test", ["localhost", "*.example.test"])
    device = make_cert(ca, "1:dev-1")
    peer = await exchange(
        DtlsServerConfig(
            certificate_pem=server_cert.cert_pem,
            private_key_pem=server_cert.key_pem,
            trusted_ca_pems=(ca.cert_pem,),
        ),
        DtlsClientConfig(
            certificate=X509Credential(device.cert_pem, device.key_pem, ()),
            server_trust=ServerTrust(X509Expectation(ca_pems=(ca.cert_pem,))),
            server_host="node7.example.test",  # matched by the *.example.test wildcard
        ),
    )
    assert peer.identity == PeerIdentity(certificate_der=device.der)
    assert peer.identity.certificate_der is not None
    check_registration_name(peer.identity.certificate_der, 1, "dev-1")  # CN = ept:ep
    with pytest.raises(NameMismatch):
        check_registration_name(peer.identity.certificate_der, 1, "dev-2")


async def test_x509_server_name_mismatch_is_refused(ca: IssuedCertificate) -> None:
    server_cert = make_cert(ca, "lwm2m.example.test", ["localhost"])
    device = make_cert(ca, "1:dev-1")
    server = await TcpEndpoint.listen(
        "127.0.0.1",
        0,
        security=TlsServer(
            DtlsServerConfig(
                certificate_pem=server_cert.cert_pem,
                private_key_pem=server_cert.key_pem,
                trusted_ca_pems=(ca.cert_pem,),
            )
        ),
    )
    client = TcpEndpoint.connector(
        security=TlsClient(
            DtlsClientConfig(
                certificate=X509Credential(device.cert_pem, device.key_pem, ()),
                server_trust=ServerTrust(X509Expectation(ca_pems=(ca.cert_pem,))),
                server_host="other.example.test",
            )
        )
    )
    try:
        with pytest.raises(SecureConnectionFailed):
            await client.request(Message(Code.GET), server.local_address, timeout=TIMEOUT)
    finally:
        await client.close()
        await server.close()


def test_versions_tls13_for_certificates_tls12_for_psk(ca: IssuedCertificate) -> None:
    """Drive two sessions in memory and read the negotiated version."""
    server_cert = make_cert(ca, "s", ["localhost"])
    device = make_cert(ca, "1:dev-1")
    cert_server = TlsServer(
        DtlsServerConfig(
            certificate_pem=server_cert.cert_pem,
            private_key_pem=server_cert.key_pem,
            trusted_ca_pems=(ca.cert_pem,),
        )
    )
    cert_client = TlsClient(
        DtlsClientConfig(
            certificate=X509Credential(device.cert_pem, device.key_pem, ()),
            server_trust=ServerTrust(X509Expectation(ca_pems=(ca.cert_pem,))),
            server_host="localhost",
        )
    )
    keys = {PSK_ID: PSK_KEY}
    psk_server = TlsServer(DtlsServerConfig(psk_lookup=keys.get))
    psk_client = TlsClient(DtlsClientConfig(psk=PskCredential(PSK_ID, PSK_KEY)))
    for server_layer, client_layer, version in (
        (cert_server, cert_client, "TLSv1.3"),
        (psk_server, psk_client, "TLSv1.2"),
    ):
        s = server_layer.session(True, ("127.0.0.1", 1))
        c = client_layer.session(False, ("127.0.0.1", 2))
        c.start()
        for _ in range(10):
            s.receive(c.data_to_send())
            c.receive(s.data_to_send())
            if s.established and c.established:
                break
        assert s.established and c.established
        assert s.version == c.version == version
        c.send(b"hello")
        assert s.receive(c.data_to_send()) == b"hello"


async def test_close_is_bounded_with_a_peer_stuck_before_its_handshake() -> None:
    import asyncio

    keys = {PSK_ID: PSK_KEY}
    server = await TcpEndpoint.listen(
        "127.0.0.1", 0, security=TlsServer(DtlsServerConfig(psk_lookup=keys.get))
    )
    reader, writer = await asyncio.open_connection(*server.local_address)  # says nothing
    try:
        await asyncio.wait_for(server.close(), TIMEOUT)
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # we closed it
    finally:
        writer.close()

"""CoAP over DTLS through the real Endpoint (``Endpoint.create(security=...)``)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from test_dtls_helpers import PSK_ID, PSK_KEY, psk_store

from lwm2m.coap.codec import encode
from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.dtls import DtlsClient, DtlsClientConfig, DtlsServer, DtlsServerConfig
from lwm2m.coap.endpoint import Endpoint, IncomingRequest
from lwm2m.coap.errors import SecureConnectionFailed
from lwm2m.coap.message import Message
from lwm2m.coap.params import TransmissionParameters
from lwm2m.security.certs import make_ca, make_cert
from lwm2m.security.client_config import ServerTrust
from lwm2m.security.credentials import PskCredential, X509Credential, X509Expectation
from lwm2m.security.x509 import NameMismatch, check_registration_name

FAST = TransmissionParameters(ack_timeout_s=0.2, ack_random_factor=1.0, max_retransmit=6)


async def describe_peer(request: IncomingRequest) -> Message:
    identity = request.peer.identity
    text = (
        "plain"
        if identity is None
        else repr((identity.psk_identity, identity.certificate_der is not None))
    )
    return Message(code=Code.CONTENT, payload=text.encode() + b"|" + request.message.payload)


@pytest.fixture
async def psk_server() -> AsyncIterator[tuple[Endpoint, DtlsServer]]:
    layer = DtlsServer(DtlsServerConfig(psk_lookup=psk_store({PSK_ID: PSK_KEY})))
    endpoint = await Endpoint.create(handler=describe_peer, security=layer)
    yield endpoint, layer
    await endpoint.close()


def psk_client(identity: bytes = PSK_ID, key: bytes = PSK_KEY, **options: object) -> DtlsClient:
    return DtlsClient(DtlsClientConfig(psk=PskCredential(identity, key), **options))  # type: ignore[arg-type]


async def test_coap_request_over_psk(psk_server: tuple[Endpoint, DtlsServer]) -> None:
    server, _ = psk_server
    async with await Endpoint.create(security=psk_client()) as client:
        response = await client.request(
            Message(code=Code.POST, uri_path=("rd",), payload=b"</1/0>"),
            server.local_address,
            timeout=10,
        )
    assert response.code == Code.CONTENT
    assert response.payload == b"(b'dev-1-id', False)|</1/0>"


async def test_large_payload_block_wise_over_dtls(psk_server: tuple[Endpoint, DtlsServer]) -> None:
    server, _ = psk_server
    body = bytes(range(256)) * 20  # 5 KiB: Block1 both ways through DTLS records
    async with await Endpoint.create(security=psk_client()) as client:
        response = await client.request(
            Message(code=Code.PUT, uri_path=("big",), payload=body),
            server.local_address,
            timeout=10,
        )
    assert response.payload.endswith(body)


async def test_unknown_identity_fails_the_request(psk_server: tuple[Endpoint, DtlsServer]) -> None:
    server, layer = psk_server
    async with await Endpoint.create(security=psk_client(identity=b"nobody")) as client:
        with pytest.raises(SecureConnectionFailed, match="DTLS handshake"):
            await client.request(
                Message(code=Code.GET, uri_path=("x",)), server.local_address, timeout=10
            )
    assert layer.session_count() == 0


async def test_plain_coap_to_the_secure_port_is_ignored(
    psk_server: tuple[Endpoint, DtlsServer],
) -> None:
    server, layer = psk_server
    raw = encode(Message(code=Code.GET, type=MessageType.CON, mid=7, uri_path=("rd",)))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        for _ in range(5):
            sock.sendto(raw, server.local_address)
        # a real secure client afterwards proves the endpoint is alive and unharmed
        async with await Endpoint.create(security=psk_client()) as client:
            response = await client.request(
                Message(code=Code.GET, uri_path=("x",)), server.local_address, timeout=10
            )
        assert response.code == Code.CONTENT
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(2048)  # nothing was ever sent back to the plain sender
    assert layer.dropped_datagrams == 5
    assert layer.session_count() == 1


async def test_x509_endpoint_and_registration_name_check() -> None:
    ca = make_ca()
    server_cert = make_cert(ca, "lwm2m server", ["localhost", "127.0.0.1"])
    device = make_cert(ca, "1:dev-1")
    results: list[str] = []

    async def register(request: IncomingRequest) -> Message:
        identity = request.peer.identity
        assert identity is not None and identity.certificate_der is not None
        query = request.message.query()
        try:
            check_registration_name(identity.certificate_der, int(query["ept"]), query["ep"])
        except NameMismatch as exc:
            results.append(str(exc))
            return Message(code=Code.BAD_REQUEST, payload=str(exc).encode())
        results.append("ok")
        return Message(code=Code.CREATED)

    server_layer = DtlsServer(
        DtlsServerConfig(
            certificate_pem=server_cert.cert_pem,
            private_key_pem=server_cert.key_pem,
            trusted_ca_pems=(ca.cert_pem,),
        )
    )
    client_layer = DtlsClient(
        DtlsClientConfig(
            certificate=X509Credential(device.cert_pem, device.key_pem),
            server_trust=ServerTrust(X509Expectation(ca_pems=(ca.cert_pem,))),
            server_host="localhost",
        )
    )
    async with (
        await Endpoint.create(handler=register, security=server_layer) as server,
        await Endpoint.create(security=client_layer) as client,
    ):
        ok = await client.request(
            Message(code=Code.POST, uri_path=("rd",), uri_query=("ept=1", "ep=dev-1")),
            server.local_address,
            timeout=10,
        )
        bad = await client.request(
            Message(code=Code.POST, uri_path=("rd",), uri_query=("ept=1", "ep=dev-2")),
            server.local_address,
            timeout=10,
        )
    assert ok.code == Code.CREATED
    assert bad.code == Code.BAD_REQUEST
    assert bad.payload == b"Endpoint Client Name does not match with CN field of X.509 Certificates"
    assert results == [
        "ok",
        "Endpoint Client Name does not match with CN field of X.509 Certificates",
    ]


async def test_client_recovers_after_server_restart() -> None:
    first_layer = DtlsServer(DtlsServerConfig(psk_lookup=psk_store({PSK_ID: PSK_KEY})))
    server = await Endpoint.create(handler=describe_peer, security=first_layer)
    address = server.local_address
    client_layer = psk_client(silence_rehandshake_s=0.3)
    async with await Endpoint.create(security=client_layer, params=FAST) as client:
        first = await client.request(Message(code=Code.GET, uri_path=("a",)), address, timeout=10)
        assert first.code == Code.CONTENT
        await server.close()
        # the server restarts on the same port with no memory of the session
        second_layer = DtlsServer(DtlsServerConfig(psk_lookup=psk_store({PSK_ID: PSK_KEY})))
        server = await Endpoint.create(*address, handler=describe_peer, security=second_layer)
        try:
            response = await client.request(
                Message(code=Code.GET, uri_path=("b",), payload=b"again"), address, timeout=15
            )
        finally:
            await server.close()
    assert response.payload == b"(b'dev-1-id', False)|again"
    assert client_layer.full_handshakes == 2
    assert second_layer.session_count() == 1


async def test_many_clients_concurrently(psk_server: tuple[Endpoint, DtlsServer]) -> None:
    server, layer = psk_server

    async def one(i: int) -> bytes:
        async with await Endpoint.create(security=psk_client()) as client:
            response = await client.request(
                Message(code=Code.GET, uri_path=("x",), payload=str(i).encode()),
                server.local_address,
                timeout=10,
            )
            return response.payload

    payloads = await asyncio.gather(*(one(i) for i in range(10)))
    assert payloads == [f"(b'dev-1-id', False)|{i}".encode() for i in range(10)]
    assert layer.session_count() == 10

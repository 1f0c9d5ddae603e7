"""The client registers over DTLS with a PSK from its Security object."""

from __future__ import annotations

import asyncio

import pytest

from lwm2m.client.client import LwM2MClient
from lwm2m.client.config import MODE_PSK, ClientConfig, FactoryAccount
from lwm2m.coap.codes import Code
from lwm2m.coap.dtls import DtlsServer, DtlsServerConfig, has_psk_support
from lwm2m.coap.endpoint import Endpoint, IncomingRequest
from lwm2m.coap.message import Message
from lwm2m.model.registry import ModelRegistry

pytestmark = pytest.mark.skipif(
    not has_psk_support(), reason="OpenSSL binding without PSK callbacks"
)

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")


async def test_psk_register_and_read(registry: ModelRegistry) -> None:
    seen: asyncio.Queue[IncomingRequest] = asyncio.Queue()

    async def handle(request: IncomingRequest) -> Message:
        seen.put_nowait(request)
        if request.message.code == Code.POST:
            return Message(Code.CREATED, location_path=("rd", "sec"))
        return Message(Code.DELETED)

    layer = DtlsServer(
        DtlsServerConfig(psk_lookup=lambda identity: KEY if identity == b"dev-psk" else None)
    )
    server = await Endpoint.create("127.0.0.1", 0, handler=handle, security=layer)
    host, port = server.local_address
    client = LwM2MClient(
        ClientConfig(
            "dev-psk",
            servers=(
                FactoryAccount(
                    f"coaps://{host}:{port}",
                    security_mode=MODE_PSK,
                    psk_identity=b"dev-psk",
                    psk_key=KEY,
                ),
            ),
            local_host="127.0.0.1",
        ),
        registry=registry,
    )
    try:
        await client.start()
        register = await asyncio.wait_for(seen.get(), 15)
        assert register.message.uri_path == ("rd",)
        assert (
            register.peer.identity is not None and register.peer.identity.psk_identity == b"dev-psk"
        )
        for _ in range(200):
            if client.sessions[1].registered:
                break
            await asyncio.sleep(0.01)
        read = await server.request(
            Message(Code.GET, uri_path=("3", "0", "0")), register.peer.address, timeout=10
        )
        assert read.code == Code.CONTENT and read.payload == b"lwm2m-py"
    finally:
        await client.stop()
        await server.close()


@pytest.mark.parametrize("trust", ["direct", "ca"])
async def test_certificate_mode_register(registry: ModelRegistry, trust: str) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    from lwm2m.client.config import MODE_CERTIFICATE
    from lwm2m.security.certs import make_ca, make_cert

    ca = make_ca()
    server_cert = make_cert(ca, "lwm2m server", ["127.0.0.1"])
    device = make_cert(ca, "dev-x509")
    seen: asyncio.Queue[IncomingRequest] = asyncio.Queue()

    async def handle(request: IncomingRequest) -> Message:
        seen.put_nowait(request)
        return (
            Message(Code.CREATED, location_path=("rd", "x"))
            if request.message.code == Code.POST
            else Message(Code.DELETED)
        )

    layer = DtlsServer(
        DtlsServerConfig(
            certificate_pem=server_cert.cert_pem,
            private_key_pem=server_cert.key_pem,
            trusted_ca_pems=(ca.cert_pem,),
        )
    )
    server = await Endpoint.create("127.0.0.1", 0, handler=handle, security=layer)
    host, port = server.local_address
    client = LwM2MClient(
        ClientConfig(
            "dev-x509",
            servers=(
                FactoryAccount(
                    f"coaps://{host}:{port}",
                    security_mode=MODE_CERTIFICATE,
                    client_certificate=device.der,
                    secret_key=device.key.private_bytes(
                        Encoding.DER, PrivateFormat.PKCS8, NoEncryption()
                    ),
                    server_public_key=server_cert.der if trust == "direct" else ca.der,
                ),
            ),
            local_host="127.0.0.1",
        ),
        registry=registry,
    )
    try:
        await client.start()
        register = await asyncio.wait_for(seen.get(), 15)
        assert register.peer.identity is not None
        assert register.peer.identity.certificate_der == device.der
    finally:
        await client.stop()
        await server.close()

"""Interoperability with libcoap's ``coap-client-openssl`` against our DTLS endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from libcoap_process import stop

from lwm2m.coap.codes import Code
from lwm2m.coap.dtls import DtlsClient, DtlsClientConfig, DtlsServer, DtlsServerConfig
from lwm2m.coap.endpoint import Endpoint, IncomingRequest
from lwm2m.coap.message import Message
from lwm2m.security.certs import IssuedCertificate, make_ca, make_cert
from lwm2m.security.client_config import ServerTrust
from lwm2m.security.credentials import PskCredential, X509Credential, X509Expectation
from lwm2m.security.x509 import der

COAP_CLIENT = shutil.which("coap-client-openssl")

pytestmark = pytest.mark.interop
needs_client = pytest.mark.skipif(
    COAP_CLIENT is None, reason="libcoap's coap-client-openssl is not installed"
)

PSK_IDENTITY = b"interop-id"
PSK_KEY = b"interop-secret-key"


async def echo_identity(request: IncomingRequest) -> Message:
    identity = request.peer.identity
    if identity is None:
        text = "plain"
    elif identity.psk_identity is not None:
        text = "psk:" + identity.psk_identity.decode()
    else:
        text = "cert:" + str(len(identity.certificate_der or b""))
    return Message(
        code=Code.CONTENT, payload=f"{text}|{'/'.join(request.message.uri_path)}".encode()
    )


async def run_client(*args: str, wait_s: int = 10) -> tuple[int, str, str]:
    assert COAP_CLIENT is not None
    process = await asyncio.create_subprocess_exec(
        COAP_CLIENT,
        "-B",
        str(wait_s),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, stdout.decode(errors="replace"), stderr.decode(errors="replace")


@pytest.fixture
async def psk_endpoint() -> AsyncIterator[tuple[Endpoint, DtlsServer]]:
    layer = DtlsServer(DtlsServerConfig(psk_lookup={PSK_IDENTITY: PSK_KEY}.get))
    endpoint = await Endpoint.create(handler=echo_identity, security=layer)
    yield endpoint, layer
    await endpoint.close()


@needs_client
async def test_libcoap_psk_client(psk_endpoint: tuple[Endpoint, DtlsServer]) -> None:
    endpoint, _layer = psk_endpoint
    host, port = endpoint.local_address
    rc, out, err = await run_client(
        "-m",
        "get",
        "-u",
        PSK_IDENTITY.decode(),
        "-k",
        PSK_KEY.decode(),
        f"coaps://{host}:{port}/3/0/0",
    )
    assert rc == 0, err
    assert out.strip() == "psk:interop-id|3/0/0"


@needs_client
async def test_libcoap_psk_client_with_wrong_key_is_refused(
    psk_endpoint: tuple[Endpoint, DtlsServer],
) -> None:
    endpoint, layer = psk_endpoint
    host, port = endpoint.local_address
    _rc, out, _err = await run_client(
        "-m",
        "get",
        "-u",
        PSK_IDENTITY.decode(),
        "-k",
        "wrong-key",
        f"coaps://{host}:{port}/3/0/0",
        wait_s=2,
    )
    assert "psk:" not in out
    assert layer.established_addresses() == []


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("pki")
    ca = make_ca("interop CA")
    server = make_cert(ca, "localhost", ["localhost", "127.0.0.1"])
    device = make_cert(ca, "1:interop-device")
    files: dict[str, Path] = {}

    def write(name: str, issued: IssuedCertificate) -> None:
        files[name] = directory / f"{name}.pem"
        files[name].write_bytes(issued.cert_pem)
        files[f"{name}-key"] = directory / f"{name}-key.pem"
        files[f"{name}-key"].write_bytes(issued.key_pem)

    write("ca", ca)
    write("server", server)
    write("device", device)
    stranger_ca = make_ca("stranger CA")
    write("stranger", make_cert(stranger_ca, "1:stranger"))
    return files


@pytest.fixture
async def pki_endpoint(pki: dict[str, Path]) -> AsyncIterator[Endpoint]:
    layer = DtlsServer(
        DtlsServerConfig(
            certificate_pem=pki["server"].read_bytes(),
            private_key_pem=pki["server-key"].read_bytes(),
            trusted_ca_pems=(pki["ca"].read_bytes(),),
        )
    )
    endpoint = await Endpoint.create(handler=echo_identity, security=layer)
    yield endpoint
    await endpoint.close()


@needs_client
async def test_libcoap_pki_client(pki: dict[str, Path], pki_endpoint: Endpoint) -> None:
    host, port = pki_endpoint.local_address
    rc, out, err = await run_client(
        "-m",
        "get",
        "-c",
        str(pki["device"]),
        "-j",
        str(pki["device-key"]),
        "-R",
        str(pki["ca"]),
        f"coaps://{host}:{port}/rd",
    )
    assert rc == 0, err
    assert out.strip() == f"cert:{len(der(pki['device'].read_bytes()))}|rd"


@needs_client
async def test_libcoap_pki_client_from_an_unknown_ca_is_refused(
    pki: dict[str, Path], pki_endpoint: Endpoint
) -> None:
    host, port = pki_endpoint.local_address
    _rc, out, _err = await run_client(
        "-m",
        "get",
        "-c",
        str(pki["stranger"]),
        "-j",
        str(pki["stranger-key"]),
        "-R",
        str(pki["ca"]),
        f"coaps://{host}:{port}/rd",
    )
    assert "cert:" not in out


# --------------------------------------------------------------------- our client, libcoap's server

COAP_SERVER = shutil.which("coap-server-openssl")
needs_server = pytest.mark.skipif(
    COAP_SERVER is None, reason="libcoap's coap-server-openssl is not installed"
)


def free_port_pair() -> int:
    """A UDP port p with p+1 free too (libcoap listens for coaps on port+1)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free UDP port pair")


@contextlib.asynccontextmanager
async def libcoap_server(*args: str) -> AsyncIterator[tuple[str, int]]:
    assert COAP_SERVER is not None
    port = free_port_pair()
    process = await asyncio.create_subprocess_exec(
        COAP_SERVER,
        "-A",
        "127.0.0.1",
        "-p",
        str(port),
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        # Our ClientHello is retransmitted by the DTLS timer until the server is up.
        yield ("127.0.0.1", port + 1)
    finally:
        await stop(process)


@needs_server
async def test_our_psk_client_against_libcoap_server() -> None:
    layer = DtlsClient(DtlsClientConfig(psk=PskCredential(b"any-identity", b"libcoap-key")))
    async with (
        libcoap_server("-k", "libcoap-key") as address,
        await Endpoint.create(security=layer) as client,
    ):
        response = await client.request(Message(code=Code.GET), address, timeout=20)
    assert response.code == Code.CONTENT
    assert b"libcoap" in response.payload


@needs_server
async def test_our_certificate_client_against_libcoap_server(pki: dict[str, Path]) -> None:
    layer = DtlsClient(
        DtlsClientConfig(
            certificate=X509Credential(pki["device"].read_bytes(), pki["device-key"].read_bytes()),
            server_trust=ServerTrust(X509Expectation(ca_pems=(pki["ca"].read_bytes(),))),
            server_host="localhost",
        )
    )
    async with (
        libcoap_server(
            "-c", str(pki["server"]), "-j", str(pki["server-key"]), "-R", str(pki["ca"])
        ) as address,
        await Endpoint.create(security=layer) as client,
    ):
        response = await client.request(Message(code=Code.GET), address, timeout=20)
    assert response.code == Code.CONTENT
    identity = layer.peer_identity(address)
    assert identity is not None and identity.certificate_der == der(pki["server"].read_bytes())

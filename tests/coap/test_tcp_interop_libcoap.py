"""Interop over coap+tcp with libcoap 4.3 (Debian libcoap3-bin): both directions.

``coap-client-notls`` exits 0 even on errors, so what it printed is checked.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from libcoap_process import start_server, stop

from lwm2m.coap.codes import Code
from lwm2m.coap.endpoint import IncomingRequest
from lwm2m.coap.message import Message
from lwm2m.coap.peer import Peer
from lwm2m.coap.tcp_connection import TcpConfig
from lwm2m.coap.tcp_transport import NotConnected, StreamSecurity, TcpEndpoint

SERVER_BIN = shutil.which("coap-server-notls")
CLIENT_BIN = shutil.which("coap-client-notls")

pytestmark = pytest.mark.interop

needs_server = pytest.mark.skipif(SERVER_BIN is None, reason="coap-server-notls not installed")
needs_client = pytest.mark.skipif(CLIENT_BIN is None, reason="coap-client-notls not installed")

TIMEOUT = 10.0
BIG = bytes(range(32, 127)) * 40  # 3800 bytes


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def run_client(*args: str) -> str:
    assert CLIENT_BIN is not None
    proc = await asyncio.create_subprocess_exec(
        CLIENT_BIN,
        "-B",
        "5",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return out.decode(errors="replace")


@needs_client
async def test_libcoap_client_registers_and_reads_over_tcp() -> None:
    got: list[Message] = []

    async def handler(request: IncomingRequest) -> Message:
        got.append(request.message)
        if request.message.code == Code.POST:
            return Message(Code.CREATED, location_path=("rd", "5a3f"))
        return Message(Code.CONTENT, content_format=0, payload=b"Open Mobile Alliance")

    async with await TcpEndpoint.listen("127.0.0.1", 0, handler=handler) as server:
        port = server.local_address[1]
        out = await run_client(
            "-m", "post", "-t", "40", "-e", "</1/0>,</3/0>",
            f"coap+tcp://127.0.0.1:{port}/rd?ep=libcoap&lt=60&b=T",
        )  # fmt: skip
        assert "WARN" not in out and "ERR" not in out, out
        out = await run_client(f"coap+tcp://127.0.0.1:{port}/3/0/0")
        assert "Open Mobile Alliance" in out, out
    assert got[0].code == Code.POST and got[0].uri_path == ("rd",)
    assert got[0].query() == {"ep": "libcoap", "lt": "60", "b": "T"}
    assert got[0].payload == b"</1/0>,</3/0>"
    assert got[1].code == Code.GET and got[1].uri_path == ("3", "0", "0")


@needs_client
async def test_libcoap_client_reads_a_large_body_block_wise() -> None:
    async def handler(request: IncomingRequest) -> Message:
        return Message(Code.CONTENT, payload=BIG)

    # We accept big frames but libcoap is told to take at most 1152 (-X): we slice with Block2.
    async with await TcpEndpoint.listen("127.0.0.1", 0, handler=handler) as server:
        port = server.local_address[1]
        out = await run_client("-X", "1152", f"coap+tcp://127.0.0.1:{port}/big")
        assert BIG.decode() in out, out[-500:]


@pytest.fixture(params=[None, 1152], ids=["big-frames", "max-1152"])
async def libcoap_tcp_server(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, int]]:
    """libcoap's server over TCP; with -X 1152 our bodies must go in Block1/Block2 blocks."""
    assert SERVER_BIN is not None
    server_bin = SERVER_BIN
    limit = [] if request.param is None else ["-X", str(request.param)]

    def command(port: int) -> list[str]:
        return [server_bin, "-A", "127.0.0.1", "-p", str(port), *limit]

    async def ready(port: int) -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return False
        writer.close()
        return True

    proc, port = await start_server(command, free_tcp_port, ready, deadline_s=TIMEOUT)
    try:
        yield ("127.0.0.1", port)
    finally:
        await stop(proc)


@needs_server
async def test_our_client_against_libcoap_server_over_tcp(
    libcoap_tcp_server: tuple[str, int], request: pytest.FixtureRequest
) -> None:
    async with TcpEndpoint.connector() as client:
        core = await client.request(
            Message(Code.GET, uri_path=(".well-known", "core")), libcoap_tcp_server
        )
        assert core.code == Code.CONTENT and b"</time>" in core.payload
        blocks: list[Message] = []
        client.add_message_tracer(
            lambda direction, msg, _a: blocks.append(msg) if msg.block1 is not None else None
        )
        put = await client.request(
            Message(Code.PUT, uri_path=("example_data",), payload=BIG), libcoap_tcp_server
        )
        # With -X 1152 libcoap's CSM makes us send the body in Block1 blocks; else in one frame.
        assert bool(blocks) == (request.node.callspec.params["libcoap_tcp_server"] == 1152)
        assert put.code in (Code.CREATED, Code.CHANGED)
        got = await client.request(
            Message(Code.GET, uri_path=("example_data",)), libcoap_tcp_server
        )
        assert got.code == Code.CONTENT and got.payload == BIG
        assert await client.ping(libcoap_tcp_server, timeout=TIMEOUT)


@needs_server
async def test_observe_libcoap_time_over_tcp(libcoap_tcp_server: tuple[str, int]) -> None:
    async with TcpEndpoint.connector(config=TcpConfig(keepalive_s=None)) as client:
        with pytest.raises(NotConnected):  # observe() needs an open connection
            client.observe(Message(Code.GET, uri_path=("time",)), libcoap_tcp_server)
    async with TcpEndpoint.connector() as client:
        await client.request(Message(Code.GET, uri_path=("time",)), libcoap_tcp_server)
        obs = client.observe(Message(Code.GET, uri_path=("time",)), libcoap_tcp_server)
        first = await asyncio.wait_for(obs.first(), TIMEOUT)
        assert first.code == Code.CONTENT and first.observe is not None
        async with asyncio.timeout(TIMEOUT):
            async for note in obs:
                assert note.code == Code.CONTENT and note.payload
                break
        await obs.cancel(timeout=TIMEOUT)


TLS_CLIENT_BIN = shutil.which("coap-client-openssl")
needs_tls_client = pytest.mark.skipif(
    TLS_CLIENT_BIN is None, reason="coap-client-openssl not installed"
)


async def run_tls_client(*args: str) -> str:
    assert TLS_CLIENT_BIN is not None
    proc = await asyncio.create_subprocess_exec(
        TLS_CLIENT_BIN,
        "-B",
        "5",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return out.decode(errors="replace")


async def _tls_server(security: StreamSecurity, peers: list[Peer]) -> TcpEndpoint:
    async def handler(request: IncomingRequest) -> Message:
        peers.append(request.peer)
        return Message(Code.CONTENT, payload=b"over-tls")

    return await TcpEndpoint.listen("127.0.0.1", 0, handler=handler, security=security)


@needs_tls_client
async def test_libcoap_client_over_tls_with_psk() -> None:
    from lwm2m.coap.dtls import DtlsServerConfig
    from lwm2m.coap.peer import PeerIdentity
    from lwm2m.coap.tls import TlsServer

    keys = {b"libcoap-id": b"secret-psk-key-1"}
    peers: list[Peer] = []
    server = await _tls_server(TlsServer(DtlsServerConfig(psk_lookup=keys.get)), peers)
    async with server:
        port = server.local_address[1]
        out = await run_tls_client(
            "-u", "libcoap-id", "-k", "secret-psk-key-1", f"coaps+tcp://127.0.0.1:{port}/3/0/0"
        )
        assert "over-tls" in out, out
    (peer,) = peers
    assert peer.identity == PeerIdentity(psk_identity=b"libcoap-id")


@needs_tls_client
async def test_libcoap_client_over_tls_with_certificates(tmp_path: Path) -> None:
    from lwm2m.coap.dtls import DtlsServerConfig
    from lwm2m.coap.peer import PeerIdentity
    from lwm2m.coap.tls import TlsServer
    from lwm2m.security.certs import make_ca, make_cert

    ca = make_ca("libcoap tls root")
    server_cert = make_cert(ca, "localhost", ["localhost", "127.0.0.1"])
    device = make_cert(ca, "1:libcoap-dev")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    (tmp_path / "dev.pem").write_bytes(device.cert_pem)
    (tmp_path / "dev.key").write_bytes(device.key_pem)
    peers: list[Peer] = []
    security = TlsServer(
        DtlsServerConfig(
            certificate_pem=server_cert.cert_pem,
            private_key_pem=server_cert.key_pem,
            trusted_ca_pems=(ca.cert_pem,),
        )
    )
    server = await _tls_server(security, peers)
    async with server:
        port = server.local_address[1]
        out = await run_tls_client(
            "-c", str(tmp_path / "dev.pem"),
            "-j", str(tmp_path / "dev.key"),
            "-C", str(tmp_path / "ca.pem"),
            f"coaps+tcp://127.0.0.1:{port}/3/0/0",
        )  # fmt: skip
        assert "over-tls" in out, out
    (peer,) = peers
    assert peer.identity == PeerIdentity(certificate_der=device.der)

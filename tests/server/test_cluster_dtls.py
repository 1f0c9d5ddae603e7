"""DTLS sessions resume across server nodes through ticket keys shared in Redis (issue 12).

A real redis-server (the ``redis_url`` fixture of conftest); the nodes are DTLS
server layers on their own UDP sockets, each with its own Redis connection and
its own :class:`RedisTicketKeys`. A relay stands in for the load balancer: the
client always sends to the relay, which forwards to whichever node is alive.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path as FsPath

import pytest

from lwm2m.coap.dtls import (
    DtlsClient,
    DtlsClientConfig,
    DtlsServer,
    DtlsServerConfig,
    HandshakeCompleted,
)
from lwm2m.coap.dtls_binding import ticket_keys_supported
from lwm2m.coap.dtls_tickets import TicketKey
from lwm2m.coap.peer import Address, Peer, PeerIdentity
from lwm2m.security.certs import make_ca, make_cert
from lwm2m.security.client_config import ServerTrust
from lwm2m.security.credentials import PskCredential, X509Credential, X509Expectation
from lwm2m.stores import StoreError, open_stores
from lwm2m.stores.redis import RedisConnection, RedisStores
from lwm2m.stores.redis_ticket_keys import RedisTicketKeys

sys.path.insert(0, str(FsPath(__file__).parent.parent / "coap"))
from test_dtls_helpers import UdpHarness, next_event_of

pytestmark = pytest.mark.skipif(
    not ticket_keys_supported(), reason="this OpenSSL binding cannot set session-ticket keys"
)

PSK_ID = b"cluster-dev"
PSK_KEY = bytes(range(16))
ROTATION_S = 3600.0


class WallClock:
    def __init__(self) -> None:
        self.now = 1_000_000 * ROTATION_S + 10.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def connections(
    url: str, tmp_path: FsPath, *names: str
) -> AsyncIterator[list[RedisConnection]]:
    opened = []
    try:
        for name in names:
            stores = await open_stores(url, tmp_path / name, node_id=name)
            assert isinstance(stores, RedisStores)
            opened.append(stores)
        yield [stores.redis for stores in opened]
    finally:
        for stores in opened:
            await stores.close()


async def test_nodes_share_the_current_key_and_accept_the_previous_one_for_one_rotation(
    redis_url: str,
    tmp_path: FsPath,
) -> None:
    clock = WallClock()
    async with connections(redis_url, tmp_path, "a", "b") as (ra, rb):
        a = RedisTicketKeys(ra, rotation_s=ROTATION_S, clock=clock)
        b = RedisTicketKeys(rb, rotation_s=ROTATION_S, clock=clock)
        # Both create the first key at once: SET NX keeps one.
        await asyncio.gather(a.refresh(), b.refresh())
        [first] = a.ticket_keys()
        assert b.ticket_keys() == (first,)
        clock.now += ROTATION_S
        await a.refresh()
        await b.refresh()
        second = a.ticket_keys()[0]
        assert second != first
        assert a.ticket_keys() == b.ticket_keys() == (second, first)
        clock.now += ROTATION_S
        await b.refresh()
        assert b.ticket_keys()[1:] == (second,)
        assert first not in b.ticket_keys()
        # A node whose clock runs behind accepts the key its peers already seal with.
        behind = RedisTicketKeys(ra, rotation_s=ROTATION_S, clock=lambda: clock.now - ROTATION_S)
        await behind.refresh()
        assert behind.ticket_keys() == (second, b.ticket_keys()[0], first)


async def test_a_malformed_key_in_redis_is_ignored_and_never_logged(
    redis_url: str,
    tmp_path: FsPath,
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = WallClock()
    async with connections(redis_url, tmp_path, "a") as (ra,):
        keys = RedisTicketKeys(ra, rotation_s=ROTATION_S, clock=clock)
        generation = keys.generation()
        secret = "ab" * 70  # 140 hex digits: not a key
        await ra.client.set(ra.key(f"dtls:ticket-key:{generation - 1}"), secret)
        await ra.client.set(ra.key(f"dtls:ticket-key:{generation + 1}"), "not hex at all")
        with caplog.at_level(logging.ERROR):
            await keys.refresh()
        assert len(keys.ticket_keys()) == 1
        assert "malformed DTLS ticket key" in caplog.text
        assert secret not in caplog.text
        assert keys.ticket_keys()[0].material.hex() not in caplog.text


class Flaky(RedisConnection):
    """A connection the test can cut (as a Redis restart would)."""

    down = False

    async def run(self, *commands: tuple[str, ...]) -> list[object]:
        if self.down:
            raise StoreError("Redis: connection refused")
        return await super().run(*commands)


async def test_keys_outlive_a_redis_outage_only_until_they_age_out(
    redis_url: str,
    tmp_path: FsPath,
) -> None:
    clock = WallClock()
    async with connections(redis_url, tmp_path, "a") as (ra,):
        flaky = Flaky(ra.client, ra.prefix, ra.error)
        keys = RedisTicketKeys(flaky, rotation_s=ROTATION_S, clock=clock)
        await keys.refresh()
        held = keys.ticket_keys()
        flaky.down = True
        with pytest.raises(StoreError):
            await keys.refresh()
        assert keys.ticket_keys() == held
        clock.now += 2 * ROTATION_S
        with pytest.raises(StoreError):
            await keys.refresh()
        assert keys.ticket_keys() == ()


class Relay(asyncio.DatagramProtocol):
    """The load balancer: one client, its datagrams to ``backend``, the answers back."""

    def __init__(self) -> None:
        self.backend: Address | None = None
        self.client: tuple[str, int] | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.upstream: asyncio.DatagramTransport | None = None

    async def open(self) -> Address:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=("127.0.0.1", 0)
        )
        relay = self

        class Upstream(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
                if relay.transport is not None and relay.client is not None:
                    relay.transport.sendto(data, relay.client)

        self.upstream, _ = await loop.create_datagram_endpoint(
            Upstream, local_addr=("127.0.0.1", 0)
        )
        host, port = self.transport.get_extra_info("sockname")[:2]
        return (host, port)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self.client = (str(addr[0]), int(str(addr[1])))
        if self.upstream is not None and self.backend is not None:
            self.upstream.sendto(data, self.backend)

    def close(self) -> None:
        for transport in (self.transport, self.upstream):
            if transport is not None:
                transport.close()


async def _exchange(client: UdpHarness, node: UdpHarness, relay: Address, text: bytes) -> Peer:
    """The client sends ``text``; the node must receive it; returns who the node says sent it."""
    client.send(text, relay)
    while True:
        payload, peer = await asyncio.wait_for(node.received.get(), 10)
        if payload == text:
            return peer


async def _move(
    client: DtlsClient,
    client_io: UdpHarness,
    relay: Relay,
    relay_address: Address,
    nodes: list[UdpHarness],
    credential: PeerIdentity,
) -> list[bool | None]:
    """Handshake with each node in turn through the relay; whether each session resumed."""
    resumed: list[bool | None] = []
    for number, node in enumerate(nodes):
        relay.backend = node.address
        client.reset(relay_address)
        peer = await _exchange(client_io, node, relay_address, b"message %d" % number)
        assert peer.identity == credential
        await next_event_of(node, HandshakeCompleted)
        resumed.append(node.layer.session_resumed(peer.address))  # type: ignore[attr-defined]
    return resumed


@asynccontextmanager
async def _cluster(
    url: str, tmp_path: FsPath, config: DtlsServerConfig, share: bool
) -> AsyncIterator[tuple[Relay, Address, list[UdpHarness]]]:
    async with connections(url, tmp_path, "a", "b") as (ra, rb):
        nodes: list[UdpHarness] = []
        relay = Relay()
        try:
            for redis in (ra, rb):
                keys = RedisTicketKeys(redis) if share else None
                if keys is not None:
                    await keys.refresh()
                layer = DtlsServer(
                    DtlsServerConfig(**{**_fields(config), "ticket_keys": keys})  # type: ignore[arg-type]
                )
                nodes.append(await UdpHarness.create(layer))
            yield relay, await relay.open(), nodes
        finally:
            relay.close()
            for node in nodes:
                node.close()


def _fields(config: DtlsServerConfig) -> dict[str, object]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


@pytest.mark.parametrize("share", [True, False], ids=["shared keys", "node-local keys"])
async def test_psk_session_resumes_on_the_other_node_only_with_shared_keys(
    redis_url: str,
    tmp_path: FsPath,
    share: bool,
) -> None:
    config = DtlsServerConfig(psk_lookup={PSK_ID: PSK_KEY}.get)
    async with _cluster(redis_url, tmp_path, config, share) as (relay, address, nodes):
        client = DtlsClient(DtlsClientConfig(psk=PskCredential(PSK_ID, PSK_KEY)))
        client_io = await UdpHarness.create(client)
        try:
            resumed = await _move(
                client, client_io, relay, address, nodes, PeerIdentity(psk_identity=PSK_ID)
            )
        finally:
            client_io.close()
    assert resumed == [False, share]
    assert client.resumed_handshakes == (1 if share else 0)


async def test_certificate_session_resumes_on_the_other_node_with_its_certificate(
    redis_url: str,
    tmp_path: FsPath,
) -> None:
    ca = make_ca("cluster root")
    server_cert = make_cert(ca, "lwm2m.example.test", ["localhost"])
    device = make_cert(ca, "1:cluster-dev")
    config = DtlsServerConfig(
        certificate_pem=server_cert.cert_pem,
        private_key_pem=server_cert.key_pem,
        trusted_ca_pems=(ca.cert_pem,),
    )
    async with _cluster(redis_url, tmp_path, config, True) as (relay, address, nodes):
        client = DtlsClient(
            DtlsClientConfig(
                certificate=X509Credential(device.cert_pem, device.key_pem, ()),
                server_trust=ServerTrust(X509Expectation(ca_pems=(ca.cert_pem,))),
                server_host="localhost",
            )
        )
        client_io = await UdpHarness.create(client)
        try:
            resumed = await _move(
                client, client_io, relay, address, nodes, PeerIdentity(certificate_der=device.der)
            )
        finally:
            client_io.close()
    assert resumed == [False, True]


def test_ticket_key_is_redacted() -> None:
    assert "ab" * 8 not in repr(TicketKey(bytes.fromhex("ab" * 80)))


def _free_udp_port() -> int:
    """A UDP port free right now (``--coaps-port 0`` means no DTLS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _start_node(
    redis: str, tmp_path: FsPath, name: str
) -> tuple[asyncio.subprocess.Process, Address]:
    security = tmp_path / "security.json"
    entry = {"endpoint": "cluster-dev", "psk": {"identity": PSK_ID.decode(), "key": PSK_KEY.hex()}}
    security.write_text(json.dumps([entry]))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "lwm2m", "server", "--store", redis, "--node-id", name),
        *("--coap-port", "0", "--coaps-port", str(_free_udp_port()), "--http-port", "0"),
        "--no-bootstrap",
        *("--security", str(security), "--data", str(tmp_path / name)),
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    while True:
        raw = await asyncio.wait_for(proc.stderr.readline(), 30)
        assert raw, f"node {name} exited"
        match = re.search(r"coaps://127\.0\.0\.1:(\d+)", raw.decode())
        if match:
            return proc, ("127.0.0.1", int(match.group(1)))


async def test_server_command_on_a_redis_store_shares_ticket_keys(
    redis_url: str,
    tmp_path: FsPath,
) -> None:
    """``lwm2m server --store redis://`` wires the Redis ticket keys without further options."""
    procs: list[asyncio.subprocess.Process] = []
    relay = Relay()
    client = DtlsClient(DtlsClientConfig(psk=PskCredential(PSK_ID, PSK_KEY)))
    client_io = await UdpHarness.create(client)
    try:
        backends = []
        for name in ("a", "b"):
            proc, address = await _start_node(redis_url, tmp_path, name)
            procs.append(proc)
            backends.append(address)
        relay_address = await relay.open()
        resumed = []
        for backend in backends:
            relay.backend = backend
            client.reset(relay_address)
            client_io.send(b"\x40\x00\x12\x34", relay_address)  # a CoAP ping
            await next_event_of(client_io, HandshakeCompleted, timeout=20)
            resumed.append(client.session_resumed(relay_address))
        assert resumed == [False, True]
    finally:
        client_io.close()
        relay.close()
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()

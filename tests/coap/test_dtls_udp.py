"""DTLS over real UDP sockets on 127.0.0.1, driven by the loop clock."""

from __future__ import annotations

import asyncio

from test_dtls_helpers import PSK_ID, PSK_KEY, UdpHarness, next_event_of, psk_store

from lwm2m.coap.dtls import (
    DtlsClient,
    DtlsClientConfig,
    DtlsServer,
    DtlsServerConfig,
    HandshakeCompleted,
)
from lwm2m.coap.peer import PeerIdentity
from lwm2m.security.credentials import PskCredential


async def make_pair() -> tuple[UdpHarness, UdpHarness]:
    server = await UdpHarness.create(
        DtlsServer(DtlsServerConfig(psk_lookup=psk_store({PSK_ID: PSK_KEY})))
    )
    client = await UdpHarness.create(
        DtlsClient(DtlsClientConfig(psk=PskCredential(PSK_ID, PSK_KEY)))
    )
    return server, client


async def test_psk_exchange_over_udp() -> None:
    server, client = await make_pair()
    try:
        server.on_plaintext = lambda data, peer: server.send(b"echo:" + data, peer.address)
        client.send(b"ping", server.address)
        data, peer = await asyncio.wait_for(server.received.get(), 10)
        assert data == b"ping"
        assert peer.address == client.address
        assert peer.identity == PeerIdentity(psk_identity=PSK_ID)
        reply, _ = await asyncio.wait_for(client.received.get(), 10)
        assert reply == b"echo:ping"
    finally:
        server.close()
        client.close()


async def test_lost_flight_is_retransmitted_by_the_dtls_timer() -> None:
    server, client = await make_pair()
    lost: list[bytes] = []

    def lose_first_server_flight(data: bytes) -> bool:
        # Lose the first datagram of the ServerHello flight (after the HelloVerifyRequest).
        if not lost and data[0] == 22 and data[13] == 2:
            lost.append(data)
            return True
        return False

    server.drop_outgoing = lose_first_server_flight
    try:
        client.send(b"after a loss", server.address)
        data, _ = await asyncio.wait_for(server.received.get(), 15)
        assert data == b"after a loss"
        assert lost  # the flight really was lost once
        server_hellos = [d for d in server.sent if d[0] == 22 and len(d) > 13 and d[13] == 2]
        assert len(server_hellos) >= 2  # and sent again
        assert isinstance(await next_event_of(client, HandshakeCompleted), HandshakeCompleted)
    finally:
        server.close()
        client.close()


async def test_resumption_over_udp() -> None:
    server, client = await make_pair()
    try:
        client.send(b"one", server.address)
        await asyncio.wait_for(server.received.get(), 10)
        assert isinstance(client.layer, DtlsClient)
        client.layer.reset(server.address)
        client.send(b"two", server.address)
        data, peer = await asyncio.wait_for(server.received.get(), 10)
        assert data == b"two"
        assert peer.identity == PeerIdentity(psk_identity=PSK_ID)
        assert client.layer.resumed_handshakes == 1
    finally:
        server.close()
        client.close()

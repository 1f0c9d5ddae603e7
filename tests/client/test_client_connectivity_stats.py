"""Connectivity Statistics (7): the bytes really sent and received, counted at the socket.

The peer counts every datagram it sends to and receives from the client; the
client's figures must be the same, byte for byte, although they include a
retransmitted Register, duplicate requests answered twice, and (over DTLS)
the handshake and record overhead that the CoAP messages never show.
"""

from __future__ import annotations

import asyncio

import pytest
from client_harness import until
from client_rawserver import Address, RawServer

from lwm2m.client.client import LwM2MClient
from lwm2m.client.config import MODE_PSK, ClientConfig, FactoryAccount
from lwm2m.client.objects.connectivity import ConnectivityStatistics
from lwm2m.coap import codec
from lwm2m.coap.codes import Code
from lwm2m.coap.dtls import DtlsServer, DtlsServerConfig, has_psk_support
from lwm2m.coap.endpoint import Endpoint, IncomingRequest
from lwm2m.coap.message import Message
from lwm2m.model.registry import ModelRegistry

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")


class CountingServer(RawServer):
    """A raw server that also counts the bytes it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []

    def send(self, message: Message, address: Address) -> None:
        assert self.transport is not None
        data = codec.encode(message)
        self.sent.append(data)
        self.transport.sendto(data, address)


def statistics(client: LwM2MClient) -> ConnectivityStatistics:
    instance = client.instance(7, 0)
    assert isinstance(instance, ConnectivityStatistics)
    return instance


async def test_plain_udp_counts_retransmissions_and_duplicates(registry: ModelRegistry) -> None:
    server = await CountingServer().start()
    client = LwM2MClient(
        ClientConfig("dev-stats", servers=(FactoryAccount(server.uri),), local_host="127.0.0.1"),
        registry=registry,
    )
    stats = statistics(client)
    stats.start("")  # collect from the first datagram on
    try:
        await client.start()
        first, _ = await server.next_request()
        assert first.uri_path == ("rd",)
        # no answer: the client retransmits the Register (same message ID)
        again, address = await server.next_request(timeout=15)
        assert again.mid == first.mid and again.uri_path == ("rd",)
        server.reply(again, address, Code.CREATED, location_path=("rd", "s"))
        await until(lambda: client.sessions[1].registered)
        for _ in range(8):
            read = await server.request(Message(Code.GET, uri_path=("3", "0")), address)
            assert read.code == Code.CONTENT
            # the same request again, as a retransmission: answered again from the cache
            duplicate, answered = server.sent[-1], len(server.raw) + 1
            server.sent.append(duplicate)
            assert server.transport is not None
            server.transport.sendto(duplicate, address)
            await until(lambda n=answered: len(server.raw) == n)
        await until(lambda: client.stats.traffic.datagrams_received == len(server.sent))
        assert len(server.raw) == 2 + 16  # two Registers, sixteen responses
        assert client.stats.traffic.datagrams_sent == len(server.raw)
        received_by_server = sum(len(d) for d, _ in server.raw)
        sent_by_server = sum(len(d) for d in server.sent)
        assert client.stats.bytes_sent == received_by_server
        assert client.stats.bytes_received == sent_by_server
        assert received_by_server > 1024  # so that the kilobyte figure is not 0
        assert await stats.read(2) == received_by_server // 1024  # Tx Data
        assert await stats.read(3) == sent_by_server // 1024  # Rx Data
        assert await stats.read(5) == (received_by_server + sent_by_server) // (
            len(server.raw) + len(server.sent)
        )
    finally:
        await client.stop(deregister=False)
        server.close()


@pytest.mark.skipif(not has_psk_support(), reason="OpenSSL binding without PSK callbacks")
async def test_dtls_counts_handshake_and_record_overhead(registry: ModelRegistry) -> None:
    registered = asyncio.Event()

    async def handle(request: IncomingRequest) -> Message:
        if request.message.code == Code.POST:
            registered.set()
            return Message(Code.CREATED, location_path=("rd", "sec"))
        return Message(Code.DELETED)

    layer = DtlsServer(DtlsServerConfig(psk_lookup=lambda i: KEY if i == b"dev-psk" else None))
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
    stats = statistics(client)
    stats.start("")
    coap_bytes = 0

    def trace(direction: str, message: Message, address: Address) -> None:
        nonlocal coap_bytes
        coap_bytes += len(codec.encode(message))

    server.add_message_tracer(trace)
    try:
        await client.start()
        await asyncio.wait_for(registered.wait(), 15)
        await until(lambda: client.sessions[1].registered)
        address = next(iter(layer.established_addresses()))
        for _ in range(6):
            read = await server.request(Message(Code.GET, uri_path=("3", "0")), address, timeout=10)
            assert read.code == Code.CONTENT
        traffic = client.stats.traffic
        await until(lambda: traffic.datagrams_received == server.traffic.datagrams_sent)
        assert traffic.datagrams_sent == server.traffic.datagrams_received
        assert client.stats.bytes_sent == server.traffic.bytes_received
        assert client.stats.bytes_received == server.traffic.bytes_sent
        # handshake flights and record headers come on top of the CoAP messages
        assert client.stats.bytes_sent + client.stats.bytes_received > coap_bytes
        assert await stats.read(2) == server.traffic.bytes_received // 1024
        assert await stats.read(3) == server.traffic.bytes_sent // 1024
        assert await stats.read(2) >= 1  # Tx Data is not a rounded-away 0
    finally:
        await client.stop(deregister=False)
        await server.close()

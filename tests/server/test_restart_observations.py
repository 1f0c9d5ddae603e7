"""A restarted server accepts the notifications of the observations it persisted.

The first server observes; it stops; a second one on the same SQLite data
directory and port receives the client's next notification, whose token no
endpoint of the new process has ever seen.  It must ACK it (an RST would
make the client drop the observation), publish it, and keep the observation
working (ordering, cancel) without waiting for the client's next Update.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

import pytest
from server_helpers import RawPeer, register_message

from lwm2m.coap.codec import decode, encode
from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.endpoint import Endpoint, ServerObservation
from lwm2m.coap.message import Message
from lwm2m.coap.peer import Peer, PeerIdentity
from lwm2m.formats.media import ContentFormat
from lwm2m.model.path import Path
from lwm2m.security.credentials import PskCredential, SecurityEntry
from lwm2m.server import LwM2MServer, NotificationEvent, ServerConfig
from lwm2m.stores import open_stores
from lwm2m.stores.base import Stores
from lwm2m.stores.records import ObservationRecord

TEXT = int(ContentFormat.TEXT)


@dataclass(frozen=True)
class FakeRequest:
    """What the endpoint hands the server's request handler."""

    message: Message
    peer: Peer


@dataclass
class Restartable:
    """Runs servers one after the other on one data directory and one port."""

    data: FsPath
    server: LwM2MServer | None = None
    stores: Stores | None = None
    port: int = 0

    async def start(self) -> LwM2MServer:
        self.stores = await open_stores("sqlite", self.data)
        self.server = LwM2MServer(
            self.stores,
            config=ServerConfig(coap_port=self.port, expiry_interval_s=3600.0, request_timeout_s=5),
        )
        await self.server.start()
        self.port = self.server.coap_address[1]
        return self.server

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None
        if self.stores is not None:
            await self.stores.close()
            self.stores = None

    async def restart(self) -> LwM2MServer:
        await self.stop()
        return await self.start()


@pytest.fixture
async def servers(tmp_path: FsPath) -> AsyncIterator[Restartable]:
    runner = Restartable(tmp_path)
    try:
        yield runner
    finally:
        await runner.stop()


class Battery:
    """A device's handler: answers /3/0/9 and keeps the observations it accepted."""

    def __init__(self) -> None:
        self.observe_requests = 0
        self.observations: list[ServerObservation] = []

    async def handle(self, request: Any) -> Message:
        msg: Message = request.message
        if msg.observe == 0:
            self.observe_requests += 1
            self.observations.append(request.start_observation())
        return Message(Code.CONTENT, payload=b"42", content_format=TEXT)


async def next_notification(events: Any) -> NotificationEvent:
    while True:
        event = await asyncio.wait_for(events.get(), 5)
        if isinstance(event, NotificationEvent):
            return event


async def test_notifications_after_restart_are_accepted_and_cancel_works(
    servers: Restartable,
) -> None:
    battery = Battery()
    device = await Endpoint.create("127.0.0.1", 0, handler=battery.handle)
    try:
        first = await servers.start()
        reply = await device.request(
            register_message(("ep=bat", "lt=3600"), b"</3/0>"), first.coap_address, timeout=5
        )
        assert reply.code == Code.CREATED
        observed = await first.observe("bat", "/3/0/9")
        record = observed.observation
        second = await servers.restart()
        assert [r.id for r in second.observations_of("bat")] == [record.id]
        (on_device,) = battery.observations

        with second.events.subscribe("bat") as events:
            # CON: notify() returns only once the server ACKed it (an RST
            # would raise ObservationCancelled and end it on the device).
            await on_device.notify(
                Message(Code.CONTENT, payload=b"43", content_format=TEXT), confirmable=True
            )
            event = await next_notification(events)
            assert not on_device.cancelled
            assert event.observation == record
            assert event.content.value == 43  # type: ignore[union-attr]
            assert event.confirmable
            # Adopted: later (NON) notifications flow like before the restart.
            await on_device.notify(Message(Code.CONTENT, payload=b"44", content_format=TEXT))
            event = await next_notification(events)
            assert event.content.value == 44  # type: ignore[union-attr]
            assert event.sequence is not None

        # The next Update does not observe again: the observation is live.
        upd = await device.request(
            Message(Code.POST, uri_path=reply.location_path), second.coap_address, timeout=5
        )
        assert upd.code == Code.CHANGED
        await second.wait_background()
        assert battery.observe_requests == 1

        # Reactive cancel: GET with Observe=1 and the old token ends it on the device.
        await second.cancel_observation("bat", record.id)
        assert on_device.cancelled and on_device.reason == "deregistered"
        assert second.observations_of("bat") == []
    finally:
        await device.close()


class RawDevice:
    """A registered client speaking exact datagrams, to see ACK vs RST."""

    def __init__(self, peer: RawPeer) -> None:
        self.peer = peer
        self.mid = 0x4000
        self.location: tuple[str, ...] = ()

    async def register(self, server: LwM2MServer, ep: str) -> None:
        reply = await self.peer.request(
            register_message((f"ep={ep}", "lt=3600"), b"</3/0>"), server.coap_address
        )
        assert reply.code == Code.CREATED
        self.location = reply.location_path

    async def accept_observe(self, server: LwM2MServer, ep: str, path: str) -> ObservationRecord:
        task = asyncio.create_task(server.observe(ep, path))
        request = await self.peer.receive_request()
        assert request.observe == 0
        self.peer.respond(
            request,
            Message(Code.CONTENT, payload=b"42", content_format=TEXT, observe=1),
            server.coap_address,
        )
        return (await task).observation

    async def notify(
        self,
        server: LwM2MServer,
        token: bytes,
        seq: int,
        payload: bytes,
        *,
        via: RawPeer | None = None,
    ) -> Message:
        """Send a CON notification; return the server's empty ACK or RST."""
        peer = via or self.peer
        self.mid += 1
        peer.send(
            Message(
                Code.CONTENT,
                MessageType.CON,
                self.mid,
                token,
                payload,
                observe=seq,
                content_format=TEXT,
            ),
            server.coap_address,
        )
        while True:
            reply = await asyncio.wait_for(peer.inbox.get(), 5)
            if reply.mid == self.mid and reply.type in (MessageType.ACK, MessageType.RST):
                return reply


async def test_unknown_token_or_other_sender_still_gets_rst(
    servers: Restartable, raw: RawPeer
) -> None:
    device = RawDevice(raw)
    first = await servers.start()
    await device.register(first, "raw")
    record = await device.accept_observe(first, "raw", "/3/0/9")
    token = bytes.fromhex(record.id)
    second = await servers.restart()
    intruder = await RawPeer.create()
    try:
        with second.events.subscribe("raw") as events:
            # Right token from another address: refused, and the observation
            # is not taken over by the intruder.
            reply = await device.notify(second, token, 5, b"66", via=intruder)
            assert reply.type == MessageType.RST
            # A token the server never handed out, from the registered address.
            reply = await device.notify(second, b"\x99" * 8, 5, b"77")
            assert reply.type == MessageType.RST
            while (early := events.get_nowait()) is not None:
                assert not isinstance(early, NotificationEvent)
            assert not second.observations.is_live(record.id)
            # The real one is accepted and published.
            reply = await device.notify(second, token, 6, b"43")
            assert (reply.type, reply.code) == (MessageType.ACK, Code.EMPTY)
            event = await next_notification(events)
            assert event.content.value == 43  # type: ignore[union-attr]
            # Freshness ordering holds for the adopted observation: an older
            # sequence number is acknowledged but not published.
            reply = await device.notify(second, token, 4, b"10")
            assert reply.type == MessageType.ACK
            reply = await device.notify(second, token, 7, b"44")
            assert reply.type == MessageType.ACK
            event = await next_notification(events)
            assert event.content.value == 44  # type: ignore[union-attr]
            assert event.sequence == 7
            # The intruder still cannot use the token.
            reply = await device.notify(second, token, 8, b"66", via=intruder)
            assert reply.type == MessageType.RST

        # Passive cancel after the restart: forgotten, the next one gets RST.
        await second.cancel_observation("raw", record.id, active=False)
        reply = await device.notify(second, token, 9, b"45")
        assert reply.type == MessageType.RST
        assert second.observations_of("raw") == []
    finally:
        intruder.close()


async def test_active_cancel_after_restart_uses_the_old_token(
    servers: Restartable, raw: RawPeer
) -> None:
    device = RawDevice(raw)
    first = await servers.start()
    await device.register(first, "raw")
    record = await device.accept_observe(first, "raw", "/3/0/9")
    token = bytes.fromhex(record.id)
    second = await servers.restart()
    reply = await device.notify(second, token, 2, b"43")
    assert reply.type == MessageType.ACK
    cancel = asyncio.create_task(second.cancel_observation("raw", record.id))
    request = await raw.receive_request()
    assert (request.code, request.token, request.observe) == (Code.GET, token, 1)
    assert request.uri_path == ("3", "0", "9")
    raw.respond(
        request, Message(Code.CONTENT, payload=b"43", content_format=TEXT), second.coap_address
    )
    await cancel
    assert second.observations_of("raw") == []
    reply = await device.notify(second, token, 3, b"44")
    assert reply.type == MessageType.RST


async def test_error_notification_after_restart_ends_the_observation(
    servers: Restartable, raw: RawPeer
) -> None:
    device = RawDevice(raw)
    first = await servers.start()
    await device.register(first, "raw")
    record = await device.accept_observe(first, "raw", "/3/0/9")
    second = await servers.restart()
    raw.send(
        Message(Code.NOT_FOUND, MessageType.CON, 0x7777, bytes.fromhex(record.id)),
        second.coap_address,
    )
    reply = await asyncio.wait_for(raw.inbox.get(), 5)
    assert (reply.type, reply.mid) == (MessageType.ACK, 0x7777)
    for _ in range(100):
        if not second.observations_of("raw"):
            break
        await asyncio.sleep(0)
    assert second.observations_of("raw") == []


async def test_dtls_identity_must_match_to_adopt(tmp_path: FsPath) -> None:
    """Over DTLS the token must come from the registered security identity too.

    The secure endpoint is stood in for by a plain one whose engine is fed
    directly with the identity a DTLS session would have proven.
    """
    stores = await open_stores("sqlite", tmp_path)
    await stores.security.put(SecurityEntry("psk-dev", psk=PskCredential(b"psk-id", b"\x11" * 16)))
    srv = LwM2MServer(stores, config=ServerConfig(coap_port=0))
    coap = await Endpoint.create("127.0.0.1", 0, handler=srv.handle)
    coaps = await Endpoint.create("127.0.0.1", 0, handler=srv.handle)
    await srv.start_with(coap, coaps)
    try:
        device = Peer(("127.0.0.1", 40000), PeerIdentity(psk_identity=b"psk-id"))
        reply = await srv.handle(FakeRequest(register_message(("ep=psk-dev",)), device))
        assert reply.code == Code.CREATED
        reg = srv.get_registration("psk-dev")
        assert reg is not None
        token = b"\x5a" * 8
        record = ObservationRecord(token.hex(), reg.id, "psk-dev", (Path.parse("/3/0/9"),))
        await stores.observations.add(record)
        mids = iter(range(1, 100))

        def answer(endpoint: Endpoint, sender: Peer, tok: bytes = token) -> MessageType:
            """Feed a CON notification as the DTLS layer would; the reply's type."""
            note = Message(
                Code.CONTENT,
                MessageType.CON,
                next(mids),
                tok,
                b"43",
                observe=3,
                content_format=TEXT,
            )
            now = asyncio.get_running_loop().time()
            engine = endpoint.engine
            engine.receive_datagram(encode(note), sender.address, now, sender.identity)
            (sent,) = engine.datagrams_to_send(now)
            assert sent[1] == sender.address
            return decode(sent[0]).type

        other = Peer(device.address, PeerIdentity(psk_identity=b"other-id"))
        assert answer(coaps, other) == MessageType.RST
        assert answer(coap, Peer(device.address)) == MessageType.RST  # DTLS client, plain UDP
        assert answer(coaps, device, b"\x01" * 8) == MessageType.RST
        assert not srv.observations.is_live(record.id)
        assert answer(coaps, device) == MessageType.ACK
        assert srv.observations.is_live(record.id)
        # Adopted on the secure endpoint only.
        assert answer(coap, Peer(device.address)) == MessageType.RST
    finally:
        await srv.stop()
        await stores.close()

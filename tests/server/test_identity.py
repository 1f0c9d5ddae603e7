"""Endpoint name vs. security identity at Register (seed 000 change 4/5, seed 002 change 7)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from server_helpers import FakeClock, register_message

from lwm2m.coap.codes import Code
from lwm2m.coap.dtls import DtlsClient, DtlsClientConfig, DtlsServerConfig
from lwm2m.coap.endpoint import Endpoint
from lwm2m.coap.message import Message
from lwm2m.coap.peer import Peer, PeerIdentity
from lwm2m.security.certs import make_ca, make_cert
from lwm2m.security.credentials import PskCredential, SecurityEntry
from lwm2m.server import LwM2MServer, ServerConfig
from lwm2m.server.registrar import X509_NAME_MISMATCH
from lwm2m.stores.memory import MemoryStores


class FakeRequest:
    def __init__(self, message: Message, peer: Peer) -> None:
        self.message = message
        self.peer = peer


@pytest.fixture
async def secured(clock: FakeClock) -> AsyncIterator[LwM2MServer]:
    stores = MemoryStores()
    await stores.security.put(SecurityEntry("psk-dev", psk=PskCredential(b"psk-id", b"\x11" * 16)))
    await stores.security.put(SecurityEntry("other", psk=PskCredential(b"other-id", b"\x22" * 16)))
    srv = LwM2MServer(stores, config=ServerConfig(coap_port=0), clock=clock)
    await srv.start()
    yield srv
    await srv.stop()


def peer(host: str = "10.0.0.1", **identity: Any) -> Peer:
    return Peer((host, 40000), PeerIdentity(**identity) if identity else None)


async def test_psk_identity_must_match_endpoint(secured: LwM2MServer) -> None:
    ok = await secured.handle(
        FakeRequest(register_message(("ep=psk-dev",)), peer(psk_identity=b"psk-id"))
    )
    assert ok.code == Code.CREATED
    bad = await secured.handle(
        FakeRequest(register_message(("ep=psk-dev",)), peer(psk_identity=b"other-id"))
    )
    assert bad.code == Code.BAD_REQUEST
    assert b"PSK identity" in bad.payload


async def test_known_endpoint_must_use_dtls(secured: LwM2MServer) -> None:
    reply = await secured.handle(FakeRequest(register_message(("ep=psk-dev",)), peer()))
    assert reply.code == Code.BAD_REQUEST


async def test_x509_cn_must_be_ept_colon_ep_or_ep() -> None:
    ca = make_ca()
    with_type = make_cert(ca, "2:IMEI:490154203237518").der
    plain = make_cert(ca, "dev-x").der
    srv = LwM2MServer(MemoryStores(), config=ServerConfig(coap_port=0))
    await srv.start()
    try:
        reply = await srv.handle(
            FakeRequest(
                register_message(("ept=2", "ep=IMEI:490154203237518")),
                peer(certificate_der=with_type),
            )
        )
        assert reply.code == Code.CREATED
        reply = await srv.handle(
            FakeRequest(register_message(("ep=dev-x",)), peer(certificate_der=plain))
        )
        assert reply.code == Code.CREATED
        reply = await srv.handle(
            FakeRequest(register_message(("ep=dev-y",)), peer(certificate_der=plain))
        )
        assert reply.code == Code.BAD_REQUEST
        assert reply.payload.decode() == X509_NAME_MISMATCH
        # Same name, another certificate: another client -> 4.09.
        other = make_cert(ca, "dev-x").der
        reply = await srv.handle(
            FakeRequest(register_message(("ep=dev-x",)), peer(certificate_der=other))
        )
        assert reply.code == Code.CONFLICT
        # The same certificate from a new address is the same client: replaced.
        reply = await srv.handle(
            FakeRequest(register_message(("ep=dev-x",)), peer("10.9.9.9", certificate_der=plain))
        )
        assert reply.code == Code.CREATED
    finally:
        await srv.stop()


async def test_update_from_another_identity_is_rejected(secured: LwM2MServer) -> None:
    reply = await secured.handle(
        FakeRequest(register_message(("ep=psk-dev",)), peer(psk_identity=b"psk-id"))
    )
    update = Message(Code.POST, uri_path=reply.location_path)
    assert (await secured.handle(FakeRequest(update, peer()))).code == Code.BAD_REQUEST
    ok = await secured.handle(FakeRequest(update, peer(psk_identity=b"psk-id")))
    assert ok.code == Code.CHANGED


async def test_register_over_real_dtls_psk(clock: FakeClock) -> None:
    stores = MemoryStores()
    credential = PskCredential(b"dtls-id", bytes(range(16)))
    await stores.security.put(SecurityEntry("dtls-dev", psk=credential))

    def lookup(identity: bytes) -> bytes | None:
        entry = stores.security.get_by_psk_identity(identity)
        return None if entry is None or entry.psk is None else entry.psk.key

    srv = LwM2MServer(
        stores,
        config=ServerConfig(coap_port=0, coaps_port=0, dtls=DtlsServerConfig(psk_lookup=lookup)),
        clock=clock,
    )
    await srv.start()

    async def answer(request: Any) -> Message:
        return Message(Code.CONTENT, payload=b"secret", content_format=0)

    client = await Endpoint.create(
        "127.0.0.1", 0, handler=answer, security=DtlsClient(DtlsClientConfig(psk=credential))
    )
    try:
        assert srv.coaps_address is not None
        reply = await client.request(
            register_message(("ep=dtls-dev",)), srv.coaps_address, timeout=10
        )
        assert reply.code == Code.CREATED
        reg = srv.get_registration("dtls-dev")
        assert reg is not None and reg.identity is not None
        assert reg.identity.psk_identity == b"dtls-id"
        # Requests to a DTLS registration go over DTLS.
        resp = await srv.read("dtls-dev", "/3/0/0", timeout=10)
        assert resp.content.value == "secret"  # type: ignore[union-attr]
        reply = await client.request(register_message(("ep=other",)), srv.coaps_address, timeout=10)
        assert reply.code == Code.BAD_REQUEST
        assert srv.counters()["dtls_handshakes_total"] == 1
        assert srv.counters()["dtls_handshake_failures_total"] == 0
    finally:
        await client.close()
        await srv.stop()


async def test_known_endpoints_only(clock: FakeClock) -> None:
    stores = MemoryStores()
    await stores.security.put(SecurityEntry("listed", psk=PskCredential(b"l-id", b"\x01" * 16)))
    srv = LwM2MServer(
        stores, config=ServerConfig(coap_port=0, known_endpoints_only=True), clock=clock
    )
    await srv.start()
    try:
        reply = await srv.handle(FakeRequest(register_message(("ep=stranger",)), peer()))
        assert reply.code == Code.BAD_REQUEST
        assert reply.payload == b"Unknown Endpoint Client Name"
        reply = await srv.handle(
            FakeRequest(register_message(("ep=listed",)), peer(psk_identity=b"l-id"))
        )
        assert reply.code == Code.CREATED
    finally:
        await srv.stop()


async def test_x509_entry_direct_and_indirect_trust() -> None:
    """An endpoint's X.509 entry narrows trust: its certificate, or its CA + names, in validity."""
    import datetime

    from lwm2m.security.credentials import X509Expectation

    ca = make_ca()
    other_ca = make_ca("other CA")
    pinned = make_cert(ca, "direct")
    stores = MemoryStores()
    await stores.security.put(
        SecurityEntry("direct", x509=X509Expectation(certificate_der=pinned.der))
    )
    await stores.security.put(
        SecurityEntry(
            "indirect", x509=X509Expectation(ca_pems=(ca.cert_pem,), expected_names=("indirect",))
        )
    )
    srv = LwM2MServer(stores, config=ServerConfig(coap_port=0))
    await srv.start()
    try:

        async def register(ep: str, der: bytes) -> Message:
            return await srv.handle(
                FakeRequest(register_message((f"ep={ep}",)), peer(certificate_der=der))
            )

        assert (await register("direct", pinned.der)).code == Code.CREATED
        # Same CN, same CA, but not the stored certificate: direct trust refuses it.
        reply = await register("direct", make_cert(ca, "direct").der)
        assert reply.code == Code.BAD_REQUEST
        assert b"does not match the stored client certificate" in reply.payload

        assert (await register("indirect", make_cert(ca, "indirect").der)).code == Code.CREATED
        reply = await register("indirect", make_cert(other_ca, "indirect").der)
        assert reply.code == Code.BAD_REQUEST
        assert b"not trusted" in reply.payload
        past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
        expired = make_cert(
            ca, "indirect", not_before=past, not_after=past + datetime.timedelta(days=1)
        )
        reply = await register("indirect", expired.der)
        assert reply.code == Code.BAD_REQUEST
    finally:
        await srv.stop()

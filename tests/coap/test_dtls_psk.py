"""PSK handshakes, data, resumption and re-handshakes between DtlsClient and DtlsServer (in memory)."""

from __future__ import annotations

import pytest
from test_dtls_helpers import CLIENT_ADDR, PSK_ID, PSK_KEY, SERVER_ADDR, Link, psk_store

from lwm2m.coap.dtls import (
    DtlsClient,
    DtlsClientConfig,
    DtlsServer,
    DtlsServerConfig,
    HandshakeCompleted,
    SessionClosed,
)
from lwm2m.coap.dtls_records import ContentType, is_client_hello
from lwm2m.coap.peer import PeerIdentity
from lwm2m.security.credentials import PskCredential


def make_link(
    client_key: bytes = PSK_KEY,
    identity: bytes = PSK_ID,
    store: dict[bytes, bytes] | None = None,
    **server_options: object,
) -> Link:
    server = DtlsServer(
        DtlsServerConfig(
            psk_lookup=psk_store(store if store is not None else {PSK_ID: PSK_KEY}),
            **server_options,  # type: ignore[arg-type]
        )
    )
    client = DtlsClient(DtlsClientConfig(psk=PskCredential(identity, client_key)))
    return Link(client=client, server=server)


def test_psk_handshake_delivers_data_both_ways_with_identity() -> None:
    link = make_link()
    link.client_send(b"first CoAP message")
    assert [p for p, _ in link.server_received] == [b"first CoAP message"]
    peer = link.server_received[0][1]
    assert peer.address == CLIENT_ADDR
    assert peer.identity == PeerIdentity(psk_identity=PSK_ID)
    assert [type(e) for e in link.server_events] == [HandshakeCompleted]
    assert [type(e) for e in link.client_events] == [HandshakeCompleted]
    link.server_send(b"response")
    assert [p for p, _ in link.client_received] == [b"response"]
    assert link.server.session_resumed(CLIENT_ADDR) is False


def test_data_queued_during_handshake_is_sent_in_order() -> None:
    link = make_link()
    link.client.send(b"one", SERVER_ADDR, 0.0)
    link.client.send(b"two", SERVER_ADDR, 0.0)
    link.client.send(b"three", SERVER_ADDR, 0.0)
    link.pump()
    assert [p for p, _ in link.server_received] == [b"one", b"two", b"three"]


def test_handshake_uses_a_cookie_exchange() -> None:
    link = make_link()
    link.client_send(b"x")
    hellos = [d for d in link.to_server if is_client_hello(d)]
    assert len(hellos) == 2  # without, then with the cookie
    assert link.server.hello_verify_sent == 1


def test_wrong_key_never_establishes_and_both_sides_give_up() -> None:
    link = make_link(client_key=b"\x99" * 16)
    link.client_send(b"never delivered")
    # DTLS silently discards the client's Finished (bad MAC): no session, no data.
    assert link.server_received == []
    assert not link.server.is_established(CLIENT_ADDR)
    assert not link.client.is_established(SERVER_ADDR)
    link.advance(61.0)
    [server_failure] = link.failed(link.server_events)
    [client_failure] = link.failed(link.client_events)
    assert client_failure.address == SERVER_ADDR
    assert "timed out" in client_failure.reason and "timed out" in server_failure.reason
    assert link.server.session_count() == 0
    assert link.client.session_count() == 0


def test_unknown_identity_fails_with_a_clear_reason() -> None:
    link = make_link(identity=b"stranger")
    link.client_send(b"x")
    [failure] = link.failed(link.server_events)
    assert "unknown PSK identity b'stranger'" in failure.reason
    assert link.failed(link.client_events)
    assert link.server.session_count() == 0
    # the server answered with an alert record
    assert any(d[0] == ContentType.ALERT for d in link.to_client)


def test_mandatory_ccm8_suite_is_negotiated() -> None:
    link = make_link()
    link.client_send(b"x")
    session = link.server._sessions[CLIENT_ADDR]
    assert session.connection.get_cipher_name() == "PSK-AES128-CCM8"


def test_resumption_is_an_abbreviated_handshake_with_the_same_identity() -> None:
    link = make_link()
    link.client_send(b"first")
    link.client.reset(SERVER_ADDR)
    link.to_server.clear()
    link.client_send(b"second")
    assert link.server.session_resumed(CLIENT_ADDR) is True
    assert link.client.session_resumed(SERVER_ADDR) is True
    assert (link.client.full_handshakes, link.client.resumed_handshakes) == (1, 1)
    assert link.server_received[-1] == (b"second", link.server_received[0][1])
    assert link.server_received[-1][1].identity == PeerIdentity(psk_identity=PSK_ID)


def test_new_client_hello_replaces_an_established_session() -> None:
    link = make_link()
    link.client_send(b"first")
    # The device reboots: a brand-new client (no saved session) from the same address.
    link.client = DtlsClient(DtlsClientConfig(psk=PskCredential(PSK_ID, PSK_KEY)))
    link.client_send(b"after reboot")
    assert link.server_received[-1][0] == b"after reboot"
    closed = [e for e in link.server_events if isinstance(e, SessionClosed)]
    assert [e.reason for e in closed] == ["replaced by a new handshake"]
    assert link.server.session_count() == 1
    assert link.server.session_resumed(CLIENT_ADDR) is False


def test_spoofed_client_hello_does_not_kill_an_established_session() -> None:
    link = make_link()
    link.client_send(b"first")
    hello = next(d for d in link.to_server if is_client_hello(d))
    link.server.receive_datagram(hello, CLIENT_ADDR, link.now)  # replayed, no cookie
    assert link.server.is_established(CLIENT_ADDR)
    link.client_send(b"still works")
    assert link.server_received[-1][0] == b"still works"


def test_client_rehandshakes_after_server_restart() -> None:
    link = make_link()
    link.client_send(b"before restart")
    # The server process restarts: all state is gone, the address stays.
    link.server = DtlsServer(DtlsServerConfig(psk_lookup=psk_store({PSK_ID: PSK_KEY})))
    link.client_send(b"lost: the new server cannot read it")
    assert link.server_received == [link.server_received[0]]
    assert link.server.session_count() == 0  # epoch-1 record from a stranger: dropped
    # a CoAP retransmission after the silence threshold
    link.now += 31.0
    link.client_send(b"retransmission")
    assert link.server_received[-1][0] == b"retransmission"
    assert link.server.is_established(CLIENT_ADDR)
    assert link.client.full_handshakes == 2  # the saved session was unknown to the new server


def test_answered_traffic_does_not_trigger_a_rehandshake() -> None:
    link = make_link()
    link.client_send(b"req")
    link.server_send(b"resp")
    link.now += 100.0
    link.client_send(b"req 2")
    assert link.client.full_handshakes == 1
    assert link.client.resumed_handshakes == 0


def test_close_notify_ends_the_session_and_the_next_send_resumes() -> None:
    link = make_link()
    link.client_send(b"x")
    link.server.close_all()
    link.pump()
    assert any(
        isinstance(e, SessionClosed) and e.reason == "closed by peer" for e in link.client_events
    )
    assert not link.client.has_session(SERVER_ADDR)
    link.client_send(b"y")
    assert link.server_received[-1][0] == b"y"
    assert link.client.session_resumed(SERVER_ADDR) is True


def test_idle_sessions_expire() -> None:
    link = make_link(idle_timeout_s=10.0)
    link.client_send(b"x")
    assert link.server.get_timer() == pytest.approx(10.0)
    link.advance(10.5)
    assert link.server.session_count() == 0
    assert any(
        isinstance(e, SessionClosed) and e.reason == "idle timeout" for e in link.server_events
    )
    # the server sent close_notify, so the client knows too
    assert not link.client.has_session(SERVER_ADDR)


def test_server_cannot_send_without_a_session() -> None:
    link = make_link()
    link.server.send(b"to nobody", CLIENT_ADDR, 0.0)
    assert link.server.datagrams_to_send() == []


def test_application_records_fit_the_mtu() -> None:
    link = make_link(mtu=512)
    link.client.config = link.client.config  # frozen config: mtu is per side
    link.client_send(b"x")
    link.server_send(b"p" * 400)
    assert all(len(d) <= 512 for d in link.to_client)
    assert link.client_received[-1][0] == b"p" * 400


def test_resumption_is_refused_once_the_identity_is_removed() -> None:
    store = {PSK_ID: PSK_KEY}
    link = make_link(store=store)
    link.client_send(b"first")
    del store[PSK_ID]  # the operator deletes the device's credentials
    link.client.reset(SERVER_ADDR)
    link.client_send(b"with a resumed session")
    assert [p for p, _ in link.server_received] == [b"first"]
    [failure] = link.failed(link.server_events)
    assert failure.reason == "PSK identity b'dev-1-id' is no longer known"
    assert not link.client.has_session(SERVER_ADDR)
    # the client does not offer that session again: a full handshake, refused too
    link.client_send(b"again")
    assert [p for p, _ in link.server_received] == [b"first"]
    assert "unknown PSK identity" in link.failed(link.server_events)[-1].reason


def test_late_duplicate_of_the_client_hello_does_not_reset_the_session() -> None:
    link = make_link()
    link.client_send(b"first")
    hellos = [d for d in link.to_server if is_client_hello(d)]
    link.server.receive_datagram(hellos[-1], CLIENT_ADDR, link.now)  # the one with the cookie
    assert link.server.is_established(CLIENT_ADDR)
    assert not any(isinstance(e, SessionClosed) for e in link.server_events)
    link.client_send(b"second")
    assert link.server_received[-1][0] == b"second"


def hello_with_cookie(link: Link, now: float) -> bytes:
    """Run hello -> HelloVerifyRequest by hand; return the hello that carries the cookie."""
    link.client.send(b"x", SERVER_ADDR, now)
    [(hello, _)] = link.client.datagrams_to_send()
    link.server.receive_datagram(hello, CLIENT_ADDR, now)
    [(hvr, _)] = link.server.datagrams_to_send()
    link.client.receive_datagram(hvr, SERVER_ADDR, now)
    [(with_cookie, _)] = link.client.datagrams_to_send()
    return with_cookie


@pytest.mark.parametrize(("later", "accepted"), [(5.0, True), (11.0, True), (22.0, False)])
def test_cookies_survive_one_secret_rotation(later: float, accepted: bool) -> None:
    link = make_link(cookie_rotation_s=10.0)
    hello = hello_with_cookie(link, 0.0)
    # time passes (any datagram lets the server rotate its secret)
    for t in (x for x in (11.0, 22.0) if x <= later):
        link.server.receive_datagram(b"", CLIENT_ADDR, t)
    link.server.receive_datagram(hello, CLIENT_ADDR, later)
    assert link.server.has_session(CLIENT_ADDR) is accepted


def test_a_failing_psk_store_refuses_the_handshake_cleanly() -> None:
    def broken(identity: bytes) -> bytes | None:
        raise RuntimeError("database down")

    link = Link(
        client=DtlsClient(DtlsClientConfig(psk=PskCredential(PSK_ID, PSK_KEY))),
        server=DtlsServer(DtlsServerConfig(psk_lookup=broken)),
    )
    link.client_send(b"x")
    assert link.server_received == []
    assert link.failed(link.server_events)
    assert link.server.session_count() == 0


def test_traffic_postpones_idle_expiry() -> None:
    link = make_link(idle_timeout_s=10.0)
    link.client_send(b"at 0")
    link.now = 8.0
    link.client_send(b"at 8")
    link.advance(2.5)  # t = 10.5: 2.5 s after the last datagram
    assert link.server.is_established(CLIENT_ADDR)
    assert link.server.get_timer() == pytest.approx(18.0)
    link.advance(8.0)  # t = 18.5
    assert not link.server.has_session(CLIENT_ADDR)


def test_many_sessions_expire_in_deadline_order() -> None:
    server = DtlsServer(
        DtlsServerConfig(psk_lookup=psk_store({PSK_ID: PSK_KEY}), idle_timeout_s=100.0)
    )
    addresses = [("127.0.0.1", 42000 + i) for i in range(30)]
    for i, address in enumerate(addresses):
        link = Link(
            client=DtlsClient(DtlsClientConfig(psk=PskCredential(PSK_ID, PSK_KEY))),
            server=server,
            client_addr=address,
            now=float(i),
        )
        link.client_send(b"x")
    assert server.session_count() == 30
    for i in range(30):
        assert server.get_timer() == pytest.approx(100.0 + i)
        server.handle_timer(100.0 + i)
        assert server.session_count() == 29 - i
        assert not server.has_session(addresses[i])

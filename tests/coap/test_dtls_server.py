"""Server-side defences: stateless cookies, floods, stray datagrams, limits, garbage."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from test_dtls_helpers import CLIENT_ADDR, PSK_ID, PSK_KEY, SERVER_ADDR, Link, psk_store

from lwm2m.coap.codec import encode
from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.dtls import DtlsClient, DtlsClientConfig, DtlsServer, DtlsServerConfig
from lwm2m.coap.dtls_records import is_client_hello
from lwm2m.coap.message import Message
from lwm2m.coap.peer import Address
from lwm2m.security.credentials import PskCredential


def make_server(**options: object) -> DtlsServer:
    return DtlsServer(DtlsServerConfig(psk_lookup=psk_store({PSK_ID: PSK_KEY}), **options))  # type: ignore[arg-type]


def make_client() -> DtlsClient:
    return DtlsClient(DtlsClientConfig(psk=PskCredential(PSK_ID, PSK_KEY)))


def first_client_hello() -> bytes:
    client = make_client()
    client.send(b"x", SERVER_ADDR, 0.0)
    [(hello, _addr)] = client.datagrams_to_send()
    assert is_client_hello(hello)
    return hello


def test_client_hello_flood_without_cookies_creates_no_state() -> None:
    server = make_server()
    hello = first_client_hello()
    for i in range(2000):
        spoofed: Address = (f"10.{i // 250}.{i % 250}.1", 1000 + i)
        server.receive_datagram(hello, spoofed, 0.0)
    assert server.session_count() == 0
    assert server.get_timer() is None
    assert server.hello_verify_sent == 2000
    # every answer is a small HelloVerifyRequest (no amplification)
    answers = server.datagrams_to_send()
    assert len(answers) == 2000
    assert all(len(d) <= len(hello) for d, _ in answers)
    assert all(d[13] == 3 for d, _ in answers)  # HandshakeType.hello_verify_request


def test_cookie_is_bound_to_the_source_address() -> None:
    server = make_server()
    client = make_client()
    client.send(b"x", SERVER_ADDR, 0.0)
    [(hello, _)] = client.datagrams_to_send()
    server.receive_datagram(hello, CLIENT_ADDR, 0.0)
    [(hvr, _)] = server.datagrams_to_send()
    client.receive_datagram(hvr, SERVER_ADDR, 0.0)
    [(hello_with_cookie, _)] = client.datagrams_to_send()
    # the same cookie replayed from another address is refused statelessly
    server.receive_datagram(hello_with_cookie, ("127.0.0.1", 40999), 0.0)
    assert server.session_count() == 0
    assert server.hello_verify_sent == 2
    # from the right address it starts the handshake
    server.receive_datagram(hello_with_cookie, CLIENT_ADDR, 0.0)
    assert server.has_session(CLIENT_ADDR)


def test_plain_coap_to_the_secure_port_is_ignored() -> None:
    server = make_server()
    raw = encode(Message(code=Code.POST, type=MessageType.CON, mid=0x1234, uri_path=("rd",)))
    assert server.receive_datagram(raw, CLIENT_ADDR, 0.0) == []
    assert server.datagrams_to_send() == []
    assert server.session_count() == 0
    assert server.dropped_datagrams == 1


def test_half_open_handshakes_are_capped() -> None:
    server = make_server(max_half_open=2)
    for port in (41001, 41002, 41003):
        address: Address = ("127.0.0.1", port)
        client = make_client()
        client.send(b"x", SERVER_ADDR, 0.0)
        # hello -> HVR -> hello with cookie; never finish the handshake
        for _ in range(2):
            for data, _ in client.datagrams_to_send():
                server.receive_datagram(data, address, 0.0)
            for data, _ in server.datagrams_to_send():
                client.receive_datagram(data, SERVER_ADDR, 0.0)
    assert server.session_count() == 2
    assert not server.has_session(("127.0.0.1", 41003))


def test_half_open_handshakes_expire() -> None:
    server = make_server(handshake_timeout_s=5.0)
    client = make_client()
    link = Link(
        client=client,
        server=server,
        drop=lambda direction, _d: direction == "s2c" and link.server.has_session(CLIENT_ADDR),
    )
    link.client_send(b"x")
    assert server.has_session(CLIENT_ADDR) and not server.is_established(CLIENT_ADDR)
    link.advance(6.0)
    assert server.session_count() == 0
    assert link.failed(link.server_events)[0].reason.startswith("handshake timed out")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_never_crashes_the_server(data: bytes) -> None:
    server = make_server()
    assert server.receive_datagram(data, CLIENT_ADDR, 0.0) == []
    assert server.session_count() == 0 or is_client_hello(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=200))
def test_garbage_into_established_sessions_is_dropped(data: bytes) -> None:
    link = Link(client=make_client(), server=make_server())
    link.client_send(b"hello")
    assert link.server.receive_datagram(data, CLIENT_ADDR, 1.0) == []
    assert link.client.receive_datagram(data, SERVER_ADDR, 1.0) == []
    link.client_send(b"still fine")
    assert link.server_received[-1][0] == b"still fine"


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=120))
def test_corrupted_client_hello_is_rejected_quietly(tail: bytes) -> None:
    server = make_server()
    hello = first_client_hello()
    mangled = hello[:14] + tail
    server.receive_datagram(mangled, CLIENT_ADDR, 0.0)
    assert server.session_count() == 0


def test_full_session_table_evicts_the_quietest_session() -> None:
    server = make_server(max_sessions=3)
    clients = {("127.0.0.1", 43000 + i): make_client() for i in range(4)}

    def pump(now: float) -> None:
        for _ in range(20):
            moved = False
            for address, client in clients.items():
                for data, _ in client.datagrams_to_send():
                    moved = True
                    server.receive_datagram(data, address, now)
            for data, address in server.datagrams_to_send():
                moved = True
                clients[address].receive_datagram(data, SERVER_ADDR, now)
            if not moved:
                return

    for i, (address, client) in enumerate(clients.items()):
        client.send(b"x", SERVER_ADDR, float(i))
        pump(float(i))
        assert server.is_established(address)
    assert server.session_count() == 3
    assert not server.has_session(("127.0.0.1", 43000))  # quiet since t=0: evicted
    # the evicted client got a close_notify and will re-handshake on its next send
    assert not clients[("127.0.0.1", 43000)].has_session(SERVER_ADDR)


def test_half_open_count_follows_the_sessions() -> None:
    server = make_server()
    link = Link(client=make_client(), server=server)
    link.client.send(b"x", SERVER_ADDR, 0.0)
    for _ in range(2):  # hello, HVR, hello with cookie: handshake now in progress
        for data, _ in link.client.datagrams_to_send():
            server.receive_datagram(data, CLIENT_ADDR, 0.0)
        for data, _ in server.datagrams_to_send():
            link.client.receive_datagram(data, SERVER_ADDR, 0.0)
    assert server.half_open_count() == 1
    link.pump()
    assert server.is_established(CLIENT_ADDR)
    assert server.half_open_count() == 0
    server.close_all()
    assert server.half_open_count() == 0 and server.session_count() == 0


def test_new_client_hello_replaces_a_stuck_half_open_handshake() -> None:
    server = make_server()
    stuck = make_client()
    stuck.send(b"x", SERVER_ADDR, 0.0)
    for _ in range(2):  # hello, HVR, hello with cookie: then the device reboots
        for data, _ in stuck.datagrams_to_send():
            server.receive_datagram(data, CLIENT_ADDR, 0.0)
        for data, _ in server.datagrams_to_send():
            stuck.receive_datagram(data, SERVER_ADDR, 0.0)
    server.datagrams_to_send()
    assert server.half_open_count() == 1
    link = Link(client=make_client(), server=server, now=1.0)
    link.client_send(b"after reboot")
    assert link.server_received[-1][0] == b"after reboot"
    assert [e.reason for e in link.failed(link.server_events)] == ["replaced by a new handshake"]
    assert server.half_open_count() == 0 and server.session_count() == 1


def test_retransmitted_client_hello_during_the_handshake_keeps_the_handshake() -> None:
    server = make_server()
    client = make_client()
    link = Link(client=client, server=server)
    client.send(b"x", SERVER_ADDR, 0.0)
    [(hello, _)] = client.datagrams_to_send()
    server.receive_datagram(hello, CLIENT_ADDR, 0.0)
    [(hvr, _)] = server.datagrams_to_send()
    client.receive_datagram(hvr, SERVER_ADDR, 0.0)
    [(with_cookie, _)] = client.datagrams_to_send()
    server.receive_datagram(with_cookie, CLIENT_ADDR, 0.0)
    flight = server.datagrams_to_send()
    # a duplicate of the hello (same random) goes to the running handshake,
    # it neither replaces it nor costs a HelloVerifyRequest
    server.receive_datagram(with_cookie, CLIENT_ADDR, 0.0)
    assert server.session_count() == 1 and server.half_open_count() == 1
    assert server.hello_verify_sent == 1
    for data, _ in flight:
        client.receive_datagram(data, SERVER_ADDR, 0.0)
    link.pump()
    assert server.is_established(CLIENT_ADDR)
    assert link.server_received[-1][0] == b"x"

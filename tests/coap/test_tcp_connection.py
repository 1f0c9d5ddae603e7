"""The sans-I/O CoAP-over-TCP connection: two of them joined in memory, a fake clock."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m.coap.codes import Code
from lwm2m.coap.errors import EndpointClosed
from lwm2m.coap.events import (
    ClientObservationEnded,
    Event,
    NotificationReceived,
    RequestFailed,
    RequestReceived,
    ResponseReceived,
    ServerObservationEnded,
)
from lwm2m.coap.message import Block, Message
from lwm2m.coap.peer import Peer
from lwm2m.coap.tcp_connection import (
    CapabilitiesReceived,
    ConnectionClosed,
    PongReceived,
    TcpConfig,
    TcpConnection,
)
from lwm2m.coap.tcp_framing import (
    Abort,
    Capabilities,
    FrameDecoder,
    Pong,
    encode_frame,
    encode_signal,
)


class Pair:
    def __init__(self, config: TcpConfig | None = None) -> None:
        config = config or TcpConfig()
        self.now = 0.0
        self.a = TcpConnection(Peer(("127.0.0.1", 2)), config, random.Random(1), self.now)
        self.b = TcpConnection(Peer(("127.0.0.1", 1)), config, random.Random(2), self.now)

    def flush(self) -> tuple[list[Event], list[Event]]:
        """Move bytes both ways until quiet; the events of a and b."""
        ea: list[Event] = []
        eb: list[Event] = []
        while True:
            da, db = self.a.data_to_send(), self.b.data_to_send()
            if not da and not db:
                break
            self.b.receive_data(da, self.now) if da else None
            self.a.receive_data(db, self.now) if db else None
        for conn, events in ((self.a, ea), (self.b, eb)):
            while (event := conn.next_event()) is not None:
                events.append(event)
        return ea, eb


def test_csm_first_then_request_response() -> None:
    pair = Pair()
    first = pair.a.data_to_send()
    frames = list(FrameDecoder(1 << 20).feed(first))
    assert frames == [Capabilities(max_message_size=1 << 20)]
    pair.b.receive_data(first, 0.0)
    rid = pair.a.send_request(Message(Code.GET, uri_path=("3", "0")), 0.0)
    ea, eb = pair.flush()
    assert [type(e) for e in ea] == [CapabilitiesReceived]
    assert isinstance(eb[0], CapabilitiesReceived)
    request = eb[1]
    assert isinstance(request, RequestReceived) and request.message.uri_path == ("3", "0")
    pair.b.respond(request.request_id, Message(Code.CONTENT, payload=b"v"), 0.0)
    ea, _ = pair.flush()
    assert len(ea) == 1 and isinstance(ea[0], ResponseReceived) and ea[0].request_id == rid
    assert ea[0].response.payload == b"v"


def test_first_frame_not_csm_aborts() -> None:
    conn = TcpConnection(Peer(("127.0.0.1", 1)), TcpConfig(), random.Random(0), 0.0)
    conn.data_to_send()
    conn.receive_data(encode_frame(Message(Code.GET, token=b"t")), 0.0)
    out = list(FrameDecoder(1 << 20).feed(conn.data_to_send()))
    assert out == [Abort("the first message must be a CSM (RFC 8323 5.3)")]
    assert conn.closed
    event = conn.next_event()
    assert isinstance(event, ConnectionClosed) and event.aborted and not event.by_peer


def test_malformed_frame_aborts_with_a_diagnostic_and_fails_pending_requests() -> None:
    pair = Pair()
    pair.flush()
    rid = pair.a.send_request(Message(Code.GET), 0.0)
    pair.a.data_to_send()
    pair.a.receive_data(b"\x0f\x01", 0.0)  # TKL 15 is reserved
    out = list(FrameDecoder(1 << 20).feed(pair.a.data_to_send()))
    assert len(out) == 1 and isinstance(out[0], Abort)
    assert "reserved token length" in out[0].diagnostic
    events = [pair.a.next_event(), pair.a.next_event()]
    assert isinstance(events[0], RequestFailed) and events[0].request_id == rid
    assert isinstance(events[0].error, EndpointClosed)
    assert isinstance(events[1], ConnectionClosed) and events[1].aborted


def test_peer_abort_closes() -> None:
    pair = Pair()
    pair.flush()
    pair.b.abort("going away")
    ea, eb = pair.flush()
    assert ea == [ConnectionClosed("peer aborted: 'going away'", by_peer=True, aborted=True)]
    assert eb == [ConnectionClosed("going away", by_peer=False, aborted=True)]


def test_release_closes_both_sides() -> None:
    pair = Pair()
    pair.flush()
    pair.a.release("bye")
    ea, eb = pair.flush()
    assert isinstance(ea[0], ConnectionClosed) and not ea[0].aborted
    assert isinstance(eb[0], ConnectionClosed) and eb[0].by_peer
    assert pair.b.released


def test_ping_pong() -> None:
    pair = Pair()
    pair.flush()
    pid = pair.a.send_ping()
    ea, _ = pair.flush()
    assert ea == [PongReceived(pid)]


def test_keepalive_pings_then_closes_when_the_peer_is_silent() -> None:
    config = TcpConfig(keepalive_s=10.0, pong_timeout_s=5.0)
    pair = Pair(config)
    pair.flush()
    assert pair.a.get_timer() == 10.0
    pair.a.handle_timer(10.0)
    sent = list(FrameDecoder(1 << 20).feed(pair.a.data_to_send()))
    assert len(sent) == 1 and type(sent[0]).__name__ == "Ping"
    assert pair.a.get_timer() == 15.0
    pair.a.handle_timer(15.0)
    assert pair.a.closed
    event = pair.a.next_event()
    assert isinstance(event, ConnectionClosed) and "keep-alive" in event.reason


def test_keepalive_answered_keeps_the_connection() -> None:
    pair = Pair(TcpConfig(keepalive_s=10.0, pong_timeout_s=5.0))
    pair.flush()
    pair.now = 10.0
    pair.a.handle_timer(10.0)
    pair.flush()
    assert not pair.a.closed
    assert pair.a.get_timer() == 20.0


def test_no_csm_in_time_aborts() -> None:
    conn = TcpConnection(
        Peer(("127.0.0.1", 1)), TcpConfig(csm_timeout_s=3.0), random.Random(0), 0.0
    )
    conn.data_to_send()
    conn.handle_timer(3.0)
    assert conn.closed
    assert list(FrameDecoder(1 << 20).feed(conn.data_to_send())) == [Abort("no CSM from the peer")]


def test_observe_notifications_in_order_and_cancel() -> None:
    pair = Pair()
    pair.flush()
    rid = pair.a.send_request(Message(Code.GET, uri_path=("3", "0", "13")), 0.0, observe=True)
    _, eb = pair.flush()
    request = eb[0]
    assert isinstance(request, RequestReceived) and request.message.observe == 0
    obs = pair.b.start_observation(request.request_id)
    pair.b.respond(request.request_id, Message(Code.CONTENT, payload=b"0"), 0.0)
    for value in (b"1", b"2", b"3"):
        pair.b.notify(obs, Message(Code.CONTENT, payload=value), 0.0)
    ea, _ = pair.flush()
    assert isinstance(ea[0], ResponseReceived) and ea[0].request_id == rid
    payloads = [e.message.payload for e in ea[1:] if isinstance(e, NotificationReceived)]
    assert payloads == [b"1", b"2", b"3"]
    # active cancel: GET Observe=1 with the same token ends it on the server
    token = ea[0].response.token
    pair.a.cancel_request(rid)
    pair.a._out.append(encode_frame(Message(Code.GET, token=token, observe=1)))
    _, eb = pair.flush()
    assert any(isinstance(e, ServerObservationEnded) and e.observation_id == obs for e in eb)


def test_error_notification_ends_client_observation() -> None:
    pair = Pair()
    pair.flush()
    rid = pair.a.send_request(Message(Code.GET), 0.0, observe=True)
    _, eb = pair.flush()
    request = eb[0]
    assert isinstance(request, RequestReceived)
    obs = pair.b.start_observation(request.request_id)
    pair.b.respond(request.request_id, Message(Code.CONTENT), 0.0)
    pair.b.notify(obs, Message(Code.NOT_FOUND), 0.0)
    ea, _ = pair.flush()
    assert isinstance(ea[1], ClientObservationEnded) and ea[1].request_id == rid


def test_large_response_is_sliced_to_the_peer_max_message_size_and_reassembled() -> None:
    pair = Pair()
    # b accepts only 1152 bytes per frame; a serves a 5000-byte body
    pair.b = TcpConnection(
        Peer(("127.0.0.1", 1)), TcpConfig(max_message_size=1152), random.Random(2), 0.0
    )
    pair.flush()
    assert pair.a.peer_max_message_size == 1152
    rid = pair.b.send_request(Message(Code.GET, uri_path=("5",)), 0.0)
    ea, _ = pair.flush()
    request = ea[0]
    assert isinstance(request, RequestReceived)
    body = bytes(range(256)) * 20
    pair.a.respond(request.request_id, Message(Code.CONTENT, payload=body), 0.0)
    _, eb = pair.flush()
    assert len(eb) == 1 and isinstance(eb[0], ResponseReceived) and eb[0].request_id == rid
    assert eb[0].response.payload == body and eb[0].response.block2 is None


def test_block_follow_up_for_a_body_not_cached_reaches_the_handler() -> None:
    pair = Pair()
    pair.flush()
    pair.a._out.append(encode_frame(Message(Code.GET, token=b"x", block2=Block(3, False, 6))))
    _, eb = pair.flush()
    # not cached: the handler sees it (the application decides)
    assert isinstance(eb[0], RequestReceived) and eb[0].message.block2 == Block(3, False, 6)


def test_request_after_close_fails_at_once() -> None:
    pair = Pair()
    pair.flush()
    pair.a.abort("x")
    pair.a.next_event()
    rid = pair.a.send_request(Message(Code.GET), 0.0)
    event = pair.a.next_event()
    assert isinstance(event, RequestFailed) and event.request_id == rid


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=400), st.integers(1, 64))
def test_garbage_from_peer_never_raises(garbage: bytes, chunk: int) -> None:
    """Whatever follows the CSM, in any chunking: served, or aborted with a diagnostic."""
    conn = TcpConnection(Peer(("127.0.0.1", 1)), TcpConfig(), random.Random(0), 0.0)
    conn.data_to_send()
    conn.receive_data(encode_signal(Capabilities()), 0.0)
    for i in range(0, len(garbage), chunk):
        conn.receive_data(garbage[i : i + chunk], 0.0)
    out = list(FrameDecoder(1 << 20).feed(conn.data_to_send()))
    events = []
    while (event := conn.next_event()) is not None:
        events.append(event)
    closed = [e for e in events if isinstance(e, ConnectionClosed)]
    if conn.closed and not closed[0].by_peer:
        assert isinstance(out[-1], Abort) and out[-1].diagnostic


def test_pong_with_an_empty_token_answers_the_oldest_ping() -> None:
    pair = Pair()
    pair.flush()
    first, second = pair.a.send_ping(), pair.a.send_ping()
    pair.a.data_to_send()
    pair.a.receive_data(encode_signal(Pong(b"")) + encode_signal(Pong(b"")), 0.0)
    assert [pair.a.next_event(), pair.a.next_event()] == [
        PongReceived(first),
        PongReceived(second),
    ]


def test_large_request_is_sent_with_block1_and_reassembled() -> None:
    pair = Pair()
    # b accepts only 1152 bytes per frame; a sends it a 5000-byte body
    pair.b = TcpConnection(
        Peer(("127.0.0.1", 1)), TcpConfig(max_message_size=1152), random.Random(2), 0.0
    )
    pair.flush()
    body = bytes(range(256)) * 20
    rid = pair.a.send_request(Message(Code.PUT, uri_path=("5", "0", "0"), payload=body), 0.0)
    _, eb = pair.flush()  # the Continue exchanges happen inside the connections
    assert len(eb) == 1 and isinstance(eb[0], RequestReceived)
    assert eb[0].message.payload == body and eb[0].message.block1 is None
    pair.b.respond(eb[0].request_id, Message(Code.CHANGED), 0.0)
    ea, _ = pair.flush()
    assert len(ea) == 1 and isinstance(ea[0], ResponseReceived) and ea[0].request_id == rid
    assert ea[0].response.code == Code.CHANGED
    assert ea[0].response.block1 == Block(4, False, 6)  # the last block, echoed


def _answers(conn: TcpConnection, *requests: Message) -> list[object]:
    """Feed raw requests to ``conn`` (after the CSM exchange); the frames it answers with."""
    conn.receive_data(b"".join(encode_frame(r) for r in requests), 0.0)
    return list(FrameDecoder(1 << 20).feed(conn.data_to_send()))


def test_block1_out_of_order_gets_request_entity_incomplete() -> None:
    pair = Pair()
    pair.flush()
    late = Message(
        Code.PUT, token=b"t", uri_path=("x",), payload=b"y" * 1024, block1=Block(2, True, 6)
    )
    answers = _answers(pair.b, late)
    assert answers == [Message(Code.REQUEST_ENTITY_INCOMPLETE, token=b"t")]
    assert pair.b.next_event() is None  # never reaches the application


def test_block1_body_beyond_the_limit_is_refused() -> None:
    pair = Pair(TcpConfig(max_body_size=2048))
    pair.flush()
    blocks = [
        Message(
            Code.PUT, token=b"t", uri_path=("x",), payload=b"y" * 1024, block1=Block(n, True, 6)
        )
        for n in range(3)
    ]
    answers = _answers(pair.b, *blocks)
    assert [getattr(a, "code", None) for a in answers] == [
        Code.CONTINUE,
        Code.CONTINUE,
        Code.REQUEST_ENTITY_TOO_LARGE,
    ]
    assert pair.b.next_event() is None

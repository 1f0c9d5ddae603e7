"""Sans-I/O engine: two engines over an in-memory link with a fake clock."""

from __future__ import annotations

import itertools
import logging
import random

import pytest
from coap_engine_pair import CLIENT, SERVER, Pair
from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m.coap.codec import decode, encode
from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.engine import Engine
from lwm2m.coap.errors import RequestEntityTooLarge, RequestTimeout, ResetReceived
from lwm2m.coap.events import (
    ClientObservationEnded,
    NotificationAcknowledged,
    NotificationReceived,
    RequestFailed,
    RequestReceived,
    ResponseReceived,
    ServerObservationEnded,
)
from lwm2m.coap.message import Block, Message
from lwm2m.coap.params import TransmissionParameters

GET = Message(Code.GET, uri_path=("x",))


def content(payload: bytes = b"ok") -> Message:
    return Message(Code.CONTENT, payload=payload)


def responses(pair: Pair) -> list[Message]:
    return [e.response for e in pair.client_events if isinstance(e, ResponseReceived)]


def requests(pair: Pair) -> list[Message]:
    return [e.message for e in pair.server_events if isinstance(e, RequestReceived)]


def sent_by(pair: Pair, source: tuple[str, int]) -> list[Message]:
    return [decode(data) for src, data in pair.wire if src == source]


def test_piggybacked_response() -> None:
    pair = Pair(handler=lambda ev: content(b"hello"))
    rid = pair.request(GET)
    [event] = pair.client_events
    assert isinstance(event, ResponseReceived) and event.request_id == rid
    assert event.response.type == MessageType.ACK and event.response.payload == b"hello"
    request, ack = sent_by(pair, CLIENT)[0], sent_by(pair, SERVER)[0]
    assert ack.mid == request.mid and ack.token == request.token and len(request.token) == 8
    assert pair.client.pending_requests() == 0


def test_retransmission_schedule_and_give_up() -> None:
    params = TransmissionParameters()
    pair = Pair(params=params, drop=lambda data, src, dst: True)
    start = pair.now
    times: list[float] = []
    pair.client.send_request(GET, SERVER, pair.now)
    pair.pump()
    times.append(pair.now)
    while (timer := pair.client.get_timer()) is not None:
        pair.now = timer
        pair.client.handle_timer(pair.now)
        before = len(pair.wire)
        pair.pump()
        if len(pair.wire) > before:
            times.append(pair.now)
    transmissions = [d for s, d in pair.wire if s == CLIENT]
    assert len(transmissions) == 1 + params.max_retransmit
    assert len({decode(d).mid for d in transmissions}) == 1
    # Gaps double from a first timeout drawn in [ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR].
    gaps = [b - a for a, b in itertools.pairwise(times)]
    first = gaps[0]
    assert params.ack_timeout_s <= first <= params.ack_timeout_s * params.ack_random_factor
    for k, gap in enumerate(gaps):
        assert gap == pytest.approx(first * 2**k)
    [failed] = pair.client_events
    assert isinstance(failed, RequestFailed) and isinstance(failed.error, RequestTimeout)
    # Gave up after the last timeout, within MAX_TRANSMIT_WAIT.
    assert pair.now - start <= params.max_transmit_wait_s
    assert pair.now - start == pytest.approx(first * (2 ** (params.max_retransmit + 1) - 1))
    assert pair.client.pending_requests() == 0


def test_timeouts_differ_between_engines() -> None:
    draws = set()
    for seed in range(5):
        engine = Engine(rng=random.Random(seed))
        engine.send_request(GET, SERVER, 0.0)
        timer = engine.get_timer()
        assert timer is not None and 2.0 <= timer <= 3.0
        draws.add(timer)
    assert len(draws) == 5


def test_lost_ack_is_replayed_and_handler_runs_once() -> None:
    dropped: list[bytes] = []

    def drop(data: bytes, src: tuple[str, int], dst: tuple[str, int]) -> bool:
        if src == SERVER and not dropped:
            dropped.append(data)
            return True
        return False

    pair = Pair(handler=lambda ev: content(b"once"), drop=drop)
    pair.request(GET)
    assert not pair.client_events
    pair.advance(3.1)
    assert [r.payload for r in responses(pair)] == [b"once"]
    assert len(requests(pair)) == 1
    acks = [d for s, d in pair.wire if s == SERVER]
    assert acks[0] == acks[1]  # the cached reply, byte for byte


def test_separate_response() -> None:
    pair = Pair(handler=lambda ev: None)
    rid = pair.request(GET)
    [received] = [e for e in pair.server_events if isinstance(e, RequestReceived)]
    pair.advance(1.0)  # separate_response_delay_s
    empty_ack = sent_by(pair, SERVER)[-1]
    assert empty_ack.type == MessageType.ACK and empty_ack.code == Code.EMPTY
    pair.advance(20.0)  # the client waits: no retransmission after the empty ACK
    assert len(sent_by(pair, CLIENT)) == 1
    pair.server.respond(received.request_id, content(b"late"), pair.now)
    pair.pump()
    separate = sent_by(pair, SERVER)[-1]
    assert separate.type == MessageType.CON and separate.payload == b"late"
    ack = sent_by(pair, CLIENT)[-1]
    assert ack.type == MessageType.ACK and ack.mid == separate.mid and ack.code == Code.EMPTY
    assert [
        (e.request_id, e.response.payload)
        for e in pair.client_events
        if isinstance(e, ResponseReceived)
    ] == [(rid, b"late")]
    # A retransmitted separate response is ACKed again but not delivered twice.
    pair.client.receive_datagram(encode(separate), SERVER, pair.now)
    assert pair.client.datagrams_to_send(pair.now)[0][0] == encode(ack)
    assert pair.client.next_event() is None


def test_separate_response_times_out() -> None:
    params = TransmissionParameters(response_timeout_s=30.0)
    pair = Pair(params=params, handler=lambda ev: None)
    pair.request(GET)
    pair.advance(29.0)
    assert not pair.client_events
    pair.advance(2.0)
    [failed] = pair.client_events
    assert isinstance(failed, RequestFailed) and isinstance(failed.error, RequestTimeout)


def test_duplicate_while_busy_gets_empty_ack() -> None:
    engine = Engine(rng=random.Random(3))
    request = encode(Message(Code.GET, MessageType.CON, 77, b"t"))
    engine.receive_datagram(request, CLIENT, 0.0)
    assert isinstance(engine.next_event(), RequestReceived)
    engine.receive_datagram(request, CLIENT, 2.5)
    [(data, _)] = engine.datagrams_to_send(2.5)
    assert decode(data) == Message(Code.EMPTY, MessageType.ACK, 77)
    assert engine.next_event() is None


def test_rst_to_ping_and_malformed_con() -> None:
    engine = Engine(rng=random.Random(3))
    engine.receive_datagram(b"\x40\x00\x12\x34", CLIENT, 0.0)  # CON ping
    engine.receive_datagram(b"\x40\x01\x43\x21\xf0", CLIENT, 0.0)  # CON, reserved delta 15
    engine.receive_datagram(b"\x50\x01\x43\x22\xf0", CLIENT, 0.0)  # NON malformed: ignored
    engine.receive_datagram(b"\x80\x01\x43\x23", CLIENT, 0.0)  # version 2: ignored
    engine.receive_datagram(b"\x40", CLIENT, 0.0)  # no header: ignored
    out = [decode(d) for d, _ in engine.datagrams_to_send(0.0)]
    assert out == [
        Message(Code.EMPTY, MessageType.RST, 0x1234),
        Message(Code.EMPTY, MessageType.RST, 0x4321),
    ]
    assert engine.next_event() is None


def test_rst_to_our_con_fails_request() -> None:
    engine = Engine(rng=random.Random(3))
    rid = engine.send_request(GET, SERVER, 0.0)
    [(data, _)] = engine.datagrams_to_send(0.0)
    mid = decode(data).mid
    engine.receive_datagram(encode(Message(Code.EMPTY, MessageType.RST, mid)), SERVER, 0.1)
    event = engine.next_event()
    assert isinstance(event, RequestFailed) and event.request_id == rid
    assert isinstance(event.error, ResetReceived)
    assert engine.get_timer() is None or engine.pending_requests() == 0


def test_unknown_critical_option() -> None:
    pair = Pair(handler=lambda ev: content())
    pair.request(Message(Code.GET, other_options=((2049, b"x"),)))
    [response] = responses(pair)
    assert response.code == Code.BAD_OPTION
    assert not requests(pair)
    pair.request(Message(Code.GET, other_options=((2048, b"x"),)))  # elective: ignored
    assert responses(pair)[-1].code == Code.CONTENT
    # NON with an unknown critical option is rejected silently.
    engine = Engine(rng=random.Random(1))
    engine.receive_datagram(
        encode(Message(Code.GET, MessageType.NON, 5, other_options=((9, b""),))), CLIENT, 0
    )
    assert engine.datagrams_to_send(0) == [] and engine.next_event() is None


def test_non_request_and_duplicate() -> None:
    pair = Pair(handler=lambda ev: content(b"non"))
    pair.request(Message(Code.GET, MessageType.NON))
    [response] = responses(pair)
    assert response.type == MessageType.NON and response.payload == b"non"
    request = next(d for s, d in pair.wire if s == CLIENT)
    pair.server.receive_datagram(request, CLIENT, pair.now)  # duplicate NON: ignored
    assert pair.server.datagrams_to_send(pair.now) == [] and pair.server.next_event() is None


def test_nstart_queues_second_request() -> None:
    pair = Pair(handler=lambda ev: None)
    first = pair.client.send_request(GET, SERVER, pair.now)
    second = pair.client.send_request(Message(Code.GET, uri_path=("y",)), SERVER, pair.now)
    pair.pump()
    assert [m.uri_path for m in requests(pair)] == [("x",)]
    pair.server.respond(pair.server_events[0].request_id, content(b"1"), pair.now)  # type: ignore[attr-defined]
    pair.pump()
    assert [m.uri_path for m in requests(pair)] == [("x",), ("y",)]
    pair.server.respond(pair.server_events[1].request_id, content(b"2"), pair.now)  # type: ignore[attr-defined]
    pair.pump()
    assert [(e.request_id, e.response.payload) for e in pair.client_events] == [  # type: ignore[attr-defined]
        (first, b"1"),
        (second, b"2"),
    ]


def test_cancel_request_frees_state_and_rejects_late_answer() -> None:
    pair = Pair(handler=lambda ev: None)
    rid = pair.request(GET)
    queued = pair.client.send_request(GET, SERVER, pair.now)
    pair.client.cancel_request(rid, pair.now)
    pair.pump()
    assert pair.client.pending_requests() == 1  # the queued one got the slot
    [first, second] = [e for e in pair.server_events if isinstance(e, RequestReceived)]
    pair.advance(1.0)
    pair.server.respond(first.request_id, content(b"late"), pair.now)
    pair.pump()
    late = sent_by(pair, SERVER)[-1]
    assert late.type == MessageType.CON
    assert sent_by(pair, CLIENT)[-1] == Message(Code.EMPTY, MessageType.RST, late.mid)
    assert not [
        e for e in pair.client_events if isinstance(e, ResponseReceived) and e.request_id == rid
    ]
    pair.client.cancel_request(queued, pair.now)
    assert pair.client.pending_requests() == 0
    del second


# --- observe -----------------------------------------------------------------------


def observe_pair() -> tuple[Pair, list[int]]:
    observations: list[int] = []

    def handler(ev: RequestReceived) -> Message:
        if ev.message.observe == 0:
            observations.append(pair.server.start_observation(ev.request_id, pair.now))
        return content(b"v0")

    pair = Pair(handler=handler)
    return pair, observations


def test_observe_notifications_and_ordering() -> None:
    pair, observations = observe_pair()
    rid = pair.request(GET, observe=True)
    [first] = responses(pair)
    assert first.observe is not None and first.payload == b"v0"
    [obs] = observations
    pair.server.notify(obs, content(b"v1"), pair.now)
    pair.pump()
    pair.server.notify(obs, content(b"v2"), pair.now, confirmable=True)
    pair.pump()
    got = [
        (e.request_id, e.message.payload)
        for e in pair.client_events
        if isinstance(e, NotificationReceived)
    ]
    assert got == [(rid, b"v1"), (rid, b"v2")]
    assert any(isinstance(e, NotificationAcknowledged) for e in pair.server_events)
    # A reordered older notification is dropped ...
    last = sent_by(pair, SERVER)[-1]
    assert last.observe is not None
    stale = last.with_(mid=(last.mid + 100) & 0xFFFF, observe=last.observe - 1, payload=b"old")
    pair.client.receive_datagram(encode(stale), SERVER, pair.now)
    assert pair.client.next_event() is None
    # ... unless more than 128 s passed (RFC 7641 3.4).
    pair.now += 129
    stale2 = stale.with_(mid=(stale.mid + 1) & 0xFFFF)
    pair.client.receive_datagram(encode(stale2), SERVER, pair.now)
    event = pair.client.next_event()
    assert isinstance(event, NotificationReceived) and event.message.payload == b"old"


def test_observe_sequence_wraps() -> None:
    from lwm2m.coap.observe import is_fresh

    assert is_fresh(0xFFFFFF, 0.0, 1, 1.0)
    assert not is_fresh(1, 0.0, 0xFFFFFF, 1.0)
    assert is_fresh(5, 0.0, 6, 0.0)
    assert not is_fresh(6, 0.0, 6, 0.0)


def test_passive_cancel_answers_next_notification_with_rst() -> None:
    pair, observations = observe_pair()
    rid = pair.request(GET, observe=True)
    pair.client.cancel_request(rid, pair.now)
    pair.server.notify(observations[0], content(b"v1"), pair.now)
    pair.pump()
    assert sent_by(pair, CLIENT)[-1].type == MessageType.RST
    ended = [e for e in pair.server_events if isinstance(e, ServerObservationEnded)]
    assert [e.reason for e in ended] == ["reset by the client"]
    with pytest.raises(KeyError):
        pair.server.notify(observations[0], content(), pair.now)


def test_active_cancel_deregisters() -> None:
    pair, _observations = observe_pair()
    rid = pair.request(GET, observe=True)
    dereg = pair.client.deregister_observation(rid, pair.now)
    pair.pump()
    assert requests(pair)[-1].observe == 1
    assert requests(pair)[-1].token == requests(pair)[0].token
    assert [e.reason for e in pair.server_events if isinstance(e, ServerObservationEnded)] == [
        "deregistered"
    ]
    assert [e.request_id for e in pair.client_events if isinstance(e, ResponseReceived)] == [
        rid,
        dereg,
    ]
    assert pair.client.pending_requests() == 0


def test_unacknowledged_con_notification_ends_observation() -> None:
    blackhole = False
    pair, observations = observe_pair()
    pair.drop = lambda data, src, dst: blackhole
    pair.request(GET, observe=True)
    blackhole = True
    pair.server.notify(observations[0], content(b"v1"), pair.now, confirmable=True)
    pair.advance(100.0)
    [ended] = [e for e in pair.server_events if isinstance(e, ServerObservationEnded)]
    assert ended.reason == "confirmable notification not acknowledged"


def test_error_notification_ends_both_sides() -> None:
    pair, observations = observe_pair()
    rid = pair.request(GET, observe=True)
    pair.server.notify(observations[0], Message(Code.NOT_FOUND), pair.now)
    pair.pump()
    assert sent_by(pair, SERVER)[-1].observe is None
    assert [type(e).__name__ for e in pair.client_events][-2:] == [
        "NotificationReceived",
        "ClientObservationEnded",
    ]
    assert (
        isinstance(pair.client_events[-1], ClientObservationEnded)
        and pair.client_events[-1].request_id == rid
    )
    assert pair.client.pending_requests() == 0


def test_large_notification_is_fetched_blockwise() -> None:
    pair, observations = observe_pair()
    rid = pair.request(GET, observe=True)
    body = bytes(range(256)) * 10
    pair.server.notify(observations[0], content(body), pair.now)
    pair.pump()
    [note] = [e for e in pair.client_events if isinstance(e, NotificationReceived)]
    assert note.request_id == rid and note.message.payload == body
    follow_ups = [m for m in sent_by(pair, CLIENT) if m.code == Code.GET][1:]
    assert [m.block2.num for m in follow_ups if m.block2] == [1, 2]
    assert all(m.observe is None for m in follow_ups)
    assert len(requests(pair)) == 1  # the blocks came from the server's cache


# --- block-wise ----------------------------------------------------------------------


def test_block2_response_is_reassembled() -> None:
    body = bytes(range(256)) * 9  # 2304 bytes: 3 blocks of 1024
    calls: list[Message] = []

    def handler(ev: RequestReceived) -> Message:
        calls.append(ev.message)
        return Message(Code.CONTENT, payload=body, etag=(b"e1",))

    pair = Pair(handler=handler)
    pair.request(GET)
    [response] = responses(pair)
    assert response.payload == body and response.block2 is None
    assert response.token == sent_by(pair, CLIENT)[0].token  # the request's token
    blocks = [m for m in sent_by(pair, SERVER)]
    assert [m.block2 for m in blocks] == [Block(0, True, 6), Block(1, True, 6), Block(2, False, 6)]
    assert blocks[0].size2 == len(body)
    assert len(calls) == 1  # later blocks came from the cache


def test_block2_small_blocks_requested_by_client() -> None:
    body = b"x" * 100
    pair = Pair(handler=lambda ev: content(body))
    pair.request(Message(Code.GET, block2=Block(0, False, 1)))  # 32-byte blocks
    [response] = responses(pair)
    assert response.payload == body
    assert len(sent_by(pair, SERVER)) == 4


def test_block2_out_of_range() -> None:
    pair = Pair(handler=lambda ev: content(b"short"))
    pair.request(Message(Code.GET, block2=Block(5, False, 2)))
    assert responses(pair)[0].code == Code.BAD_OPTION


def test_block2_too_large_for_client() -> None:
    pair = Pair(
        params=TransmissionParameters(max_body_size=1500), handler=lambda ev: content(b"x" * 5000)
    )
    pair.request(GET)
    [failed] = pair.client_events
    assert isinstance(failed, RequestFailed) and isinstance(failed.error, RequestEntityTooLarge)


def test_block1_request_is_reassembled() -> None:
    body = bytes(range(256)) * 10
    pair = Pair(handler=lambda ev: Message(Code.CHANGED))
    pair.request(Message(Code.PUT, uri_path=("fw",), payload=body))
    [request] = requests(pair)
    assert request.payload == body and request.block1 is None
    sent = sent_by(pair, CLIENT)
    assert [m.block1 for m in sent] == [Block(0, True, 6), Block(1, True, 6), Block(2, False, 6)]
    assert sent[0].size1 == len(body)
    answers = sent_by(pair, SERVER)
    assert [m.code for m in answers] == [Code.CONTINUE, Code.CONTINUE, Code.CHANGED]
    assert answers[-1].block1 == Block(2, False, 6)
    assert responses(pair)[0].code == Code.CHANGED


def test_block1_server_asks_for_smaller_blocks() -> None:
    body = b"y" * 3000
    pair = Pair(handler=lambda ev: Message(Code.CHANGED))
    pair.server = Engine(TransmissionParameters(block_szx=4), rng=random.Random(5))
    pair.request(Message(Code.PUT, payload=body))
    assert requests(pair)[0].payload == body
    sizes = [len(m.payload) for m in sent_by(pair, CLIENT)]
    assert sizes[0] == 1024 and set(sizes[1:-1]) == {256}


def test_block1_too_large() -> None:
    pair = Pair(handler=lambda ev: Message(Code.CHANGED))
    pair.server = Engine(TransmissionParameters(max_body_size=2000), rng=random.Random(5))
    pair.request(Message(Code.PUT, payload=b"z" * 5000))
    [response] = responses(pair)
    assert response.code == Code.REQUEST_ENTITY_TOO_LARGE and response.size1 == 2000
    assert not requests(pair)


def test_block1_out_of_order_and_expiry() -> None:
    engine = Engine(TransmissionParameters(block_transfer_lifetime_s=60.0), rng=random.Random(3))

    def put(mid: int, num: int, more: bool, now: float) -> Message:
        msg = Message(Code.PUT, MessageType.CON, mid, b"k", b"a" * 16, block1=Block(num, more, 0))
        engine.receive_datagram(encode(msg), CLIENT, now)
        [(data, _)] = engine.datagrams_to_send(now)
        return decode(data)

    assert put(1, 1, True, 0.0).code == Code.REQUEST_ENTITY_INCOMPLETE  # no block 0 yet
    assert put(2, 0, True, 0.0).code == Code.CONTINUE
    assert put(3, 2, True, 0.0).code == Code.REQUEST_ENTITY_INCOMPLETE  # skipped block 1
    assert put(4, 0, True, 1.0).code == Code.CONTINUE
    engine.handle_timer(100.0)
    assert put(5, 1, False, 100.0).code == Code.REQUEST_ENTITY_INCOMPLETE  # expired


def test_reserved_block_szx_is_bad_request() -> None:
    engine = Engine(rng=random.Random(3))
    raw = encode(Message(Code.GET, MessageType.CON, 9, other_options=((23, b"\x07"),)))
    engine.receive_datagram(raw, CLIENT, 0.0)
    [(data, _)] = engine.datagrams_to_send(0.0)
    assert decode(data).code == Code.BAD_REQUEST


def test_dedup_bounded() -> None:
    engine = Engine(TransmissionParameters(max_dedup_entries=10), rng=random.Random(3))
    for mid in range(50):
        engine.receive_datagram(encode(Message(Code.GET, MessageType.NON, mid)), CLIENT, 0.0)
    assert len(engine._dedup) == 10
    engine.handle_timer(1000.0)
    assert len(engine._dedup) == 0


def test_block1_and_block2_in_one_exchange() -> None:
    pair = Pair(handler=lambda ev: content(ev.message.payload[::-1] * 2))
    body = bytes(range(256)) * 6
    pair.request(Message(Code.FETCH, payload=body))
    [request] = requests(pair)
    assert request.payload == body
    [response] = responses(pair)
    assert response.payload == body[::-1] * 2


def test_announced_size1_too_large() -> None:
    engine = Engine(TransmissionParameters(max_body_size=100), rng=random.Random(3))
    first = Message(
        Code.PUT, MessageType.CON, 1, b"k", b"a" * 16, block1=Block(0, True, 0), size1=5000
    )
    engine.receive_datagram(encode(first), CLIENT, 0.0)
    [(data, _)] = engine.datagrams_to_send(0.0)
    assert decode(data).code == Code.REQUEST_ENTITY_TOO_LARGE and decode(data).size1 == 100


def test_non_request_without_answer_times_out() -> None:
    pair = Pair(params=TransmissionParameters(response_timeout_s=5.0), handler=lambda ev: None)
    pair.request(Message(Code.GET, MessageType.NON))
    pair.advance(6.0)
    [failed] = pair.client_events
    assert isinstance(failed, RequestFailed) and isinstance(failed.error, RequestTimeout)
    assert len(sent_by(pair, CLIENT)) == 1  # NON is never retransmitted


def test_fail_peer() -> None:
    engine = Engine(rng=random.Random(3))
    first = engine.send_request(GET, SERVER, 0.0)
    queued = engine.send_request(GET, SERVER, 0.0)
    other = engine.send_request(GET, CLIENT, 0.0)
    engine.fail_peer(SERVER, ResetReceived("gone"), 0.0)
    failed = []
    while (event := engine.next_event()) is not None:
        assert isinstance(event, RequestFailed)
        failed.append(event.request_id)
    assert sorted(failed) == [first, queued]
    assert engine.pending_requests() == 1 and other


def test_notify_before_registration_answered() -> None:
    engine = Engine(rng=random.Random(3))
    engine.receive_datagram(
        encode(Message(Code.GET, MessageType.CON, 1, b"t", observe=0)), CLIENT, 0.0
    )
    event = engine.next_event()
    assert isinstance(event, RequestReceived)
    obs = engine.start_observation(event.request_id, 0.0)
    with pytest.raises(ValueError, match="before the response"):
        engine.notify(obs, content(), 0.0)
    with pytest.raises(ValueError, match="Observe=0"):
        engine.receive_datagram(encode(Message(Code.GET, MessageType.CON, 2, b"u")), CLIENT, 0.0)
        plain = engine.next_event()
        assert isinstance(plain, RequestReceived)
        engine.start_observation(plain.request_id, 0.0)


def test_reregistration_replaces_observation() -> None:
    pair, observations = observe_pair()
    pair.request(Message(Code.GET, token=b"tok"), observe=True)
    pair.request(Message(Code.GET, token=b"tok2"), observe=True)
    engine = pair.server
    # The same client registers again with the first token: the old entry ends.
    msg = Message(Code.GET, MessageType.CON, 999, b"tok", observe=0)
    engine.receive_datagram(encode(msg), CLIENT, pair.now)
    pair.pump()
    ended = [e for e in pair.server_events if isinstance(e, ServerObservationEnded)]
    assert [e.reason for e in ended] == ["re-registered"] and ended[
        0
    ].observation_id == observations[0]


def test_dedup_memory_bounded_when_mids_wrap() -> None:
    engine = Engine(TransmissionParameters(max_dedup_entries=100), rng=random.Random(3))
    for i in range(2000):  # one peer cycling through 50 MIDs with fresh tokens
        msg = Message(Code.GET, MessageType.NON, i % 50, i.to_bytes(4, "big"))
        engine.receive_datagram(encode(msg), CLIENT, 0.0)
    assert len(engine._dedup) == 50
    assert len(engine._dedup_order) <= 200


def test_wrong_block_in_piggybacked_answer_fails_the_request() -> None:
    engine = Engine(rng=random.Random(3))
    rid = engine.send_request(GET, SERVER, 0.0)
    [(data, _)] = engine.datagrams_to_send(0.0)
    request = decode(data)
    first = Message(
        Code.CONTENT,
        MessageType.ACK,
        request.mid,
        request.token,
        b"a" * 16,
        block2=Block(0, True, 0),
    )
    engine.receive_datagram(encode(first), SERVER, 0.1)
    [(data, _)] = engine.datagrams_to_send(0.1)
    follow = decode(data)
    assert follow.block2 == Block(1, False, 0)
    wrong = Message(
        Code.CONTENT, MessageType.ACK, follow.mid, follow.token, b"b" * 16, block2=Block(3, True, 0)
    )
    engine.receive_datagram(encode(wrong), SERVER, 0.2)
    event = engine.next_event()
    assert isinstance(event, RequestFailed) and event.request_id == rid
    assert engine.pending_requests() == 0


_valid = [
    encode(Message(Code.GET, MessageType.CON, 1, b"t", uri_path=("a",), observe=0)),
    encode(Message(Code.PUT, MessageType.CON, 2, b"u", b"x" * 16, block1=Block(0, True, 0))),
    encode(Message(Code.CONTENT, MessageType.ACK, 3, b"v", b"y", block2=Block(1, True, 0))),
    encode(Message(Code.CONTENT, MessageType.NON, 4, b"w", observe=5)),
    encode(Message(Code.EMPTY, MessageType.RST, 5)),
]


@given(st.lists(st.one_of(st.binary(max_size=40), st.sampled_from(_valid)), max_size=30), st.data())
@settings(max_examples=200)
def test_engine_survives_arbitrary_datagrams(datagrams: list[bytes], data: st.DataObject) -> None:
    engine = Engine(rng=random.Random(0))
    engine.send_request(GET, SERVER, 0.0)
    now = 0.0
    for raw in datagrams:
        flip = data.draw(st.integers(min_value=0, max_value=max(0, len(raw) - 1)))
        if raw and data.draw(st.booleans()):
            raw = raw[:flip] + bytes((raw[flip] ^ 0x5A,)) + raw[flip + 1 :]
        engine.receive_datagram(raw, SERVER, now)
        while (event := engine.next_event()) is not None:
            if isinstance(event, RequestReceived):
                engine.respond(event.request_id, content(b"z" * 40), now)
        engine.datagrams_to_send(now)
        now += 1.0
        timer = engine.get_timer()
        if timer is not None and timer <= now:
            engine.handle_timer(now)


def test_large_observe_registration_answer_keeps_the_token() -> None:
    observations: list[int] = []

    def handler(ev: RequestReceived) -> Message:
        if ev.message.observe == 0:
            observations.append(pair.server.start_observation(ev.request_id, pair.now))
        return content(b"q" * 3000)

    pair = Pair(handler=handler)
    rid = pair.request(Message(Code.GET, token=b"obs-tok"), observe=True)
    [response] = responses(pair)
    assert response.token == b"obs-tok" and response.observe is not None
    assert len(response.payload) == 3000
    pair.server.notify(observations[0], content(b"small"), pair.now)
    pair.pump()
    [note] = [e for e in pair.client_events if isinstance(e, NotificationReceived)]
    assert note.request_id == rid and note.message.payload == b"small"


def test_block1_memory_budget_across_transfers() -> None:
    params = TransmissionParameters(max_block_memory=200_000, max_body_size=150_000)
    engine = Engine(params, rng=random.Random(3))
    mid = 0

    def block(path: str, num: int) -> Message:
        nonlocal mid
        mid += 1
        msg = Message(
            Code.PUT,
            MessageType.CON,
            mid,
            b"k",
            b"a" * 1024,
            uri_path=(path,),
            block1=Block(num, True, 6),
        )
        engine.receive_datagram(encode(msg), CLIENT, 0.0)
        [(data, _)] = engine.datagrams_to_send(0.0)
        return decode(data)

    for num in range(100):
        assert block("a", num).code == Code.CONTINUE
    codes = [block("b", num).code for num in range(100)]
    assert Code.SERVICE_UNAVAILABLE in codes  # a + b would exceed 200 000 bytes
    assert block("a", 100).code == Code.CONTINUE  # the first transfer goes on


# --- ETag on Block2 (RFC 7959 2.4) ---------------------------------------------------


def test_block2_blocks_carry_an_etag_of_the_body() -> None:
    body = bytes(range(256)) * 9
    pair = Pair(handler=lambda ev: content(body))
    pair.request(GET)
    blocks = sent_by(pair, SERVER)
    assert len(blocks) == 3
    [etag] = {m.etag for m in blocks}
    assert len(etag) == 1 and etag[0]
    # Same body, same tag; another body, another tag; small bodies go untagged.
    again = Pair(handler=lambda ev: content(body))
    again.request(GET)
    assert sent_by(again, SERVER)[0].etag == etag
    other = Pair(handler=lambda ev: content(body[::-1]))
    other.request(GET)
    assert sent_by(other, SERVER)[0].etag != etag
    small = Pair(handler=lambda ev: content(b"tiny"))
    small.request(GET)
    assert sent_by(small, SERVER)[0].etag == ()


def test_block2_keeps_the_applications_etag() -> None:
    pair = Pair(handler=lambda ev: Message(Code.CONTENT, payload=b"z" * 2000, etag=(b"app",)))
    pair.request(GET)
    assert {m.etag for m in sent_by(pair, SERVER)} == {(b"app",)}


def test_block2_body_change_between_blocks_restarts_the_client() -> None:
    """The cache expired and the resource changed before block 1 was fetched."""
    bodies = [bytes(range(256)) * 9, b"N" * 1500]
    calls: list[int] = []

    def handler(ev: RequestReceived) -> Message:
        calls.append(ev.message.block2.num if ev.message.block2 else 0)
        return content(bodies[min(len(calls) - 1, 1)])

    dropped: list[bytes] = []

    def drop(data: bytes, src: tuple[str, int], dst: tuple[str, int]) -> bool:
        msg = decode(data)
        if src == CLIENT and msg.block2 is not None and msg.block2.num == 1 and not dropped:
            dropped.append(data)
            return True
        return False

    params = TransmissionParameters(block_transfer_lifetime_s=0.5)
    pair = Pair(params=params, handler=handler, drop=drop)
    rid = pair.request(GET)
    assert dropped and not responses(pair)
    pair.advance(60)
    [response] = [e for e in pair.client_events if isinstance(e, ResponseReceived)]
    assert response.request_id == rid and response.response.payload == bodies[1]
    tags = [m.etag for m in sent_by(pair, SERVER) if m.block2 is not None]
    assert tags[0] != tags[1]  # block 1 of the new body told the client
    assert len(set(tags[1:])) == 1
    assert calls[:2] == [0, 1]


# --- ping ----------------------------------------------------------------------------


def test_ping_is_answered_with_rst() -> None:
    pair = Pair()
    ping = pair.client.send_ping(SERVER, pair.now)
    pair.pump()
    sent = [decode(d) for src, d in pair.wire]
    assert [(m.type, m.code) for m in sent] == [
        (MessageType.CON, Code.EMPTY),
        (MessageType.RST, Code.EMPTY),
    ]
    assert sent[0].mid == sent[1].mid and sent[0].token == b""
    [event] = pair.client_events
    assert isinstance(event, ResponseReceived) and event.request_id == ping
    assert event.response.type == MessageType.RST


def test_ping_without_answer_times_out_after_retransmissions() -> None:
    pair = Pair(drop=lambda data, src, dst: src == CLIENT)
    ping = pair.client.send_ping(SERVER, pair.now)
    pair.pump()
    pair.advance(200)
    [event] = pair.client_events
    assert isinstance(event, RequestFailed) and event.request_id == ping
    assert isinstance(event.error, RequestTimeout)
    assert len(pair.wire) == 1 + pair.params.max_retransmit


def test_ping_cancelled_and_empty_ack_answer() -> None:
    pair = Pair(drop=lambda data, src, dst: True)
    ping = pair.client.send_ping(SERVER, pair.now)
    pair.pump()
    pair.client.cancel_request(ping, pair.now)
    pair.advance(200)
    assert pair.client_events == [] and len(pair.wire) == 1  # no retransmission
    # A peer that ACKs the empty CON instead of resetting it is alive too.
    engine = Engine(rng=random.Random(5))
    ping = engine.send_ping(SERVER, 0.0)
    [(data, _)] = engine.datagrams_to_send(0.0)
    mid = decode(data).mid
    engine.receive_datagram(encode(Message(Code.CONTENT, MessageType.ACK, mid, b"t")), SERVER, 0.1)
    assert engine.next_event() is None  # a piggybacked response is no pong
    engine.receive_datagram(encode(Message(Code.EMPTY, MessageType.ACK, mid)), SERVER, 0.2)
    event = engine.next_event()
    assert isinstance(event, ResponseReceived) and event.request_id == ping


def test_cancel_starts_the_next_queued_request_at_the_time_of_the_cancel() -> None:
    # Two GETs with NSTART=1; the first is retransmitted at 2.5 and cancelled
    # at 10: the second starts then, so its first retransmission is due one
    # ACK timeout after 10, not at once.
    params = TransmissionParameters()
    engine = Engine(params, rng=random.Random(1))
    first = engine.send_request(GET, SERVER, 0.0)
    engine.send_request(GET, SERVER, 0.0)
    assert len(engine.datagrams_to_send(0.0)) == 1
    engine.handle_timer(2.5)
    [retransmitted] = engine.datagrams_to_send(2.5)
    engine.cancel_request(first, 10.0)
    [started] = engine.datagrams_to_send(10.0)
    assert decode(started[0]).mid != decode(retransmitted[0]).mid
    engine.handle_timer(10.0 + params.ack_timeout_s - 0.001)
    assert engine.datagrams_to_send(12.0) == []
    latest = 10.0 + params.ack_timeout_s * params.ack_random_factor
    engine.handle_timer(latest)
    assert [data for data, _ in engine.datagrams_to_send(latest)] == [started[0]]


def test_notification_acknowledged_only_for_confirmable_notifications() -> None:
    pair, observations = observe_pair()
    pair.request(GET, observe=True)
    [obs] = observations
    non_delivery = pair.server.notify(obs, content(b"v1"), pair.now)
    pair.pump()
    con_delivery = pair.server.notify(obs, content(b"v2"), pair.now, confirmable=True)
    pair.pump()
    assert [m.type for m in sent_by(pair, SERVER)[-2:]] == [MessageType.NON, MessageType.CON]
    acknowledged = [
        e.delivery_id for e in pair.server_events if isinstance(e, NotificationAcknowledged)
    ]
    assert acknowledged == [con_delivery]
    assert non_delivery != con_delivery


def test_protocol_decisions_are_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="lwm2m.coap.engine")
    pair = Pair(handler=lambda ev: content(), drop=lambda data, src, dst: src == SERVER)
    pair.request(GET)
    pair.advance(100.0)
    request = sent_by(pair, CLIENT)[0]
    pair.server.receive_datagram(encode(request), CLIENT, pair.now)  # a duplicate
    pair.client.receive_datagram(encode(Message(Code.EMPTY, MessageType.RST, 7)), SERVER, pair.now)
    text = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
    assert "retransmitting CON MID" in text
    assert "giving up on CON MID" in text
    assert "duplicate CON MID" in text
    assert "RST MID 7" in text


def test_failed_notification_fetch_loses_only_that_notification() -> None:
    pair, observations = observe_pair()
    rid = pair.request(GET, observe=True)
    cut = [True]

    def drop(data: bytes, src: tuple[str, int], dst: tuple[str, int]) -> bool:
        # The link eats the client's Block2 follow-ups while ``cut`` holds.
        msg = decode(data)
        return cut[0] and src == CLIENT and msg.block2 is not None

    pair.drop = drop
    pair.server.notify(observations[0], content(bytes(2500)), pair.now)
    pair.pump()
    assert pair.client.pending_requests() == 2  # the observation and its fetch
    pair.advance(pair.params.max_transmit_wait_s + 1)
    assert pair.client.pending_requests() == 1
    assert not [
        e for e in pair.client_events if isinstance(e, RequestFailed | NotificationReceived)
    ]
    cut[0] = False
    pair.server.notify(observations[0], content(b"small"), pair.now)
    pair.pump()
    notes = [e for e in pair.client_events if isinstance(e, NotificationReceived)]
    assert [(e.request_id, e.message.payload) for e in notes] == [(rid, b"small")]
    pair.client.cancel_request(rid, pair.now)
    assert pair.client.pending_requests() == 0

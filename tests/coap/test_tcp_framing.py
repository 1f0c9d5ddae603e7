"""CoAP-over-TCP framing (RFC 8323 3.2, 5): exact bytes, extended lengths, signals, fuzzing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m.coap.codes import Code
from lwm2m.coap.message import Block, Message
from lwm2m.coap.tcp_framing import (
    Abort,
    Capabilities,
    FrameDecoder,
    FrameError,
    Ping,
    Pong,
    Release,
    Signal,
    encode_frame,
    encode_signal,
)


def _decode_all(data: bytes, max_size: int = 1 << 20) -> list[object]:
    return list(FrameDecoder(max_size).feed(data))


def test_get_frame_bytes() -> None:
    msg = Message(Code.GET, token=b"\x01\x02", uri_path=("a", "bc"))
    data = encode_frame(msg)
    # Len 5 (b1 61 02 62 63), TKL 2 | code 0.01 | token | Uri-Path "a", "bc"; no type, no MID
    assert data == bytes.fromhex("52 01 0102 b161 026263".replace(" ", ""))
    assert _decode_all(data) == [msg]


@pytest.mark.parametrize(
    ("payload_len", "head"),
    [
        (11, b"\xc0"),  # 12 = marker + 11: Len in the nibble
        (12, b"\xd0\x00"),  # 13: 1 extended byte, offset 13
        (267, b"\xd0\xff"),  # 268: largest 1-byte form
        (268, b"\xe0\x00\x00"),  # 269: 2 extended bytes, offset 269
        (65803, b"\xe0\xff\xff"),  # 65804: largest 2-byte form
        (65804, b"\xf0\x00\x00\x00\x00"),  # 65805: 4 extended bytes, offset 65805
    ],
)
def test_extended_lengths(payload_len: int, head: bytes) -> None:
    msg = Message(Code.CONTENT, payload=b"x" * payload_len)
    data = encode_frame(msg)
    assert data.startswith(head + bytes((Code.CONTENT,)))
    assert _decode_all(data) == [msg]


def test_frames_split_at_every_byte() -> None:
    msgs = [
        Message(Code.POST, token=b"tok", uri_path=("rd",), uri_query=("ep=a",), payload=b"</1>"),
        Message(Code.CHANGED, token=b"tok", location_path=("rd", "x")),
        Message(Code.CONTENT, token=b"\x09", observe=7, payload=b"y" * 400),
    ]
    stream = b"".join(encode_frame(m) for m in msgs)
    decoder = FrameDecoder(1 << 20)
    got: list[object] = []
    for i in range(len(stream)):
        got.extend(decoder.feed(stream[i : i + 1]))
    assert got == msgs
    assert decoder.buffered == 0


def test_signals_round_trip() -> None:
    signals: list[Signal] = [
        Capabilities(max_message_size=65536, block_wise_transfer=True),
        Capabilities(),
        Ping(b"\x01", custody=True),
        Pong(b"\x01"),
        Release(("coap+tcp://[::1]:5683",), hold_off_s=30, diagnostic="bye"),
        Abort("bad frame", bad_csm_option=None),
        Abort("", bad_csm_option=2),
    ]
    stream = b"".join(encode_signal(s) for s in signals)
    assert _decode_all(stream) == signals


def test_csm_bytes() -> None:
    # Len 4: Max-Message-Size (delta 2, len 2, 0x0480) + Block-Wise-Transfer (delta 2, len 0) | 7.01
    data = encode_signal(Capabilities(1152, True))
    assert data == bytes.fromhex("40e1 220480 20".replace(" ", ""))


def test_empty_frames_are_ignored() -> None:
    stream = b"\x00\x00" + encode_frame(Message(Code.GET, token=b"t")) + b"\x00\x00"
    assert _decode_all(stream) == [Message(Code.GET, token=b"t")]


@pytest.mark.parametrize(
    "data",
    [
        b"\x09\x01" + b"t" * 9,  # TKL 9 is reserved
        b"\x10\x01\x0f",  # reserved option nibble in a request
        b"\x10\x01\xff",  # payload marker without payload
        b"\x10\xe6\xf0",  # unknown signaling code 7.06
        b"\x10\xe1\x10",  # critical unknown CSM option 1
    ],
)
def test_malformed_frames_raise(data: bytes) -> None:
    with pytest.raises(FrameError):
        _decode_all(data)


def test_frame_above_max_message_size_is_refused_before_buffering() -> None:
    decoder = FrameDecoder(1152)
    with pytest.raises(FrameError, match="Max-Message-Size"):
        list(decoder.feed(b"\xf0\x7f\xff\xff\xff"))  # claims ~2 GiB


def test_good_frames_before_a_bad_one_are_delivered() -> None:
    good = encode_frame(Message(Code.GET, token=b"a"))
    decoder = FrameDecoder(1 << 20)
    got: list[object] = []
    with pytest.raises(FrameError):
        for frame in decoder.feed(good + b"\x0f\x01"):
            got.append(frame)
    assert got == [Message(Code.GET, token=b"a")]


_messages = st.builds(
    Message,
    code=st.sampled_from([Code.GET, Code.POST, Code.CONTENT, Code.CHANGED, Code.NOT_FOUND]),
    token=st.binary(max_size=8),
    payload=st.binary(max_size=70000),
    uri_path=st.lists(st.text(max_size=20), max_size=4).map(tuple),
    observe=st.none() | st.integers(0, (1 << 24) - 1),
    content_format=st.none() | st.integers(0, 65535),
    block2=st.none()
    | st.builds(Block, num=st.integers(0, 1000), more=st.booleans(), szx=st.integers(0, 6)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_messages, max_size=4), st.integers(1, 5000))
def test_round_trip_in_any_chunking(msgs: list[Message], chunk: int) -> None:
    stream = b"".join(encode_frame(m) for m in msgs)
    decoder = FrameDecoder(1 << 20)
    got: list[object] = []
    for i in range(0, len(stream), chunk):
        got.extend(decoder.feed(stream[i : i + chunk]))
    assert got == msgs


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_decode_or_raise_frame_error(data: bytes) -> None:
    decoder = FrameDecoder(4096)
    with contextlib.suppress(FrameError):
        for _ in decoder.feed(data):
            pass

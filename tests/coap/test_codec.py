"""Codec: exact wire bytes, every structural error, round trips and fuzzing."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lwm2m.coap.codec import decode, encode, peek_header
from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.errors import MessageFormatError
from lwm2m.coap.message import Block, Message
from lwm2m.coap.options import OPTIONS, OptionNumber, is_critical


def test_minimal_get_bytes() -> None:
    msg = Message(Code.GET, MessageType.CON, 0x1234, b"\x01\x02", uri_path=("a", "bc"))
    data = encode(msg)
    # ver 1, CON, TKL 2 | 0.01 | MID | token | Uri-Path delta 11 len 1 "a" | delta 0 len 2 "bc"
    assert data == bytes.fromhex("4201 1234 0102 b1 61 02 6263".replace(" ", ""))
    assert decode(data) == msg


def test_payload_and_uint_options() -> None:
    msg = Message(
        Code.CONTENT,
        MessageType.ACK,
        7,
        b"",
        b"hi",
        content_format=0,
        max_age=60,
        observe=0x10000,
    )
    data = encode(msg)
    # Observe 3-byte uint; Content-Format 0 is the zero-length uint; Max-Age 60
    assert data == bytes.fromhex("60450007" + "63010000" + "60" + "213c" + "ff6869")
    assert decode(data) == msg


def test_extended_delta_and_length() -> None:
    msg = Message(
        Code.GET,
        proxy_uri="x" * 300,
        size1=5,
        other_options=((2048, b"\x01"),),
    )
    data = encode(msg)
    assert decode(data) == msg
    # Proxy-Uri (35) of 300 bytes: delta nibble 13 + 1 byte (35 - 13),
    # length nibble 14 + 2 bytes (300 - 269)
    assert data[4:8] == bytes((0xDE, 22, 0x00, 31))


def test_overlong_value_is_unrecognised() -> None:
    msg = decode(encode(Message(Code.GET, other_options=((11, b"x" * 300),))))
    assert msg.uri_path == ()
    assert msg.other_options == ((11, b"x" * 300),)


def test_block_option_fields() -> None:
    msg = Message(Code.CONTENT, MessageType.ACK, block2=Block(5, True, 6), size2=9000)
    decoded = decode(encode(msg))
    assert decoded.block2 == Block(5, True, 6)
    assert decoded.block2.size == 1024 and decoded.block2.offset == 5120


def test_empty_message() -> None:
    assert encode(Message(Code.EMPTY, MessageType.ACK, 0xBEEF)) == b"\x60\x00\xbe\xef"
    assert decode(b"\x70\x00\x00\x01") == Message(Code.EMPTY, MessageType.RST, 1)


@pytest.mark.parametrize(
    ("data", "fragment", "offset"),
    [
        (b"", "shorter than the 4-byte header", 0),
        (b"\x40\x01\x00", "shorter than the 4-byte header", 3),
        (b"\x80\x01\x00\x00", "version 2", 0),
        (b"\x49\x01\x00\x00" + b"x" * 9, "token length 9", 0),
        (b"\x44\x01\x00\x00ab", "token of 4 bytes truncated", 6),
        (b"\x40\x01\x00\x00\xff", "payload marker followed by an empty payload", 4),
        (b"\x40\x01\x00\x00\xf1a", "option delta 15 is reserved", 4),
        (b"\x40\x01\x00\x00\xbf", "option length 15 is reserved", 4),
        (b"\x40\x01\x00\x00\xd1", "option delta extension truncated", 5),
        (b"\x40\x01\x00\x00\xe1\x00", "option delta extension truncated", 5),
        (b"\x40\x01\x00\x00\x1d", "option length extension truncated", 5),
        (b"\x40\x01\x00\x00\x1e\x01", "option length extension truncated", 5),
        (b"\x40\x01\x00\x00\xb5abc", "option 11 value of 5 bytes truncated", 8),
        (b"\x41\x00\x00\x00\x01", "empty message", 4),
        (b"\x40\x00\x00\x00\xff\x01", "empty message", 4),
        (b"\x40\x01\x00\x00\xe0\xff\xff", "exceeds 65535", 4),
    ],
)
def test_structural_errors(data: bytes, fragment: str, offset: int) -> None:
    with pytest.raises(MessageFormatError) as info:
        decode(data)
    assert fragment in str(info.value)
    assert info.value.offset == offset


def test_malformed_option_values_become_unrecognised() -> None:
    # Uri-Port (7) with 3 bytes: too long -> raw; critical so the engine rejects it.
    # Content-Format repeated -> the second occurrence is supernumerary.
    # Uri-Path with invalid UTF-8 -> raw.
    data = (
        b"\x40\x01\x00\x00"
        + b"\x73\x01\x02\x03"  # option 7, 3 bytes
        + b"\x41\xff"  # option 11, invalid UTF-8
        + b"\x10"  # option 12 (Content-Format 0)
        + b"\x01\x05"  # option 12 again
    )
    msg = decode(data)
    assert msg.uri_port is None
    assert msg.content_format == 0
    assert msg.other_options == ((7, b"\x01\x02\x03"), (11, b"\xff"), (12, b"\x05"))


def test_reserved_block_szx_is_unrecognised() -> None:
    msg = decode(b"\x40\x01\x00\x00\xd1\x0a\x07")  # Block2 (23) value szx 7
    assert msg.block2 is None
    assert msg.other_options == ((23, b"\x07"),)


def test_peek_header() -> None:
    assert peek_header(b"\x40\x01\x12\x34\xf0") == (1, MessageType.CON, 0x1234)
    assert peek_header(b"\x40") is None


def test_encode_rejects_impossible_messages() -> None:
    with pytest.raises(ValueError, match="token"):
        encode(Message(Code.GET, token=b"123456789"))
    with pytest.raises(ValueError, match="message ID"):
        encode(Message(Code.GET, mid=70000))
    with pytest.raises(ValueError, match="empty message"):
        encode(Message(Code.EMPTY, token=b"a"))


def test_option_registry() -> None:
    assert OptionNumber.URI_PATH.is_critical
    assert not OptionNumber.CONTENT_FORMAT.is_critical
    assert OptionNumber.PROXY_URI.is_unsafe
    assert OptionNumber.SIZE1.is_no_cache_key
    assert is_critical(2049)
    assert OPTIONS[OptionNumber.ETAG].repeatable


# --- property tests -------------------------------------------------------------

_text = st.text(max_size=20).filter(lambda s: len(s.encode()) <= 255)
_uint = st.integers(min_value=0, max_value=0xFFFF)
_block = st.builds(
    Block,
    num=st.integers(min_value=0, max_value=(1 << 20) - 1),
    more=st.booleans(),
    szx=st.integers(min_value=0, max_value=6),
)
_unknown = st.lists(
    st.tuples(
        st.integers(min_value=61, max_value=0xFFFF).filter(lambda n: n not in OPTIONS),
        st.binary(max_size=300),
    ),
    max_size=3,
).map(lambda items: tuple(sorted(items, key=lambda item: item[0])))

messages = st.builds(
    Message,
    code=st.sampled_from(list(Code)[1:]),
    type=st.sampled_from(list(MessageType)),
    mid=st.integers(min_value=0, max_value=0xFFFF),
    token=st.binary(max_size=8),
    payload=st.binary(max_size=64),
    if_match=st.lists(st.binary(max_size=8), max_size=2).map(tuple),
    uri_host=st.none() | _text.filter(bool),
    etag=st.lists(st.binary(min_size=1, max_size=8), max_size=2).map(tuple),
    if_none_match=st.booleans(),
    observe=st.none() | st.integers(min_value=0, max_value=0xFFFFFF),
    uri_port=st.none() | _uint,
    location_path=st.lists(_text, max_size=3).map(tuple),
    uri_path=st.lists(_text, max_size=4).map(tuple),
    content_format=st.none() | _uint,
    max_age=st.none() | st.integers(min_value=0, max_value=0xFFFFFFFF),
    uri_query=st.lists(_text, max_size=3).map(tuple),
    accept=st.none() | _uint,
    location_query=st.lists(_text, max_size=2).map(tuple),
    block2=st.none() | _block,
    block1=st.none() | _block,
    size2=st.none() | st.integers(min_value=0, max_value=0xFFFFFFFF),
    proxy_uri=st.none() | _text.filter(bool),
    proxy_scheme=st.none() | _text.filter(bool),
    size1=st.none() | st.integers(min_value=0, max_value=0xFFFFFFFF),
    other_options=_unknown,
)


@given(messages)
@settings(max_examples=300)
def test_round_trip(msg: Message) -> None:
    assert decode(encode(msg)) == msg


@given(st.binary(max_size=80))
@settings(max_examples=1000)
def test_arbitrary_bytes_decode_or_raise(data: bytes) -> None:
    try:
        msg = decode(data)
    except MessageFormatError as exc:
        assert 0 <= exc.offset <= len(data)
    else:
        # Whatever decodes re-encodes to something that decodes to the same message.
        assert decode(encode(msg)) == msg


@given(messages, st.data())
@settings(max_examples=200)
def test_truncations_never_crash(msg: Message, data: st.DataObject) -> None:
    wire = encode(msg)
    cut = data.draw(st.integers(min_value=0, max_value=len(wire)))
    with contextlib.suppress(MessageFormatError):
        decode(wire[:cut])


def _option_bytes(options: list[tuple[int, bytes]]) -> bytes:
    """RFC 7252 3.1 option encoding, written out plainly (options sorted by number)."""
    out = bytearray()
    last = 0
    for number, value in options:
        nibbles = []
        for field in (number - last, len(value)):
            if field < 13:
                nibbles.append((field, b""))
            elif field < 269:
                nibbles.append((13, bytes((field - 13,))))
            else:
                nibbles.append((14, (field - 269).to_bytes(2, "big")))
        (d, d_ext), (n, n_ext) = nibbles
        out += bytes(((d << 4) | n,)) + d_ext + n_ext + value
        last = number
    return bytes(out)


_STRING_RUNS = {8: "location_path", 11: "uri_path", 15: "uri_query", 20: "location_query"}


@given(
    st.lists(
        st.tuples(
            st.sampled_from(sorted(_STRING_RUNS)),
            # Short and long values, valid text and bytes that are not UTF-8.
            st.one_of(
                st.text(max_size=20).map(str.encode).filter(lambda v: len(v) <= 255),
                st.binary(max_size=20),
            ),
        ),
        max_size=12,
    ).map(lambda options: sorted(options, key=lambda o: o[0]))
)
@settings(max_examples=500)
def test_runs_of_repeated_text_options(options: list[tuple[int, bytes]]) -> None:
    """Each value of a run of Uri-Path, Uri-Query, Location-Path or Location-Query lands
    in its field in order when it is UTF-8, else in other_options (the codec reads a run's
    one-byte-header repeats in one go; a long value or bad text inside a run included)."""
    header = bytes((0x40, int(Code.GET), 0x12, 0x34))
    msg = decode(header + _option_bytes(options))
    expected: dict[str, list[str]] = {field: [] for field in _STRING_RUNS.values()}
    other: list[tuple[int, bytes]] = []
    for number, value in options:
        try:
            expected[_STRING_RUNS[number]].append(value.decode("utf-8"))
        except UnicodeDecodeError:
            other.append((number, value))
    for field, values in expected.items():
        assert getattr(msg, field) == tuple(values), field
    assert msg.other_options == tuple(other)

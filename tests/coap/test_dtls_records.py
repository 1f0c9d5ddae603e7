"""DTLS record framing helpers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lwm2m.coap.dtls_records import (
    RECORD_HEADER_LEN,
    client_hello_random,
    is_client_hello,
    pack_datagrams,
    record_epoch,
    split_records,
)


def record(content_type: int, body: bytes, epoch: int = 0) -> bytes:
    return (
        bytes([content_type, 0xFE, 0xFD])
        + epoch.to_bytes(2, "big")
        + (7).to_bytes(6, "big")
        + len(body).to_bytes(2, "big")
        + body
    )


def test_split_records() -> None:
    a, b, c = record(22, b"\x01hello"), record(20, b"\x01"), record(23, b"x" * 300, epoch=1)
    assert split_records(a + b + c) == [a, b, c]
    assert split_records(b"") == []
    assert split_records(a + b"\x16\xfe") == [a, b"\x16\xfe"]  # truncated tail kept


def test_pack_datagrams_respects_mtu() -> None:
    records = [record(22, bytes(100)) for _ in range(5)]  # 113 bytes each
    datagrams = pack_datagrams(b"".join(records), 250)
    assert [len(d) for d in datagrams] == [226, 226, 113]
    assert b"".join(datagrams) == b"".join(records)
    big = record(22, bytes(400))
    assert pack_datagrams(big, 250) == [big]


@given(st.lists(st.binary(max_size=200), max_size=10), st.integers(min_value=20, max_value=1500))
def test_pack_is_lossless(bodies: list[bytes], mtu: int) -> None:
    stream = b"".join(record(23, body, epoch=1) for body in bodies)
    assert b"".join(pack_datagrams(stream, mtu)) == stream


def test_client_hello_detection() -> None:
    hello = record(22, b"\x01" + bytes(40))
    assert is_client_hello(hello)
    assert not is_client_hello(record(22, b"\x01" + bytes(40), epoch=1))
    assert not is_client_hello(record(22, b"\x02" + bytes(40)))  # ServerHello
    assert not is_client_hello(record(23, b"\x01"))
    assert not is_client_hello(hello[:RECORD_HEADER_LEN])
    assert not is_client_hello(b"\x40\x01\x00\x01")  # plain CoAP
    assert record_epoch(record(23, b"", epoch=3)) == 3
    assert record_epoch(b"\x40\x01\x00\x01") is None


def test_client_hello_random() -> None:
    body = b"\x01" + bytes(11) + b"\xfe\xfd" + bytes(range(32)) + b"\x00"
    assert client_hello_random(record(22, body)) == bytes(range(32))
    assert client_hello_random(record(22, body[:20])) is None
    assert client_hello_random(record(23, body)) is None

"""DTLS record framing: just enough to route datagrams, never to decrypt them.

OpenSSL does all record processing. We only need to (a) cut the byte stream a
memory BIO returns for a handshake flight back into datagrams at record
boundaries, and (b) recognise an epoch-0 ClientHello cheaply, so that anything
else from an unknown address is dropped before OpenSSL allocates state.
"""

from __future__ import annotations

from enum import IntEnum

#: type(1) version(2) epoch(2) sequence_number(6) length(2) - RFC 6347 4.1
RECORD_HEADER_LEN = 13


class ContentType(IntEnum):
    CHANGE_CIPHER_SPEC = 20
    ALERT = 21
    HANDSHAKE = 22
    APPLICATION_DATA = 23


class HandshakeType(IntEnum):
    CLIENT_HELLO = 1
    HELLO_VERIFY_REQUEST = 3


def split_records(stream: bytes) -> list[bytes]:
    """Cut a concatenation of DTLS records into records.

    A truncated tail (which OpenSSL never produces) is returned as one last
    chunk rather than dropped, so nothing is silently lost.
    """
    records: list[bytes] = []
    offset = 0
    total = len(stream)
    while offset < total:
        if total - offset < RECORD_HEADER_LEN:
            records.append(stream[offset:])
            break
        length = int.from_bytes(stream[offset + 11 : offset + 13], "big")
        end = offset + RECORD_HEADER_LEN + length
        records.append(stream[offset:end])
        offset = end
    return records


def pack_datagrams(stream: bytes, mtu: int) -> list[bytes]:
    """Records from ``stream`` grouped into datagrams of at most ``mtu`` bytes.

    DTLS allows several records per datagram (RFC 6347 4.1.1); a record larger
    than ``mtu`` travels alone.
    """
    datagrams: list[bytes] = []
    current = b""
    for record in split_records(stream):
        if current and len(current) + len(record) > mtu:
            datagrams.append(current)
            current = b""
        current += record
    if current:
        datagrams.append(current)
    return datagrams


def record_epoch(data: bytes) -> int | None:
    """The epoch of the first record in a datagram, or None if it is not DTLS-shaped."""
    if (
        len(data) < RECORD_HEADER_LEN
        or data[0] not in ContentType._value2member_map_
        or data[1] != 0xFE
    ):
        return None
    return int.from_bytes(data[3:5], "big")


def is_client_hello(data: bytes) -> bool:
    """Does the datagram start with an epoch-0 handshake record holding a ClientHello?"""
    return (
        len(data) > RECORD_HEADER_LEN
        and data[0] == ContentType.HANDSHAKE
        and data[1] == 0xFE
        and data[3:5] == b"\x00\x00"
        and data[RECORD_HEADER_LEN] == HandshakeType.CLIENT_HELLO
    )


#: handshake header in DTLS: type(1) length(3) message_seq(2) fragment_offset(3) fragment_length(3)
HANDSHAKE_HEADER_LEN = 12


def client_hello_random(data: bytes) -> bytes | None:
    """The 32-byte random of a ClientHello datagram (after client_version), or None."""
    start = RECORD_HEADER_LEN + HANDSHAKE_HEADER_LEN + 2
    if not is_client_hello(data) or len(data) < start + 32:
        return None
    return data[start : start + 32]

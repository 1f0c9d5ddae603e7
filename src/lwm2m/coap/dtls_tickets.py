"""Session-ticket keys shared by server nodes, so any node resumes any node's session.

RFC 5077 tickets hold the whole session (master secret, cipher, the peer's
certificate or PSK identity) encrypted under the server's ticket key; a server
that has the key resumes the session without having seen it. Server nodes
behind one load balancer are given the same keys by a :class:`TicketKeySource`
(the cluster's lives in :mod:`lwm2m.stores.redis_ticket_keys`; this layer knows
no store). Keys rotate: the source lists the current key first, then the
older ones still accepted. The DTLS server keeps one OpenSSL context per key and
hands a ClientHello to the context whose key named its ticket, so a ticket of
the previous key still resumes while new tickets use the current one.

Key material never appears in logs or reprs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from lwm2m.coap.dtls_binding import TICKET_KEYS_LEN
from lwm2m.coap.dtls_records import HANDSHAKE_HEADER_LEN, RECORD_HEADER_LEN, is_client_hello

#: RFC 5077 SessionTicket extension
SESSION_TICKET_EXTENSION = 35
#: OpenSSL starts every ticket with the 16-byte name of the key that sealed it
TICKET_KEY_NAME_LEN = 16


@dataclass(frozen=True, slots=True)
class TicketKey:
    """One ticket key: name (16 bytes) | HMAC-SHA256 key (32) | AES-256 key (32)."""

    material: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.material) != TICKET_KEYS_LEN:
            raise ValueError(f"a ticket key is {TICKET_KEYS_LEN} bytes")

    @property
    def name(self) -> bytes:
        return self.material[:TICKET_KEY_NAME_LEN]


class TicketKeySource(Protocol):
    """Where a DTLS server gets its ticket keys; read on every accepted ClientHello.

    Must answer at once from memory (a networked source refreshes in the
    background). An empty answer means "none yet": the server then uses its
    own node-local key.
    """

    def ticket_keys(self) -> Sequence[TicketKey]:
        """The current key first, then older keys whose tickets are still accepted."""
        ...


def client_hello_ticket_key_name(data: bytes) -> bytes | None:
    """The key name of the session ticket a ClientHello datagram offers, or None.

    Only an unfragmented ClientHello is read; anything malformed is None (the
    server then picks the current key and OpenSSL judges the hello itself).
    """
    if not is_client_hello(data):
        return None
    body_start = RECORD_HEADER_LEN + HANDSHAKE_HEADER_LEN
    header = data[RECORD_HEADER_LEN:body_start]
    if len(header) < HANDSHAKE_HEADER_LEN:
        return None
    length = int.from_bytes(header[1:4], "big")
    if header[6:9] != b"\0\0\0" or int.from_bytes(header[9:12], "big") != length:
        return None
    body = data[body_start : body_start + length]
    if len(body) != length:
        return None
    try:
        return _ticket_key_name(body)
    except IndexError:
        return None


def _ticket_key_name(body: bytes) -> bytes | None:
    at = 2 + 32  # client_version, random
    at += 1 + body[at]  # session_id
    at += 1 + body[at]  # cookie
    at += 2 + int.from_bytes(body[at : at + 2], "big")  # cipher_suites
    at += 1 + body[at]  # compression_methods
    if at + 2 > len(body):
        return None
    end = at + 2 + int.from_bytes(body[at : at + 2], "big")
    at += 2
    while at + 4 <= min(end, len(body)):
        kind = int.from_bytes(body[at : at + 2], "big")
        size = int.from_bytes(body[at + 2 : at + 4], "big")
        at += 4
        if kind == SESSION_TICKET_EXTENSION:
            ticket = body[at : at + size]
            if len(ticket) != size or size < TICKET_KEY_NAME_LEN:
                return None
            return ticket[:TICKET_KEY_NAME_LEN]
        at += size
    return None

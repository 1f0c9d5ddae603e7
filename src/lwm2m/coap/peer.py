"""Who is at the other end of an exchange.

Kept in its own tiny module so the security layer (DTLS) and the roles can
import it without pulling in the engine.
"""

from __future__ import annotations

from lwm2m.coap.values import value_class

Address = tuple[str, int]
"""``(host, port)``; IPv6 socket 4-tuples are cut to their first two items."""


@value_class
class PeerIdentity:
    """What the DTLS handshake proved about the peer."""

    psk_identity: bytes | None = None
    certificate_der: bytes | None = None  # the peer's leaf certificate


@value_class
class Peer:
    """A remote endpoint: its transport address and, on (D)TLS, its proven identity."""

    address: Address
    identity: PeerIdentity | None = None
    #: ``"udp"`` (plain or DTLS) or ``"tcp"`` (plain or TLS, RFC 8323).
    transport: str = "udp"


def normalize_address(address: tuple[object, ...]) -> Address:
    """Cut an IPv6 ``(host, port, flowinfo, scope_id)`` to ``(host, port)``."""
    host, port = address[0], address[1]
    if not isinstance(host, str) or not isinstance(port, int):
        raise TypeError(f"not a socket address: {address!r}")
    return (host, port)

"""The contract between the CoAP endpoint and a security layer (DTLS).

The layer is a sans-I/O object like the CoAP engine: the endpoint feeds it
datagrams and time, sends what it returns, and honours its timer.  Plain UDP
needs no layer at all (``security=None``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from lwm2m.coap.peer import Address, Peer


@dataclass(frozen=True, slots=True)
class SecurityEvent:
    """Base of the events a security layer reports."""

    address: Address


@dataclass(frozen=True, slots=True)
class HandshakeCompleted(SecurityEvent):
    """A session with ``peer`` is up; application data can flow."""

    peer: Peer


@dataclass(frozen=True, slots=True)
class HandshakeFailed(SecurityEvent):
    """No session could be set up with ``address``; queued data was dropped."""

    reason: str


@dataclass(frozen=True, slots=True)
class SessionClosed(SecurityEvent):
    """The session with ``address`` ended (close_notify, fatal alert, expiry)."""

    reason: str = ""


class SecurityLayer(Protocol):
    """What :class:`lwm2m.coap.endpoint.Endpoint` needs from DTLS (or any record layer)."""

    def receive_datagram(
        self, data: bytes, address: Address, now: float
    ) -> list[tuple[bytes, Peer]]:
        """Process one datagram from the network.

        Returns the decrypted application datagrams (each one CoAP message)
        with the peer they were proven to come from.
        """
        ...

    def send(self, plaintext: bytes, address: Address, now: float) -> None:
        """Queue one CoAP message; starts a client handshake when there is no session."""
        ...

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        """Records (handshake or application) ready for the socket."""
        ...

    def next_event(self) -> SecurityEvent | None:
        """The next :class:`HandshakeCompleted`/:class:`HandshakeFailed`/:class:`SessionClosed`."""
        ...

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` wants to run next (monotonic seconds), or None."""
        ...

    def handle_timer(self, now: float) -> None:
        """Retransmit handshake flights, expire sessions."""
        ...

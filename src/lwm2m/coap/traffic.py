"""What an endpoint's socket really carried: datagrams and bytes, both ways.

Counted at the socket edge, so the figures include what the layers above
never see: retransmissions, ACKs and RSTs, every block of a block-wise
transfer, DTLS handshakes, record headers and alerts. Bytes are UDP
payload bytes (IP and UDP headers are not ours to count).

One counter may be handed to several endpoints (a client's plain and DTLS
sockets) so that their total outlives each socket.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class TrafficCounter:
    """Running totals of what was handed to and taken from the socket."""

    datagrams_sent: int = 0
    bytes_sent: int = 0
    datagrams_received: int = 0
    bytes_received: int = 0

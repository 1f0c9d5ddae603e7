"""Transmission parameters (RFC 7252 4.8) and the engine's own limits."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TransmissionParameters:
    """Timing and resource limits of one :class:`~lwm2m.coap.engine.Engine`.

    The first block are RFC 7252 4.8 names with their defaults; the derived
    times of 4.8.2 are properties so that changing ACK_TIMEOUT for a slow
    network (e.g. NB-IoT) moves every lifetime consistently.
    """

    ack_timeout_s: float = 2.0
    ack_random_factor: float = 1.5
    max_retransmit: int = 4
    nstart: int = 1
    default_leisure_s: float = 5.0
    max_latency_s: float = 100.0
    processing_delay_s: float = 2.0

    # Engine limits (not from the RFC).
    separate_response_delay_s: float = 1.0
    """A CON request not answered by the handler within this gets an empty ACK first."""
    response_timeout_s: float | None = None
    """How long to wait for a separate (or NON) response; None = MAX_TRANSMIT_WAIT."""
    block_szx: int = 6
    """Preferred block size exponent (size = 2**(szx+4)); 6 = 1024 bytes."""
    max_body_size: int = 16 * 1024 * 1024
    """Largest body reassembled from blocks, either way (4.13 / RequestEntityTooLarge beyond)."""
    max_block_transfers: int = 256
    """Concurrent incomplete Block1 reassemblies and cached Block2 bodies, each."""
    max_block_memory: int = 64 * 1024 * 1024
    """Bytes all incomplete Block1 reassemblies may hold together (5.03 beyond)."""
    block_transfer_lifetime_s: float | None = None
    """Incomplete transfers and Block2 caches expire after this; None = EXCHANGE_LIFETIME."""
    max_dedup_entries: int = 100_000
    """Bound on remembered (peer, MID) pairs; the oldest are forgotten first beyond it."""

    def __post_init__(self) -> None:
        if self.ack_timeout_s <= 0 or self.ack_random_factor < 1.0:
            raise ValueError("ACK_TIMEOUT must be > 0 and ACK_RANDOM_FACTOR >= 1")
        if self.max_retransmit < 0 or self.nstart < 1:
            raise ValueError("MAX_RETRANSMIT must be >= 0 and NSTART >= 1")
        if not 0 <= self.block_szx <= 6:
            raise ValueError("block_szx must be 0..6")
        if self.max_body_size < 1 or self.max_block_transfers < 1 or self.max_dedup_entries < 1:
            raise ValueError("limits must be positive")

    @property
    def max_transmit_span_s(self) -> float:
        return self.ack_timeout_s * ((1 << self.max_retransmit) - 1) * self.ack_random_factor

    @property
    def max_transmit_wait_s(self) -> float:
        return self.ack_timeout_s * ((1 << (self.max_retransmit + 1)) - 1) * self.ack_random_factor

    @property
    def exchange_lifetime_s(self) -> float:
        return self.max_transmit_span_s + 2 * self.max_latency_s + self.processing_delay_s

    @property
    def non_lifetime_s(self) -> float:
        return self.max_transmit_span_s + self.max_latency_s

    @property
    def effective_response_timeout_s(self) -> float:
        if self.response_timeout_s is not None:
            return self.response_timeout_s
        return self.max_transmit_wait_s

    @property
    def effective_block_lifetime_s(self) -> float:
        if self.block_transfer_lifetime_s is not None:
            return self.block_transfer_lifetime_s
        return self.exchange_lifetime_s

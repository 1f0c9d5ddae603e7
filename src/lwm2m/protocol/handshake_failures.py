"""Failed DTLS handshakes, reported to the role that owns the listener.

The CoAP endpoint only counts failed handshakes; it knows no LwM2M and no
operator. :class:`HandshakeFailureTap` wraps a server's security layer and
passes every :class:`~lwm2m.coap.security_layer.HandshakeFailed` it hands to the
endpoint on to a callback as well (the role's refusal log), so the coap
package stays unchanged and unaware. :func:`classify` turns the layer's free
text into one of a few fixed reason labels for the metric.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lwm2m.coap.peer import Address, Peer
from lwm2m.protocol.refusals import RefusalKind, RefusalLog

if TYPE_CHECKING:
    # The DTLS layer's public names (imported when a DTLS listener is set up).
    from lwm2m.coap.dtls import HandshakeFailed, SecurityEvent, SecurityLayer

#: (prefix or fragment of the layer's reason, label), first match wins.
_LABELS: tuple[tuple[str, str], ...] = (
    ("unknown PSK identity", "unknown_psk_identity"),
    ("is no longer known", "unknown_psk_identity"),
    ("client certificate rejected", "certificate_rejected"),
    ("resumed session of unknown identity", "unknown_identity"),
    ("handshake timed out", "timeout"),
    ("handshake gave up", "timeout"),
    ("replaced by a new handshake", "replaced"),
)


def classify(reason: str) -> str:
    """The ``dtls_handshake`` reason label of a :class:`HandshakeFailed` reason text."""
    for fragment, label in _LABELS:
        if fragment in reason:
            return label
    return "handshake_error"


class HandshakeFailureTap:
    """A :class:`SecurityLayer` that is ``inner``, reporting its failed handshakes."""

    def __init__(self, inner: SecurityLayer, on_failure: Callable[[HandshakeFailed], None]) -> None:
        from lwm2m.coap.dtls import HandshakeFailed

        self.inner = inner
        self._on_failure = on_failure
        self._failed = HandshakeFailed

    def receive_datagram(
        self, data: bytes, address: Address, now: float
    ) -> list[tuple[bytes, Peer]]:
        return self.inner.receive_datagram(data, address, now)

    def send(self, plaintext: bytes, address: Address, now: float) -> None:
        self.inner.send(plaintext, address, now)

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        return self.inner.datagrams_to_send()

    def next_event(self) -> SecurityEvent | None:
        event = self.inner.next_event()
        if isinstance(event, self._failed):
            self._on_failure(event)
        return event

    def get_timer(self) -> float | None:
        return self.inner.get_timer()

    def handle_timer(self, now: float) -> None:
        self.inner.handle_timer(now)


def report_to(refusals: RefusalLog) -> Callable[[HandshakeFailed], None]:
    """The callback that records a failed handshake in ``refusals``."""

    def record(event: HandshakeFailed) -> None:
        refusals.record(
            RefusalKind.DTLS_HANDSHAKE, classify(event.reason), event.reason, event.address
        )

    return record


def tapped(layer: SecurityLayer, refusals: RefusalLog) -> SecurityLayer:
    """``layer`` with its failed handshakes recorded in ``refusals``."""
    return HandshakeFailureTap(layer, report_to(refusals))

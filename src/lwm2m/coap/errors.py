"""CoAP-layer errors.

One base class, :class:`CoapError`, so a role can catch "the CoAP exchange went
wrong" without caring which way.  4.xx/5.xx responses are *not* errors at this
layer: :meth:`Endpoint.request` returns them and the caller decides.
"""

from __future__ import annotations


class CoapError(Exception):
    """Base of every error raised by :mod:`lwm2m.coap`."""


class MessageFormatError(CoapError, ValueError):
    """Bytes that are not a well-formed CoAP message (RFC 7252 section 3).

    ``offset`` is the byte position where decoding gave up, so logs point at
    the offending byte instead of just saying "bad message".
    """

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(f"{reason} (at byte {offset})")
        self.reason = reason
        self.offset = offset


class RequestTimeout(CoapError, TimeoutError):
    """No response arrived in time (retransmissions exhausted or caller's timeout)."""


class ResetReceived(CoapError):
    """The peer answered our message with RST: it rejected or does not know it."""


class ObservationCancelled(CoapError):
    """The observation ended (RST, failed CON notification, deregistration, cancel)."""


class EndpointClosed(CoapError):
    """The endpoint was closed while the operation was pending, or before it began."""


class SecureConnectionFailed(CoapError):
    """The security layer (DTLS) could not establish or keep a session with the peer."""


class RequestEntityTooLarge(CoapError):
    """A block-wise transfer grew beyond the configured maximum body size."""

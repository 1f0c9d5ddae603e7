"""Events the sans-I/O engine reports (``Engine.next_event()``)."""

from __future__ import annotations

from lwm2m.coap.errors import CoapError
from lwm2m.coap.message import Message
from lwm2m.coap.peer import Peer
from lwm2m.coap.values import value_class


@value_class
class Event:
    """Base class of engine events."""


@value_class
class RequestReceived(Event):
    """A complete request (Block1 reassembled) for the application; answer with ``respond``."""

    request_id: int
    message: Message
    peer: Peer


@value_class
class ResponseReceived(Event):
    """The final response to ``send_request``/``observe`` (Block2 reassembled)."""

    request_id: int
    response: Message


@value_class
class RequestFailed(Event):
    """Our request ended without a response (timeout, RST, security failure, too large)."""

    request_id: int
    error: CoapError


@value_class
class NotificationReceived(Event):
    """A fresh notification for a client-side observation (stale ones are dropped)."""

    request_id: int
    message: Message


@value_class
class ClientObservationEnded(Event):
    """The server ended our observation (error code, notification without Observe)."""

    request_id: int
    reason: str


@value_class
class ServerObservationEnded(Event):
    """An observation we serve ended: RST, deregistration, failed CON notification."""

    observation_id: int
    reason: str


@value_class
class NotificationAcknowledged(Event):
    """A confirmable notification (``delivery_id`` from ``notify``) was acknowledged."""

    observation_id: int
    delivery_id: int

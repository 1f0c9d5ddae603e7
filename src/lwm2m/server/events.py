"""The LwM2M server's events; :attr:`LwM2MServer.events` publishes them.

Events are frozen values. They travel on the bus both roles share,
:class:`lwm2m.protocol.events.EventBus` (a subscriber gets each one at most
once, in order, from a bounded buffer); :data:`ServerEventBus` is that bus
typed for these events.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import field
from typing import ClassVar

from lwm2m.coap.values import value_class
from lwm2m.model.nodes import Node
from lwm2m.model.path import Path
from lwm2m.protocol.events import EventBus, Subscription
from lwm2m.server.payloads import TimedValue
from lwm2m.stores.records import ObservationRecord, Registration

__all__ = [
    "AwakeEvent",
    "DeregistrationEvent",
    "EventBus",
    "EventType",
    "NotificationEvent",
    "RegistrationEvent",
    "SendEvent",
    "ServerEvent",
    "ServerEventBus",
    "SleepingEvent",
    "Subscription",
    "UpdatedEvent",
]


class EventType(enum.Enum):
    REGISTRATION = "registration"
    UPDATED = "updated"
    DEREGISTRATION = "deregistration"
    NOTIFICATION = "notification"
    SLEEPING = "sleeping"
    AWAKE = "awake"
    SEND = "send"


@value_class
class ServerEvent:
    """Base of every event; ``endpoint`` is the client's Endpoint Client Name.

    Whatever acts on an event (pushes a bootstrap configuration, drives a device)
    must check ``origin``: a relayed event is the other node's, which acted already.
    """

    type: ClassVar[EventType]
    endpoint: str
    time: float  # wall clock seconds
    #: None: this node published it; else the id of the cluster node it came from
    #: (relayed by :mod:`lwm2m.server.cluster_events`). Keyword-only, and left out of
    #: equality, so a relayed copy equals its original.
    origin: str | None = field(default=None, kw_only=True, compare=False)


@value_class
class RegistrationEvent(ServerEvent):
    """A client registered; ``replaced`` is its previous registration (re-Register)."""

    type: ClassVar[EventType] = EventType.REGISTRATION
    registration: Registration
    replaced: Registration | None = None


@value_class
class UpdatedEvent(ServerEvent):
    type: ClassVar[EventType] = EventType.UPDATED
    previous: Registration
    registration: Registration


@value_class
class DeregistrationEvent(ServerEvent):
    """A registration ended: De-register, lifetime expiry (``expired``) or replacement."""

    type: ClassVar[EventType] = EventType.DEREGISTRATION
    registration: Registration
    expired: bool = False
    replaced: bool = False


@value_class
class NotificationEvent(ServerEvent):
    """A notification of an observation, decoded.

    ``values`` maps each reported path to its node (one entry for a single
    observation). ``content`` is the node of the observed path when it is a
    single observation, else None. ``records`` are the reported values with
    absolute measurement times (SenML relative times resolved against the
    server's clock at reception; see :func:`lwm2m.server.payloads.timed_values`),
    empty for formats without records (TLV, text, opaque).
    """

    type: ClassVar[EventType] = EventType.NOTIFICATION
    observation: ObservationRecord
    values: Mapping[Path, Node]
    content_format: int | None = None
    sequence: int | None = None  # the Observe option value
    confirmable: bool = False
    records: tuple[TimedValue, ...] = ()

    @property
    def content(self) -> Node | None:
        if self.observation.composite:
            return None
        return self.values.get(self.observation.path)


@value_class
class SleepingEvent(ServerEvent):
    """A queue-mode client is considered asleep (its awake time ran out)."""

    type: ClassVar[EventType] = EventType.SLEEPING
    registration_id: str


@value_class
class AwakeEvent(ServerEvent):
    """A queue-mode client showed up; queued requests go out now."""

    type: ClassVar[EventType] = EventType.AWAKE
    registration_id: str


@value_class
class SendEvent(ServerEvent):
    """Data a client pushed with the Send operation (``POST /dp``).

    ``records``: every reported value in payload order with its absolute
    measurement time (relative SenML times resolved at reception), as for
    :class:`NotificationEvent`.
    """

    type: ClassVar[EventType] = EventType.SEND
    registration_id: str
    values: Mapping[Path, Node] = field(default_factory=dict)
    content_format: int | None = None
    records: tuple[TimedValue, ...] = ()


#: The bus of :class:`LwM2MServer` (one implementation for both roles).
ServerEventBus = EventBus[ServerEvent]

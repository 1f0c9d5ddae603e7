"""The LwM2M server role: registration, device management, observation, queue mode.

Public API::

    from lwm2m.server import LwM2MServer, ServerConfig
    async with LwM2MServer(stores, config=ServerConfig(coap_port=0)) as server:
        with server.events.subscribe() as events:
            ...
        response = await server.read("dev-1", "/3/0")
"""

from lwm2m.protocol.errors import RemoteError
from lwm2m.server.errors import (
    ClientNotFound,
    ClientSleeping,
    ClientTimeout,
    InvalidResponse,
    ObservationNotFound,
    QueueFull,
    ServerError,
)
from lwm2m.server.events import (
    AwakeEvent,
    DeregistrationEvent,
    EventBus,
    EventType,
    NotificationEvent,
    RegistrationEvent,
    SendEvent,
    ServerEvent,
    SleepingEvent,
    Subscription,
    UpdatedEvent,
)
from lwm2m.server.operations import (
    CreateResponse,
    DeleteResponse,
    DiscoverResponse,
    ExecuteResponse,
    ObserveCompositeResponse,
    ObserveResponse,
    ReadCompositeResponse,
    ReadResponse,
    WriteAttributesResponse,
    WriteCompositeResponse,
    WriteResponse,
)
from lwm2m.server.server import LwM2MServer, ServerConfig
from lwm2m.stores.records import ObjectLinks, ObservationRecord, RegisteredObject, Registration

__all__ = [
    "AwakeEvent",
    "ClientNotFound",
    "ClientSleeping",
    "ClientTimeout",
    "CreateResponse",
    "DeleteResponse",
    "DeregistrationEvent",
    "DiscoverResponse",
    "EventBus",
    "EventType",
    "ExecuteResponse",
    "InvalidResponse",
    "LwM2MServer",
    "NotificationEvent",
    "ObjectLinks",
    "ObservationNotFound",
    "ObservationRecord",
    "ObserveCompositeResponse",
    "ObserveResponse",
    "QueueFull",
    "ReadCompositeResponse",
    "ReadResponse",
    "RegisteredObject",
    "Registration",
    "RegistrationEvent",
    "RemoteError",
    "SendEvent",
    "ServerConfig",
    "ServerError",
    "ServerEvent",
    "SleepingEvent",
    "Subscription",
    "UpdatedEvent",
    "WriteAttributesResponse",
    "WriteCompositeResponse",
    "WriteResponse",
]

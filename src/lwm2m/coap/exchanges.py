"""The requests and observations one endpoint has in flight, and the engine events that settle them.

The UDP/DTLS :class:`~lwm2m.coap.endpoint.Endpoint` and the TCP/TLS
:class:`~lwm2m.coap.tcp_transport.TcpEndpoint` keep the same three tables and
settle them from the same engine events; one definition keeps a response, a
failure or a notification meaning the same on both transports.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from lwm2m.coap.errors import CoapError
from lwm2m.coap.events import (
    ClientObservationEnded,
    NotificationAcknowledged,
    NotificationReceived,
    RequestFailed,
    ResponseReceived,
    ServerObservationEnded,
)
from lwm2m.coap.message import Message

if TYPE_CHECKING:
    from lwm2m.coap.endpoint import ClientObservation, ServerObservation


class Exchanges:
    """Request futures and observations by id; the endpoint fills them, :meth:`route` settles them.

    The tables are plain dicts the endpoints use directly on their request path,
    so keeping them here costs no call or allocation per request.
    """

    __slots__ = ("client_observations", "pending", "server_observations")

    def __init__(self) -> None:
        self.pending: dict[int, asyncio.Future[Message]] = {}
        self.client_observations: dict[int, ClientObservation] = {}
        self.server_observations: dict[int, ServerObservation] = {}

    def route(self, event: object) -> bool:
        """Settle what ``event`` concerns; False if it is not an exchange event."""
        if isinstance(event, ResponseReceived):
            fut = self.pending.pop(event.request_id, None)
            if fut is not None:
                if not fut.done():
                    fut.set_result(event.response)
            else:
                client_obs = self.client_observations.get(event.request_id)
                if client_obs is not None:
                    client_obs._response(event.response)
                    if not client_obs.active:
                        del self.client_observations[event.request_id]
        elif isinstance(event, RequestFailed):
            fut = self.pending.pop(event.request_id, None)
            if fut is not None:
                if not fut.done():
                    fut.set_exception(event.error)
            else:
                client_obs = self.client_observations.pop(event.request_id, None)
                if client_obs is not None:
                    client_obs._failed(event.error)
        elif isinstance(event, NotificationReceived):
            client_obs = self.client_observations.get(event.request_id)
            if client_obs is not None:
                client_obs._notification(event.message)
        elif isinstance(event, ClientObservationEnded):
            client_obs = self.client_observations.pop(event.request_id, None)
            if client_obs is not None:
                client_obs._end(event.reason)
        elif isinstance(event, NotificationAcknowledged):
            server_obs = self.server_observations.get(event.observation_id)
            if server_obs is not None:
                server_obs._acknowledged(event.delivery_id)
        elif isinstance(event, ServerObservationEnded):
            server_obs = self.server_observations.get(event.observation_id)
            if server_obs is not None:
                server_obs._ended(event.reason)
        else:
            return False
        return True

    def fail_all(self, error: CoapError) -> None:
        """The endpoint is closing: every waiting request and observation learns it."""
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(error)
        for client_obs in list(self.client_observations.values()):
            client_obs._failed(error)
        for server_obs in list(self.server_observations.values()):
            server_obs._ended("endpoint closed", call_back=False)

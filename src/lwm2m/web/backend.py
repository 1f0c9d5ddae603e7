"""What the web layer needs from the LwM2M server and the bootstrap server.

The REST routes, the event stream and the metrics talk to these two
protocols only, never to the roles' classes directly. :mod:`lwm2m.web.adapters`
implements them over :class:`lwm2m.server.LwM2MServer` and
:class:`lwm2m.bootstrap.BootstrapServer`; tests implement them in memory. That
keeps one place where the roles' shapes meet the HTTP shapes, and lets the
routes be tested without sockets.

Failures cross this boundary as the typed errors below, so the routes map
them to HTTP statuses in one place (:mod:`lwm2m.web.errors`).
"""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from lwm2m.coap.codes import Code
from lwm2m.model.nodes import Node
from lwm2m.model.path import Path
from lwm2m.model.registry import ModelRegistry
from lwm2m.security.credentials import SecurityEntry
from lwm2m.server.cluster_nodes import NodeState
from lwm2m.server.operations import Request
from lwm2m.stores.query import RegistrationQuery, RegistrationStats

R = TypeVar("R")

#: JSON-ready data (what ``json.dumps`` accepts).
JsonObject = dict[str, Any]


class BackendError(Exception):
    """Base of the failures a backend reports to the web layer."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnknownClient(BackendError):
    """No registration (or bootstrap configuration) for this endpoint: HTTP 404."""


class InvalidInput(BackendError):
    """The request (path, body, parameter) cannot be sent as asked: HTTP 400."""


class DeviceTimeout(BackendError):
    """The device did not answer in time (or did not wake up): HTTP 504."""


class DeviceError(BackendError):
    """The device answered with a CoAP error code, or the exchange failed: HTTP 502."""

    def __init__(self, message: str, code: Code | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """One CoRE link of a registration or Discover answer: ``</3/0>;ver=1.1``."""

    url: str
    attributes: Mapping[str, str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """A registration as the web layer shows it."""

    endpoint: str
    registration_id: str
    address: str  # "host:port"
    lifetime_s: int
    lwm2m_version: str
    binding: str
    queue_mode: bool
    registered_at: datetime.datetime
    last_update: datetime.datetime
    links: tuple[LinkInfo, ...] = ()
    endpoint_type: int | None = None
    sms_number: str | None = None
    root_path: str = "/"
    secure: bool = False
    sleeping: bool = False
    #: how the client registered and is reached: coap, coaps, coap+tcp or coaps+tcp
    transport: str = "coap"


@dataclass(frozen=True, slots=True)
class ClientPage:
    """One page of the client list and how many clients match in all."""

    total: int
    items: tuple[ClientInfo, ...]


@dataclass(frozen=True, slots=True)
class FleetStats:
    """The fleet overview: the store's counts plus what only the server knows.

    ``refusals_total`` counts refused Registers and failed DTLS handshakes
    (None: the server keeps no count); ``refusals_per_minute`` has the shape
    of ``registrations.registered_per_minute``.
    """

    registrations: RegistrationStats
    sleeping: int
    refusals_total: float | None = None
    refusals_per_minute: tuple[tuple[float, int], ...] = ()


@dataclass(frozen=True, slots=True)
class DeviceResponse:
    """A device's successful answer (error codes arrive as :class:`DeviceError`)."""

    code: Code
    node: Node | None = None
    #: Read-Composite answers: each requested path and what came back for it.
    composite: Mapping[Path, Node | None] | None = None
    #: Discover answers.
    links: tuple[LinkInfo, ...] | None = None
    #: Create answers: the new instance's path (Location-Path), when given.
    location: str | None = None


@dataclass(frozen=True, slots=True)
class WebEvent:
    """One server-sent event: ``kind`` is the SSE event name (``REGISTRATION`` ...)."""

    kind: str
    endpoint: str | None
    data: JsonObject


#: One server node as the cluster registry knows it (None: it did not say): the registry's
#: own record, as the routes need every field of it.
ClusterNode = NodeState


class ClusterView(Protocol):
    """The nodes sharing the server's store: ``GET /api/cluster``, cluster metrics, UI panel."""

    @property
    def node_id(self) -> str:
        """This node's id."""
        ...

    @property
    def shared(self) -> bool:
        """True when the store is shared with other nodes (Redis)."""
        ...

    async def nodes(self) -> Sequence[ClusterNode]:
        """Every known node, alive or gone (this one alone without a shared store)."""
        ...


class DeviceManager(Protocol):
    """The LwM2M server seen from the REST API."""

    @property
    def model(self) -> ModelRegistry:
        """The object model values are typed with, before anything is sent."""
        ...

    async def list_clients(self) -> Sequence[ClientInfo]:
        """Every registration (the routes sort them)."""
        ...

    def get_client(self, endpoint: str) -> ClientInfo | None:
        """One registration this node holds in memory (in a cluster, not the fleet)."""
        ...

    async def fetch_client(self, endpoint: str) -> ClientInfo | None:
        """One registration of the fleet; None makes the routes answer 404."""
        ...

    async def query_clients(self, query: RegistrationQuery, *, sleeping: bool | None) -> ClientPage:
        """One page of the client list, answered by the store's index (no full list built).

        ``sleeping`` filters on the queue's state, which the store does not hold.
        """
        ...

    async def fleet_stats(self) -> FleetStats:
        """Counts for the overview (``GET /api/stats``), without listing the clients."""
        ...

    async def send(self, endpoint: str, request: Request[R], timeout: float) -> R:
        """Send any typed request to the device and return its typed response.

        One method for every device operation (Read, Write, Observe, Cancel
        Observation, ...): a new operation is a new request class and its
        route, the backends pass it through unchanged. Failures arrive as
        the typed errors above; ``timeout`` bounds the whole operation,
        including the wait for a sleeping queue-mode client.
        """
        ...

    def events(self, endpoint: str | None) -> AsyncIterator[WebEvent]:
        """Events until the iterator is closed (``aclose``) or the server stops.

        For one ``endpoint`` it may also carry that client's CoAP messages (COAPLOG).
        """
        ...

    # -- security store -------------------------------------------------------

    def list_security(self) -> Sequence[SecurityEntry]:
        """The security store's entries."""
        ...

    def get_security(self, endpoint: str) -> SecurityEntry | None:
        """One entry, or None."""
        ...

    async def put_security(self, entry: SecurityEntry) -> None:
        """Add or replace; raises :class:`InvalidInput` (e.g. PSK identity in use)."""
        ...

    async def delete_security(self, endpoint: str) -> bool:
        """True when there was an entry to delete."""
        ...

    def counters(self) -> Mapping[str, float]:
        """Server-side counters for /metrics (e.g. ``dtls_handshakes_total``), may be empty."""
        ...


class BootstrapManager(Protocol):
    """The bootstrap server seen from the REST API.

    Configurations travel as JSON objects in the bootstrap server's own file
    format (its parser validates them and reports :class:`InvalidInput`).
    """

    async def list_configs(self) -> Mapping[str, JsonObject]:
        """Every configuration by endpoint, secrets redacted."""
        ...

    async def get_config(self, endpoint: str) -> JsonObject | None:
        """One configuration (secrets redacted), or None."""
        ...

    async def put_config(self, endpoint: str, config: JsonObject) -> JsonObject:
        """Validate and store; returns the stored configuration as JSON."""
        ...

    async def delete_config(self, endpoint: str) -> bool:
        """True when there was a configuration to delete."""
        ...

    async def sessions(self, endpoint: str | None) -> Sequence[JsonObject]:
        """Session history, of one endpoint when given."""
        ...

    async def push(self, endpoint: str, address: tuple[str, int], *, timeout: float) -> JsonObject:
        """Server-initiated bootstrap; the session result, or DeviceError/DeviceTimeout."""
        ...

    def events(self, endpoint: str | None) -> AsyncIterator[WebEvent]:
        """Bootstrap events until the iterator is closed."""
        ...

    def counters(self) -> Mapping[str, float]:
        """Bootstrap counters for /metrics (may be empty)."""
        ...

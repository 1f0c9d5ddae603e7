"""Pydantic models of the REST API: what ``/openapi.json`` documents.

Field names follow Leshan's demo server where it has them (``endpoint``,
``registrationId``, ``registrationDate``, ``lastUpdate``, ``lwM2mVersion``,
``bindingMode``, ``objectLinks``, ``queuemode``, ``status``, ``content``) so
scripts written against it keep working; the rest is ours and documented.
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorBody(BaseModel):
    """Every non-2xx answer of the API."""

    message: str = Field(description="What went wrong, for a human.")
    status: str | None = Field(
        default=None, description="CoAP response name when the device answered, e.g. NOT_FOUND."
    )
    code: str | None = Field(default=None, description="CoAP response code, e.g. 4.04.")


class Link(BaseModel):
    """One CoRE link of a registration or Discover answer."""

    url: str = Field(description="Link target, e.g. /3/0.")
    attributes: dict[str, str | None] = Field(
        default_factory=dict, description="Link parameters (ver, dim, pmin ...); null = no value."
    )


class Client(BaseModel):
    """A registered LwM2M client."""

    model_config = ConfigDict(populate_by_name=True)

    endpoint: str
    endpointType: int | None = Field(default=None, description="ept registration parameter.")
    registrationId: str
    address: str = Field(description="host:port the client registered from.")
    lifetime: int = Field(description="Registration lifetime in seconds.")
    lwM2mVersion: str
    bindingMode: str
    queuemode: bool
    sleeping: bool = Field(description="Queue-mode client currently not reachable.")
    secure: bool = Field(description="Registered over DTLS or TLS.")
    transport: str = Field(
        default="coap",
        description="The URI scheme the client registered over and is reached by:"
        " coap, coaps (UDP, DTLS), coap+tcp or coaps+tcp (RFC 8323).",
    )
    smsNumber: str | None = None
    rootPath: str = "/"
    registrationDate: datetime.datetime
    lastUpdate: datetime.datetime
    objectLinks: list[Link]


class ClientPageSchema(BaseModel):
    """One page of ``GET /api/clients`` (when any paging, search or filter parameter is given)."""

    total: int = Field(description="Clients matching the search and filters, in all.")
    offset: int
    limit: int
    items: list[Client]


class MinuteCount(BaseModel):
    """Registrations of one minute."""

    minute: datetime.datetime
    count: int


class Stats(BaseModel):
    """The fleet overview (``GET /api/stats``)."""

    registrations: int
    states: dict[str, int] = Field(description="awake, sleeping, queueMode, secure.")
    bindings: dict[str, int]
    lwm2mVersions: dict[str, int]
    registrationsPerMinute: list[MinuteCount] = Field(
        description="Live registrations by the minute of their Register, last 60 minutes."
    )
    refusalsTotal: float | None = Field(
        description="Refused Registers and failed DTLS handshakes since start "
        "(null: the server counts none)."
    )
    refusalsPerMinute: list[MinuteCount] = Field(
        description="Refusals by minute, last 60 minutes (from the refusal log's bounded memory)."
    )


class DeviceResult(BaseModel):
    """A device's answer to an operation."""

    status: str = Field(description="CoAP response name, e.g. CONTENT, CHANGED.")
    code: str = Field(description="CoAP response code, e.g. 2.05.")
    success: bool = True
    valid: bool = True
    failure: bool = False
    content: Any | None = Field(
        default=None, description="Read/Observe: the node as JSON (see docs/rest-api.md)."
    )
    compositeContent: dict[str, Any] | None = Field(
        default=None, description="Read-Composite: node JSON by requested path (null = absent)."
    )
    objectLinks: list[Link] | None = Field(default=None, description="Discover: the links.")
    location: str | None = Field(default=None, description="Create: the new instance's path.")


class CancelResult(BaseModel):
    """The answer of a cancel: 0 means nothing matched (not an error)."""

    cancelled: int = Field(description="How many observations were cancelled.")


class ExecuteBody(BaseModel):
    """Optional JSON body of Execute; a plain-text body is taken as the arguments too."""

    arguments: str | None = Field(default=None, description="e.g. 0='v1',1")


#: Leshan's Jackson reads some text fields with ``asText``: a number is its decimal text.
_NumberAsText = Annotated[int, Field(strict=True, ge=0, le=2**63 - 1)]


class PskBody(BaseModel):
    """Pre-shared key credentials; the key travels hex-encoded."""

    identity: Annotated[str, Field(min_length=1, max_length=128)] | _NumberAsText = Field(
        description="PSK identity; a number is taken as its decimal text (as Leshan does)."
    )
    key: str = Field(description="Hex-encoded key.", pattern="^([0-9a-fA-F]{2}){1,64}$")


class X509Body(BaseModel):
    """Certificate expectations: a pinned certificate, or CAs plus required names."""

    certificate: str | None = Field(default=None, description="PEM: direct trust.")
    ca: list[str] = Field(default_factory=list, description="PEM CAs for this endpoint.")
    names: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="Required CN/SAN values."
    )


class LeshanTls(BaseModel):
    """Leshan 2.x's ``{"mode": "psk", "details": {"identity": ..., "key": ...}}``."""

    mode: str = Field(description="psk or x509 (rpk is not supported).", max_length=10)
    details: dict[str, Any] = Field(default_factory=dict)


class SecurityBody(BaseModel):
    """A security store entry (the ``--security`` file format).

    Leshan's shapes are accepted too: ``"x509": true`` and ``"tls": {...}``;
    as its Jackson reads ``endpoint`` with ``asText``, a number is its decimal text.
    """

    endpoint: Annotated[str, Field(min_length=1, max_length=255)] | _NumberAsText = Field(
        description="Endpoint Client Name; a number is taken as its decimal text."
    )
    psk: PskBody | None = None
    x509: X509Body | bool | None = None
    tls: LeshanTls | None = None


class SecurityView(BaseModel):
    """A stored entry as returned: PSK keys are never echoed back."""

    endpoint: str
    psk: dict[str, str] | None = Field(
        default=None, description="{'identity': ...}; the key is write-only."
    )
    x509: dict[str, Any] | None = None


class BootstrapSession(BaseModel):
    """A bootstrap session record; open-ended so new fields need no schema change."""

    model_config = ConfigDict(extra="allow")


class PushResult(BaseModel):
    """The outcome of a server-initiated bootstrap (a session record)."""

    model_config = ConfigDict(extra="allow")


class ServerInfo(BaseModel):
    """What this process serves."""

    name: str = "lwm2m"
    version: str
    lwm2mServer: bool
    bootstrapServer: bool
    authRequired: bool


class ResourceSpec(BaseModel):
    """One resource of an object definition, as the UI needs it to build forms."""

    id: int
    name: str
    operations: str = Field(description="R, W, RW, E or empty.")
    multiple: bool
    mandatory: bool
    type: str = Field(
        description="String, Integer, Unsigned Integer, Float, Boolean, Opaque, Time, Objlnk, Corelnk, None."
    )
    range: str = ""
    units: str = ""
    description: str = ""
    enumeration: list[str] = Field(default_factory=list)


class ObjectSpec(BaseModel):
    """An object definition from the server's model (core objects, DDF files)."""

    id: int
    name: str
    version: str
    multiple: bool
    mandatory: bool
    description: str = ""
    resources: list[ResourceSpec]


class ClusterNode(BaseModel):
    """One server node of the cluster (``GET /api/cluster``)."""

    id: str = Field(description="The node's --node-id.")
    alive: bool = Field(description="Its heartbeat key exists (last beat under 3 intervals ago).")
    self_: bool = Field(alias="self", description="This is the node that answered.")
    http: str | None = Field(description="Base URL of its REST API and web UI, if it serves one.")
    coap: str | None = Field(description="host:port of its CoAP (UDP) endpoint.")
    started: float | None = Field(description="When it started, Unix seconds.")
    heartbeat: float | None = Field(description="Its last heartbeat, Unix seconds.")
    heartbeatAge: float | None = Field(description="Seconds since its last heartbeat.")
    owned: int | None = Field(
        description="Registrations it owns (reg:owner): it received their last Register or "
        "Update. Null without a shared store."
    )

    model_config = ConfigDict(populate_by_name=True)


class Cluster(BaseModel):
    """The nodes sharing this server's store; one node (this one) without Redis."""

    node: str = Field(description="The id of the node that answered.")
    shared: bool = Field(description="The store is shared with other nodes (Redis).")
    nodes: list[ClusterNode] = Field(description="Every known node, alive or gone, by id.")

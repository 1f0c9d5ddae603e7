"""Campaigns as data: what an operator asked for, where it stands, and how it is stored.

A campaign is one document in the ``campaigns`` namespace of the
:class:`~lwm2m.stores.base.DocumentStore` and one document per device in
``campaign-devices`` (key ``<campaign id>/<endpoint>``), so that the memory,
SQLite and Redis stores keep campaigns alike and a device's progress is one
small write, not a rewrite of a 10,000-device document.
"""

from __future__ import annotations

import enum
import fnmatch
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from lwm2m.model.path import Path, PathError
from lwm2m.server.firmware.campaign_machine import TERMINAL, DeviceRecord, Method, Phase
from lwm2m.stores.base import DocumentStore

CAMPAIGNS = "campaigns"
DEVICES = "campaign-devices"

DEFAULT_CONCURRENCY = 10
DEFAULT_TIMEOUT_S = 300.0
DEFAULT_RETRIES = 1
MAX_CONCURRENCY = 10_000
MAX_TIMEOUT_S = 7 * 86_400.0
MAX_RETRIES = 10
MAX_DEVICES = 100_000


class CampaignError(ValueError):
    """A refused request about campaigns; ``status`` is the HTTP answer of the REST API."""

    status: ClassVar[int] = 400


class CampaignNotFound(CampaignError):
    status = 404


class CampaignConflict(CampaignError):
    status = 409


class CorruptedImage(CampaignError):
    status = 422


class CampaignState(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    FINISHED = "finished"


@dataclass(frozen=True, slots=True)
class CampaignSpec:
    """What the operator asked for (``POST /api/campaigns``), checked."""

    firmware: str
    method: Method = Method.PUSH
    endpoints: tuple[str, ...] | None = None
    filter: Mapping[str, str] | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    timeout_s: float = DEFAULT_TIMEOUT_S
    retries: int = DEFAULT_RETRIES

    @property
    def endpoint_pattern(self) -> str:
        return (self.filter or {}).get("endpoint", "*")

    @property
    def required_values(self) -> dict[str, str]:
        """The filter's resource paths and the value each must have on the device."""
        return {k: v for k, v in (self.filter or {}).items() if k != "endpoint"}

    def selects(self, endpoint: str) -> bool:
        """Whether a registered ``endpoint`` is in the campaign (resource values checked later)."""
        if self.endpoints is not None:
            return endpoint in self.endpoints
        return fnmatch.fnmatchcase(endpoint, self.endpoint_pattern)

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "firmware": self.firmware,
            "method": self.method.value,
            "concurrency": self.concurrency,
            "timeout": self.timeout_s,
            "retries": self.retries,
        }
        if self.endpoints is not None:
            doc["endpoints"] = list(self.endpoints)
        if self.filter is not None:
            doc["filter"] = dict(self.filter)
        return doc

    @classmethod
    def parse(cls, body: object) -> CampaignSpec:
        """The spec of a request body; :class:`CampaignError` names the first wrong field."""
        if not isinstance(body, Mapping):
            raise CampaignError("the body must be a JSON object")
        known = {"firmware", "endpoints", "filter", "method", "concurrency", "timeout", "retries"}
        unknown = sorted(str(k) for k in body if k not in known)
        if unknown:
            raise CampaignError(f"unknown field(s): {', '.join(unknown)}")
        firmware = body.get("firmware")
        if not isinstance(firmware, str) or not firmware:
            raise CampaignError("firmware: the id of an uploaded image is required")
        endpoints = body.get("endpoints")
        filter_ = body.get("filter")
        if (endpoints is None) == (filter_ is None):
            raise CampaignError("give either endpoints (a list of names) or filter (an object)")
        method_text = body.get("method", "push")
        try:
            method = Method(method_text)
        except ValueError:
            raise CampaignError("method: one of push, coap, http") from None
        return cls(
            firmware=firmware,
            method=method,
            endpoints=None if endpoints is None else _endpoints(endpoints),
            filter=None if filter_ is None else _filter(filter_),
            concurrency=_integer(body, "concurrency", DEFAULT_CONCURRENCY, 1, MAX_CONCURRENCY),
            timeout_s=_number(body, "timeout", DEFAULT_TIMEOUT_S, MAX_TIMEOUT_S),
            retries=_integer(body, "retries", DEFAULT_RETRIES, 0, MAX_RETRIES),
        )

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> CampaignSpec:
        return cls.parse(doc)


@dataclass(slots=True)
class Campaign:
    """A campaign and its devices (the records the drivers replace as they go)."""

    id: str
    spec: CampaignSpec
    version: str  # the image's version, what /3/0/3 must say afterwards
    image_name: str
    created: float
    state: CampaignState = CampaignState.RUNNING
    finished: float | None = None
    error: str = ""
    devices: dict[str, DeviceRecord] = field(default_factory=dict)

    @staticmethod
    def new_id() -> str:
        return secrets.token_hex(6)

    def totals(self) -> dict[str, int]:
        counts = {phase.value: 0 for phase in Phase}
        for record in self.devices.values():
            counts[record.phase.value] += 1
        counts["total"] = len(self.devices)
        counts["done"] = sum(1 for r in self.devices.values() if r.phase in TERMINAL)
        return counts

    def summary(self) -> dict[str, Any]:
        """The campaign without its device list (``GET /api/campaigns``, SSE progress)."""
        return {
            "id": self.id,
            **self.spec.to_json(),
            "firmwareName": self.image_name,
            "version": self.version,
            "state": self.state.value,
            "created": self.created,
            "finished": self.finished,
            "error": self.error,
            "totals": self.totals(),
        }

    def to_json(self) -> dict[str, Any]:
        """The stored document: the summary's fields without the derived totals."""
        doc = self.summary()
        del doc["totals"]
        doc["spec"] = self.spec.to_json()
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Campaign:
        return cls(
            id=str(doc["id"]),
            spec=CampaignSpec.from_json(doc["spec"]),
            version=str(doc["version"]),
            image_name=str(doc.get("firmwareName", "")),
            created=float(doc["created"]),
            state=CampaignState(doc.get("state", "running")),
            finished=None if doc.get("finished") is None else float(doc["finished"]),
            error=str(doc.get("error", "")),
        )


class CampaignStore:
    """Campaign documents in a :class:`DocumentStore` (memory, SQLite or Redis)."""

    def __init__(self, documents: DocumentStore) -> None:
        self.documents = documents

    async def save(self, campaign: Campaign) -> None:
        await self.documents.put(CAMPAIGNS, campaign.id, campaign.to_json())

    async def save_device(self, campaign_id: str, record: DeviceRecord) -> None:
        await self.documents.put(DEVICES, f"{campaign_id}/{record.endpoint}", record.to_json())

    async def load_campaign(self, campaign_id: str) -> Campaign | None:
        """One campaign's document, without its devices (a cluster node re-reads it)."""
        doc = await self.documents.get(CAMPAIGNS, campaign_id)
        return None if doc is None else Campaign.from_json(doc)

    async def load_device(self, campaign_id: str, endpoint: str) -> DeviceRecord | None:
        doc = await self.documents.get(DEVICES, f"{campaign_id}/{endpoint}")
        return None if doc is None else DeviceRecord.from_json(doc)

    async def load_devices(self, campaign_id: str) -> dict[str, DeviceRecord]:
        """Every device record of one campaign (a campaign created on another node)."""
        records: dict[str, DeviceRecord] = {}
        for key, doc in await self.documents.items(DEVICES):
            if key.partition("/")[0] == campaign_id:
                record = DeviceRecord.from_json(doc)
                records[record.endpoint] = record
        return records

    async def load_campaigns(self) -> list[Campaign]:
        """Every campaign's document, without devices (what ``in_use`` needs)."""
        return [Campaign.from_json(doc) for _key, doc in await self.documents.items(CAMPAIGNS)]

    async def load(self) -> list[Campaign]:
        """Every stored campaign with its devices, oldest first."""
        campaigns: dict[str, Campaign] = {}
        for _key, doc in await self.documents.items(CAMPAIGNS):
            campaign = Campaign.from_json(doc)
            campaigns[campaign.id] = campaign
        for key, doc in await self.documents.items(DEVICES):
            campaign_id, _, _endpoint = key.partition("/")
            owner = campaigns.get(campaign_id)
            if owner is not None:
                record = DeviceRecord.from_json(doc)
                owner.devices[record.endpoint] = record
        return sorted(campaigns.values(), key=lambda c: (c.created, c.id))


# ===================================================================== Private
def _endpoints(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise CampaignError("endpoints: a non-empty list of endpoint names")
    if len(value) > MAX_DEVICES:
        raise CampaignError(f"endpoints: at most {MAX_DEVICES} devices")
    names: list[str] = []
    for name in value:
        if not isinstance(name, str) or not name or len(name) > 255 or "/" in name:
            raise CampaignError(f"endpoints: {name!r} is not an endpoint name")
        names.append(name)
    if len(set(names)) != len(names):
        raise CampaignError("endpoints: a name appears twice")
    return tuple(names)


def _filter(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise CampaignError(
            'filter: an object such as {"endpoint": "meter-*", "/3/0/1": "Model X"}'
        )
    checked: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(item, str):
            raise CampaignError(f"filter: the value of {key!r} must be a string")
        if key == "endpoint":
            checked[key] = item
            continue
        try:
            path = Path.parse(str(key))
        except PathError as exc:
            raise CampaignError(f"filter: {exc}") from None
        if not path.is_resource:
            raise CampaignError(f"filter: {key!r} is neither endpoint nor a resource path")
        checked[str(path)] = item
    return checked


def _integer(body: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise CampaignError(f"{name}: an integer from {low} to {high}")
    return value


def _number(body: Mapping[str, Any], name: str, default: float, high: float) -> float:
    value = body.get(name, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= high
    ):
        raise CampaignError(f"{name}: seconds, more than 0 and at most {high:g}")
    return float(value)

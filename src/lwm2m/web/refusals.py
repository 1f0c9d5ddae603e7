"""Recent refusals for the REST API and ``/metrics``, read from the roles' refusal logs.

The LwM2M server and the bootstrap server each keep a
:class:`lwm2m.protocol.refusals.RefusalLog`; in ``lwm2m server`` both run, and
an endpoint refused by both shows up once here, its refusals merged. The web
layer only reads: :class:`RefusalSource` is the part of a log it uses (tests
may pass their own).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel, Field

from lwm2m.protocol.refusals import (
    REASONS,
    EndpointRefusals,
    Refusal,
    RefusalKind,
    format_address,
)
from lwm2m.web.metrics import LabelledCounter

#: Most refusals listed per endpoint after merging the sources.
RECENT_PER_ENDPOINT = 5


class RefusalSource(Protocol):
    """What the web layer reads from a role's refusal log."""

    @property
    def service(self) -> str: ...

    @property
    def kinds(self) -> tuple[RefusalKind, ...]: ...

    def counts(self) -> Mapping[tuple[RefusalKind, str], int]: ...

    def endpoints(self) -> list[tuple[str, EndpointRefusals]]: ...

    def unnamed(self) -> list[Refusal]: ...


class RefusalView(BaseModel):
    """One refusal."""

    kind: str = Field(description="register, bootstrap or dtls_handshake.")
    reason: str = Field(description="The metric's reason label, e.g. conflict.")
    summary: str = Field(description="The reason in words.")
    message: str = Field(description="What the peer was told (4.xx diagnostic) or the TLS error.")
    code: str | None = Field(description="CoAP code answered, e.g. 4.09; null for a handshake.")
    address: str = Field(description="host:port the request or handshake came from.")
    identity: str | None = Field(description="psk:<identity> or x509:<subject>; null on NoSec.")
    endpoint: str | None = Field(description="Endpoint name asked for; null for a handshake.")
    service: str = Field(description="Which listener refused: server or bootstrap.")
    time: datetime.datetime


class EndpointRefusalsView(BaseModel):
    """The recent refusals of one endpoint name."""

    endpoint: str
    registered: bool = Field(description="The name has a registration now.")
    count: int = Field(description="Refusals remembered for this name (may exceed `recent`).")
    last: RefusalView
    recent: list[RefusalView] = Field(description="Newest first.")


class RefusalsView(BaseModel):
    """Recent refusals, most recent first."""

    endpoints: list[EndpointRefusalsView]
    unnamed: list[RefusalView] = Field(
        description="Refusals naming no endpoint: failed DTLS handshakes, requests without ep."
    )


@dataclass(frozen=True, slots=True)
class _Merged:
    endpoint: str
    count: int
    recent: list[Refusal]


def refusal_view(refusal: Refusal) -> RefusalView:
    return RefusalView(
        kind=refusal.kind.value,
        reason=refusal.reason,
        summary=refusal.summary,
        message=refusal.message,
        code=refusal.code,
        address=format_address(refusal.address),
        identity=refusal.identity,
        endpoint=refusal.endpoint,
        service=refusal.service,
        time=datetime.datetime.fromtimestamp(refusal.time, datetime.UTC),
    )


def _merge(sources: Iterable[RefusalSource]) -> list[_Merged]:
    merged: dict[str, _Merged] = {}
    for source in sources:
        for name, entry in source.endpoints():
            previous = merged.get(name)
            recent = list(entry.recent) + (previous.recent if previous else [])
            recent.sort(key=lambda r: r.time, reverse=True)
            merged[name] = _Merged(
                name,
                entry.count + (previous.count if previous else 0),
                recent[:RECENT_PER_ENDPOINT],
            )
    return sorted(merged.values(), key=lambda m: m.recent[0].time, reverse=True)


def recent_refusals(
    sources: Sequence[RefusalSource],
    *,
    is_registered: Callable[[str], bool],
    endpoint: str | None = None,
    search: str | None = None,
    limit: int = 20,
) -> RefusalsView:
    """The refused endpoints (exactly ``endpoint``, or names containing ``search``) and the
    refusals that name no endpoint.

    ``search`` is case-insensitive; refusals without a name (failed handshakes)
    match it on their address, identity or message (an unknown PSK identity is
    named in the message).
    """
    needle = search.lower() if search else None
    endpoints: list[EndpointRefusalsView] = []
    for entry in _merge(sources):
        if endpoint is not None and entry.endpoint != endpoint:
            continue
        if needle is not None and needle not in entry.endpoint.lower():
            continue
        views = [refusal_view(r) for r in entry.recent]
        endpoints.append(
            EndpointRefusalsView(
                endpoint=entry.endpoint,
                registered=is_registered(entry.endpoint),
                count=entry.count,
                last=views[0],
                recent=views,
            )
        )
        if len(endpoints) >= limit:
            break
    unnamed: list[Refusal] = []
    if endpoint is None:
        for source in sources:
            unnamed.extend(source.unnamed())
        unnamed.sort(key=lambda r: r.time, reverse=True)
        if needle is not None:
            unnamed = [
                r
                for r in unnamed
                if needle in format_address(r.address).lower()
                or needle in (r.identity or "").lower()
                or needle in r.message.lower()
            ]
    return RefusalsView(endpoints=endpoints, unnamed=[refusal_view(r) for r in unnamed[:limit]])


#: The metric family of each kind of refusal.
FAMILIES: Mapping[RefusalKind, tuple[str, str]] = {
    RefusalKind.REGISTER: (
        "lwm2m_registrations_rejected_total",
        "Register requests refused, by reason.",
    ),
    RefusalKind.BOOTSTRAP: (
        "lwm2m_bootstrap_rejected_total",
        "Request Bootstrap requests refused, by reason.",
    ),
    RefusalKind.DTLS_HANDSHAKE: (
        "lwm2m_dtls_handshake_failures_total",
        "DTLS handshakes that failed, by listener (server, bootstrap) and reason.",
    ),
}


def refusal_counters(sources: Sequence[RefusalSource]) -> list[LabelledCounter]:
    """The refusal metric families, every reason present (0 until it happens)."""
    families: list[LabelledCounter] = []
    for kind, (name, help_text) in FAMILIES.items():
        reporting = [s for s in sources if kind in s.kinds]
        if not reporting:
            continue
        samples: list[tuple[dict[str, str], float]] = []
        for source in reporting:
            counts = source.counts()
            for reason in REASONS[kind]:
                labels = {"reason": reason}
                if kind is RefusalKind.DTLS_HANDSHAKE:
                    labels = {"service": source.service, "reason": reason}
                samples.append((labels, float(counts.get((kind, reason), 0))))
        if kind is not RefusalKind.DTLS_HANDSHAKE:
            samples = _summed(samples)
        families.append(LabelledCounter(name, help_text, samples))
    return families


def _summed(samples: list[tuple[dict[str, str], float]]) -> list[tuple[dict[str, str], float]]:
    """One sample per reason when two sources report the same kind."""
    totals: dict[str, float] = {}
    for labels, value in samples:
        totals[labels["reason"]] = totals.get(labels["reason"], 0.0) + value
    return [({"reason": reason}, value) for reason, value in totals.items()]

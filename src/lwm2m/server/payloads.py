"""Content formats on the server side: which one to ask for, and the codec calls.

The choice is :func:`lwm2m.formats.registry.preferred_format` applied to the
client's registration: an LwM2M 1.0 client gets TLV; a 1.1+ client gets the
best format it announced with ``ct=`` on its root link (SenML CBOR first) or
SenML CBOR when it announced nothing. A per-call ``format`` overrides this.

Times: the codecs report a record's time as given (``bt`` + ``t``), because
they read no clock. RFC 8428 section 4.5.3 makes times below 2**28 relative
to "now" (0 or absent: now, negative: in the past); :func:`timed_values` turns
them into absolute times with the server's clock at reception, so that Send
and notification events carry when each value was measured.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from lwm2m.formats import registry
from lwm2m.formats.errors import FormatError
from lwm2m.formats.media import ContentFormat
from lwm2m.formats.tree import group_composite
from lwm2m.model.nodes import Node, Value, node_kind
from lwm2m.model.path import Path
from lwm2m.model.registry import ModelRegistry
from lwm2m.stores.records import Registration


def preferred_format(registration: Registration, path: Path | None) -> int:
    """The format for one node at ``path``, or for a composite when ``path`` is None."""
    announced = registration.links.content_formats or None
    kind = "root" if path is None else node_kind(path)
    try:
        return int(registry.preferred_format(registration.lwm2m_version, announced, kind))
    except FormatError:
        # 1.0 has no composite operations; ask anyway and let the client answer 4.xx.
        return int(ContentFormat.SENML_CBOR)


def encode(fmt: int, node: Node, path: Path, model: ModelRegistry | None) -> bytes:
    return registry.encode(node, path, fmt, model)


def decode(fmt: int | None, data: bytes, path: Path, model: ModelRegistry | None) -> Node:
    """Decode a single-node payload; no Content-Format means text/plain (RFC 7252 5.10.3)."""
    return registry.decode(data, path, int(ContentFormat.TEXT) if fmt is None else fmt, model)


def encode_composite(
    fmt: int, values: Mapping[Path, Node | Value], model: ModelRegistry | None
) -> bytes:
    return registry.encode_composite(values, fmt, model)


def encode_paths(fmt: int, paths: Iterable[Path]) -> bytes:
    return registry.encode_paths(list(paths), fmt)


def decode_composite(
    fmt: int | None, data: bytes, requested: Iterable[Path] | None, model: ModelRegistry | None
) -> dict[Path, Node]:
    """Nodes at the requested paths (or grouped by resource when None, as for Send)."""
    if fmt is None:
        raise FormatError("a composite payload needs a Content-Format")
    return registry.decode_composite(
        data, fmt, model, None if requested is None else list(requested)
    )


#: RFC 8428 section 4.5.3: a SenML time below 2**28 is relative to the time of reception.
RELATIVE_TIME_LIMIT = 2**28


@dataclass(frozen=True, slots=True)
class TimedValue:
    """One reported value and the absolute time (epoch seconds) it was measured at."""

    path: Path
    value: Value
    time: float


def absolute_time(time: int | float | None, received_at: float) -> float:
    """A record's time as epoch seconds: relative times (and no time) count from reception."""
    if time is None:
        return received_at
    if time < RELATIVE_TIME_LIMIT:
        return received_at + time
    return float(time)


def timed_values(
    fmt: int | None, data: bytes, model: ModelRegistry | None, received_at: float
) -> tuple[TimedValue, ...]:
    """The records of a SenML / LwM2M JSON / LwM2M CBOR payload with absolute times.

    Empty for formats without records (TLV, text, opaque), and for a payload
    whose records do not decode (the caller has decoded its values already).
    """
    if fmt is None:
        return ()
    try:
        records = registry.decode_records(data, fmt, model)
    except FormatError:
        return ()
    return tuple(
        TimedValue(r.path, r.value, absolute_time(r.time, received_at))
        for r in records
        if r.value is not None
    )


def decode_reported(
    fmt: int | None,
    data: bytes,
    requested: Sequence[Path] | None,
    model: ModelRegistry | None,
    received_at: float,
    *,
    single: bool = False,
) -> tuple[dict[Path, Node], tuple[TimedValue, ...]]:
    """Values and timed records of a Send (``requested`` None) or a notification.

    ``single``: a one-path observation (the payload is the node at
    ``requested[0]``). A SenML payload may be a time series, the same path
    several times with different times (LwM2M 1.1 timestamped Send/Notify):
    ``records`` keeps every measurement, the values are then the latest one of
    each path. Without repeated paths the values decode exactly as before.
    Raises FormatError when the values do not decode.
    """
    records = timed_values(fmt, data, model, received_at)
    if len({r.path for r in records}) == len(records):
        if requested is None:
            return decode_composite(fmt, data, None, model), records
        if single:
            return {requested[0]: decode(fmt, data, requested[0], model)}, records
        return decode_composite(fmt, data, requested, model), records
    latest: dict[Path, TimedValue] = {}
    for rec in records:
        if rec.path not in latest or rec.time >= latest[rec.path].time:
            latest[rec.path] = rec
    leaves = [(path, rec.value) for path, rec in latest.items()]
    return group_composite(leaves, model, requested), records

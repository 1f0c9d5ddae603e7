"""SenML (RFC 8428) records as LwM2M uses them, shared by the JSON and CBOR codecs.

A record's name is its base name (``bn``, carried over from earlier
records until redefined) plus ``n``; its time is ``bt`` plus ``t`` (reported
as given: RFC 8428 times below 2**28 are relative to "now", which is the
caller's business). LwM2M 1.1 (TS Core 7.4.4/7.4.5) maps resource types to
value fields: numbers (Integer, Unsigned, Float, Time) in ``v``, Boolean in
``vb``, String and Corelnk in ``vs``, Opaque in ``vd`` and Objlnk in the
LwM2M extension field ``vlo`` (``"3:0"``). Labels ending in ``_`` are
must-understand (RFC 8428 section 4.4) and rejected; other unknown labels are
ignored.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from lwm2m.formats.errors import FormatError
from lwm2m.formats.tree import NODE_TYPES, Leaf, flatten
from lwm2m.formats.type_resolution import (
    At,
    as_type,
    effective_type,
    effective_type_at,
    epoch_seconds,
    json_number,
    number_as,
    parse_objlnk,
    parse_path,
    type_at,
)
from lwm2m.model.nodes import Node, Value
from lwm2m.model.path import Path, PathError
from lwm2m.model.registry import ModelRegistry
from lwm2m.model.types import ObjectLink, ResourceType

VALUE_FIELDS = ("v", "vs", "vb", "vd", "vlo")
_KNOWN = frozenset({"bn", "bt", "bu", "bv", "bs", "bver", "n", "u", "s", "t", "ut", *VALUE_FIELDS})

#: SenML CBOR labels (RFC 8428 section 6) and the LwM2M "vlo" text label.
CBOR_LABELS: dict[object, str] = {
    -1: "bver", -2: "bn", -3: "bt", -4: "bu", -5: "bv", -6: "bs",
    0: "n", 1: "u", 2: "v", 3: "vs", 4: "vb", 5: "s", 6: "t", 7: "ut", 8: "vd",
    "vlo": "vlo",
}  # fmt: skip
CBOR_KEYS: dict[str, object] = {name: key for key, name in CBOR_LABELS.items()}

Number = int | float


@dataclass(frozen=True, slots=True)
class Record:
    """One resolved SenML record: full path, typed value (``None`` in a request) and time."""

    path: Path
    value: Value | None
    time: Number | None = None


@dataclass(frozen=True, slots=True)
class RawRecord:
    path: Path
    field: str | None
    raw: object
    time: Number | None
    index: int


def _time(value: object, where: object) -> Number:
    number = json_number(value, where)
    if isinstance(number, float) and not math.isfinite(number):
        raise FormatError(f"{where}: time must be finite")
    return number


def resolve(items: object, *, binary: bool, values_required: bool) -> list[RawRecord]:
    """Records with base values applied; ``items`` is the decoded JSON/CBOR array.

    CBOR items must already have their labels translated to the JSON names.
    """
    if not isinstance(items, list):
        raise FormatError("SenML payload must be an array of records")
    base_name = ""
    base_time: Number | None = None
    base_value: Number | None = None
    result: list[RawRecord] = []
    for index, record in enumerate(items):
        where = f"record {index}"
        if not isinstance(record, dict):
            raise FormatError(f"{where}: must be a map/object")
        for label in record:
            if not isinstance(label, str):
                raise FormatError(f"{where}: unknown label {label!r}")
            if label not in _KNOWN and label.endswith("_"):
                raise FormatError(f"{where}: must-understand label {label!r} not supported")
        if "bver" in record:
            bver = record["bver"]
            if isinstance(bver, bool) or not isinstance(bver, int) or bver < 10:
                raise FormatError(f"{where}: bver must be an integer >= 10")
        if "bn" in record:
            if not isinstance(record["bn"], str):
                raise FormatError(f"{where}: bn must be a string")
            base_name = record["bn"]
        if "bt" in record:
            base_time = _time(record["bt"], f"{where} bt")
        if "bv" in record:
            base_value = json_number(record["bv"], f"{where} bv")
        name = record.get("n", "")
        if not isinstance(name, str):
            raise FormatError(f"{where}: n must be a string")
        full = base_name + name
        if not full.startswith("/"):
            raise FormatError(f"{where}: name {full!r} is not an absolute LwM2M path")
        try:
            path = parse_path(full)
        except PathError as exc:
            raise FormatError(f"{where}: {exc}") from None
        time: Number | None = None
        if "t" in record or base_time is not None:
            t = _time(record.get("t", 0), f"{where} t")
            time = t + (base_time or 0)
        fields = [f for f in VALUE_FIELDS if f in record]
        if len(fields) > 1:
            raise FormatError(f"{where}: more than one value field ({', '.join(fields)})")
        field = fields[0] if fields else None
        raw: object = record[field] if field is not None else None
        if field is None and values_required:
            raise FormatError(f"{where}: {full} has no value")
        if field == "v" and base_value is not None:
            raw = json_number(raw, f"{where} v") + base_value
        if field == "vd" and not binary:
            raw = _b64url(raw, where)
        elif field == "vd" and not isinstance(raw, bytes):
            raise FormatError(f"{where}: vd must be a byte string")
        result.append(RawRecord(path, field, raw, time, index))
    return result


def _b64url(raw: object, where: object) -> bytes:
    if not isinstance(raw, str):
        raise FormatError(f"{where}: vd must be a base64url string")
    _check_b64url_chars(raw, where)
    text = raw.rstrip("=")
    if len(raw) - len(text) > 2 or len(text) % 4 == 1:
        raise FormatError(f"{where}: vd is not valid base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise FormatError(f"{where}: vd is not valid base64url") from None


def _check_b64url_chars(text: str, where: object) -> None:
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    if not set(text.rstrip("=")) <= allowed:
        raise FormatError(f"{where}: vd is not valid base64url")


@dataclass(frozen=True, slots=True)
class _RecordAt:
    index: int
    path: Path

    def __str__(self) -> str:
        return f"record {self.index} ({self.path})"


def typed_value(raw: RawRecord, model: ModelRegistry | None) -> Value:
    """The record's value converted to the model's type for its path."""
    where = _RecordAt(raw.index, raw.path)
    rtype = type_at(model, raw.path.ids)
    field, value = raw.field, raw.raw
    if field == "v":
        typed = number_as(value, rtype, where)
        if typed is not None:
            return typed
    elif field == "vs":
        if not isinstance(value, str):
            raise FormatError(f"{where}: vs must be a string")
        if rtype is None or rtype in (ResourceType.STRING, ResourceType.CORELNK):
            return value
    elif field == "vb":
        if not isinstance(value, bool):
            raise FormatError(f"{where}: vb must be a boolean")
        if rtype is None or rtype is ResourceType.BOOLEAN:
            return value
    elif field == "vd":
        assert isinstance(value, bytes)
        if rtype is None or rtype is ResourceType.OPAQUE:
            return value
    elif field == "vlo":
        if not isinstance(value, str):
            raise FormatError(f"{where}: vlo must be a string")
        link = parse_objlnk(value, where)
        if rtype is None or rtype is ResourceType.OBJLNK:
            return link
    else:
        raise FormatError(f"{where}: no value")
    assert rtype is not None
    raise FormatError(f"{where}: field {field!r} cannot carry a {rtype.value} value")


def decode_records(items: object, model: ModelRegistry | None, *, binary: bool) -> list[Record]:
    return [
        Record(r.path, typed_value(r, model), r.time)
        for r in resolve(items, binary=binary, values_required=True)
    ]


def decode_paths(items: object, *, binary: bool) -> list[Path]:
    """Paths of a Read-Composite / Observe-Composite request (values not allowed)."""
    paths: list[Path] = []
    for r in resolve(items, binary=binary, values_required=False):
        if r.field is not None:
            raise FormatError(f"record {r.index}: a path-only record carries no value")
        if r.path in paths:
            raise FormatError(f"record {r.index}: duplicate path {r.path}")
        paths.append(r.path)
    return paths


# --- encoding ----------------------------------------------------------------


def value_field(
    value: Value, rtype: ResourceType, where: object, *, binary: bool
) -> tuple[str, object]:
    value = as_type(value, rtype, where)
    if rtype in (ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER):
        return "v", value
    if rtype is ResourceType.FLOAT:
        assert isinstance(value, float)
        if not binary and not math.isfinite(value):
            raise FormatError(f"{where}: SenML JSON cannot carry Float {value}")
        return "v", value
    if rtype is ResourceType.TIME:
        assert isinstance(value, datetime.datetime)
        return "v", epoch_seconds(value, where)
    if rtype is ResourceType.BOOLEAN:
        return "vb", value
    if rtype is ResourceType.OPAQUE:
        assert isinstance(value, bytes)
        if binary:
            return "vd", value
        return "vd", base64.urlsafe_b64encode(value).decode("ascii").rstrip("=")
    if rtype is ResourceType.OBJLNK:
        assert isinstance(value, ObjectLink)
        return "vlo", str(value)
    return "vs", value  # String, Corelnk


def node_records(
    node: Node, path: Path, model: ModelRegistry | None, *, binary: bool
) -> list[dict[str, object]]:
    """Records for one node: ``bn`` is the node's path, names are relative to it."""
    leaves = list(flatten(node, path))
    records: list[dict[str, object]] = []
    depth = path.depth
    leaf_node = len(leaves) == 1 and len(leaves[0].ids) == depth
    for leaf in leaves:
        record: dict[str, object] = {}
        if not records:
            record["bn"] = str(path) if leaf_node else str(path).rstrip("/") + "/"
        if not leaf_node:
            record["n"] = "/".join(map(str, leaf.ids[depth:]))
        field, value = _leaf_field(leaf, model, binary=binary)
        record[field] = value
        records.append(record)
    return records


def _leaf_field(leaf: Leaf, model: ModelRegistry | None, *, binary: bool) -> tuple[str, object]:
    rtype = effective_type_at(model, leaf.ids, leaf.type, leaf.value)
    return value_field(leaf.value, rtype, At(leaf.ids), binary=binary)


def composite_records(
    items: Mapping[Path, Node | Value] | Iterable[Record],
    model: ModelRegistry | None,
    *,
    binary: bool,
) -> list[dict[str, object]]:
    """Records with full names for a composite payload (Send, Read-Composite response ...).

    ``items`` maps paths to nodes or plain values, or is a sequence of
    :class:`Record` (with times, for Send of historical data).
    """
    records: list[dict[str, object]] = []
    if isinstance(items, Mapping):
        for path in sorted(items):
            item = items[path]
            if isinstance(item, NODE_TYPES):
                for leaf in flatten(item, path):
                    field, value = _leaf_field(leaf, model, binary=binary)
                    records.append({"n": leaf.name, field: value})
            else:
                records.append(_value_record(path, item, None, model, binary=binary))
        return records
    for rec in items:
        if rec.value is None:
            raise FormatError(f"{rec.path}: a record to encode needs a value")
        records.append(_value_record(rec.path, rec.value, rec.time, model, binary=binary))
    return records


def _value_record(
    path: Path,
    value: Value,
    time: Number | None,
    model: ModelRegistry | None,
    *,
    binary: bool,
) -> dict[str, object]:
    if path.depth < 3:
        raise FormatError(f"{path}: a plain value needs a resource or resource instance path")
    rtype = effective_type(model, path, None, value)
    field, raw = value_field(value, rtype, str(path), binary=binary)
    record: dict[str, object] = {"n": str(path), field: raw}
    if time is not None:
        record["t"] = time
    return record


def path_records(paths: Iterable[Path]) -> list[dict[str, object]]:
    return [{"n": str(p)} for p in paths]


__all__ = [
    "CBOR_KEYS",
    "CBOR_LABELS",
    "Record",
    "composite_records",
    "decode_paths",
    "decode_records",
    "node_records",
    "path_records",
]

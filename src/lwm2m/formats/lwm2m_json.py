"""OMA LwM2M JSON (Content-Format 11543, legacy 1543): the LwM2M 1.0 JSON format.

``{"bn":"/3/0/","bt":T,"e":[{"n":"0","sv":"..."},{"n":"7/0","v":1},{"n":"x","bv":true},
{"n":"y","ov":"3:0"}]}``: names are relative to ``bn`` (to the request path
when ``bn`` is absent), entry times ``t`` are relative to ``bt``. Numbers
(Integer, Unsigned, Float, Time) are in ``v``, strings in ``sv`` (Opaque too,
base64), booleans in ``bv``, object links in ``ov``.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import math
from collections.abc import Iterable, Mapping

from lwm2m.formats import jsonutil
from lwm2m.formats.errors import FormatError, guard
from lwm2m.formats.senml import Record
from lwm2m.formats.tree import NODE_TYPES, Leaf, assemble, flatten
from lwm2m.formats.type_resolution import (
    At,
    as_type,
    effective_type_at,
    epoch_seconds,
    json_number,
    model_type,
    number_as,
    parse_objlnk,
    parse_path,
)
from lwm2m.model.nodes import Node, Value
from lwm2m.model.path import Path, PathError
from lwm2m.model.registry import ModelRegistry
from lwm2m.model.types import ObjectLink, ResourceType

_FIELDS = ("v", "sv", "bv", "ov")
_TOP = frozenset({"bn", "bt", "e"})
_ENTRY = frozenset({"n", "t", *_FIELDS})


def _value_field(value: Value, rtype: ResourceType, where: object) -> tuple[str, object]:
    value = as_type(value, rtype, where)
    if rtype in (ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER):
        return "v", value
    if rtype is ResourceType.FLOAT:
        assert isinstance(value, float)
        if not math.isfinite(value):
            raise FormatError(f"{where}: LwM2M JSON cannot carry Float {value}")
        return "v", value
    if rtype is ResourceType.TIME:
        assert isinstance(value, datetime.datetime)
        return "v", epoch_seconds(value, where)
    if rtype is ResourceType.BOOLEAN:
        return "bv", value
    if rtype is ResourceType.OPAQUE:
        assert isinstance(value, bytes)
        return "sv", base64.b64encode(value).decode("ascii")
    if rtype is ResourceType.OBJLNK:
        assert isinstance(value, ObjectLink)
        return "ov", str(value)
    return "sv", value


def _entry(leaf: Leaf, name: str | None, model: ModelRegistry | None) -> dict[str, object]:
    rtype = effective_type_at(model, leaf.ids, leaf.type, leaf.value)
    field, raw = _value_field(leaf.value, rtype, At(leaf.ids))
    entry: dict[str, object] = {} if name is None else {"n": name}
    entry[field] = raw
    return entry


def encode(node: Node, path: Path, model: ModelRegistry | None = None) -> bytes:
    leaves = list(flatten(node, path))
    depth = path.depth
    if len(leaves) == 1 and len(leaves[0].ids) == depth:
        return jsonutil.dumps({"bn": str(path), "e": [_entry(leaves[0], None, model)]})
    entries = [_entry(leaf, "/".join(map(str, leaf.ids[depth:])), model) for leaf in leaves]
    return jsonutil.dumps({"bn": str(path) + "/", "e": entries})


def encode_composite(
    items: Mapping[Path, Node | Value] | Iterable[Record], model: ModelRegistry | None = None
) -> bytes:
    """Full names, no ``bn`` (LwM2M 1.0 has no composite operations; useful for tools)."""
    entries: list[dict[str, object]] = []
    if isinstance(items, Mapping):
        for path in sorted(items):
            item = items[path]
            if isinstance(item, NODE_TYPES):
                entries.extend(_entry(leaf, leaf.name, model) for leaf in flatten(item, path))
            else:
                entries.append(_entry(Leaf(path.ids, item), str(path), model))
    else:
        for rec in items:
            if rec.value is None:
                raise FormatError(f"{rec.path}: a record to encode needs a value")
            entry = _entry(Leaf(rec.path.ids, rec.value), str(rec.path), model)
            if rec.time is not None:
                entry["t"] = rec.time
            entries.append(entry)
    return jsonutil.dumps({"e": entries})


def _typed(field: str, raw: object, rtype: ResourceType | None, where: object) -> Value:
    if field == "v":
        typed = number_as(raw, rtype, where)
        if typed is not None:
            return typed
    elif field == "sv":
        if not isinstance(raw, str):
            raise FormatError(f"{where}: sv must be a string")
        if rtype is None or rtype in (ResourceType.STRING, ResourceType.CORELNK):
            return raw
        if rtype is ResourceType.OPAQUE:
            try:
                return base64.b64decode(raw.encode("ascii"), validate=True)
            except (binascii.Error, UnicodeEncodeError, ValueError):
                raise FormatError(f"{where}: opaque sv is not valid base64") from None
    elif field == "bv":
        if not isinstance(raw, bool):
            raise FormatError(f"{where}: bv must be a boolean")
        if rtype is None or rtype is ResourceType.BOOLEAN:
            return raw
    else:
        if not isinstance(raw, str):
            raise FormatError(f"{where}: ov must be a string")
        link = parse_objlnk(raw, where)
        if rtype is None or rtype is ResourceType.OBJLNK:
            return link
    assert rtype is not None
    raise FormatError(f"{where}: field {field!r} cannot carry a {rtype.value} value")


@guard
def decode_records(
    data: bytes, model: ModelRegistry | None = None, path: Path | None = None
) -> list[Record]:
    """Entries with full paths; relative names need ``path`` when ``bn`` is absent."""
    doc = jsonutil.loads(data)
    if not isinstance(doc, dict):
        raise FormatError("LwM2M JSON payload must be an object")
    unknown = set(doc) - _TOP
    if unknown:
        raise FormatError(f"LwM2M JSON: unknown member {sorted(unknown)[0]!r}")
    entries = doc.get("e")
    if not isinstance(entries, list):
        raise FormatError("LwM2M JSON: 'e' must be an array")
    bn = doc.get("bn")
    if bn is not None and not isinstance(bn, str):
        raise FormatError("LwM2M JSON: 'bn' must be a string")
    bt = doc.get("bt")
    if bt is not None:
        bt = json_number(bt, "bt")
    records: list[Record] = []
    for index, entry in enumerate(entries):
        where = f"e[{index}]"
        if not isinstance(entry, dict):
            raise FormatError(f"{where}: must be an object")
        bad = set(entry) - _ENTRY
        if bad:
            raise FormatError(f"{where}: unknown member {sorted(bad)[0]!r}")
        name = entry.get("n", "")
        if not isinstance(name, str):
            raise FormatError(f"{where}: 'n' must be a string")
        if bn is not None:
            full = bn + name
        elif name.startswith("/"):
            full = name
        elif path is not None:
            full = str(path).rstrip("/") + ("/" + name if name else "")
            full = full or "/"
        else:
            raise FormatError(f"{where}: relative name {name!r} without 'bn'")
        try:
            entry_path = parse_path(full)
        except PathError as exc:
            raise FormatError(f"{where}: {exc}") from None
        if not full.startswith("/"):
            raise FormatError(f"{where}: name {full!r} is not an absolute path")
        fields = [f for f in _FIELDS if f in entry]
        if len(fields) != 1:
            raise FormatError(f"{where}: exactly one of v, sv, bv, ov is required")
        rtype = model_type(model, entry_path) if entry_path.depth >= 3 else None
        value = _typed(fields[0], entry[fields[0]], rtype, f"{where} ({entry_path})")
        time: int | float | None = None
        if "t" in entry or bt is not None:
            time = json_number(entry.get("t", 0), f"{where} t") + (bt or 0)
        records.append(Record(entry_path, value, time))
    return records


@guard
def decode(data: bytes, path: Path, model: ModelRegistry | None = None) -> Node:
    records = decode_records(data, model, path)
    return assemble(((r.path, r.value) for r in records if r.value is not None), path, model)

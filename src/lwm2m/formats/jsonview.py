"""Nodes as plain JSON for people and the REST API, typed and named by the model.

Values: numbers, booleans and strings as such; Opaque as base64; Time as an
ISO 8601 UTC string (``2013-05-02T10:40:15Z``); Objlnk as ``"3:0"``. Each
node carries its path, kind and (when the model knows it) its name::

    {"path": "/3/0/7", "kind": "resource", "id": 7, "name": "Power Source Voltage",
     "type": "Integer", "multiple": true, "instances": {"0": 3800, "1": 5000}}

:func:`json_to_node` reads the same shape back (``kind``/``path``/``name``
optional); a bare ``{"value": ...}`` or ``{"instances": {...}}`` is enough
for a resource.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import math
from collections.abc import Mapping

from lwm2m.formats.errors import FormatError, guard
from lwm2m.formats.tree import check_node_path
from lwm2m.formats.type_resolution import (
    as_type,
    declared_type,
    effective_type,
    from_epoch,
    model_type,
    parse_objlnk,
    resource_def,
)
from lwm2m.model.nodes import (
    LwM2MObject,
    Node,
    ObjectInstance,
    Resource,
    ResourceInstance,
    Value,
    node_kind,
)
from lwm2m.model.path import Path, PathError
from lwm2m.model.registry import ModelRegistry
from lwm2m.model.types import ObjectLink, ResourceType

JSONValue = str | int | float | bool | None


def value_to_json(value: Value) -> JSONValue:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            raise FormatError(f"Time value {value!r} has no time zone")
        utc = value.astimezone(datetime.UTC)
        return utc.replace(tzinfo=None).isoformat() + "Z"
    if isinstance(value, ObjectLink):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf", "-inf", "nan": JSON has no literal for them
    return value


def value_from_json(raw: object, rtype: ResourceType | None, where: object) -> Value:
    """A JSON value as ``rtype`` (inferred from the JSON type when ``None``)."""
    if rtype is None:
        if isinstance(raw, bool | int | float | str):
            return raw
        raise FormatError(f"{where}: {type(raw).__name__} is not a resource value")
    if rtype is ResourceType.OPAQUE:
        if not isinstance(raw, str):
            raise FormatError(f"{where}: Opaque must be a base64 string")
        try:
            return base64.b64decode(raw.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise FormatError(f"{where}: Opaque value is not valid base64") from None
    if rtype is ResourceType.TIME:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return from_epoch(raw, where)
        if isinstance(raw, str):
            try:
                parsed = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError:
                raise FormatError(f"{where}: {raw!r} is not an ISO 8601 time") from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=datetime.UTC)
            return parsed.astimezone(datetime.UTC)
        raise FormatError(f"{where}: Time must be an ISO 8601 string or epoch seconds")
    if rtype is ResourceType.OBJLNK:
        if not isinstance(raw, str):
            raise FormatError(f"{where}: Objlnk must be a string 'OBJECT:INSTANCE'")
        return parse_objlnk(raw, where)
    if rtype is ResourceType.FLOAT and isinstance(raw, str) and raw in ("inf", "-inf", "nan"):
        return float(raw)
    return as_type(raw, rtype, where)


def _type_name(
    model: ModelRegistry | None, path: Path, node_type: ResourceType | None, sample: Value | None
) -> str | None:
    if sample is None:
        rtype = model_type(model, path) or node_type
        return None if rtype is None else rtype.value
    return effective_type(model, path, node_type, sample).value


def _resource_json(res: Resource, path: Path, model: ModelRegistry | None) -> dict[str, object]:
    rdef = resource_def(model, path)
    out: dict[str, object] = {"path": str(path), "kind": "resource", "id": res.id}
    if rdef is not None:
        out["name"] = rdef.name
        if rdef.units:
            out["units"] = rdef.units
    if res.instances is None:
        assert res.value is not None
        out["type"] = _type_name(model, path, res.type, res.value)
        out["value"] = value_to_json(res.value)
    else:
        sample = next(iter(res.instances.values()), None)
        out["type"] = _type_name(model, path, res.type, sample)
        out["multiple"] = True
        out["instances"] = {str(k): value_to_json(v) for k, v in res.instances.items()}
    return out


def _instance_json(
    inst: ObjectInstance, path: Path, model: ModelRegistry | None
) -> dict[str, object]:
    return {
        "path": str(path),
        "kind": "instance",
        "id": inst.id,
        "resources": [_resource_json(r, path.child(r.id), model) for r in inst.resources.values()],
    }


def node_to_json(node: Node, path: Path, model: ModelRegistry | None = None) -> dict[str, object]:
    """A JSON-ready dict for ``node`` at ``path`` (see the module docstring)."""
    check_node_path(node, path)
    if isinstance(node, LwM2MObject):
        out: dict[str, object] = {"path": str(path), "kind": "object", "id": node.id}
        obj = None if model is None else model.object(node.id)
        if obj is not None:
            out["name"] = obj.name
        out["instances"] = [
            _instance_json(i, path.child(i.id), model) for i in node.instances.values()
        ]
        return out
    if isinstance(node, ObjectInstance):
        out = _instance_json(node, path, model)
        obj = None if model is None or path.object_id is None else model.object(path.object_id)
        if obj is not None:
            out = {**{k: out[k] for k in ("path", "kind", "id")}, "name": obj.name, **out}
        return out
    if isinstance(node, Resource):
        return _resource_json(node, path, model)
    rdef = resource_def(model, path)
    out = {"path": str(path), "kind": "resource_instance", "id": node.id}
    if rdef is not None:
        out["name"] = rdef.name
    out["type"] = _type_name(model, path, None, node.value)
    out["value"] = value_to_json(node.value)
    return out


def _node_type(
    raw: Mapping[str, object], model: ModelRegistry | None, path: Path
) -> ResourceType | None:
    try:
        return declared_type(model, path, raw.get("type"))
    except ValueError as exc:
        raise FormatError(f"{path}: 'type': {exc}") from None


def _id_of(raw: Mapping[str, object], expected: int | None, path: Path) -> None:
    if "id" in raw and raw["id"] != expected:
        raise FormatError(f"{path}: id {raw['id']!r} does not match the path")


def _items(raw: Mapping[str, object], key: str, path: Path) -> list[Mapping[str, object]]:
    items = raw.get(key, [])
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise FormatError(f"{path}: {key!r} must be a list of objects")
    return items


def _child_id(item: Mapping[str, object], path: Path) -> int:
    ident = item.get("id")
    if isinstance(ident, bool) or not isinstance(ident, int):
        raise FormatError(f"{path}: each child needs an integer 'id'")
    return ident


@guard
def json_to_node(raw: object, path: Path, model: ModelRegistry | None = None) -> Node:
    """The node at ``path`` from :func:`node_to_json`'s shape (or a bare value holder)."""
    if not isinstance(raw, dict):
        raise FormatError(f"{path}: expected a JSON object")
    kind = raw.get("kind")
    if kind is not None and kind != node_kind(path):
        raise FormatError(f"{path}: kind {kind!r} does not match the path")
    try:
        if path.is_root:
            raise FormatError("a node cannot be at the root path")
        if path.depth == 1:
            _id_of(raw, path.object_id, path)
            instances = []
            for item in _items(raw, "instances", path):
                instances.append(json_to_node(item, path.child(_child_id(item, path)), model))
            assert path.object_id is not None
            return LwM2MObject.of(path.object_id, instances)  # type: ignore[arg-type]
        if path.depth == 2:
            _id_of(raw, path.instance_id, path)
            resources = []
            for item in _items(raw, "resources", path):
                resources.append(json_to_node(item, path.child(_child_id(item, path)), model))
            assert path.instance_id is not None
            return ObjectInstance.of(path.instance_id, resources)  # type: ignore[arg-type]
    except ValueError as exc:
        if isinstance(exc, FormatError):
            raise
        raise FormatError(f"{path}: {exc}") from None
    rtype = _node_type(raw, model, path)
    if path.depth == 4:
        _id_of(raw, path.resource_instance_id, path)
        if "value" not in raw:
            raise FormatError(f"{path}: 'value' is required")
        assert path.resource_instance_id is not None
        return ResourceInstance(
            path.resource_instance_id, value_from_json(raw["value"], rtype, str(path))
        )
    _id_of(raw, path.resource_id, path)
    assert path.resource_id is not None
    has_value, has_instances = "value" in raw, "instances" in raw
    if has_value == has_instances:
        raise FormatError(f"{path}: exactly one of 'value' or 'instances' is required")
    if has_value:
        return Resource(
            path.resource_id, value=value_from_json(raw["value"], rtype, str(path)), type=rtype
        )
    instances_raw = raw["instances"]
    if not isinstance(instances_raw, dict):
        raise FormatError(f"{path}: 'instances' must be an object of id -> value")
    values: dict[int, Value] = {}
    for key, value in instances_raw.items():
        try:
            ri = Path.parse(f"{path}/{key}").resource_instance_id
        except PathError:
            raise FormatError(f"{path}: resource instance key {key!r} is not an ID") from None
        assert ri is not None
        values[ri] = value_from_json(value, rtype, f"{path}/{key}")
    return Resource(path.resource_id, instances=values, type=rtype)


def composite_to_json(
    nodes: Mapping[Path, Node], model: ModelRegistry | None = None
) -> dict[str, object]:
    return {str(p): node_to_json(n, p, model) for p, n in sorted(nodes.items())}


__all__ = [
    "composite_to_json",
    "json_to_node",
    "node_to_json",
    "value_from_json",
    "value_to_json",
]

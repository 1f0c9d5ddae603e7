"""OMA LwM2M CBOR (Content-Format 11544, LwM2M TS Core 1.2, 7.4.7).

Nested CBOR maps keyed by path IDs, always from the root:
``{3: {0: {0: "Open Mobile Alliance", 7: {0: 1, 1: 5}}}}``. A key may also
be an array of IDs standing for several levels at once (``{[3, 0]: {...}}``);
we accept that on decode and write plain nesting. An empty map is an empty
object, instance or multiple resource. Values: Integer/Unsigned as CBOR
integers, Float as floats, Boolean, String/Corelnk as text, Opaque as bytes,
Objlnk as text ``"3:0"``, Time as epoch seconds with CBOR tag 1 (as in the
plain CBOR format; an untagged integer is accepted on decode). A ``null`` leaf only appears in path-only requests
(Read-Composite), see :func:`decode_paths`.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping

import cbor2

from lwm2m.formats import cbor_strict
from lwm2m.formats.errors import FormatError, guard
from lwm2m.formats.senml import Record
from lwm2m.formats.tree import (
    NODE_TYPES,
    Leaf,
    assemble,
    empty_containers,
    flatten,
    group_composite,
)
from lwm2m.formats.type_resolution import (
    At,
    as_type,
    effective_type_at,
    epoch_seconds,
    from_epoch,
    parse_objlnk,
    type_at,
)
from lwm2m.model.nodes import Node, Value
from lwm2m.model.path import (
    MAX_INSTANCE_ID,
    MAX_OBJECT_ID,
    MAX_RESOURCE_ID,
    MAX_RESOURCE_INSTANCE_ID,
    Path,
    PathError,
)
from lwm2m.model.registry import ModelRegistry
from lwm2m.model.types import ObjectLink, ResourceType

TIME_TAG = 1


# --- encoding ----------------------------------------------------------------


def to_cbor_value(value: Value, rtype: ResourceType, where: object) -> object:
    """A value as the CBOR item LwM2M CBOR and plain CBOR (60) use for ``rtype``."""
    value = as_type(value, rtype, where)
    if rtype is ResourceType.TIME:
        assert isinstance(value, datetime.datetime)
        return cbor2.CBORTag(TIME_TAG, epoch_seconds(value, where))
    if rtype is ResourceType.OBJLNK:
        assert isinstance(value, ObjectLink)
        return str(value)
    return value


def _cbor_value(leaf: Leaf, model: ModelRegistry | None) -> object:
    rtype = effective_type_at(model, leaf.ids, leaf.type, leaf.value)
    return to_cbor_value(leaf.value, rtype, At(leaf.ids))


def _insert(tree: dict[int, object], ids: tuple[int, ...], value: object) -> None:
    node = tree
    for ident in ids[:-1]:
        child = node.setdefault(ident, {})
        if not isinstance(child, dict):
            raise FormatError(f"{At(ids)}: a value and a container at the same path")
        node = child
    if value is None:
        node.setdefault(ids[-1], {})
        return
    if ids[-1] in node:
        raise FormatError(f"{At(ids)}: duplicate value")
    node[ids[-1]] = value


def _tree(
    leaves: Iterable[Leaf], empties: Iterable[Path], model: ModelRegistry | None
) -> dict[int, object]:
    tree: dict[int, object] = {}
    for leaf in leaves:
        _insert(tree, leaf.ids, _cbor_value(leaf, model))
    for empty in empties:
        _insert(tree, empty.ids, None)
    return tree


def encode(node: Node, path: Path, model: ModelRegistry | None = None) -> bytes:
    leaves = list(flatten(node, path))
    return cbor_strict.dumps(_tree(leaves, empty_containers(node, path), model))


def encode_composite(
    items: Mapping[Path, Node | Value] | Iterable[Record], model: ModelRegistry | None = None
) -> bytes:
    leaves: list[Leaf] = []
    empties: list[Path] = []
    if isinstance(items, Mapping):
        for path, item in items.items():
            if isinstance(item, NODE_TYPES):
                leaves.extend(flatten(item, path))
                empties.extend(empty_containers(item, path))
            else:
                leaves.append(Leaf(path.ids, item))
    else:
        for rec in items:
            if rec.time is not None:
                raise FormatError(f"{rec.path}: LwM2M CBOR carries no timestamps")
            if rec.value is None:
                raise FormatError(f"{rec.path}: a record to encode needs a value")
            leaves.append(Leaf(rec.path.ids, rec.value))
    for leaf in leaves:
        if len(leaf.ids) < 3:
            raise FormatError(f"{At(leaf.ids)}: a plain value needs a resource path")
    return cbor_strict.dumps(_tree(leaves, empties, model))


def encode_paths(paths: Iterable[Path]) -> bytes:
    """A path-only request: ``null`` at each requested path."""
    tree: dict[int, object] = {}
    for path in paths:
        if path.is_root:
            raise FormatError("LwM2M CBOR cannot name the root path")
        node = tree
        for ident in path.ids[:-1]:
            child = node.setdefault(ident, {})
            if not isinstance(child, dict):
                raise FormatError(f"{path}: overlaps another requested path")
            node = child
        if path.ids[-1] in node:
            raise FormatError(f"{path}: overlaps another requested path")
        node[path.ids[-1]] = None
    return cbor_strict.dumps(tree)


# --- decoding ----------------------------------------------------------------


def _key_ids(key: object, where: object) -> tuple[int, ...]:
    if isinstance(key, int) and not isinstance(key, bool):
        ids: tuple[object, ...] = (key,)
    elif isinstance(key, tuple) and key:
        ids = key
    else:
        raise FormatError(f"{where}: map key {key!r} is not an ID or an array of IDs")
    for ident in ids:
        if isinstance(ident, bool) or not isinstance(ident, int) or not 0 <= ident <= 65535:
            raise FormatError(f"{where}: map key {key!r} is not a valid ID")
    return ids  # type: ignore[return-value]


#: highest ID at each depth (object, instance, resource, resource instance)
_LIMITS = (MAX_OBJECT_ID, MAX_INSTANCE_ID, MAX_RESOURCE_ID, MAX_RESOURCE_INSTANCE_ID)


def _walk(
    tree: object,
    prefix: tuple[int, ...],
    leaves: list[tuple[tuple[int, ...], object]],
    empties: list[tuple[int, ...]],
) -> None:
    """Collect leaf values and empty containers as ID tuples (no Path per value)."""
    if not isinstance(tree, dict):
        raise FormatError(f"{At(prefix)}: expected a map")
    if not tree and prefix:
        empties.append(prefix)
    for key, value in tree.items():
        ids = prefix + _key_ids(key, At(prefix))
        if len(ids) > 4:
            raise FormatError(f"{At(prefix)}: path deeper than a resource instance")
        for depth in range(len(prefix), len(ids)):
            if ids[depth] > _LIMITS[depth]:
                raise FormatError(f"{At(ids)}: ID {ids[depth]} out of range 0-{_LIMITS[depth]}")
        if isinstance(value, dict):
            if len(ids) == 4:
                raise FormatError(f"{At(ids)}: a resource instance cannot hold a map")
            _walk(value, ids, leaves, empties)
        else:
            if len(ids) < 3:
                raise FormatError(f"{At(ids)}: a value must be at a resource or resource instance")
            leaves.append((ids, value))


def from_cbor_value(raw: object, rtype: ResourceType | None, where: object) -> Value:
    """A decoded CBOR item as a value of ``rtype`` (its natural type when ``None``)."""
    if isinstance(raw, list | tuple | dict) or raw is None:
        raise FormatError(f"{where}: {type(raw).__name__} is not a resource value")
    if rtype is None:
        if isinstance(raw, bool | int | float | str | bytes | datetime.datetime):
            return raw
        raise FormatError(f"{where}: unsupported CBOR value {type(raw).__name__}")
    if rtype is ResourceType.TIME:
        if isinstance(raw, datetime.datetime):
            return raw.astimezone(datetime.UTC)
        if isinstance(raw, int) and not isinstance(raw, bool):
            return from_epoch(raw, where)
    elif isinstance(raw, datetime.datetime):
        raise FormatError(f"{where}: a tagged time cannot be a {rtype.value}")
    elif rtype is ResourceType.OBJLNK:
        if isinstance(raw, str):
            return parse_objlnk(raw, where)
    elif rtype is ResourceType.FLOAT:
        if isinstance(raw, float):
            return raw
        if isinstance(raw, int) and not isinstance(raw, bool):
            return float(raw)
    elif rtype in (ResourceType.STRING, ResourceType.CORELNK):
        if isinstance(raw, str):
            return raw
    elif rtype is ResourceType.OPAQUE:
        if isinstance(raw, bytes):
            return raw
    else:
        return as_type(raw, rtype, where)
    raise FormatError(f"{where}: {type(raw).__name__} is not a {rtype.value}")


def _typed_leaves(
    data: bytes, model: ModelRegistry | None
) -> tuple[list[tuple[tuple[int, ...], Value]], list[tuple[int, ...]]]:
    tree = cbor_strict.loads(data, allowed_tags=(TIME_TAG,))
    raw_leaves: list[tuple[tuple[int, ...], object]] = []
    empties: list[tuple[int, ...]] = []
    _walk(tree, (), raw_leaves, empties)
    return [
        (ids, from_cbor_value(v, type_at(model, ids), At(ids))) for ids, v in raw_leaves
    ], empties


@guard
def decode(data: bytes, path: Path, model: ModelRegistry | None = None) -> Node:
    leaves, empties = _typed_leaves(data, model)
    return assemble(leaves, path, model, [Path.of(*e) for e in empties])


@guard
def decode_records(data: bytes, model: ModelRegistry | None = None) -> list[Record]:
    leaves, _ = _typed_leaves(data, model)
    return [Record(Path.of(*ids), v) for ids, v in leaves]


@guard
def decode_composite(
    data: bytes, model: ModelRegistry | None = None, paths: Iterable[Path] | None = None
) -> dict[Path, Node]:
    leaves, empties = _typed_leaves(data, model)
    return group_composite(
        [(Path.of(*ids), v) for ids, v in leaves], model, paths, [Path.of(*e) for e in empties]
    )


@guard
def decode_paths(data: bytes) -> list[Path]:
    tree = cbor_strict.loads(data)
    paths: list[Path] = []

    def walk(node: object, prefix: tuple[int, ...]) -> None:
        where = Path.of(*prefix) if prefix else Path()
        if not isinstance(node, dict) or not node:
            raise FormatError(f"{where}: expected a non-empty map")
        for key, value in node.items():
            ids = prefix + _key_ids(key, where)
            if len(ids) > 4:
                raise FormatError(f"{where}: path deeper than a resource instance")
            try:
                path = Path.of(*ids)
            except PathError as exc:
                raise FormatError(f"{where}: {exc}") from None
            if value is None:
                if path in paths:
                    raise FormatError(f"{path}: duplicate path")
                paths.append(path)
            else:
                walk(value, ids)

    walk(tree, ())
    return paths

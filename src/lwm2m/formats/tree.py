"""Between nodes and flat ``(path, value)`` entries, the shape of SenML, JSON and CBOR.

Flat formats list leaf values with their full paths; :func:`flatten` produces
those from a node and :func:`assemble` rebuilds the node a request path asks
for, checking that every entry lies under that path, that no path repeats and
that single and multiple resources are not mixed up (using the model when it
knows the resource).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from lwm2m.formats.errors import FormatError
from lwm2m.formats.type_resolution import At, rdef_at, type_at
from lwm2m.model.nodes import (
    LwM2MObject,
    Node,
    ObjectInstance,
    Resource,
    ResourceInstance,
    Value,
)
from lwm2m.model.path import Path
from lwm2m.model.registry import ModelRegistry
from lwm2m.model.types import ResourceType

NODE_TYPES = (LwM2MObject, ObjectInstance, Resource, ResourceInstance)


@dataclass(frozen=True, slots=True)
class Leaf:
    """One value at a resource (depth 3) or resource instance (depth 4) path.

    The path is kept as an ID tuple: building a validated :class:`Path` per
    value would cost more than encoding it.
    """

    ids: tuple[int, ...]
    value: Value
    type: ResourceType | None = None

    @property
    def path(self) -> Path:
        return Path.of(*self.ids)

    @property
    def name(self) -> str:
        return "/" + "/".join(map(str, self.ids))


def check_node_path(node: Node, path: Path) -> None:
    """The node's kind and ID must match the path it is said to live at."""
    expected: tuple[type, int | None]
    if isinstance(node, LwM2MObject):
        expected = (LwM2MObject, path.object_id)
        ok = path.depth == 1
    elif isinstance(node, ObjectInstance):
        expected = (ObjectInstance, path.instance_id)
        ok = path.depth == 2
    elif isinstance(node, Resource):
        expected = (Resource, path.resource_id)
        ok = path.depth == 3
    elif isinstance(node, ResourceInstance):
        expected = (ResourceInstance, path.resource_instance_id)
        ok = path.depth == 4
    else:
        raise FormatError(f"{path}: {type(node).__name__} is not an LwM2M node")
    if not ok:
        raise FormatError(f"{path}: a {type(node).__name__} cannot live at this path")
    if node.id != expected[1]:
        raise FormatError(f"{path}: node ID {node.id} does not match the path")


def flatten(node: Node, path: Path) -> Iterator[Leaf]:
    """Leaf entries of ``node`` (which lives at ``path``), in ID order."""
    check_node_path(node, path)
    yield from _flatten(node, path.ids)


def _flatten(node: Node, ids: tuple[int, ...]) -> Iterator[Leaf]:
    if isinstance(node, LwM2MObject):
        for inst in node.instances.values():
            yield from _flatten(inst, (*ids, inst.id))
    elif isinstance(node, ObjectInstance):
        for res in node.resources.values():
            yield from _flatten(res, (*ids, res.id))
    elif isinstance(node, Resource):
        if node.instances is None:
            assert node.value is not None
            yield Leaf(ids, node.value, node.type)
        else:
            for ri, value in node.instances.items():
                yield Leaf((*ids, ri), value, node.type)
    else:
        yield Leaf(ids, node.value, None)


def empty_containers(node: Node, path: Path) -> Iterator[Path]:
    """Paths of empty objects, instances and multiple resources inside ``node``.

    Flat formats cannot show them; LwM2M CBOR can (an empty map).
    """
    if isinstance(node, LwM2MObject):
        if not node.instances:
            yield path
        for inst in node.instances.values():
            yield from empty_containers(inst, path.child(inst.id))
    elif isinstance(node, ObjectInstance):
        if not node.resources:
            yield path
        for res in node.resources.values():
            yield from empty_containers(res, path.child(res.id))
    elif isinstance(node, Resource) and node.instances is not None and not node.instances:
        yield path


def assemble(
    leaves: Iterable[tuple[Path | tuple[int, ...], Value]],
    path: Path,
    model: ModelRegistry | None,
    empties: Iterable[Path] = (),
) -> Node:
    """The node at ``path`` built from leaf values (already typed) and empty containers.

    Leaves are keyed by :class:`Path` or, on hot paths, by an already
    validated ID tuple.
    """
    if path.is_root:
        raise FormatError("a single node cannot be decoded at the root path; use a composite")
    prefix = path.ids
    depth = len(prefix)
    values: dict[tuple[int, ...], Value] = {}
    for key, value in leaves:
        ids = key if isinstance(key, tuple) else key.ids
        if len(ids) < 3:
            raise FormatError(f"{At(ids)}: a value must be at a resource or resource instance")
        if ids[:depth] != prefix:
            raise FormatError(f"{At(ids)}: outside the requested path {path}")
        if ids in values:
            raise FormatError(f"{At(ids)}: duplicate value")
        values[ids] = value
    containers: set[tuple[int, ...]] = set()
    for empty in empties:
        eids = empty.ids
        if eids[:depth] != prefix and prefix[: len(eids)] != eids:
            raise FormatError(f"{empty}: outside the requested path {path}")
        if len(eids) >= depth:
            containers.add(eids)
    builder = _Builder(model)
    for ids, value in values.items():
        builder.add(ids, value)
    for eids in containers:
        builder.touch(eids)
    return builder.node_at(path)


class _Builder:
    """Nested dicts object -> instance -> resource -> (value | {ri: value})."""

    __slots__ = ("model", "tree")

    def __init__(self, model: ModelRegistry | None) -> None:
        self.model = model
        # object -> instance -> resource -> (multiple?, value | {ri: value})
        self.tree: dict[int, dict[int, dict[int, tuple[bool, object]]]] = {}

    def touch(self, ids: tuple[int, ...]) -> None:
        insts = self.tree.setdefault(ids[0], {})
        if len(ids) == 1:
            return
        res = insts.setdefault(ids[1], {})
        if len(ids) == 2:
            return
        self._resource(res, ids[:3], multiple=True)

    def _resource(
        self, res: dict[int, tuple[bool, object]], ids: tuple[int, ...], *, multiple: bool
    ) -> tuple[bool, object]:
        r = ids[2]
        entry = res.get(r)
        if entry is None:
            rdef = rdef_at(self.model, ids)
            if rdef is not None and rdef.multiple != multiple:
                kind = "multiple" if rdef.multiple else "single"
                raise FormatError(f"{At(ids)}: the model says this resource is {kind}-instance")
            entry = (multiple, {} if multiple else None)
            res[r] = entry
        elif entry[0] != multiple or not multiple:
            raise FormatError(f"{At(ids)}: conflicting values")
        return entry

    def add(self, ids: tuple[int, ...], value: Value) -> None:
        res = self.tree.setdefault(ids[0], {}).setdefault(ids[1], {})
        if len(ids) == 3:
            self._resource(res, ids, multiple=False)
            res[ids[2]] = (False, value)
        else:
            entry = self._resource(res, ids[:3], multiple=True)
            instances = entry[1]
            assert isinstance(instances, dict)
            instances[ids[3]] = value

    def _build_resource(self, ids: tuple[int, ...], entry: tuple[bool, object]) -> Resource:
        rtype = type_at(self.model, ids)
        multiple, payload = entry
        if multiple:
            assert isinstance(payload, dict)
            return Resource(ids[2], instances=payload, type=rtype)
        return Resource(ids[2], value=payload, type=rtype)  # type: ignore[arg-type]

    def _build_instance(
        self, ids: tuple[int, ...], res: dict[int, tuple[bool, object]]
    ) -> ObjectInstance:
        resources = {r: self._build_resource((*ids, r), e) for r, e in res.items()}
        return ObjectInstance(ids[1], resources)

    def node_at(self, path: Path) -> Node:
        ids = path.ids
        o = ids[0]
        insts = self.tree.get(o, {})
        if len(ids) == 1:
            return LwM2MObject(
                o, {iid: self._build_instance((o, iid), res) for iid, res in insts.items()}
            )
        res = insts.get(ids[1], {})
        if len(ids) == 2:
            return self._build_instance(ids, res)
        r = ids[2]
        entry = res.get(r)
        if len(ids) == 3:
            if entry is None:
                rdef = rdef_at(self.model, ids)
                if rdef is not None and rdef.multiple:
                    return Resource(r, instances={}, type=type_at(self.model, ids))
                raise FormatError(f"{path}: no value in the payload")
            return self._build_resource(ids, entry)
        if entry is None:
            raise FormatError(f"{path}: no value in the payload")
        multiple, payload = entry
        assert multiple and isinstance(payload, dict)
        if ids[3] not in payload:
            raise FormatError(f"{path}: no value in the payload")
        return ResourceInstance(ids[3], payload[ids[3]])


def group_composite(
    leaves: Iterable[tuple[Path, Value]],
    model: ModelRegistry | None,
    requested: Iterable[Path] | None = None,
    empties: Iterable[Path] = (),
) -> dict[Path, Node]:
    """Nodes of a composite payload (Read-Composite response, Send, Write-Composite).

    With ``requested`` paths each node is the one at a requested path (paths
    without any value are left out: the client did not have them). Without,
    values are grouped by resource: ``/o/i/r`` values become single resources,
    ``/o/i/r/ri`` values become (possibly partial) multiple resources; empty
    containers become empty nodes.
    """
    leaf_list = list(leaves)
    empty_list = list(empties)
    result: dict[Path, Node] = {}
    if requested is not None:
        wanted = sorted(set(requested))
        for leaf_path, _ in leaf_list:
            if not any(leaf_path.startswith(w) for w in wanted):
                raise FormatError(f"{leaf_path}: not under any requested path")
        for want in wanted:
            mine = [(p, v) for p, v in leaf_list if p.startswith(want)]
            my_empties = [e for e in empty_list if e.startswith(want)]
            if not mine and not my_empties:
                continue
            if want.is_root:
                for obj_path in sorted({Path(p.object_id) for p, _ in mine}):
                    result[obj_path] = assemble(
                        [(p, v) for p, v in mine if p.startswith(obj_path)], obj_path, model
                    )
                continue
            result[want] = assemble(mine, want, model, my_empties)
        return result
    seen: set[Path] = set()
    by_resource: dict[Path, list[tuple[Path, Value]]] = {}
    for leaf_path, value in leaf_list:
        if leaf_path.depth < 3:
            raise FormatError(f"{leaf_path}: a value must be at a resource or resource instance")
        if leaf_path in seen:
            raise FormatError(f"{leaf_path}: duplicate value")
        seen.add(leaf_path)
        key = Path(*leaf_path.ids[:3])
        by_resource.setdefault(key, []).append((leaf_path, value))
    for key in sorted(by_resource):
        result[key] = assemble(by_resource[key], key, model)
    for empty in empty_list:
        if empty not in result:
            result[empty] = assemble([], empty, model, [empty])
    return result

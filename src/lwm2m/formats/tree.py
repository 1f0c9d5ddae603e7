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
from lwm2m.formats.values import model_type, resource_def
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
    """One value at a resource (depth 3) or resource instance (depth 4) path."""

    path: Path
    value: Value
    type: ResourceType | None = None


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
    yield from _flatten(node, path)


def _flatten(node: Node, path: Path) -> Iterator[Leaf]:
    if isinstance(node, LwM2MObject):
        for inst in node.instances.values():
            yield from _flatten(inst, path.child(inst.id))
    elif isinstance(node, ObjectInstance):
        for res in node.resources.values():
            yield from _flatten(res, path.child(res.id))
    elif isinstance(node, Resource):
        if node.instances is None:
            assert node.value is not None
            yield Leaf(path, node.value, node.type)
        else:
            for ri, value in node.instances.items():
                yield Leaf(path.child(ri), value, node.type)
    else:
        yield Leaf(path, node.value, None)


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
    leaves: Iterable[tuple[Path, Value]],
    path: Path,
    model: ModelRegistry | None,
    empties: Iterable[Path] = (),
) -> Node:
    """The node at ``path`` built from leaf values (already typed) and empty containers."""
    if path.is_root:
        raise FormatError("a single node cannot be decoded at the root path; use a composite")
    values: dict[Path, Value] = {}
    for leaf_path, value in leaves:
        if leaf_path.depth < 3:
            raise FormatError(f"{leaf_path}: a value must be at a resource or resource instance")
        if not leaf_path.startswith(path):
            raise FormatError(f"{leaf_path}: outside the requested path {path}")
        if leaf_path in values:
            raise FormatError(f"{leaf_path}: duplicate value")
        values[leaf_path] = value
    containers: set[Path] = set()
    for empty in empties:
        if not empty.startswith(path) and not path.startswith(empty):
            raise FormatError(f"{empty}: outside the requested path {path}")
        if empty.depth >= path.depth:
            containers.add(empty)
    builder = _Builder(model)
    for leaf_path, value in values.items():
        builder.add(leaf_path, value)
    for empty in containers:
        builder.touch(empty)
    return builder.node_at(path)


class _Builder:
    """Nested dicts object -> instance -> resource -> (value | {ri: value})."""

    __slots__ = ("model", "tree")

    def __init__(self, model: ModelRegistry | None) -> None:
        self.model = model
        # object -> instance -> resource -> ("single", value) | ("multiple", {ri: value})
        self.tree: dict[int, dict[int, dict[int, tuple[bool, object]]]] = {}

    def touch(self, path: Path) -> None:
        o, i, r, _ = path.ids_with_gaps
        assert o is not None
        insts = self.tree.setdefault(o, {})
        if i is None:
            return
        res = insts.setdefault(i, {})
        if r is None:
            return
        self._resource(res, path, multiple=True)

    def _resource(
        self, res: dict[int, tuple[bool, object]], path: Path, *, multiple: bool
    ) -> tuple[bool, object]:
        r = path.resource_id
        assert r is not None
        entry = res.get(r)
        if entry is None:
            rdef = resource_def(self.model, path)
            if rdef is not None and rdef.multiple != multiple:
                kind = "multiple" if rdef.multiple else "single"
                raise FormatError(f"{path}: the model says this resource is {kind}-instance")
            entry = (multiple, {} if multiple else None)
            res[r] = entry
        elif entry[0] != multiple or not multiple:
            raise FormatError(f"{path.parent if path.depth == 4 else path}: conflicting values")
        return entry

    def add(self, path: Path, value: Value) -> None:
        o, i, r, ri = path.ids_with_gaps
        assert o is not None and i is not None and r is not None
        res = self.tree.setdefault(o, {}).setdefault(i, {})
        resource_path = Path(o, i, r)
        if ri is None:
            self._resource(res, resource_path, multiple=False)
            res[r] = (False, value)
        else:
            entry = self._resource(res, resource_path, multiple=True)
            instances = entry[1]
            assert isinstance(instances, dict)
            instances[ri] = value

    def _build_resource(self, path: Path, entry: tuple[bool, object]) -> Resource:
        rid = path.resource_id
        assert rid is not None
        rtype = model_type(self.model, path)
        multiple, payload = entry
        if multiple:
            assert isinstance(payload, dict)
            return Resource(rid, instances=payload, type=rtype)
        return Resource(rid, value=payload, type=rtype)  # type: ignore[arg-type]

    def _build_instance(self, path: Path, res: dict[int, tuple[bool, object]]) -> ObjectInstance:
        iid = path.instance_id
        assert iid is not None
        resources = {r: self._build_resource(path.child(r), e) for r, e in res.items()}
        return ObjectInstance(iid, resources)

    def node_at(self, path: Path) -> Node:
        o, i, r, ri = path.ids_with_gaps
        assert o is not None
        insts = self.tree.get(o, {})
        if i is None:
            return LwM2MObject(
                o, {iid: self._build_instance(path.child(iid), res) for iid, res in insts.items()}
            )
        res = insts.get(i, {})
        if r is None:
            return self._build_instance(path, res)
        entry = res.get(r)
        if ri is None:
            if entry is None:
                rdef = resource_def(self.model, path)
                if rdef is not None and rdef.multiple:
                    return Resource(r, instances={}, type=model_type(self.model, path))
                raise FormatError(f"{path}: no value in the payload")
            return self._build_resource(path, entry)
        if entry is None:
            raise FormatError(f"{path}: no value in the payload")
        multiple, payload = entry
        assert multiple and isinstance(payload, dict)
        if ri not in payload:
            raise FormatError(f"{path}: no value in the payload")
        value = payload[ri]
        return ResourceInstance(ri, value)


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

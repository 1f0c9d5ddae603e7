"""Which object definitions are known: the core ones, DDF files, and run-time additions."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from lwm2m.model.definitions import ObjectDef, ResourceDef


class ModelRegistry:
    """Object definitions by object ID (one version per ID: the last added wins)."""

    def __init__(self, objects: Iterable[ObjectDef] = ()) -> None:
        self._objects: dict[int, ObjectDef] = {}
        for obj in objects:
            self.add(obj)

    def add(self, obj: ObjectDef) -> None:
        self._objects[obj.id] = obj

    def object(self, object_id: int) -> ObjectDef | None:
        return self._objects.get(object_id)

    def resource(self, object_id: int, resource_id: int) -> ResourceDef | None:
        obj = self._objects.get(object_id)
        return None if obj is None else obj.resources.get(resource_id)

    def __iter__(self) -> Iterator[ObjectDef]:
        return iter(sorted(self._objects.values(), key=lambda o: o.id))

    def __contains__(self, object_id: object) -> bool:
        return object_id in self._objects

    def __len__(self) -> int:
        return len(self._objects)

"""Which object definitions are known: the core ones, DDF files, and run-time additions.

Unknown objects are not an error anywhere in the stack: a client may expose
objects no one has a DDF for. :meth:`ModelRegistry.resource` then returns
``None`` and callers carry the values untyped (opaque bytes when the content
format gives no type, the decoded value otherwise; see
:mod:`lwm2m.model.nodes`).
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator
from pathlib import Path as FsPath

from lwm2m.model.core_objects import DEFAULT_OBJECTS
from lwm2m.model.ddf import WarningHandler, load_ddf_directory, load_ddf_file
from lwm2m.model.definitions import ObjectDef, ResourceDef


def version_key(version: str) -> tuple[int, ...]:
    """Sort key for ``"1.10"`` > ``"1.2"``; text that is not dotted digits sorts first."""
    parts = version.split(".")
    if not all(p.isascii() and p.isdigit() for p in parts):
        return (-1,)
    return tuple(int(p) for p in parts)


class ModelRegistry:
    """Object definitions by object ID, several versions per ID.

    Lookups without a version use the newest version known. Adding a
    definition with the ID and version of a known one replaces it (the last
    loaded DDF wins). Not thread-safe: fill it at start-up, then read.
    """

    def __init__(self, objects: Iterable[ObjectDef] = ()) -> None:
        self._objects: dict[int, dict[str, ObjectDef]] = {}
        # Newest version per ID: resource() is on every codec's hot path.
        self._newest: dict[int, ObjectDef] = {}
        for obj in objects:
            self.add(obj)

    def add(self, obj: ObjectDef) -> None:
        versions = self._objects.setdefault(obj.id, {})
        versions[obj.version] = obj
        self._newest[obj.id] = versions[max(versions, key=version_key)]

    def add_all(self, objects: Iterable[ObjectDef]) -> None:
        for obj in objects:
            self.add(obj)

    def object(self, object_id: int, version: str | None = None) -> ObjectDef | None:
        """The definition of ``object_id``: the newest, or exactly ``version``; ``None`` if unknown."""
        if version is None:
            return self._newest.get(object_id)
        versions = self._objects.get(object_id)
        return None if versions is None else versions.get(version)

    def resolve(self, object_id: int, version: str | None = None) -> ObjectDef | None:
        """Best definition for what a client announced (``</3>;ver=1.1``).

        Exactly ``version`` if known; else the newest known version with the
        same major number; else the newest version. ``None`` only for an
        unknown object ID.
        """
        versions = self._objects.get(object_id)
        if not versions:
            return None
        if version is None:
            return self.object(object_id)
        if version in versions:
            return versions[version]
        major = version.split(".", 1)[0]
        same_major = [v for v in versions if v.split(".", 1)[0] == major]
        return versions[max(same_major or versions, key=version_key)]

    def versions(self, object_id: int) -> tuple[str, ...]:
        """Known versions of ``object_id``, oldest first."""
        return tuple(sorted(self._objects.get(object_id, ()), key=version_key))

    def resource(
        self, object_id: int, resource_id: int, version: str | None = None
    ) -> ResourceDef | None:
        """The definition of a resource, or ``None`` if the object or resource is unknown.

        ``None`` means "no model": treat the value as untyped/opaque.
        """
        obj = self.object(object_id, version)
        return None if obj is None else obj.resources.get(resource_id)

    def load_file(
        self,
        path: str | FsPath,
        *,
        strict: bool = False,
        on_warning: WarningHandler | None = None,
    ) -> list[ObjectDef]:
        """Add the objects of one DDF file; returns them. Raises ``DdfError``."""
        objects = load_ddf_file(path, strict=strict, on_warning=on_warning)
        self.add_all(objects)
        return objects

    def load_directory(
        self,
        directory: str | FsPath,
        *,
        strict: bool = False,
        on_warning: WarningHandler | None = None,
    ) -> list[ObjectDef]:
        """Add every ``*.xml`` DDF in ``directory`` (the ``--models DIR`` option).

        All files are parsed before any is added, so a bad file leaves the
        registry unchanged. Raises ``DdfError`` naming the file and line.
        """
        objects = load_ddf_directory(directory, strict=strict, on_warning=on_warning)
        self.add_all(objects)
        return objects

    def copy(self) -> ModelRegistry:
        return ModelRegistry(self.all_versions())

    def all_versions(self) -> Iterator[ObjectDef]:
        """Every definition, by object ID then version."""
        for object_id in sorted(self._objects):
            versions = self._objects[object_id]
            for version in sorted(versions, key=version_key):
                yield versions[version]

    def __iter__(self) -> Iterator[ObjectDef]:
        """The newest definition of each object, by object ID."""
        for object_id in sorted(self._newest):
            yield self._newest[object_id]

    def __contains__(self, object_id: builtins.object) -> bool:
        return object_id in self._objects

    def __len__(self) -> int:
        """Number of object IDs (not of versions)."""
        return len(self._objects)


def default_registry(
    *model_dirs: str | FsPath | None,
    strict: bool = False,
    on_warning: WarningHandler | None = None,
) -> ModelRegistry:
    """A new registry with the core objects (0-7) and the IPSO examples (3303, 3311).

    Each of ``model_dirs`` (the ``--models DIR`` option; ``None`` entries are
    skipped) is then loaded with :meth:`ModelRegistry.load_directory`, so DDF
    files override our definitions of the same object version and add others.
    Raises ``DdfError`` for a bad file.
    """
    registry = ModelRegistry(DEFAULT_OBJECTS)
    for directory in model_dirs:
        if directory is not None:
            registry.load_directory(directory, strict=strict, on_warning=on_warning)
    return registry

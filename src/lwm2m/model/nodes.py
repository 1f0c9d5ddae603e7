"""The one immutable node model shared by client, server and bootstrap server.

A decoded payload is one of these nodes; a codec turns nodes into bytes and
back. Values are Python values typed by the resource type:

==================  ==========================================
String, Corelnk     ``str``
Integer, Unsigned   ``int``
Float               ``float``
Boolean             ``bool``
Opaque              ``bytes``
Time                ``datetime.datetime`` (timezone-aware, UTC)
Objlnk              :class:`lwm2m.model.types.ObjectLink`
None (executable)   not carried by nodes
==================  ==========================================

A value whose type is unknown (no model for it) is carried as ``bytes`` when
it came in an opaque form, or as the most natural decoded type otherwise.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeAlias

from lwm2m.model.path import (
    MAX_INSTANCE_ID,
    MAX_OBJECT_ID,
    MAX_RESOURCE_ID,
    MAX_RESOURCE_INSTANCE_ID,
    Path,
)
from lwm2m.model.types import ObjectLink, ResourceType

Value: TypeAlias = str | int | float | bool | bytes | datetime.datetime | ObjectLink


_VALUE_TYPES = (str, int, float, bool, bytes, datetime.datetime, ObjectLink)


def _check_id(what: str, ident: object, limit: int) -> None:
    if not isinstance(ident, int) or isinstance(ident, bool) or not 0 <= ident <= limit:
        raise ValueError(f"{what} ID {ident!r} out of range 0-{limit}")


def _check_value(where: str, value: object) -> None:
    """Reject values outside the :data:`Value` union (a bug in the caller, not bad input)."""
    if not isinstance(value, _VALUE_TYPES):
        raise ValueError(f"{where}: value of type {type(value).__name__} is not a node value")
    if isinstance(value, datetime.datetime) and value.utcoffset() is None:
        raise ValueError(f"{where}: Time values must be timezone-aware")


def _freeze(
    items: Mapping[int, object] | Iterable[object], key: str, kind: type | None = None
) -> Mapping[int, object]:
    """An immutable, ID-sorted mapping; a mapping's keys must be its items' IDs."""
    result: dict[int, object] = {}
    if isinstance(items, Mapping):
        for ident, item in items.items():
            if kind is not None and not isinstance(item, kind):
                raise ValueError(f"expected {kind.__name__}, got {type(item).__name__}")
            if getattr(item, key) != ident:
                raise ValueError(
                    f"key {ident!r} does not match the item's ID {getattr(item, key)!r}"
                )
            result[ident] = item
    else:
        for item in items:
            if kind is not None and not isinstance(item, kind):
                raise ValueError(f"expected {kind.__name__}, got {type(item).__name__}")
            ident = getattr(item, key)
            if ident in result:
                raise ValueError(f"duplicate ID {ident}")
            result[ident] = item
    return MappingProxyType(dict(sorted(result.items())))


@dataclass(frozen=True, slots=True)
class ResourceInstance:
    id: int
    value: Value

    def __post_init__(self) -> None:
        _check_id("resource instance", self.id, MAX_RESOURCE_INSTANCE_ID)
        _check_value(f"resource instance {self.id}", self.value)


@dataclass(frozen=True, slots=True)
class Resource:
    """A single-instance resource (``value``) or a multiple one (``instances``).

    ``type`` is the resource type when known (from the model or the format);
    ``None`` means untyped.
    """

    id: int
    value: Value | None = None
    instances: Mapping[int, Value] | None = None
    type: ResourceType | None = None

    def __post_init__(self) -> None:
        _check_id("resource", self.id, MAX_RESOURCE_ID)
        if (self.value is None) == (self.instances is None):
            raise ValueError(
                f"resource {self.id}: exactly one of value (single) or instances (multiple) is required"
            )
        if self.value is not None:
            _check_value(f"resource {self.id}", self.value)
        if self.instances is not None:
            # Always copied: a proxy handed in may wrap a dict its owner still mutates.
            for ri, v in self.instances.items():
                _check_id("resource instance", ri, MAX_RESOURCE_INSTANCE_ID)
                _check_value(f"resource {self.id}/{ri}", v)
            object.__setattr__(
                self, "instances", MappingProxyType(dict(sorted(self.instances.items())))
            )

    @property
    def is_multiple(self) -> bool:
        return self.instances is not None

    @classmethod
    def single(cls, id: int, value: Value, type: ResourceType | None = None) -> Resource:
        return cls(id, value=value, type=type)

    @classmethod
    def multiple(
        cls, id: int, instances: Mapping[int, Value], type: ResourceType | None = None
    ) -> Resource:
        return cls(id, instances=dict(instances), type=type)


@dataclass(frozen=True, slots=True)
class ObjectInstance:
    id: int
    resources: Mapping[int, Resource] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_id("object instance", self.id, MAX_INSTANCE_ID)
        object.__setattr__(self, "resources", _freeze(self.resources, "id", Resource))

    @classmethod
    def of(cls, id: int, resources: Iterable[Resource]) -> ObjectInstance:
        return cls(id, _freeze(resources, "id"))  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class LwM2MObject:
    id: int
    instances: Mapping[int, ObjectInstance] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_id("object", self.id, MAX_OBJECT_ID)
        object.__setattr__(self, "instances", _freeze(self.instances, "id", ObjectInstance))

    @classmethod
    def of(cls, id: int, instances: Iterable[ObjectInstance]) -> LwM2MObject:
        return cls(id, _freeze(instances, "id"))  # type: ignore[arg-type]


Node: TypeAlias = LwM2MObject | ObjectInstance | Resource | ResourceInstance


def node_kind(path: Path) -> str:
    """``root``, ``object``, ``instance``, ``resource`` or ``resource_instance``."""
    return ("root", "object", "instance", "resource", "resource_instance")[path.depth]

"""Serve objects known only from DDF files: instance 0 with a default value per resource.

``lwm2m client --models DIR`` puts every object of DIR on the device, so a
simulated device exposes it (Read, Write, Observe, Execute answer as the
model says) and its written values persist like any other.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable

from lwm2m.client.store import ObjectStore
from lwm2m.model.definitions import ObjectDef, ResourceDef
from lwm2m.model.nodes import Value
from lwm2m.model.types import ObjectLink, ResourceType

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def default_value(rdef: ResourceDef) -> Value | None:
    """A neutral value of the resource's type (None for executable resources)."""
    rtype = rdef.type
    if rtype in (ResourceType.STRING, ResourceType.CORELNK):
        return ""
    if rtype in (ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER):
        return 0
    if rtype is ResourceType.FLOAT:
        return 0.0
    if rtype is ResourceType.BOOLEAN:
        return False
    if rtype is ResourceType.OPAQUE:
        return b""
    if rtype is ResourceType.TIME:
        return _EPOCH
    if rtype is ResourceType.OBJLNK:
        return ObjectLink(65535, 65535)  # the null link
    return None


def default_values(definition: ObjectDef) -> dict[int, object]:
    values: dict[int, object] = {}
    for rdef in definition.resources.values():
        if rdef.operations.executable:
            continue
        value = default_value(rdef)
        if value is None:
            continue
        if rdef.multiple:
            values[rdef.id] = {0: value} if rdef.mandatory else {}
        else:
            values[rdef.id] = value
    return values


def add_generic_objects(store: ObjectStore, definitions: Iterable[ObjectDef]) -> list[int]:
    """Create instance 0 of each object the store does not have yet; returns their IDs."""
    added: list[int] = []
    for definition in definitions:
        if store.get_object(definition.id) is not None:
            continue
        store.create_instance(definition.id, 0, default_values(definition))
        added.append(definition.id)
    return added

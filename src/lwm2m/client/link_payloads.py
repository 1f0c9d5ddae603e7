"""CoRE Link Format (RFC 6690) the client emits: the Register/Update payload and Discover answers."""

from __future__ import annotations

from lwm2m.client.instance import Instance
from lwm2m.client.store import SECURITY, ObjectStore
from lwm2m.model.path import Path
from lwm2m.protocol.attributes import Attributes

#: Objects never announced in a registration (their instances are not servers' business).
HIDDEN_OBJECTS = frozenset({SECURITY, 21})  # Security, OSCORE


def _attrs(attributes: Attributes) -> str:
    return "".join(f";{item}" for item in attributes.to_query())


def registration_payload(store: ObjectStore, content_format: int | None = None) -> bytes:
    """``</>;rt="oma.lwm2m"``, then every object (with ``ver`` when not 1.0) and instance."""
    links = ['</>;rt="oma.lwm2m"' + (f";ct={content_format}" if content_format is not None else "")]
    for obj in store.objects():
        if obj.id in HIDDEN_OBJECTS:
            continue
        if obj.version != "1.0":
            links.append(f"</{obj.id}>;ver={obj.version}")
        elif not obj.instances:
            links.append(f"</{obj.id}>")
        links.extend(f"</{obj.id}/{inst.id}>" for inst in obj)
    return ",".join(links).encode()


def _resource_link(inst: Instance, rid: int, attrs: Attributes) -> str:
    link = f"<{inst.path}/{rid}>"
    if inst.is_multiple(rid):
        value = inst.get(rid)
        link += f";dim={len(value) if isinstance(value, dict) else 0}"
    return link + _attrs(attrs)


def discover_payload(
    store: ObjectStore, path: Path, attributes_at: dict[Path, Attributes]
) -> bytes:
    """Discover of an object, instance or resource (LwM2M 1.1 5.4.2); the path must exist."""
    links: list[str] = []
    obj = store.get_object(path.object_id or 0)
    assert obj is not None
    if path.depth == 1:
        version = f";ver={obj.version}" if obj.version != "1.0" else ""
        links.append(f"</{obj.id}>{version}" + _attrs(attributes_at.get(path, Attributes())))
        instances = list(obj)
    else:
        inst = store.instance(obj.id, path.instance_id or 0)
        assert inst is not None
        instances = [inst]
    for inst in instances:
        ipath = inst.path
        if path.depth <= 2:
            links.append(f"<{ipath}>" + _attrs(attributes_at.get(ipath, Attributes())))
            for rid in inst.resource_ids():
                rpath = ipath.child(rid)
                links.append(_resource_link(inst, rid, attributes_at.get(rpath, Attributes())))
        else:
            rid = path.resource_id or 0
            links.append(_resource_link(inst, rid, attributes_at.get(path, Attributes())))
    return ",".join(links).encode()

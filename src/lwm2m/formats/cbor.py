"""Plain CBOR (Content-Format 60, LwM2M TS Core 1.1, 7.4.6): one value as one CBOR item.

Like plain text, it carries a single resource or resource instance value:
Integer/Unsigned as CBOR integers, Float as a float, Boolean, String and
Corelnk as text, Opaque as a byte string, Objlnk as text ``"3:0"`` and Time
as epoch seconds with tag 1 (an untagged integer is accepted on decode).
Without a model the decoded item keeps its natural type.
"""

from __future__ import annotations

from lwm2m.formats import cbor_strict
from lwm2m.formats.errors import FormatError, guard
from lwm2m.formats.lwm2m_cbor import TIME_TAG, from_cbor_value, to_cbor_value
from lwm2m.formats.text import single_value
from lwm2m.formats.type_resolution import effective_type, model_type, resource_def
from lwm2m.model.nodes import Node, Resource, ResourceInstance
from lwm2m.model.path import Path
from lwm2m.model.registry import ModelRegistry


def encode(node: Node, path: Path, model: ModelRegistry | None = None) -> bytes:
    value, node_type = single_value(node, path, "plain CBOR")
    rtype = effective_type(model, path, node_type, value)
    return cbor_strict.dumps(to_cbor_value(value, rtype, path))


@guard
def decode(data: bytes, path: Path, model: ModelRegistry | None = None) -> Node:
    if path.depth < 3:
        raise FormatError(f"{path}: plain CBOR carries only a resource or resource instance")
    rdef = resource_def(model, path)
    if rdef is not None and rdef.multiple and path.depth == 3:
        raise FormatError(f"{path}: a multiple-instance resource needs a structured format")
    rtype = model_type(model, path)
    value = from_cbor_value(cbor_strict.loads(data, allowed_tags=(TIME_TAG,)), rtype, path)
    if path.resource_instance_id is not None:
        return ResourceInstance(path.resource_instance_id, value)
    assert path.resource_id is not None
    return Resource(path.resource_id, value=value, type=rtype)

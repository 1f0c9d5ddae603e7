"""Opaque (Content-Format 42, application/octet-stream): raw bytes of one value.

Only Opaque resources (or resources the model does not know) use it; the
payload is the value itself, so any byte string is valid.
"""

from __future__ import annotations

from lwm2m.formats.errors import FormatError, guard
from lwm2m.formats.text import single_value
from lwm2m.formats.type_resolution import as_type, effective_type, model_type, resource_def
from lwm2m.model.nodes import Node, Resource, ResourceInstance
from lwm2m.model.path import Path
from lwm2m.model.registry import ModelRegistry
from lwm2m.model.types import ResourceType


def encode(node: Node, path: Path, model: ModelRegistry | None = None) -> bytes:
    value, node_type = single_value(node, path, "opaque")
    rtype = effective_type(model, path, node_type, value)
    if rtype is not ResourceType.OPAQUE:
        raise FormatError(f"{path}: opaque carries only Opaque values, not {rtype.value}")
    result = as_type(value, rtype, str(path))
    assert isinstance(result, bytes)
    return result


@guard
def decode(data: bytes, path: Path, model: ModelRegistry | None = None) -> Node:
    if path.depth < 3:
        raise FormatError(f"{path}: opaque carries only a resource or resource instance")
    rdef = resource_def(model, path)
    if rdef is not None and rdef.multiple and path.depth == 3:
        raise FormatError(f"{path}: a multiple-instance resource needs a structured format")
    rtype = model_type(model, path)
    if rtype is not None and rtype is not ResourceType.OPAQUE:
        raise FormatError(f"{path}: opaque carries only Opaque values, not {rtype.value}")
    value = bytes(data)
    if path.resource_instance_id is not None:
        return ResourceInstance(path.resource_instance_id, value)
    assert path.resource_id is not None
    return Resource(path.resource_id, value=value, type=rtype)

"""Plain text (Content-Format 0): one resource or resource instance value.

Representations (LwM2M TS Core 1.1, 7.4.1): Integer/Unsigned in decimal,
Float in decimal (``repr`` round-trips exactly), Boolean ``0``/``1``, Time as
epoch seconds, Objlnk ``OBJ:INST``, Opaque in base64, String and Corelnk as
UTF-8. Without a model the value stays a ``str``.
"""

from __future__ import annotations

import base64
import binascii
import math
import re

from lwm2m.formats.errors import FormatError, guard
from lwm2m.formats.type_resolution import (
    as_type,
    effective_type,
    epoch_seconds,
    from_epoch,
    model_type,
    parse_objlnk,
    resource_def,
)
from lwm2m.model.nodes import Node, Resource, ResourceInstance, Value
from lwm2m.model.path import Path
from lwm2m.model.registry import ModelRegistry
from lwm2m.model.types import ResourceType

_INT = re.compile(r"-?[0-9]+")
_UINT = re.compile(r"[0-9]+")
_FLOAT = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?|-?\.[0-9]+([eE][+-]?[0-9]+)?")


def single_value(node: Node, path: Path, fmt_name: str) -> tuple[Value, ResourceType | None]:
    """The one value a single-value format can carry, with the node's type."""
    if isinstance(node, ResourceInstance) and path.depth == 4:
        if node.id != path.resource_instance_id:
            raise FormatError(f"{path}: node ID {node.id} does not match the path")
        return node.value, None
    if isinstance(node, Resource) and path.depth == 3:
        if node.id != path.resource_id:
            raise FormatError(f"{path}: node ID {node.id} does not match the path")
        if node.value is None:
            raise FormatError(f"{path}: {fmt_name} cannot carry a multiple-instance resource")
        return node.value, node.type
    raise FormatError(
        f"{path}: {fmt_name} carries only a single resource or resource instance value"
    )


def value_to_text(value: Value, rtype: ResourceType, where: object) -> str:
    value = as_type(value, rtype, where)
    if rtype in (ResourceType.STRING, ResourceType.CORELNK):
        assert isinstance(value, str)
        return value
    if rtype is ResourceType.BOOLEAN:
        return "1" if value else "0"
    if rtype is ResourceType.FLOAT:
        assert isinstance(value, float)
        if not math.isfinite(value):
            raise FormatError(f"{where}: Float {value} cannot be written as text")
        return repr(value)
    if rtype is ResourceType.OPAQUE:
        assert isinstance(value, bytes)
        return base64.b64encode(value).decode("ascii")
    if rtype is ResourceType.TIME:
        return str(epoch_seconds(value, where))  # type: ignore[arg-type]
    return str(value)  # Integer, Unsigned Integer, Objlnk


def text_to_value(text: str, rtype: ResourceType | None, where: object) -> Value:
    if rtype is None or rtype in (ResourceType.STRING, ResourceType.CORELNK):
        return text
    if rtype is ResourceType.INTEGER or rtype is ResourceType.TIME:
        if not _INT.fullmatch(text):
            raise FormatError(f"{where}: {text!r} is not a decimal integer")
        number = int(text)
        if rtype is ResourceType.TIME:
            return from_epoch(number, where)
        return as_type(number, rtype, where)
    if rtype is ResourceType.UNSIGNED_INTEGER:
        if not _UINT.fullmatch(text):
            raise FormatError(f"{where}: {text!r} is not an unsigned decimal integer")
        return as_type(int(text), rtype, where)
    if rtype is ResourceType.FLOAT:
        if not _FLOAT.fullmatch(text):
            raise FormatError(f"{where}: {text!r} is not a decimal number")
        result = float(text)
        if not math.isfinite(result):
            raise FormatError(f"{where}: {text!r} overflows a 64-bit float")
        return result
    if rtype is ResourceType.BOOLEAN:
        if text == "1":
            return True
        if text == "0":
            return False
        raise FormatError(f"{where}: boolean must be '0' or '1', got {text!r}")
    if rtype is ResourceType.OPAQUE:
        try:
            return base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise FormatError(f"{where}: opaque value is not valid base64") from None
    if rtype is ResourceType.OBJLNK:
        return parse_objlnk(text, where)
    raise FormatError(f"{where}: resources of type {rtype.value} carry no value")


def encode(node: Node, path: Path, model: ModelRegistry | None = None) -> bytes:
    value, node_type = single_value(node, path, "plain text")
    rtype = effective_type(model, path, node_type, value)
    return value_to_text(value, rtype, str(path)).encode("utf-8")


@guard
def decode(data: bytes, path: Path, model: ModelRegistry | None = None) -> Node:
    if path.depth < 3:
        raise FormatError(f"{path}: plain text carries only a resource or resource instance")
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"byte {exc.start}: invalid UTF-8 in plain text") from None
    rdef = resource_def(model, path)
    if rdef is not None and rdef.multiple and path.depth == 3:
        raise FormatError(f"{path}: a multiple-instance resource needs a structured format")
    rtype = model_type(model, path)
    value = text_to_value(text, rtype, str(path))
    if path.resource_instance_id is not None:
        return ResourceInstance(path.resource_instance_id, value)
    assert path.resource_id is not None
    return Resource(path.resource_id, value=value, type=rtype)


__all__ = ["decode", "encode", "single_value", "text_to_value", "value_to_text"]

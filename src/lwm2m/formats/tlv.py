"""OMA TLV (Content-Format 11542, legacy 1542): LwM2M TS Core 1.1, 7.4.3.

Each entry is a type byte, an 8- or 16-bit identifier, an optional 8/16/24
bit length and the value::

    bits 7-6  00 object instance, 01 resource instance,
              10 multiple resource, 11 resource with value
    bit 5     identifier length: 0 = 8 bits, 1 = 16 bits
    bits 4-3  length field: 00 = in bits 2-0, 01/10/11 = 8/16/24 bits
    bits 2-0  the length when bits 4-3 are 00

Object instances contain resources; multiple resources contain resource
instances. Values are typed by the model: integers are signed big-endian of
1, 2, 4 or 8 bytes (minimal on encode), floats 4 or 8 bytes, booleans one
byte 0/1, Time a signed integer, Objlnk two 16-bit IDs, strings UTF-8.
Values of resources the model does not know are returned as ``bytes``.
"""

from __future__ import annotations

import enum
import math
import struct
from dataclasses import dataclass

from lwm2m.formats.errors import FormatError, guard
from lwm2m.formats.tree import check_node_path
from lwm2m.formats.type_resolution import (
    At,
    as_type,
    effective_type_at,
    epoch_seconds,
    from_epoch,
    model_type,
    rdef_at,
    resource_def,
)
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
from lwm2m.model.types import ObjectLink, ResourceType

MAX_LENGTH = 0xFFFFFF


class TlvKind(enum.IntEnum):
    OBJECT_INSTANCE = 0b00
    RESOURCE_INSTANCE = 0b01
    MULTIPLE_RESOURCE = 0b10
    RESOURCE = 0b11


@dataclass(frozen=True, slots=True)
class Tlv:
    """One parsed entry: where its value lies in the payload (no copy made)."""

    kind: TlvKind
    id: int
    offset: int  # of the type byte
    start: int  # first value byte
    end: int  # one past the last value byte


def parse(data: bytes, start: int = 0, end: int | None = None) -> list[Tlv]:
    """The entries in ``data[start:end]`` (one level; nested values are not parsed)."""
    stop = len(data) if end is None else end
    result: list[Tlv] = []
    pos = start
    while pos < stop:
        offset = pos
        type_byte = data[pos]
        pos += 1
        id_len = 2 if type_byte & 0x20 else 1
        len_len = (type_byte >> 3) & 0x03
        if pos + id_len + len_len > stop:
            raise FormatError(f"byte {offset}: TLV header truncated")
        ident = data[pos] if id_len == 1 else (data[pos] << 8) | data[pos + 1]
        pos += id_len
        if len_len == 0:
            length = type_byte & 0x07
        else:
            if type_byte & 0x07:
                raise FormatError(
                    f"byte {offset}: TLV type byte has length bits set with a length field"
                )
            length = int.from_bytes(data[pos : pos + len_len], "big")
            pos += len_len
        if pos + length > stop:
            raise FormatError(
                f"byte {offset}: TLV value of {length} bytes runs past the end ({stop - pos} left)"
            )
        result.append(Tlv(TlvKind(type_byte >> 6), ident, offset, pos, pos + length))
        pos += length
    return result


# --- values ------------------------------------------------------------------


def _signed(value: int) -> bytes:
    for size in (1, 2, 4, 8):
        bound = 1 << (8 * size - 1)
        if -bound <= value < bound:
            return value.to_bytes(size, "big", signed=True)
    raise FormatError(f"integer {value} does not fit 8 bytes")


def _unsigned(value: int) -> bytes:
    for size in (1, 2, 4, 8):
        if value < 1 << (8 * size):
            return value.to_bytes(size, "big")
    raise FormatError(f"unsigned integer {value} does not fit 8 bytes")


def encode_value(value: Value, rtype: ResourceType, where: object) -> bytes:
    value = as_type(value, rtype, where)
    if rtype in (ResourceType.STRING, ResourceType.CORELNK):
        assert isinstance(value, str)
        return value.encode("utf-8")
    if rtype is ResourceType.INTEGER:
        assert isinstance(value, int)
        return _signed(value)
    if rtype is ResourceType.UNSIGNED_INTEGER:
        assert isinstance(value, int)
        return _unsigned(value)
    if rtype is ResourceType.FLOAT:
        assert isinstance(value, float)
        try:
            packed = struct.pack(">f", value)
            if struct.unpack(">f", packed)[0] == value or (
                math.isnan(value) and math.isnan(struct.unpack(">f", packed)[0])
            ):
                return packed
        except OverflowError:
            pass
        return struct.pack(">d", value)
    if rtype is ResourceType.BOOLEAN:
        return b"\x01" if value else b"\x00"
    if rtype is ResourceType.OPAQUE:
        assert isinstance(value, bytes)
        return value
    if rtype is ResourceType.TIME:
        return _signed(epoch_seconds(value, where))  # type: ignore[arg-type]
    assert isinstance(value, ObjectLink)
    return struct.pack(">HH", value.object_id, value.instance_id)


def decode_value(raw: bytes, rtype: ResourceType | None, where: object) -> Value:
    size = len(raw)
    if rtype is None or rtype is ResourceType.OPAQUE:
        return raw
    if rtype in (ResourceType.STRING, ResourceType.CORELNK):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"{where}: invalid UTF-8 at value byte {exc.start}") from None
    if rtype in (ResourceType.INTEGER, ResourceType.TIME, ResourceType.UNSIGNED_INTEGER):
        if size not in (1, 2, 4, 8):
            raise FormatError(f"{where}: {rtype.value} must be 1, 2, 4 or 8 bytes, got {size}")
        number = int.from_bytes(raw, "big", signed=rtype is not ResourceType.UNSIGNED_INTEGER)
        return from_epoch(number, where) if rtype is ResourceType.TIME else number
    if rtype is ResourceType.FLOAT:
        if size == 4:
            return float(struct.unpack(">f", raw)[0])
        if size == 8:
            return float(struct.unpack(">d", raw)[0])
        raise FormatError(f"{where}: Float must be 4 or 8 bytes, got {size}")
    if rtype is ResourceType.BOOLEAN:
        if raw == b"\x00":
            return False
        if raw == b"\x01":
            return True
        raise FormatError(f"{where}: Boolean must be one byte 0 or 1, got {raw.hex()!r}")
    if rtype is ResourceType.OBJLNK:
        if size != 4:
            raise FormatError(f"{where}: Objlnk must be 4 bytes, got {size}")
        obj, inst = struct.unpack(">HH", raw)
        return ObjectLink(obj, inst)
    raise FormatError(f"{where}: resources of type {rtype.value} carry no value")


# --- encoding ----------------------------------------------------------------


def _entry(kind: TlvKind, ident: int, value: bytes) -> bytes:
    length = len(value)
    type_byte = kind << 6
    if ident > 0xFF:
        type_byte |= 0x20
        id_bytes = ident.to_bytes(2, "big")
    else:
        id_bytes = bytes((ident,))
    if length < 8:
        type_byte |= length
        len_bytes = b""
    elif length <= 0xFF:
        type_byte |= 0x08
        len_bytes = bytes((length,))
    elif length <= 0xFFFF:
        type_byte |= 0x10
        len_bytes = length.to_bytes(2, "big")
    elif length <= MAX_LENGTH:
        type_byte |= 0x18
        len_bytes = length.to_bytes(3, "big")
    else:
        raise FormatError(f"TLV value of {length} bytes exceeds the 24-bit length field")
    return bytes((type_byte,)) + id_bytes + len_bytes + value


def _encode_resource(res: Resource, ids: tuple[int, ...], model: ModelRegistry | None) -> bytes:
    if res.instances is None:
        assert res.value is not None
        rtype = effective_type_at(model, ids, res.type, res.value)
        return _entry(TlvKind.RESOURCE, res.id, encode_value(res.value, rtype, At(ids)))
    parts = []
    for ri, value in res.instances.items():
        rtype = effective_type_at(model, ids, res.type, value)
        raw = encode_value(value, rtype, At((*ids, ri)))
        parts.append(_entry(TlvKind.RESOURCE_INSTANCE, ri, raw))
    return _entry(TlvKind.MULTIPLE_RESOURCE, res.id, b"".join(parts))


def _encode_instance_body(
    inst: ObjectInstance, ids: tuple[int, ...], model: ModelRegistry | None
) -> bytes:
    return b"".join(
        _encode_resource(res, (*ids, rid), model) for rid, res in inst.resources.items()
    )


def encode(node: Node, path: Path, model: ModelRegistry | None = None) -> bytes:
    """TLV for ``node`` at ``path``; an object instance is sent as its resources."""
    check_node_path(node, path)
    ids = path.ids
    if isinstance(node, LwM2MObject):
        return b"".join(
            _entry(TlvKind.OBJECT_INSTANCE, iid, _encode_instance_body(inst, (*ids, iid), model))
            for iid, inst in node.instances.items()
        )
    if isinstance(node, ObjectInstance):
        return _encode_instance_body(node, ids, model)
    if isinstance(node, Resource):
        return _encode_resource(node, ids, model)
    rtype = effective_type_at(model, ids, None, node.value)
    return _entry(TlvKind.RESOURCE_INSTANCE, node.id, encode_value(node.value, rtype, path))


# --- decoding ----------------------------------------------------------------


def _value(data: bytes, tlv: Tlv, rtype: ResourceType | None, where: At) -> Value:
    try:
        return decode_value(data[tlv.start : tlv.end], rtype, where)
    except FormatError as exc:
        raise FormatError(f"{exc} (byte {tlv.offset})") from None


def _decode_resource(
    data: bytes, tlv: Tlv, ids: tuple[int, ...], model: ModelRegistry | None
) -> Resource:
    rdef = rdef_at(model, ids)
    rtype = None if rdef is None or rdef.type is ResourceType.NONE else rdef.type
    if tlv.kind is TlvKind.RESOURCE:
        if rdef is not None and rdef.multiple:
            raise FormatError(f"{At(ids)} (byte {tlv.offset}): model says multiple, TLV is single")
        return Resource(tlv.id, value=_value(data, tlv, rtype, At(ids)), type=rtype)
    if tlv.kind is TlvKind.MULTIPLE_RESOURCE:
        children = parse(data, tlv.start, tlv.end)
        return _multiple(data, children, ids, rdef is not None and not rdef.multiple, rtype)
    raise FormatError(f"{At(ids)} (byte {tlv.offset}): expected a resource, got {tlv.kind.name}")


def _multiple(
    data: bytes,
    children: list[Tlv],
    ids: tuple[int, ...],
    single: bool,
    rtype: ResourceType | None,
) -> Resource:
    if single:
        raise FormatError(f"{At(ids)}: model says single-instance, TLV is multiple")
    instances: dict[int, Value] = {}
    for child in children:
        if child.kind is not TlvKind.RESOURCE_INSTANCE:
            raise FormatError(
                f"{At(ids)} (byte {child.offset}): expected a resource instance, "
                f"got {child.kind.name}"
            )
        if child.id in instances:
            raise FormatError(
                f"{At(ids)} (byte {child.offset}): duplicate resource instance {child.id}"
            )
        instances[child.id] = _value(data, child, rtype, At((*ids, child.id)))
    return Resource(ids[2], instances=instances, type=rtype)


def _decode_instance_body(
    data: bytes, entries: list[Tlv], ids: tuple[int, ...], model: ModelRegistry | None
) -> ObjectInstance:
    resources: dict[int, Resource] = {}
    for tlv in entries:
        if tlv.id in resources:
            raise FormatError(f"{At(ids)} (byte {tlv.offset}): duplicate resource {tlv.id}")
        resources[tlv.id] = _decode_resource(data, tlv, (*ids, tlv.id), model)
    return ObjectInstance(ids[1], resources)


def _expect_one(entries: list[Tlv], path: Path) -> Tlv:
    if len(entries) != 1:
        raise FormatError(f"{path}: expected one TLV entry, got {len(entries)}")
    return entries[0]


@guard
def decode(data: bytes, path: Path, model: ModelRegistry | None = None) -> Node:
    data = bytes(data)
    if path.is_root:
        raise FormatError("TLV cannot carry the root path")
    entries = parse(data)
    ids = path.ids
    if path.depth == 1:
        instances: dict[int, ObjectInstance] = {}
        for tlv in entries:
            if tlv.kind is not TlvKind.OBJECT_INSTANCE:
                raise FormatError(f"{path} (byte {tlv.offset}): expected an object instance")
            if tlv.id in instances:
                raise FormatError(f"{path} (byte {tlv.offset}): duplicate object instance {tlv.id}")
            inner = parse(data, tlv.start, tlv.end)
            instances[tlv.id] = _decode_instance_body(data, inner, (*ids, tlv.id), model)
        assert path.object_id is not None
        return LwM2MObject(path.object_id, instances)
    if path.depth == 2:
        if entries and entries[0].kind is TlvKind.OBJECT_INSTANCE:
            # Some clients wrap an instance's resources in its object instance entry.
            wrapper = _expect_one(entries, path)
            if wrapper.id != path.instance_id:
                raise FormatError(f"{path} (byte 0): object instance {wrapper.id} not requested")
            entries = parse(data, wrapper.start, wrapper.end)
        return _decode_instance_body(data, entries, ids, model)
    if path.depth == 3:
        if entries and all(t.kind is TlvKind.RESOURCE_INSTANCE for t in entries):
            rdef = resource_def(model, path)
            return _multiple(
                data, entries, ids, rdef is not None and not rdef.multiple, model_type(model, path)
            )
        tlv = _expect_one(entries, path)
        if tlv.id != path.resource_id:
            raise FormatError(f"{path} (byte 0): resource {tlv.id} not requested")
        return _decode_resource(data, tlv, ids, model)
    tlv = _expect_one(entries, path)
    if tlv.kind is not TlvKind.RESOURCE_INSTANCE:
        raise FormatError(f"{path} (byte 0): expected a resource instance, got {tlv.kind.name}")
    if tlv.id != path.resource_instance_id:
        raise FormatError(f"{path} (byte 0): resource instance {tlv.id} not requested")
    return ResourceInstance(tlv.id, _value(data, tlv, model_type(model, path), At(ids)))

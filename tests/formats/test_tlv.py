"""TLV: the LwM2M TS Device example, header variants, typed values, malformed input."""

from __future__ import annotations

import datetime

import pytest
from format_models import MODEL

from lwm2m.formats import tlv
from lwm2m.formats.errors import FormatError
from lwm2m.model.nodes import LwM2MObject, ObjectInstance, Resource, ResourceInstance
from lwm2m.model.path import Path
from lwm2m.model.types import ObjectLink, ResourceType

# LwM2M TS Core (1.0 6.4.3.1 / 1.1 7.4.3.1): Read /3/0 answered in TLV.
DEVICE_TLV = bytes.fromhex(
    """
    C8 00 14 4F 70 65 6E 20 4D 6F 62 69 6C 65 20 41 6C 6C 69 61 6E 63 65
    C8 01 16 4C 69 67 68 74 77 65 69 67 68 74 20 4D 32 4D 20 43 6C 69 65 6E 74
    C8 02 09 33 34 35 30 30 30 31 32 33
    C3 03 31 2E 30
    86 06 41 00 01 41 01 05
    88 07 08 42 00 0E D8 42 01 13 88
    87 08 41 00 7D 42 01 03 84
    C1 09 64
    C1 0A 0F
    83 0B 41 00 00
    C4 0D 51 82 42 8F
    C6 0E 2B 30 32 3A 30 30
    C1 10 55
    """
)

INT = ResourceType.INTEGER
STR = ResourceType.STRING

DEVICE_NODE = ObjectInstance.of(
    0,
    [
        Resource.single(0, "Open Mobile Alliance", STR),
        Resource.single(1, "Lightweight M2M Client", STR),
        Resource.single(2, "345000123", STR),
        Resource.single(3, "1.0", STR),
        Resource.multiple(6, {0: 1, 1: 5}, INT),
        Resource.multiple(7, {0: 3800, 1: 5000}, INT),
        Resource.multiple(8, {0: 125, 1: 900}, INT),
        Resource.single(9, 100, INT),
        Resource.single(10, 15, INT),
        Resource.multiple(11, {0: 0}, INT),
        Resource.single(
            13, datetime.datetime(2013, 5, 2, 10, 40, 15, tzinfo=datetime.UTC), ResourceType.TIME
        ),
        Resource.single(14, "+02:00", STR),
        Resource.single(16, "U", STR),
    ],
)


def test_spec_device_example_decodes() -> None:
    assert tlv.decode(DEVICE_TLV, Path(3, 0), MODEL) == DEVICE_NODE


def test_spec_device_example_encodes_byte_for_byte() -> None:
    assert tlv.encode(DEVICE_NODE, Path(3, 0), MODEL) == DEVICE_TLV


def test_current_time_is_epoch_1367491215() -> None:
    node = tlv.decode(bytes.fromhex("C40D5182428F"), Path(3, 0, 13), MODEL)
    assert isinstance(node, Resource) and isinstance(node.value, datetime.datetime)
    assert node.value.timestamp() == 1367491215


def test_object_read_wraps_instances() -> None:
    obj = LwM2MObject.of(3, [DEVICE_NODE])
    data = tlv.encode(obj, Path(3), MODEL)
    # object instance 0, 16-bit length (the instance is more than 255 bytes? no: 8-bit)
    assert data[0] == 0x08 and data[1] == 0x00 and data[2] == len(DEVICE_TLV)
    assert data[3:] == DEVICE_TLV
    assert tlv.decode(data, Path(3), MODEL) == obj


def test_instance_wrapped_in_object_instance_entry_is_accepted() -> None:
    wrapped = bytes([0x08, 0x00, len(DEVICE_TLV)]) + DEVICE_TLV
    assert tlv.decode(wrapped, Path(3, 0), MODEL) == DEVICE_NODE
    with pytest.raises(FormatError, match="object instance 0 not requested"):
        tlv.decode(wrapped, Path(3, 1), MODEL)


def test_multiple_resource_and_resource_instance_paths() -> None:
    res = tlv.decode(bytes.fromhex("86 06 41 00 01 41 01 05"), Path(3, 0, 6), MODEL)
    assert res == Resource.multiple(6, {0: 1, 1: 5}, INT)
    # resource instances without the multiple-resource wrapper
    assert tlv.decode(bytes.fromhex("41 00 01 41 01 05"), Path(3, 0, 6), MODEL) == res
    ri = tlv.decode(bytes.fromhex("41 01 05"), Path(3, 0, 6, 1), MODEL)
    assert ri == ResourceInstance(1, 5)
    assert tlv.encode(ri, Path(3, 0, 6, 1), MODEL) == bytes.fromhex("41 01 05")


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (7, "C7 01"),
        (8, "C8 01 08"),
        (255, "C8 01 FF"),
        (256, "D0 01 01 00"),
        (70000, "D8 01 01 11 70"),
    ],
)
def test_length_field_sizes(length: int, header: str) -> None:
    node = Resource.single(1, "x" * length)
    data = tlv.encode(node, Path(3, 0, 1), MODEL)
    assert data.startswith(bytes.fromhex(header))
    assert tlv.decode(data, Path(3, 0, 1), MODEL) == Resource.single(1, "x" * length, STR)


def test_sixteen_bit_identifiers() -> None:
    node = Resource.single(5700, 21.5)
    data = tlv.encode(node, Path(3303, 0, 5700), MODEL)
    assert data[:3] == bytes([0xE4, 0x16, 0x44])  # 16-bit ID, 4-byte float
    assert tlv.decode(data, Path(3303, 0, 5700), MODEL) == Resource.single(
        5700, 21.5, ResourceType.FLOAT
    )


@pytest.mark.parametrize(
    ("value", "raw"),
    [
        (0, "00"),
        (127, "7F"),
        (-128, "80"),
        (128, "00 80"),
        (-129, "FF 7F"),
        (32768, "00 00 80 00"),
        (2**31, "00 00 00 00 80 00 00 00"),
        (-(2**63), "80 00 00 00 00 00 00 00"),
    ],
)
def test_integers_are_minimal_signed_big_endian(value: int, raw: str) -> None:
    assert tlv.encode_value(value, INT, "x") == bytes.fromhex(raw)
    assert tlv.decode_value(bytes.fromhex(raw), INT, "x") == value


def test_unsigned_uses_all_bits() -> None:
    assert tlv.encode_value(255, ResourceType.UNSIGNED_INTEGER, "x") == b"\xff"
    assert tlv.encode_value(2**64 - 1, ResourceType.UNSIGNED_INTEGER, "x") == b"\xff" * 8
    assert tlv.decode_value(b"\xff" * 8, ResourceType.UNSIGNED_INTEGER, "x") == 2**64 - 1


def test_floats_use_four_bytes_when_exact() -> None:
    assert tlv.encode_value(1.5, ResourceType.FLOAT, "x") == bytes.fromhex("3FC00000")
    assert len(tlv.encode_value(0.1, ResourceType.FLOAT, "x")) == 8
    assert tlv.decode_value(bytes.fromhex("3FC00000"), ResourceType.FLOAT, "x") == 1.5


def test_objlnk_and_boolean() -> None:
    assert (
        tlv.encode_value(ObjectLink(3, 0), ResourceType.OBJLNK, "x")
        == bytes(4)[:1] + b"\x03\x00\x00"
    )
    assert tlv.decode_value(b"\x00\x03\xff\xff", ResourceType.OBJLNK, "x") == ObjectLink(3, 65535)
    assert tlv.decode_value(b"\x01", ResourceType.BOOLEAN, "x") is True
    assert tlv.decode_value(b"\x00", ResourceType.BOOLEAN, "x") is False


def test_unknown_object_values_are_bytes() -> None:
    node = tlv.decode(bytes.fromhex("C1 02 05 83 03 41 00 07"), Path(9999, 0), MODEL)
    assert node == ObjectInstance.of(
        0, [Resource.single(2, b"\x05"), Resource.multiple(3, {0: b"\x07"})]
    )


@pytest.mark.parametrize(
    ("hexdata", "path", "message"),
    [
        ("C8", Path(3, 0), "header truncated"),
        ("C8 00", Path(3, 0), "header truncated"),
        ("C8 00 05 41", Path(3, 0), "runs past the end"),
        ("C9 00 01 41", Path(3, 0), "length bits set"),
        ("C3 09 00 00 01", Path(3, 0), "must be 1, 2, 4 or 8 bytes"),
        ("C2 09 01 01 C1 09 02", Path(3, 0), "duplicate resource 9"),
        ("86 06 41 00 01 41 00 02", Path(3, 0), "duplicate resource instance 0"),
        ("C1 06 01", Path(3, 0), "model says multiple"),
        ("83 09 41 00 01", Path(3, 0), "model says single"),
        ("83 06 C1 00 01", Path(3, 0), "expected a resource instance"),
        ("08 00 03 C1 00 41", Path(3, 0, 0), "expected a resource"),
        ("C3 00 FF FE FD", Path(3, 0), "invalid UTF-8"),
        ("C3 0D 01 02 03", Path(3, 0), "must be 1, 2, 4 or 8 bytes"),
        ("C1 09 64 C1 0A 0F", Path(3, 0, 9), "expected one TLV entry"),
        ("C1 0A 0F", Path(3, 0, 9), "resource 10 not requested"),
        ("C1 09 64", Path(3), "expected an object instance"),
        ("08 00 03 08 00 00", Path(3), "expected a resource"),
        ("", Path(3, 0, 9), "expected one TLV entry, got 0"),
        ("61 FF FF 01", Path(3, 0, 6), "out of range"),
        ("C1 00 FF", Path(10250, 0), "invalid UTF-8"),
    ],
)
def test_malformed_input_is_a_format_error(hexdata: str, path: Path, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        tlv.decode(bytes.fromhex(hexdata), path, MODEL)


def test_boolean_must_be_zero_or_one() -> None:
    with pytest.raises(FormatError, match="Boolean must be one byte"):
        tlv.decode(bytes.fromhex("C1 04 02"), Path(10250, 0, 4), MODEL)
    with pytest.raises(FormatError, match="Boolean must be one byte"):
        tlv.decode(bytes.fromhex("C2 04 00 01"), Path(10250, 0, 4), MODEL)


def test_out_of_range_ids_are_a_format_error() -> None:
    # object instance 65535 is reserved
    with pytest.raises(FormatError, match="65535"):
        tlv.decode(bytes.fromhex("20 FF FF"), Path(3), MODEL)


def test_encode_rejects_wrong_value_types() -> None:
    with pytest.raises(FormatError, match="is not a Integer"):
        tlv.encode(Resource.single(9, "full"), Path(3, 0, 9), MODEL)
    with pytest.raises(FormatError, match=r"outside 0\.\.2"):
        tlv.encode(Resource.single(2, -1), Path(10250, 0, 2), MODEL)
    with pytest.raises(FormatError, match="does not match the path"):
        tlv.encode(Resource.single(9, 1), Path(3, 0, 10), MODEL)

"""Plain text and opaque: single values typed by the model."""

from __future__ import annotations

import datetime

import pytest
from format_models import MODEL

from lwm2m.formats import opaque, text
from lwm2m.formats.errors import FormatError
from lwm2m.model.nodes import LwM2MObject, Resource, ResourceInstance
from lwm2m.model.path import Path
from lwm2m.model.types import ObjectLink, ResourceType

T = ResourceType
UTC = datetime.UTC


@pytest.mark.parametrize(
    ("rid", "value", "wire"),
    [
        (0, "Grüße, world", "Grüße, world".encode()),
        (1, -42, b"-42"),
        (2, 2**64 - 1, b"18446744073709551615"),
        (3, 0.1, b"0.1"),
        (3, 1e300, b"1e+300"),
        (3, -2.5, b"-2.5"),
        (4, True, b"1"),
        (4, False, b"0"),
        (5, b"\x00\xff", b"AP8="),
        (6, datetime.datetime(2013, 5, 2, 10, 40, 15, tzinfo=UTC), b"1367491215"),
        (7, ObjectLink(3, 0), b"3:0"),
        (8, "</3/0>", b"</3/0>"),
    ],
)
def test_text_values(rid: int, value: object, wire: bytes) -> None:
    path = Path(10250, 0, rid)
    rtype = MODEL.resource(10250, rid).type  # type: ignore[union-attr]
    node = Resource.single(rid, value, rtype)  # type: ignore[arg-type]
    assert text.encode(node, path, MODEL) == wire
    assert text.decode(wire, path, MODEL) == node


def test_text_resource_instance() -> None:
    path = Path(10250, 0, 11, 3)
    assert text.encode(ResourceInstance(3, 7), path, MODEL) == b"7"
    assert text.decode(b"7", path, MODEL) == ResourceInstance(3, 7)


def test_text_unknown_resource_stays_a_string() -> None:
    assert text.decode(b"12", Path(9999, 0, 1), MODEL) == Resource.single(1, "12")
    assert text.encode(Resource.single(1, 12), Path(9999, 0, 1)) == b"12"


@pytest.mark.parametrize(
    ("rid", "wire", "message"),
    [
        (1, b"+1", "not a decimal integer"),
        (1, b" 1", "not a decimal integer"),
        (1, b"9223372036854775808", "signed 64-bit"),
        (2, b"-1", "unsigned"),
        (2, b"18446744073709551616", "0..2\\^64-1"),
        (3, b"nan", "not a decimal number"),
        (3, b"1e999", "overflows"),
        (4, b"true", "'0' or '1'"),
        (5, b"not base64!", "base64"),
        (6, b"2013-05-02", "not a decimal integer"),
        (7, b"3-0", "OBJECT:INSTANCE"),
        (7, b"70000:0", "out of range"),
        (0, b"\xff\xfe", "invalid UTF-8"),
    ],
)
def test_text_rejects_bad_values(rid: int, wire: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        text.decode(wire, Path(10250, 0, rid), MODEL)


def test_text_only_carries_single_values() -> None:
    with pytest.raises(FormatError, match="single resource or resource instance"):
        text.encode(LwM2MObject(3), Path(3), MODEL)
    with pytest.raises(FormatError, match="multiple-instance"):
        text.encode(Resource.multiple(11, {0: 1}), Path(10250, 0, 11), MODEL)
    with pytest.raises(FormatError, match="structured format"):
        text.decode(b"1", Path(10250, 0, 11), MODEL)
    with pytest.raises(FormatError, match="resource or resource instance"):
        text.decode(b"1", Path(10250, 0), MODEL)


def test_text_encode_checks_the_model_type() -> None:
    with pytest.raises(FormatError, match="not a Integer"):
        text.encode(Resource.single(1, "x"), Path(10250, 0, 1), MODEL)
    with pytest.raises(FormatError, match="cannot be written as text"):
        text.encode(Resource.single(3, float("inf")), Path(10250, 0, 3), MODEL)


def test_opaque_round_trip_and_rules() -> None:
    path = Path(10250, 0, 5)
    node = Resource.single(5, b"\x00\x01firmware", T.OPAQUE)
    assert opaque.encode(node, path, MODEL) == b"\x00\x01firmware"
    assert opaque.decode(b"\x00\x01firmware", path, MODEL) == node
    assert opaque.decode(b"", path, MODEL) == Resource.single(5, b"", T.OPAQUE)
    assert opaque.decode(b"\x01", Path(9999, 0, 0)) == Resource.single(0, b"\x01")
    assert opaque.decode(b"\x01", Path(10250, 0, 15, 2), MODEL) == ResourceInstance(2, b"\x01")
    with pytest.raises(FormatError, match="only Opaque"):
        opaque.decode(b"1", Path(10250, 0, 1), MODEL)
    with pytest.raises(FormatError, match="only Opaque"):
        opaque.encode(Resource.single(1, 1), Path(10250, 0, 1), MODEL)
    with pytest.raises(FormatError, match="resource or resource instance"):
        opaque.decode(b"1", Path(10250), MODEL)

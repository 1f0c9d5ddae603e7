"""Plain CBOR (Content-Format 60): one value per payload, typed by the model."""

from __future__ import annotations

import datetime

import pytest
from format_models import MODEL

from lwm2m.formats import cbor
from lwm2m.formats.errors import FormatError
from lwm2m.model.nodes import ObjectInstance, Resource, ResourceInstance
from lwm2m.model.path import Path
from lwm2m.model.types import ObjectLink, ResourceType

T = ResourceType


@pytest.mark.parametrize(
    ("rid", "value", "wire"),
    [
        (0, "abc", "63616263"),
        (1, -1, "20"),
        (2, 2**64 - 1, "1bffffffffffffffff"),
        (3, 1.5, "fb3ff8000000000000"),
        (4, True, "f5"),
        (5, b"\x01\x02", "420102"),
        (6, datetime.datetime(2013, 5, 2, 10, 40, 15, tzinfo=datetime.UTC), "c11a5182428f"),
        (7, ObjectLink(3, 0), "63333a30"),
    ],
)
def test_values(rid: int, value: object, wire: str) -> None:
    path = Path(10250, 0, rid)
    rtype = MODEL.resource(10250, rid).type  # type: ignore[union-attr]
    node = Resource.single(rid, value, rtype)  # type: ignore[arg-type]
    assert cbor.encode(node, path, MODEL) == bytes.fromhex(wire)
    assert cbor.decode(bytes.fromhex(wire), path, MODEL) == node


def test_untagged_time_and_resource_instances() -> None:
    node = cbor.decode(bytes.fromhex("1a5182428f"), Path(10250, 0, 6), MODEL)
    assert isinstance(node, Resource) and isinstance(node.value, datetime.datetime)
    assert cbor.decode(b"\x07", Path(10250, 0, 11, 4), MODEL) == ResourceInstance(4, 7)
    assert cbor.decode(b"\x07", Path(9999, 0, 1)) == Resource.single(1, 7)


@pytest.mark.parametrize(
    ("wire", "path", "message"),
    [
        ("63616263", Path(10250, 0, 1), "is not a Integer"),
        ("c24101", Path(10250, 0, 1), "tag 2 not allowed"),
        ("0102", Path(10250, 0, 1), "trailing bytes"),
        ("80", Path(10250, 0, 1), "not a resource value"),
        ("f6", Path(10250, 0, 1), "not a resource value"),
        ("20", Path(10250, 0, 2), "outside 0"),
        ("01", Path(10250, 0, 11), "structured format"),
        ("01", Path(10250, 0), "resource or resource instance"),
        ("6161", Path(10250, 0, 7), "OBJECT:INSTANCE"),
    ],
)
def test_malformed(wire: str, path: Path, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        cbor.decode(bytes.fromhex(wire), path, MODEL)


def test_only_single_values() -> None:
    with pytest.raises(FormatError, match="single resource or resource instance"):
        cbor.encode(ObjectInstance(0), Path(10250, 0), MODEL)

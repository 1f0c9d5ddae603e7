"""LwM2M CBOR (11544): nested maps from the root, path-array keys, empty containers."""

from __future__ import annotations

import datetime

import cbor2
import pytest
from format_models import MODEL

from lwm2m.formats import lwm2m_cbor
from lwm2m.formats.errors import FormatError
from lwm2m.model.nodes import (
    LwM2MObject,
    Node,
    ObjectInstance,
    Resource,
    ResourceInstance,
    Value,
)
from lwm2m.model.path import Path
from lwm2m.model.types import ObjectLink, ResourceType

T = ResourceType


def test_single_resource_is_nested_from_the_root() -> None:
    node = Resource.single(9, 25, T.INTEGER)
    data = lwm2m_cbor.encode(node, Path(3, 0, 9), MODEL)
    assert data == bytes.fromhex("a1 03 a1 00 a1 09 18 19")  # {3: {0: {9: 25}}}
    assert lwm2m_cbor.decode(data, Path(3, 0, 9), MODEL) == node


def test_indefinite_maps_as_anjay_writes_them() -> None:
    # {_ 3: {_ 3: {_ 3: 25}}} then a resource instance path {3:{3:{6:{0: 25, 1: 11}}}}
    assert lwm2m_cbor.decode(
        bytes.fromhex("BF03BF03BF091819FFFFFF"), Path(3, 3, 9), MODEL
    ) == Resource.single(9, 25, T.INTEGER)
    assert lwm2m_cbor.decode(
        bytes.fromhex("BF03BF03BF06BF0018190101FFFFFFFF"), Path(3, 3, 6), MODEL
    ) == Resource.multiple(6, {0: 25, 1: 1}, T.INTEGER)


def test_path_array_keys() -> None:
    # {[3, 0]: {0: "OMA", [6, 1]: 5}}
    data = cbor2.dumps({(3, 0): {0: "OMA", (6, 1): 5}})
    assert lwm2m_cbor.decode(data, Path(3, 0), MODEL) == ObjectInstance.of(
        0, [Resource.single(0, "OMA", T.STRING), Resource.multiple(6, {1: 5}, T.INTEGER)]
    )


def test_typed_values() -> None:
    node = ObjectInstance.of(
        0,
        [
            Resource.single(5, b"\x01", T.OPAQUE),
            Resource.single(
                6, datetime.datetime(2013, 5, 2, 10, 40, 15, tzinfo=datetime.UTC), T.TIME
            ),
            Resource.single(7, ObjectLink(3, 1), T.OBJLNK),
            Resource.single(3, 1.5, T.FLOAT),
            Resource.single(4, False, T.BOOLEAN),
        ],
    )
    data = lwm2m_cbor.encode(node, Path(10250, 0), MODEL)
    time = node.resources[6].value
    assert cbor2.loads(data) == {10250: {0: {3: 1.5, 4: False, 5: b"\x01", 6: time, 7: "3:1"}}}
    assert bytes.fromhex("06 c1 1a 5182428f") in data  # 6: 1(1367491215), a tagged epoch time
    assert lwm2m_cbor.decode(data, Path(10250, 0), MODEL) == node
    # an untagged integer time is accepted too
    untagged = bytes.fromhex("a1 19 280a a1 00 a1 06 1a 5182428f")
    assert lwm2m_cbor.decode(untagged, Path(10250, 0, 6), MODEL) == node.resources[6]


def test_empty_containers_survive() -> None:
    obj = LwM2MObject.of(
        10250, [ObjectInstance(0), ObjectInstance.of(1, [Resource.multiple(11, {}, T.INTEGER)])]
    )
    data = lwm2m_cbor.encode(obj, Path(10250), MODEL)
    assert cbor2.loads(data) == {10250: {0: {}, 1: {11: {}}}}
    assert lwm2m_cbor.decode(data, Path(10250), MODEL) == obj


def test_resource_instance_and_composite() -> None:
    ri = ResourceInstance(2, "x")
    data = lwm2m_cbor.encode(ri, Path(10250, 0, 10, 2), MODEL)
    assert lwm2m_cbor.decode(data, Path(10250, 0, 10, 2), MODEL) == ri
    items: dict[Path, Node | Value] = {
        Path(3, 0, 9): 80,
        Path(3303, 0, 5700): 20.5,
        Path(3303, 1): ObjectInstance(1),
    }
    composite = lwm2m_cbor.encode_composite(items, MODEL)
    assert cbor2.loads(composite) == {3: {0: {9: 80}}, 3303: {0: {5700: 20.5}, 1: {}}}
    nodes = lwm2m_cbor.decode_composite(composite, MODEL)
    assert nodes == {
        Path(3, 0, 9): Resource.single(9, 80, T.INTEGER),
        Path(3303, 0, 5700): Resource.single(5700, 20.5, T.FLOAT),
        Path(3303, 1): ObjectInstance(1),
    }


def test_paths_only_request() -> None:
    paths = [Path(3, 0, 9), Path(3303), Path(1, 0, 1)]
    data = lwm2m_cbor.encode_paths(paths)
    assert cbor2.loads(data) == {3: {0: {9: None}}, 3303: None, 1: {0: {1: None}}}
    assert sorted(lwm2m_cbor.decode_paths(data)) == sorted(paths)


@pytest.mark.parametrize(
    ("data", "path", "message"),
    [
        (cbor2.dumps([1]), Path(3, 0), "expected a map"),
        (cbor2.dumps({3: 1}), Path(3), "must be at a resource"),
        (cbor2.dumps({3: {0: {9: {0: {1: 2}}}}}), Path(3, 0), "cannot hold a map"),
        (cbor2.dumps({"3": {}}), Path(3), "not an ID"),
        (cbor2.dumps({-3: {}}), Path(3), "not a valid ID"),
        (cbor2.dumps({3: {0: {9: "full"}}}), Path(3, 0), "not a Integer"),
        (cbor2.dumps({3: {0: {9: None}}}), Path(3, 0), "not a resource value"),
        (cbor2.dumps({3: {0: {9: [1]}}}), Path(3, 0), "not a resource value"),
        (cbor2.dumps({3: {0: {9: 1}}, (3, 0, 9): 2}), Path(3, 0), "duplicate value"),
        (cbor2.dumps({3: {0: {6: 1}}}), Path(3, 0), "multiple-instance"),
        (cbor2.dumps({3: {1: {9: 1}}}), Path(3, 0), "outside the requested path"),
        (cbor2.dumps({3: {0: {13: 1.5}}}), Path(3, 0), "not a Time"),
        (bytes.fromhex("a1 03 a1 00 a1 09 c2 41 01"), Path(3, 0), "tag 2 not allowed"),
        (bytes.fromhex("a1 03 a1 00 a1 09 18 19 00"), Path(3, 0), "trailing bytes"),
        (bytes.fromhex("a1 03 a1 00 a2 09 01 09 02"), Path(3, 0), "Duplicate|duplicate"),
        (bytes.fromhex("a1 03 a1 00 a1 09 1c"), Path(3, 0), "reserved additional information"),
        (bytes.fromhex("a1 03 a1 00 a1 09 5f 61 00 ff"), Path(3, 0), "bad chunk"),
        (bytes.fromhex("a1 03 a1 00 a1 09 1f"), Path(3, 0), "indefinite length integer"),
    ],
)
def test_malformed(data: bytes, path: Path, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        lwm2m_cbor.decode(data, path, MODEL)

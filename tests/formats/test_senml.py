"""SenML JSON (110) and SenML CBOR (112): base values, typed fields, composites, paths."""

from __future__ import annotations

import datetime
import json

import cbor2
import pytest
from format_models import MODEL

from lwm2m.formats import senml_cbor, senml_json
from lwm2m.formats.errors import FormatError
from lwm2m.formats.senml import Record
from lwm2m.model.nodes import Node, ObjectInstance, Resource, ResourceInstance, Value
from lwm2m.model.path import Path
from lwm2m.model.types import ObjectLink, ResourceType

T = ResourceType

# LwM2M TS Core 1.1, 7.4.4: Read /3/0 answered in SenML JSON (shortened)
DEVICE_SENML = [
    {"bn": "/3/0/", "n": "0", "vs": "Open Mobile Alliance"},
    {"n": "1", "vs": "Lightweight M2M Client"},
    {"n": "6/0", "v": 1},
    {"n": "6/1", "v": 5},
    {"n": "9", "v": 100},
    {"n": "13", "v": 1367491215},
]
DEVICE_NODE = ObjectInstance.of(
    0,
    [
        Resource.single(0, "Open Mobile Alliance", T.STRING),
        Resource.single(1, "Lightweight M2M Client", T.STRING),
        Resource.multiple(6, {0: 1, 1: 5}, T.INTEGER),
        Resource.single(9, 100, T.INTEGER),
        Resource.single(13, datetime.datetime(2013, 5, 2, 10, 40, 15, tzinfo=datetime.UTC), T.TIME),
    ],
)


def test_senml_json_device_example() -> None:
    data = json.dumps(DEVICE_SENML).encode()
    assert senml_json.decode(data, Path(3, 0), MODEL) == DEVICE_NODE
    assert json.loads(senml_json.encode(DEVICE_NODE, Path(3, 0), MODEL)) == DEVICE_SENML


def test_senml_cbor_uses_integer_labels() -> None:
    encoded = senml_cbor.encode(DEVICE_NODE, Path(3, 0), MODEL)
    items = cbor2.loads(encoded)
    assert items[0] == {-2: "/3/0/", 0: "0", 3: "Open Mobile Alliance"}
    assert items[2] == {0: "6/0", 2: 1}
    assert senml_cbor.decode(encoded, Path(3, 0), MODEL) == DEVICE_NODE


def test_single_resource_uses_bn_only() -> None:
    node = Resource.single(5700, 21.5, T.FLOAT)
    data = senml_json.encode(node, Path(3303, 0, 5700), MODEL)
    assert json.loads(data) == [{"bn": "/3303/0/5700", "v": 21.5}]
    assert senml_json.decode(data, Path(3303, 0, 5700), MODEL) == node


def test_every_value_field() -> None:
    data = json.dumps(
        [
            {"bn": "/10250/0/", "n": "4", "vb": True},
            {"n": "5", "vd": "AAEC_w"},  # base64url, no padding
            {"n": "7", "vlo": "3:0"},
            {"n": "8", "vs": "</3>"},
            {"n": "2", "v": 18446744073709551615},
        ]
    ).encode()
    node = senml_json.decode(data, Path(10250, 0), MODEL)
    assert node == ObjectInstance.of(
        0,
        [
            Resource.single(4, True, T.BOOLEAN),
            Resource.single(5, b"\x00\x01\x02\xff", T.OPAQUE),
            Resource.single(7, ObjectLink(3, 0), T.OBJLNK),
            Resource.single(8, "</3>", T.CORELNK),
            Resource.single(2, 2**64 - 1, T.UNSIGNED_INTEGER),
        ],
    )
    assert b'"vd":"AAEC_w"' in senml_json.encode(node, Path(10250, 0), MODEL)
    cbor_items = cbor2.loads(senml_cbor.encode(node, Path(10250, 0), MODEL))
    assert {8: b"\x00\x01\x02\xff", 0: "5"} in cbor_items
    assert {0: "7", "vlo": "3:0"} in cbor_items


def test_base_name_and_time_propagate_until_redefined() -> None:
    data = json.dumps(
        [
            {"bn": "/3303/0/", "bt": 1000, "n": "5700", "v": 20.0, "t": -10},
            {"n": "5700", "v": 21.0},
            {"bn": "/3303/1/", "n": "5700", "v": 22.0, "bt": 2000},
            {"bn": "/3/0/", "n": "9", "v": 99, "t": 5},
        ]
    ).encode()
    records = senml_json.decode_records(data, MODEL)
    assert records == [
        Record(Path(3303, 0, 5700), 20.0, 990),
        Record(Path(3303, 0, 5700), 21.0, 1000),
        Record(Path(3303, 1, 5700), 22.0, 2000),
        Record(Path(3, 0, 9), 99, 2005),
    ]


def test_timestamped_records_round_trip_for_send() -> None:
    records = [
        Record(Path(3303, 0, 5700), 20.0, 1700000000),
        Record(Path(3303, 0, 5700), 21.5, 1700000060),
        Record(Path(3, 0, 9), 80, None),
    ]
    for codec in (senml_json, senml_cbor):
        assert codec.decode_records(codec.encode_composite(records, MODEL), MODEL) == records


def test_composite_mapping_with_nodes_and_values() -> None:
    items: dict[Path, Node | Value] = {
        Path(3, 0, 0): Resource.single(0, "OMA", T.STRING),
        Path(3303, 0, 5700): 21.5,
        Path(3, 0, 6, 1): ResourceInstance(1, 5),
    }
    data = senml_json.encode_composite(items, MODEL)
    assert json.loads(data) == [
        {"n": "/3/0/0", "vs": "OMA"},
        {"n": "/3/0/6/1", "v": 5},
        {"n": "/3303/0/5700", "v": 21.5},
    ]


def test_read_composite_request_paths() -> None:
    paths = [Path(3, 0, 1), Path(3303), Path()]
    assert json.loads(senml_json.encode_paths(paths)) == [
        {"n": "/3/0/1"},
        {"n": "/3303"},
        {"n": "/"},
    ]
    assert senml_json.decode_paths(b'[{"bn":"/3/0/","n":"1"},{"n":"2"}]') == [
        Path(3, 0, 1),
        Path(3, 0, 2),
    ]
    assert senml_cbor.decode_paths(senml_cbor.encode_paths(paths)) == paths
    with pytest.raises(FormatError, match="carries no value"):
        senml_json.decode_paths(b'[{"n":"/3/0/1","v":1}]')
    with pytest.raises(FormatError, match="duplicate path"):
        senml_json.decode_paths(b'[{"n":"/3/0/1"},{"n":"/3/0/1"}]')


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ({"n": "/3/0/9"}, "array of records"),
        ([1], "must be a map"),
        ([{"n": "/3/0/9"}], "has no value"),
        ([{"n": "/3/0/9", "v": 1, "vs": "1"}], "more than one value field"),
        ([{"n": "3/0/9", "v": 1}], "not an absolute"),
        ([{"n": "/3/0/x", "v": 1}], "not a decimal ID"),
        ([{"n": "/3/0/9", "v": "1"}], "expected a number"),
        ([{"n": "/3/0/9", "vs": "1"}], "cannot carry a Integer"),
        ([{"n": "/3/0/9", "v": 1, "foo_": 1}], "must-understand"),
        ([{"bn": 1, "n": "/3/0/9", "v": 1}], "bn must be a string"),
        ([{"n": "/3/0/9", "v": 1}, {"n": "/3/0/9", "v": 2}], "duplicate value"),
        ([{"n": "/3/1/9", "v": 1}], "outside the requested path"),
        ([{"n": "/10250/0/5", "vd": "AA+/"}], "base64url"),
        ([{"n": "/10250/0/5", "vd": "A"}], "base64url"),
        ([{"n": "/10250/0/7", "vlo": "3"}], "OBJECT:INSTANCE"),
        ([{"n": "/3/0/9", "v": 1, "bver": 2}], "bver"),
        ([{"n": "/3/0/9", "v": 1, "t": "x"}], "expected a number"),
    ],
)
def test_senml_json_malformed(records: object, message: str) -> None:
    path = Path(10250, 0) if "10250" in json.dumps(records) else Path(3, 0)
    with pytest.raises(FormatError, match=message):
        senml_json.decode(json.dumps(records).encode(), path, MODEL)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty payload"),
        (bytes.fromhex("81a100642f332f"), "truncated"),  # text string cut short
        (cbor2.dumps([{0: "/3/0/9", 2: 1}]) + b"\x00", "trailing bytes"),
        (
            bytes.fromhex("81a200662f332f302f39") + bytes.fromhex("c11a5182428f"),
            "tag 1 not allowed",
        ),
        (bytes.fromhex("81a300662f332f302f3902010202"), "Duplicate|duplicate"),
        (bytes.fromhex("81a200662f332f302f3902f7"), "simple value 23"),
        (bytes.fromhex("81a200662f332f302f3902ff"), "unexpected break"),
        (bytes.fromhex("81a2006278ff0201"), "truncated|UTF-8"),
        (bytes.fromhex("81a2266100" + "0201"), "unknown base label"),
        (bytes.fromhex("9f" * 40), "nested deeper|truncated"),
    ],
)
def test_senml_cbor_malformed(data: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        senml_cbor.decode(data, Path(3, 0), MODEL)


def test_senml_cbor_accepts_indefinite_lengths() -> None:
    # [_ {_ 0: "/3/0/9", 2: 100}]
    data = bytes.fromhex("9fbf00662f332f302f39021864ffff")
    assert senml_cbor.decode(data, Path(3, 0, 9), MODEL) == Resource.single(9, 100, T.INTEGER)

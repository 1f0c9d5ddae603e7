"""LwM2M JSON (11543): the 1.0 format with bn/bt, relative names and typed fields."""

from __future__ import annotations

import datetime
import json

import pytest
from format_models import MODEL

from lwm2m.formats import lwm2m_json
from lwm2m.formats.errors import FormatError
from lwm2m.model.nodes import ObjectInstance, Resource
from lwm2m.model.path import Path
from lwm2m.model.types import ObjectLink, ResourceType

T = ResourceType

EXAMPLE = {
    "bn": "/10250/0/",
    "e": [
        {"n": "0", "sv": "Open Mobile Alliance"},
        {"n": "11/0", "v": 1},
        {"n": "11/1", "v": 5},
        {"n": "4", "bv": True},
        {"n": "7", "ov": "3:0"},
        {"n": "5", "sv": "AAEC"},
        {"n": "6", "v": 1367491215},
        {"n": "3", "v": 21},
    ],
}


def test_decode_example() -> None:
    node = lwm2m_json.decode(json.dumps(EXAMPLE).encode(), Path(10250, 0), MODEL)
    assert node == ObjectInstance.of(
        0,
        [
            Resource.single(0, "Open Mobile Alliance", T.STRING),
            Resource.multiple(11, {0: 1, 1: 5}, T.INTEGER),
            Resource.single(4, True, T.BOOLEAN),
            Resource.single(7, ObjectLink(3, 0), T.OBJLNK),
            Resource.single(5, b"\x00\x01\x02", T.OPAQUE),
            Resource.single(
                6, datetime.datetime(2013, 5, 2, 10, 40, 15, tzinfo=datetime.UTC), T.TIME
            ),
            Resource.single(3, 21.0, T.FLOAT),
        ],
    )


def test_encode_uses_relative_names() -> None:
    node = ObjectInstance.of(0, [Resource.single(0, "x"), Resource.multiple(11, {0: 1})])
    doc = json.loads(lwm2m_json.encode(node, Path(10250, 0), MODEL))
    assert doc == {"bn": "/10250/0/", "e": [{"n": "0", "sv": "x"}, {"n": "11/0", "v": 1}]}
    single = json.loads(lwm2m_json.encode(Resource.single(4, False), Path(10250, 0, 4), MODEL))
    assert single == {"bn": "/10250/0/4", "e": [{"bv": False}]}


def test_names_without_bn_are_relative_to_the_request_path() -> None:
    data = b'{"e":[{"n":"0","sv":"a"},{"n":"/10250/0/1","v":3}]}'
    node = lwm2m_json.decode(data, Path(10250, 0), MODEL)
    assert node == ObjectInstance.of(
        0, [Resource.single(0, "a", T.STRING), Resource.single(1, 3, T.INTEGER)]
    )


def test_times_resolve_against_bt() -> None:
    data = b'{"bn":"/3303/0/5700","bt":1000,"e":[{"v":20.5,"t":-5},{"v":21}]}'
    records = lwm2m_json.decode_records(data, MODEL)
    assert [(str(r.path), r.value, r.time) for r in records] == [
        ("/3303/0/5700", 20.5, 995),
        ("/3303/0/5700", 21.0, 1000),
    ]


def test_unknown_resources_keep_natural_json_types() -> None:
    data = b'{"bn":"/9999/0/","e":[{"n":"1","v":1},{"n":"2","v":1.5},{"n":"3","sv":"s"},{"n":"4","bv":false},{"n":"5","ov":"1:2"}]}'
    node = lwm2m_json.decode(data, Path(9999, 0))
    assert isinstance(node, ObjectInstance)
    assert [r.value for r in node.resources.values()] == [1, 1.5, "s", False, ObjectLink(1, 2)]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[]", "must be an object"),
        (b'{"bn":"/3/0/"}', "'e' must be an array"),
        (b'{"bn":"/3/0/","e":[],"x":1}', "unknown member 'x'"),
        (b'{"bn":"/3/0/","e":[{"n":"9","v":1,"sv":"1"}]}', "exactly one of"),
        (b'{"bn":"/3/0/","e":[{"n":"9"}]}', "exactly one of"),
        (b'{"bn":"/3/0/","e":[{"n":"9","sv":"1"}]}', "cannot carry a Integer"),
        (b'{"bn":"/3/0/","e":[{"n":"9","v":1.5}]}', "not integral"),
        (b'{"bn":"/3/0/","e":[{"n":"9","v":true}]}', "expected a number"),
        (b'{"bn":"/3/0/","e":[{"n":"9","v":1},{"n":"9","v":2}]}', "duplicate value"),
        (b'{"bn":"/3/0/","bn":"/3/1/","e":[]}', "duplicate key"),
        (b'{"bn":"/3/0/","e":[{"n":"9","v":NaN}]}', "NaN is not allowed"),
        (b'{"bn":"/3/0/","e":[{"n":"6","v":1}]}', "model says this resource is multiple"),
        (b'{"bn":"/4/0/","e":[{"n":"9","v":1}]}', "outside the requested path"),
        (b'{"bn":"/3/0/","e":[{"n":"x","v":1}]}', "not a decimal ID"),
        (b'{"bn":"/3/0/","e":[{"n":"9","v":1}]', "JSON byte"),
        (b"\xff", "invalid UTF-8"),
        (b"[" * 100 + b"]" * 100, "nested deeper"),
    ],
)
def test_malformed(data: bytes, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        lwm2m_json.decode(data, Path(3, 0), MODEL)

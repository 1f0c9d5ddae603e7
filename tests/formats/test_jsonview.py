"""JSON view of nodes for the CLI and the REST API."""

from __future__ import annotations

import datetime
import json

import pytest
from format_models import MODEL
from format_strategies import node_and_path
from hypothesis import given, settings

from lwm2m.formats.errors import FormatError
from lwm2m.formats.jsonview import json_to_node, node_to_json, value_from_json, value_to_json
from lwm2m.model.nodes import LwM2MObject, Node, ObjectInstance, Resource, ResourceInstance
from lwm2m.model.path import Path
from lwm2m.model.types import ObjectLink, ResourceType

T = ResourceType


def test_instance_view_has_names_types_and_json_values() -> None:
    node = ObjectInstance.of(
        0,
        [
            Resource.single(5, b"\x00\x01", T.OPAQUE),
            Resource.single(
                6, datetime.datetime(2013, 5, 2, 10, 40, 15, tzinfo=datetime.UTC), T.TIME
            ),
            Resource.single(7, ObjectLink(3, 0), T.OBJLNK),
            Resource.multiple(11, {0: 1, 3: 2}, T.INTEGER),
        ],
    )
    view = node_to_json(node, Path(10250, 0), MODEL)
    assert view["name"] == "All Types"
    resources = view["resources"]
    assert isinstance(resources, list)
    assert resources[0] == {
        "path": "/10250/0/5",
        "kind": "resource",
        "id": 5,
        "name": "Opaque",
        "type": "Opaque",
        "value": "AAE=",
    }
    assert resources[1]["value"] == "2013-05-02T10:40:15Z"
    assert resources[2]["value"] == "3:0"
    assert resources[3]["instances"] == {"0": 1, "3": 2} and resources[3]["multiple"] is True
    assert json_to_node(json.loads(json.dumps(view)), Path(10250, 0), MODEL) == node


def test_unknown_resources_get_inferred_types() -> None:
    view = node_to_json(Resource.single(1, b"\x01"), Path(9999, 0, 1))
    assert view == {
        "path": "/9999/0/1",
        "kind": "resource",
        "id": 1,
        "type": "Opaque",
        "value": "AQ==",
    }
    # without a model, the JSON type decides (so bytes come back as a base64 string)
    assert json_to_node({"value": "AQ=="}, Path(9999, 0, 1)) == Resource.single(1, "AQ==")
    assert json_to_node({"value": "AQ==", "type": "Opaque"}, Path(9999, 0, 1)) == Resource(
        1, value=b"\x01", type=T.OPAQUE
    )


def test_bare_values_for_the_rest_api() -> None:
    assert json_to_node({"value": 5}, Path(3, 0, 9), MODEL) == Resource.single(9, 5, T.INTEGER)
    assert json_to_node({"instances": {"0": 1}}, Path(3, 0, 6), MODEL) == Resource.multiple(
        6, {0: 1}, T.INTEGER
    )
    assert json_to_node({"value": 1367491215}, Path(3, 0, 13), MODEL) == Resource.single(
        13, datetime.datetime(2013, 5, 2, 10, 40, 15, tzinfo=datetime.UTC), T.TIME
    )
    assert json_to_node({"value": 2}, Path(3, 0, 6, 1), MODEL) == ResourceInstance(1, 2)
    with pytest.raises(FormatError, match="not a Integer"):
        json_to_node({"value": "2"}, Path(3, 0, 6, 1), MODEL)


@pytest.mark.parametrize(
    ("raw", "path", "message"),
    [
        ([], Path(3, 0, 9), "expected a JSON object"),
        ({"value": "x"}, Path(3, 0, 9), "not a Integer"),
        ({"value": 1, "instances": {}}, Path(3, 0, 9), "exactly one of"),
        ({"kind": "object", "value": 1}, Path(3, 0, 9), "does not match the path"),
        ({"id": 4, "value": 1}, Path(3, 0, 9), "id 4 does not match"),
        ({"instances": {"x": 1}}, Path(3, 0, 6), "not an ID"),
        ({"resources": [{"value": 1}]}, Path(3, 0), "integer 'id'"),
        ({"resources": [{"id": 9, "value": 1}, {"id": 9, "value": 2}]}, Path(3, 0), "duplicate"),
        ({"value": "2013-13-01"}, Path(3, 0, 13), "ISO 8601"),
        ({"value": "AQ"}, Path(10250, 0, 5), "base64"),
        ({"value": 1, "type": "Nope"}, Path(9999, 0, 1), "unknown resource type"),
        ({"value": 1, "type": 5}, Path(9999, 0, 1), "'type': must be a type name"),
        ({"instances": []}, Path(3, 0, 6), "'instances' must be an object"),
    ],
)
def test_json_to_node_errors(raw: object, path: Path, message: str) -> None:
    with pytest.raises(FormatError, match=message):
        json_to_node(raw, path, MODEL)


def test_values() -> None:
    assert value_to_json(float("inf")) == "inf"
    assert value_from_json("-inf", T.FLOAT, "x") == float("-inf")
    assert value_from_json("2013-05-02T12:40:15+02:00", T.TIME, "x") == datetime.datetime(
        2013, 5, 2, 10, 40, 15, tzinfo=datetime.UTC
    )
    assert value_from_json("3:1", T.OBJLNK, "x") == ObjectLink(3, 1)


def test_object_view() -> None:
    obj = LwM2MObject.of(3303, [ObjectInstance.of(0, [Resource.single(5700, 1.5, T.FLOAT)])])
    view = node_to_json(obj, Path(3303), MODEL)
    assert view["name"] == "Temperature" and view["kind"] == "object"
    assert json_to_node(view, Path(3303), MODEL) == obj


@settings(max_examples=150, deadline=None)
@given(data=node_and_path())
def test_json_view_round_trips(data: tuple[Node, Path]) -> None:
    node, path = data
    view = json.loads(json.dumps(node_to_json(node, path, MODEL)))
    assert json_to_node(view, path, MODEL) == node

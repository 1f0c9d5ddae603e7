"""The immutable node model: construction, freezing and validation."""

from __future__ import annotations

import datetime
from types import MappingProxyType

import pytest

from lwm2m.model.nodes import (
    LwM2MObject,
    ObjectInstance,
    Resource,
    ResourceInstance,
    node_kind,
)
from lwm2m.model.path import Path
from lwm2m.model.types import ObjectLink, ResourceType

UTC = datetime.UTC


def test_single_and_multiple_resources() -> None:
    single = Resource.single(1, "x", ResourceType.STRING)
    assert not single.is_multiple and single.value == "x" and single.instances is None
    multi = Resource.multiple(7, {2: 20, 0: 0})
    assert multi.is_multiple and multi.value is None
    assert list(multi.instances or {}) == [0, 2]  # sorted by instance ID
    assert multi.type is None


def test_resource_needs_exactly_one_of_value_or_instances() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        Resource(1)
    with pytest.raises(ValueError, match="exactly one"):
        Resource(1, value=1, instances={0: 1})


def test_empty_multiple_resource_is_allowed() -> None:
    assert Resource.multiple(11, {}).instances == {}


def test_instances_are_copied_not_aliased() -> None:
    backing = {0: 1}
    res = Resource(5, instances=MappingProxyType(backing))
    backing[1] = 2
    assert dict(res.instances or {}) == {0: 1}
    with pytest.raises(TypeError):
        res.instances[3] = 4  # type: ignore[index]


@pytest.mark.parametrize(
    "value",
    [
        "s",
        1,
        -(2**63),
        1.5,
        True,
        b"\x00",
        datetime.datetime(2024, 1, 1, tzinfo=UTC),
        ObjectLink(3, 0),
    ],
)
def test_every_value_type_is_accepted(value: object) -> None:
    assert Resource.single(0, value).value == value  # type: ignore[arg-type]
    assert ResourceInstance(0, value).value == value  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [bytearray(b"x"), [1], {"a": 1}, object(), 1j])
def test_non_values_are_rejected(value: object) -> None:
    with pytest.raises(ValueError, match="not a node value"):
        Resource.single(0, value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a node value"):
        Resource.multiple(0, {0: value})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="not a node value"):
        ResourceInstance(0, value)  # type: ignore[arg-type]


def test_naive_time_is_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Resource.single(13, datetime.datetime(2024, 1, 1))


@pytest.mark.parametrize(
    "make",
    [
        lambda: Resource.single(-1, 1),
        lambda: Resource.single(65536, 1),
        lambda: Resource.multiple(1, {65535: 1}),
        lambda: Resource.multiple(1, {-1: 1}),
        lambda: ResourceInstance(65535, 1),
        lambda: ObjectInstance(65535),
        lambda: LwM2MObject(65536),
        lambda: LwM2MObject(True),  # type: ignore[arg-type]
    ],
)
def test_ids_are_range_checked(make: object) -> None:
    with pytest.raises(ValueError, match="out of range"):
        make()  # type: ignore[operator]


def test_instance_from_iterable_and_mapping() -> None:
    r1, r0 = Resource.single(1, "b"), Resource.single(0, "a")
    inst = ObjectInstance.of(0, [r1, r0])
    assert list(inst.resources) == [0, 1]
    assert ObjectInstance(0, {1: r1, 0: r0}) == inst
    assert ObjectInstance(0, [r1, r0]) == inst  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        inst.resources[2] = r0  # type: ignore[index]


def test_duplicate_ids_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate ID 1"):
        ObjectInstance.of(0, [Resource.single(1, 1), Resource.single(1, 2)])
    with pytest.raises(ValueError, match="duplicate ID 0"):
        LwM2MObject.of(3, [ObjectInstance(0), ObjectInstance(0)])


def test_mapping_keys_must_match_ids() -> None:
    with pytest.raises(ValueError, match="does not match"):
        ObjectInstance(0, {2: Resource.single(1, 1)})
    with pytest.raises(ValueError, match="does not match"):
        LwM2MObject(3, {1: ObjectInstance(0)})


def test_children_must_have_the_right_node_type() -> None:
    with pytest.raises(ValueError, match="expected Resource"):
        ObjectInstance.of(0, [ObjectInstance(1)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="expected ObjectInstance"):
        LwM2MObject.of(3, [Resource.single(0, 1)])  # type: ignore[list-item]


def test_object_tree_equality_and_hash_free_use() -> None:
    device = LwM2MObject.of(
        3,
        [ObjectInstance.of(0, [Resource.single(0, "ACME"), Resource.multiple(6, {0: 1, 1: 5})])],
    )
    same = LwM2MObject(
        3, {0: ObjectInstance(0, {0: Resource(0, "ACME"), 6: Resource(6, instances={1: 5, 0: 1})})}
    )
    assert device == same
    assert device.instances[0].resources[6].instances == {0: 1, 1: 5}


def test_node_kind() -> None:
    assert [node_kind(Path.of(*ids)) for ids in [(), (3,), (3, 0), (3, 0, 1), (3, 0, 1, 0)]] == [
        "root",
        "object",
        "instance",
        "resource",
        "resource_instance",
    ]

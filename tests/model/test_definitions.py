"""ObjectDef/ResourceDef construction rules."""

from __future__ import annotations

import pytest

from lwm2m.model.core_objects import DEVICE, SERVER
from lwm2m.model.definitions import ObjectDef, ResourceDef
from lwm2m.model.types import Operations, ResourceType


def _res(rid: int) -> ResourceDef:
    return ResourceDef(rid, f"r{rid}", Operations.R, False, False, ResourceType.INTEGER)


def test_build_sorts_and_freezes() -> None:
    obj = ObjectDef.build(40000, "x", multiple=True, mandatory=False, resources=[_res(2), _res(1)])
    assert list(obj.resources) == [1, 2]
    with pytest.raises(TypeError):
        obj.resources[3] = _res(3)  # type: ignore[index]
    assert obj.urn == "urn:oma:lwm2m:ext:40000"
    assert ObjectDef.build(
        9, "y", multiple=False, mandatory=False, resources=[], version="1.1"
    ).urn == ("urn:oma:lwm2m:oma:9:1.1")


def test_build_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="duplicate resource ID 1"):
        ObjectDef.build(9, "y", multiple=False, mandatory=False, resources=[_res(1), _res(1)])


def test_ids_are_range_checked() -> None:
    with pytest.raises(ValueError, match="resource ID 65536"):
        _res(65536)
    with pytest.raises(ValueError, match="object ID -1"):
        ObjectDef(-1, "x", False, False)
    with pytest.raises(ValueError, match="key 1 holds resource 2"):
        ObjectDef(9, "x", False, False, {1: _res(2)})


def test_mandatory_resources() -> None:
    assert [r.id for r in DEVICE.mandatory_resources] == [4, 11, 16]
    assert [r.id for r in SERVER.mandatory_resources] == [0, 1, 6, 7, 8]

"""Our own core/IPSO definitions agree with the OMNA registry files.

The shared files are the *latest* registry versions (plus some 1.0 ones);
where our definition is an older version, the file may only add resources,
and exactly the ones listed here.
"""

from __future__ import annotations

import pytest
from ddf_sources import OMA_DDF, needs_oma_ddf

from lwm2m.model.core_objects import CORE_OBJECTS, DEFAULT_OBJECTS, IPSO_OBJECTS
from lwm2m.model.ddf import load_ddf_file
from lwm2m.model.definitions import ObjectDef
from lwm2m.model.reusable import REUSABLE, is_reusable_id

DDF_DIR = OMA_DDF
OURS = {obj.id: obj for obj in DEFAULT_OBJECTS}

# (object ID, registry file, resources the file has that ours lacks, resources ours has that the file lacks)
CASES = [
    (0, "0.xml", set(range(18, 31)), set()),  # 1.2 adds 18-30
    (0, "0-1_0.xml", set(), set(range(13, 18))),  # 1.1 added 13-17
    (1, "1.xml", set(range(24, 28)), set()),  # 1.2 adds 24-27
    (1, "1-1_0.xml", set(), set(range(9, 24))),  # 1.1 added 9-23
    (2, "2.xml", set(), set()),
    (3, "3.xml", set(), set()),
    (3, "3-1_0.xml", set(), set()),
    (4, "4.xml", {13}, set()),  # 1.3 adds Coverage Enhancement Level
    (5, "5.xml", set(range(10, 15)), set()),  # 1.1/1.2 add 10-14
    (6, "6.xml", set(), set()),
    (7, "7.xml", set(), set()),
    (3303, "3303.xml", set(), set()),
    (3311, "3311.xml", set(), set()),
]


def _norm(name: str) -> str:
    return " ".join(name.lower().split())


def _load(file: str) -> ObjectDef:
    (obj,) = load_ddf_file(DDF_DIR / file, strict=True)
    return obj


@needs_oma_ddf
@pytest.mark.parametrize(
    ("object_id", "file", "only_in_file", "only_ours"), CASES, ids=[c[1] for c in CASES]
)
def test_core_definition_agrees_with_registry(
    object_id: int, file: str, only_in_file: set[int], only_ours: set[int]
) -> None:
    ours, theirs = OURS[object_id], _load(file)
    assert theirs.id == ours.id
    assert _norm(theirs.name) == _norm(ours.name)
    assert (theirs.multiple, theirs.mandatory) == (ours.multiple, ours.mandatory)
    assert set(theirs.resources) - set(ours.resources) == only_in_file
    assert set(ours.resources) - set(theirs.resources) == only_ours
    for rid in set(ours.resources) & set(theirs.resources):
        mine, real = ours.resources[rid], theirs.resources[rid]
        where = f"/{object_id} resource {rid} ({real.name})"
        assert _norm(mine.name) == _norm(real.name), where
        assert mine.type is real.type, where
        assert mine.operations is real.operations, where
        assert mine.multiple == real.multiple, where
        assert mine.mandatory == real.mandatory, where


def test_every_default_object_is_checked_against_a_file() -> None:
    assert {c[0] for c in CASES} == set(OURS)


@needs_oma_ddf
def test_same_version_files_agree_on_version() -> None:
    for object_id, file, only_in_file, only_ours in CASES:
        if not only_in_file and not only_ours and object_id not in (2, 3):
            assert _load(file).version == OURS[object_id].version, file


def test_core_sets() -> None:
    assert [o.id for o in CORE_OBJECTS] == list(range(8))
    assert [o.id for o in IPSO_OBJECTS] == [3303, 3311]
    assert set(OURS[0].resources) == set(range(18))
    assert set(OURS[1].resources) == set(range(24))
    assert set(OURS[3].resources) == set(range(23))
    assert OURS[1].resources[22].name == "Preferred Transport"
    assert OURS[1].resources[23].name == "Mute Send"


def test_urns() -> None:
    assert OURS[3].urn == "urn:oma:lwm2m:oma:3:1.1"
    assert OURS[6].urn == "urn:oma:lwm2m:oma:6"
    assert OURS[3303].urn == "urn:oma:lwm2m:ext:3303:1.1"


def test_ipso_objects_use_the_shared_reusable_definitions() -> None:
    for obj in IPSO_OBJECTS:
        for rid, res in obj.resources.items():
            assert is_reusable_id(rid)
            shared = REUSABLE[rid]
            assert (res.name, res.type, res.operations, res.range, res.units) == (
                shared.name,
                shared.type,
                shared.operations,
                shared.range,
                shared.units,
            )

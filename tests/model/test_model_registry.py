"""ModelRegistry: defaults, versions, DDF loading, unknown objects; reusable table."""

from __future__ import annotations

from pathlib import Path

import pytest
from ddf_sources import OMA_DDF, OWN_DDF, needs_oma_ddf

from lwm2m.model.ddf import DdfError, load_ddf_file
from lwm2m.model.definitions import ObjectDef, ResourceDef
from lwm2m.model.registry import ModelRegistry, default_registry, version_key
from lwm2m.model.reusable import (
    REUSABLE,
    REUSABLE_ID_MAX,
    REUSABLE_ID_MIN,
    conflict,
    is_reusable_id,
    reusable,
)
from lwm2m.model.types import Operations, ResourceType

DDF_DIR = OMA_DDF


def _obj(id: int, version: str, *rids: int) -> ObjectDef:
    return ObjectDef.build(
        id,
        f"obj{id}",
        multiple=True,
        mandatory=False,
        version=version,
        resources=[
            ResourceDef(r, f"r{r}", Operations.R, False, False, ResourceType.INTEGER) for r in rids
        ],
    )


def test_default_registry_has_core_and_ipso() -> None:
    reg = default_registry()
    assert [o.id for o in reg] == [0, 1, 2, 3, 4, 5, 6, 7, 3303, 3311]
    assert len(reg) == 10 and 3 in reg and 9 not in reg
    res = reg.resource(3, 0)
    assert res is not None and res.name == "Manufacturer"
    assert reg.resource(3303, 5700) == reusable(5700, mandatory=True)


def test_default_registry_is_a_fresh_copy_each_time() -> None:
    a = default_registry()
    a.add(_obj(3, "9.9"))
    assert default_registry().object(3) is not None
    assert default_registry().object(3).version == "1.1"  # type: ignore[union-attr]


def test_unknown_object_or_resource_is_none() -> None:
    reg = default_registry()
    assert reg.object(40000) is None
    assert reg.resource(40000, 0) is None
    assert reg.resource(3, 999) is None
    assert reg.resolve(40000, "1.0") is None
    assert reg.versions(40000) == ()


def test_versions_newest_by_default_and_exact_on_request() -> None:
    reg = ModelRegistry([_obj(9, "1.0", 0), _obj(9, "1.10", 0, 1, 2), _obj(9, "1.2", 0, 1)])
    assert reg.versions(9) == ("1.0", "1.2", "1.10")
    assert reg.object(9).version == "1.10"  # type: ignore[union-attr]
    assert reg.object(9, "1.2").version == "1.2"  # type: ignore[union-attr]
    assert reg.object(9, "3.0") is None
    assert reg.resource(9, 2) is not None
    assert reg.resource(9, 2, "1.0") is None
    assert len(reg) == 1
    assert [o.version for o in reg.all_versions()] == ["1.0", "1.2", "1.10"]
    assert [o.version for o in reg] == ["1.10"]


def test_resolve_prefers_exact_then_same_major_then_newest() -> None:
    reg = ModelRegistry([_obj(9, "1.0"), _obj(9, "1.1"), _obj(9, "2.0")])
    assert reg.resolve(9, "1.1").version == "1.1"  # type: ignore[union-attr]
    assert reg.resolve(9, "1.5").version == "1.1"  # type: ignore[union-attr]
    assert reg.resolve(9, "3.0").version == "2.0"  # type: ignore[union-attr]
    assert reg.resolve(9).version == "2.0"  # type: ignore[union-attr]


def test_same_version_is_replaced() -> None:
    reg = ModelRegistry([_obj(9, "1.0", 0)])
    reg.add(_obj(9, "1.0", 0, 1))
    assert reg.versions(9) == ("1.0",)
    assert set(reg.object(9).resources) == {0, 1}  # type: ignore[union-attr]


def test_version_key() -> None:
    assert version_key("1.10") > version_key("1.9") > version_key("1.0")
    assert version_key("garbage") < version_key("0.0")


@needs_oma_ddf
def test_load_directory_adds_every_version() -> None:
    reg = default_registry()
    loaded = reg.load_directory(DDF_DIR)
    assert len(loaded) == len(list(DDF_DIR.glob("*.xml")))
    assert reg.versions(3) == ("1.0", "1.1", "1.2")
    assert reg.object(3).version == "1.2"  # type: ignore[union-attr]
    assert reg.object(3, "1.1") is not None  # ours, still there
    assert reg.resource(0, 30) is not None  # 1.2-only resource now known


@needs_oma_ddf
def test_load_file(tmp_path: Path) -> None:
    reg = ModelRegistry()
    assert [o.id for o in reg.load_file(DDF_DIR / "3311.xml")] == [3311]
    assert 3311 in reg


@needs_oma_ddf
def test_failed_directory_load_leaves_registry_unchanged(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_bytes((DDF_DIR / "6.xml").read_bytes())
    (tmp_path / "b.xml").write_bytes(b"<LWM2M>")
    reg = ModelRegistry()
    with pytest.raises(DdfError) as info:
        reg.load_directory(tmp_path)
    assert info.value.file.endswith("b.xml")
    assert len(reg) == 0


def test_load_directory_of_own_files_adds_every_version() -> None:
    reg = default_registry()
    loaded = reg.load_directory(OWN_DDF)
    assert [(o.id, o.version) for o in loaded] == [
        (3, "2.0"),
        (40000, "1.0"),
        (40000, "1.1"),
        (40001, "2.0"),
    ]
    assert reg.versions(3) == ("1.1", "2.0")
    assert reg.object(3).version == "2.0"  # type: ignore[union-attr]
    assert reg.object(3, "1.1") is not None  # ours, still there
    assert reg.resource(3, 40) is not None  # only in the loaded version
    assert reg.resource(3, 40, "1.1") is None
    assert reg.versions(40000) == ("1.0", "1.1")
    assert reg.resource(40000, 5700, "1.0") is None
    assert reg.resolve(40000, "1.0").version == "1.0"  # type: ignore[union-attr]


def test_load_own_file() -> None:
    reg = ModelRegistry()
    assert [o.id for o in reg.load_file(OWN_DDF / "40001.xml")] == [40001]
    assert 40001 in reg and len(reg) == 1


def test_failed_directory_load_of_own_files_leaves_registry_unchanged(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_bytes((OWN_DDF / "40001.xml").read_bytes())
    (tmp_path / "b.xml").write_bytes(b"<LWM2M>")
    reg = ModelRegistry()
    with pytest.raises(DdfError) as info:
        reg.load_directory(tmp_path)
    assert info.value.file.endswith("b.xml")
    assert len(reg) == 0


def test_default_registry_with_a_model_dir_of_own_files(tmp_path: Path) -> None:
    (tmp_path / "3.xml").write_bytes((OWN_DDF / "3-2_0.xml").read_bytes())
    reg = default_registry(None, tmp_path)
    assert reg.versions(3) == ("1.1", "2.0")
    assert reg.object(3).version == "2.0"  # type: ignore[union-attr]
    (tmp_path / "bad.xml").write_bytes(b"<nope")
    with pytest.raises(DdfError):
        default_registry(tmp_path)


def test_copy_is_independent() -> None:
    reg = default_registry()
    other = reg.copy()
    other.add(_obj(40000, "1.0"))
    assert 40000 not in reg and 40000 in other
    assert list(other.all_versions())[:10] == list(reg.all_versions())


# ------------------------------------------------------------------ reusable


def test_reusable_range() -> None:
    assert (REUSABLE_ID_MIN, REUSABLE_ID_MAX) == (2048, 26240)
    assert is_reusable_id(2048) and is_reusable_id(26240)
    assert not is_reusable_id(2047) and not is_reusable_id(26241)
    assert all(is_reusable_id(rid) for rid in REUSABLE)


def test_reusable_table_has_the_usual_ipso_resources() -> None:
    expected = {
        5700,
        5701,
        5601,
        5602,
        5603,
        5604,
        5605,
        5750,
        5850,
        5851,
        5852,
        5805,
        5820,
        5706,
        5518,
    }
    assert expected <= set(REUSABLE)
    assert REUSABLE[5700].type is ResourceType.FLOAT
    assert REUSABLE[5605].operations is Operations.E
    assert REUSABLE[5850].type is ResourceType.BOOLEAN


def test_reusable_overrides_only_multiple_mandatory_description() -> None:
    res = reusable(5700, multiple=True, mandatory=True, description="here")
    base = REUSABLE[5700]
    assert (res.multiple, res.mandatory, res.description) == (True, True, "here")
    assert (res.name, res.type, res.operations) == (base.name, base.type, base.operations)
    assert reusable(5700).description == base.description
    with pytest.raises(KeyError):
        reusable(1)


def test_conflict() -> None:
    ok = reusable(5700, multiple=True)
    assert conflict(ok) is None
    bad = ResourceDef(5700, "Sensor Value", Operations.RW, False, False, ResourceType.STRING)
    message = conflict(bad)
    assert message is not None and "type 'String'" in message and "operations 'RW'" in message
    assert conflict(ResourceDef(1, "x", Operations.R, False, False, ResourceType.STRING)) is None


@needs_oma_ddf
def test_reusable_table_agrees_with_registry_ipso_files() -> None:
    for file in ("3303.xml", "3311.xml"):
        (obj,) = load_ddf_file(DDF_DIR / file, strict=True)
        for rid, res in obj.resources.items():
            shared = REUSABLE[rid]
            assert (shared.type, shared.operations) == (res.type, res.operations), rid
            assert " ".join(shared.name.split()) == " ".join(res.name.split()), rid


@needs_oma_ddf
def test_default_registry_with_model_dirs(tmp_path: Path) -> None:
    (tmp_path / "3.xml").write_bytes((DDF_DIR / "3.xml").read_bytes())
    reg = default_registry(None, tmp_path)
    assert reg.versions(3) == ("1.1", "1.2")
    assert reg.object(3).version == "1.2"  # type: ignore[union-attr]
    (tmp_path / "bad.xml").write_bytes(b"<nope")
    with pytest.raises(DdfError):
        default_registry(tmp_path)


def test_newest_tracks_out_of_order_adds() -> None:
    reg = ModelRegistry([_obj(9, "1.2"), _obj(9, "1.0")])
    assert reg.object(9).version == "1.2"  # type: ignore[union-attr]
    reg.add(_obj(9, "1.1"))
    assert reg.object(9).version == "1.2"  # type: ignore[union-attr]

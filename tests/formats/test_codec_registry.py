"""Codec registry: format numbers (legacy included), node kinds, negotiation, composites."""

from __future__ import annotations

import pytest
from format_models import MODEL

from lwm2m.formats import registry
from lwm2m.formats.errors import FormatError
from lwm2m.formats.media import ContentFormat as CF
from lwm2m.formats.senml import Record
from lwm2m.model.nodes import ObjectInstance, Resource
from lwm2m.model.path import Path
from lwm2m.model.types import ResourceType

T = ResourceType
NODE = ObjectInstance.of(
    0, [Resource.single(9, 80, T.INTEGER), Resource.multiple(6, {0: 1}, T.INTEGER)]
)


def test_legacy_numbers_use_the_same_codecs() -> None:
    for old, new in ((1542, CF.LWM2M_TLV), (1543, CF.LWM2M_JSON)):
        data = registry.encode(NODE, Path(3, 0), old, MODEL)
        assert data == registry.encode(NODE, Path(3, 0), new, MODEL)
        assert registry.decode(data, Path(3, 0), old, MODEL) == NODE
    assert CF(1542).canonical is CF.LWM2M_TLV
    assert CF.OMA_JSON_OLD.media_type == "application/vnd.oma.lwm2m+json"


def test_unknown_and_non_node_formats() -> None:
    with pytest.raises(FormatError, match="unsupported content format 50"):
        registry.decode(b"{}", Path(3, 0), 50, MODEL)
    with pytest.raises(FormatError, match="does not carry LwM2M nodes"):
        registry.decode(b"</3>", Path(3, 0), CF.LINK_FORMAT, MODEL)
    with pytest.raises(FormatError, match="cannot carry a composite"):
        registry.encode_composite({Path(3, 0, 9): 1}, CF.LWM2M_TLV, MODEL)
    with pytest.raises(FormatError, match="not an LwM2M node"):
        registry.encode("x", Path(3, 0, 9), CF.TEXT, MODEL)  # type: ignore[arg-type]


def test_mapping_is_encoded_as_a_composite() -> None:
    data = registry.encode({Path(3, 0, 9): 80}, Path(), CF.SENML_JSON, MODEL)
    assert data == b'[{"n":"/3/0/9","v":80}]'
    assert registry.decode_values(data, CF.SENML_JSON, MODEL) == {Path(3, 0, 9): 80}


@pytest.mark.parametrize(
    ("fmt", "kind", "ok"),
    [
        (CF.TEXT, "resource", True),
        (CF.TEXT, "resource_instance", True),
        (CF.TEXT, "instance", False),
        (CF.OCTET_STREAM, "object", False),
        (CF.LWM2M_TLV, "object", True),
        (CF.LWM2M_TLV, "root", False),
        (CF.SENML_CBOR, "root", True),
        (CF.LWM2M_CBOR, "root", True),
        (CF.LWM2M_JSON, "instance", True),
        (1543, "instance", True),
        (CF.LINK_FORMAT, "object", False),
        (9999, "object", False),
    ],
)
def test_can_carry(fmt: int, kind: str, ok: bool) -> None:
    assert registry.can_carry(fmt, kind) is ok


@pytest.mark.parametrize(
    ("version", "announced", "kind", "expected"),
    [
        ("1.0", None, "instance", CF.LWM2M_TLV),
        ("1.0", None, "resource", CF.LWM2M_TLV),
        ("1.0", {11543}, "instance", CF.LWM2M_TLV),
        ("1.1", None, "instance", CF.SENML_CBOR),
        ("1.1", None, "root", CF.SENML_CBOR),
        ("1.1", {110}, "instance", CF.SENML_JSON),
        ("1.1", {11542, 110}, "object", CF.SENML_JSON),
        ("1.2", {11544, 11542}, "instance", CF.LWM2M_CBOR),
        ("1.1", {1542}, "instance", CF.LWM2M_TLV),
        ("1.1", {0, 42}, "resource", CF.LWM2M_TLV),
        ("1.1", {11542}, "root", None),
        ("1.0", None, "root", None),
    ],
)
def test_preferred_format(
    version: str, announced: set[int] | None, kind: str, expected: CF | None
) -> None:
    if expected is None:
        with pytest.raises(FormatError):
            registry.preferred_format(version, announced, kind)
    else:
        assert registry.preferred_format(version, announced, kind) is expected


@pytest.mark.parametrize("fmt", [CF.SENML_JSON, CF.SENML_CBOR, CF.LWM2M_CBOR])
def test_composite_read_response_by_requested_paths(fmt: CF) -> None:
    items = {Path(3, 0, 9): 80, Path(3, 0, 6, 0): 1, Path(3303, 0, 5700): 20.5}
    data = registry.encode_composite(items, fmt, MODEL)
    nodes = registry.decode_composite(data, fmt, MODEL, [Path(3, 0), Path(3303, 0, 5700), Path(4)])
    assert nodes == {
        Path(3, 0): NODE,
        Path(3303, 0, 5700): Resource.single(5700, 20.5, T.FLOAT),
    }
    with pytest.raises(FormatError, match="not under any requested path"):
        registry.decode_composite(data, fmt, MODEL, [Path(3)])
    everything = registry.decode_composite(data, fmt, MODEL, [Path()])
    assert set(everything) == {Path(3), Path(3303)}


def test_send_records_with_times() -> None:
    records = [
        Record(Path(3303, 0, 5700), 20.5, 1700000000),
        Record(Path(3303, 0, 5700), 21.0, 1700000010),
    ]
    data = registry.encode_composite(records, CF.SENML_CBOR, MODEL)
    assert registry.decode_records(data, CF.SENML_CBOR, MODEL) == records
    with pytest.raises(FormatError, match="duplicate value"):
        registry.decode_values(data, CF.SENML_CBOR, MODEL)
    with pytest.raises(FormatError, match="no timestamps"):
        registry.encode_composite(records, CF.LWM2M_CBOR, MODEL)


@pytest.mark.parametrize("fmt", [CF.SENML_JSON, CF.SENML_CBOR, CF.LWM2M_CBOR])
def test_read_composite_request_paths(fmt: CF) -> None:
    paths = [Path(3, 0, 9), Path(3303, 0)]
    assert registry.decode_paths(registry.encode_paths(paths, fmt), fmt) == paths
    with pytest.raises(FormatError):
        registry.decode_paths(b"\xff", fmt)


def test_send_grouping_without_requested_paths() -> None:
    data = b'[{"n":"/3/0/6/0","v":1},{"n":"/3/0/6/1","v":5},{"n":"/3/0/9","v":80}]'
    assert registry.decode_composite(data, CF.SENML_JSON, MODEL) == {
        Path(3, 0, 6): Resource.multiple(6, {0: 1, 1: 5}, T.INTEGER),
        Path(3, 0, 9): Resource.single(9, 80, T.INTEGER),
    }

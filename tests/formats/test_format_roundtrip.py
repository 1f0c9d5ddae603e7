"""Every format: encode then decode gives the same node; garbage gives FormatError only."""

from __future__ import annotations

import contextlib

import pytest
from format_models import MODEL
from format_strategies import node_and_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lwm2m.formats import registry
from lwm2m.formats.errors import FormatError
from lwm2m.formats.media import ContentFormat as CF
from lwm2m.model.nodes import Node, ObjectInstance, Resource
from lwm2m.model.path import Path
from lwm2m.model.types import ObjectLink, ResourceType

STRUCTURED = [CF.LWM2M_TLV, CF.LWM2M_JSON, CF.SENML_JSON, CF.SENML_CBOR, CF.LWM2M_CBOR]
ALL_NODE_FORMATS = [*STRUCTURED, CF.TEXT, CF.OCTET_STREAM, CF.CBOR]
_settings = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _flat_formats_lose_empties(node: Node, fmt: CF) -> bool:
    """SenML and LwM2M JSON cannot show an empty multiple resource inside a container."""
    if fmt in (CF.LWM2M_TLV, CF.LWM2M_CBOR):
        return False
    from lwm2m.formats.tree import empty_containers

    return isinstance(node, Resource) is False and any(
        e.depth >= 2 for e in empty_containers(node, _path_of(node))
    )


def _path_of(node: Node) -> Path:  # only the depth matters for empty_containers' recursion
    from lwm2m.model.nodes import LwM2MObject, ObjectInstance

    if isinstance(node, LwM2MObject):
        return Path(node.id)
    if isinstance(node, ObjectInstance):
        return Path(10250, node.id)
    return Path(10250, 0, node.id)


@pytest.mark.parametrize("fmt", STRUCTURED, ids=lambda f: f.name)
@_settings
@given(data=node_and_path())
def test_structured_round_trip(fmt: CF, data: tuple[Node, Path]) -> None:
    node, path = data
    encoded = registry.encode(node, path, fmt, MODEL)
    decoded = registry.decode(encoded, path, fmt, MODEL)
    if _flat_formats_lose_empties(node, fmt):
        # flat formats drop empty containers; everything else must survive
        assert registry.encode(decoded, path, fmt, MODEL) == encoded
    else:
        assert decoded == node


@pytest.mark.parametrize(
    "fmt", [CF.TEXT, CF.CBOR, CF.LWM2M_TLV, CF.SENML_CBOR], ids=lambda f: f.name
)
@_settings
@given(data=node_and_path(single_value=True))
def test_single_value_round_trip(fmt: CF, data: tuple[Node, Path]) -> None:
    node, path = data
    try:
        encoded = registry.encode(node, path, fmt, MODEL)
    except FormatError:
        assert fmt is CF.TEXT
        return
    assert registry.decode(encoded, path, fmt, MODEL) == node


@_settings
@given(value=st.binary())
def test_opaque_round_trip(value: bytes) -> None:
    node = Resource.single(5, value, ResourceType.OPAQUE)
    path = Path(10250, 0, 5)
    assert (
        registry.decode(
            registry.encode(node, path, CF.OCTET_STREAM, MODEL), path, CF.OCTET_STREAM, MODEL
        )
        == node
    )


@pytest.mark.parametrize("fmt", [CF.SENML_JSON, CF.SENML_CBOR, CF.LWM2M_CBOR], ids=lambda f: f.name)
@_settings
@given(data=st.lists(node_and_path(), max_size=3))
def test_composite_round_trip(fmt: CF, data: list[tuple[Node, Path]]) -> None:
    items: dict[Path, Node] = {}
    for node, path in data:
        if any(path.startswith(p) or p.startswith(path) for p in items):
            continue
        items[path] = node
    encoded = registry.encode_composite(items, fmt, MODEL)
    decoded = registry.decode_composite(encoded, fmt, MODEL, paths=list(items))
    expected = {
        p: registry.decode(registry.encode(n, p, fmt, MODEL), p, fmt, MODEL)
        for p, n in items.items()
    }
    # requested paths without any value are left out (nothing was there)
    assert decoded == {p: n for p, n in expected.items() if p in decoded}
    for p in set(expected) - set(decoded):
        assert registry.encode(expected[p], p, CF.SENML_JSON, MODEL) == b"[]"


@pytest.mark.parametrize("fmt", ALL_NODE_FORMATS, ids=lambda f: f.name)
@pytest.mark.parametrize(
    "path",
    [Path(3), Path(3, 0), Path(3, 0, 7), Path(3, 0, 7, 1), Path(10250, 1, 5), Path(77, 0, 1)],
)
@settings(max_examples=120, deadline=None)
@given(data=st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_format_error(fmt: CF, path: Path, data: bytes) -> None:
    try:
        node = registry.decode(data, path, fmt, MODEL)
    except FormatError:
        return
    assert node is not None


@pytest.mark.parametrize("fmt", STRUCTURED, ids=lambda f: f.name)
@settings(max_examples=150, deadline=None)
@given(data=node_and_path(), flip=st.data())
def test_mutated_payloads_decode_or_format_error(
    fmt: CF, data: tuple[Node, Path], flip: st.DataObject
) -> None:
    node, path = data
    encoded = bytearray(registry.encode(node, path, fmt, MODEL))
    if encoded:
        index = flip.draw(st.integers(0, len(encoded) - 1))
        encoded[index] = flip.draw(st.integers(0, 255))
        cut = flip.draw(st.integers(0, len(encoded)))
        encoded = encoded[:cut]
    with contextlib.suppress(FormatError):
        registry.decode(bytes(encoded), path, fmt, MODEL)
    with contextlib.suppress(FormatError):
        registry.decode_composite(bytes(encoded), fmt, MODEL)


_untyped_values = (
    st.text(max_size=10)
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.booleans()
    | st.binary(max_size=10)
    | st.builds(ObjectLink, st.integers(0, 65535), st.integers(0, 65535))
)


@st.composite
def _untyped_instance(
    draw: st.DrawFn, opaque_as_text: bool = False, objlnk_as_text: bool = False
) -> ObjectInstance:
    values = _untyped_values.filter(
        lambda v: (
            not (opaque_as_text and isinstance(v, bytes))
            and not (objlnk_as_text and isinstance(v, ObjectLink))
        )
    )
    rids = draw(st.sets(st.integers(0, 65535), max_size=5))
    resources = []
    for rid in sorted(rids):
        if draw(st.booleans()):
            resources.append(Resource.single(rid, draw(values)))
        else:
            instances = draw(st.dictionaries(st.integers(0, 65534), values, min_size=1, max_size=3))
            resources.append(Resource.multiple(rid, instances))
    return ObjectInstance.of(draw(st.integers(0, 65534)), resources)


@pytest.mark.parametrize(
    "fmt", [CF.SENML_JSON, CF.SENML_CBOR, CF.LWM2M_CBOR, CF.LWM2M_JSON], ids=lambda f: f.name
)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_untyped_round_trip_without_a_model(fmt: CF, data: st.DataObject) -> None:
    """Objects nobody has a model for keep their natural types.

    Except where the format has no field for the type: LwM2M JSON carries
    Opaque as a string, LwM2M CBOR carries Objlnk as a string.
    """
    inst = data.draw(
        _untyped_instance(opaque_as_text=fmt is CF.LWM2M_JSON, objlnk_as_text=fmt is CF.LWM2M_CBOR)
    )
    path = Path(40000, inst.id)
    assert registry.decode(registry.encode(inst, path, fmt), path, fmt) == inst


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inst=_untyped_instance())
def test_untyped_tlv_values_come_back_as_bytes(inst: ObjectInstance) -> None:
    path = Path(40000, inst.id)
    decoded = registry.decode(registry.encode(inst, path, CF.LWM2M_TLV), path, CF.LWM2M_TLV)
    assert isinstance(decoded, ObjectInstance)
    assert decoded.resources.keys() == inst.resources.keys()
    for res in decoded.resources.values():
        values = [res.value] if res.instances is None else list(res.instances.values())
        assert all(isinstance(v, bytes) for v in values)

"""Hypothesis strategies: nodes typed by the test model, for every resource type."""

from __future__ import annotations

import datetime

from format_models import ALL_TYPES
from hypothesis import strategies as st

from lwm2m.model.nodes import LwM2MObject, Node, ObjectInstance, Resource, ResourceInstance, Value
from lwm2m.model.path import Path
from lwm2m.model.types import ObjectLink, ResourceType

T = ResourceType

_TIMES = st.integers(min_value=-(2**35), max_value=2**35).map(
    lambda s: datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC) + datetime.timedelta(seconds=s)
)

VALUES: dict[ResourceType, st.SearchStrategy[Value]] = {
    T.STRING: st.text(max_size=40),
    T.CORELNK: st.text(max_size=40),
    T.INTEGER: st.integers(min_value=-(2**63), max_value=2**63 - 1),
    T.UNSIGNED_INTEGER: st.integers(min_value=0, max_value=2**64 - 1),
    T.FLOAT: st.floats(allow_nan=False, allow_infinity=False),
    T.BOOLEAN: st.booleans(),
    T.OPAQUE: st.binary(max_size=40),
    T.TIME: _TIMES,
    T.OBJLNK: st.builds(ObjectLink, st.integers(0, 65535), st.integers(0, 65535)),
}

OBJECT_ID = ALL_TYPES.id
_IDS = st.integers(min_value=0, max_value=65534)


@st.composite
def resources(draw: st.DrawFn, rid: int | None = None) -> Resource:
    if rid is None:
        rid = draw(st.sampled_from(sorted(ALL_TYPES.resources)))
    rdef = ALL_TYPES.resources[rid]
    values = VALUES[rdef.type]
    if rdef.multiple:
        instances = draw(st.dictionaries(_IDS, values, max_size=4))
        return Resource.multiple(rid, instances, rdef.type)
    return Resource.single(rid, draw(values), rdef.type)


@st.composite
def instances(draw: st.DrawFn, iid: int | None = None) -> ObjectInstance:
    if iid is None:
        iid = draw(_IDS)
    rids = draw(st.sets(st.sampled_from(sorted(ALL_TYPES.resources)), max_size=6))
    return ObjectInstance.of(iid, [draw(resources(r)) for r in sorted(rids)])


@st.composite
def objects(draw: st.DrawFn) -> LwM2MObject:
    iids = draw(st.sets(_IDS, max_size=3))
    return LwM2MObject.of(OBJECT_ID, [draw(instances(i)) for i in sorted(iids)])


@st.composite
def node_and_path(draw: st.DrawFn, *, single_value: bool = False) -> tuple[Node, Path]:
    kinds = (
        ["resource", "resource_instance"]
        if single_value
        else ["object", "instance", "resource", "resource_instance"]
    )
    kind = draw(st.sampled_from(kinds))
    if kind == "object":
        return draw(objects()), Path(OBJECT_ID)
    iid = draw(_IDS)
    if kind == "instance":
        return draw(instances(iid)), Path(OBJECT_ID, iid)
    if kind == "resource":
        pool = [r for r, d in ALL_TYPES.resources.items() if not (single_value and d.multiple)]
        rid = draw(st.sampled_from(sorted(pool)))
        return draw(resources(rid)), Path(OBJECT_ID, iid, rid)
    rid = draw(st.sampled_from([r for r, d in ALL_TYPES.resources.items() if d.multiple]))
    ri = draw(_IDS)
    value = draw(VALUES[ALL_TYPES.resources[rid].type])
    return ResourceInstance(ri, value), Path(OBJECT_ID, iid, rid, ri)

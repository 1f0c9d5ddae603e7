"""Server and bootstrap events through the cluster relay's JSON, and what it refuses."""

from __future__ import annotations

import contextlib
import datetime
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwm2m.bootstrap.events import (
    BootstrapRejected,
    FailureReason,
    Operation,
    SessionAnswer,
    SessionMode,
    SessionStarted,
    bootstrap_event_from_json,
)
from lwm2m.model.nodes import LwM2MObject, ObjectInstance, Resource, ResourceInstance
from lwm2m.model.path import Path
from lwm2m.model.types import ObjectLink, ResourceType
from lwm2m.server.cluster_event_codec import event_from_json, event_to_json
from lwm2m.server.events import (
    AwakeEvent,
    DeregistrationEvent,
    NotificationEvent,
    RegistrationEvent,
    SendEvent,
    ServerEvent,
    SleepingEvent,
    UpdatedEvent,
)
from lwm2m.server.payloads import TimedValue
from lwm2m.stores.records import ObservationRecord, PeerIdentity, Registration

REG = Registration("r1", "dev-1", ("127.0.0.2", 5683), 300, 1000.5, 1001.25, binding="UQ")
SECURE = Registration(
    "r2",
    "dev-2",
    ("::1", 6000),
    60,
    1.0,
    2.0,
    queue_mode=True,
    identity=PeerIdentity(psk_identity=b"id-\x00\xff"),
)
WHEN = datetime.datetime(2026, 12, 4, 23, 0, 1, 250000, tzinfo=datetime.UTC)
INSTANCE = ObjectInstance.of(
    0,
    [
        Resource.single(0, "maker", ResourceType.STRING),
        Resource.single(1, 7, ResourceType.INTEGER),
        Resource.single(2, 0.1, ResourceType.FLOAT),
        Resource.single(3, float("inf")),
        Resource.single(4, True, ResourceType.BOOLEAN),
        Resource.single(5, b"\x00\x01\xfe", ResourceType.OPAQUE),
        Resource.single(6, WHEN, ResourceType.TIME),
        Resource.single(7, ObjectLink(3, 0), ResourceType.OBJLNK),
        Resource.multiple(8, {0: 1, 5: 2}, ResourceType.INTEGER),
    ],
)
OBSERVATION = ObservationRecord("abcd", "r1", "dev-1", (Path.parse("/3/0"),), created_at=5.0)
COMPOSITE = ObservationRecord(
    "ef01",
    "r1",
    "dev-1",
    (Path.parse("/3/0/1"), Path.parse("/3/0/8/5")),
    composite=True,
    content_format=112,
)

EVENTS: list[ServerEvent] = [
    RegistrationEvent("dev-1", 10.0, registration=REG),
    RegistrationEvent("dev-2", 11.0, registration=SECURE, replaced=REG),
    UpdatedEvent("dev-1", 12.0, previous=REG, registration=SECURE),
    DeregistrationEvent("dev-1", 13.0, registration=REG, expired=True),
    DeregistrationEvent("dev-1", 13.5, registration=REG, replaced=True),
    NotificationEvent(
        "dev-1",
        14.0,
        observation=OBSERVATION,
        values={Path.parse("/3/0"): INSTANCE},
        content_format=11542,
        sequence=12,
        confirmable=True,
    ),
    NotificationEvent(
        "dev-1",
        15.0,
        observation=COMPOSITE,
        values={
            Path.parse("/3/0/1"): Resource.single(1, 7),
            Path.parse("/3/0/8/5"): ResourceInstance(5, 2),
            Path.parse("/3"): LwM2MObject.of(3, [INSTANCE]),
        },
        records=(TimedValue(Path.parse("/3/0/1"), 7, 14.5),),
    ),
    SleepingEvent("dev-2", 16.0, "r2"),
    AwakeEvent("dev-2", 17.0, "r2"),
    SendEvent(
        "dev-1",
        18.0,
        registration_id="r1",
        values={Path.parse("/3/0/0"): Resource.single(0, "x")},
        content_format=110,
        records=(TimedValue(Path.parse("/3/0/0"), "x", 17.0),),
    ),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_every_server_event_comes_back_equal_and_marked(event: ServerEvent) -> None:
    text = json.dumps(event_to_json(event), allow_nan=False)
    back = event_from_json(json.loads(text), origin="node-a")
    assert back == event
    assert type(back) is type(event)
    assert back.origin == "node-a"
    assert event_to_json(back) == event_to_json(event)


def test_values_keep_their_python_types() -> None:
    event = EVENTS[5]
    back = event_from_json(json.loads(json.dumps(event_to_json(event))), origin="a")
    assert isinstance(back, NotificationEvent)
    node = back.values[Path.parse("/3/0")]
    assert isinstance(node, ObjectInstance)
    values = {rid: r.value for rid, r in node.resources.items()}
    assert type(values[1]) is int and type(values[2]) is float and values[2] == 0.1
    assert values[3] == float("inf") and values[5] == b"\x00\x01\xfe" and values[6] == WHEN
    assert node.resources[1].type is ResourceType.INTEGER and node.resources[3].type is None


@pytest.mark.parametrize(
    "change",
    [
        {"type": "exploded"},
        {"endpoint": 5},
        {"time": "soon"},
        {"time": True},
        {"registration": None},
        {"registration": {"id": "x"}},
        {"values": [["/3/0/99999999", {"resource": {"id": 1, "value": ["i", 1]}}]]},
        {"values": [["/3/0/1", {"resource": {"id": 1, "value": ["i", "1"]}}]]},
        {"values": [["/3/0/1", {"resource": {"id": 1, "value": ["o", "@@"]}}]]},
        {"values": [["/3/0/1", {"resource": {"id": 1, "value": ["t", "2026-01-01T00:00"]}}]]},
        {"values": [["/3/0/1", {"resource": {"id": 1, "value": ["f", "zz"]}}]]},
        {"values": [["/3/0/1", {"resource": {"id": 1, "type": "Nope", "value": ["s", ""]}}]]},
        {"values": [["/3", {"object": 3, "instances": [{"resource": {"id": 1}}]}]]},
        {"records": [["/3/0/1", ["i", 1], "later"]]},
        {"sequence": 1.5},
    ],
)
def test_a_bad_field_is_a_value_error(change: dict[str, Any]) -> None:
    base = event_to_json(EVENTS[6] if "registration" not in change else EVENTS[0])
    base.update(change)
    with pytest.raises(ValueError):
        event_from_json(base)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(JSON)
def test_arbitrary_json_decodes_or_raises_value_error(data: object) -> None:
    for read in (event_from_json, bootstrap_event_from_json):
        with contextlib.suppress(ValueError):
            read(data)


@given(
    st.sampled_from(EVENTS),
    st.sampled_from(
        ["time", "endpoint", "registration_id", "values", "registration", "observation", "records"]
    ),
    JSON,
)
def test_one_field_replaced_by_anything_decodes_or_raises_value_error(
    event: ServerEvent, key: str, value: object
) -> None:
    doc = event_to_json(event)
    doc[key] = value
    with contextlib.suppress(ValueError):
        event_from_json(doc)


BOOTSTRAP = [
    SessionStarted("s1", "dev-1", 1.0, SessionMode.SERVER_INITIATED, "127.0.0.1:5683", 11542),
    SessionAnswer("s1", "dev-1", 2.0, 1, Operation.WRITE, "/0/1", "2.04", True, "ok"),
    BootstrapRejected("s2", "dev-9", 3.0, "127.0.0.1:1", FailureReason.BUSY, "busy"),
]


@pytest.mark.parametrize("event", BOOTSTRAP, ids=lambda e: type(e).__name__)
def test_bootstrap_events_come_back_equal_and_marked(event: Any) -> None:
    back = bootstrap_event_from_json(json.loads(json.dumps(event.to_json())), origin="b")
    assert back == event and back.origin == "b"
    assert back.to_json() == event.to_json()
    assert "origin" not in back.to_json()


def test_bootstrap_event_with_a_bad_enum_or_extra_field_is_refused() -> None:
    doc = BOOTSTRAP[0].to_json()
    with pytest.raises(ValueError):
        bootstrap_event_from_json({**doc, "mode": "sideways"})
    with pytest.raises(ValueError):
        bootstrap_event_from_json({**doc, "surprise": 1})
    with pytest.raises(ValueError):
        bootstrap_event_from_json({**doc, "step": True, "type": "request"})

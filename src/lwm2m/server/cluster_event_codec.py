"""Server events as JSON and back, for the relay to the other cluster nodes.

A relayed event must render on another node exactly as on its own, so nothing is
lost on the way: registrations and observations travel as the stores' documents,
node values with their Python type (``int`` stays ``int``, ``bytes`` stay bytes,
Time stays a timezone-aware datetime) and the resource type when one was known.

The JSON comes back from the network (another node, through Redis): reading it
checks every field and raises ``ValueError`` on anything unexpected, never
returning a half-built event.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import math
from collections.abc import Callable, Mapping
from typing import Any

from lwm2m.model.nodes import LwM2MObject, Node, ObjectInstance, Resource, ResourceInstance, Value
from lwm2m.model.path import Path, PathError
from lwm2m.model.types import ObjectLink, ResourceType
from lwm2m.server.events import (
    AwakeEvent,
    DeregistrationEvent,
    EventType,
    NotificationEvent,
    RegistrationEvent,
    SendEvent,
    ServerEvent,
    SleepingEvent,
    UpdatedEvent,
)
from lwm2m.server.payloads import TimedValue
from lwm2m.stores.records import ObservationRecord, Registration

__all__ = ["event_from_json", "event_to_json"]


def event_to_json(event: ServerEvent) -> dict[str, Any]:
    """The JSON document of ``event`` (``origin`` aside: the relay adds its own)."""
    data: dict[str, Any] = {
        "type": event.type.value,
        "endpoint": event.endpoint,
        "time": event.time,
    }
    match event:
        case RegistrationEvent():
            data["registration"] = event.registration.to_dict()
            data["replaced"] = None if event.replaced is None else event.replaced.to_dict()
        case UpdatedEvent():
            data["previous"] = event.previous.to_dict()
            data["registration"] = event.registration.to_dict()
        case DeregistrationEvent():
            data["registration"] = event.registration.to_dict()
            data["expired"] = event.expired
            data["replaced"] = event.replaced
        case NotificationEvent():
            data["observation"] = event.observation.to_dict()
            data["values"] = _values_json(event.values)
            data["content_format"] = event.content_format
            data["sequence"] = event.sequence
            data["confirmable"] = event.confirmable
            data["records"] = [_timed_json(r) for r in event.records]
        case SleepingEvent() | AwakeEvent():
            data["registration_id"] = event.registration_id
        case SendEvent():
            data["registration_id"] = event.registration_id
            data["values"] = _values_json(event.values)
            data["content_format"] = event.content_format
            data["records"] = [_timed_json(r) for r in event.records]
        case _:
            raise ValueError(f"no JSON form for {type(event).__name__}")
    return data


def event_from_json(data: object, *, origin: str | None = None) -> ServerEvent:
    """The event :func:`event_to_json` wrote, marked with the node it came from."""
    doc = _object(data, "event")
    try:
        kind = EventType(doc.get("type"))
    except ValueError:
        raise ValueError(f"event: unknown type {doc.get('type')!r}") from None
    endpoint = _str(doc, "endpoint")
    when = _number(doc, "time")
    return _READERS[kind](doc, endpoint, when, origin)


# Private


def _registration(doc: Mapping[str, Any], key: str) -> Registration:
    return Registration.from_dict(_object(doc.get(key), key))


def _read_registration(
    doc: Mapping[str, Any], endpoint: str, when: float, origin: str | None
) -> ServerEvent:
    replaced = doc.get("replaced")
    return RegistrationEvent(
        endpoint,
        when,
        registration=_registration(doc, "registration"),
        replaced=None if replaced is None else _registration(doc, "replaced"),
        origin=origin,
    )


def _read_updated(
    doc: Mapping[str, Any], endpoint: str, when: float, origin: str | None
) -> ServerEvent:
    return UpdatedEvent(
        endpoint,
        when,
        previous=_registration(doc, "previous"),
        registration=_registration(doc, "registration"),
        origin=origin,
    )


def _read_deregistration(
    doc: Mapping[str, Any], endpoint: str, when: float, origin: str | None
) -> ServerEvent:
    return DeregistrationEvent(
        endpoint,
        when,
        registration=_registration(doc, "registration"),
        expired=_bool(doc, "expired"),
        replaced=_bool(doc, "replaced"),
        origin=origin,
    )


def _read_notification(
    doc: Mapping[str, Any], endpoint: str, when: float, origin: str | None
) -> ServerEvent:
    return NotificationEvent(
        endpoint,
        when,
        observation=ObservationRecord.from_dict(_object(doc.get("observation"), "observation")),
        values=_values(doc.get("values")),
        content_format=_opt_int(doc, "content_format"),
        sequence=_opt_int(doc, "sequence"),
        confirmable=_bool(doc, "confirmable"),
        records=_records(doc.get("records")),
        origin=origin,
    )


def _read_sleeping(
    doc: Mapping[str, Any], endpoint: str, when: float, origin: str | None
) -> ServerEvent:
    return SleepingEvent(endpoint, when, _str(doc, "registration_id"), origin=origin)


def _read_awake(
    doc: Mapping[str, Any], endpoint: str, when: float, origin: str | None
) -> ServerEvent:
    return AwakeEvent(endpoint, when, _str(doc, "registration_id"), origin=origin)


def _read_send(
    doc: Mapping[str, Any], endpoint: str, when: float, origin: str | None
) -> ServerEvent:
    return SendEvent(
        endpoint,
        when,
        registration_id=_str(doc, "registration_id"),
        values=_values(doc.get("values")),
        content_format=_opt_int(doc, "content_format"),
        records=_records(doc.get("records")),
        origin=origin,
    )


_Reader = Callable[[Mapping[str, Any], str, float, "str | None"], ServerEvent]
_READERS: dict[EventType, _Reader] = {
    EventType.REGISTRATION: _read_registration,
    EventType.UPDATED: _read_updated,
    EventType.DEREGISTRATION: _read_deregistration,
    EventType.NOTIFICATION: _read_notification,
    EventType.SLEEPING: _read_sleeping,
    EventType.AWAKE: _read_awake,
    EventType.SEND: _read_send,
}


# -- values: ["i", 5], ["f", "0x1.8p+1"], ["s", "x"], ["b", true], ["o", base64],
#    ["t", iso 8601], ["l", [object, instance]]. Floats travel as hex so that NaN,
#    infinities and every bit of the value survive JSON.


def _value_json(value: Value) -> list[Any]:
    if isinstance(value, bool):
        return ["b", value]
    if isinstance(value, int):
        return ["i", value]
    if isinstance(value, float):
        return ["f", value.hex()]
    if isinstance(value, str):
        return ["s", value]
    if isinstance(value, bytes):
        return ["o", base64.b64encode(value).decode("ascii")]
    if isinstance(value, datetime.datetime):
        return ["t", value.isoformat()]
    return ["l", [value.object_id, value.instance_id]]


def _value(data: object) -> Value:
    if not isinstance(data, list) or len(data) != 2 or not isinstance(data[0], str):
        raise ValueError("value: expected [tag, value]")
    tag, raw = data
    if tag == "b" and isinstance(raw, bool):
        return raw
    if tag == "i" and isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if tag == "s" and isinstance(raw, str):
        return raw
    if tag == "f" and isinstance(raw, str):
        try:
            return float.fromhex(raw)
        except (ValueError, OverflowError):
            raise ValueError(f"value: bad float {raw!r}") from None
    if tag == "o" and isinstance(raw, str):
        try:
            return base64.b64decode(raw, validate=True)
        except binascii.Error:
            raise ValueError("value: bad base64") from None
    if tag == "t" and isinstance(raw, str):
        moment = datetime.datetime.fromisoformat(raw)
        if moment.utcoffset() is None:
            raise ValueError("value: time without a time zone")
        return moment
    if tag == "l" and isinstance(raw, list) and len(raw) == 2 and all(map(_is_int, raw)):
        return ObjectLink(raw[0], raw[1])
    raise ValueError(f"value: bad {tag!r} value")


def _resource_json(resource: Resource) -> dict[str, Any]:
    data: dict[str, Any] = {"id": resource.id}
    if resource.type is not None:
        data["type"] = resource.type.value
    if resource.instances is not None:
        data["instances"] = [[i, _value_json(v)] for i, v in resource.instances.items()]
    else:
        assert resource.value is not None
        data["value"] = _value_json(resource.value)
    return data


def _resource(data: object) -> Resource:
    doc = _object(data, "resource")
    rtype = doc.get("type")
    try:
        kind = None if rtype is None else ResourceType(rtype)
    except ValueError:
        raise ValueError(f"resource: unknown type {rtype!r}") from None
    ident = _int(doc, "id")
    if "instances" in doc:
        items = doc["instances"]
        if not isinstance(items, list):
            raise ValueError("resource: instances is not a list")
        instances: dict[int, Value] = {}
        for item in items:
            if not isinstance(item, list) or len(item) != 2 or not _is_int(item[0]):
                raise ValueError("resource: bad instance")
            instances[item[0]] = _value(item[1])
        return Resource(ident, instances=instances, type=kind)
    return Resource(ident, value=_value(doc.get("value")), type=kind)


def _node_json(node: Node) -> dict[str, Any]:
    match node:
        case LwM2MObject():
            return {
                "object": node.id,
                "instances": [_node_json(i) for i in node.instances.values()],
            }
        case ObjectInstance():
            return {
                "instance": node.id,
                "resources": [_resource_json(r) for r in node.resources.values()],
            }
        case Resource():
            return {"resource": _resource_json(node)}
        case ResourceInstance():
            return {"resource_instance": node.id, "value": _value_json(node.value)}
    raise ValueError(f"not a node: {type(node).__name__}")


def _node(data: object) -> Node:
    doc = _object(data, "node")
    if "object" in doc:
        items = _list(doc, "instances")
        instances = [_node(i) for i in items]
        if not all(isinstance(i, ObjectInstance) for i in instances):
            raise ValueError("node: an object holds instances only")
        return LwM2MObject.of(_int(doc, "object"), instances)  # type: ignore[arg-type]
    if "instance" in doc:
        return ObjectInstance.of(
            _int(doc, "instance"), [_resource(r) for r in _list(doc, "resources")]
        )
    if "resource" in doc:
        return _resource(doc["resource"])
    if "resource_instance" in doc:
        return ResourceInstance(_int(doc, "resource_instance"), _value(doc.get("value")))
    raise ValueError("node: unknown kind")


def _values_json(values: Mapping[Path, Node]) -> list[list[Any]]:
    return [[str(path), _node_json(node)] for path, node in values.items()]


def _values(data: object) -> dict[Path, Node]:
    if not isinstance(data, list):
        raise ValueError("values: not a list")
    result: dict[Path, Node] = {}
    for item in data:
        if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str):
            raise ValueError("values: expected [path, node]")
        result[_path(item[0])] = _node(item[1])
    return result


def _timed_json(record: TimedValue) -> list[Any]:
    return [str(record.path), _value_json(record.value), record.time]


def _records(data: object) -> tuple[TimedValue, ...]:
    if not isinstance(data, list):
        raise ValueError("records: not a list")
    result = []
    for item in data:
        if not isinstance(item, list) or len(item) != 3 or not isinstance(item[0], str):
            raise ValueError("records: expected [path, value, time]")
        when = item[2]
        if not _is_number(when):
            raise ValueError("records: time is not a number")
        result.append(TimedValue(_path(item[0]), _value(item[1]), float(when)))
    return tuple(result)


def _path(text: str) -> Path:
    try:
        return Path.parse(text)
    except PathError as exc:
        raise ValueError(f"path {text!r}: {exc}") from None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


def _object(data: object, what: str) -> Mapping[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{what}: not a JSON object")
    return data


def _list(doc: Mapping[str, Any], key: str) -> list[Any]:
    value = doc.get(key)
    if not isinstance(value, list):
        raise ValueError(f"{key}: not a list")
    return value


def _str(doc: Mapping[str, Any], key: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{key}: not a string")
    return value


def _int(doc: Mapping[str, Any], key: str) -> int:
    value = doc.get(key)
    if not _is_int(value):
        raise ValueError(f"{key}: not an integer")
    assert isinstance(value, int)
    return value


def _opt_int(doc: Mapping[str, Any], key: str) -> int | None:
    return None if doc.get(key) is None else _int(doc, key)


def _bool(doc: Mapping[str, Any], key: str) -> bool:
    value = doc.get(key)
    if not isinstance(value, bool):
        raise ValueError(f"{key}: not a boolean")
    return value


def _number(doc: Mapping[str, Any], key: str) -> float:
    value = doc.get(key)
    if not _is_number(value):
        raise ValueError(f"{key}: not a number")
    assert isinstance(value, int | float)
    return float(value)

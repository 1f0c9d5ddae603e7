"""What a client object instance stores per resource, and its form in the JSON state file.

Applications set plain Python values (``temp.value = 21``); the model says the
resource is a Float, so the stored value becomes ``21.0``. Values decoded from
a server's Write go through the same rule, so a wrongly typed payload is a
4.00 Bad Request instead of a corrupted store. The rule itself is
:func:`lwm2m.model.value_typing.coerce`; this module adds multiple resources
and the state file's JSON (:func:`to_json` / :func:`from_json`).
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Mapping
from typing import TypeAlias

from lwm2m.model.nodes import Value
from lwm2m.model.types import ObjectLink, ResourceType
from lwm2m.model.value_typing import ValueTypeError, coerce, from_epoch

#: What an instance stores for one resource: a value, or instances of a multiple resource.
Stored: TypeAlias = Value | dict[int, Value]


def coerce_stored(
    value: object, rtype: ResourceType | None, multiple: bool, where: str = "value"
) -> Stored:
    """Coerce a single value, or a mapping of resource-instance ID to value."""
    if multiple:
        if not isinstance(value, Mapping):
            raise ValueTypeError(f"{where}: a multiple resource needs a mapping of instances")
        result: dict[int, Value] = {}
        for key, item in value.items():
            if not isinstance(key, int) or isinstance(key, bool) or not 0 <= key <= 65534:
                raise ValueTypeError(f"{where}: resource instance ID {key!r} out of range")
            result[key] = coerce(item, rtype, f"{where}/{key}")
        return dict(sorted(result.items()))
    if isinstance(value, Mapping):
        raise ValueTypeError(f"{where}: a single resource cannot hold instances")
    return coerce(value, rtype, where)


def as_number(value: object) -> float | None:
    """The numeric value used by gt/lt/st, or None for non-numeric values."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    return None


# -- JSON state file ----------------------------------------------------------------------


def to_json(value: Value) -> object:
    """A JSON-safe form; the resource type (from the model) tells how to read it back."""
    if isinstance(value, bytes):
        return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, datetime.datetime):
        return {"time": value.timestamp()}
    if isinstance(value, ObjectLink):
        return {"objlnk": str(value)}
    return value


def from_json(data: object) -> Value:
    """Inverse of :func:`to_json`; raises :class:`ValueTypeError` on anything else."""
    if isinstance(data, dict):
        if set(data) == {"b64"} and isinstance(data["b64"], str):
            try:
                return base64.b64decode(data["b64"], validate=True)
            except ValueError:
                raise ValueTypeError("state file: invalid base64 value") from None
        if set(data) == {"time"} and isinstance(data["time"], int | float):
            return from_epoch(data["time"], "state file")
        if set(data) == {"objlnk"} and isinstance(data["objlnk"], str):
            try:
                return ObjectLink.parse(data["objlnk"])
            except ValueError as exc:
                raise ValueTypeError(f"state file: {exc}") from None
        raise ValueTypeError(f"state file: unknown value encoding {sorted(data)!r}")
    if isinstance(data, str | bool | int | float):
        return data
    raise ValueTypeError(f"state file: {type(data).__name__} is not a value")


def stored_to_json(value: Stored) -> object:
    if isinstance(value, dict):
        return {"instances": {str(k): to_json(v) for k, v in value.items()}}
    return to_json(value)


def stored_from_json(data: object) -> Stored:
    if isinstance(data, dict) and set(data) == {"instances"}:
        raw = data["instances"]
        if not isinstance(raw, dict):
            raise ValueTypeError("state file: 'instances' must be an object")
        result: dict[int, Value] = {}
        for key, item in raw.items():
            if not isinstance(key, str) or not key.isdigit():
                raise ValueTypeError(f"state file: resource instance ID {key!r} is not a number")
            result[int(key)] = from_json(item)
        return result
    return from_json(data)

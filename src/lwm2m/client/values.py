"""Typing of resource values on the client side.

Applications set plain Python values (``temp.value = 21``); the model says the
resource is a Float, so the stored value becomes ``21.0``. The same function
checks values decoded from a server's Write, so a wrongly typed payload is a
4.00 Bad Request instead of a corrupted store. The JSON state file needs
values as JSON: :func:`to_json` / :func:`from_json` convert both ways.
"""

from __future__ import annotations

import base64
import datetime
import math
from collections.abc import Mapping
from typing import TypeAlias

from lwm2m.model.nodes import Value
from lwm2m.model.types import ObjectLink, ResourceType

#: What an instance stores for one resource: a value, or instances of a multiple resource.
Stored: TypeAlias = Value | dict[int, Value]

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_INT64 = (-(1 << 63), (1 << 63) - 1)


class ValueTypeError(ValueError):
    """A value that does not fit the resource's type."""


def coerce(value: object, rtype: ResourceType | None, where: str = "value") -> Value:
    """Return ``value`` as the Python type ``rtype`` asks for, or raise :class:`ValueTypeError`.

    Lossless conversions only: an int becomes a float, an epoch number a Time,
    a ``"3:0"`` string an Objlnk; ``1.5`` never becomes an Integer.
    """
    if rtype is None or rtype is ResourceType.NONE:
        if isinstance(value, str | int | float | bool | bytes | datetime.datetime | ObjectLink):
            return value
        raise ValueTypeError(f"{where}: {type(value).__name__} is not a resource value")
    if rtype in (ResourceType.STRING, ResourceType.CORELNK):
        if isinstance(value, str):
            return value
    elif rtype is ResourceType.INTEGER:
        if isinstance(value, int) and not isinstance(value, bool):
            if not _INT64[0] <= value <= _INT64[1]:
                raise ValueTypeError(f"{where}: {value} does not fit a 64-bit Integer")
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif rtype is ResourceType.UNSIGNED_INTEGER:
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value < (1 << 64):
                raise ValueTypeError(f"{where}: {value} is not a 64-bit Unsigned Integer")
            return value
    elif rtype is ResourceType.FLOAT:
        if isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
            if math.isnan(number) or math.isinf(number):
                raise ValueTypeError(f"{where}: {value} is not a finite Float")
            return number
    elif rtype is ResourceType.BOOLEAN:
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
    elif rtype is ResourceType.OPAQUE:
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
    elif rtype is ResourceType.TIME:
        if isinstance(value, datetime.datetime):
            if value.utcoffset() is None:
                raise ValueTypeError(f"{where}: Time values must be timezone-aware")
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return _EPOCH + datetime.timedelta(seconds=float(value))
    elif rtype is ResourceType.OBJLNK:
        if isinstance(value, ObjectLink):
            return value
        if isinstance(value, str):
            try:
                return ObjectLink.parse(value)
            except ValueError as exc:
                raise ValueTypeError(f"{where}: {exc}") from None
    raise ValueTypeError(f"{where}: {type(value).__name__} {value!r} is not a {rtype.value}")


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
            return _EPOCH + datetime.timedelta(seconds=float(data["time"]))
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

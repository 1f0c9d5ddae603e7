"""Typed values shared by every format: which type applies, and checks before encoding.

A resource's type comes from the model when the model knows the resource;
otherwise from the node (``Resource.type``); otherwise it is inferred from the
Python value. Encoders check the value against that type so a wrong value is
reported as a :class:`FormatError` instead of producing bytes a peer would
misread.
"""

from __future__ import annotations

import datetime
import functools
import math
from dataclasses import dataclass

from lwm2m.formats.errors import FormatError
from lwm2m.model.definitions import ResourceDef
from lwm2m.model.nodes import Value
from lwm2m.model.path import Path
from lwm2m.model.registry import ModelRegistry
from lwm2m.model.types import ObjectLink, ResourceType
from lwm2m.model.values import INT64_MAX as INT64_MAX
from lwm2m.model.values import INT64_MIN as INT64_MIN
from lwm2m.model.values import UINT64_MAX as UINT64_MAX

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


@dataclass(frozen=True, slots=True)
class At:
    """A path for error messages, formatted only when a message is built.

    Hot encode/decode loops carry ID tuples rather than :class:`Path` objects
    (whose validation costs more than the codec work); this prints like one.
    """

    ids: tuple[int, ...]

    def __str__(self) -> str:
        return "/" + "/".join(map(str, self.ids))


def rdef_at(model: ModelRegistry | None, ids: tuple[int, ...]) -> ResourceDef | None:
    """The definition of the resource at (or above) the ID path ``ids``."""
    if model is None or len(ids) < 3:
        return None
    return model.resource(ids[0], ids[2])


def type_at(model: ModelRegistry | None, ids: tuple[int, ...]) -> ResourceType | None:
    """The model's type for the resource at ``ids`` (``None`` when unknown or ``NONE``)."""
    if model is None or len(ids) < 3:
        return None
    rdef = model.resource(ids[0], ids[2])
    if rdef is None or rdef.type is ResourceType.NONE:
        return None
    return rdef.type


def effective_type_at(
    model: ModelRegistry | None,
    ids: tuple[int, ...],
    node_type: ResourceType | None,
    value: object,
) -> ResourceType:
    """The type used to encode ``value`` at ``ids``: model, then node, then inferred."""
    rtype = type_at(model, ids)
    if rtype is not None:
        return rtype
    if node_type is not None and node_type is not ResourceType.NONE:
        return node_type
    return infer_type(value)


@functools.lru_cache(maxsize=4096)
def parse_path(text: str) -> Path:
    """``Path.parse`` with a cache: notifications and Send repeat the same names.

    Raises ``PathError`` like ``Path.parse`` (errors are not cached).
    """
    return Path.parse(text)


def resource_def(model: ModelRegistry | None, path: Path) -> ResourceDef | None:
    """The definition of the resource ``path`` points into, if the model has it."""
    if model is None or path.object_id is None or path.resource_id is None:
        return None
    return model.resource(path.object_id, path.resource_id)


def model_type(model: ModelRegistry | None, path: Path) -> ResourceType | None:
    """The model's type for a resource path (``None`` when unknown or ``NONE``)."""
    rdef = resource_def(model, path)
    if rdef is None or rdef.type is ResourceType.NONE:
        return None
    return rdef.type


def infer_type(value: object) -> ResourceType:
    """The natural resource type of a Python value (bool before int on purpose)."""
    if isinstance(value, bool):
        return ResourceType.BOOLEAN
    if isinstance(value, int):
        return ResourceType.INTEGER
    if isinstance(value, float):
        return ResourceType.FLOAT
    if isinstance(value, str):
        return ResourceType.STRING
    if isinstance(value, bytes | bytearray | memoryview):
        return ResourceType.OPAQUE
    if isinstance(value, datetime.datetime):
        return ResourceType.TIME
    if isinstance(value, ObjectLink):
        return ResourceType.OBJLNK
    raise FormatError(f"unsupported value type {type(value).__name__}")


def effective_type(
    model: ModelRegistry | None, path: Path, node_type: ResourceType | None, value: object
) -> ResourceType:
    """The type used to encode ``value`` at ``path``: model, then node, then inferred."""
    rtype = model_type(model, path)
    if rtype is not None:
        return rtype
    if node_type is not None and node_type is not ResourceType.NONE:
        return node_type
    return infer_type(value)


def epoch_seconds(value: datetime.datetime, where: object) -> int:
    """Whole seconds since the epoch (LwM2M Time has one-second resolution)."""
    if value.tzinfo is None:
        raise FormatError(f"{where}: Time value {value!r} has no time zone")
    delta = value - _EPOCH
    return delta.days * 86400 + delta.seconds


def from_epoch(seconds: int | float, where: object) -> datetime.datetime:
    """A UTC datetime from epoch seconds; out-of-range values are a FormatError."""
    if isinstance(seconds, float) and not math.isfinite(seconds):
        raise FormatError(f"{where}: Time value {seconds} is not finite")
    try:
        return _EPOCH + datetime.timedelta(seconds=seconds)
    except (OverflowError, ValueError):
        raise FormatError(f"{where}: Time value {seconds} out of range") from None


def json_number(value: object, where: object) -> int | float:
    """A JSON/CBOR number (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FormatError(f"{where}: expected a number, got {type(value).__name__}")
    return value


def number_as(raw: object, rtype: ResourceType | None, where: object) -> Value | None:
    """A numeric field (LwM2M JSON ``v``, SenML ``v``) typed by the model.

    Returns None when ``rtype`` is not numeric, leaving the caller to report
    the type mismatch in its own words.
    """
    number = json_number(raw, where)
    if rtype is None:
        return number
    if rtype is ResourceType.FLOAT:
        return float(number)
    if rtype in (ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER, ResourceType.TIME):
        if isinstance(number, float):
            if not number.is_integer():
                raise FormatError(f"{where}: {rtype.value} value {number} is not integral")
            number = int(number)
        if rtype is ResourceType.TIME:
            return from_epoch(number, where)
        return check_value(number, rtype, where)
    return None


def check_value(value: object, rtype: ResourceType, where: object) -> Value:
    """Validate (and lightly normalise) a value about to be encoded as ``rtype``.

    Normalisation is limited to lossless cases: an int for a Float, a
    bytearray for Opaque, an int (epoch seconds) for a Time, ``"3:0"`` for an
    Objlnk.
    """
    if rtype is ResourceType.INTEGER:
        if isinstance(value, int) and not isinstance(value, bool):
            if not INT64_MIN <= value <= INT64_MAX:
                raise FormatError(f"{where}: Integer {value} outside the signed 64-bit range")
            return value
    elif rtype is ResourceType.UNSIGNED_INTEGER:
        if isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value <= UINT64_MAX:
                raise FormatError(f"{where}: Unsigned Integer {value} outside 0..2^64-1")
            return value
    elif rtype is ResourceType.FLOAT:
        if isinstance(value, float):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            as_float = float(value)
            if int(as_float) != value:
                raise FormatError(f"{where}: Float {value} is not exactly representable")
            return as_float
    elif rtype is ResourceType.BOOLEAN:
        if isinstance(value, bool):
            return value
    elif rtype in (ResourceType.STRING, ResourceType.CORELNK):
        if isinstance(value, str):
            return value
    elif rtype is ResourceType.OPAQUE:
        if isinstance(value, bytes):
            return value
        if isinstance(value, bytearray | memoryview):
            return bytes(value)
    elif rtype is ResourceType.TIME:
        if isinstance(value, datetime.datetime):
            epoch_seconds(value, where)
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return from_epoch(value, where)
    elif rtype is ResourceType.OBJLNK:
        if isinstance(value, ObjectLink):
            return value
        if isinstance(value, str):
            try:
                return ObjectLink.parse(value)
            except ValueError as exc:
                raise FormatError(f"{where}: {exc}") from None
    else:
        raise FormatError(f"{where}: resources of type {rtype.value} carry no value")
    raise FormatError(f"{where}: {type(value).__name__} value {value!r} is not a {rtype.value}")


def parse_objlnk(text: str, where: object) -> ObjectLink:
    try:
        return ObjectLink.parse(text)
    except ValueError as exc:
        raise FormatError(f"{where}: {exc}") from None

"""The one policy for typing resource values: which Python value each LwM2M type holds.

Every role and every codec types values through this module, so a value is
accepted or refused by the same rule whether it came from a TLV payload, a
client application, a REST body or a command line.

Rule 1: a resource type holds one Python type (the table of
:mod:`lwm2m.model.nodes`); :func:`check_type` says whether a value already is
that, without converting anything.

Rule 2: conversions are lossless only (:func:`normalise`). An ``int`` is a
Float when ``float`` represents it exactly; an integral ``float`` (``2.0``) is
an Integer; ``0``/``1`` are a Boolean (TLV and Text carry Boolean as 0/1);
epoch seconds are a Time; ``"3:0"`` is an Objlnk; a ``bytearray`` is Opaque.
``1.5`` never becomes an Integer, ``2`` never a Boolean, ``"1"`` never a
number (text goes through :func:`from_text`, which says how it reads text).

Rule 3, the LwM2M bounds (TS Core, Appendix C): Integer is signed 64-bit,
Unsigned Integer 0..2^64-1, Time is timezone-aware.

Rule 4, Float: the spec's Float is an IEEE 754 binary32/binary64 value, so
NaN and the infinities are Float values that binary formats (TLV, CBOR,
SenML CBOR) carry and that a device may report; codecs relay them
(:func:`normalise`). A value *given* to a resource (an application's set, a
Write a client stores, text a user typed, a value checked against its
definition) must be finite (:func:`coerce`, :func:`from_text`,
:func:`lwm2m.model.value_ranges.check_value`): whoever stores it must be able
to serve it in every format, and Text, LwM2M JSON and SenML JSON cannot carry
NaN or infinity.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import math
import re

from lwm2m.model.nodes import Value
from lwm2m.model.types import ObjectLink, ResourceType

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


class ValueTypeError(ValueError):
    """A value that does not fit the resource's type."""


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
    raise ValueTypeError(f"unsupported value type {type(value).__name__}")


def check_type(value: object, rtype: ResourceType, where: str = "value") -> None:
    """Raise :class:`ValueTypeError` unless ``value`` already is what ``rtype`` holds (rule 1)."""
    if rtype is ResourceType.NONE:
        raise _no_value(where)
    if rtype in (ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER):
        if not _is_int(value):
            raise _expected(where, rtype, value)
        _check_bounds(value, rtype, where)  # type: ignore[arg-type]
        return
    if rtype is ResourceType.FLOAT:
        ok = isinstance(value, float) or _is_int(value)
    elif rtype is ResourceType.TIME:
        if not isinstance(value, datetime.datetime):
            raise _expected(where, rtype, value)
        _check_aware(value, where)
        return
    else:
        ok = isinstance(value, _PYTHON_TYPE[rtype])
    if not ok:
        raise _expected(where, rtype, value)


def normalise(value: object, rtype: ResourceType, where: str = "value") -> Value:
    """``value`` as the Python type ``rtype`` holds, by lossless conversion only (rule 2).

    Non-finite Floats pass (rule 4): this is what codecs use to relay values.
    """
    if rtype is ResourceType.NONE:
        raise _no_value(where)
    converted = _CONVERT[rtype](value, where)
    if converted is None:
        raise ValueTypeError(
            f"{where}: {type(value).__name__} value {value!r} is not a {rtype.value}"[:300]
        )
    return converted


def coerce(value: object, rtype: ResourceType | None, where: str = "value") -> Value:
    """A value given to a resource of type ``rtype`` (``None``: untyped), or :class:`ValueTypeError`.

    :func:`normalise`, and a Float must be finite (rule 4).
    """
    if rtype is None or rtype is ResourceType.NONE:
        if isinstance(value, _VALUE_TYPES):
            return value
        raise ValueTypeError(f"{where}: {type(value).__name__} is not a resource value")
    result = normalise(value, rtype, where)
    if isinstance(result, float) and not math.isfinite(result):
        raise ValueTypeError(f"{where}: {result!r} is not a finite Float")
    return result


def check_finite(value: object, where: str = "value") -> None:
    """Rule 4 alone: refuse a non-finite Float given to a resource."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueTypeError(f"{where}: {value!r} is not a finite Float")


def from_text(text: str, rtype: ResourceType) -> Value:
    """The value ``text`` denotes for a resource of type ``rtype`` (CLI, web forms, REST strings).

    The whole text must denote the value (``"12abc"`` is no Integer):

    ==================  ======================================================
    String, Corelnk     the text itself
    Integer             decimal, optional sign, ``_`` separators; signed 64-bit
    Unsigned Integer    decimal, 0 to 2**64-1
    Float               Python float syntax; ``nan``/``inf`` refused (rule 4)
    Boolean             ``true``/``false``/``1``/``0`` (any case)
    Time                epoch seconds (``1700000000``) or ISO-8601
                        (``2024-01-31T12:00:00Z``; no zone means UTC)
    Objlnk              ``OBJECT:INSTANCE``, e.g. ``3:0``
    Opaque              ``hex:0a0b`` / ``0x0a0b`` / ``base64:CgsM`` / ``b64:…``;
                        without a prefix: hex if the text is an even number of
                        hex digits, otherwise strict base64
    None (executable)   refused: executables carry no value
    ==================  ======================================================

    Surrounding white space is ignored except for String and Corelnk.
    Raises :class:`ValueTypeError` with the reason.
    """
    if not isinstance(text, str):
        raise ValueTypeError(f"expected text, got {type(text).__name__}")
    match rtype:
        case ResourceType.STRING | ResourceType.CORELNK:
            return text
        case ResourceType.INTEGER | ResourceType.UNSIGNED_INTEGER:
            return _parse_int(text, rtype)
        case ResourceType.FLOAT:
            return _parse_float(text)
        case ResourceType.BOOLEAN:
            word = text.strip().lower()
            if word in ("true", "1"):
                return True
            if word in ("false", "0"):
                return False
            raise ValueTypeError(f"{text!r} is not a boolean (true/false/1/0)")
        case ResourceType.TIME:
            return _parse_time(text)
        case ResourceType.OBJLNK:
            try:
                return ObjectLink.parse(text.strip())
            except ValueError as exc:
                raise ValueTypeError(str(exc)) from None
        case ResourceType.OPAQUE:
            return _parse_opaque(text)
        case ResourceType.NONE:
            raise _no_value("text")
    raise ValueTypeError(f"unknown resource type {rtype!r}")  # pragma: no cover


def to_text(value: Value) -> str:
    """Text for a value, in a form :func:`from_text` reads back.

    Booleans ``true``/``false``, Time as ISO-8601 UTC, Opaque as ``hex:…``,
    Objlnk as ``3:0``, Float by ``repr`` (round-trips exactly).
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return "hex:" + value.hex()
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, float):
        return repr(value)
    return str(value)


def from_epoch(seconds: int | float, where: str = "value") -> datetime.datetime:
    """A UTC Time from epoch seconds; out-of-range or non-finite seconds are refused."""
    if isinstance(seconds, float) and not math.isfinite(seconds):
        raise ValueTypeError(f"{where}: Time value {seconds} is not finite")
    try:
        return EPOCH + datetime.timedelta(seconds=seconds)
    except (OverflowError, ValueError):
        raise ValueTypeError(f"{where}: Time value {seconds} out of range") from None


def epoch_seconds(value: datetime.datetime, where: str = "value") -> int:
    """Whole seconds since the epoch (LwM2M Time has one-second resolution)."""
    _check_aware(value, where)
    delta = value - EPOCH
    return delta.days * 86400 + delta.seconds


# Private

_VALUE_TYPES = (str, int, float, bool, bytes, datetime.datetime, ObjectLink)
_PYTHON_TYPE: dict[ResourceType, type | tuple[type, ...]] = {
    ResourceType.STRING: str,
    ResourceType.CORELNK: str,
    ResourceType.BOOLEAN: bool,
    ResourceType.OPAQUE: bytes,
    ResourceType.OBJLNK: ObjectLink,
}
_INT_TEXT = re.compile(r"[-+]?[0-9]+")
_HEX_TEXT = re.compile(r"(?:[0-9A-Fa-f]{2})*")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _expected(where: str, rtype: ResourceType, value: object) -> ValueTypeError:
    return ValueTypeError(
        f"{where}: expected a {rtype.value} value, got {type(value).__name__} {value!r}"[:300]
    )


def _no_value(where: str) -> ValueTypeError:
    return ValueTypeError(f"{where}: an executable resource (type None) carries no value")


def _check_bounds(value: int, rtype: ResourceType, where: str) -> None:
    if rtype is ResourceType.INTEGER and not INT64_MIN <= value <= INT64_MAX:
        raise ValueTypeError(f"{where}: {value} is outside the signed 64-bit Integer range")
    if rtype is ResourceType.UNSIGNED_INTEGER and not 0 <= value <= UINT64_MAX:
        raise ValueTypeError(f"{where}: {value} is not an Unsigned Integer (outside 0..2^64-1)")


def _check_aware(value: datetime.datetime, where: str) -> None:
    if value.utcoffset() is None:
        raise ValueTypeError(f"{where}: Time value {value!r} has no time zone")


def _to_integer(value: object, where: str, rtype: ResourceType) -> int | None:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not _is_int(value):
        return None
    _check_bounds(value, rtype, where)  # type: ignore[arg-type]
    return value  # type: ignore[return-value]


def _to_float(value: object, where: str) -> float | None:
    if isinstance(value, float):
        return value
    if _is_int(value):
        as_float = float(value)  # type: ignore[arg-type]
        if not math.isfinite(as_float) or int(as_float) != value:
            raise ValueTypeError(f"{where}: Float {value} is not exactly representable")
        return as_float
    return None


def _to_boolean(value: object, where: str) -> bool | None:
    if isinstance(value, bool):
        return value
    if _is_int(value) and value in (0, 1):
        return bool(value)
    return None


def _to_time(value: object, where: str) -> datetime.datetime | None:
    if isinstance(value, datetime.datetime):
        _check_aware(value, where)
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return from_epoch(value, where)
    return None


def _to_objlnk(value: object, where: str) -> ObjectLink | None:
    if isinstance(value, ObjectLink):
        return value
    if isinstance(value, str):
        try:
            return ObjectLink.parse(value)
        except ValueError as exc:
            raise ValueTypeError(f"{where}: {exc}") from None
    return None


def _to_opaque(value: object, where: str) -> bytes | None:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return None


def _to_string(value: object, where: str) -> str | None:
    return value if isinstance(value, str) else None


_CONVERT = {
    ResourceType.STRING: _to_string,
    ResourceType.CORELNK: _to_string,
    ResourceType.INTEGER: lambda v, w: _to_integer(v, w, ResourceType.INTEGER),
    ResourceType.UNSIGNED_INTEGER: lambda v, w: _to_integer(v, w, ResourceType.UNSIGNED_INTEGER),
    ResourceType.FLOAT: _to_float,
    ResourceType.BOOLEAN: _to_boolean,
    ResourceType.TIME: _to_time,
    ResourceType.OBJLNK: _to_objlnk,
    ResourceType.OPAQUE: _to_opaque,
}


def _parse_int(text: str, rtype: ResourceType) -> int:
    body = text.strip().replace("_", "")
    if not _INT_TEXT.fullmatch(body) or len(body) > 21:
        raise ValueTypeError(f"{text!r} is not a decimal integer")
    value = int(body)
    _check_bounds(value, rtype, repr(text))
    return value


def _parse_float(text: str) -> float:
    body = text.strip()
    if len(body) > 400:
        raise ValueTypeError(f"{body[:40]!r}…: too long for a number")
    try:
        number = float(body)
    except ValueError:
        raise ValueTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(number):
        raise ValueTypeError(f"{text!r} is not a finite number")
    return number


def _parse_time(text: str) -> datetime.datetime:
    body = text.strip()
    if _INT_TEXT.fullmatch(body) and len(body) <= 12:
        try:
            return datetime.datetime.fromtimestamp(int(body), datetime.UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueTypeError(f"{text!r}: epoch seconds out of range") from None
    try:
        parsed = datetime.datetime.fromisoformat(body)
    except ValueError:
        raise ValueTypeError(
            f"{text!r} is neither epoch seconds nor an ISO-8601 date-time"
        ) from None
    if parsed.utcoffset() is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.astimezone(datetime.UTC)


def _parse_opaque(text: str) -> bytes:
    body = text.strip()
    lower = body.lower()
    for prefix in ("hex:", "0x"):
        if lower.startswith(prefix):
            hex_body = "".join(body[len(prefix) :].split())
            if not _HEX_TEXT.fullmatch(hex_body):
                raise ValueTypeError(f"{text!r}: not an even number of hex digits")
            return bytes.fromhex(hex_body)
    for prefix in ("base64:", "b64:"):
        if lower.startswith(prefix):
            return _b64(body[len(prefix) :], text)
    compact = "".join(body.split())
    if _HEX_TEXT.fullmatch(compact):
        return bytes.fromhex(compact)
    return _b64(body, text)


def _b64(body: str, text: str) -> bytes:
    try:
        return base64.b64decode("".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueTypeError(f"{text!r} is neither hex nor base64") from None

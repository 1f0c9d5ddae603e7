"""Checking resource values against their definition, and reading them from text.

:func:`check_value` answers "may this value be stored in that resource?"
(Python type, 64-bit bounds, and the DDF *RangeEnumeration*).
:func:`coerce_from_text` turns what a user typed (CLI, web form) into the
Python value the node model carries; :func:`value_to_text` is its inverse.

RangeEnumeration texts understood by :func:`parse_range` (anything else is
free text and is not enforced):

* ``0..100``, ``0-100``, ``-40..85``, ``0.0..1.0``: numeric interval;
* ``5``: a single value;
* ``0..3, 7`` / ``16,32,48``: a union of values and intervals;
* ``1..255 bytes``: lengths in bytes (for String/Opaque the numbers are
  *always* lengths: UTF-8 bytes of a string, bytes of an opaque value);
* ``U, UQ, S``: for a String resource, the allowed strings.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from lwm2m.model.definitions import ResourceDef
from lwm2m.model.nodes import Value
from lwm2m.model.types import ObjectLink, ResourceType

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
UINT64_MAX = 2**64 - 1

_NUM = r"[-+]?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"
_INTERVAL = re.compile(rf"({_NUM})\s*(?:\.\.|-|\u2013|to)\s*({_NUM})")
_SINGLE = re.compile(_NUM)
_INT_TEXT = re.compile(r"[-+]?[0-9]+")
_HEX_TEXT = re.compile(r"(?:[0-9A-Fa-f]{2})*")
_TOKEN = re.compile(r"[A-Za-z0-9_.+/:-]+")
_LENGTH_SUFFIX = re.compile(r"\s*(?:bytes?|octets?|B|characters?|chars?)\s*$")
_LENGTH_TYPES = (ResourceType.STRING, ResourceType.OPAQUE, ResourceType.CORELNK)
_NUMERIC_TYPES = (ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER, ResourceType.FLOAT)


@dataclass(frozen=True, slots=True)
class ValueRange:
    """A machine-readable RangeEnumeration.

    ``intervals`` bound the value, or its length in bytes when ``length``;
    ``choices`` are allowed strings. A value passes when it satisfies any
    interval or equals any choice.
    """

    text: str
    intervals: tuple[tuple[float, float], ...] = ()
    choices: tuple[str, ...] = ()
    length: bool = False

    def describe(self) -> str:
        parts = [_fmt_interval(lo, hi) for lo, hi in self.intervals]
        parts.extend(repr(c) for c in self.choices)
        return ", ".join(parts)


def _fmt_num(x: float) -> str:
    return str(int(x)) if x == int(x) else repr(x)


def _fmt_interval(lo: float, hi: float) -> str:
    return _fmt_num(lo) if lo == hi else f"{_fmt_num(lo)}..{_fmt_num(hi)}"


@functools.lru_cache(maxsize=2048)
def parse_range(text: str, type: ResourceType) -> ValueRange | None:
    """The constraint a RangeEnumeration text states, or ``None`` if it states none we know.

    Free text (``"The possible values are listed in 5.3.1.1"``) and empty
    text give ``None``: such resources are not range-checked.
    """
    body = text.strip()
    if not body or len(body) > 1000:
        return None
    if type in (ResourceType.BOOLEAN, ResourceType.NONE, ResourceType.TIME):
        return None
    length = type in _LENGTH_TYPES
    suffix = _LENGTH_SUFFIX.search(body)
    if suffix is not None:
        if type not in _LENGTH_TYPES:
            return None
        body = body[: suffix.start()].strip()
        length = True
    intervals: list[tuple[float, float]] = []
    choices: list[str] = []
    for raw in re.split(r"\s*[,;|]\s*", body):
        if not raw:
            return None
        if (m := _INTERVAL.fullmatch(raw)) is not None:
            lo, hi = _number(m.group(1)), _number(m.group(2))
            if lo > hi:
                return None
            intervals.append((lo, hi))
        elif _SINGLE.fullmatch(raw):
            intervals.append((_number(raw), _number(raw)))
        elif type is ResourceType.STRING and _TOKEN.fullmatch(raw):
            choices.append(raw)
        else:
            return None
    if choices and intervals:
        return None  # "1, U, 3..4": no single meaning
    if type not in _NUMERIC_TYPES and not length and intervals:
        return None
    if choices:
        length = False
    return ValueRange(text, tuple(intervals), tuple(choices), length)


def _type_error(what: str, rtype: ResourceType, value: object) -> ValueError:
    return ValueError(
        f"{what}: expected a {rtype.value} value, got {type(value).__name__} {value!r}"[:300]
    )


def check_type(rtype: ResourceType, value: object, what: str = "value") -> None:
    """Raise :class:`ValueError` unless ``value`` is a valid Python value for ``rtype``."""
    if rtype is ResourceType.NONE:
        raise ValueError(f"{what}: an executable resource carries no value")
    if rtype in (ResourceType.STRING, ResourceType.CORELNK):
        ok = isinstance(value, str)
    elif rtype in (ResourceType.INTEGER, ResourceType.UNSIGNED_INTEGER):
        if not isinstance(value, int) or isinstance(value, bool):
            raise _type_error(what, rtype, value)
        if rtype is ResourceType.INTEGER and not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"{what}: {value} does not fit a signed 64-bit Integer")
        if rtype is ResourceType.UNSIGNED_INTEGER and not 0 <= value <= UINT64_MAX:
            raise ValueError(f"{what}: {value} is not an Unsigned Integer 0-{UINT64_MAX}")
        return
    elif rtype is ResourceType.FLOAT:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise _type_error(what, rtype, value)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{what}: {value!r} is not a finite Float")
        return
    elif rtype is ResourceType.BOOLEAN:
        ok = isinstance(value, bool)
    elif rtype is ResourceType.OPAQUE:
        ok = isinstance(value, bytes)
    elif rtype is ResourceType.TIME:
        if not isinstance(value, datetime.datetime):
            raise _type_error(what, rtype, value)
        if value.utcoffset() is None:
            raise ValueError(f"{what}: Time value {value!r} has no timezone")
        return
    else:
        ok = isinstance(value, ObjectLink)
    if not ok:
        raise _type_error(what, rtype, value)


def _number(text: str) -> float:
    """An exact int for integer text (no float rounding of 64-bit bounds), else a float."""
    if _INT_TEXT.fullmatch(text) and len(text) <= 40:
        return int(text)
    return float(text)


def check_value(resource: ResourceDef, value: object) -> None:
    """Raise :class:`ValueError` unless ``value`` fits ``resource`` (type, then range).

    ``value`` is one value: a single resource's value or one instance of a
    multiple resource. The message names the resource and the violated bound.
    """
    what = f"resource {resource.id} ({resource.name})"
    check_type(resource.type, value, what)
    spec = parse_range(resource.range, resource.type)
    if spec is None:
        if resource.enumeration and isinstance(value, str) and value not in resource.enumeration:
            raise ValueError(f"{what}: {value!r} is not one of {', '.join(resource.enumeration)}")
        return
    if spec.choices:
        if value not in spec.choices:
            raise ValueError(f"{what}: {value!r} is not one of {spec.describe()}")
        return
    measured: float
    if isinstance(value, str):
        measured = len(value.encode("utf-8"))
        label = f"length {measured} bytes"
    elif isinstance(value, bytes):
        measured = len(value)
        label = f"length {measured} bytes"
    elif isinstance(value, int | float):
        measured = value
        label = repr(value)
    else:  # pragma: no cover - parse_range gives no intervals for other types
        return
    if not any(lo <= measured <= hi for lo, hi in spec.intervals):
        bound = "length" if spec.length else "value"
        raise ValueError(f"{what}: {label} outside the allowed {bound} {spec.describe()}")


def check_values(resource: ResourceDef, value: Value | Mapping[int, Value]) -> None:
    """Like :func:`check_value`, for a whole resource: a value, or instances when multiple."""
    if resource.multiple:
        if not isinstance(value, Mapping):
            raise ValueError(
                f"resource {resource.id} ({resource.name}) is multiple: expected instances"
            )
        for v in value.values():
            check_value(resource, v)
    else:
        if isinstance(value, Mapping):
            raise ValueError(
                f"resource {resource.id} ({resource.name}) is single: expected one value"
            )
        check_value(resource, value)


def _parse_int(text: str, rtype: ResourceType) -> int:
    body = text.strip().replace("_", "")
    if not _INT_TEXT.fullmatch(body) or len(body) > 21:
        raise ValueError(f"{text!r} is not a decimal integer")
    value = int(body)
    check_type(rtype, value, f"{text!r}")
    return value


def _parse_time(text: str) -> datetime.datetime:
    body = text.strip()
    if _INT_TEXT.fullmatch(body) and len(body) <= 12:
        try:
            return datetime.datetime.fromtimestamp(int(body), datetime.UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"{text!r}: epoch seconds out of range") from None
    try:
        parsed = datetime.datetime.fromisoformat(body)
    except ValueError:
        raise ValueError(f"{text!r} is neither epoch seconds nor an ISO-8601 date-time") from None
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
                raise ValueError(f"{text!r}: not an even number of hex digits")
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
        raise ValueError(f"{text!r} is neither hex nor base64") from None


def coerce_from_text(rtype: ResourceType, text: str) -> Value:
    """The value ``text`` denotes for a resource of type ``rtype``.

    ==================  ======================================================
    String, Corelnk     the text itself
    Integer             decimal, optional sign, ``_`` separators; signed 64-bit
    Unsigned Integer    decimal, 0 to 2**64-1
    Float               Python float syntax; ``nan``/``inf`` refused
    Boolean             ``true``/``false``/``1``/``0`` (any case)
    Time                epoch seconds (``1700000000``) or ISO-8601
                        (``2024-01-31T12:00:00Z``; no zone means UTC)
    Objlnk              ``OBJECT:INSTANCE``, e.g. ``3:0``
    Opaque              ``hex:0a0b`` / ``0x0a0b`` / ``base64:CgsM`` / ``b64:…``;
                        without a prefix: hex if the text is an even number of
                        hex digits, otherwise strict base64
    None (executable)   refused: executables carry no value
    ==================  ======================================================

    Raises :class:`ValueError` with the reason.
    """
    if not isinstance(text, str):
        raise ValueError(f"expected text, got {type(text).__name__}")
    match rtype:
        case ResourceType.STRING | ResourceType.CORELNK:
            return text
        case ResourceType.INTEGER | ResourceType.UNSIGNED_INTEGER:
            return _parse_int(text, rtype)
        case ResourceType.FLOAT:
            body = text.strip()
            if len(body) > 400:
                raise ValueError(f"{body[:40]!r}…: too long for a number")
            try:
                number = float(body)
            except ValueError:
                raise ValueError(f"{text!r} is not a number") from None
            if not math.isfinite(number):
                raise ValueError(f"{text!r} is not a finite number")
            return number
        case ResourceType.BOOLEAN:
            word = text.strip().lower()
            if word in ("true", "1"):
                return True
            if word in ("false", "0"):
                return False
            raise ValueError(f"{text!r} is not a boolean (true/false/1/0)")
        case ResourceType.TIME:
            return _parse_time(text)
        case ResourceType.OBJLNK:
            return ObjectLink.parse(text.strip())
        case ResourceType.OPAQUE:
            return _parse_opaque(text)
        case ResourceType.NONE:
            raise ValueError("an executable resource carries no value")
    raise ValueError(f"unknown resource type {rtype!r}")  # pragma: no cover


def value_to_text(value: Value) -> str:
    """Text for a value, in a form :func:`coerce_from_text` reads back.

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

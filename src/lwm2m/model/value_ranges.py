"""A resource's RangeEnumeration, and whether a value fits its definition.

:func:`check_value` answers "may this value be stored in that resource?":
its type (:mod:`lwm2m.model.value_typing`, Float finite), then the DDF
*RangeEnumeration*.

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

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass

from lwm2m.model.definitions import ResourceDef
from lwm2m.model.nodes import Value
from lwm2m.model.types import ResourceType
from lwm2m.model.value_typing import check_finite, check_type

_NUM = r"[-+]?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"
_INTERVAL = re.compile(rf"({_NUM})\s*(?:\.\.|-|\u2013|to)\s*({_NUM})")
_SINGLE = re.compile(_NUM)
_INT_TEXT = re.compile(r"[-+]?[0-9]+")
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
    check_type(value, resource.type, what)
    check_finite(value, what)
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

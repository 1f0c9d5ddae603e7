"""Notification attributes (Write-Attributes / Discover): pmin, pmax, gt, lt, st, epmin, epmax.

They travel as Uri-Query options (``pmin=10``) in Write-Attributes and as link
parameters in Discover answers. A key without a value (``?pmin``) removes the
attribute, so a parsed update keeps "remove" apart from "not mentioned".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields, replace

INTEGER_ATTRIBUTES = ("pmin", "pmax", "epmin", "epmax")
FLOAT_ATTRIBUTES = ("gt", "lt", "st")
#: LwM2M 1.1/1.2 attributes we carry but do not interpret here.
OTHER_INTEGER_ATTRIBUTES = ("edge", "con", "hqmax")
ALL_ATTRIBUTES = INTEGER_ATTRIBUTES + FLOAT_ATTRIBUTES + OTHER_INTEGER_ATTRIBUTES


class AttributeError_(ValueError):
    """A malformed attribute; named with a trailing underscore to avoid the builtin."""


@dataclass(frozen=True, slots=True)
class Attributes:
    """Attributes attached to one level (object, instance or resource); None = not set."""

    pmin: int | None = None
    pmax: int | None = None
    gt: float | None = None
    lt: float | None = None
    st: float | None = None
    epmin: int | None = None
    epmax: int | None = None
    edge: int | None = None
    con: int | None = None
    hqmax: int | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))

    def items(self) -> list[tuple[str, int | float]]:
        return [(f.name, v) for f in fields(self) if (v := getattr(self, f.name)) is not None]

    def inherit(self, parent: Attributes) -> Attributes:
        """Values set here win; the rest come from ``parent`` (object -> instance -> resource)."""
        return Attributes(
            **{
                f.name: v if (v := getattr(self, f.name)) is not None else getattr(parent, f.name)
                for f in fields(self)
            }
        )

    def apply(self, update: AttributeUpdate) -> Attributes:
        changes: dict[str, object] = dict(update.set)
        for name in update.remove:
            changes[name] = None
        return replace(self, **changes)  # type: ignore[arg-type]

    def validate(self) -> None:
        """The consistency rules of the spec (5.1.2 / 1.1 Table 7.3.2-1)."""
        if self.pmin is not None and self.pmax is not None and self.pmax < self.pmin:
            raise AttributeError_(f"pmax ({self.pmax}) is less than pmin ({self.pmin})")
        if self.epmin is not None and self.epmax is not None and self.epmax < self.epmin:
            raise AttributeError_(f"epmax ({self.epmax}) is less than epmin ({self.epmin})")
        if self.lt is not None and self.gt is not None:
            if self.lt >= self.gt:
                raise AttributeError_(f"lt ({self.lt}) must be less than gt ({self.gt})")
            if self.st is not None and self.lt + 2 * self.st >= self.gt:
                raise AttributeError_(
                    f"lt + 2*st ({self.lt} + 2*{self.st}) must be less than gt ({self.gt})"
                )
        if self.st is not None and self.st < 0:
            raise AttributeError_(f"st ({self.st}) must not be negative")

    def to_query(self) -> tuple[str, ...]:
        return tuple(f"{name}={_fmt(value)}" for name, value in self.items())


@dataclass(frozen=True, slots=True)
class AttributeUpdate:
    """What a Write-Attributes asks: values to set and attributes to remove."""

    set: tuple[tuple[str, int | float], ...] = ()
    remove: tuple[str, ...] = ()

    def to_query(self) -> tuple[str, ...]:
        return tuple(f"{k}={_fmt(v)}" for k, v in self.set) + self.remove

    def is_empty(self) -> bool:
        return not self.set and not self.remove


def _fmt(value: int | float) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def _parse_value(name: str, text: str) -> int | float:
    if name in FLOAT_ATTRIBUTES:
        try:
            value = float(text)
        except ValueError:
            raise AttributeError_(f"{name}={text!r} is not a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise AttributeError_(f"{name}={text!r} is not a finite number")
        return value
    if not text.isascii() or not text.isdigit():
        raise AttributeError_(f"{name}={text!r} is not a non-negative integer")
    number = int(text)
    if number > 0xFFFFFFFF:
        raise AttributeError_(f"{name}={text!r} is too large")
    return number


def parse_attribute_query(query: Iterable[str]) -> AttributeUpdate:
    """Parse Write-Attributes Uri-Query options; unknown or repeated attributes are errors."""
    seen: set[str] = set()
    to_set: list[tuple[str, int | float]] = []
    to_remove: list[str] = []
    for item in query:
        name, has_value, text = item.partition("=")
        if name not in ALL_ATTRIBUTES:
            raise AttributeError_(f"unknown attribute {name!r}")
        if name in seen:
            raise AttributeError_(f"attribute {name!r} given twice")
        seen.add(name)
        if not has_value:
            to_remove.append(name)
        else:
            to_set.append((name, _parse_value(name, text)))
    return AttributeUpdate(tuple(to_set), tuple(to_remove))


def parse_link_attributes(params: Iterable[tuple[str, str | None]]) -> Attributes:
    """Attributes from Discover link parameters; other parameters (dim, ver, ...) are skipped."""
    values: dict[str, int | float] = {}
    for name, text in params:
        if name in ALL_ATTRIBUTES and text is not None:
            values[name] = _parse_value(name, text)
    return Attributes(**values)  # type: ignore[arg-type]

"""LwM2M paths: ``/o``, ``/o/i``, ``/o/i/r`` and ``/o/i/r/ri``.

Object and resource IDs are 16-bit. The seeds make instance and resource
instance IDs 8-bit; published LwM2M 1.0.2/1.1 allows 0-65534 (65535 is
reserved as "no ID"). Real devices use the wider range, so we accept it
(docs/compliance.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import total_ordering

MAX_OBJECT_ID = 65535
MAX_INSTANCE_ID = 65534
MAX_RESOURCE_ID = 65535
MAX_RESOURCE_INSTANCE_ID = 65534


class PathError(ValueError):
    """A path string or ID that is not a valid LwM2M path."""


_LIMITS = (
    ("object", MAX_OBJECT_ID),
    ("instance", MAX_INSTANCE_ID),
    ("resource", MAX_RESOURCE_ID),
    ("resource instance", MAX_RESOURCE_INSTANCE_ID),
)


@total_ordering
@dataclass(frozen=True, slots=True)
class Path:
    """A node address; ``Path()`` is the root ``/``."""

    object_id: int | None = None
    instance_id: int | None = None
    resource_id: int | None = None
    resource_instance_id: int | None = None

    def __post_init__(self) -> None:
        ids = self.ids_with_gaps
        seen_none = False
        for (what, limit), value in zip(_LIMITS, ids, strict=True):
            if value is None:
                seen_none = True
                continue
            if seen_none:
                raise PathError(f"{what} ID given without the IDs above it")
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
                raise PathError(f"{what} ID {value!r} out of range 0-{limit}")

    @property
    def ids_with_gaps(self) -> tuple[int | None, int | None, int | None, int | None]:
        return (self.object_id, self.instance_id, self.resource_id, self.resource_instance_id)

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(i for i in self.ids_with_gaps if i is not None)

    @classmethod
    def of(cls, *ids: int) -> Path:
        if len(ids) > 4:
            raise PathError(f"a path has at most 4 IDs, got {len(ids)}")
        return cls(*ids)

    @classmethod
    def parse(cls, text: str) -> Path:
        """Parse ``/3/0/1`` (leading slash optional, no trailing slash except root)."""
        if not isinstance(text, str):
            raise PathError(f"path must be a string, got {type(text).__name__}")
        body = text[1:] if text.startswith("/") else text
        if body == "":
            return cls()
        parts = body.split("/")
        if len(parts) > 4:
            raise PathError(f"{text!r}: a path has at most 4 segments")
        ids: list[int] = []
        for (what, limit), part in zip(_LIMITS, parts, strict=False):
            if not part.isascii() or not part.isdigit():
                raise PathError(f"{text!r}: segment {part!r} is not a decimal ID")
            if len(part) > 1 and part[0] == "0":
                raise PathError(f"{text!r}: segment {part!r} has a leading zero")
            # Checked before int() so that a huge digit string cannot hit
            # Python's int-conversion limit (a ValueError, not a PathError).
            if len(part) > len(str(limit)):
                raise PathError(f"{text!r}: {what} ID {part} out of range 0-{limit}")
            ids.append(int(part))
        return cls.of(*ids)

    @classmethod
    def from_segments(cls, segments: tuple[str, ...] | list[str]) -> Path:
        """From CoAP Uri-Path segments (an empty trailing segment is ignored)."""
        segs = list(segments)
        if segs and segs[-1] == "":
            segs.pop()
        for seg in segs:
            # A Uri-Path option is one segment: "3/0" in one option is not /3/0.
            if not isinstance(seg, str) or seg == "" or "/" in seg:
                raise PathError(f"Uri-Path segment {seg!r} is not a decimal ID")
        return cls.parse("/" + "/".join(segs))

    def __str__(self) -> str:
        return "/" + "/".join(str(i) for i in self.ids)

    def __repr__(self) -> str:
        return f"Path({str(self)!r})"

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Path):
            return NotImplemented
        return self.ids < other.ids

    @property
    def depth(self) -> int:
        return len(self.ids)

    @property
    def is_root(self) -> bool:
        return self.object_id is None

    @property
    def is_object(self) -> bool:
        return self.depth == 1

    @property
    def is_instance(self) -> bool:
        return self.depth == 2

    @property
    def is_resource(self) -> bool:
        return self.depth == 3

    @property
    def is_resource_instance(self) -> bool:
        return self.depth == 4

    @property
    def parent(self) -> Path:
        if self.is_root:
            raise PathError("the root path has no parent")
        return Path.of(*self.ids[:-1])

    def child(self, child_id: int) -> Path:
        return Path.of(*self.ids, child_id)

    def startswith(self, prefix: Path) -> bool:
        """True when ``prefix`` is this path or one of its ancestors."""
        n = prefix.depth
        return self.ids[:n] == prefix.ids

    def segments(self) -> tuple[str, ...]:
        return tuple(str(i) for i in self.ids)

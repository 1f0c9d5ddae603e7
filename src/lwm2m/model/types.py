"""Resource data types and operations, in the words of the LwM2M specification."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ResourceType(enum.Enum):
    STRING = "String"
    INTEGER = "Integer"
    UNSIGNED_INTEGER = "Unsigned Integer"
    FLOAT = "Float"
    BOOLEAN = "Boolean"
    OPAQUE = "Opaque"
    TIME = "Time"
    OBJLNK = "Objlnk"
    CORELNK = "Corelnk"
    NONE = "None"

    @classmethod
    def parse(cls, text: str) -> ResourceType:
        norm = text.strip().lower().replace(" ", "").replace("_", "")
        for member in cls:
            if member.value.lower().replace(" ", "") == norm:
                return member
        if norm in ("unsignedint", "uint"):
            return cls.UNSIGNED_INTEGER
        if norm in ("int",):
            return cls.INTEGER
        if norm in ("bool",):
            return cls.BOOLEAN
        if norm in ("corelink",):  # Leshan's name (ResourceModel.Type.CORELINK)
            return cls.CORELNK
        if norm in ("",):
            return cls.NONE
        raise ValueError(f"unknown resource type {text!r}")


class Operations(enum.Enum):
    """What a resource allows; ``NONE`` is used by Executable-less, unreadable resources."""

    NONE = ""
    R = "R"
    W = "W"
    RW = "RW"
    E = "E"

    @property
    def readable(self) -> bool:
        return "R" in self.value

    @property
    def writable(self) -> bool:
        return "W" in self.value

    @property
    def executable(self) -> bool:
        return self is Operations.E

    @classmethod
    def parse(cls, text: str) -> Operations:
        norm = text.strip().upper()
        if norm == "WR":
            norm = "RW"
        for member in cls:
            if member.value == norm:
                return member
        raise ValueError(f"unknown operations {text!r} (expected R, W, RW, E or empty)")


@dataclass(frozen=True, slots=True)
class ObjectLink:
    """An Objlnk value: a reference to ``/object_id/instance_id``."""

    object_id: int
    instance_id: int

    def __post_init__(self) -> None:
        for name, v in (("object", self.object_id), ("instance", self.instance_id)):
            if not 0 <= v <= 65535:
                raise ValueError(f"objlnk {name} ID {v} out of range 0-65535")

    def __str__(self) -> str:
        return f"{self.object_id}:{self.instance_id}"

    @classmethod
    def parse(cls, text: str) -> ObjectLink:
        parts = text.split(":")
        if len(parts) != 2 or not all(p.isascii() and p.isdigit() for p in parts):
            raise ValueError(f"objlnk {text!r} is not of the form OBJECT:INSTANCE")
        return cls(int(parts[0]), int(parts[1]))


#: Python type of a decoded value, by resource type: str, int, float, bool,
#: bytes, datetime (TIME, UTC-aware), ObjectLink, or str (CORELNK).

"""Object and resource definitions (what a DDF file or our core objects say)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from lwm2m.model.types import Operations, ResourceType


@dataclass(frozen=True, slots=True)
class ResourceDef:
    id: int
    name: str
    operations: Operations
    multiple: bool
    mandatory: bool
    type: ResourceType
    range: str = ""  # as written in the DDF: "0..100", "1..255 bytes", "" ...
    units: str = ""
    description: str = ""
    enumeration: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.id, int) or isinstance(self.id, bool) or not 0 <= self.id <= 65535:
            raise ValueError(f"resource ID {self.id!r} out of range 0-65535")


@dataclass(frozen=True, slots=True)
class ObjectDef:
    id: int
    name: str
    multiple: bool
    mandatory: bool
    resources: Mapping[int, ResourceDef] = field(default_factory=dict)
    version: str = "1.0"
    lwm2m_version: str = "1.0"
    urn: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.id, int) or isinstance(self.id, bool) or not 0 <= self.id <= 65535:
            raise ValueError(f"object ID {self.id!r} out of range 0-65535")
        for rid, res in self.resources.items():
            if res.id != rid:
                raise ValueError(f"object {self.id}: key {rid} holds resource {res.id}")
        object.__setattr__(
            self, "resources", MappingProxyType(dict(sorted(self.resources.items())))
        )

    @property
    def mandatory_resources(self) -> tuple[ResourceDef, ...]:
        """The resources every instance must have."""
        return tuple(r for r in self.resources.values() if r.mandatory)

    @classmethod
    def build(
        cls,
        id: int,
        name: str,
        *,
        multiple: bool,
        mandatory: bool,
        resources: Iterable[ResourceDef],
        version: str = "1.0",
        lwm2m_version: str = "1.0",
        urn: str = "",
        description: str = "",
    ) -> ObjectDef:
        by_id: dict[int, ResourceDef] = {}
        for res in resources:
            if res.id in by_id:
                raise ValueError(f"object {id}: duplicate resource ID {res.id}")
            by_id[res.id] = res
        return cls(
            id,
            name,
            multiple,
            mandatory,
            by_id,
            version,
            lwm2m_version,
            urn
            or f"urn:oma:lwm2m:{'oma' if id < 1024 else 'ext'}:{id}"
            + ("" if version == "1.0" else f":{version}"),
            description,
        )

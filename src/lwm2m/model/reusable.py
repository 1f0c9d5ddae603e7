"""Reusable resources: one definition shared by many objects (seed 002, 6.2.2).

OMNA assigns resource IDs 2048-26240 as *reusable*: an object may include
such a resource, and its definition "MUST be the same with the exception of
the Multiple Resource, Mandatory and Description fields". We keep each shared
definition once, here, build the IPSO objects from it, and let the DDF loader
compare what a file says against it (:func:`conflict`).

The table is ours (names, types, operations, ranges and units as registered
with OMNA), not a copy of any registry file.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

from lwm2m.model.definitions import ResourceDef
from lwm2m.model.types import Operations, ResourceType

#: The OMNA reusable resource ID range (inclusive).
REUSABLE_ID_MIN = 2048
REUSABLE_ID_MAX = 26240


def is_reusable_id(resource_id: int) -> bool:
    return REUSABLE_ID_MIN <= resource_id <= REUSABLE_ID_MAX


def _def(
    id: int,
    name: str,
    operations: Operations,
    type: ResourceType,
    description: str,
    *,
    range: str = "",
    units: str = "",
) -> ResourceDef:
    # Multiple/Mandatory are per object; the table holds the usual values
    # (single, optional) and :func:`reusable` overrides them.
    return ResourceDef(
        id=id,
        name=name,
        operations=operations,
        multiple=False,
        mandatory=False,
        type=type,
        range=range,
        units=units,
        description=description,
    )


_R, _RW, _E = Operations.R, Operations.RW, Operations.E
_T = ResourceType

_TABLE = (
    _def(5518, "Timestamp", _R, _T.TIME, "When the measurement was taken."),
    _def(5601, "Min Measured Value", _R, _T.FLOAT, "Lowest value measured since the last reset."),
    _def(5602, "Max Measured Value", _R, _T.FLOAT, "Highest value measured since the last reset."),
    _def(5603, "Min Range Value", _R, _T.FLOAT, "Lowest value the sensor can measure."),
    _def(5604, "Max Range Value", _R, _T.FLOAT, "Highest value the sensor can measure."),
    _def(
        5605,
        "Reset Min and Max Measured Values",
        _E,
        _T.NONE,
        "Resets Min and Max Measured Value to the current value.",
    ),
    _def(5700, "Sensor Value", _R, _T.FLOAT, "Last or current measured value."),
    _def(5701, "Sensor Units", _R, _T.STRING, "Measurement units of the sensor value."),
    _def(5706, "Colour", _RW, _T.STRING, "A colour, in a notation the object documents."),
    _def(5750, "Application Type", _RW, _T.STRING, "Free text naming what the object is used for."),
    _def(5805, "Cumulative active power", _R, _T.FLOAT, "Energy used since reset.", units="Wh"),
    _def(5820, "Power factor", _R, _T.FLOAT, "Power factor of the load."),
    _def(5850, "On/Off", _RW, _T.BOOLEAN, "On (true) or off (false)."),
    _def(
        5851, "Dimmer", _RW, _T.INTEGER, "Dimming level in percent.", range="0..100", units="/100"
    ),
    _def(
        5852,
        "On time",
        _RW,
        _T.INTEGER,
        "Seconds since last switched on; write 0 to reset.",
        units="s",
    ),
    _def(
        6042,
        "Measurement Quality Indicator",
        _R,
        _T.INTEGER,
        "How the measured value was obtained or why it is unreliable.",
        range="0..23",
    ),
    _def(
        6049,
        "Measurement Quality Level",
        _R,
        _T.INTEGER,
        "Quality of the measurement, 0 (worst) to 100 (best).",
        range="0..100",
    ),
    _def(
        6050,
        "Fractional Timestamp",
        _R,
        _T.FLOAT,
        "Sub-second part of the Timestamp resource.",
        range="0..1",
        units="s",
    ),
)

#: Reusable resource definitions by ID.
REUSABLE: Mapping[int, ResourceDef] = MappingProxyType({d.id: d for d in _TABLE})


def reusable(
    resource_id: int,
    *,
    multiple: bool = False,
    mandatory: bool = False,
    description: str | None = None,
) -> ResourceDef:
    """The shared definition of ``resource_id`` with this object's multiplicity/mandatory.

    Raises :class:`KeyError` for an ID not in :data:`REUSABLE`.
    """
    base = REUSABLE[resource_id]
    return dataclasses.replace(
        base,
        multiple=multiple,
        mandatory=mandatory,
        description=base.description if description is None else description,
    )


def conflict(resource: ResourceDef) -> str | None:
    """Why ``resource`` contradicts the shared definition of its ID, or ``None``.

    Only type and operations are compared: names, units and range texts vary
    in spelling between registry files without changing meaning.
    """
    base = REUSABLE.get(resource.id)
    if base is None:
        return None
    problems = []
    if resource.type is not base.type:
        problems.append(f"type {resource.type.value!r} (shared: {base.type.value!r})")
    if resource.operations is not base.operations:
        problems.append(
            f"operations {resource.operations.value!r} (shared: {base.operations.value!r})"
        )
    if not problems:
        return None
    return (
        f"reusable resource {resource.id} ({base.name}) redefined with different "
        + " and ".join(problems)
    )

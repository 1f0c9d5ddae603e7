"""Small model registries for the format tests (the core objects the tests need)."""

from __future__ import annotations

from lwm2m.model.definitions import ObjectDef, ResourceDef
from lwm2m.model.registry import ModelRegistry
from lwm2m.model.types import Operations, ResourceType

T = ResourceType


def _r(
    rid: int, name: str, rtype: ResourceType, *, multiple: bool = False, ops: str = "R"
) -> ResourceDef:
    return ResourceDef(rid, name, Operations.parse(ops), multiple, False, rtype)


DEVICE = ObjectDef.build(
    3,
    "Device",
    multiple=False,
    mandatory=True,
    resources=[
        _r(0, "Manufacturer", T.STRING),
        _r(1, "Model Number", T.STRING),
        _r(2, "Serial Number", T.STRING),
        _r(3, "Firmware Version", T.STRING),
        _r(4, "Reboot", T.NONE, ops="E"),
        _r(6, "Available Power Sources", T.INTEGER, multiple=True),
        _r(7, "Power Source Voltage", T.INTEGER, multiple=True),
        _r(8, "Power Source Current", T.INTEGER, multiple=True),
        _r(9, "Battery Level", T.INTEGER),
        _r(10, "Memory Free", T.INTEGER),
        _r(11, "Error Code", T.INTEGER, multiple=True),
        _r(13, "Current Time", T.TIME, ops="RW"),
        _r(14, "UTC Offset", T.STRING, ops="RW"),
        _r(15, "Timezone", T.STRING, ops="RW"),
        _r(16, "Supported Binding and Modes", T.STRING),
    ],
)

TEMPERATURE = ObjectDef.build(
    3303,
    "Temperature",
    multiple=True,
    mandatory=False,
    resources=[
        _r(5700, "Sensor Value", T.FLOAT),
        _r(5701, "Sensor Units", T.STRING),
        _r(5601, "Min Measured Value", T.FLOAT),
    ],
)

#: an object with one single and one multiple resource of every type
ALL_TYPES = ObjectDef.build(
    10250,
    "All Types",
    multiple=True,
    mandatory=False,
    resources=[
        _r(0, "String", T.STRING, ops="RW"),
        _r(1, "Integer", T.INTEGER, ops="RW"),
        _r(2, "Unsigned", T.UNSIGNED_INTEGER, ops="RW"),
        _r(3, "Float", T.FLOAT, ops="RW"),
        _r(4, "Boolean", T.BOOLEAN, ops="RW"),
        _r(5, "Opaque", T.OPAQUE, ops="RW"),
        _r(6, "Time", T.TIME, ops="RW"),
        _r(7, "Objlnk", T.OBJLNK, ops="RW"),
        _r(8, "Corelnk", T.CORELNK, ops="RW"),
        _r(10, "Strings", T.STRING, multiple=True, ops="RW"),
        _r(11, "Integers", T.INTEGER, multiple=True, ops="RW"),
        _r(12, "Unsigneds", T.UNSIGNED_INTEGER, multiple=True, ops="RW"),
        _r(13, "Floats", T.FLOAT, multiple=True, ops="RW"),
        _r(14, "Booleans", T.BOOLEAN, multiple=True, ops="RW"),
        _r(15, "Opaques", T.OPAQUE, multiple=True, ops="RW"),
        _r(16, "Times", T.TIME, multiple=True, ops="RW"),
        _r(17, "Objlnks", T.OBJLNK, multiple=True, ops="RW"),
        _r(18, "Corelnks", T.CORELNK, multiple=True, ops="RW"),
    ],
)

MODEL = ModelRegistry([DEVICE, TEMPERATURE, ALL_TYPES])

"""The project's own definitions of the core LwM2M objects and two IPSO examples.

Written from the facts of the LwM2M 1.1 specification (IDs, names, types,
operations, multiplicity, mandatory) and checked against the OMNA registry
files by ``tests/model/test_core_objects.py``. Versions:

========  ===========================  ==============  =========================
ID        Object                       Object version  Resources
========  ===========================  ==============  =========================
0         LwM2M Security               1.1             0-17
1         LwM2M Server                 1.1             0-23
2         LwM2M Access Control         1.0             0-3
3         Device                       1.1             0-22
4         Connectivity Monitoring      1.2             0-12
5         Firmware Update              1.0             0-3, 5-9
6         Location                     1.0             0-6
7         Connectivity Statistics      1.0             0-8
3303      Temperature (IPSO)           1.1             reusable 55xx-60xx
3311      Light Control (IPSO)         1.0             reusable 57xx-58xx
========  ===========================  ==============  =========================

Security resources have no operations: only a Bootstrap-Server (or a smart
card) reaches them, so they are not readable/writable by LwM2M Servers.
"""

from __future__ import annotations

from lwm2m.model.definitions import ObjectDef, ResourceDef
from lwm2m.model.reusable import reusable
from lwm2m.model.types import Operations, ResourceType

_N, _R, _W, _RW, _E = Operations.NONE, Operations.R, Operations.W, Operations.RW, Operations.E
_STR = ResourceType.STRING
_INT = ResourceType.INTEGER
_UINT = ResourceType.UNSIGNED_INTEGER
_FLOAT = ResourceType.FLOAT
_BOOL = ResourceType.BOOLEAN
_OPAQUE = ResourceType.OPAQUE
_TIME = ResourceType.TIME
_OBJLNK = ResourceType.OBJLNK
_EXEC = ResourceType.NONE


def _res(
    id: int,
    name: str,
    operations: Operations,
    type: ResourceType,
    description: str,
    *,
    multiple: bool = False,
    mandatory: bool = False,
    range: str = "",
    units: str = "",
) -> ResourceDef:
    return ResourceDef(
        id=id,
        name=name,
        operations=operations,
        multiple=multiple,
        mandatory=mandatory,
        type=type,
        range=range,
        units=units,
        description=description,
    )


SECURITY = ObjectDef.build(
    0,
    "LWM2M Security",
    multiple=True,
    mandatory=True,
    version="1.1",
    lwm2m_version="1.1",
    description="Keys and addresses the client uses to reach one LwM2M Server or the "
    "Bootstrap-Server; written only by bootstrapping.",
    resources=[
        _res(
            0,
            "LWM2M Server URI",
            _N,
            _STR,
            "URI of the server.",
            mandatory=True,
            range="0..255 bytes",
        ),
        _res(
            1,
            "Bootstrap-Server",
            _N,
            _BOOL,
            "True for the Bootstrap-Server account.",
            mandatory=True,
        ),
        _res(
            2,
            "Security Mode",
            _N,
            _INT,
            "0 PSK, 1 raw public key, 2 certificate, 3 no security, 4 certificate with EST.",
            mandatory=True,
            range="0..4",
        ),
        _res(
            3,
            "Public Key or Identity",
            _N,
            _OPAQUE,
            "Client certificate, public key or PSK identity.",
            mandatory=True,
        ),
        _res(
            4,
            "Server Public Key",
            _N,
            _OPAQUE,
            "Server certificate, public key or trust anchor.",
            mandatory=True,
        ),
        _res(5, "Secret Key", _N, _OPAQUE, "Client private key or pre-shared key.", mandatory=True),
        _res(6, "SMS Security Mode", _N, _INT, "Security used on the SMS binding.", range="0..255"),
        _res(
            7,
            "SMS Binding Key Parameters",
            _N,
            _OPAQUE,
            "Key parameters of the SMS binding.",
            range="6 bytes",
        ),
        _res(
            8,
            "SMS Binding Secret Key(s)",
            _N,
            _OPAQUE,
            "Secret keys of the SMS binding.",
            range="16,32,48 bytes",
        ),
        _res(9, "LwM2M Server SMS Number", _N, _STR, "MSISDN of the server for the SMS binding."),
        _res(
            10,
            "Short Server ID",
            _N,
            _INT,
            "Links this account to a Server object instance.",
            range="1..65534",
        ),
        _res(
            11,
            "Client Hold Off Time",
            _N,
            _INT,
            "Delay before client-initiated bootstrap.",
            units="s",
        ),
        _res(
            12,
            "Bootstrap-Server Account Timeout",
            _N,
            _INT,
            "Seconds after which the Bootstrap-Server account is deleted (0: never).",
            units="s",
        ),
        _res(
            13,
            "Matching Type",
            _N,
            _UINT,
            "How the server certificate is matched: 0 exact, 1 SHA-256, 2 SHA-384, 3 SHA-512.",
            range="0..3",
        ),
        _res(14, "SNI", _N, _STR, "Server name to send in the TLS/DTLS Server Name Indication."),
        _res(
            15,
            "Certificate Usage",
            _N,
            _UINT,
            "RFC 6698 certificate usage: 0 CA constraint to 3 domain-issued.",
            range="0..3",
        ),
        _res(
            16,
            "DTLS/TLS Ciphersuite",
            _N,
            _UINT,
            "IANA ciphersuite values the client may use.",
            multiple=True,
        ),
        _res(17, "OSCORE Security Mode", _N, _OBJLNK, "Link to the OSCORE object instance to use."),
    ],
)

SERVER = ObjectDef.build(
    1,
    "LwM2M Server",
    multiple=True,
    mandatory=True,
    version="1.1",
    lwm2m_version="1.1",
    description="How the client behaves towards one LwM2M Server (lifetime, binding, "
    "notification defaults).",
    resources=[
        _res(
            0,
            "Short Server ID",
            _R,
            _INT,
            "Identifies the server to the client.",
            mandatory=True,
            range="1..65534",
        ),
        _res(1, "Lifetime", _RW, _INT, "Registration lifetime.", mandatory=True, units="s"),
        _res(2, "Default Minimum Period", _RW, _INT, "Default pmin for observations.", units="s"),
        _res(3, "Default Maximum Period", _RW, _INT, "Default pmax for observations.", units="s"),
        _res(4, "Disable", _E, _EXEC, "Deregister and stay away for Disable Timeout."),
        _res(5, "Disable Timeout", _RW, _INT, "How long Disable lasts (default 86400).", units="s"),
        _res(
            6,
            "Notification Storing When Disabled or Offline",
            _RW,
            _BOOL,
            "Keep notifications while the server is unreachable.",
            mandatory=True,
        ),
        _res(7, "Binding", _RW, _STR, "Transport binding(s), e.g. U, UQ, S, T, N.", mandatory=True),
        _res(
            8,
            "Registration Update Trigger",
            _E,
            _EXEC,
            "Send a registration Update now.",
            mandatory=True,
        ),
        _res(9, "Bootstrap-Request Trigger", _E, _EXEC, "Start client-initiated bootstrap."),
        _res(10, "APN Link", _RW, _OBJLNK, "APN connection profile to use for this server."),
        _res(
            11,
            "TLS-DTLS Alert Code",
            _R,
            _UINT,
            "Last alert code from a failed handshake.",
            range="0..255",
        ),
        _res(12, "Last Bootstrapped", _R, _TIME, "When this account was last bootstrapped."),
        _res(
            13,
            "Registration Priority Order",
            _R,
            _UINT,
            "Order in which servers are registered to.",
        ),
        _res(
            14,
            "Initial Registration Delay Timer",
            _RW,
            _UINT,
            "Wait before registering.",
            units="s",
        ),
        _res(
            15,
            "Registration Failure Block",
            _R,
            _BOOL,
            "Stop registering to others when this fails.",
        ),
        _res(
            16,
            "Bootstrap on Registration Failure",
            _R,
            _BOOL,
            "Bootstrap again when registration fails.",
        ),
        _res(17, "Communication Retry Count", _RW, _UINT, "Retries in one sequence."),
        _res(18, "Communication Retry Timer", _RW, _UINT, "Base wait between retries.", units="s"),
        _res(
            19,
            "Communication Sequence Delay Timer",
            _RW,
            _UINT,
            "Wait between retry sequences.",
            units="s",
        ),
        _res(20, "Communication Sequence Retry Count", _RW, _UINT, "Number of retry sequences."),
        _res(21, "Trigger", _RW, _BOOL, "Server may wake the client by SMS."),
        _res(
            22,
            "Preferred Transport",
            _RW,
            _STR,
            "Transport to use for registration (U, T, S, N, ...).",
        ),
        _res(23, "Mute Send", _RW, _BOOL, "True: the client must not use the Send operation."),
    ],
)

ACCESS_CONTROL = ObjectDef.build(
    2,
    "LwM2M Access Control",
    multiple=True,
    mandatory=False,
    version="1.0",
    lwm2m_version="1.0",
    description="Which server may do what on one object instance.",
    resources=[
        _res(
            0,
            "Object ID",
            _R,
            _INT,
            "Object the rights apply to.",
            mandatory=True,
            range="1..65534",
        ),
        _res(
            1,
            "Object Instance ID",
            _R,
            _INT,
            "Instance the rights apply to (65535: the object, for Create).",
            mandatory=True,
            range="0..65535",
        ),
        _res(
            2,
            "ACL",
            _RW,
            _INT,
            "Rights per Short Server ID: bit 0 Read, 1 Write, 2 Execute, 3 Delete, 4 Create.",
            multiple=True,
            range="0..31",
        ),
        _res(
            3,
            "Access Control Owner",
            _RW,
            _INT,
            "Short Server ID of the owner (65535: bootstrap).",
            mandatory=True,
            range="0..65535",
        ),
    ],
)

DEVICE = ObjectDef.build(
    3,
    "Device",
    multiple=False,
    mandatory=True,
    version="1.1",
    lwm2m_version="1.1",
    description="Device information, reboot and factory reset.",
    resources=[
        _res(0, "Manufacturer", _R, _STR, "Manufacturer name."),
        _res(1, "Model Number", _R, _STR, "Model identifier."),
        _res(2, "Serial Number", _R, _STR, "Serial number."),
        _res(3, "Firmware Version", _R, _STR, "Current firmware version."),
        _res(4, "Reboot", _E, _EXEC, "Reboot the device.", mandatory=True),
        _res(5, "Factory Reset", _E, _EXEC, "Restore the factory configuration."),
        _res(
            6,
            "Available Power Sources",
            _R,
            _INT,
            "0 DC, 1 internal battery, 2 external battery, 3 fuel cell, 4 PoE, 5 USB, 6 AC, 7 solar.",
            multiple=True,
            range="0..7",
        ),
        _res(
            7,
            "Power Source Voltage",
            _R,
            _INT,
            "Voltage per power source.",
            multiple=True,
            units="mV",
        ),
        _res(
            8,
            "Power Source Current",
            _R,
            _INT,
            "Current per power source.",
            multiple=True,
            units="mA",
        ),
        _res(9, "Battery Level", _R, _INT, "Remaining battery charge.", range="0..100", units="%"),
        _res(10, "Memory Free", _R, _INT, "Free storage.", units="KB"),
        _res(
            11,
            "Error Code",
            _R,
            _INT,
            "Current errors; 0 means none.",
            multiple=True,
            mandatory=True,
            range="0..32",
        ),
        _res(12, "Reset Error Code", _E, _EXEC, "Clear the error codes."),
        _res(13, "Current Time", _RW, _TIME, "Device clock."),
        _res(14, "UTC Offset", _RW, _STR, "Offset from UTC, ISO 8601 (e.g. +02:00)."),
        _res(15, "Timezone", _RW, _STR, "IANA time zone name."),
        _res(
            16,
            "Supported Binding and Modes",
            _R,
            _STR,
            "Bindings the device supports.",
            mandatory=True,
        ),
        _res(17, "Device Type", _R, _STR, "Kind of device."),
        _res(18, "Hardware Version", _R, _STR, "Hardware version."),
        _res(19, "Software Version", _R, _STR, "Software version."),
        _res(
            20,
            "Battery Status",
            _R,
            _INT,
            "0 normal, 1 charging, 2 charged, 3 damaged, 4 low, 5 not installed, 6 unknown.",
            range="0..6",
        ),
        _res(21, "Memory Total", _R, _INT, "Total storage.", units="KB"),
        _res(
            22,
            "ExtDevInfo",
            _R,
            _OBJLNK,
            "Links to objects with more device information.",
            multiple=True,
        ),
    ],
)

CONNECTIVITY_MONITORING = ObjectDef.build(
    4,
    "Connectivity Monitoring",
    multiple=False,
    mandatory=False,
    version="1.2",
    lwm2m_version="1.1",
    description="Current network connection: bearer, signal, addresses.",
    resources=[
        _res(
            0,
            "Network Bearer",
            _R,
            _INT,
            "Bearer in use (0-20 cellular, 21-40 wireless, 41-50 wireline).",
            mandatory=True,
            range="0..50",
        ),
        _res(
            1,
            "Available Network Bearer",
            _R,
            _INT,
            "Bearers currently available.",
            multiple=True,
            mandatory=True,
            range="0..50",
        ),
        _res(
            2,
            "Radio Signal Strength",
            _R,
            _INT,
            "Average received signal strength.",
            mandatory=True,
            units="dBm",
        ),
        _res(3, "Link Quality", _R, _INT, "Bearer-specific link quality."),
        _res(
            4,
            "IP Addresses",
            _R,
            _STR,
            "IP addresses of the device.",
            multiple=True,
            mandatory=True,
        ),
        _res(5, "Router IP Addresses", _R, _STR, "Next-hop router addresses.", multiple=True),
        _res(
            6, "Link Utilization", _R, _INT, "Average use of the link.", range="0..100", units="%"
        ),
        _res(7, "APN", _R, _STR, "Access point names in use.", multiple=True),
        _res(8, "Cell ID", _R, _INT, "Serving cell identifier."),
        _res(9, "SMNC", _R, _INT, "Serving mobile network code.", range="0..999"),
        _res(10, "SMCC", _R, _INT, "Serving mobile country code.", range="0..999"),
        _res(11, "SignalSNR", _R, _INT, "Signal to noise ratio.", units="dB"),
        _res(12, "LAC", _R, _INT, "Location area code."),
    ],
)

FIRMWARE_UPDATE = ObjectDef.build(
    5,
    "Firmware Update",
    multiple=False,
    mandatory=False,
    version="1.0",
    lwm2m_version="1.0",
    description="Download (push or pull) and install a firmware package.",
    resources=[
        _res(
            0,
            "Package",
            _W,
            _OPAQUE,
            "The firmware package, written by the server.",
            mandatory=True,
        ),
        _res(
            1,
            "Package URI",
            _RW,
            _STR,
            "Where the client downloads the package.",
            mandatory=True,
            range="0..255 bytes",
        ),
        _res(2, "Update", _E, _EXEC, "Install the downloaded package.", mandatory=True),
        _res(
            3,
            "State",
            _R,
            _INT,
            "0 idle, 1 downloading, 2 downloaded, 3 updating.",
            mandatory=True,
            range="0..3",
        ),
        _res(
            5,
            "Update Result",
            _R,
            _INT,
            "Outcome of the last download or update (0 initial, 1 success, 2-9 failures).",
            mandatory=True,
            range="0..9",
        ),
        _res(6, "PkgName", _R, _STR, "Name of the package.", range="0..255 bytes"),
        _res(7, "PkgVersion", _R, _STR, "Version of the package.", range="0..255 bytes"),
        _res(
            8,
            "Firmware Update Protocol Support",
            _R,
            _INT,
            "Download protocols: 0 CoAP, 1 CoAPS, 2 HTTP 1.1, 3 HTTPS 1.1, 4 CoAP over TCP, 5 CoAP over TLS.",
            multiple=True,
            range="0..5",
        ),
        _res(
            9,
            "Firmware Update Delivery Method",
            _R,
            _INT,
            "0 pull only, 1 push only, 2 both.",
            mandatory=True,
            range="0..2",
        ),
    ],
)

LOCATION = ObjectDef.build(
    6,
    "Location",
    multiple=False,
    mandatory=False,
    version="1.0",
    lwm2m_version="1.0",
    description="Where the device is.",
    resources=[
        _res(0, "Latitude", _R, _FLOAT, "Decimal degrees.", mandatory=True, units="lat"),
        _res(1, "Longitude", _R, _FLOAT, "Decimal degrees.", mandatory=True, units="lon"),
        _res(2, "Altitude", _R, _FLOAT, "Height above sea level.", units="m"),
        _res(3, "Radius", _R, _FLOAT, "Accuracy radius of the position.", units="m"),
        _res(4, "Velocity", _R, _OPAQUE, "Velocity as encoded by 3GPP TS 23.032."),
        _res(5, "Timestamp", _R, _TIME, "When the position was measured.", mandatory=True),
        _res(6, "Speed", _R, _FLOAT, "Speed of the device.", units="m/s"),
    ],
)

CONNECTIVITY_STATISTICS = ObjectDef.build(
    7,
    "Connectivity Statistics",
    multiple=False,
    mandatory=False,
    version="1.0",
    lwm2m_version="1.0",
    description="Traffic counters collected between Start and Stop.",
    resources=[
        _res(0, "SMS Tx Counter", _R, _INT, "SMS sent."),
        _res(1, "SMS Rx Counter", _R, _INT, "SMS received."),
        _res(2, "Tx Data", _R, _INT, "Data sent.", units="kB"),
        _res(3, "Rx Data", _R, _INT, "Data received.", units="kB"),
        _res(4, "Max Message Size", _R, _INT, "Largest message.", units="B"),
        _res(5, "Average Message Size", _R, _INT, "Average message.", units="B"),
        _res(6, "Start", _E, _EXEC, "Reset the counters and start collecting.", mandatory=True),
        _res(7, "Stop", _E, _EXEC, "Stop collecting.", mandatory=True),
        _res(8, "Collection Period", _RW, _INT, "Collection duration (0: until Stop).", units="s"),
    ],
)

TEMPERATURE = ObjectDef.build(
    3303,
    "Temperature",
    multiple=True,
    mandatory=False,
    version="1.1",
    lwm2m_version="1.0",
    description="A temperature sensor (IPSO).",
    resources=[
        reusable(5700, mandatory=True),
        reusable(5601),
        reusable(5602),
        reusable(5603),
        reusable(5604),
        reusable(5701),
        reusable(5605),
        reusable(5750),
        reusable(5518),
        reusable(6050),
        reusable(6042),
        reusable(6049),
    ],
)

LIGHT_CONTROL = ObjectDef.build(
    3311,
    "Light Control",
    multiple=True,
    mandatory=False,
    version="1.0",
    lwm2m_version="1.0",
    description="A light source that can be switched and dimmed (IPSO).",
    resources=[
        reusable(5850, mandatory=True),
        reusable(5851),
        reusable(5852),
        reusable(5805),
        reusable(5820),
        reusable(5706),
        reusable(5701),
        reusable(5750),
    ],
)

#: The core LwM2M objects (0-7).
CORE_OBJECTS: tuple[ObjectDef, ...] = (
    SECURITY,
    SERVER,
    ACCESS_CONTROL,
    DEVICE,
    CONNECTIVITY_MONITORING,
    FIRMWARE_UPDATE,
    LOCATION,
    CONNECTIVITY_STATISTICS,
)

#: The IPSO example objects.
IPSO_OBJECTS: tuple[ObjectDef, ...] = (TEMPERATURE, LIGHT_CONTROL)

#: Everything :func:`lwm2m.model.registry.default_registry` starts with.
DEFAULT_OBJECTS: tuple[ObjectDef, ...] = CORE_OBJECTS + IPSO_OBJECTS

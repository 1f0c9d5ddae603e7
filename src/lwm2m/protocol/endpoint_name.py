"""Endpoint Client Name and Endpoint Client Name Type (seed 002, 6.2 and 6.2.1).

The seed adds ``ept``: 1 = OUI-PC-SerialNumber (TR-069 3.4.4), 2 = URN (IMEI,
ESN, MEID, UUID, other URNs), 3-64 reserved for OMA, 65-255 vendor specific.
Published LwM2M dropped ``ept`` and recommends ``urn:imei:...`` style names,
so both the seed's ``IMEI:`` form and the published ``urn:imei:`` form are
accepted under type 2 (docs/compliance.md).
"""

from __future__ import annotations

import enum
import re

MAX_ENDPOINT_NAME_BYTES = 63


class EndpointNameError(ValueError):
    """A malformed ``ep`` or ``ept``; the message says which and why."""


class EndpointNameType(enum.IntEnum):
    OUI_PC_SERIAL = 1
    URN = 2


_HEX = "0-9A-Fa-f"
_UUID = rf"[{_HEX}]{{8}}-[{_HEX}]{{4}}-[{_HEX}]{{4}}-[{_HEX}]{{4}}-[{_HEX}]{{12}}"
# TR-069 3.4.4: OUI is 6 hex digits; ProductClass and SerialNumber are strings
# that must not contain "-" in this representation (it is the separator).
_OUI_PC_SN = re.compile(r"[0-9A-Fa-f]{6}(-[^-\s]+)?-[^-\s]+", re.ASCII)
_SEED_URNS: dict[str, re.Pattern[str]] = {
    "IMEI": re.compile(r"[0-9]{15}"),
    "ESN": re.compile(rf"[{_HEX}]{{8}}"),
    "MEID": re.compile(rf"[{_HEX}]{{14}}"),
    "UUID": re.compile(_UUID),
}
_PUBLISHED_URNS: dict[str, re.Pattern[str]] = {
    "imei": re.compile(r"[0-9]{15}"),
    "esn": re.compile(rf"[{_HEX}]{{8}}"),
    "meid": re.compile(rf"[{_HEX}]{{14}}"),
    "uuid": re.compile(_UUID),
    "imei-msisdn": re.compile(r"[0-9]{15}-[0-9]{1,15}"),
    "imei-imsi": re.compile(r"[0-9]{15}-[0-9]{6,15}"),
}
# C0 controls and DEL (one regex search: a generator over the characters cost 2 µs a name)
_CONTROL = re.compile("[\x00-\x1f\x7f]")
# RFC 8141: "urn:" NID ":" NSS, NID 2-32 chars of alnum and "-".
_GENERIC_URN = re.compile(r"urn:[A-Za-z0-9][A-Za-z0-9-]{0,30}[A-Za-z0-9]:\S+", re.IGNORECASE)


def parse_endpoint_type(text: str) -> int:
    """Parse the ``ept`` query value: a decimal 1-255 outside the reserved 3-64."""
    if not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        raise EndpointNameError(f"ept={text!r} is not a decimal number")
    value = int(text)
    if not 1 <= value <= 255:
        raise EndpointNameError(f"ept={value} out of range 1-255")
    if 3 <= value <= 64:
        raise EndpointNameError(f"ept={value} is reserved for future OMA use (3-64)")
    return value


def validate_endpoint_name(name: str, ept: int | None = None) -> None:
    """Raise :class:`EndpointNameError` unless ``name`` is a valid name of type ``ept``.

    Without ``ept`` only the length and character rules apply (published LwM2M
    clients never send a type). Vendor types (65-255) are opaque to us.
    """
    if name == "":
        raise EndpointNameError("ep is empty")
    size = len(name.encode("utf-8"))
    if size > MAX_ENDPOINT_NAME_BYTES:
        raise EndpointNameError(
            f"ep is {size} bytes long, the maximum is {MAX_ENDPOINT_NAME_BYTES}"
        )
    if _CONTROL.search(name):
        raise EndpointNameError("ep contains control characters")
    if ept is None or ept >= 65:
        return
    if ept == EndpointNameType.OUI_PC_SERIAL:
        if not _OUI_PC_SN.fullmatch(name):
            raise EndpointNameError(
                f"ep={name!r} is not OUI-PC-SerialNumber "
                "(<OUI>-<ProductClass>-<SerialNumber> or <OUI>-<SerialNumber>, OUI = 6 hex digits)"
            )
        return
    if ept == EndpointNameType.URN:
        _validate_urn(name)
        return
    raise EndpointNameError(f"ept={ept} is reserved for future OMA use (3-64)")


def _validate_urn(name: str) -> None:
    prefix, sep, rest = name.partition(":")
    if sep and prefix in _SEED_URNS:
        if not _SEED_URNS[prefix].fullmatch(rest):
            raise EndpointNameError(f"ep={name!r} is not a valid {prefix} URN")
        return
    if prefix.lower() == "urn":
        nid, sep2, nss = rest.partition(":")
        pattern = _PUBLISHED_URNS.get(nid.lower())
        if pattern is not None:
            if not sep2 or not pattern.fullmatch(nss):
                raise EndpointNameError(f"ep={name!r} is not a valid urn:{nid.lower()} URN")
            return
        if _GENERIC_URN.fullmatch(name):
            return
    raise EndpointNameError(
        f"ep={name!r} is not a URN (IMEI:, ESN:, MEID:, UUID: or urn:<nid>:<nss>)"
    )

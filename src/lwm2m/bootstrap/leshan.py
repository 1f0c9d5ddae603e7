"""Import of Eclipse Leshan's bootstrap store (``data/bootstrap.json`` of its bsserver demo).

Leshan keeps ``{endpoint: BootstrapConfig}`` where a config holds
``toDelete`` (paths), ``servers`` / ``security`` / ``acls`` maps keyed by
instance ID, and byte arrays as JSON arrays of (signed or unsigned) bytes::

    {"dev-1": {
       "toDelete": ["/0", "/1"],
       "servers": {"0": {"shortId": 101, "lifetime": 300, "binding": "U",
                         "defaultMinPeriod": 1, "notifIfDisabled": true}},
       "security": {"0": {"uri": "coap://bs:5783", "bootstrapServer": true, "securityMode": "NO_SEC"},
                    "1": {"uri": "coap://dm:5683", "bootstrapServer": false,
                          "securityMode": "PSK", "publicKeyOrId": [105, 100],
                          "secretKey": [1, 2, 3], "serverId": 101}},
       "acls": {"0": {"objectId": 3, "objectInstanceId": 0,
                      "acls": {"101": 15}, "AccessControlOwner": 101}}}}

:func:`convert_leshan_store` rewrites that into our configuration shape
(keeping Leshan's instance IDs), so the one validator in
:mod:`lwm2m.protocol.bootstrap_config` checks both. Leshan fields without a
counterpart here (SMS security, ``autoIdForSecurityObject``) are ignored;
values we cannot honour (RPK, EST, OSCORE) are refused with the field's path.
"""

from __future__ import annotations

import base64
from typing import Any

from lwm2m.protocol.bootstrap_config import BootstrapConfig, BootstrapConfigError, parse_config

_MODES = {"NO_SEC": "nosec", "PSK": "psk", "X509": "x509"}
_FORMATS = {"TLV": "tlv", "SENML_JSON": "senml+json", "SENML_CBOR": "senml+cbor"}


def looks_like_leshan_store(data: Any) -> bool:
    """True for a mapping of endpoints to objects with Leshan's keys."""
    if not isinstance(data, dict) or "clients" in data or not data:
        return False
    leshan_keys = {"servers", "security", "acls", "toDelete", "oscore", "autoIdForSecurityObject"}
    return all(isinstance(v, dict) and set(v) & leshan_keys for v in data.values())


def _bytes(value: Any, where: str) -> bytes:
    """A Leshan byte array: JSON array of bytes (signed or unsigned) or a hex string."""
    if value is None:
        return b""
    if isinstance(value, str):
        try:
            return bytes.fromhex(value)
        except ValueError:
            raise BootstrapConfigError(where, "hex string expected") from None
    if not isinstance(value, list):
        raise BootstrapConfigError(where, "must be an array of bytes")
    out = bytearray()
    for i, item in enumerate(value):
        if not isinstance(item, int) or isinstance(item, bool) or not -128 <= item <= 255:
            raise BootstrapConfigError(f"{where}[{i}]", "must be a byte (-128..255)")
        out.append(item & 0xFF)
    return bytes(out)


def _pem(der: bytes, kind: str) -> str:
    body = base64.encodebytes(der).decode("ascii")
    return f"-----BEGIN {kind}-----\n{body}-----END {kind}-----\n"


def _security(sec: dict[str, Any], where: str) -> dict[str, Any]:
    mode_name = sec.get("securityMode", "NO_SEC")
    if not isinstance(mode_name, str) or mode_name.upper() not in _MODES:
        raise BootstrapConfigError(
            f"{where}.securityMode",
            f"{mode_name!r} is not supported (NO_SEC, PSK or X509; RPK and EST are not)",
        )
    mode = _MODES[mode_name.upper()]
    if mode == "nosec":
        return {"mode": "nosec"}
    identity = _bytes(sec.get("publicKeyOrId"), f"{where}.publicKeyOrId")
    secret = _bytes(sec.get("secretKey"), f"{where}.secretKey")
    if mode == "psk":
        try:
            identity_text = identity.decode("utf-8")
        except UnicodeDecodeError:
            raise BootstrapConfigError(
                f"{where}.publicKeyOrId", "PSK identity is not UTF-8"
            ) from None
        return {"mode": "psk", "identity": identity_text, "key": secret.hex()}
    server_cert = _bytes(sec.get("serverPublicKey"), f"{where}.serverPublicKey")
    return {
        "mode": "x509",
        "certificate": _pem(identity, "CERTIFICATE"),
        "key": _pem(secret, "PRIVATE KEY"),
        "server_certificate": _pem(server_cert, "CERTIFICATE"),
    }


def _instance_id(key: str, where: str) -> int:
    if not key.isascii() or not key.isdigit() or int(key) > 65534:
        raise BootstrapConfigError(where, f"key {key!r} is not an instance ID")
    return int(key)


def _binding(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "".join(value)
    raise BootstrapConfigError(where, "must be a binding string or an array of binding letters")


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BootstrapConfigError(where, "must be an object")
    return value


def convert_leshan_config(endpoint: str, value: Any) -> dict[str, Any]:
    """One Leshan ``BootstrapConfig`` as our client configuration (not yet validated)."""
    where = f"leshan[{endpoint!r}]"
    cfg = _object(value, where)
    out: dict[str, Any] = {}
    to_delete = cfg.get("toDelete")
    if to_delete is not None:
        out["delete"] = to_delete
    fmt = cfg.get("contentFormat")
    if fmt is not None:
        if not isinstance(fmt, str) or fmt.upper() not in _FORMATS:
            raise BootstrapConfigError(
                f"{where}.contentFormat", f"{fmt!r} is not supported (TLV, SENML_JSON, SENML_CBOR)"
            )
        out["content_format"] = _FORMATS[fmt.upper()]
    if cfg.get("oscore"):
        raise BootstrapConfigError(f"{where}.oscore", "OSCORE objects are not supported")

    servers_by_ssid: dict[int, tuple[int, dict[str, Any]]] = {}
    for key, raw in _object(cfg.get("servers") or {}, f"{where}.servers").items():
        swhere = f"{where}.servers[{key!r}]"
        server = _object(raw, swhere)
        ssid = server.get("shortId")
        if not isinstance(ssid, int) or isinstance(ssid, bool):
            raise BootstrapConfigError(f"{swhere}.shortId", "must be an integer")
        if ssid in servers_by_ssid:
            raise BootstrapConfigError(f"{swhere}.shortId", f"Short Server ID {ssid} appears twice")
        servers_by_ssid[ssid] = (_instance_id(key, swhere), server)

    used_ssids: set[int] = set()
    servers: list[dict[str, Any]] = []
    for key, raw in _object(cfg.get("security") or {}, f"{where}.security").items():
        swhere = f"{where}.security[{key!r}]"
        sec = _object(raw, swhere)
        instance = _instance_id(key, swhere)
        security = _security(sec, swhere)
        if sec.get("bootstrapServer"):
            if "bootstrap_server" in out:
                raise BootstrapConfigError(swhere, "a second Bootstrap-Server account")
            account: dict[str, Any] = {
                "uri": sec.get("uri"),
                "security": security,
                "security_instance": instance,
            }
            if isinstance(sec.get("clientOldOffTime"), int):
                account["hold_off"] = sec["clientOldOffTime"]
            if isinstance(sec.get("bootstrapServerAccountTimeout"), int):
                account["account_timeout"] = sec["bootstrapServerAccountTimeout"]
            out["bootstrap_server"] = account
            continue
        ssid = sec.get("serverId")
        if not isinstance(ssid, int) or isinstance(ssid, bool):
            raise BootstrapConfigError(
                f"{swhere}.serverId", "must be an integer (the Short Server ID)"
            )
        if ssid not in servers_by_ssid:
            raise BootstrapConfigError(f"{swhere}.serverId", f"no servers entry has shortId {ssid}")
        if ssid in used_ssids:
            raise BootstrapConfigError(
                f"{swhere}.serverId", f"Short Server ID {ssid} has two security entries"
            )
        used_ssids.add(ssid)
        server_instance, server = servers_by_ssid[ssid]
        entry: dict[str, Any] = {
            "short_server_id": ssid,
            "uri": sec.get("uri"),
            "security": security,
            "security_instance": instance,
            "server_instance": server_instance,
        }
        swhere2 = f"{where}.servers[{server_instance}]"
        if "lifetime" in server:
            entry["lifetime"] = server["lifetime"]
        if server.get("binding") is not None:
            entry["binding"] = _binding(server["binding"], f"{swhere2}.binding")
        for theirs, ours in (
            ("defaultMinPeriod", "default_min_period"),
            ("defaultMaxPeriod", "default_max_period"),
            ("disableTimeout", "disable_timeout"),
            ("notifIfDisabled", "notification_storing"),
        ):
            if server.get(theirs) is not None:
                entry[ours] = server[theirs]
        if isinstance(sec.get("clientOldOffTime"), int):
            entry["hold_off"] = sec["clientOldOffTime"]
        servers.append(entry)
    missing = sorted(set(servers_by_ssid) - used_ssids)
    if missing:
        raise BootstrapConfigError(
            f"{where}.servers", f"Short Server ID {missing[0]} has no security entry"
        )
    out["servers"] = sorted(servers, key=lambda s: s["server_instance"])

    acl: list[dict[str, Any]] = []
    for key, raw in _object(cfg.get("acls") or {}, f"{where}.acls").items():
        awhere = f"{where}.acls[{key!r}]"
        item = _object(raw, awhere)
        rights = _object(item.get("acls") or {}, f"{awhere}.acls")
        entry = {
            "object": item.get("objectId"),
            "instance": item.get("objectInstanceId"),
            "rights": dict(rights),
            "acl_instance": _instance_id(key, awhere),
        }
        if item.get("AccessControlOwner") is not None:
            entry["owner"] = item["AccessControlOwner"]
        acl.append(entry)
    if acl:
        out["acl"] = acl
    return out


def convert_leshan_store(data: Any) -> dict[str, Any]:
    """A whole Leshan store ``{endpoint: BootstrapConfig}`` as ``{"clients": {...}}``."""
    store = _object(data, "leshan")
    return {"clients": {ep: convert_leshan_config(ep, cfg) for ep, cfg in store.items()}}


def import_leshan_store(data: Any) -> dict[str, BootstrapConfig]:
    """Convert and validate; returns the ``{endpoint: BootstrapConfig}`` mapping."""
    return parse_config(convert_leshan_store(data))

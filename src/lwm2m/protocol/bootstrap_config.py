"""Bootstrap configurations: what the Bootstrap Server writes into each client.

One :class:`BootstrapConfig` per Endpoint Client Name, parsed from JSON with
strict validation: every error names the JSON path of the bad field
(``clients["dev-1"].servers[0].security.key``) so that a typo fails loudly at
load instead of leaving a device unprovisioned or unauthenticated.

File shape (``--config FILE``, REST API)::

    {"clients": {
      "dev-1": {
        "ept": 2,                                   # optional, seed 002 6.2.1
        "delete": ["/0", "/1"],                     # Bootstrap-Delete paths, in order
        "discover": true,                           # Bootstrap-Discover /0 first (default)
        "read": ["/1", "/2/0"],                     # optional: Bootstrap-Read (LwM2M 1.1)
        "content_format": "tlv",                    # optional: tlv, senml+json, senml+cbor
        "bootstrap_server": {                       # optional: the client's BS account
          "uri": "coaps://bs.example:5784", "security": {...},
          "hold_off": 1, "account_timeout": 0, "security_instance": 0},
        "servers": [
          {"short_server_id": 101, "uri": "coap://127.0.0.1:5683",
           "lifetime": 300, "binding": "U",
           "default_min_period": 1, "default_max_period": 60,
           "disable_timeout": 86400, "notification_storing": true,
           "security": {"mode": "nosec"},
           "security_instance": 1, "server_instance": 0}],
        "acl": [
          {"object": 3, "instance": 0, "owner": 101,
           "rights": {"101": "RWED", "0": "R"}, "acl_instance": 0}]}}}

Security modes: ``{"mode": "nosec"}``, ``{"mode": "psk", "identity": "id",
"key": "hex"}``, ``{"mode": "x509", "certificate": PEM, "key": PEM,
"server_certificate": PEM}`` (the server certificate or the CA that signed it).

Instance IDs not given are allocated deterministically: the bootstrap account
takes Security instance 0, LwM2M server accounts take the next free Security
instance IDs (from 1) and Server instance IDs (from 0) in list order, ACL
entries the next free Access Control instance IDs (from 0).
"""

from __future__ import annotations

import copy
import enum
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.hazmat.primitives.serialization import Encoding

from lwm2m.model.path import Path, PathError
from lwm2m.protocol.endpoint_name import (
    EndpointNameError,
    parse_endpoint_type,
    validate_endpoint_name,
)
from lwm2m.security.credentials import json_type_name

MAX_SHORT_SERVER_ID = 65534  # 0 is reserved (seed 002 table 12), 65535 means "no server"
MAX_PSK_IDENTITY_BYTES = 128
MAX_PSK_KEY_BYTES = 64
_BINDING = re.compile(r"U|UQ|S|SQ|US|UQS|[UTSN]{1,4}Q?")
_URI_SCHEMES = {"coap": 5683, "coaps": 5684, "coap+tcp": 5683, "coaps+tcp": 5684}

#: The Access Control rights bits (LwM2M Object 2, resource 2).
RIGHT_READ = 1
RIGHT_WRITE = 2
RIGHT_EXECUTE = 4
RIGHT_DELETE = 8
RIGHT_CREATE = 16
_RIGHT_LETTERS = {
    "R": RIGHT_READ,
    "W": RIGHT_WRITE,
    "E": RIGHT_EXECUTE,
    "D": RIGHT_DELETE,
    "C": RIGHT_CREATE,
}


class BootstrapConfigError(ValueError):
    """A bootstrap configuration that cannot be used.

    ``where`` is the JSON path of the offending field; the message starts with it.
    """

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"{where}: {problem}" if where else problem)
        self.where = where
        self.problem = problem


class SecurityMode(enum.IntEnum):
    """Security object resource 2 values (LwM2M TS, Object 0)."""

    PSK = 0
    RPK = 1
    CERTIFICATE = 2
    NO_SEC = 3


class ContentFormatChoice(enum.Enum):
    """The formats the Bootstrap Server writes in (numbers as on the wire)."""

    TLV = 11542
    SENML_JSON = 110
    SENML_CBOR = 112


_FORMAT_NAMES = {
    "tlv": ContentFormatChoice.TLV,
    "senml+json": ContentFormatChoice.SENML_JSON,
    "senml+cbor": ContentFormatChoice.SENML_CBOR,
}


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    """How a client talks to one server: the Security object's key material.

    Byte values are what goes into the Security object: PSK identity and key
    as raw bytes; for X.509 the DER certificate, the DER (PKCS#8) private key
    and the DER server (or CA) certificate.
    """

    mode: SecurityMode = SecurityMode.NO_SEC
    public_key_or_identity: bytes = b""
    secret_key: bytes = b""
    server_public_key: bytes = b""

    def __repr__(self) -> str:
        # Secret keys never reach logs through a repr.
        return (
            f"SecurityConfig(mode={self.mode.name}, identity=<{len(self.public_key_or_identity)} bytes>, "
            f"secret_key=<hidden>, server_public_key=<{len(self.server_public_key)} bytes>)"
        )


@dataclass(frozen=True, slots=True)
class LwM2MServerAccount:
    """One LwM2M Server account: a Security instance and a Server instance."""

    short_server_id: int
    uri: str
    security: SecurityConfig
    security_instance: int
    server_instance: int
    lifetime: int = 86400
    binding: str = "U"
    default_min_period: int | None = None
    default_max_period: int | None = None
    disable_timeout: int | None = None
    notification_storing: bool = True
    hold_off: int | None = None


@dataclass(frozen=True, slots=True)
class BootstrapAccount:
    """The client's Bootstrap-Server account (Security instance with Bootstrap-Server = true)."""

    uri: str
    security: SecurityConfig
    security_instance: int = 0
    hold_off: int = 0
    account_timeout: int = 0


@dataclass(frozen=True, slots=True)
class AclEntry:
    """One Access Control instance: rights per Short Server ID on one object instance.

    Short Server ID 0 in ``rights`` is the default ACL for servers not listed.
    """

    object_id: int
    instance_id: int
    rights: Mapping[int, int]
    owner: int
    acl_instance: int

    @property
    def target(self) -> Path:
        return Path(self.object_id, self.instance_id)


@dataclass(frozen=True, slots=True)
class BootstrapConfig:
    """Everything the Bootstrap Server does for one endpoint, validated."""

    endpoint: str
    endpoint_type: int | None = None
    delete: tuple[Path, ...] = ()
    servers: tuple[LwM2MServerAccount, ...] = ()
    bootstrap_server: BootstrapAccount | None = None
    acl: tuple[AclEntry, ...] = ()
    content_format: ContentFormatChoice | None = None
    #: Bootstrap-Discover ``/0`` before writing, to place Security instances around
    #: the client's own (its Bootstrap-Server account above all).
    discover: bool = True
    #: Bootstrap-Read these paths (Server / Access Control objects or instances)
    #: before writing; the answers are kept in the session history.
    read: tuple[Path, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def fingerprint(self) -> str:
        """A stable hash of the raw configuration: "has this client's config changed?"."""
        text = json.dumps(self.raw, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    def to_json(self, *, redact: bool = False) -> dict[str, Any]:
        """The JSON form this config was parsed from; ``redact`` hides PSK and private keys."""
        data: dict[str, Any] = json.loads(json.dumps(self.raw))
        if redact:
            accounts = [*data.get("servers", []), data.get("bootstrap_server") or {}]
            for account in accounts:
                security = account.get("security") if isinstance(account, dict) else None
                if isinstance(security, dict) and "key" in security:
                    security["key"] = "<hidden>"
        return data


# --------------------------------------------------------------------------- helpers


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BootstrapConfigError(where, f"must be an object, got {json_type_name(value)}")
    return value


def _keys(
    obj: Mapping[str, Any], where: str, required: Sequence[str], optional: Sequence[str]
) -> None:
    allowed = set(required) | set(optional)
    for key in obj:
        if key not in allowed:
            raise BootstrapConfigError(
                where, f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})"
            )
    for key in required:
        if key not in obj:
            raise BootstrapConfigError(where, f"missing key {key!r}")


def _int(value: Any, where: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise BootstrapConfigError(where, f"must be an integer, got {json_type_name(value)}")
    if not low <= value <= high:
        raise BootstrapConfigError(where, f"{value} out of range {low}-{high}")
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise BootstrapConfigError(where, f"must be a string, got {json_type_name(value)}")
    return value


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise BootstrapConfigError(where, f"must be true or false, got {json_type_name(value)}")
    return value


def validate_uri(value: Any, where: str) -> str:
    """A server URI: ``coap``/``coaps`` (``+tcp``) scheme, a host, an optional port, no query."""
    text = _str(value, where)
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise BootstrapConfigError(where, f"{text!r} is not a URI: {exc}") from None
    if parts.scheme not in _URI_SCHEMES:
        raise BootstrapConfigError(
            where, f"{text!r}: scheme must be one of {', '.join(sorted(_URI_SCHEMES))}"
        )
    if not parts.hostname:
        raise BootstrapConfigError(where, f"{text!r} has no host")
    if port == 0:
        raise BootstrapConfigError(where, f"{text!r}: port 0 is not a server port")
    if parts.query or parts.fragment or parts.username is not None:
        raise BootstrapConfigError(
            where, f"{text!r} must not carry user info, a query or a fragment"
        )
    return text


def uri_address(uri: str) -> tuple[str, int, bool]:
    """``(host, port, secure)`` of a validated server URI (default ports 5683/5684)."""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    return host, parts.port or _URI_SCHEMES[parts.scheme], parts.scheme.startswith("coaps")


def parse_rights(value: Any, where: str) -> int:
    """ACL rights: an integer bit mask 0-31 or letters from ``RWEDC`` (``"RW"``, ``""``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return _int(value, where, 0, 31)
    text = _str(value, where)
    mask = 0
    for letter in text.upper():
        bit = _RIGHT_LETTERS.get(letter)
        if bit is None:
            raise BootstrapConfigError(
                where, f"{text!r}: rights are letters from RWEDC or a number 0-31"
            )
        if mask & bit:
            raise BootstrapConfigError(where, f"{text!r}: right {letter!r} given twice")
        mask |= bit
    return mask


def rights_letters(mask: int) -> str:
    return "".join(letter for letter, bit in _RIGHT_LETTERS.items() if mask & bit)


def _hex(value: Any, where: str) -> bytes:
    text = _str(value, where)
    if len(text) % 2 or not re.fullmatch(r"[0-9A-Fa-f]*", text):
        raise BootstrapConfigError(where, "must be an even number of hex digits")
    return bytes.fromhex(text)


def _pem_or_file(value: Any, where: str, base_dir: FsPath | None) -> bytes:
    """PEM text, or the name of a PEM/DER file (relative to the config file)."""
    text = _str(value, where)
    if text.lstrip().startswith("-----BEGIN"):
        return text.encode("ascii", errors="replace")
    if base_dir is None:
        raise BootstrapConfigError(where, "must be PEM text (file names need a config file)")
    path = FsPath(text)
    if not path.is_absolute():
        path = base_dir / path
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BootstrapConfigError(where, f"cannot read {str(path)!r}: {exc.strerror}") from None


def _certificate(value: Any, where: str, base_dir: FsPath | None) -> x509.Certificate:
    data = _pem_or_file(value, where, base_dir)
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            cert = x509.load_pem_x509_certificate(data)
        else:
            cert = x509.load_der_x509_certificate(data)
    except ValueError:
        raise BootstrapConfigError(where, "not an X.509 certificate (PEM or DER)") from None
    return cert


def _private_key(value: Any, where: str, base_dir: FsPath | None) -> PrivateKeyTypes:
    data = _pem_or_file(value, where, base_dir)
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError):
        raise BootstrapConfigError(where, "not an unencrypted private key (PEM or DER)") from None
    return key


# --------------------------------------------------------------------------- parsing


def parse_security(value: Any, where: str, base_dir: FsPath | None = None) -> SecurityConfig:
    obj = _object(value, where)
    if "mode" not in obj:
        raise BootstrapConfigError(where, "missing key 'mode' (nosec, psk or x509)")
    mode = _str(obj["mode"], f"{where}.mode").lower()
    if mode == "nosec":
        _keys(obj, where, ("mode",), ())
        return SecurityConfig(SecurityMode.NO_SEC)
    if mode == "psk":
        _keys(obj, where, ("mode", "identity", "key"), ())
        identity = _str(obj["identity"], f"{where}.identity").encode("utf-8")
        if not 1 <= len(identity) <= MAX_PSK_IDENTITY_BYTES:
            raise BootstrapConfigError(
                f"{where}.identity", f"must be 1-{MAX_PSK_IDENTITY_BYTES} bytes"
            )
        psk = _hex(obj["key"], f"{where}.key")
        if not 1 <= len(psk) <= MAX_PSK_KEY_BYTES:
            raise BootstrapConfigError(f"{where}.key", f"must be 1-{MAX_PSK_KEY_BYTES} bytes")
        return SecurityConfig(SecurityMode.PSK, identity, psk)
    if mode == "x509":
        _keys(obj, where, ("mode", "certificate", "key", "server_certificate"), ())
        cert = _certificate(obj["certificate"], f"{where}.certificate", base_dir)
        key = _private_key(obj["key"], f"{where}.key", base_dir)
        server_cert = _certificate(
            obj["server_certificate"], f"{where}.server_certificate", base_dir
        )
        pkcs8 = serialization.PrivateFormat.PKCS8
        no_encryption = serialization.NoEncryption()
        # The stored document carries the PEM itself, not file names: it must
        # reload anywhere (document store, REST round trip).
        obj["certificate"] = cert.public_bytes(Encoding.PEM).decode("ascii")
        obj["key"] = key.private_bytes(Encoding.PEM, pkcs8, no_encryption).decode("ascii")
        obj["server_certificate"] = server_cert.public_bytes(Encoding.PEM).decode("ascii")
        return SecurityConfig(
            SecurityMode.CERTIFICATE,
            cert.public_bytes(Encoding.DER),
            key.private_bytes(Encoding.DER, pkcs8, no_encryption),
            server_cert.public_bytes(Encoding.DER),
        )
    raise BootstrapConfigError(
        f"{where}.mode", f"{mode!r} is not a security mode (nosec, psk or x509)"
    )


def _check_scheme(uri: str, security: SecurityConfig, where: str) -> None:
    secure = uri_address(uri)[2]
    if secure and security.mode is SecurityMode.NO_SEC:
        raise BootstrapConfigError(where, f"{uri!r} is a coaps URI but security mode is nosec")
    if not secure and security.mode is not SecurityMode.NO_SEC:
        raise BootstrapConfigError(where, f"{uri!r} is a coap URI but security mode is not nosec")


_SERVER_KEYS = (
    "short_server_id",
    "uri",
    "security",
    "lifetime",
    "binding",
    "default_min_period",
    "default_max_period",
    "disable_timeout",
    "notification_storing",
    "hold_off",
    "security_instance",
    "server_instance",
)


def _parse_server(value: Any, where: str, base_dir: FsPath | None) -> dict[str, Any]:
    obj = _object(value, where)
    _keys(obj, where, ("short_server_id", "uri"), _SERVER_KEYS)
    out: dict[str, Any] = {
        "short_server_id": _int(
            obj["short_server_id"], f"{where}.short_server_id", 1, MAX_SHORT_SERVER_ID
        ),
        "uri": validate_uri(obj["uri"], f"{where}.uri"),
        "security": parse_security(
            obj.get("security", {"mode": "nosec"}), f"{where}.security", base_dir
        ),
    }
    _check_scheme(out["uri"], out["security"], f"{where}.uri")
    if "lifetime" in obj:
        out["lifetime"] = _int(obj["lifetime"], f"{where}.lifetime", 1, 0xFFFFFFFF)
    if "binding" in obj:
        binding = _str(obj["binding"], f"{where}.binding")
        if not _BINDING.fullmatch(binding) or len(set(binding)) != len(binding):
            raise BootstrapConfigError(
                f"{where}.binding",
                f"{binding!r} is not a binding mode (U, UQ, S, SQ, US, UQS, T, N)",
            )
        out["binding"] = binding
    for key in ("default_min_period", "default_max_period", "disable_timeout", "hold_off"):
        if key in obj and obj[key] is not None:
            out[key] = _int(obj[key], f"{where}.{key}", 0, 0xFFFFFFFF)
    if (
        out.get("default_min_period") is not None
        and out.get("default_max_period") is not None
        and out["default_max_period"] < out["default_min_period"]
    ):
        raise BootstrapConfigError(
            f"{where}.default_max_period", "must not be less than default_min_period"
        )
    if "notification_storing" in obj:
        out["notification_storing"] = _bool(
            obj["notification_storing"], f"{where}.notification_storing"
        )
    for key in ("security_instance", "server_instance"):
        if key in obj:
            out[key] = _int(obj[key], f"{where}.{key}", 0, 65534)
    return out


def _parse_bootstrap_account(value: Any, where: str, base_dir: FsPath | None) -> dict[str, Any]:
    obj = _object(value, where)
    _keys(
        obj,
        where,
        ("uri",),
        ("uri", "security", "hold_off", "account_timeout", "security_instance"),
    )
    out: dict[str, Any] = {
        "uri": validate_uri(obj["uri"], f"{where}.uri"),
        "security": parse_security(
            obj.get("security", {"mode": "nosec"}), f"{where}.security", base_dir
        ),
    }
    _check_scheme(out["uri"], out["security"], f"{where}.uri")
    for key in ("hold_off", "account_timeout"):
        if key in obj:
            out[key] = _int(obj[key], f"{where}.{key}", 0, 0xFFFFFFFF)
    if "security_instance" in obj:
        out["security_instance"] = _int(
            obj["security_instance"], f"{where}.security_instance", 0, 65534
        )
    return out


def _parse_acl(value: Any, where: str) -> dict[str, Any]:
    obj = _object(value, where)
    _keys(obj, where, ("object", "instance", "rights"), ("owner", "acl_instance"))
    object_id = _int(obj["object"], f"{where}.object", 0, 65535)
    instance_id = _int(obj["instance"], f"{where}.instance", 0, 65534)
    rights_obj = _object(obj["rights"], f"{where}.rights")
    rights: dict[int, int] = {}
    for key, raw in rights_obj.items():
        if not key.isascii() or not key.isdigit() or (len(key) > 1 and key[0] == "0"):
            raise BootstrapConfigError(
                f"{where}.rights", f"key {key!r} is not a Short Server ID (0 = default ACL)"
            )
        ssid = int(key)
        if ssid > MAX_SHORT_SERVER_ID:
            raise BootstrapConfigError(
                f"{where}.rights", f"Short Server ID {ssid} out of range 0-{MAX_SHORT_SERVER_ID}"
            )
        rights[ssid] = parse_rights(raw, f"{where}.rights[{key!r}]")
    out: dict[str, Any] = {"object_id": object_id, "instance_id": instance_id, "rights": rights}
    if "owner" in obj:
        out["owner"] = _int(obj["owner"], f"{where}.owner", 1, 65535)
    if "acl_instance" in obj:
        out["acl_instance"] = _int(obj["acl_instance"], f"{where}.acl_instance", 0, 65534)
    return out


def _parse_paths(value: Any, where: str, parse: Callable[[str], Path]) -> tuple[Path, ...]:
    """A JSON array of path strings, each checked by ``parse`` (which raises PathError)."""
    if not isinstance(value, list):
        raise BootstrapConfigError(where, f"must be an array of paths, got {json_type_name(value)}")
    paths: list[Path] = []
    for i, item in enumerate(value):
        text = _str(item, f"{where}[{i}]")
        try:
            paths.append(parse(text))
        except PathError as exc:
            raise BootstrapConfigError(f"{where}[{i}]", str(exc)) from None
    return tuple(paths)


def parse_delete_path(text: str) -> Path:
    """A Bootstrap-Delete target: ``/``, an object or an instance; raises PathError."""
    path = Path.parse(text)
    if path.depth > 2:
        raise PathError(f"{text!r}: Bootstrap-Delete targets /, an object or an instance")
    return path


#: Bootstrap-Read is restricted to these objects (LwM2M 1.1, 6.1.7.2).
READABLE_OBJECTS = (1, 2)


def parse_read_path(text: str) -> Path:
    """A Bootstrap-Read target: ``/1``, ``/1/i``, ``/2`` or ``/2/i``; raises PathError."""
    path = Path.parse(text)
    if path.object_id not in READABLE_OBJECTS or path.depth > 2:
        raise PathError(
            f"{text!r}: Bootstrap-Read targets the Server (/1) or Access Control (/2) object "
            "or one of their instances"
        )
    return path


def _allocate(taken: set[int], start: int) -> int:
    candidate = start
    while candidate in taken:
        candidate += 1
    taken.add(candidate)
    return candidate


def _claim(taken: set[int], ident: int, where: str, what: str) -> None:
    if ident in taken:
        raise BootstrapConfigError(where, f"{what} instance {ident} is used twice")
    taken.add(ident)


_CLIENT_KEYS = (
    "ept",
    "delete",
    "discover",
    "read",
    "servers",
    "bootstrap_server",
    "acl",
    "content_format",
)


def parse_client_config(
    endpoint: str, value: Any, *, where: str | None = None, base_dir: FsPath | None = None
) -> BootstrapConfig:
    """Validate one endpoint's configuration (the value under ``clients[endpoint]``)."""
    where = where if where is not None else f"clients[{endpoint!r}]"
    if not isinstance(endpoint, str):
        raise BootstrapConfigError(where, "endpoint name must be a string")
    # Work on a copy: parsing normalises it (file references become PEM) and
    # the copy becomes ``raw``; the caller's document is never modified.
    obj = _object(copy.deepcopy(value), where)
    _keys(obj, where, (), _CLIENT_KEYS)
    ept: int | None = None
    if "ept" in obj and obj["ept"] is not None:
        raw_ept = obj["ept"]
        if not isinstance(raw_ept, int) or isinstance(raw_ept, bool):
            raise BootstrapConfigError(
                f"{where}.ept", f"must be an integer, got {json_type_name(raw_ept)}"
            )
        try:
            ept = parse_endpoint_type(str(raw_ept))
        except EndpointNameError as exc:
            raise BootstrapConfigError(f"{where}.ept", str(exc)) from None
    try:
        validate_endpoint_name(endpoint, ept)
    except EndpointNameError as exc:
        raise BootstrapConfigError(where, f"bad endpoint name: {exc}") from None

    delete = _parse_paths(obj.get("delete", []), f"{where}.delete", parse_delete_path)
    discover = _bool(obj.get("discover", True), f"{where}.discover")
    read = _parse_paths(obj.get("read", []), f"{where}.read", parse_read_path)

    content_format: ContentFormatChoice | None = None
    if "content_format" in obj and obj["content_format"] is not None:
        name = _str(obj["content_format"], f"{where}.content_format").lower()
        if name not in _FORMAT_NAMES:
            raise BootstrapConfigError(
                f"{where}.content_format", f"{name!r}: expected one of {', '.join(_FORMAT_NAMES)}"
            )
        content_format = _FORMAT_NAMES[name]

    security_ids: set[int] = set()
    server_ids: set[int] = set()

    bs_account: BootstrapAccount | None = None
    if obj.get("bootstrap_server") is not None:
        bs = _parse_bootstrap_account(
            obj["bootstrap_server"], f"{where}.bootstrap_server", base_dir
        )
        bs_id = bs.pop("security_instance", 0)
        _claim(security_ids, bs_id, f"{where}.bootstrap_server.security_instance", "Security")
        bs_account = BootstrapAccount(security_instance=bs_id, **bs)

    raw_servers = obj.get("servers", [])
    if not isinstance(raw_servers, list):
        raise BootstrapConfigError(
            f"{where}.servers", f"must be an array, got {json_type_name(raw_servers)}"
        )
    parsed = [
        _parse_server(item, f"{where}.servers[{i}]", base_dir) for i, item in enumerate(raw_servers)
    ]
    ssids: dict[int, int] = {}
    for i, item in enumerate(parsed):
        ssid = item["short_server_id"]
        if ssid in ssids:
            raise BootstrapConfigError(
                f"{where}.servers[{i}].short_server_id",
                f"Short Server ID {ssid} is already used by servers[{ssids[ssid]}]",
            )
        ssids[ssid] = i
        if "security_instance" in item:
            _claim(
                security_ids,
                item["security_instance"],
                f"{where}.servers[{i}].security_instance",
                "Security",
            )
        if "server_instance" in item:
            _claim(
                server_ids,
                item["server_instance"],
                f"{where}.servers[{i}].server_instance",
                "Server",
            )
    if bs_account is None:
        security_ids.add(0)  # kept free for the client's own bootstrap account
    servers: list[LwM2MServerAccount] = []
    for item in parsed:
        if "security_instance" not in item:
            item["security_instance"] = _allocate(security_ids, 1)
        if "server_instance" not in item:
            item["server_instance"] = _allocate(server_ids, 0)
        servers.append(LwM2MServerAccount(**item))

    raw_acl = obj.get("acl", [])
    if not isinstance(raw_acl, list):
        raise BootstrapConfigError(
            f"{where}.acl", f"must be an array, got {json_type_name(raw_acl)}"
        )
    acl_items = [_parse_acl(item, f"{where}.acl[{i}]") for i, item in enumerate(raw_acl)]
    acl_ids: set[int] = set()
    targets: dict[tuple[int, int], int] = {}
    for i, item in enumerate(acl_items):
        target = (item["object_id"], item["instance_id"])
        if target in targets:
            raise BootstrapConfigError(
                f"{where}.acl[{i}]", f"/{target[0]}/{target[1]} already has acl[{targets[target]}]"
            )
        targets[target] = i
        if "acl_instance" in item:
            _claim(
                acl_ids, item["acl_instance"], f"{where}.acl[{i}].acl_instance", "Access Control"
            )
        for ssid in item["rights"]:
            if ssid != 0 and ssid not in ssids:
                raise BootstrapConfigError(
                    f"{where}.acl[{i}].rights", f"Short Server ID {ssid} is not one of the servers"
                )
        owner = item.get("owner")
        if owner is None:
            named = sorted(s for s in item["rights"] if s != 0)
            if len(named) != 1:
                raise BootstrapConfigError(
                    f"{where}.acl[{i}]",
                    "missing key 'owner' (needed unless exactly one server has rights)",
                )
            item["owner"] = named[0]
        elif owner not in ssids and owner != 65535:
            raise BootstrapConfigError(
                f"{where}.acl[{i}].owner", f"Short Server ID {owner} is not one of the servers"
            )
    acl: list[AclEntry] = []
    for item in acl_items:
        if "acl_instance" not in item:
            item["acl_instance"] = _allocate(acl_ids, 0)
        acl.append(AclEntry(**item))

    return BootstrapConfig(
        endpoint=endpoint,
        endpoint_type=ept,
        delete=delete,
        servers=tuple(servers),
        bootstrap_server=bs_account,
        acl=tuple(acl),
        content_format=content_format,
        discover=discover,
        read=read,
        raw=obj,
    )


def parse_config(data: Any, *, base_dir: FsPath | None = None) -> dict[str, BootstrapConfig]:
    """Validate a whole configuration document ``{"clients": {...}}``."""
    obj = _object(data, "")
    _keys(obj, "top level", ("clients",), ())
    clients = _object(obj["clients"], "clients")
    return {ep: parse_client_config(ep, value, base_dir=base_dir) for ep, value in clients.items()}

"""Credential value types and the ``--security FILE`` format.

The server's security store keeps one :class:`SecurityEntry` per endpoint;
the DTLS layer asks it for PSK keys by identity and for X.509 expectations
by endpoint name. Parsing is strict: a security file with a typo must fail
loudly at start-up rather than silently leave a device unauthenticated.

File format (JSON)::

    [
      {"endpoint": "dev-1", "psk": {"identity": "dev-1-id", "key": "00112233"}},
      {"endpoint": "IMEI:490154203237518", "x509": {}},
      {"endpoint": "dev-3", "x509": {"certificate": "-----BEGIN CERTIFICATE-----...",
                                     "ca": ["-----BEGIN CERTIFICATE-----..."],
                                     "names": ["2:dev-3"]}}
    ]

``"x509": {}`` means indirect trust through the server's configured CAs with
the CN check done at Register; ``certificate`` asks for direct trust (byte-exact
match), ``ca`` adds CAs for this endpoint only, ``names`` lists required
Subject CN / SubjectAltName values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding


class CredentialType(IntEnum):
    """How a peer proved its identity (LwM2M Security object, resource 2 values)."""

    PSK = 0
    RAW_PUBLIC_KEY = 1  # RFC 7250: not reachable through pyOpenSSL's bindings (docs/security.md)
    X509 = 2
    NO_SEC = 3


class SecurityConfigError(ValueError):
    """A security file or credential value that cannot be used; the message says where."""


#: PSK identities and keys are bounded so that a store cannot be fed absurd values.
MAX_PSK_IDENTITY_LEN = 128
MAX_PSK_KEY_LEN = 64


@dataclass(frozen=True, slots=True)
class PskCredential:
    """A TLS-PSK identity and its shared key (raw bytes, not hex)."""

    identity: bytes
    key: bytes

    def __post_init__(self) -> None:
        if (
            not isinstance(self.identity, bytes)
            or not 1 <= len(self.identity) <= MAX_PSK_IDENTITY_LEN
        ):
            raise SecurityConfigError(f"PSK identity must be 1-{MAX_PSK_IDENTITY_LEN} bytes")
        if not isinstance(self.key, bytes) or not 1 <= len(self.key) <= MAX_PSK_KEY_LEN:
            raise SecurityConfigError(f"PSK key must be 1-{MAX_PSK_KEY_LEN} bytes")

    def __repr__(self) -> str:
        # Keys never end up in logs through a repr.
        return f"PskCredential(identity={self.identity!r}, key=<{len(self.key)} bytes>)"


@dataclass(frozen=True, slots=True)
class X509Credential:
    """Our own certificate and private key (PEM), plus intermediates to send with it."""

    cert_pem: bytes
    key_pem: bytes
    chain_pems: tuple[bytes, ...] = ()

    def __repr__(self) -> str:
        return f"X509Credential(cert_pem=<{len(self.cert_pem)} bytes>, key_pem=<hidden>)"


@dataclass(frozen=True, slots=True)
class X509Expectation:
    """What a peer's certificate must be.

    ``certificate_der`` set: direct trust, the presented certificate must match it
    byte for byte. Otherwise indirect trust: it must chain to one of ``ca_pems``
    (or the verifier's default CAs when empty) and carry every ``expected_names``
    entry in its Subject CN or SubjectAltName.
    """

    certificate_der: bytes | None = None
    ca_pems: tuple[bytes, ...] = ()
    expected_names: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SecurityEntry:
    """The credentials one endpoint may use; at least one of ``psk``/``x509``."""

    endpoint: str
    psk: PskCredential | None = None
    x509: X509Expectation | None = None


def parse_security_entries(text: str) -> list[SecurityEntry]:
    """Parse the JSON security file format; raises :class:`SecurityConfigError`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SecurityConfigError(
            f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise SecurityConfigError("not valid JSON: nested too deeply") from None
    if not isinstance(data, list):
        raise SecurityConfigError(
            f"top level must be a JSON array of entries, got {json_type_name(data)}"
        )
    entries: list[SecurityEntry] = []
    endpoints: set[str] = set()
    identities: dict[bytes, str] = {}
    for index, item in enumerate(data):
        entry = _parse_entry(item, f"entry {index}")
        if entry.endpoint in endpoints:
            raise SecurityConfigError(f"entry {index}: endpoint {entry.endpoint!r} appears twice")
        endpoints.add(entry.endpoint)
        if entry.psk is not None:
            other = identities.get(entry.psk.identity)
            if other is not None:
                raise SecurityConfigError(
                    f"entry {index}: psk.identity {entry.psk.identity!r} is already used by endpoint {other!r}"
                )
            identities[entry.psk.identity] = entry.endpoint
        entries.append(entry)
    return entries


def load_security_file(path: str | Path) -> list[SecurityEntry]:
    """Read and parse a security file; I/O errors become :class:`SecurityConfigError` too."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SecurityConfigError(f"{path}: cannot read: {exc}") from None
    try:
        return parse_security_entries(text)
    except SecurityConfigError as exc:
        raise SecurityConfigError(f"{path}: {exc}") from None


def json_type_name(value: Any) -> str:
    """How an error message names the JSON type of ``value`` ("a string", "an array", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _check_keys(obj: dict[str, Any], where: str, required: set[str], optional: set[str]) -> None:
    for key in obj:
        if key not in required and key not in optional:
            allowed = ", ".join(sorted(required | optional))
            raise SecurityConfigError(f"{where}: unknown key {key!r} (allowed: {allowed})")
    for key in sorted(required):
        if key not in obj:
            raise SecurityConfigError(f"{where}: missing key {key!r}")


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise SecurityConfigError(f"{where}: must be a string, got {json_type_name(value)}")
    return value


def _parse_entry(item: Any, where: str) -> SecurityEntry:
    if not isinstance(item, dict):
        raise SecurityConfigError(f"{where}: must be an object, got {json_type_name(item)}")
    _check_keys(item, where, {"endpoint"}, {"psk", "x509"})
    endpoint = _string(item["endpoint"], f"{where}: endpoint")
    if not endpoint or len(endpoint.encode("utf-8")) > 255:
        raise SecurityConfigError(f"{where}: endpoint must be 1-255 bytes")
    where = f"{where} ({endpoint!r})"
    psk = _parse_psk(item["psk"], f"{where}: psk") if "psk" in item else None
    x509_expectation = _parse_x509(item["x509"], f"{where}: x509") if "x509" in item else None
    if psk is None and x509_expectation is None:
        raise SecurityConfigError(f"{where}: needs 'psk' or 'x509'")
    return SecurityEntry(endpoint=endpoint, psk=psk, x509=x509_expectation)


def _parse_psk(value: Any, where: str) -> PskCredential:
    if not isinstance(value, dict):
        raise SecurityConfigError(f"{where}: must be an object, got {json_type_name(value)}")
    _check_keys(value, where, {"identity", "key"}, set())
    identity = _string(value["identity"], f"{where}.identity").encode("utf-8")
    if not 1 <= len(identity) <= MAX_PSK_IDENTITY_LEN:
        raise SecurityConfigError(f"{where}.identity: must be 1-{MAX_PSK_IDENTITY_LEN} bytes")
    key_hex = _string(value["key"], f"{where}.key")
    if len(key_hex) % 2 or not all(c in "0123456789abcdefABCDEF" for c in key_hex):
        raise SecurityConfigError(f"{where}.key: must be an even number of hex digits")
    key = bytes.fromhex(key_hex)
    if not 1 <= len(key) <= MAX_PSK_KEY_LEN:
        raise SecurityConfigError(f"{where}.key: must be 1-{MAX_PSK_KEY_LEN} bytes")
    return PskCredential(identity=identity, key=key)


def _parse_pem_certificate(value: Any, where: str) -> x509.Certificate:
    text = _string(value, where)
    try:
        return x509.load_pem_x509_certificate(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise SecurityConfigError(f"{where}: not a PEM certificate") from None


def _parse_x509(value: Any, where: str) -> X509Expectation:
    if not isinstance(value, dict):
        raise SecurityConfigError(f"{where}: must be an object, got {json_type_name(value)}")
    _check_keys(value, where, set(), {"certificate", "ca", "names"})
    certificate_der: bytes | None = None
    if "certificate" in value:
        cert = _parse_pem_certificate(value["certificate"], f"{where}.certificate")
        certificate_der = cert.public_bytes(Encoding.DER)
    ca_pems: list[bytes] = []
    if "ca" in value:
        cas = value["ca"]
        if not isinstance(cas, list):
            raise SecurityConfigError(
                f"{where}.ca: must be an array of PEM strings, got {json_type_name(cas)}"
            )
        for i, item in enumerate(cas):
            ca_pems.append(
                _parse_pem_certificate(item, f"{where}.ca[{i}]").public_bytes(Encoding.PEM)
            )
    names: list[str] = []
    if "names" in value:
        raw_names = value["names"]
        if not isinstance(raw_names, list):
            raise SecurityConfigError(
                f"{where}.names: must be an array of strings, got {json_type_name(raw_names)}"
            )
        for i, item in enumerate(raw_names):
            name = _string(item, f"{where}.names[{i}]")
            if not name:
                raise SecurityConfigError(f"{where}.names[{i}]: must not be empty")
            names.append(name)
    return X509Expectation(
        certificate_der=certificate_der, ca_pems=tuple(ca_pems), expected_names=tuple(names)
    )

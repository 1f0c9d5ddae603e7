"""Import of Leshan's bootstrap store JSON."""

from __future__ import annotations

import json
from pathlib import Path as FsPath
from typing import Any

import pytest

from lwm2m.bootstrap.config_file import load_config_file
from lwm2m.bootstrap.leshan import import_leshan_store, looks_like_leshan_store
from lwm2m.model.path import Path
from lwm2m.protocol.bootstrap_config import BootstrapConfigError, ContentFormatChoice, SecurityMode

LESHAN_STORE: dict[str, Any] = {
    "dev-1": {
        "autoIdForSecurityObject": False,
        "contentFormat": "TLV",
        "toDelete": ["/0", "/1"],
        "servers": {
            "0": {
                "shortId": 123,
                "lifetime": 20,
                "defaultMinPeriod": 1,
                "notifIfDisabled": True,
                "binding": ["U"],
            }
        },
        "security": {
            "0": {
                "uri": "coap://localhost:5783",
                "bootstrapServer": True,
                "securityMode": "NO_SEC",
                "publicKeyOrId": [],
                "serverPublicKey": [],
                "secretKey": [],
                "clientOldOffTime": 1,
                "bootstrapServerAccountTimeout": 0,
            },
            "1": {
                "uri": "coaps://localhost:5684",
                "bootstrapServer": False,
                "securityMode": "PSK",
                "publicKeyOrId": [100, 101, 118],
                "serverPublicKey": [],
                "secretKey": [-1, 1, 2],
                "smsSecurityMode": "NO_SEC",
                "serverSmsNumber": "",
                "serverId": 123,
                "clientOldOffTime": 1,
            },
        },
        "acls": {
            "0": {
                "objectId": 3,
                "objectInstanceId": 0,
                "acls": {"123": 15},
                "AccessControlOwner": 123,
            }
        },
    }
}


def test_import_keeps_instance_ids_and_values() -> None:
    assert looks_like_leshan_store(LESHAN_STORE)
    cfg = import_leshan_store(LESHAN_STORE)["dev-1"]
    assert cfg.delete == (Path(0), Path(1))
    assert cfg.content_format is ContentFormatChoice.TLV
    assert cfg.bootstrap_server is not None
    assert cfg.bootstrap_server.uri == "coap://localhost:5783"
    assert cfg.bootstrap_server.hold_off == 1
    (server,) = cfg.servers
    assert server.short_server_id == 123 and server.lifetime == 20 and server.binding == "U"
    assert (server.security_instance, server.server_instance) == (1, 0)
    assert server.security.mode is SecurityMode.PSK
    assert server.security.public_key_or_identity == b"dev"
    assert server.security.secret_key == b"\xff\x01\x02"  # signed Java bytes
    (acl,) = cfg.acl
    assert (acl.object_id, acl.instance_id, dict(acl.rights), acl.owner) == (3, 0, {123: 15}, 123)


def test_load_config_file_detects_leshan(tmp_path: FsPath) -> None:
    file = tmp_path / "bootstrap.json"
    file.write_text(json.dumps(LESHAN_STORE))
    assert set(load_config_file(file)) == {"dev-1"}


def _broken(path: list[str], value: Any) -> dict[str, Any]:
    store = json.loads(json.dumps(LESHAN_STORE))
    node = store["dev-1"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return store


@pytest.mark.parametrize(
    ("path", "value", "fragment"),
    [
        (["security", "1", "securityMode"], "RPK", "securityMode"),
        (["security", "1", "serverId"], 999, "no servers entry has shortId 999"),
        (["security", "1", "secretKey"], [1, 300], "secretKey[1]"),
        (["servers", "0", "shortId"], "x", "shortId"),
        (["contentFormat"], "LWM2M_CBOR", "contentFormat"),
        (["oscore"], {"0": {}}, "OSCORE"),
        (["servers", "0", "lifetime"], -5, "lifetime"),
    ],
)
def test_import_errors(path: list[str], value: Any, fragment: str) -> None:
    with pytest.raises(BootstrapConfigError) as info:
        import_leshan_store(_broken(path, value))
    assert fragment in str(info.value)


def test_server_without_security_is_refused() -> None:
    store = _broken(["servers", "1"], {"shortId": 5})
    with pytest.raises(BootstrapConfigError, match="Short Server ID 5 has no security entry"):
        import_leshan_store(store)


def test_x509_import_converts_der_arrays() -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    data = FsPath(__file__).parent / "data"
    cert = x509.load_pem_x509_certificate((data / "device.crt").read_bytes())
    key = serialization.load_pem_private_key((data / "device.key").read_bytes(), None)
    cert_der = cert.public_bytes(serialization.Encoding.DER)
    key_der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    server_der = x509.load_pem_x509_certificate((data / "server.crt").read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    signed = [b - 256 if b > 127 else b for b in cert_der]  # Java's signed bytes
    store = _broken(
        ["security", "1"],
        {
            "uri": "coaps://localhost:5684",
            "securityMode": "X509",
            "publicKeyOrId": signed,
            "secretKey": list(key_der),
            "serverPublicKey": server_der.hex(),
            "serverId": 123,
        },
    )
    (server,) = import_leshan_store(store)["dev-1"].servers
    assert server.security.mode is SecurityMode.CERTIFICATE
    assert server.security.public_key_or_identity == cert_der
    assert server.security.secret_key == key_der
    assert server.security.server_public_key == server_der

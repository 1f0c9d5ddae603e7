"""Bootstrap configuration parsing: valid shapes, instance allocation, precise errors."""

from __future__ import annotations

import json
from pathlib import Path as FsPath
from typing import Any

import pytest

from lwm2m.bootstrap.config_file import load_config_file
from lwm2m.model.path import Path
from lwm2m.protocol.bootstrap_config import (
    BootstrapConfigError,
    ContentFormatChoice,
    SecurityMode,
    parse_config,
    parse_rights,
    rights_letters,
)

DATA = FsPath(__file__).parent / "data"


def _doc(**client: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "servers": [{"short_server_id": 101, "uri": "coap://127.0.0.1:5683"}],
    }
    base.update(client)
    return {"clients": {"dev-1": base}}


def _error(doc: Any) -> BootstrapConfigError:
    with pytest.raises(BootstrapConfigError) as info:
        parse_config(doc)
    return info.value


def test_minimal_config_defaults_and_allocation() -> None:
    cfg = parse_config(_doc())["dev-1"]
    assert cfg.endpoint == "dev-1"
    assert cfg.delete == ()
    (server,) = cfg.servers
    assert server.security.mode is SecurityMode.NO_SEC
    # Security instance 0 stays free for the client's own bootstrap account.
    assert (server.security_instance, server.server_instance) == (1, 0)
    assert server.lifetime == 86400 and server.binding == "U"


def test_full_config_issue_example() -> None:
    doc = {
        "clients": {
            "IMEI:490154203237518": {
                "ept": 2,
                "delete": ["/0", "/1"],
                "content_format": "senml+cbor",
                "servers": [
                    {
                        "short_server_id": 101,
                        "uri": "coap://127.0.0.1:5683",
                        "lifetime": 300,
                        "binding": "U",
                        "security": {"mode": "nosec"},
                    },
                    {
                        "short_server_id": 102,
                        "uri": "coaps://127.0.0.1:5684",
                        "security": {"mode": "psk", "identity": "dev", "key": "00aabb"},
                        "server_instance": 5,
                    },
                ],
                "bootstrap_server": {"uri": "coap://127.0.0.1:5783"},
                "acl": [
                    {"object": 3, "instance": 0, "rights": {"101": "RWE", "102": 1}, "owner": 102},
                    {"object": 1, "instance": 0, "rights": {"101": "RWD"}},
                ],
            }
        }
    }
    cfg = parse_config(doc)["IMEI:490154203237518"]
    assert cfg.endpoint_type == 2
    assert cfg.delete == (Path(0), Path(1))
    assert cfg.content_format is ContentFormatChoice.SENML_CBOR
    assert cfg.bootstrap_server is not None and cfg.bootstrap_server.security_instance == 0
    a, b = cfg.servers
    assert (a.security_instance, a.server_instance) == (1, 0)
    assert (b.security_instance, b.server_instance) == (2, 5)
    assert b.security.mode is SecurityMode.PSK
    assert b.security.public_key_or_identity == b"dev" and b.security.secret_key == b"\x00\xaa\xbb"
    acl1, acl2 = cfg.acl
    assert dict(acl1.rights) == {101: 1 | 2 | 4, 102: 1} and acl1.owner == 102
    assert acl2.owner == 101  # the only server with rights
    assert (acl1.acl_instance, acl2.acl_instance) == (0, 1)
    assert "<hidden>" in json.dumps(cfg.to_json(redact=True))
    assert "00aabb" in json.dumps(cfg.to_json())
    assert "00aabb" not in repr(b.security)


def test_x509_from_files(tmp_path: FsPath) -> None:
    doc = _doc(
        servers=[
            {
                "short_server_id": 1,
                "uri": "coaps://localhost:5684",
                "security": {
                    "mode": "x509",
                    "certificate": str(DATA / "device.crt"),
                    "key": str(DATA / "device.key"),
                    "server_certificate": "server.crt",
                },
            }
        ]
    )
    (tmp_path / "server.crt").write_bytes((DATA / "server.crt").read_bytes())
    file = tmp_path / "bs.json"
    file.write_text(json.dumps(doc))
    (server,) = load_config_file(file)["dev-1"].servers
    assert server.security.mode is SecurityMode.CERTIFICATE
    assert server.security.public_key_or_identity[:1] == b"\x30"  # DER SEQUENCE
    assert server.security.secret_key[:1] == b"\x30"
    # The stored document carries the PEM, not the file names, and reparses alike.
    raw = load_config_file(file)["dev-1"].to_json()
    assert raw["servers"][0]["security"]["certificate"].startswith("-----BEGIN CERTIFICATE")
    again = parse_config({"clients": {"dev-1": raw}})["dev-1"].servers[0]
    assert again.security == server.security
    assert doc["clients"]["dev-1"]["servers"][0]["security"]["server_certificate"] == "server.crt"


def test_x509_pem_inline() -> None:
    doc = _doc(
        servers=[
            {
                "short_server_id": 1,
                "uri": "coaps://localhost",
                "security": {
                    "mode": "x509",
                    "certificate": (DATA / "device.crt").read_text(),
                    "key": (DATA / "device.key").read_text(),
                    "server_certificate": (DATA / "server.crt").read_text(),
                },
            }
        ]
    )
    assert parse_config(doc)["dev-1"].servers[0].security.server_public_key


@pytest.mark.parametrize(
    ("doc", "where", "fragment"),
    [
        ([], "", "must be an object"),
        ({"client": {}}, "top level", "unknown key 'client'"),
        (
            {"clients": {"dev-1": {"servers": [{"uri": "coap://h"}]}}},
            "clients['dev-1'].servers[0]",
            "missing key 'short_server_id'",
        ),
        (
            _doc(servers=[{"short_server_id": 0, "uri": "coap://h"}]),
            "clients['dev-1'].servers[0].short_server_id",
            "out of range",
        ),
        (
            _doc(servers=[{"short_server_id": 1, "uri": "http://h"}]),
            "clients['dev-1'].servers[0].uri",
            "scheme",
        ),
        (
            _doc(servers=[{"short_server_id": 1, "uri": "coap://"}]),
            "clients['dev-1'].servers[0].uri",
            "no host",
        ),
        (
            _doc(servers=[{"short_server_id": 1, "uri": "coap://h:99999"}]),
            "clients['dev-1'].servers[0].uri",
            "not a URI",
        ),
        (
            _doc(servers=[{"short_server_id": 1, "uri": "coaps://h"}]),
            "clients['dev-1'].servers[0].uri",
            "nosec",
        ),
        (
            _doc(servers=[{"short_server_id": 1, "uri": "coap://h", "lifetime": "300"}]),
            "clients['dev-1'].servers[0].lifetime",
            "integer",
        ),
        (
            _doc(servers=[{"short_server_id": 1, "uri": "coap://h", "binding": "X"}]),
            "clients['dev-1'].servers[0].binding",
            "binding",
        ),
        (
            _doc(servers=[{"short_server_id": 1, "uri": "coap://h", "colour": 1}]),
            "clients['dev-1'].servers[0]",
            "unknown key 'colour'",
        ),
        (
            _doc(
                servers=[
                    {
                        "short_server_id": 1,
                        "uri": "coaps://h",
                        "security": {"mode": "psk", "identity": "i", "key": "abc"},
                    }
                ]
            ),
            "clients['dev-1'].servers[0].security.key",
            "hex",
        ),
        (
            _doc(
                servers=[
                    {
                        "short_server_id": 1,
                        "uri": "coaps://h",
                        "security": {"mode": "psk", "key": "ab"},
                    }
                ]
            ),
            "clients['dev-1'].servers[0].security",
            "missing key 'identity'",
        ),
        (
            _doc(servers=[{"short_server_id": 1, "uri": "coaps://h", "security": {"mode": "rpk"}}]),
            "clients['dev-1'].servers[0].security.mode",
            "not a security mode",
        ),
        (
            _doc(
                servers=[
                    {
                        "short_server_id": 1,
                        "uri": "coaps://h",
                        "security": {
                            "mode": "x509",
                            "certificate": "-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----",
                            "key": "k",
                            "server_certificate": "s",
                        },
                    }
                ]
            ),
            "clients['dev-1'].servers[0].security.certificate",
            "not an X.509",
        ),
        (
            _doc(
                servers=[
                    {"short_server_id": 1, "uri": "coap://h"},
                    {"short_server_id": 1, "uri": "coap://g"},
                ]
            ),
            "clients['dev-1'].servers[1].short_server_id",
            "already used by servers[0]",
        ),
        (
            _doc(
                servers=[
                    {"short_server_id": 1, "uri": "coap://h", "server_instance": 2},
                    {"short_server_id": 2, "uri": "coap://g", "server_instance": 2},
                ]
            ),
            "clients['dev-1'].servers[1].server_instance",
            "used twice",
        ),
        (_doc(delete=["/0/1/2"]), "clients['dev-1'].delete[0]", "Bootstrap-Delete"),
        (_doc(delete=["/x"]), "clients['dev-1'].delete[0]", "not a decimal"),
        (_doc(delete="/0"), "clients['dev-1'].delete", "array"),
        (_doc(ept=7), "clients['dev-1'].ept", "reserved"),
        (_doc(ept=2), "clients['dev-1']", "bad endpoint name"),
        (_doc(content_format="xml"), "clients['dev-1'].content_format", "expected one of"),
        (
            _doc(acl=[{"object": 3, "instance": 0, "rights": {"7": "R"}}]),
            "clients['dev-1'].acl[0].rights",
            "not one of the servers",
        ),
        (
            _doc(acl=[{"object": 3, "instance": 0, "rights": {"101": "RX"}}]),
            "clients['dev-1'].acl[0].rights['101']",
            "RWEDC",
        ),
        (
            _doc(acl=[{"object": 3, "instance": 0, "rights": {"0": "R"}}]),
            "clients['dev-1'].acl[0]",
            "missing key 'owner'",
        ),
        (
            _doc(
                acl=[
                    {"object": 3, "instance": 0, "rights": {"101": 1}},
                    {"object": 3, "instance": 0, "rights": {"101": 1}},
                ]
            ),
            "clients['dev-1'].acl[1]",
            "already has acl[0]",
        ),
        (
            _doc(
                bootstrap_server={"uri": "coap://h", "security_instance": 1},
                servers=[{"short_server_id": 1, "uri": "coap://g", "security_instance": 1}],
            ),
            "clients['dev-1'].servers[0].security_instance",
            "used twice",
        ),
    ],
)
def test_errors_name_the_field(doc: Any, where: str, fragment: str) -> None:
    err = _error(doc)
    assert err.where == where, str(err)
    assert fragment in err.problem, str(err)
    assert str(err).startswith(where)


def test_rights_parsing() -> None:
    assert parse_rights("RWEDC", "x") == 31
    assert parse_rights(5, "x") == 5
    assert parse_rights("", "x") == 0
    assert rights_letters(0b01011) == "RWD"
    for bad in ("RR", 32, -1, True, None):
        with pytest.raises(BootstrapConfigError):
            parse_rights(bad, "x")


def test_load_file_errors(tmp_path: FsPath) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(BootstrapConfigError, match="cannot read"):
        load_config_file(missing)
    bad = tmp_path / "bad.json"
    bad.write_text("{oops")
    with pytest.raises(BootstrapConfigError, match=r"not JSON.*line 1"):
        load_config_file(bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(_doc(delete=[5])))
    with pytest.raises(BootstrapConfigError) as info:
        load_config_file(wrong)
    assert str(info.value).startswith(f"{wrong}: clients['dev-1'].delete[0]")


def test_empty_file_is_an_empty_configuration(tmp_path: FsPath) -> None:
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    assert load_config_file(empty) == {}
    no_clients = tmp_path / "no-clients.json"
    no_clients.write_text('{"clients": {}}')
    assert load_config_file(no_clients) == {}
    # Other documents without "clients" still say what is missing.
    other = tmp_path / "other.json"
    other.write_text('{"client": {}}')
    with pytest.raises(BootstrapConfigError, match="unknown key 'client'"):
        load_config_file(other)


def test_fingerprint_changes_with_content() -> None:
    a = parse_config(_doc())["dev-1"]
    b = parse_config(_doc())["dev-1"]
    c = parse_config(_doc(delete=["/1"]))["dev-1"]
    assert a.fingerprint == b.fingerprint != c.fingerprint

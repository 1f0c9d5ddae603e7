"""The ``--security FILE`` format: what parses, and the precise error for what does not."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lwm2m.security.certs import make_ca, make_cert
from lwm2m.security.credentials import (
    PskCredential,
    SecurityConfigError,
    SecurityEntry,
    X509Expectation,
    load_security_file,
    parse_security_entries,
)


def test_parses_psk_and_x509_entries() -> None:
    text = json.dumps(
        [
            {"endpoint": "dev-1", "psk": {"identity": "dev-1-id", "key": "00112233"}},
            {"endpoint": "IMEI:490154203237518", "x509": {}},
        ]
    )
    assert parse_security_entries(text) == [
        SecurityEntry("dev-1", psk=PskCredential(b"dev-1-id", bytes.fromhex("00112233"))),
        SecurityEntry("IMEI:490154203237518", x509=X509Expectation()),
    ]


def test_parses_direct_and_indirect_x509_details() -> None:
    ca = make_ca()
    device = make_cert(ca, "1:dev-3")
    text = json.dumps(
        [
            {
                "endpoint": "dev-3",
                "x509": {
                    "certificate": device.cert_pem.decode(),
                    "ca": [ca.cert_pem.decode()],
                    "names": ["1:dev-3"],
                },
            }
        ]
    )
    [entry] = parse_security_entries(text)
    assert entry.x509 == X509Expectation(
        certificate_der=device.der, ca_pems=(ca.cert_pem,), expected_names=("1:dev-3",)
    )


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            "{",
            "not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2",
        ),
        ("{}", "top level must be a JSON array of entries, got an object"),
        ("[1]", "entry 0: must be an object, got a number"),
        ('[{"psk": {}}]', "entry 0: missing key 'endpoint'"),
        ('[{"endpoint": 5, "x509": {}}]', "entry 0: endpoint: must be a string, got a number"),
        ('[{"endpoint": "", "x509": {}}]', "entry 0: endpoint must be 1-255 bytes"),
        ('[{"endpoint": "a"}]', "entry 0 ('a'): needs 'psk' or 'x509'"),
        (
            '[{"endpoint": "a", "x509": {}, "pks": {}}]',
            "entry 0: unknown key 'pks' (allowed: endpoint, psk, x509)",
        ),
        ('[{"endpoint": "a", "psk": []}]', "entry 0 ('a'): psk: must be an object, got an array"),
        ('[{"endpoint": "a", "psk": {"key": "00"}}]', "entry 0 ('a'): psk: missing key 'identity'"),
        ('[{"endpoint": "a", "psk": {"identity": "i"}}]', "entry 0 ('a'): psk: missing key 'key'"),
        (
            '[{"endpoint": "a", "psk": {"identity": "i", "key": "0g"}}]',
            "entry 0 ('a'): psk.key: must be an even number of hex digits",
        ),
        (
            '[{"endpoint": "a", "psk": {"identity": "i", "key": "123"}}]',
            "entry 0 ('a'): psk.key: must be an even number of hex digits",
        ),
        (
            '[{"endpoint": "a", "psk": {"identity": "i", "key": ""}}]',
            "entry 0 ('a'): psk.key: must be 1-64 bytes",
        ),
        (
            '[{"endpoint": "a", "psk": {"identity": "", "key": "00"}}]',
            "entry 0 ('a'): psk.identity: must be 1-128 bytes",
        ),
        (
            '[{"endpoint": "a", "psk": {"identity": 1, "key": "00"}}]',
            "entry 0 ('a'): psk.identity: must be a string, got a number",
        ),
        (
            '[{"endpoint": "a", "psk": {"identity": "i", "key": "00", "hint": "x"}}]',
            "entry 0 ('a'): psk: unknown key 'hint' (allowed: identity, key)",
        ),
        ('[{"endpoint": "a", "x509": []}]', "entry 0 ('a'): x509: must be an object, got an array"),
        (
            '[{"endpoint": "a", "x509": {"certificate": "nope"}}]',
            "entry 0 ('a'): x509.certificate: not a PEM certificate",
        ),
        (
            '[{"endpoint": "a", "x509": {"ca": "x"}}]',
            "entry 0 ('a'): x509.ca: must be an array of PEM strings, got a string",
        ),
        (
            '[{"endpoint": "a", "x509": {"ca": [null]}}]',
            "entry 0 ('a'): x509.ca[0]: must be a string, got null",
        ),
        (
            '[{"endpoint": "a", "x509": {"names": [""]}}]',
            "entry 0 ('a'): x509.names[0]: must not be empty",
        ),
        (
            '[{"endpoint": "a", "x509": {"names": "n"}}]',
            "entry 0 ('a'): x509.names: must be an array of strings, got a string",
        ),
        (
            '[{"endpoint": "a", "x509": {"crl": []}}]',
            "entry 0 ('a'): x509: unknown key 'crl' (allowed: ca, certificate, names)",
        ),
        (
            '[{"endpoint": "a", "x509": {}}, {"endpoint": "a", "x509": {}}]',
            "entry 1: endpoint 'a' appears twice",
        ),
        (
            '[{"endpoint": "a", "psk": {"identity": "i", "key": "00"}},'
            ' {"endpoint": "b", "psk": {"identity": "i", "key": "01"}}]',
            "entry 1: psk.identity b'i' is already used by endpoint 'a'",
        ),
    ],
)
def test_precise_errors(document: str, message: str) -> None:
    with pytest.raises(SecurityConfigError) as info:
        parse_security_entries(document)
    assert str(info.value) == message


@given(st.text(max_size=200))
def test_arbitrary_text_parses_or_raises_security_config_error(text: str) -> None:
    with contextlib.suppress(SecurityConfigError):
        parse_security_entries(text)


def test_deeply_nested_json_is_rejected() -> None:
    with pytest.raises(SecurityConfigError):
        parse_security_entries("[" * 100_000 + "]" * 100_000)


def test_load_security_file(tmp_path: Path) -> None:
    path = tmp_path / "security.json"
    path.write_text('[{"endpoint": "dev-1", "psk": {"identity": "id", "key": "ab"}}]')
    assert load_security_file(path)[0].psk == PskCredential(b"id", b"\xab")
    path.write_text("[1]")
    with pytest.raises(SecurityConfigError, match=r"security.json: entry 0: must be an object"):
        load_security_file(path)
    with pytest.raises(SecurityConfigError, match="cannot read"):
        load_security_file(tmp_path / "missing.json")


def test_psk_repr_hides_the_key() -> None:
    assert "secret" not in repr(PskCredential(b"id", b"secret"))
    assert repr(PskCredential(b"id", b"secret")) == "PskCredential(identity=b'id', key=<6 bytes>)"


def test_psk_credential_validates() -> None:
    with pytest.raises(SecurityConfigError):
        PskCredential(b"", b"k")
    with pytest.raises(SecurityConfigError):
        PskCredential(b"i", b"")

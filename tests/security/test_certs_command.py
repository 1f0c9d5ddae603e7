"""``lwm2m certs`` and the certificate helpers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from lwm2m.cli import main
from lwm2m.security.certs import make_ca, make_cert
from lwm2m.security.x509 import (
    certificate_matches_host,
    check_registration_name,
    load_certificate,
    verify_chain,
)


def test_certs_command_writes_a_consistent_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pki"
    rc = main(
        [
            "certs",
            "--out",
            str(out),
            "--endpoint",
            "dev-1",
            "--endpoint",
            "IMEI:490154203237518",
            "--ept",
            "2",
        ]
    )
    assert rc == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "ca-key.pem",
        "ca.pem",
        "device-IMEI_490154203237518-key.pem",
        "device-IMEI_490154203237518.pem",
        "device-dev-1-key.pem",
        "device-dev-1.pem",
        "server-key.pem",
        "server.pem",
    ]
    ca = load_certificate((out / "ca.pem").read_bytes())
    server = load_certificate((out / "server.pem").read_bytes())
    device = load_certificate((out / "device-IMEI_490154203237518.pem").read_bytes())
    now = datetime.now(UTC)
    verify_chain(server, [ca], now)
    verify_chain(device, [ca], now)
    check_registration_name(device, 2, "IMEI:490154203237518")
    assert certificate_matches_host(server, "localhost")
    assert certificate_matches_host(server, "127.0.0.1")
    assert isinstance(device.public_key(), ec.EllipticCurvePublicKey)
    assert (out / "device-dev-1-key.pem").stat().st_mode & 0o077 == 0
    assert "wrote" in capsys.readouterr().out


def test_certs_command_reuses_the_ca_and_keeps_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certs", "--out", str(tmp_path), "--server-name", "lwm2m.example.test"]) == 0
    first_ca = (tmp_path / "ca.pem").read_bytes()
    first_server = (tmp_path / "server.pem").read_bytes()
    server = load_certificate(first_server)
    assert certificate_matches_host(server, "lwm2m.example.test")
    assert not certificate_matches_host(server, "localhost")
    assert (tmp_path / "device-dev-1.pem").exists()  # default device
    assert main(["certs", "--out", str(tmp_path), "--endpoint", "dev-2"]) == 0
    assert (tmp_path / "ca.pem").read_bytes() == first_ca
    assert (tmp_path / "server.pem").read_bytes() == first_server
    check_registration_name(
        load_certificate((tmp_path / "device-dev-2.pem").read_bytes()), None, "dev-2"
    )
    assert "reused" in capsys.readouterr().out
    assert main(["certs", "--out", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "server.pem").read_bytes() != first_server


@pytest.mark.parametrize(
    "args",
    [
        ["--days", "0"],
        ["--ept", "256"],
        ["--endpoint", ""],
        ["--endpoint", "a:b", "--endpoint", "a_b"],
    ],
)
def test_certs_command_rejects_bad_arguments(tmp_path: Path, args: list[str]) -> None:
    assert main(["certs", "--out", str(tmp_path), *args]) == 2


def test_make_cert_shapes() -> None:
    ca = make_ca("root")
    leaf = make_cert(ca, "1:dev-1", ["a.example", "192.0.2.1"])
    assert leaf.cert.issuer == ca.cert.subject
    san = leaf.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["a.example"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["192.0.2.1"]
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not leaf.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    self_signed = make_cert(None, "me")
    assert self_signed.cert.issuer == self_signed.cert.subject

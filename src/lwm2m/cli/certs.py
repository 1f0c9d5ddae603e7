"""``lwm2m certs``: a test CA, a server certificate and device certificates.

Re-running in the same directory reuses the CA (so new devices chain to the
same root) and keeps existing files unless ``--force`` is given.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from lwm2m.security.certs import IssuedCertificate, make_ca, make_cert
from lwm2m.security.x509 import CertificateError, expected_cn, load_certificate

DEFAULT_SERVER_NAMES = ("localhost", "127.0.0.1")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="directory for the PEM files")
    parser.add_argument(
        "--endpoint",
        action="append",
        default=None,
        metavar="EP",
        help="device Endpoint Client Name (repeatable; default dev-1)",
    )
    parser.add_argument(
        "--ept",
        type=int,
        default=None,
        metavar="N",
        help="Endpoint Client Name Type: device CN becomes 'N:EP' (default: CN is EP)",
    )
    parser.add_argument(
        "--server-name",
        action="append",
        default=None,
        metavar="NAME",
        help="DNS name or IP for the server certificate SAN (repeatable; default localhost, 127.0.0.1)",
    )
    parser.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    parser.add_argument(
        "--force", action="store_true", help="overwrite existing server/device files"
    )


def _safe_filename(endpoint: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", endpoint)


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.write_bytes(data)
    if private:
        path.chmod(0o600)


def _load_ca(cert_path: Path, key_path: Path) -> IssuedCertificate:
    cert = load_certificate(cert_path.read_bytes())
    key = load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"{key_path}: not an EC private key")
    return IssuedCertificate(cert=cert, key=key)


def _emit(out: Path, stem: str, issued: IssuedCertificate, force: bool) -> str:
    cert_path, key_path = out / f"{stem}.pem", out / f"{stem}-key.pem"
    if not force and (cert_path.exists() or key_path.exists()):
        return f"kept     {cert_path} (use --force to replace)"
    _write(cert_path, issued.cert_pem)
    _write(key_path, issued.key_pem, private=True)
    return f"wrote    {cert_path}, {key_path}"


def run(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    out: Path = args.out
    if args.days <= 0:
        print("lwm2m certs: --days must be positive", file=sys.stderr)
        return 2
    if args.ept is not None and not 0 <= args.ept <= 255:
        print("lwm2m certs: --ept must be 0-255", file=sys.stderr)
        return 2
    endpoints: list[str] = args.endpoint or ["dev-1"]
    if any(not ep for ep in endpoints):
        print("lwm2m certs: --endpoint must not be empty", file=sys.stderr)
        return 2
    stems = [_safe_filename(ep) for ep in endpoints]
    if len(set(stems)) != len(stems):
        print("lwm2m certs: two --endpoint values map to the same file name", file=sys.stderr)
        return 2
    server_names: list[str] = args.server_name or list(DEFAULT_SERVER_NAMES)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"lwm2m certs: cannot create {out}: {exc}", file=sys.stderr)
        return 1
    start = datetime.now(UTC) - timedelta(minutes=5)
    end = start + timedelta(days=args.days)
    lines: list[str] = []
    try:
        ca_cert, ca_key = out / "ca.pem", out / "ca-key.pem"
        if ca_cert.exists() and ca_key.exists():
            ca = _load_ca(ca_cert, ca_key)
            lines.append(f"reused   {ca_cert}")
        else:
            ca = make_ca(not_before=start, not_after=end + timedelta(days=1))
            _write(ca_cert, ca.cert_pem)
            _write(ca_key, ca.key_pem, private=True)
            lines.append(f"wrote    {ca_cert}, {ca_key}")
        server = make_cert(ca, server_names[0], server_names, start, end, client=False)
        lines.append(_emit(out, "server", server, args.force))
        for ep in endpoints:
            device = make_cert(ca, expected_cn(args.ept, ep), (), start, end, server=False)
            lines.append(_emit(out, f"device-{_safe_filename(ep)}", device, args.force))
    except (OSError, ValueError, CertificateError) as exc:
        print(f"lwm2m certs: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0

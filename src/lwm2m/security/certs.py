"""Test certificates: a CA, server and device certificates (EC P-256).

For local setups (``lwm2m certs``) and for tests everywhere. Not a PKI: no
revocation, no serial bookkeeping beyond random serials.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_VALIDITY = timedelta(days=365)


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A certificate with its private key; ``cert_pem``/``key_pem``/``der`` for the wire."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(Encoding.PEM)

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(Encoding.DER)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _general_name(value: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(value))
    except ValueError:
        return x509.DNSName(value)


def _window(not_before: datetime | None, not_after: datetime | None) -> tuple[datetime, datetime]:
    start = not_before if not_before is not None else datetime.now(UTC) - timedelta(minutes=5)
    end = not_after if not_after is not None else start + DEFAULT_VALIDITY
    return start, end


def _builder(
    cn: str,
    issuer_name: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    start: datetime,
    end: datetime,
    *,
    ca: bool,
) -> x509.CertificateBuilder:
    """What a CA and an end-entity certificate share; only their key usages differ.

    A CA signs certificates (and CRLs); an end entity signs its handshakes and,
    for ECDHE with an ECDSA key, agrees keys.
    """
    return (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=not ca,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def make_ca(
    cn: str = "lwm2m test CA",
    *,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    issuer: IssuedCertificate | None = None,
) -> IssuedCertificate:
    """A CA certificate: self-signed, or an intermediate when ``issuer`` is given."""
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _window(not_before, not_after)
    signer_key = issuer.key if issuer is not None else key
    issuer_name = issuer.cert.subject if issuer is not None else _name(cn)
    builder = _builder(cn, issuer_name, key, start, end, ca=True)
    if issuer is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
    return IssuedCertificate(cert=builder.sign(signer_key, hashes.SHA256()), key=key)


def make_cert(
    ca: IssuedCertificate | None,
    cn: str,
    sans: Sequence[str] = (),
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    *,
    server: bool = True,
    client: bool = True,
) -> IssuedCertificate:
    """An end-entity certificate with Subject CN ``cn`` and SubjectAltName ``sans``.

    ``sans`` entries that parse as IP addresses become IP SANs, the rest DNS
    SANs; no SAN extension when empty. ``ca=None`` makes it self-signed.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    start, end = _window(not_before, not_after)
    usages = [
        u
        for u, on in (
            (ExtendedKeyUsageOID.SERVER_AUTH, server),
            (ExtendedKeyUsageOID.CLIENT_AUTH, client),
        )
        if on
    ]
    issuer_name = ca.cert.subject if ca is not None else _name(cn)
    builder = _builder(cn, issuer_name, key, start, end, ca=False)
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([_general_name(s) for s in sans]), critical=False
        )
    if ca is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    signer = ca.key if ca is not None else key
    return IssuedCertificate(cert=builder.sign(signer, hashes.SHA256()), key=key)

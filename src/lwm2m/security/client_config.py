"""From an LwM2M Security object instance (/0/x) to a DTLS client configuration.

Resources used: 2 Security Mode, 3 Public Key or Identity, 4 Server Public
Key, 5 Secret Key, and (LwM2M 1.1) 15 Certificate Usage. Certificates and
keys are DER in the object (PEM is accepted too, for hand-written configs).

Certificate mode, per seed 000 change 4: the Server Public Key holds either
the server's own certificate (direct trust: exact match) or a CA certificate
(indirect trust: chain to it and name the host of the server URI). Certificate
Usage says which (0 CA constraint and 2 trust anchor assertion: a CA; 1
service certificate constraint and 3 domain-issued certificate: the server's
certificate); without it, a certificate with the CA flag is taken as a CA.
"""

from __future__ import annotations

from enum import IntEnum

from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_der_private_key,
    load_pem_private_key,
)

from lwm2m.coap.dtls import DtlsClientConfig
from lwm2m.security.credentials import (
    CredentialType,
    PskCredential,
    SecurityConfigError,
    X509Credential,
    X509Expectation,
)
from lwm2m.security.x509 import CertificateError, load_certificate


class CertificateUsage(IntEnum):
    """Security object resource 15 (RFC 6698 names)."""

    CA_CONSTRAINT = 0
    SERVICE_CERTIFICATE_CONSTRAINT = 1
    TRUST_ANCHOR_ASSERTION = 2
    DOMAIN_ISSUED_CERTIFICATE = 3


def _certificate(data: bytes, what: str) -> x509.Certificate:
    try:
        return load_certificate(data)
    except CertificateError:
        raise SecurityConfigError(f"{what} is not an X.509 certificate (DER or PEM)") from None


def _private_key_pem(data: bytes) -> bytes:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = load_pem_private_key(data, password=None)
        else:
            key = load_der_private_key(data, password=None)
    except (ValueError, TypeError):
        raise SecurityConfigError(
            "Secret Key is not an unencrypted private key (DER or PEM)"
        ) from None
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (x509.ExtensionNotFound, ValueError):
        return False


def server_trust(server_public_key: bytes, certificate_usage: int | None = None) -> X509Expectation:
    """The expectation encoded by Server Public Key (+ Certificate Usage)."""
    cert = _certificate(server_public_key, "Server Public Key")
    if certificate_usage is None:
        as_ca = _is_ca(cert)
    else:
        try:
            usage = CertificateUsage(certificate_usage)
        except ValueError:
            raise SecurityConfigError(f"Certificate Usage {certificate_usage} is not 0-3") from None
        as_ca = usage in (CertificateUsage.CA_CONSTRAINT, CertificateUsage.TRUST_ANCHOR_ASSERTION)
    if as_ca:
        return X509Expectation(ca_pems=(cert.public_bytes(Encoding.PEM),))
    return X509Expectation(certificate_der=cert.public_bytes(Encoding.DER))


def dtls_client_config(
    security_mode: int,
    public_key_or_identity: bytes,
    server_public_key: bytes,
    secret_key: bytes,
    server_host: str,
    *,
    certificate_usage: int | None = None,
    mtu: int = 1280,
) -> DtlsClientConfig:
    """A :class:`DtlsClientConfig` for one Security object instance.

    ``server_host`` is the host part of the LwM2M Server URI (resource 0);
    indirect trust checks the server certificate against it. Raises
    :class:`SecurityConfigError` for modes we cannot serve (RPK, EST, NoSec).
    """
    try:
        mode = CredentialType(security_mode)
    except ValueError:
        raise SecurityConfigError(f"Security Mode {security_mode} is not supported") from None
    if mode is CredentialType.PSK:
        return DtlsClientConfig(
            psk=PskCredential(bytes(public_key_or_identity), bytes(secret_key)), mtu=mtu
        )
    if mode is CredentialType.X509:
        own = _certificate(public_key_or_identity, "Public Key or Identity")
        credential = X509Credential(own.public_bytes(Encoding.PEM), _private_key_pem(secret_key))
        return DtlsClientConfig(
            certificate=credential,
            server_trust=server_trust(server_public_key, certificate_usage),
            server_host=server_host,
            mtu=mtu,
        )
    if mode is CredentialType.RAW_PUBLIC_KEY:
        raise SecurityConfigError(
            "Security Mode 1 (Raw Public Key) is not supported (docs/security.md)"
        )
    raise SecurityConfigError("Security Mode 3 (NoSec) needs no DTLS configuration")

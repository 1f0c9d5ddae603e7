"""From an LwM2M Security object instance (/0/x) to a DTLS client configuration.

The one place where the client turns its Security object into DTLS: the
client (``LwM2MClient``) builds every secure socket through
:func:`dtls_client_config`. Resources used: 2 Security Mode, 3 Public Key or
Identity, 4 Server Public Key, 5 Secret Key and (LwM2M 1.1) 15 Certificate
Usage. Certificates and keys are DER in the object (PEM is accepted too, for
hand-written configurations).

Certificate mode, per seed 000 change 4: the client trusts the server's
certificate directly (it is the Server Public Key, byte for byte) or
indirectly (it chains to the CA in Server Public Key, is within its validity
period, and its SubjectAltName, or Subject CN without SAN, names the host of
the server URI; ``*.acme.com`` covers ``lwm2m.acme.com``, ``*.com`` covers
nothing). Certificate Usage (RFC 6698 2.1.1) says which, and how strictly:

=====  ===============================  ====================================
usage  RFC 6698 name                    what the client checks
=====  ===============================  ====================================
0      CA constraint                    Server Public Key is a CA (refused
                                        otherwise); indirect trust through it
1      service certificate constraint   direct trust, and the pinned
                                        certificate is within its validity
                                        period
2      trust anchor assertion           indirect trust, Server Public Key is
                                        the trust anchor
3      domain-issued certificate        direct trust only (no PKIX checks)
=====  ===============================  ====================================

The client has no trust store besides the Security object, so the anchor of
usages 0 and 2 is always the Server Public Key, and the PKIX validation that
usage 1 adds to usage 3 reduces to the pinned certificate's validity period.
Without resource 15 the usage is 3 (LwM2M 1.1), except when Server Public Key
is a CA certificate: a CA can never be the server's own certificate, and
LwM2M 1.0 Security objects (which have no resource 15) put the CA there for
indirect trust, so that case reads as 2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
from lwm2m.security.x509 import (
    CertificateError,
    UntrustedCertificate,
    check_pinned,
    check_server_names,
    check_validity,
    load_certificate,
)


class CertificateUsage(IntEnum):
    """Security object resource 15 (RFC 6698 names)."""

    CA_CONSTRAINT = 0
    SERVICE_CERTIFICATE_CONSTRAINT = 1
    TRUST_ANCHOR_ASSERTION = 2
    DOMAIN_ISSUED_CERTIFICATE = 3


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ServerTrust:
    """The client's rule for its server's certificate, as the DTLS layer asks for it.

    ``expectation`` holds direct trust (``certificate_der``) or indirect trust
    (``ca_pems`` and optional ``expected_names``); ``pinned_validity`` adds
    the validity period to direct trust (usage 1). ``clock`` is the wall
    clock that period is judged by (the handshake runs inside OpenSSL, so the
    time cannot be passed in per call).
    """

    expectation: X509Expectation
    pinned_validity: bool = False
    clock: Callable[[], datetime] = field(default=_utc_now, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.expectation.certificate_der is None and not self.expectation.ca_pems:
            raise SecurityConfigError("server trust needs the server's certificate or a CA")

    @property
    def ca_pems(self) -> tuple[bytes, ...]:
        """The CA OpenSSL verifies the chain against (none under direct trust)."""
        return () if self.expectation.certificate_der is not None else self.expectation.ca_pems

    def check(self, leaf: x509.Certificate, host: str, chain_error: str | None) -> str | None:
        """None when ``leaf`` is acceptable for ``host``, else the reason it is not."""
        expectation = self.expectation
        try:
            if expectation.certificate_der is not None:
                check_pinned(leaf, expectation.certificate_der, "server")
                if self.pinned_validity:
                    check_validity(leaf, self.clock())
                return None
            if chain_error is not None:
                return f"server certificate rejected: {chain_error}"
            check_server_names(leaf, expectation, host)
        except UntrustedCertificate as exc:
            return f"server {exc}"
        return None


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


def effective_usage(server_public_key: bytes, usage: int | None) -> CertificateUsage:
    """Resource 15 as the client applies it (the default depends on Server Public Key)."""
    if usage is None:
        cert = _certificate(server_public_key, "Server Public Key")
        if _is_ca(cert):
            return CertificateUsage.TRUST_ANCHOR_ASSERTION
        return CertificateUsage.DOMAIN_ISSUED_CERTIFICATE
    try:
        return CertificateUsage(usage)
    except ValueError:
        raise SecurityConfigError(f"Certificate Usage {usage} is not 0-3") from None


def server_trust(
    server_public_key: bytes,
    certificate_usage: int | None = None,
    *,
    clock: Callable[[], datetime] = _utc_now,
) -> ServerTrust:
    """The trust encoded by Server Public Key (resource 4) and Certificate Usage (15)."""
    cert = _certificate(server_public_key, "Server Public Key")
    usage = effective_usage(server_public_key, certificate_usage)
    if usage is CertificateUsage.CA_CONSTRAINT and not _is_ca(cert):
        raise SecurityConfigError(
            "Certificate Usage 0 (CA constraint) needs a CA certificate in Server Public Key"
        )
    if usage in (CertificateUsage.CA_CONSTRAINT, CertificateUsage.TRUST_ANCHOR_ASSERTION):
        return ServerTrust(X509Expectation(ca_pems=(cert.public_bytes(Encoding.PEM),)), clock=clock)
    return ServerTrust(
        X509Expectation(certificate_der=cert.public_bytes(Encoding.DER)),
        pinned_validity=usage is CertificateUsage.SERVICE_CERTIFICATE_CONSTRAINT,
        clock=clock,
    )


def dtls_client_config(
    security_mode: int,
    public_key_or_identity: bytes,
    server_public_key: bytes,
    secret_key: bytes,
    server_host: str,
    *,
    certificate_usage: int | None = None,
    mtu: int = 1280,
    clock: Callable[[], datetime] = _utc_now,
) -> DtlsClientConfig:
    """A :class:`DtlsClientConfig` for one Security object instance.

    ``server_host`` is the host part of the LwM2M Server URI (resource 0);
    indirect trust checks the server certificate against it. Raises
    :class:`SecurityConfigError` for modes we cannot serve (RPK, EST, NoSec)
    and for unusable credentials, so that one bad account is reported and
    skipped rather than failing at the first handshake.
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
            server_trust=server_trust(server_public_key, certificate_usage, clock=clock),
            server_host=server_host,
            mtu=mtu,
        )
    if mode is CredentialType.RAW_PUBLIC_KEY:
        raise SecurityConfigError(
            "Security Mode 1 (Raw Public Key) is not supported (docs/security.md)"
        )
    raise SecurityConfigError("Security Mode 3 (NoSec) needs no DTLS configuration")

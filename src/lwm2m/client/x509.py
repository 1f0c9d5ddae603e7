"""Certificate mode (Security Mode 2) from the Security object, per seed 000 change 4.

Resources: 3 Public Key or Identity = our certificate, 5 Secret Key = our
private key, 4 Server Public Key = the server's certificate (direct trust:
the presented certificate must match it exactly) or a CA certificate
(indirect trust: the server's certificate must chain to it and name the host
of the server URI in its Subject CN or SubjectAltName). DER, as bootstrap
writes them, or PEM.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_der_private_key,
    load_pem_private_key,
)

from lwm2m.client.store import ServerAccount
from lwm2m.coap.dtls import DtlsClientConfig
from lwm2m.protocol.errors import LwM2MError
from lwm2m.security.credentials import X509Credential, X509Expectation


def _certificate(data: bytes, what: str) -> x509.Certificate:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise LwM2MError(f"{what} is not an X.509 certificate: {exc}") from None


def _private_key_pem(data: bytes) -> bytes:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = load_pem_private_key(data, password=None)
        else:
            key = load_der_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise LwM2MError(f"Secret Key is not a private key: {exc}") from None
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def certificate_config(account: ServerAccount, server_host: str) -> DtlsClientConfig:
    own = _certificate(account.public_key_or_identity, "Public Key or Identity")
    credential = X509Credential(
        own.public_bytes(Encoding.PEM), _private_key_pem(account.secret_key)
    )
    if not account.server_public_key:
        raise LwM2MError("certificate mode needs the Server Public Key (certificate or CA)")
    server = _certificate(account.server_public_key, "Server Public Key")
    if _is_ca(server):
        trust = X509Expectation(
            ca_pems=(server.public_bytes(Encoding.PEM),), expected_names=(server_host,)
        )
    else:
        trust = X509Expectation(certificate_der=server.public_bytes(Encoding.DER))
    return DtlsClientConfig(certificate=credential, server_trust=trust, server_host=server_host)

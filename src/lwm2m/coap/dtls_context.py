"""Building the pyOpenSSL ``Context`` both DTLS layers start from.

The server and the client differ in method, options and which callbacks they
install; the protocol pinning, the cipher suites, loading our own certificate
and filling the trust store are the same on both sides and live here.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from OpenSSL import SSL, crypto

from lwm2m.coap.dtls_binding import DTLS1_2_VERSION

#: Cipher suites offered, most preferred first. The two CCM_8 suites are the
#: LwM2M mandatory ones (TS 7.1.2/7.1.3); OpenSSL keeps them (and plain PSK)
#: behind security level 0.
CIPHERS_PSK = (
    "PSK-AES128-CCM8",
    "ECDHE-PSK-AES128-CBC-SHA256",
    "PSK-AES128-GCM-SHA256",
    "PSK-AES256-GCM-SHA384",
    "PSK-AES128-CCM",
    "PSK-AES128-CBC-SHA256",
)
CIPHERS_CERTIFICATE = (
    "ECDHE-ECDSA-AES128-CCM8",
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-AES128-CCM",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
)


def cipher_string(psk: bool, certificate: bool) -> bytes:
    suites = (CIPHERS_PSK if psk else ()) + (CIPHERS_CERTIFICATE if certificate else ())
    return (":".join(suites) + ":@SECLEVEL=0").encode("ascii")


def new_context(method: int, *, psk: bool, certificate: bool, options: int = 0) -> SSL.Context:
    """A DTLS 1.2-only context offering the PSK and/or certificate suites.

    Path-MTU queries are off (we fragment to the configured MTU ourselves) and
    so is renegotiation; ``options`` adds side-specific flags.
    """
    ctx = SSL.Context(method)
    ctx.set_min_proto_version(DTLS1_2_VERSION)
    ctx.set_max_proto_version(DTLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_QUERY_MTU | (SSL.OP_NO_RENEGOTIATION or 0) | options)
    ctx.set_cipher_list(cipher_string(psk=psk, certificate=certificate))
    return ctx


def use_own_certificate(
    ctx: SSL.Context, cert_pem: bytes, key_pem: bytes, chain_pems: tuple[bytes, ...]
) -> None:
    """Present ``cert_pem`` (+ its intermediates); fails if the key does not match it."""
    ctx.use_certificate(x509.load_pem_x509_certificate(cert_pem))
    ctx.use_privatekey(load_pem_private_key(key_pem, password=None))  # type: ignore[arg-type]
    ctx.check_privatekey()
    for pem in chain_pems:
        for cert in x509.load_pem_x509_certificates(pem):
            ctx.add_extra_chain_cert(cert)


def trust_ca_pems(ctx: SSL.Context, ca_pems: tuple[bytes, ...]) -> None:
    """Add every certificate of ``ca_pems`` to the context's trust store."""
    store = ctx.get_cert_store()
    if store is None:
        return
    for pem in ca_pems:
        for cert in x509.load_pem_x509_certificates(pem):
            store.add_cert(crypto.X509.from_cryptography(cert))

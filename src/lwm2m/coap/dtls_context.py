"""Building the pyOpenSSL ``Context`` both DTLS layers start from.

The server and the client differ in method, options and which callbacks they
install; the protocol pinning, the cipher suites, loading our own certificate
and filling the trust store are the same on both sides and live here. So do
the credential callbacks, which CoAP over TLS (:mod:`lwm2m.coap.tls`) shares
with DTLS: one definition keeps a PSK or certificate accepted (and its
rejection reason worded) the same on both transports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
from OpenSSL import SSL, crypto

from lwm2m.coap.dtls_binding import (
    DTLS1_2_VERSION,
    install_psk_client_callback,
    verify_error_string,
)
from lwm2m.coap.dtls_session import ConnectionState, state_of

if TYPE_CHECKING:
    from lwm2m.coap.dtls_client import DtlsClientConfig, ServerCertificateCheck

#: pyOpenSSL's certificate verification callback.
VerifyCallback = Callable[[SSL.Connection, crypto.X509, int, int, int], bool]

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


def install_client_credentials(
    ctx: SSL.Context, config: DtlsClientConfig, verify: VerifyCallback
) -> list[object]:
    """Our PSK or certificate, and the server check; returns the callbacks to keep alive."""
    keepalive: list[object] = []
    if config.psk is not None:
        psk = config.psk
        keepalive.append(install_psk_client_callback(ctx, lambda _c, _h: (psk.identity, psk.key)))
    if config.certificate is not None:
        own = config.certificate
        use_own_certificate(ctx, own.cert_pem, own.key_pem, own.chain_pems)
        if config.server_trust is not None:
            trust_ca_pems(ctx, config.server_trust.ca_pems)
        ctx.set_verify(SSL.VERIFY_PEER, verify)
    return keepalive


def server_psk(
    lookup: Callable[[bytes], bytes | None] | None, connection: SSL.Connection, identity: bytes
) -> bytes | None:
    """The key of ``identity``; records on the connection who it is, or why it was refused."""
    key = lookup(identity) if lookup is not None else None
    state = state_of(connection)
    if state is not None:
        if key is None:
            state.verify_error = f"unknown PSK identity {identity!r}"
        else:
            state.psk_identity = identity
    return key


def check_client_leaf(
    is_trusted: Callable[[bytes], bool] | None,
    state: ConnectionState,
    leaf: x509.Certificate,
    errno: int,
    ok: int,
) -> bool:
    """Server side: a directly trusted leaf passes even when its chain does not."""
    if is_trusted is not None and is_trusted(leaf.public_bytes(Encoding.DER)):
        state.verify_error = None
        return True
    if not ok or state.chain_failed:
        if not ok:
            state.verify_error = f"client certificate rejected: {verify_error_string(errno)}"
        elif state.verify_error is not None:
            state.verify_error = f"client certificate rejected: {state.verify_error}"
        return False
    return True


def check_server_leaf(
    trust: ServerCertificateCheck | None,
    state: ConnectionState,
    leaf: x509.Certificate,
    errno: int,
    ok: int,
) -> bool:
    """Client side: ``trust`` judges the leaf, told of any chain error OpenSSL found."""
    if trust is None:
        return False
    chain_error = verify_error_string(errno) if not ok else None
    if chain_error is None and state.chain_failed:
        chain_error = state.verify_error
    state.verify_error = trust.check(leaf, state.expected_host or "", chain_error)
    return state.verify_error is None

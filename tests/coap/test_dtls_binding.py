"""Pin the private pyOpenSSL binding pieces the DTLS layer relies on.

If a pyOpenSSL/cryptography release drops one of them, this fails first and
says which, instead of handshakes failing in obscure ways.
"""

from __future__ import annotations

import pytest
from OpenSSL import SSL
from OpenSSL.SSL import _ffi, _lib  # type: ignore[attr-defined]

from lwm2m.coap import dtls_binding


@pytest.mark.parametrize("symbol", dtls_binding.REQUIRED_SYMBOLS)
def test_binding_symbol_exists(symbol: str) -> None:
    assert hasattr(_lib, symbol), (
        f"OpenSSL.SSL._lib.{symbol} is gone: DTLS PSK/resumption cannot work"
    )


def test_psk_is_compiled_in() -> None:
    assert dtls_binding.has_psk_support()


def test_psk_callback_signatures() -> None:
    server = str(_ffi.typeof(_lib.SSL_CTX_set_psk_server_callback))
    client = str(_ffi.typeof(_lib.SSL_CTX_set_psk_client_callback))
    assert "unsigned int(*)(SSL *, char *, unsigned char *, unsigned int)" in server
    assert (
        "unsigned int(*)(SSL *, char *, char *, unsigned int, unsigned char *, unsigned int)"
        in client
    )


def test_public_dtls_api_we_use() -> None:
    for name in (
        "DTLSv1_listen",
        "DTLSv1_get_timeout",
        "DTLSv1_handle_timeout",
        "set_ciphertext_mtu",
        "bio_read",
        "bio_write",
        "get_session",
        "set_session",
    ):
        assert hasattr(SSL.Connection, name), name
    for name in ("set_cookie_generate_callback", "set_cookie_verify_callback", "set_session_id"):
        assert hasattr(SSL.Context, name), name
    assert hasattr(SSL, "DTLS_SERVER_METHOD") and hasattr(SSL, "DTLS_CLIENT_METHOD")
    # the callbacks find their Connection through this private mapping
    assert hasattr(SSL.Connection, "_reverse_mapping")


def test_mandatory_ccm8_suites_are_available() -> None:
    ctx = SSL.Context(SSL.DTLS_METHOD)
    ctx.set_cipher_list(b"PSK-AES128-CCM8:ECDHE-ECDSA-AES128-CCM8:@SECLEVEL=0")
    names = SSL.Connection(ctx, None).get_cipher_list()
    assert "PSK-AES128-CCM8" in names
    assert "ECDHE-ECDSA-AES128-CCM8" in names


def test_verify_error_string() -> None:
    assert dtls_binding.verify_error_string(10) == "certificate has expired"

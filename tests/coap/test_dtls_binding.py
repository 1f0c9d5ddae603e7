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


def test_ticket_keys_can_be_set_and_read_back() -> None:
    """Sharing tickets between nodes needs OpenSSL's hidden SSL_CTX_ctrl (openssl_hidden)."""
    assert dtls_binding.ticket_keys_supported(), (
        "SSL_CTX_ctrl not found in cryptography's extension: DTLS sessions resume on"
        " their own node only"
    )
    one, two = SSL.Context(SSL.DTLS_SERVER_METHOD), SSL.Context(SSL.DTLS_SERVER_METHOD)
    # Fresh contexts get distinct random keys...
    assert dtls_binding.ticket_key_name(one) != dtls_binding.ticket_key_name(two)
    material = bytes(range(80))
    dtls_binding.set_ticket_keys(one, material)
    dtls_binding.set_ticket_keys(two, material)
    # ...and the same keys once we set them.
    assert dtls_binding.ticket_key_name(one) == dtls_binding.ticket_key_name(two) == material[:16]
    with pytest.raises(ValueError):
        dtls_binding.set_ticket_keys(one, b"too short")


def test_hidden_symbol_lookup_refuses_what_it_cannot_find() -> None:
    from lwm2m.coap import openssl_hidden

    assert openssl_hidden.hidden_function("no_such_function", "void(*)(void)") is None
    with pytest.raises(ValueError):
        openssl_hidden._elf_function_offsets(b"MZ not an ELF file", ("SSL_CTX_ctrl",))


def test_session_der_field_reader_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        dtls_binding._der_session_field(b"\x30\x05\x02", 0xA8)
    with pytest.raises(ValueError):
        dtls_binding._der_session_field(b"\x04\x00", 0xA8)
    # A SEQUENCE without the field: None.
    assert dtls_binding._der_session_field(b"\x30\x03\x02\x01\x01", 0xA8) is None
    assert dtls_binding._der_session_field(b"\x30\x06\xa8\x04\x04\x02id", 0xA8) == b"id"

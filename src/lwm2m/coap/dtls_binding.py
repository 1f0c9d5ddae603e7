"""The few OpenSSL calls pyOpenSSL does not expose publicly.

PSK (RFC 4279) callbacks, "was this session resumed?", the session-ticket
keys of a context, the PSK identity of a resumed session and the mapping from
an ``SSL *`` back to its :class:`OpenSSL.SSL.Connection` live in pyOpenSSL's
private ``OpenSSL.SSL._lib``/``_ffi`` binding. Everything that touches them is
in this module so that ``tests/coap/test_dtls_binding.py`` can pin them: a
pyOpenSSL release that drops one fails that test instead of the handshake.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from OpenSSL import SSL
from OpenSSL.SSL import _ffi, _lib  # type: ignore[attr-defined]

#: DTLS 1.2 wire version (RFC 6347); we pin both ends of the context to it.
DTLS1_2_VERSION = 0xFEFD

#: (identity) -> key, or None to refuse the handshake.
PskServerLookup = Callable[[SSL.Connection, bytes], bytes | None]
#: (hint) -> (identity, key), or None to abort.
PskClientLookup = Callable[[SSL.Connection, bytes], tuple[bytes, bytes] | None]

REQUIRED_SYMBOLS = (
    "SSL_CTX_set_psk_server_callback",
    "SSL_CTX_set_psk_client_callback",
    "SSL_session_reused",
    "SSL_get_session",
    "i2d_SSL_SESSION",
    "X509_verify_cert_error_string",
)


def has_psk_support() -> bool:
    return all(hasattr(_lib, name) for name in REQUIRED_SYMBOLS) and bool(
        getattr(_lib, "Cryptography_HAS_PSK", False)
    )


def connection_of(ssl: Any) -> SSL.Connection:
    """The pyOpenSSL Connection behind an ``SSL *`` handed to a callback."""
    return SSL.Connection._reverse_mapping[ssl]


def install_psk_server_callback(context: SSL.Context, lookup: PskServerLookup) -> object:
    """Answer PSK ClientKeyExchange with ``lookup``; returns the cffi callback to keep alive.

    The caller must keep the returned object referenced as long as the context
    lives: OpenSSL holds only a raw function pointer.
    """
    callback = new_psk_server_callback(lookup)
    set_psk_server_callback(context, callback)
    return callback


def new_psk_server_callback(lookup: PskServerLookup) -> object:
    """The cffi callback answering PSK ClientKeyExchange with ``lookup``, for several contexts."""

    def server_cb(ssl: Any, identity: Any, psk: Any, max_psk_len: int) -> int:
        try:
            ident = _ffi.string(identity) if identity != _ffi.NULL else b""
            key = lookup(connection_of(ssl), bytes(ident))
        except Exception:
            # An exception must not unwind through OpenSSL; refuse the handshake.
            return 0
        if key is None or not 0 < len(key) <= max_psk_len:
            return 0
        _ffi.memmove(psk, key, len(key))
        return len(key)

    return _ffi.callback("unsigned int(*)(SSL *, char *, unsigned char *, unsigned int)", server_cb)


def set_psk_server_callback(context: SSL.Context, callback: object) -> None:
    """Install a callback from :func:`new_psk_server_callback`; the caller keeps it alive."""
    _lib.SSL_CTX_set_psk_server_callback(context._context, callback)


def install_psk_client_callback(context: SSL.Context, lookup: PskClientLookup) -> object:
    """Supply our PSK identity and key; returns the cffi callback to keep alive."""

    def client_cb(
        ssl: Any, hint: Any, identity: Any, max_identity_len: int, psk: Any, max_psk_len: int
    ) -> int:
        try:
            hint_bytes = _ffi.string(hint) if hint != _ffi.NULL else b""
            found = lookup(connection_of(ssl), bytes(hint_bytes))
        except Exception:
            return 0
        if found is None:
            return 0
        ident, key = found
        # The identity is a C string: it needs room for the terminating NUL.
        if len(ident) + 1 > max_identity_len or not 0 < len(key) <= max_psk_len or b"\0" in ident:
            return 0
        _ffi.memmove(identity, ident + b"\0", len(ident) + 1)
        _ffi.memmove(psk, key, len(key))
        return len(key)

    callback = _ffi.callback(
        "unsigned int(*)(SSL *, char *, char *, unsigned int, unsigned char *, unsigned int)",
        client_cb,
    )
    _lib.SSL_CTX_set_psk_client_callback(context._context, callback)
    return callback


def session_reused(connection: SSL.Connection) -> bool:
    """Did the last handshake resume a session (abbreviated handshake)?"""
    return bool(_lib.SSL_session_reused(connection._ssl))


def verify_error_string(errno: int) -> str:
    """OpenSSL's text for an X.509 verification error number."""
    text = _lib.X509_verify_cert_error_string(errno)
    if text == _ffi.NULL:
        return f"X.509 verify error {errno}"
    return str(_ffi.string(text).decode("ascii", "replace"))


#: ``SSL_CTX_ctrl`` commands (ssl.h) for the RFC 5077 ticket keys of a context
SSL_CTRL_GET_TLSEXT_TICKET_KEYS = 58
SSL_CTRL_SET_TLSEXT_TICKET_KEYS = 59
#: key name (16) + HMAC-SHA256 key (32) + AES-256-CBC key (32), OpenSSL's layout
TICKET_KEYS_LEN = 80


def _ctx_ctrl() -> Any | None:
    from lwm2m.coap.openssl_hidden import hidden_function

    return hidden_function("SSL_CTX_ctrl", "long(*)(SSL_CTX *, int, long, void *)")


def ticket_keys_supported() -> bool:
    """Can this build set a context's session-ticket keys (see :mod:`openssl_hidden`)?"""
    return _ctx_ctrl() is not None


def set_ticket_keys(context: SSL.Context, material: bytes) -> None:
    """Make ``context`` encrypt and accept tickets with ``material`` (name | HMAC key | AES key).

    Contexts given the same material accept each other's tickets: that is how
    server nodes resume each other's sessions. Raises RuntimeError when the
    build cannot do it.
    """
    ctrl = _ctx_ctrl()
    if ctrl is None:
        raise RuntimeError("this OpenSSL binding cannot set session-ticket keys")
    if len(material) != TICKET_KEYS_LEN:
        raise ValueError(f"ticket key material is {TICKET_KEYS_LEN} bytes")
    buffer = _ffi.new("unsigned char[]", material)
    if ctrl(context._context, SSL_CTRL_SET_TLSEXT_TICKET_KEYS, TICKET_KEYS_LEN, buffer) != 1:
        raise RuntimeError("OpenSSL refused the session-ticket keys")


def ticket_key_name(context: SSL.Context) -> bytes:
    """The 16-byte name of the key ``context`` encrypts tickets with (tests, diagnostics)."""
    ctrl = _ctx_ctrl()
    if ctrl is None:
        raise RuntimeError("this OpenSSL binding cannot read session-ticket keys")
    buffer = _ffi.new("unsigned char[]", TICKET_KEYS_LEN)
    if ctrl(context._context, SSL_CTRL_GET_TLSEXT_TICKET_KEYS, TICKET_KEYS_LEN, buffer) != 1:
        raise RuntimeError("OpenSSL did not hand out the session-ticket keys")
    return bytes(buffer[0:16])


def session_psk_identity(connection: SSL.Connection) -> bytes | None:
    """The PSK identity recorded in the connection's session, or None.

    OpenSSL skips the PSK callback on an abbreviated handshake, but the session
    it resumed (from its cache or from a ticket another node issued) carries the
    identity of the full handshake: we read it from the session's DER encoding
    (OpenSSL's ``SSL_SESSION_ASN1``, field ``[8] psk_identity``).
    """
    session = _lib.SSL_get_session(connection._ssl)
    if session == _ffi.NULL:
        return None
    length = _lib.i2d_SSL_SESSION(session, _ffi.NULL)
    if length <= 0:
        return None
    buffer = _ffi.new("unsigned char[]", length)
    cursor = _ffi.new("unsigned char **", buffer)
    if _lib.i2d_SSL_SESSION(session, cursor) != length:
        return None
    return _der_session_field(bytes(buffer[0:length]), 0xA8)


def _der_session_field(der: bytes, tag: int) -> bytes | None:
    """The OCTET STRING inside the explicit ``tag`` field of a DER SSL_SESSION, or None."""
    outer_tag, body, _rest = _der_item(der)
    if outer_tag != 0x30:
        raise ValueError("an SSL_SESSION is a SEQUENCE")
    while body:
        item_tag, content, body = _der_item(body)
        if item_tag == tag:
            inner_tag, value, _ = _der_item(content)
            return value if inner_tag == 0x04 else None
    return None


def _der_item(data: bytes) -> tuple[int, bytes, bytes]:
    """(tag, content, what follows) of the first DER item of ``data`` (short tags only)."""
    if len(data) < 2:
        raise ValueError("truncated DER")
    tag, length, offset = data[0], data[1], 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4 or len(data) < 2 + count:
            raise ValueError("bad DER length")
        length = int.from_bytes(data[2 : 2 + count], "big")
        offset += count
    end = offset + length
    if end > len(data):
        raise ValueError("truncated DER")
    return tag, data[offset:end], data[end:]

"""The few OpenSSL calls pyOpenSSL does not expose publicly.

PSK (RFC 4279) callbacks, "was this session resumed?" and the mapping from an
``SSL *`` back to its :class:`OpenSSL.SSL.Connection` live in pyOpenSSL's
private ``OpenSSL.SSL._lib``/``_ffi`` binding. Everything that touches them is
in this module so that ``tests/coap/test_dtls_binding.py`` can pin them: a
pyOpenSSL release that drops one fails that test instead of the handshake.
"""

from __future__ import annotations

import hashlib
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
    "SSL_SESSION_get_master_key",
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

    callback = _ffi.callback(
        "unsigned int(*)(SSL *, char *, unsigned char *, unsigned int)", server_cb
    )
    _lib.SSL_CTX_set_psk_server_callback(context._context, callback)
    return callback


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


def session_fingerprint(connection: SSL.Connection) -> bytes | None:
    """A digest of the session's master secret, stable across resumptions.

    OpenSSL does not call the PSK callback on an abbreviated handshake and the
    binding cannot read the PSK identity back from a session, so the server
    remembers ``fingerprint -> identity`` after each full handshake.
    """
    session = _lib.SSL_get_session(connection._ssl)
    if session == _ffi.NULL:
        return None
    buffer = _ffi.new("unsigned char[]", 256)
    length = _lib.SSL_SESSION_get_master_key(session, buffer, 256)
    if length <= 0:
        return None
    return hashlib.sha256(b"lwm2m-session" + bytes(buffer[0:length])).digest()

"""TLS for CoAP over TCP (RFC 8323 ``coaps+tcp``) on pyOpenSSL memory BIOs.

The same approach and the same configuration as DTLS: a server takes a
:class:`~lwm2m.coap.dtls_server.DtlsServerConfig` (PSK lookup in the security
store, our certificate, trusted CAs, directly trusted client certificates),
a client a :class:`~lwm2m.coap.dtls_client.DtlsClientConfig` (PSK or
certificate, the server-certificate check with the LwM2M wildcard and host
rules).  The PSK callbacks and the context helpers are the DTLS ones; the
per-endpoint rules (CN = ``ept:ep`` at Register) stay above, on the
:class:`~lwm2m.coap.peer.PeerIdentity` this layer proves.

Versions: TLS 1.2 at least, TLS 1.3 where both sides offer it (certificate
mode).  PSK sessions are pinned to TLS 1.2: OpenSSL's legacy PSK callbacks,
the only ones the binding exposes, give TLS 1.3 only SHA-256 suites and no
identity hint, and the LwM2M PSK suites are TLS 1.2 ones.

One :class:`TlsSession` per stream, sans I/O: ciphertext in, plaintext out.
"""

from __future__ import annotations

import logging

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL, crypto

from lwm2m.coap.dtls_binding import (
    install_psk_server_callback,
    verify_error_string,
)
from lwm2m.coap.dtls_client import DtlsClientConfig
from lwm2m.coap.dtls_context import (
    check_client_leaf,
    check_server_leaf,
    cipher_string,
    install_client_credentials,
    server_psk,
    trust_ca_pems,
    use_own_certificate,
)
from lwm2m.coap.dtls_server import DtlsServerConfig
from lwm2m.coap.dtls_session import ConnectionState, error_text, state_of
from lwm2m.coap.peer import Address, PeerIdentity
from lwm2m.coap.tcp_transport import TlsSessionError

__all__ = ["TlsClient", "TlsServer", "TlsSession"]

logger = logging.getLogger(__name__)

_TLS1_2 = 0x0303
_TLS1_3 = 0x0304


def _context(method: int, *, psk: bool, certificate: bool) -> SSL.Context:
    ctx = SSL.Context(method)
    ctx.set_min_proto_version(_TLS1_2)
    ctx.set_max_proto_version(_TLS1_3 if certificate and not psk else _TLS1_2)
    ctx.set_options(SSL.OP_NO_RENEGOTIATION or 0)
    ctx.set_cipher_list(cipher_string(psk=psk, certificate=certificate))
    return ctx


class TlsSession:
    """One TLS connection over memory BIOs (the :class:`StreamSession` of the TCP transport)."""

    def __init__(self, connection: SSL.Connection, state: ConnectionState, server: bool) -> None:
        self._conn = connection
        self._state = state
        self._server = server
        self.established = False
        self.peer_identity: PeerIdentity | None = None
        self.version = ""

    def start(self) -> None:
        if not self._server:
            self._handshake()

    def receive(self, data: bytes) -> bytes:
        """Ciphertext in; the plaintext it completes.  TlsSessionError ends the stream."""
        self._conn.bio_write(data)
        if not self.established:
            self._handshake()
            if not self.established:
                return b""
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self._conn.recv(65536)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                raise TlsSessionError("close_notify from the peer") from None
            except SSL.Error as exc:
                raise TlsSessionError(error_text(exc)) from None
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = self._conn.send(view)
            except SSL.Error as exc:
                raise TlsSessionError(error_text(exc)) from None
            view = view[sent:]

    def data_to_send(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self._conn.bio_read(65536)
            except SSL.WantReadError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    # Private

    def _handshake(self) -> None:
        try:
            self._conn.do_handshake()
        except SSL.WantReadError:
            return
        except SSL.Error as exc:
            reason = self._state.verify_error or error_text(exc)
            raise TlsSessionError(reason) from None
        self.established = True
        self.version = self._conn.get_protocol_version_name()
        cert = self._conn.get_peer_certificate()
        self.peer_identity = PeerIdentity(
            psk_identity=self._state.psk_identity,
            certificate_der=None
            if cert is None
            else cert.to_cryptography().public_bytes(Encoding.DER),
        )


class _TlsBase:
    _peer_role = "peer"

    def _verify(
        self, connection: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int
    ) -> bool:
        state = state_of(connection)
        if state is None:
            return False
        try:
            if depth > 0:
                if not ok:
                    state.chain_failed = True
                    state.verify_error = verify_error_string(errno)
                return True
            return self._check_leaf(state, cert.to_cryptography(), errno, ok)
        except Exception as exc:
            state.verify_error = f"{self._peer_role} certificate rejected: {exc}"
            return False

    def _check_leaf(
        self, state: ConnectionState, leaf: x509.Certificate, errno: int, ok: int
    ) -> bool:
        raise NotImplementedError


class TlsServer(_TlsBase):
    """Server-side TLS from a DTLS server config (the StreamSecurity of a listening endpoint)."""

    _peer_role = "client"

    def __init__(self, config: DtlsServerConfig) -> None:
        self.config = config
        self._keepalive: list[object] = []
        cfg = config
        ctx = _context(
            SSL.TLS_SERVER_METHOD,
            psk=cfg.psk_lookup is not None,
            certificate=cfg.certificate_pem is not None,
        )
        if cfg.psk_lookup is not None:
            self._keepalive.append(install_psk_server_callback(ctx, self._psk))
        if cfg.certificate_pem is not None and cfg.private_key_pem is not None:
            use_own_certificate(ctx, cfg.certificate_pem, cfg.private_key_pem, cfg.chain_pems)
            trust_ca_pems(ctx, cfg.trusted_ca_pems)
            mode = SSL.VERIFY_PEER
            if cfg.require_client_certificate:
                mode |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
            ctx.set_verify(mode, self._verify)
        self._context = ctx

    def session(self, server_side: bool, address: Address) -> TlsSession:
        connection = SSL.Connection(self._context, None)
        connection.set_accept_state()
        state = ConnectionState(address=address)
        connection.set_app_data(state)
        return TlsSession(connection, state, server=True)

    def _psk(self, connection: SSL.Connection, identity: bytes) -> bytes | None:
        return server_psk(self.config.psk_lookup, connection, identity)

    def _check_leaf(
        self, state: ConnectionState, leaf: x509.Certificate, errno: int, ok: int
    ) -> bool:
        return check_client_leaf(self.config.is_trusted_certificate, state, leaf, errno, ok)


class TlsClient(_TlsBase):
    """Client-side TLS from a DTLS client config (the StreamSecurity of a connector)."""

    _peer_role = "server"

    def __init__(self, config: DtlsClientConfig) -> None:
        self.config = config
        self._keepalive: list[object] = []
        cfg = config
        ctx = _context(
            SSL.TLS_CLIENT_METHOD, psk=cfg.psk is not None, certificate=cfg.certificate is not None
        )
        self._keepalive.extend(install_client_credentials(ctx, cfg, self._verify))
        self._context = ctx

    def session(self, server_side: bool, address: Address) -> TlsSession:
        connection = SSL.Connection(self._context, None)
        connection.set_connect_state()
        host = self.config.server_host or address[0]
        state = ConnectionState(expected_host=host)
        connection.set_app_data(state)
        if host and not _is_ip(host):
            connection.set_tlsext_host_name(host.encode("idna"))
        return TlsSession(connection, state, server=False)

    def _check_leaf(
        self, state: ConnectionState, leaf: x509.Certificate, errno: int, ok: int
    ) -> bool:
        return check_server_leaf(self.config.server_trust, state, leaf, errno, ok)


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True

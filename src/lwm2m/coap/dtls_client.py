"""The DTLS 1.2 client side of the security layer.

The first :meth:`DtlsClient.send` to an address starts a handshake and queues
the plaintext until it completes. Sessions are remembered per address and
offered again (abbreviated handshake) the next time.

A server that restarted has forgotten our session and silently drops our
records (it cannot even authenticate an alert to us). We notice that as
silence: when data we sent has gone unanswered for ``silence_rehandshake_s``,
the next send starts a new handshake. CoAP retransmissions thereby recover
on their own. A received close_notify or fatal alert ends the session at once
and the next send re-handshakes too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from cryptography import x509
from OpenSSL import SSL

from lwm2m.coap.dtls_context import check_server_leaf, install_client_credentials, new_context
from lwm2m.coap.dtls_session import ConnectionState, DtlsLayerBase, DtlsSession
from lwm2m.coap.peer import Address, Peer

logger = logging.getLogger(__name__)


class PskSecret(Protocol):
    """A TLS-PSK identity and its key."""

    @property
    def identity(self) -> bytes: ...

    @property
    def key(self) -> bytes: ...


class OwnCertificate(Protocol):
    """Our certificate and key, PEM, and the intermediates sent with it."""

    @property
    def cert_pem(self) -> bytes: ...

    @property
    def key_pem(self) -> bytes: ...

    @property
    def chain_pems(self) -> tuple[bytes, ...]: ...


class ServerCertificateCheck(Protocol):
    """Which server certificates the client accepts.

    The DTLS layer knows no trust policy: it lets OpenSSL verify the chain
    against :attr:`ca_pems` and hands the verdict to :meth:`check`, which
    decides (pinning, names, host). The rules of the application protocol
    on top (LwM2M's Certificate Usage) implement it above this layer.
    """

    @property
    def ca_pems(self) -> tuple[bytes, ...]:
        """CA certificates (PEM) OpenSSL verifies the server's chain against."""
        ...

    def check(self, leaf: x509.Certificate, host: str, chain_error: str | None) -> str | None:
        """None to accept ``leaf``, else why it is refused (the handshake failure reason).

        ``host`` is the host the client means to reach; ``chain_error`` is
        OpenSSL's complaint about the chain, None when it verified.
        """
        ...


@dataclass(frozen=True, slots=True)
class DtlsClientConfig:
    """Our credential (PSK or certificate) and how to trust the server.

    In certificate mode ``server_trust`` is required; the host it checks
    is ``server_host`` (the host of the server URI), or the IP address we
    send to.
    """

    psk: PskSecret | None = None
    certificate: OwnCertificate | None = None
    server_trust: ServerCertificateCheck | None = None
    server_host: str | None = None
    mtu: int = 1280
    handshake_timeout_s: float = 60.0
    idle_timeout_s: float | None = None
    silence_rehandshake_s: float | None = 30.0
    max_pending: int = 64

    def __post_init__(self) -> None:
        if (self.psk is None) == (self.certificate is None):
            raise ValueError("a DTLS client needs exactly one of psk or certificate")
        if self.certificate is not None and self.server_trust is None:
            raise ValueError("certificate mode needs server_trust (direct or CA)")
        if not 256 <= self.mtu <= 65507:
            raise ValueError("mtu must be 256-65507")
        if self.max_pending < 1:
            raise ValueError("max_pending must be positive")


class DtlsClient(DtlsLayerBase):
    """Client-side DTLS 1.2 implementing :class:`lwm2m.coap.security_layer.SecurityLayer`."""

    _peer_role = "server"

    def __init__(self, config: DtlsClientConfig) -> None:
        super().__init__(config.mtu, config.idle_timeout_s, config.handshake_timeout_s)
        self.config = config
        self._keepalive: list[object] = []
        self._context = self._make_context()
        self._saved_sessions: dict[Address, SSL.Session] = {}
        self.full_handshakes = 0
        self.resumed_handshakes = 0

    def _make_context(self) -> SSL.Context:
        cfg = self.config
        ctx = new_context(
            SSL.DTLS_CLIENT_METHOD, psk=cfg.psk is not None, certificate=cfg.certificate is not None
        )
        ctx.set_session_cache_mode(SSL.SESS_CACHE_CLIENT)
        self._keepalive.extend(install_client_credentials(ctx, cfg, self._verify))
        return ctx

    def _check_leaf(
        self, state: ConnectionState, leaf: x509.Certificate, errno: int, ok: int
    ) -> bool:
        return check_server_leaf(self.config.server_trust, state, leaf, errno, ok)

    # ------------------------------------------------------------ SecurityLayer

    def receive_datagram(
        self, data: bytes, address: Address, now: float
    ) -> list[tuple[bytes, Peer]]:
        session = self._sessions.get(address)
        if session is None or not self._write_records(session, data):
            return []
        if not session.established:
            self._advance_handshake(session, now)
            return []
        return self._deliver(session, now)

    def send(self, plaintext: bytes, address: Address, now: float) -> None:
        session = self._sessions.get(address)
        silence = self.config.silence_rehandshake_s
        if (
            session is not None
            and session.established
            and silence is not None
            and session.unanswered_since is not None
            and now - session.unanswered_since >= silence
        ):
            logger.info("DTLS: no answer from %s for %.1fs, handshaking again", address, silence)
            self._close(session, "peer silent; starting a new handshake", notify_peer=False)
            session = None
        if session is None:
            self._start(address, plaintext, now)
            return
        if not session.established:
            if len(session.pending) >= self.config.max_pending:
                logger.warning("DTLS: dropping data to %s: handshake queue full", address)
                return
            session.pending.append(plaintext)
            return
        self._write(session, plaintext, now)

    def reset(self, address: Address) -> None:
        """Forget the session with ``address`` (the next send re-handshakes, resuming if possible)."""
        session = self._sessions.get(address)
        if session is not None:
            self._close(session, "reset by caller", notify_peer=False)

    # ------------------------------------------------------------ internals

    def _start(self, address: Address, first: bytes, now: float) -> None:
        connection = SSL.Connection(self._context, None)
        connection.set_connect_state()
        connection.set_ciphertext_mtu(self.config.mtu)
        state = ConnectionState(expected_host=self.config.server_host or address[0])
        connection.set_app_data(state)
        saved = self._saved_sessions.get(address)
        if saved is not None:
            connection.set_session(saved)
        session = DtlsSession(connection=connection, address=address, created_at=now, state=state)
        session.pending.append(first)
        self._add(session)
        self._advance_handshake(session, now)

    def _write(self, session: DtlsSession, plaintext: bytes, now: float) -> None:
        if self._send_application(session, plaintext) and session.unanswered_since is None:
            session.unanswered_since = now

    def _on_established(self, session: DtlsSession, now: float) -> None:
        if session.resumed:
            self.resumed_handshakes += 1
        else:
            self.full_handshakes += 1
        saved = session.connection.get_session()
        if saved is not None:
            self._saved_sessions[session.address] = saved
        pending, session.pending = session.pending, []
        for plaintext in pending:
            if self._sessions.get(session.address) is not session:
                break
            self._write(session, plaintext, now)

    def _on_dropped(self, session: DtlsSession) -> None:
        if not session.established or (session.resumed and not session.received_data):
            # A failed handshake, or a resumption the server closed at once (it
            # no longer accepts that session): do not offer that session again.
            self._saved_sessions.pop(session.address, None)

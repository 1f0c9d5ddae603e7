"""The DTLS 1.2 server side of the security layer.

Stateless cookie exchange first (RFC 6347 4.2.1): a ClientHello from an
address without a session goes to a throw-away ``Connection`` running
``DTLSv1_listen``; the HelloVerifyRequest it writes is sent and the object is
dropped. Only a ClientHello that comes back with a valid HMAC cookie (bound
to the source address) creates a session, so spoofed floods cost no memory.
Anything that is not an epoch-0 ClientHello from an unknown address (plain
CoAP sent to the secure port, stale records after a restart) is dropped
before OpenSSL sees it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from OpenSSL import SSL

from lwm2m.coap.dtls_binding import (
    new_psk_server_callback,
    session_psk_identity,
    set_psk_server_callback,
    set_ticket_keys,
    ticket_keys_supported,
)
from lwm2m.coap.dtls_context import (
    check_client_leaf,
    new_context,
    server_psk,
    trust_ca_pems,
    use_own_certificate,
)
from lwm2m.coap.dtls_records import client_hello_random, is_client_hello
from lwm2m.coap.dtls_session import (
    ConnectionState,
    DtlsLayerBase,
    DtlsSession,
    drain,
    error_text,
    state_of,
)
from lwm2m.coap.dtls_tickets import TicketKey, TicketKeySource, client_hello_ticket_key_name
from lwm2m.coap.peer import Address, Peer, PeerIdentity
from lwm2m.coap.security_layer import HandshakeFailed

logger = logging.getLogger(__name__)

#: identity -> key, or None for an unknown identity (the handshake then fails).
PskLookup = Callable[[bytes], bytes | None]
#: leaf certificate DER -> directly trusted? (byte-exact match with a stored certificate)
CertificateLookup = Callable[[bytes], bool]

COOKIE_LEN = 16


@dataclass(frozen=True, slots=True)
class DtlsServerConfig:
    """What the server accepts.

    PSK: ``psk_lookup`` (the LwM2M server's security store). X.509: our
    ``certificate_pem``/``private_key_pem`` (+ ``chain_pems``), and for client
    certificates ``trusted_ca_pems`` (indirect trust) and/or
    ``is_trusted_certificate`` (direct trust). The per-endpoint checks (CN =
    ``ept:ep``, expected names) happen at Register with :mod:`lwm2m.security.x509`.

    ``ticket_keys``: session-ticket keys shared with other server nodes
    (:mod:`lwm2m.coap.dtls_tickets`); None keeps OpenSSL's node-local key.
    ``session_lifetime_s``: how long a session (and its ticket) may be resumed,
    counted from its full handshake; None is OpenSSL's default (2 h).
    """

    psk_lookup: PskLookup | None = None
    certificate_pem: bytes | None = None
    private_key_pem: bytes | None = None
    chain_pems: tuple[bytes, ...] = ()
    trusted_ca_pems: tuple[bytes, ...] = ()
    is_trusted_certificate: CertificateLookup | None = None
    require_client_certificate: bool = True
    mtu: int = 1280
    #: longer than the default registration lifetime (86400 s): the server must
    #: still reach a quiet client over its session
    idle_timeout_s: float | None = 2 * 86400.0
    handshake_timeout_s: float = 60.0
    max_half_open: int = 1000
    max_sessions: int = 100_000
    cookie_secret: bytes | None = None
    session_id_context: bytes = b"lwm2m"
    cookie_rotation_s: float = 3600.0
    ticket_keys: TicketKeySource | None = None
    session_lifetime_s: int | None = None

    def __post_init__(self) -> None:
        has_cert = self.certificate_pem is not None
        if has_cert != (self.private_key_pem is not None):
            raise ValueError("certificate_pem and private_key_pem go together")
        if self.psk_lookup is None and not has_cert:
            raise ValueError("a DTLS server needs psk_lookup or a certificate")
        if not 256 <= self.mtu <= 65507:
            raise ValueError("mtu must be 256-65507")
        if self.max_half_open < 1 or self.max_sessions < 1:
            raise ValueError("max_half_open and max_sessions must be positive")
        if self.cookie_rotation_s <= 0:
            raise ValueError("cookie_rotation_s must be positive")
        if self.session_lifetime_s is not None and self.session_lifetime_s <= 0:
            raise ValueError("session_lifetime_s must be positive")


class DtlsServer(DtlsLayerBase):
    """Server-side DTLS 1.2 implementing :class:`lwm2m.coap.security_layer.SecurityLayer`."""

    _peer_role = "client"

    def __init__(self, config: DtlsServerConfig) -> None:
        super().__init__(config.mtu, config.idle_timeout_s, config.handshake_timeout_s)
        self.config = config
        #: current and previous cookie secrets; a cookie made just before a
        #: rotation stays valid for one more period
        self._cookie_secrets = (config.cookie_secret or os.urandom(32), os.urandom(32))
        self._cookie_rotated_at: float | None = None
        #: one cffi PSK callback shared by all our contexts (OpenSSL keeps a raw pointer)
        self._psk_callback = (
            new_psk_server_callback(self._psk) if config.psk_lookup is not None else None
        )
        self._context = self._make_context()
        self._ticket_keys = config.ticket_keys
        if self._ticket_keys is not None and not ticket_keys_supported():
            logger.warning(
                "DTLS: this OpenSSL binding cannot share session-ticket keys;"
                " sessions resume on the node that made them only"
            )
            self._ticket_keys = None
        #: ticket key name -> the context sealing/opening tickets with that key
        self._keyed_contexts: dict[bytes, SSL.Context] = {}
        self._key_names: tuple[bytes, ...] = ()
        #: counters, for tests and the bench
        self.hello_verify_sent = 0
        self.dropped_datagrams = 0

    # ------------------------------------------------------------ context

    def _make_context(self) -> SSL.Context:
        cfg = self.config
        ctx = new_context(
            SSL.DTLS_SERVER_METHOD,
            psk=cfg.psk_lookup is not None,
            certificate=cfg.certificate_pem is not None,
            options=SSL.OP_COOKIE_EXCHANGE or 0,
        )
        ctx.set_session_id(cfg.session_id_context)
        ctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
        if cfg.session_lifetime_s is not None:
            ctx.set_timeout(cfg.session_lifetime_s)
        ctx.set_cookie_generate_callback(self._generate_cookie)
        ctx.set_cookie_verify_callback(self._verify_cookie)
        if self._psk_callback is not None:
            set_psk_server_callback(ctx, self._psk_callback)
        if cfg.certificate_pem is not None and cfg.private_key_pem is not None:
            use_own_certificate(ctx, cfg.certificate_pem, cfg.private_key_pem, cfg.chain_pems)
            trust_ca_pems(ctx, cfg.trusted_ca_pems)
            mode = SSL.VERIFY_PEER
            if cfg.require_client_certificate:
                mode |= SSL.VERIFY_FAIL_IF_NO_PEER_CERT
            ctx.set_verify(mode, self._verify)
        return ctx

    def _context_for(self, hello: bytes) -> SSL.Context:
        """The context whose ticket key sealed the hello's ticket, else the current key's."""
        source = self._ticket_keys
        keys = tuple(source.ticket_keys()) if source is not None else ()
        if not keys:
            return self._context
        names = tuple(key.name for key in keys)
        if names != self._key_names:
            self._rekey(keys)
        name = client_hello_ticket_key_name(hello)
        if name is not None and name in self._keyed_contexts:
            return self._keyed_contexts[name]
        return self._keyed_contexts[names[0]]

    def _rekey(self, keys: tuple[TicketKey, ...]) -> None:
        """Contexts for a new key list; those of keys still listed are kept (their caches too)."""
        old = self._keyed_contexts
        contexts: dict[bytes, SSL.Context] = {}
        for key in keys:
            context = old.get(key.name)
            if context is None:
                context = self._make_context()
                set_ticket_keys(context, key.material)
            contexts[key.name] = context
        self._keyed_contexts = contexts
        self._key_names = tuple(key.name for key in keys)
        logger.debug("DTLS: %d session-ticket key(s) in use", len(keys))

    def _rotate_cookie_secret(self, now: float) -> None:
        if self._cookie_rotated_at is None:
            self._cookie_rotated_at = now
        elif now - self._cookie_rotated_at >= self.config.cookie_rotation_s:
            self._cookie_secrets = (os.urandom(32), self._cookie_secrets[0])
            self._cookie_rotated_at = now

    @staticmethod
    def _cookie_for(secret: bytes, address: Address) -> bytes:
        text = f"{address[0]}|{address[1]}".encode()
        return hmac.new(secret, text, hashlib.sha256).digest()[:COOKIE_LEN]

    def _generate_cookie(self, connection: SSL.Connection) -> bytes:
        state = state_of(connection)
        if state is None or state.address is None:
            raise RuntimeError("cookie requested for a connection without an address")
        return self._cookie_for(self._cookie_secrets[0], state.address)

    def _verify_cookie(self, connection: SSL.Connection, cookie: bytes) -> bool:
        state = state_of(connection)
        if state is None or state.address is None:
            return False
        return any(
            hmac.compare_digest(cookie, self._cookie_for(secret, state.address))
            for secret in self._cookie_secrets
        )

    def _psk(self, connection: SSL.Connection, identity: bytes) -> bytes | None:
        return server_psk(self.config.psk_lookup, connection, identity)

    def _check_leaf(
        self, state: ConnectionState, leaf: x509.Certificate, errno: int, ok: int
    ) -> bool:
        return check_client_leaf(self.config.is_trusted_certificate, state, leaf, errno, ok)

    def _identity_of(self, session: DtlsSession) -> PeerIdentity:
        """A resumed session names its peer from the session (the PSK callback did not run).

        The session came from this node's cache or from a ticket any node
        sealed; either way it carries the identity of its full handshake.
        """
        identity = super()._identity_of(session)
        if identity.psk_identity is None and identity.certificate_der is None:
            try:
                known = session_psk_identity(session.connection)
            except ValueError as exc:
                logger.warning("DTLS: unreadable session from %s: %s", session.address, exc)
                known = None
            if known is not None:
                identity = PeerIdentity(psk_identity=known)
        return identity

    def _rejection(self, session: DtlsSession) -> str | None:
        """A resumed session skips the PSK callback: make sure the identity is still known."""
        identity = session.identity
        lookup = self.config.psk_lookup
        if not session.resumed or identity is None:
            return None
        if identity.psk_identity is not None:
            if lookup is None or lookup(identity.psk_identity) is None:
                return f"PSK identity {identity.psk_identity!r} is no longer known"
        elif identity.certificate_der is None:
            return "resumed session of unknown identity"
        return None

    # ------------------------------------------------------------ SecurityLayer

    def receive_datagram(
        self, data: bytes, address: Address, now: float
    ) -> list[tuple[bytes, Peer]]:
        self._rotate_cookie_secret(now)
        session = self._sessions.get(address)
        if not is_client_hello(data):
            if session is not None:
                return self._feed(session, data, now)
            self.dropped_datagrams += 1
            return []
        if session is not None and client_hello_random(data) == session.hello_random:
            if not session.established:
                # The client retransmitting its hello: OpenSSL resends its flight.
                return self._feed(session, data, now)
            # A late duplicate of the hello that set up this very session.
            self.dropped_datagrams += 1
            return []
        # A new handshake: statelessly, and it replaces an existing session
        # (established or half-open) only once its cookie checks out.
        self._accept_hello(data, address, now, replacing=session)
        return []

    def send(self, plaintext: bytes, address: Address, now: float) -> None:
        session = self._sessions.get(address)
        if session is None or not session.established:
            # A server cannot start a handshake; the client must come back first.
            logger.debug("dropping %d bytes to %s: no DTLS session", len(plaintext), address)
            self.dropped_datagrams += 1
            return
        self._send_application(session, plaintext)

    # ------------------------------------------------------------ internals

    def _feed(self, session: DtlsSession, data: bytes, now: float) -> list[tuple[bytes, Peer]]:
        if not self._write_records(session, data):
            return []
        if not session.established:
            if not self._advance_handshake(session, now):
                return []
            if not session.established:
                return []
        return self._deliver(session, now)

    def _evict_least_recent(self) -> bool:
        """Make room by closing the established session quiet for longest (a scan: rare)."""
        established = [s for s in self._sessions.values() if s.established]
        if not established:
            return False
        victim = min(established, key=lambda s: s.last_received)
        self._close(victim, "evicted: session table full", notify_peer=True)
        return True

    def _accept_hello(
        self, data: bytes, address: Address, now: float, replacing: DtlsSession | None
    ) -> None:
        """Run the stateless cookie exchange; start a session only on a valid cookie."""
        connection = SSL.Connection(self._context_for(data), None)
        connection.set_accept_state()
        connection.set_ciphertext_mtu(self.config.mtu)
        state = ConnectionState(address=address)
        connection.set_app_data(state)
        try:
            connection.bio_write(data)
            connection.DTLSv1_listen()
        except SSL.WantReadError:
            # No (valid) cookie: OpenSSL wrote a HelloVerifyRequest. No state kept.
            hvr = drain(connection)
            if hvr:
                self.hello_verify_sent += 1
                self._outgoing.append((hvr, address))
            return
        except Exception as exc:
            logger.debug("bad ClientHello from %s: %s", address, error_text(exc))
            self.dropped_datagrams += 1
            return
        if replacing is None and self._half_open_count >= self.config.max_half_open:
            logger.warning(
                "DTLS: refusing handshake from %s: too many handshakes in progress", address
            )
            self.dropped_datagrams += 1
            return
        if replacing is not None and replacing.established:
            # The client started over (e.g. it rebooted): the old session goes.
            self._close(replacing, "replaced by a new handshake", notify_peer=False)
        elif replacing is not None:
            self._remove(replacing)
            self._events.append(
                HandshakeFailed(address=address, reason="replaced by a new handshake")
            )
        elif len(self._sessions) >= self.config.max_sessions and not self._evict_least_recent():
            logger.warning("DTLS: refusing handshake from %s: session table full", address)
            self.dropped_datagrams += 1
            return
        session = DtlsSession(connection=connection, address=address, created_at=now, state=state)
        session.hello_random = client_hello_random(data)
        self._add(session)
        self._advance_handshake(session, now)

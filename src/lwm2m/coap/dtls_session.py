"""Machinery shared by the DTLS server and client layers.

One :class:`DtlsSession` wraps one pyOpenSSL ``Connection`` on memory BIOs for
one peer address. :class:`DtlsLayerBase` keeps the sessions, the outgoing
datagram queue, the event queue and the timers; the server and client add
how sessions start. Nothing here touches a socket or reads a clock.
"""

from __future__ import annotations

import contextlib
import heapq
import logging
from collections import deque
from dataclasses import dataclass, field
from typing import ClassVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL, crypto

from lwm2m.coap.dtls_binding import session_reused, verify_error_string
from lwm2m.coap.dtls_records import pack_datagrams
from lwm2m.coap.peer import Address, Peer, PeerIdentity
from lwm2m.coap.security_layer import (
    HandshakeCompleted,
    HandshakeFailed,
    SecurityEvent,
    SessionClosed,
)

logger = logging.getLogger(__name__)

#: Largest application record we read back from OpenSSL in one go.
MAX_PLAINTEXT = 16384


@dataclass(slots=True)
class ConnectionState:
    """Per-connection facts gathered by OpenSSL callbacks (``Connection`` app data)."""

    psk_identity: bytes | None = None
    verify_error: str | None = None
    chain_failed: bool = False
    expected_host: str | None = None
    #: server side: the source address the cookie is bound to
    address: Address | None = None


@dataclass(slots=True, eq=False)
class DtlsSession:
    """One DTLS association with one peer address."""

    connection: SSL.Connection
    address: Address
    created_at: float
    state: ConnectionState
    established: bool = False
    resumed: bool = False
    identity: PeerIdentity | None = None
    last_received: float = 0.0
    retransmit_at: float | None = None
    #: client side: plaintext queued until the handshake completes
    pending: list[bytes] = field(default_factory=list)
    #: client side: when we first sent data that has not been answered by anything
    unanswered_since: float | None = None
    #: has any application data arrived in this session?
    received_data: bool = False
    #: earliest deadline this session has in the layer's timer heap
    scheduled: float | None = None
    #: server side: the ClientHello random that started this session
    hello_random: bytes | None = None


def state_of(connection: SSL.Connection) -> ConnectionState | None:
    """The :class:`ConnectionState` a layer attached to ``connection``, if any."""
    state = connection.get_app_data()
    return state if isinstance(state, ConnectionState) else None


def drain(connection: SSL.Connection) -> bytes:
    """Everything OpenSSL has written to the connection's outgoing memory BIO."""
    chunks: list[bytes] = []
    while True:
        try:
            chunk = connection.bio_read(65536)
        except SSL.WantReadError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def error_text(exc: BaseException) -> str:
    """A one-line reason from an OpenSSL error (its innermost reason strings)."""
    if isinstance(exc, SSL.Error) and exc.args and isinstance(exc.args[0], list):
        reasons = [
            str(item[2]) for item in exc.args[0] if isinstance(item, tuple) and len(item) == 3
        ]
        if reasons:
            return "; ".join(reasons)
    return str(exc) or type(exc).__name__


class DtlsLayerBase:
    """Sessions, queues and timers common to :class:`DtlsServer` and :class:`DtlsClient`."""

    #: who is at the other end, for certificate error messages
    _peer_role: ClassVar[str] = "peer"

    def __init__(self, mtu: int, idle_timeout_s: float | None, handshake_timeout_s: float) -> None:
        self._mtu = mtu
        self._idle_timeout_s = idle_timeout_s
        self._handshake_timeout_s = handshake_timeout_s
        self._sessions: dict[Address, DtlsSession] = {}
        self._outgoing: list[tuple[bytes, Address]] = []
        self._events: deque[SecurityEvent] = deque()
        #: (deadline, tie-breaker, session); entries of dropped sessions are skipped lazily
        self._timers: list[tuple[float, int, DtlsSession]] = []
        self._seq = 0
        #: sessions whose handshake is still running
        self._half_open_count = 0

    # ------------------------------------------------------------ SecurityLayer

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        out, self._outgoing = self._outgoing, []
        return out

    def next_event(self) -> SecurityEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        heap = self._timers
        while heap:
            when, _seq, session = heap[0]
            if self._sessions.get(session.address) is not session:
                heapq.heappop(heap)  # the session is gone
                continue
            actual = self._deadline(session)
            if actual is None:
                heapq.heappop(heap)
                session.scheduled = None
                continue
            if actual > when:
                # Pushed back (e.g. the idle deadline moved with new traffic): re-file it.
                self._seq += 1
                heapq.heapreplace(heap, (actual, self._seq, session))
                session.scheduled = actual
                continue
            return when
        return None

    def handle_timer(self, now: float) -> None:
        due: dict[int, DtlsSession] = {}
        heap = self._timers
        while heap and heap[0][0] <= now:
            _when, _seq, session = heapq.heappop(heap)
            if self._sessions.get(session.address) is session:
                due[id(session)] = session
        for session in due.values():
            session.scheduled = None
            self._expire(session, now)
            if self._sessions.get(session.address) is session:
                self._schedule(session)

    def _expire(self, session: DtlsSession, now: float) -> None:
        if not session.established and now >= session.created_at + self._handshake_timeout_s:
            self._fail(session, "handshake timed out (no valid answer from the peer)", now)
            return
        if (
            session.established
            and self._idle_timeout_s is not None
            and now >= session.last_received + self._idle_timeout_s
        ):
            self._close(session, "idle timeout", notify_peer=True)
            return
        if session.retransmit_at is not None and now >= session.retransmit_at:
            try:
                session.connection.DTLSv1_handle_timeout()
            except SSL.Error as exc:
                self._fail(session, f"handshake gave up: {error_text(exc)}", now)
                return
            self._flush(session)
            self._arm(session, now)

    def _deadline(self, session: DtlsSession) -> float | None:
        """When this session next needs :meth:`handle_timer`, or None."""
        if not session.established:
            limit = session.created_at + self._handshake_timeout_s
            retransmit = session.retransmit_at
            return limit if retransmit is None else min(limit, retransmit)
        if self._idle_timeout_s is not None:
            return session.last_received + self._idle_timeout_s
        return None

    def _schedule(self, session: DtlsSession) -> None:
        """File the session's next deadline in the timer heap (if earlier than the filed one).

        Later moves (an idle deadline pushed back by traffic) are fixed up
        lazily in :meth:`get_timer`, so a busy session costs nothing here.
        """
        deadline = self._deadline(session)
        if deadline is None or (session.scheduled is not None and session.scheduled <= deadline):
            return
        self._seq += 1
        heapq.heappush(self._timers, (deadline, self._seq, session))
        session.scheduled = deadline

    # ------------------------------------------------------------ certificates

    def _verify(
        self, connection: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int
    ) -> bool:
        """OpenSSL's verify callback; a failing check refuses the certificate, never raises."""
        try:
            return self._check_certificate(connection, cert, errno, depth, ok)
        except Exception as exc:
            state = state_of(connection)
            if state is not None:
                state.verify_error = f"{self._peer_role} certificate rejected: {exc}"
            return False

    def _check_certificate(
        self, connection: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int
    ) -> bool:
        state = state_of(connection)
        if state is None:
            return False
        if depth > 0:
            if not ok:
                # Remember it; a directly trusted leaf may still be accepted at depth 0.
                state.chain_failed = True
                state.verify_error = verify_error_string(errno)
            return True
        return self._check_leaf(state, cert.to_cryptography(), errno, ok)

    def _check_leaf(
        self, state: ConnectionState, leaf: x509.Certificate, errno: int, ok: int
    ) -> bool:
        """Hook: accept the peer's end-entity certificate? (``ok``: OpenSSL's chain verdict)."""
        return False

    # ------------------------------------------------------------ introspection

    def session_count(self) -> int:
        return len(self._sessions)

    def half_open_count(self) -> int:
        """Handshakes in progress."""
        return self._half_open_count

    def established_addresses(self) -> list[Address]:
        return [a for a, s in self._sessions.items() if s.established]

    def has_session(self, address: Address) -> bool:
        """Is there a session (established or in progress) with ``address``?"""
        return address in self._sessions

    def is_established(self, address: Address) -> bool:
        session = self._sessions.get(address)
        return session is not None and session.established

    def session_resumed(self, address: Address) -> bool | None:
        """Was the session with ``address`` set up by an abbreviated handshake? None if none."""
        session = self._sessions.get(address)
        return session.resumed if session is not None and session.established else None

    def peer_identity(self, address: Address) -> PeerIdentity | None:
        session = self._sessions.get(address)
        return session.identity if session is not None else None

    # ------------------------------------------------------------ helpers

    def _flush(self, session: DtlsSession) -> None:
        """Move whatever OpenSSL wrote into the outgoing queue as datagrams."""
        written = drain(session.connection)
        if written:
            for datagram in pack_datagrams(written, self._mtu):
                self._outgoing.append((datagram, session.address))

    @staticmethod
    def _write_records(session: DtlsSession, data: bytes) -> bool:
        """Hand a received datagram to OpenSSL; False if it refused it."""
        try:
            session.connection.bio_write(data)
        except SSL.Error:
            return False
        return True

    def _deliver(self, session: DtlsSession, now: float) -> list[tuple[bytes, Peer]]:
        """The application data the session holds, attributed to its peer."""
        plaintexts = self._read_application(session, now)
        if plaintexts:
            session.last_received = now
            session.unanswered_since = None
            session.received_data = True
        peer = Peer(session.address, session.identity)
        return [(p, peer) for p in plaintexts]

    def _send_application(self, session: DtlsSession, plaintext: bytes) -> bool:
        """Encrypt and queue ``plaintext``; on failure the session is closed and False."""
        try:
            session.connection.send(plaintext)
        except SSL.Error as exc:
            self._close(session, f"send failed: {error_text(exc)}", notify_peer=False)
            return False
        self._flush(session)
        return True

    def _arm(self, session: DtlsSession, now: float) -> None:
        if session.established:
            session.retransmit_at = None
        else:
            timeout = session.connection.DTLSv1_get_timeout()
            session.retransmit_at = None if timeout is None else now + timeout
        self._schedule(session)

    def _identity_of(self, session: DtlsSession) -> PeerIdentity:
        cert = session.connection.get_peer_certificate(as_cryptography=True)
        return PeerIdentity(
            psk_identity=session.state.psk_identity,
            certificate_der=cert.public_bytes(Encoding.DER) if cert is not None else None,
        )

    def _advance_handshake(self, session: DtlsSession, now: float) -> bool:
        """Drive the handshake after new input; False if the session was dropped."""
        try:
            session.connection.do_handshake()
        except SSL.WantReadError:
            self._flush(session)
            self._arm(session, now)
            return True
        except Exception as exc:
            # SSL.Error, or an exception pyOpenSSL re-raises from one of our callbacks.
            reason = session.state.verify_error or error_text(exc)
            self._fail(session, reason, now)
            return False
        session.established = True
        self._half_open_count -= 1
        session.resumed = session_reused(session.connection)
        session.identity = self._identity_of(session)
        session.last_received = now
        self._flush(session)
        self._arm(session, now)
        rejection = self._rejection(session)
        if rejection is not None:
            self._shutdown(session, send=True)
            self._remove(session)
            logger.info("DTLS session with %s refused: %s", session.address, rejection)
            self._events.append(HandshakeFailed(address=session.address, reason=rejection))
            return False
        logger.debug(
            "DTLS session with %s established (%s)",
            session.address,
            "resumed" if session.resumed else "full handshake",
        )
        self._on_established(session, now)
        self._events.append(
            HandshakeCompleted(
                address=session.address, peer=Peer(session.address, session.identity)
            )
        )
        return True

    def _read_application(self, session: DtlsSession, now: float) -> list[bytes]:
        """Decrypt what the BIO holds; empty list and session dropped on alerts."""
        plaintexts: list[bytes] = []
        while True:
            try:
                data = session.connection.recv(MAX_PLAINTEXT)
            except SSL.WantReadError:
                break
            except SSL.ZeroReturnError:
                self._close(session, "closed by peer", notify_peer=False)
                break
            except Exception as exc:
                self._close(
                    session, f"fatal alert or record error: {error_text(exc)}", notify_peer=False
                )
                break
            if data:
                plaintexts.append(data)
        # Reading can produce output too (a retransmitted final flight).
        if self._sessions.get(session.address) is session:
            self._flush(session)
        return plaintexts

    def _rejection(self, session: DtlsSession) -> str | None:
        """Hook: a reason to refuse a session OpenSSL accepted, or None."""
        return None

    def _on_established(self, session: DtlsSession, now: float) -> None:
        """Hook for subclasses (client: send queued plaintext, remember the session)."""

    def _on_dropped(self, session: DtlsSession) -> None:
        """Hook for subclasses when a session goes away."""

    def _add(self, session: DtlsSession) -> None:
        """Register a new (not yet established) session for its address."""
        self._sessions[session.address] = session
        self._half_open_count += 1

    def _remove(self, session: DtlsSession) -> None:
        if self._sessions.get(session.address) is session:
            del self._sessions[session.address]
            if not session.established:
                self._half_open_count -= 1
        self._on_dropped(session)

    def _fail(self, session: DtlsSession, reason: str, now: float) -> None:
        # OpenSSL has written its alert (if any) into the BIO: send it.
        self._flush(session)
        self._remove(session)
        logger.info("DTLS handshake with %s failed: %s", session.address, reason)
        self._events.append(HandshakeFailed(address=session.address, reason=reason))

    def _close(self, session: DtlsSession, reason: str, *, notify_peer: bool) -> None:
        self._shutdown(session, send=notify_peer)
        self._remove(session)
        logger.debug("DTLS session with %s closed: %s", session.address, reason)
        self._events.append(SessionClosed(address=session.address, reason=reason))

    def _shutdown(self, session: DtlsSession, *, send: bool) -> None:
        """Shut the connection down cleanly.

        A connection freed without ``SSL_shutdown`` marks its session not
        resumable; a clean shutdown keeps it in the cache for resumption.
        """
        with contextlib.suppress(SSL.Error):
            session.connection.shutdown()
        if send:
            self._flush(session)
        else:
            self._discard_output(session)

    @staticmethod
    def _discard_output(session: DtlsSession) -> None:
        while True:
            try:
                if not session.connection.bio_read(65536):
                    break
            except SSL.Error:
                break

    def close_all(self, notify_peers: bool = True) -> None:
        """Shut down every session (close_notify to established peers)."""
        for session in list(self._sessions.values()):
            if session.established:
                self._close(session, "layer closed", notify_peer=notify_peers)
            else:
                self._remove(session)

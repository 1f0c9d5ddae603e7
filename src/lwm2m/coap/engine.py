"""The sans-I/O CoAP engine: message layer, request/response, observe, block-wise.

No sockets, no clock, no global randomness: the caller passes ``now`` (monotonic
seconds) and a ``random.Random``, feeds datagrams in and takes datagrams out::

    engine.receive_datagram(data, address, now)
    while (event := engine.next_event()) is not None: ...
    for data, address in engine.datagrams_to_send(now): sock.sendto(data, address)
    timer = engine.get_timer()          # call handle_timer(now) then

One engine serves and sends requests over the same transport, so a server
reaches a device on the very address the device registered from.

Rules
-----

Rule 1: the engine keeps no clock.  Every method that can make it transmit
(start a request, retransmit, answer, start the next queued request) takes
``now``, and what it schedules is counted from that ``now``.

Rule 2: everything leaves through two doors: datagrams through
:meth:`Engine.datagrams_to_send`, outcomes through :meth:`Engine.next_event`.
Nothing calls back into the application, except the orphan filter, which may
only call :meth:`Engine.adopt_observation`.

Rule 3: a logical request of ours (all its blocks and follow-ups) is one
``_Outgoing`` in one ``_State``; the moves allowed are ``_TRANSITIONS``::

    state        may become          holds the peer's NSTART slot
    QUEUED       EXCHANGING, DONE    no
    EXCHANGING   OBSERVING, DONE     yes
    OBSERVING    DONE                no
    DONE         (final)             no

A new request starts QUEUED when NSTART requests to its peer are EXCHANGING,
else EXCHANGING; an adopted observation starts OBSERVING.  Leaving EXCHANGING
starts the next QUEUED request to that peer at the same ``now``.  DONE is
final: the request's tokens, timers and retransmissions are gone, and a later
answer is unknown.

Rule 4: a CON message we send is one ``_Transmission``, found by (peer, MID)
and retransmitted with back-off until an ACK, an RST or the give-up; it ends
once.  Its owner (a request, a served observation, a ping) hears how it ended.

Rule 5: a CON or NON we receive is remembered by (peer, MID) with its token
for EXCHANGE_LIFETIME / NON_LIFETIME; a duplicate never reaches the
application twice: it gets the remembered reply replayed (or an empty ACK
while the application is still busy with the original).

Rule 6: a notification too large for one message is completed by an internal
Block2 fetch: an ``_Outgoing`` whose ``parent`` is the observation, kept in
``_fetches`` under the observation's id.  Its success is a
:class:`NotificationReceived` of the parent; its failure only loses that
notification.

Theory of operation
-------------------

Layers, bottom up (RFC 7252 section 4, 5; RFC 7641; RFC 7959):

* message layer: CON retransmission with exponential back-off, ACK/RST
  matching by (peer, MID), duplicate detection by (peer, MID) with the cached
  reply replayed, RST to pings, to malformed CONs and to unknown responses
  (unless the orphan filter claims them: observations kept across a restart);
* request/response: tokens, piggybacked and separate responses, NSTART;
* observe, both sides; block-wise, both directions.

All timers share one heap of (deadline, item) entries, where an item is a
transmission (retransmit or give up) or a request waiting for a separate or
NON response; a rescheduled or finished item is skipped when its stale entry
comes up.  Empty-ACK deadlines of requests the application has not answered,
duplicate-detection entries and block-wise caches expire in insertion order.

Logging: every protocol decision (a retransmission, a give-up, a duplicate,
an RST sent or received, a message rejected or dropped) is logged at DEBUG
with lazy ``%`` arguments; the engine logs nothing above DEBUG, since what
matters to the application reaches it as an event.
"""

from __future__ import annotations

import enum
import hashlib
import heapq
import logging
import random
from collections import deque
from collections.abc import Callable, Hashable
from typing import Final

from lwm2m.coap.blockwise import Assembly, ExpiringStore, slice_block, transfer_key
from lwm2m.coap.codec import VERSION, decode, encode_as, encode_empty, peek_header
from lwm2m.coap.codes import (
    Code,
    MessageType,
    is_request_code,
    is_response_code,
    is_success_code,
)
from lwm2m.coap.errors import (
    CoapError,
    MessageFormatError,
    RequestEntityTooLarge,
    RequestTimeout,
    ResetReceived,
)
from lwm2m.coap.events import (
    ClientObservationEnded,
    Event,
    NotificationAcknowledged,
    NotificationReceived,
    RequestFailed,
    RequestReceived,
    ResponseReceived,
    ServerObservationEnded,
)
from lwm2m.coap.message import Block, Message
from lwm2m.coap.observe import (
    CON_NOTIFICATION_INTERVAL_S,
    FRESHNESS_WINDOW_S,
    OBSERVE_DEREGISTER,
    OBSERVE_REGISTER,
    SEQUENCE_MODULUS,
    is_fresh,
)
from lwm2m.coap.options import OptionNumber, is_critical
from lwm2m.coap.params import TransmissionParameters
from lwm2m.coap.peer import Address, Peer, PeerIdentity

__all__ = ["Engine", "OrphanFilter"]

OrphanFilter = Callable[[Message, Address, PeerIdentity | None], bool]
"""Decides on a response/notification whose token no request of ours holds."""

logger = logging.getLogger(__name__)

_CON: Final = MessageType.CON
_NON: Final = MessageType.NON
_ACK: Final = MessageType.ACK
_RST: Final = MessageType.RST
_BLOCK_OPTIONS: Final = frozenset((OptionNumber.BLOCK2, OptionNumber.BLOCK1))
_REQUEST_TAG: Final = OptionNumber.REQUEST_TAG
_MAX_CACHED_PEERS: Final = 4096
"""Plain-UDP :class:`Peer` objects kept for reuse (the cache starts over beyond)."""
_MAX_NON_NOTIFICATION_MIDS: Final = 16
"""MIDs of recent NON notifications per observation that an RST may still refer to."""


class Engine:
    """A CoAP endpoint's protocol state; see the module docstring for the calling pattern."""

    def __init__(
        self,
        params: TransmissionParameters | None = None,
        *,
        rng: random.Random,
    ) -> None:
        self.params = params or TransmissionParameters()
        self._rng = rng
        p = self.params
        self._exchange_lifetime = p.exchange_lifetime_s
        self._non_lifetime = p.non_lifetime_s
        self._response_timeout = p.effective_response_timeout_s
        self._separate_delay = p.separate_response_delay_s
        self._block_lifetime = p.effective_block_lifetime_s
        self._block_size = 1 << (p.block_szx + 4)
        self._out: list[tuple[bytes, Address]] = []
        self._events: deque[Event] = deque()
        self._mid = rng.randrange(0x10000)
        self._next_id = 1
        #: The id of the last request handed out by next_event (ids grow in that order):
        #: a duplicate of a later one came before the application saw its original.
        self._delivered = 0
        # message layer
        # Duplicate detection: plain tuples of atomic values (see _DedupEntry), in arrival
        # order in _dedup_order.
        self._dedup: dict[_DedupKey, _DedupEntry] = {}
        self._dedup_order: deque[_DedupOrder] = deque()
        self._max_dedup = p.max_dedup_entries
        self._peers: dict[Address, Peer] = {}  # plain-UDP Peer objects, reused
        self._by_mid: dict[tuple[Address, int], _Transmission] = {}
        self._heap: list[tuple[float, int, _Timed]] = []
        self._heap_seq = 0
        # server side
        self._incoming: dict[int, _Incoming] = {}
        self._separate: deque[_Incoming] = deque()
        self._observations: dict[int, _ServerObservation] = {}
        self._obs_by_key: dict[tuple[Address, bytes], _ServerObservation] = {}
        self._non_notifications: dict[tuple[Address, int], _ServerObservation] = {}
        self._observe_seq = rng.randrange(SEQUENCE_MODULUS)
        self._assemblies: ExpiringStore[Assembly] = ExpiringStore(p.max_block_transfers)
        self._block2_cache: ExpiringStore[Message] = ExpiringStore(p.max_block_transfers)
        self._next_sweep: float | None = None
        # client side
        self._requests: dict[int, _Outgoing] = {}
        self._fetches: dict[int, _Outgoing] = {}  # notification Block2 fetches by observation id
        self._tokens: dict[tuple[Address, bytes], _Outgoing] = {}
        self._active: dict[Address, int] = {}  # NSTART slots held (EXCHANGING requests)
        self._waiting: dict[Address, deque[_Outgoing]] = {}  # QUEUED requests, FIFO
        self._orphan_filter: OrphanFilter | None = None
        self._pings: dict[int, _Ping] = {}

    # ------------------------------------------------------------------ input

    def receive_datagram(
        self,
        data: bytes,
        address: Address,
        now: float,
        identity: PeerIdentity | None = None,
    ) -> bool:
        """Process one datagram (one CoAP message); False if it was not valid CoAP."""
        try:
            msg = decode(data)
        except MessageFormatError as exc:
            header = peek_header(data)
            if header is not None and header[0] == VERSION and header[1] == _CON:
                # RFC 7252 4.2: a CON we cannot process is rejected with RST.
                logger.debug("malformed CON MID %d from %s: RST", header[2], address)
                self._out.append((encode_empty(_RST, header[2]), address))
            logger.debug("dropping malformed datagram from %s: %s", address, exc)
            return False
        mtype = msg.type
        code = msg.code
        if mtype <= _NON:  # CON or NON
            if code == Code.EMPTY:
                if mtype == _CON:
                    logger.debug("ping MID %d from %s: RST", msg.mid, address)
                    self._out.append((encode_empty(_RST, msg.mid), address))
                return True
            key = (address[0], address[1], msg.mid)
            dedup = self._dedup
            entry = dedup.get(key)
            if entry is not None and entry[_EXPIRES] > now and entry[_TOKEN] == msg.token:
                self._duplicate(key, entry, mtype)
                return True
            expires = now + (self._exchange_lifetime if mtype == _CON else self._non_lifetime)
            # One id per message: the entry's, and its exchange's if it starts one.
            entry_id = self._next_id
            self._next_id = entry_id + 1
            dedup[key] = (msg.token, expires, entry_id, None)
            order = self._dedup_order
            order.append((key, entry_id, expires))
            if len(dedup) > self._max_dedup or len(order) > 2 * self._max_dedup:
                self._evict_dedup()
            if is_request_code(code):
                self._on_request(msg, address, identity, key, entry_id, now)
            elif is_response_code(code):
                self._on_response(msg, address, identity, key, now)
            elif mtype == _CON:
                logger.debug(
                    "CON MID %d from %s has a reserved code %s: RST", msg.mid, address, code
                )
                self._reply_and_remember(key, encode_empty(_RST, msg.mid), address)
            return True
        if mtype == _ACK:
            if code == Code.EMPTY or is_response_code(code):
                self._on_ack(msg, address, now)
            return True
        # RST
        if code == Code.EMPTY:
            self._on_reset(msg, address, now)
        return True

    # ------------------------------------------------------------------ outputs

    def next_event(self) -> Event | None:
        events = self._events
        if not events:
            return None
        event = events.popleft()
        if type(event) is RequestReceived:
            self._delivered = event.request_id
        return event

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        out = self._out
        if not out:
            return out
        self._out = []
        return out

    def get_timer(self) -> float | None:
        """The earliest time :meth:`handle_timer` has work to do, or None."""
        best: float | None = None
        if self._heap:
            best = self._heap[0][0]
        if self._separate:
            t = self._separate[0].deadline
            if best is None or t < best:
                best = t
        if self._dedup_order:
            t = self._dedup_order[0][2]
            if best is None or t < best:
                best = t
        if self._next_sweep is not None and (best is None or self._next_sweep < best):
            best = self._next_sweep
        return best

    def handle_timer(self, now: float) -> None:
        """Retransmit, give up, send empty ACKs and expire state that is due at ``now``."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, _, item = heapq.heappop(heap)
            if item.timer_at != deadline:
                continue  # rescheduled or finished since it was pushed
            if isinstance(item, _Transmission):
                self._retransmit(item, now)
            else:
                self._response_wait_expired(item, now)
        separate = self._separate
        while separate and separate[0].deadline <= now:
            incoming = separate.popleft()
            if not incoming.answered and not incoming.acked:
                logger.debug(
                    "request MID %d from %s not answered within %s s: empty ACK, "
                    "a separate response follows",
                    incoming.mid,
                    incoming.address,
                    self._separate_delay,
                )
                self._send_empty_ack(incoming)
        self._expire_dedup(now)
        if self._next_sweep is not None and self._next_sweep <= now:
            self._assemblies.expire(now)
            self._block2_cache.expire(now)
            self._next_sweep = None
            self._schedule_sweep(now)

    # ------------------------------------------------------------------ client side

    def send_request(
        self, message: Message, address: Address, now: float, *, observe: bool = False
    ) -> int:
        """Start a request; returns its id for ResponseReceived / RequestFailed.

        CON unless ``message.type`` is NON.  The token is drawn here unless the
        message has one; MIDs are always ours.  Bodies larger than the block
        size go out with Block1; Block2 responses are followed to the end.
        ``observe=True`` registers (Observe=0) and keeps the token for notifications.
        A request beyond NSTART waits (QUEUED) until one to the same peer ends.
        """
        request_id = self._next_id
        self._next_id = request_id + 1
        token = message.token
        if not token or (address, token) in self._tokens:
            token = self._new_token(address)
        if observe:
            message = message.with_(observe=OBSERVE_REGISTER)
        out = _Outgoing(request_id, message, address, token)
        self._requests[request_id] = out
        self._tokens[(address, token)] = out
        if self._active.get(address, 0) >= self.params.nstart:
            self._waiting.setdefault(address, deque()).append(out)
        else:
            self._active[address] = self._active.get(address, 0) + 1
            _move(out, _State.EXCHANGING)
            self._send_first(out, now)
        return request_id

    def send_ping(self, address: Address, now: float) -> int:
        """Send a CoAP ping (an empty CON, RFC 7252 4.3); returns its id.

        The answer (RST, or an empty ACK) is reported as :class:`ResponseReceived`
        of that id carrying the empty message; no answer after the CON
        retransmissions as :class:`RequestFailed` with :class:`RequestTimeout`.
        :meth:`cancel_request` forgets it.  Pings are not limited by NSTART.
        """
        ping_id = self._next_id
        self._next_id = ping_id + 1
        ping = _Ping(ping_id, address)
        mid = self._next_mid()
        ping.transmission = self._transmit_con(address, mid, encode_empty(_CON, mid), now, ping)
        self._pings[ping_id] = ping
        return ping_id

    def cancel_request(self, request_id: int, now: float) -> None:
        """Forget a request, a ping or an observation passively: later answers get RST.

        The next request queued for the same peer (NSTART) starts at ``now``.
        """
        ping = self._pings.pop(request_id, None)
        if ping is not None:
            if ping.transmission is not None:
                self._finish_transmission(ping.transmission)
            return
        out = self._requests.get(request_id)
        if out is not None:
            self._forget(out, now)
        fetch = self._fetches.get(request_id)
        if fetch is not None:
            self._forget(fetch, now)

    def deregister_observation(self, request_id: int, now: float) -> int | None:
        """Actively cancel an observation: GET with Observe=1 and the same token (RFC 7641 3.6).

        Returns the id of that deregistration request, or None if there is no
        such observation any more.
        """
        out = self._requests.get(request_id)
        if out is None:
            return None
        token = out.token
        request = out.request
        address = out.address
        self.cancel_request(request_id, now)
        return self.send_request(
            request.with_(observe=OBSERVE_DEREGISTER, token=token, payload=b"", block2=None),
            address,
            now,
        )

    def set_orphan_filter(self, orphan_filter: OrphanFilter | None) -> None:
        """Consult ``orphan_filter(message, address, identity)`` before rejecting a response.

        A CON/NON response or notification whose token no request of ours
        holds is answered with RST (RFC 7252 4.2, RFC 7641 3.5): the peer then
        forgets the observation.  A process that restarted with its
        observations persisted can still own such a token: when the filter
        returns True the message is accepted (a CON one is ACKed) instead.
        The filter may call :meth:`adopt_observation` for that token; the
        message is then processed as a notification of the adopted
        observation.  The filter runs inside :meth:`receive_datagram` and must
        not call anything but :meth:`adopt_observation` on this engine.
        """
        self._orphan_filter = orphan_filter

    def adopt_observation(
        self, request: Message, address: Address, token: bytes, now: float
    ) -> int:
        """Take over an observation registered by an earlier run (same token, same peer).

        ``request`` is the registering GET/FETCH as it was sent; nothing is
        sent now.  Notifications with ``token`` from ``address`` then arrive
        as :class:`NotificationReceived` of the returned request id, with the
        usual freshness ordering; :meth:`cancel_request` forgets it (the next
        notification gets RST) and :meth:`deregister_observation` cancels it
        actively.  The first notification is always taken as fresh.  Raises
        ValueError for an empty token or one already in use with that peer.
        """
        if not token:
            raise ValueError("an observation cannot be adopted without a token")
        if (address, token) in self._tokens:
            raise ValueError(f"token {token.hex()} is already in use with {address}")
        request_id = self._next_id
        self._next_id = request_id + 1
        out = _Outgoing(
            request_id, request.with_(observe=OBSERVE_REGISTER, token=token), address, token
        )
        out.state = _State.OBSERVING  # where it starts: nothing in flight, no NSTART slot
        out.observe_time = now - FRESHNESS_WINDOW_S - 1.0
        self._requests[request_id] = out
        self._tokens[(address, token)] = out
        return request_id

    def fail_peer(self, address: Address, error: CoapError, now: float) -> None:
        """Fail every request to ``address`` now (e.g. its DTLS handshake failed)."""
        for out in [o for o in self._requests.values() if o.address == address]:
            self._fail(out, error, now)
        for fetch in [o for o in self._fetches.values() if o.address == address]:
            self._fail(fetch, error, now)
        for ping in [p for p in self._pings.values() if p.address == address]:
            if ping.transmission is not None:
                self._finish_transmission(ping.transmission)
            self._ping_done(ping, error)

    def pending_requests(self) -> int:
        """Logical requests in progress, notification fetches included (for tests and metrics)."""
        return len(self._requests) + len(self._fetches)

    # ------------------------------------------------------------------ server side

    def respond(self, request_id: int, response: Message, now: float) -> None:
        """Send the application's response to a :class:`RequestReceived`.

        Type, message ID and token are the engine's business: a CON request
        still un-acknowledged gets a piggybacked ACK, one already ACKed gets a
        separate CON response, a NON request a NON response.  Unknown or
        already answered ids are ignored (the exchange expired or was cut).
        """
        incoming = self._incoming.pop(request_id, None)
        if incoming is None:
            return
        incoming.answered = True
        obs = incoming.observation
        request = incoming.message
        success = is_success_code(response.code)
        if obs is not None:
            if success and not obs.ended:  # the observation is on
                obs.registered = True
                self._observe_seq = seq = (self._observe_seq + 1) % SEQUENCE_MODULUS
                response = response.with_(observe=seq)
                obs.block2_key = transfer_key(incoming.address, request)
            else:
                self._end_server_observation(obs, "registration answered with an error")
        if incoming.block1_echo is not None:
            response = response.with_(block1=incoming.block1_echo)
        # A response that already carries Block2 was sliced by the application
        # (e.g. read block by block from a file): it goes out as it is.
        if (
            success
            and response.block2 is None
            and (request.block2 is not None or len(response.payload) > self._block_size)
        ):
            key = incoming.block2_key
            if key is None:
                key = transfer_key(incoming.address, request)
            response = self._slice_response(response, request.block2, key, now, incoming.token)
        if incoming.mtype == _CON:
            if not incoming.acked:
                data = encode_as(response, _ACK, incoming.mid, incoming.token)
                self._reply_and_remember(incoming.dedup_key, data, incoming.address, request_id)
                return
            mid = self._next_mid()
            data = encode_as(response, _CON, mid, incoming.token)
            self._transmit_con(incoming.address, mid, data, now, None)
            return
        self._out.append(
            (encode_as(response, _NON, self._next_mid(), incoming.token), incoming.address)
        )

    def decline(self, request_id: int) -> None:
        """Leave the request ``request_id`` unanswered, on purpose and for good.

        Nothing is sent: a CON request is not acknowledged (its sender
        retransmits and times out), a NON request gets no response.  The
        exchange's state is freed, and its duplicates, which stay remembered
        for the usual lifetime, get no answer either (nothing is replayed, no
        RST).  An observation the handler started for it ends (reason "declined").
        Only an empty ACK that already went out because the handler was slow
        (``separate_response_delay_s``) is replayed to duplicates: the peer then
        waits in vain for the separate response.  Unknown ids are ignored.
        """
        incoming = self._incoming.pop(request_id, None)
        if incoming is None:
            return
        logger.debug("request MID %d from %s declined: no answer", incoming.mid, incoming.address)
        incoming.answered = True
        if incoming.observation is not None:
            self._end_server_observation(incoming.observation, "declined")

    def start_observation(self, request_id: int, now: float) -> int:
        """Make the pending GET/FETCH ``request_id`` (Observe=0) an observation; its id.

        The response then carries Observe; later :meth:`notify` calls send
        notifications.  Raises ValueError for anything but a pending Observe=0 request.
        """
        incoming = self._incoming.get(request_id)
        if incoming is None:
            raise ValueError(f"request {request_id} is not pending")
        msg = incoming.message
        if msg.observe != OBSERVE_REGISTER or msg.code not in (Code.GET, Code.FETCH):
            raise ValueError("only a GET/FETCH with Observe=0 can start an observation")
        if incoming.observation is not None:
            return incoming.observation.id
        obs_id = self._next_id
        self._next_id = obs_id + 1
        obs = _ServerObservation(obs_id, incoming.address, incoming.token, now)
        incoming.observation = obs
        self._observations[obs_id] = obs
        self._obs_by_key[(incoming.address, incoming.token)] = obs
        return obs_id

    def notify(
        self, observation_id: int, response: Message, now: float, *, confirmable: bool = False
    ) -> int:
        """Send a notification; returns its delivery id.

        A notification that goes out as CON (asked for, due every 24 hours, or
        replacing one still in flight) is reported as
        :class:`NotificationAcknowledged` of that delivery id once the client
        acknowledges it; a NON one never is, since nothing acknowledges it.
        A non-2.xx response is sent without Observe and ends the observation
        (RFC 7641 4.2).  A new CON notification replaces one still being
        retransmitted, keeping its back-off (RFC 7641 4.5.2).  Raises KeyError
        for an unknown or ended observation, ValueError before the registration
        was answered.
        """
        obs = self._observations[observation_id]
        if obs.ended:
            raise KeyError(observation_id)
        if not obs.registered:
            raise ValueError("notify() before the response to the registration was sent")
        address = obs.address
        if now - obs.last_con >= CON_NOTIFICATION_INTERVAL_S:
            confirmable = True
        ending = not is_success_code(response.code)
        if ending:
            response = response.with_(observe=None)
        else:
            self._observe_seq = seq = (self._observe_seq + 1) % SEQUENCE_MODULUS
            response = response.with_(observe=seq)
        if len(response.payload) > self._block_size:
            response = self._slice_response(response, None, obs.block2_key, now)
        self._next_id += 1
        delivery = self._next_id
        mid = self._next_mid()
        if confirmable or obs.in_flight is not None:
            data = encode_as(response, _CON, mid, obs.token)
            previous = obs.in_flight
            tx = self._transmit_con(address, mid, data, now, obs)
            if previous is not None:
                # Carry the back-off over so a dead client is still detected in time.
                tx.retransmits = previous.retransmits
                tx.timeout = previous.timeout
                tx.timer_at = now + previous.timeout
                self._push_timer(tx)
                self._finish_transmission(previous)
            obs.in_flight = tx
            obs.last_con = now
            obs.deliveries.append(delivery)
        else:
            self._out.append((encode_as(response, _NON, mid, obs.token), address))
            key = (address, mid)
            self._non_notifications[key] = obs
            obs.non_mids.append(mid)
            if len(obs.non_mids) > _MAX_NON_NOTIFICATION_MIDS:
                self._non_notifications.pop((address, obs.non_mids.popleft()), None)
        if ending:
            self._end_server_observation(
                obs, "ended with an error notification", keep_in_flight=True
            )
        return delivery

    def cancel_observation(self, observation_id: int) -> None:
        """Stop serving an observation (no message is sent; notifications just stop)."""
        obs = self._observations.get(observation_id)
        if obs is not None:
            self._end_server_observation(obs, "cancelled locally", report=False)

    # ------------------------------------------------------------------------------
    # Private
    # ------------------------------------------------------------------------------

    # ------------------------------------------------------------------ message layer

    def _duplicate(self, key: _DedupKey, entry: _DedupEntry, mtype: MessageType) -> None:
        address = (key[0], key[1])
        mid = key[2]
        reply = entry[_REPLY]
        if reply is not None:
            if mtype == _CON:
                logger.debug("duplicate CON MID %d from %s: reply replayed", mid, address)
                self._out.append((reply, address))
            else:
                logger.debug("duplicate NON MID %d from %s: ignored", mid, address)
            return
        incoming = self._incoming.get(entry[_ID])
        if incoming is not None and incoming.id > self._delivered:
            # Its original waits in the events, not yet handed out: the answer the
            # application gives it is the one the peer gets; nothing to say before.
            logger.debug(
                "duplicate %s MID %d from %s: original not dispatched yet", mtype.name, mid, address
            )
            return
        if mtype == _CON and incoming is not None and not incoming.answered and not incoming.acked:
            # The peer's ACK timer ran out while the handler is busy: ACK now,
            # answer later as a separate response.
            logger.debug(
                "duplicate CON MID %d from %s while its handler runs: empty ACK", mid, address
            )
            self._send_empty_ack(incoming)
            return
        logger.debug("duplicate %s MID %d from %s: ignored", mtype.name, mid, address)

    def _reply_and_remember(
        self, key: _DedupKey, data: bytes, address: Address, entry_id: int | None = None
    ) -> None:
        """Send ``data``, the reply to the message of ``key``, and keep it for that message's
        duplicates: the message of id ``entry_id`` only, when it is not the one received just
        now (a newer message under the same key keeps its own entry)."""
        dedup = self._dedup
        entry = dedup.get(key)
        if entry is not None and (entry_id is None or entry[_ID] == entry_id):
            dedup[key] = (entry[_TOKEN], entry[_EXPIRES], entry[_ID], data)
        self._out.append((data, address))

    def _next_mid(self) -> int:
        self._mid = mid = (self._mid + 1) & 0xFFFF
        return mid

    def _transmit_con(
        self,
        address: Address,
        mid: int,
        data: bytes,
        now: float,
        owner: _Outgoing | _ServerObservation | _Ping | None,
    ) -> _Transmission:
        p = self.params
        timeout = p.ack_timeout_s * self._rng.uniform(1.0, p.ack_random_factor)
        tx = _Transmission(address, mid, data, timeout, now, owner)
        self._by_mid[(address, mid)] = tx
        self._push_timer(tx)
        self._out.append((data, address))
        return tx

    def _push_timer(self, item: _Timed) -> None:
        assert item.timer_at is not None
        self._heap_seq += 1
        heapq.heappush(self._heap, (item.timer_at, self._heap_seq, item))

    def _finish_transmission(self, tx: _Transmission) -> None:
        tx.done = True
        tx.timer_at = -1.0
        if self._by_mid.get((tx.address, tx.mid)) is tx:
            del self._by_mid[(tx.address, tx.mid)]

    def _retransmit(self, tx: _Transmission, now: float) -> None:
        if tx.done:
            return
        if tx.retransmits >= self.params.max_retransmit:
            logger.debug(
                "giving up on CON MID %d to %s after %d retransmissions",
                tx.mid,
                tx.address,
                tx.retransmits,
            )
            self._finish_transmission(tx)
            owner = tx.owner
            if isinstance(owner, _Outgoing):
                self._fail(
                    owner,
                    RequestTimeout(
                        f"no answer from {owner.address} after {tx.retransmits} retransmissions"
                    ),
                    now,
                )
            elif isinstance(owner, _ServerObservation):
                self._end_server_observation(owner, "confirmable notification not acknowledged")
            elif isinstance(owner, _Ping):
                self._ping_done(
                    owner,
                    RequestTimeout(
                        f"no answer to the ping of {owner.address} "
                        f"after {tx.retransmits} retransmissions"
                    ),
                )
            return
        tx.retransmits += 1
        tx.timeout *= 2
        tx.timer_at = now + tx.timeout
        logger.debug(
            "retransmitting CON MID %d to %s (%d of %d), next timeout %.2f s",
            tx.mid,
            tx.address,
            tx.retransmits,
            self.params.max_retransmit,
            tx.timeout,
        )
        self._push_timer(tx)
        self._out.append((tx.data, tx.address))

    def _send_empty_ack(self, incoming: _Incoming) -> None:
        incoming.acked = True
        self._reply_and_remember(
            incoming.dedup_key, encode_empty(_ACK, incoming.mid), incoming.address, incoming.id
        )

    def _on_ack(self, msg: Message, address: Address, now: float) -> None:
        tx = self._by_mid.get((address, msg.mid))
        if tx is None:
            logger.debug("ACK MID %d from %s matches nothing in flight: ignored", msg.mid, address)
            return  # duplicate or late ACK
        owner = tx.owner
        if isinstance(owner, _Outgoing):
            if msg.code != Code.EMPTY and msg.token != owner.sub_token:
                logger.debug(
                    "ACK MID %d from %s carries a foreign token: ignored", msg.mid, address
                )
                return
            self._finish_transmission(tx)
            owner.transmission = None
            if msg.code == Code.EMPTY:
                owner.timer_at = now + self._response_timeout  # separate response due
                self._push_timer(owner)
                return
            if self._has_unknown_critical(msg):
                logger.debug("response MID %d from %s: unknown critical option", msg.mid, address)
                self._fail(
                    owner, ResetReceived("response carried an unrecognised critical option"), now
                )
                return
            self._handle_response(owner, msg, now)
            return
        if isinstance(owner, _Ping):
            if msg.code == Code.EMPTY:  # RFC 7252 says RST, but an empty ACK proves life too
                self._finish_transmission(tx)
                self._ping_done(owner, msg)
            return
        self._finish_transmission(tx)
        if isinstance(owner, _ServerObservation) and owner.in_flight is tx:
            owner.in_flight = None
            for delivery in owner.deliveries:
                self._events.append(NotificationAcknowledged(owner.id, delivery))
            owner.deliveries.clear()

    def _on_reset(self, msg: Message, address: Address, now: float) -> None:
        key = (address, msg.mid)
        tx = self._by_mid.get(key)
        if tx is not None:
            logger.debug("RST for CON MID %d from %s", msg.mid, address)
            self._finish_transmission(tx)
            owner = tx.owner
            if isinstance(owner, _Outgoing):
                self._fail(owner, ResetReceived(f"{address} answered with RST"), now)
            elif isinstance(owner, _ServerObservation):
                self._end_server_observation(owner, "reset by the client")
            elif isinstance(owner, _Ping):
                self._ping_done(owner, msg)
            return
        obs = self._non_notifications.get(key)
        if obs is not None:
            logger.debug("RST for NON notification MID %d from %s", msg.mid, address)
            self._end_server_observation(obs, "reset by the client")
            return
        logger.debug("RST MID %d from %s matches nothing: ignored", msg.mid, address)

    def _expire_dedup(self, now: float) -> None:
        order = self._dedup_order
        dedup = self._dedup
        while order and order[0][2] <= now:
            key, entry_id, _ = order.popleft()
            entry = dedup.get(key)
            if entry is not None and entry[_ID] == entry_id:
                del dedup[key]

    def _evict_dedup(self) -> None:
        dedup = self._dedup
        order = self._dedup_order
        if len(order) > 2 * self._max_dedup:
            # Entries replaced under the same (peer, MID) linger in the queue:
            # drop them so memory stays proportional to what is remembered.
            self._dedup_order = order = deque(
                item
                for item in order
                if (entry := dedup.get(item[0])) is not None and entry[_ID] == item[1]
            )
        while order and len(dedup) > self._max_dedup:
            key, entry_id, _ = order.popleft()
            entry = dedup.get(key)
            if entry is not None and entry[_ID] == entry_id:
                del dedup[key]

    @staticmethod
    def _has_unknown_critical(msg: Message) -> bool:
        return any(is_critical(number) for number, _ in msg.other_options)

    # ------------------------------------------------------------------ server side

    def _on_request(
        self,
        msg: Message,
        address: Address,
        identity: PeerIdentity | None,
        key: _DedupKey,
        request_id: int,
        now: float,
    ) -> None:
        mtype = msg.type
        if msg.other_options and self._has_unknown_critical(msg):
            if mtype == _CON:
                bad_block = any(n in _BLOCK_OPTIONS for n, _ in msg.other_options)
                code = Code.BAD_REQUEST if bad_block else Code.BAD_OPTION
                logger.debug(
                    "request MID %d from %s: unknown critical option: %s",
                    msg.mid,
                    address,
                    code.dotted,
                )
                self._reply_now(msg, address, key, Message(code))
            else:  # NON: rejected silently (RFC 7252 5.4.1)
                logger.debug(
                    "NON request MID %d from %s: unknown critical option", msg.mid, address
                )
            return
        block1_echo: Block | None = None
        if msg.observe is not None and msg.observe <= OBSERVE_DEREGISTER:
            obs = self._obs_by_key.get((address, msg.token))
            if obs is not None:
                reason = "deregistered" if msg.observe == OBSERVE_DEREGISTER else "re-registered"
                self._end_server_observation(obs, reason)
        if msg.block1 is not None:
            completed = self._on_block1(msg, address, key, now)
            if completed is None:
                return
            msg, block1_echo = completed
        block2_key: Hashable | None = None
        if msg.block2 is not None and msg.block2.num > 0:
            block2_key = transfer_key(address, msg)
            cached = self._block2_cache.get((block2_key, msg.token), now)
            if cached is None:
                cached = self._block2_cache.get(block2_key, now)
            if cached is not None:
                self._reply_now(
                    msg, address, key, self._slice_response(cached, msg.block2, None, now)
                )
                return
        incoming = _Incoming(request_id, msg, address, key, now + self._separate_delay)
        incoming.block1_echo = block1_echo
        incoming.block2_key = block2_key
        self._incoming[request_id] = incoming
        if mtype == _CON:
            separate = self._separate
            while separate and separate[0].answered:
                separate.popleft()
            separate.append(incoming)
        peer = self.plain_peer(address) if identity is None else Peer(address, identity)
        self._events.append(RequestReceived(request_id, msg, peer))

    def plain_peer(self, address: Address) -> Peer:
        """The Peer of a plain-UDP address, one object per address while it is in use
        (every request and every activity report of a busy peer would build one)."""
        peer = self._peers.get(address)
        if peer is None:
            if len(self._peers) >= _MAX_CACHED_PEERS:
                self._peers.clear()
            peer = self._peers[address] = Peer(address)
        return peer

    def _reply_now(
        self, request: Message, address: Address, key: _DedupKey, response: Message
    ) -> None:
        """Answer without involving the application (errors, 2.31, cached blocks)."""
        if request.type == _CON:
            self._reply_and_remember(
                key, encode_as(response, _ACK, request.mid, request.token), address
            )
        else:
            self._out.append((encode_as(response, _NON, self._next_mid(), request.token), address))

    def _on_block1(
        self, msg: Message, address: Address, dedup_key: _DedupKey, now: float
    ) -> tuple[Message, Block] | None:
        """Feed one Block1 request; the whole request once its last block is in."""
        block = msg.block1
        assert block is not None
        p = self.params
        key = transfer_key(address, msg)
        if block.num == 0:
            if msg.size1 is not None and msg.size1 > p.max_body_size:
                self._assemblies.pop(key)
                self._reply_now(
                    msg,
                    address,
                    dedup_key,
                    Message(Code.REQUEST_ENTITY_TOO_LARGE, size1=p.max_body_size),
                )
                return None
            assembly = Assembly(block.szx)
            self._assemblies.put(key, assembly, now + self._block_lifetime)
            self._schedule_sweep(now)
        else:
            found = self._assemblies.get(key, now)
            if found is None or block.offset != len(found.body):
                logger.debug("Block1 %d from %s continues no transfer: 4.08", block.num, address)
                self._reply_now(msg, address, dedup_key, Message(Code.REQUEST_ENTITY_INCOMPLETE))
                return None
            assembly = found
        if block.more and len(msg.payload) != block.size:
            self._assemblies.pop(key)
            self._reply_now(
                msg, address, dedup_key, Message(Code.BAD_REQUEST, payload=b"block size mismatch")
            )
            return None
        if (
            len(assembly.body) >= 65536
            and sum(len(a.body) for a in self._assemblies.values()) + len(msg.payload)
            > p.max_block_memory
        ):
            # All reassemblies together may not exceed the budget, however many
            # transfers peers open: refuse this one for now.
            self._assemblies.pop(key)
            self._reply_now(msg, address, dedup_key, Message(Code.SERVICE_UNAVAILABLE, max_age=10))
            return None
        assembly.body += msg.payload
        if len(assembly.body) > p.max_body_size:
            self._assemblies.pop(key)
            self._reply_now(
                msg,
                address,
                dedup_key,
                Message(Code.REQUEST_ENTITY_TOO_LARGE, size1=p.max_body_size),
            )
            return None
        if block.more:
            szx = min(block.szx, p.block_szx)
            if szx != block.szx:
                # Ask for smaller blocks from now on (RFC 7959 2.5): the next NUM
                # is counted in the new size; the bytes so far stay valid.
                assembly.szx = szx
            self._reply_now(
                msg, address, dedup_key, Message(Code.CONTINUE, block1=Block(block.num, True, szx))
            )
            return None
        self._assemblies.pop(key)
        whole = msg.with_(payload=bytes(assembly.body), block1=None, size1=None)
        return whole, Block(block.num, False, block.szx)

    def _schedule_sweep(self, now: float) -> None:
        if self._next_sweep is None and (len(self._assemblies) or len(self._block2_cache)):
            self._next_sweep = now + self._block_lifetime

    def _slice_response(
        self,
        response: Message,
        requested: Block | None,
        cache_key: Hashable | None,
        now: float,
        token: bytes | None = None,
    ) -> Message:
        """Cut a large response into the requested (or first) block, RFC 7959 2.2."""
        szx = self.params.block_szx
        num = 0
        if requested is not None:
            szx = min(szx, requested.szx)
            num = requested.num
        body = response.payload
        if num == 0 and len(body) <= (1 << (szx + 4)) and requested is None:
            return response
        piece = slice_block(body, num, szx)
        if piece is None:
            return Message(Code.BAD_OPTION, payload=b"block number out of range")
        chunk, more = piece
        if not response.etag:
            # RFC 7959 2.4: every block carries the body's ETag, so a client
            # notices when the representation changes between its requests.
            response = response.with_(etag=(_body_etag(body),))
        if more and cache_key is not None:
            cached = response.with_(observe=None) if response.observe is not None else response
            expires = now + self._block_lifetime
            self._block2_cache.put(cache_key, cached, expires)
            if token is not None:
                # Our client keeps the token across follow-ups; this keeps two
                # concurrent transfers of one resource from mixing.
                self._block2_cache.put((cache_key, token), cached, expires)
            self._schedule_sweep(now)
        return response.with_(
            payload=chunk,
            block2=Block(num, more, szx),
            size2=len(body) if num == 0 else response.size2,
        )

    def _end_server_observation(
        self,
        obs: _ServerObservation,
        reason: str,
        *,
        report: bool = True,
        keep_in_flight: bool = False,
    ) -> None:
        if obs.ended:
            return
        logger.debug("observation %d by %s ended: %s", obs.id, obs.address, reason)
        obs.ended = True
        self._observations.pop(obs.id, None)
        if self._obs_by_key.get((obs.address, obs.token)) is obs:
            del self._obs_by_key[(obs.address, obs.token)]
        for mid in obs.non_mids:
            self._non_notifications.pop((obs.address, mid), None)
        obs.non_mids.clear()
        if obs.in_flight is not None and not keep_in_flight:
            self._finish_transmission(obs.in_flight)
            obs.in_flight = None
        if report:
            self._events.append(ServerObservationEnded(obs.id, reason))

    # ------------------------------------------------------------------ client side

    def _new_token(self, address: Address) -> bytes:
        while True:
            token = self._rng.getrandbits(64).to_bytes(8, "big")
            if (address, token) not in self._tokens:
                return token

    def _send_first(self, out: _Outgoing, now: float) -> None:
        msg = out.request
        szx = msg.block1.szx if msg.block1 is not None else self.params.block_szx
        if len(msg.payload) > 1 << (szx + 4):
            if not any(number == _REQUEST_TAG for number, _ in msg.other_options):
                # Keeps concurrent transfers to one resource apart (RFC 9175 3).
                tag = self._rng.getrandbits(32).to_bytes(4, "big")
                out.request = msg.with_(other_options=(*msg.other_options, (_REQUEST_TAG, tag)))
            out.upload = _Upload(szx)
            self._send_block1(out, out.upload, now)
        else:
            self._send_sub(out, msg, now)

    def _send_block1(self, out: _Outgoing, upload: _Upload, now: float) -> None:
        msg = out.request
        size = 1 << (upload.szx + 4)
        offset = upload.offset
        chunk = msg.payload[offset : offset + size]
        more = offset + size < len(msg.payload)
        sub = msg.with_(
            payload=chunk,
            block1=Block(offset // size, more, upload.szx),
            size1=len(msg.payload) if offset == 0 else None,
        )
        self._send_sub(out, sub, now)

    def _send_sub(self, out: _Outgoing, sub: Message, now: float) -> None:
        """Send one exchange of a logical request (the first, a block, a follow-up)."""
        mid = self._next_mid()
        data = encode_as(sub, out.mtype, mid, out.sub_token)
        if out.mtype == _CON:
            out.transmission = self._transmit_con(out.address, mid, data, now, out)
        else:
            self._out.append((data, out.address))
            out.timer_at = now + self._response_timeout
            self._push_timer(out)

    def _new_sub_token(self, out: _Outgoing) -> None:
        if out.sub_token != out.token:
            self._tokens.pop((out.address, out.sub_token), None)
        out.sub_token = self._new_token(out.address)
        self._tokens[(out.address, out.sub_token)] = out

    def _on_response(
        self,
        msg: Message,
        address: Address,
        identity: PeerIdentity | None,
        key: _DedupKey,
        now: float,
    ) -> None:
        """A CON/NON response: separate response or notification."""
        out = self._tokens.get((address, msg.token))
        orphan_filter = self._orphan_filter
        if (
            out is None
            and orphan_filter is not None
            and not self._has_unknown_critical(msg)
            and orphan_filter(msg, address, identity)
        ):
            if msg.type == _CON:
                self._reply_and_remember(key, encode_empty(_ACK, msg.mid), address)
            # The filter may have adopted the token (adopt_observation):
            # then the message goes the way of any notification.
            out = self._tokens.get((address, msg.token))
            if out is not None:
                self._handle_response(out, msg, now)
            return
        if out is None or (self._has_unknown_critical(msg)):
            # Nobody waits for it (e.g. an observation we forgot): reject.
            logger.debug(
                "%s response MID %d from %s with token %s: %s: RST",
                msg.type.name,
                msg.mid,
                address,
                msg.token.hex(),
                "nobody waits for it" if out is None else "unknown critical option",
            )
            self._reply_and_remember(key, encode_empty(_RST, msg.mid), address)
            return
        if msg.type == _CON:
            self._reply_and_remember(key, encode_empty(_ACK, msg.mid), address)
        self._handle_response(out, msg, now)

    def _accept(self, out: _Outgoing) -> None:
        """The response belongs to the exchange in flight: stop retransmitting it.

        (A separate response may overtake the ACK of our CON, RFC 7252 5.2.2.)
        """
        if out.transmission is not None:
            self._finish_transmission(out.transmission)
            out.transmission = None

    def _handle_response(self, out: _Outgoing, msg: Message, now: float) -> None:
        if out.state is _State.OBSERVING and msg.token == out.token:
            self._on_notification(out, msg, now)
            return
        if msg.token != out.sub_token:
            return  # a late answer to an earlier block exchange
        request = out.request
        block2 = msg.block2
        success = is_success_code(msg.code)
        if (
            block2 is not None
            and out.body is not None
            and success
            and msg.etag == out.block2_etag
            and block2.offset != len(out.body)
        ):
            if out.transmission is None and out.timer_at is None:
                # Nothing else is coming: the answer to our exchange was the wrong block.
                self._fail(out, ResetReceived(f"server sent block {block2.num} out of order"), now)
            return  # a late answer to an earlier Block2 follow-up (same token)
        self._accept(out)
        out.timer_at = None
        # Block1 in progress: 2.31 asks for the next block.
        upload = out.upload
        if msg.code == Code.CONTINUE and msg.block1 is not None and upload is not None:
            upload.offset += 1 << (upload.szx + 4)
            upload.szx = min(upload.szx, msg.block1.szx)
            if upload.offset >= len(request.payload):
                self._fail(
                    out,
                    RequestEntityTooLarge("server asked for more blocks than the body has"),
                    now,
                )
                return
            self._new_sub_token(out)
            self._send_block1(out, upload, now)
            return
        if out.first_observe is None and out.body is None and msg.observe is not None:
            out.first_observe = msg.observe
        explicit = request.block2 is not None and request.block2.num > 0
        if block2 is not None and success and not explicit:
            body = out.body
            if body is None:
                body = out.body = bytearray()
                out.block2_etag = msg.etag
            elif msg.etag != out.block2_etag:
                # The representation changed mid-transfer: start over (RFC 7959 2.4).
                logger.debug("ETag of %s changed during a Block2 transfer: restarting", out.address)
                body.clear()
                out.block2_etag = msg.etag
                if block2.num != 0:
                    self._follow_block2(out, Block(0, False, block2.szx), now)
                    return
            if block2.offset != len(body):
                self._fail(
                    out, ResetReceived(f"block {block2.num} does not continue the body"), now
                )
                return
            body += msg.payload
            if len(body) > self.params.max_body_size:
                self._fail(
                    out,
                    RequestEntityTooLarge(
                        f"response body exceeds {self.params.max_body_size} bytes"
                    ),
                    now,
                )
                return
            if block2.more:
                self._follow_block2(out, Block(block2.num + 1, False, block2.szx), now)
                return
            msg = msg.with_(
                payload=bytes(body), block2=None, observe=out.first_observe, token=out.token
            )
        self._complete(out, msg, now)

    def _follow_block2(self, out: _Outgoing, block: Block, now: float) -> None:
        request = out.request
        follow = request.with_(
            payload=b"",
            block1=None,
            size1=None,
            observe=None,
            block2=block,
        )
        if request.observe is not None:
            self._new_sub_token(out)  # the registration token keeps carrying notifications
        elif out.sub_token != out.token:
            self._tokens.pop((out.address, out.sub_token), None)
            out.sub_token = out.token  # same token: the server can tell concurrent transfers apart
        self._send_sub(out, follow, now)

    def _complete(self, out: _Outgoing, msg: Message, now: float) -> None:
        """The final response of a logical request (after all blocks)."""
        parent = out.parent
        if parent is not None:
            self._forget(out, now)
            if parent.state is _State.OBSERVING:
                self._events.append(NotificationReceived(parent.id, msg))
            return
        if (
            out.request.observe == OBSERVE_REGISTER
            and is_success_code(msg.code)
            and msg.observe is not None
        ):
            self._leave_exchanging(out, _State.OBSERVING, now)
            if out.sub_token != out.token:
                self._tokens.pop((out.address, out.sub_token), None)
                out.sub_token = out.token
            out.body = None
            out.observe_seq = msg.observe
            out.observe_time = now
            self._events.append(ResponseReceived(out.id, msg))
            return
        self._forget(out, now)
        self._events.append(ResponseReceived(out.id, msg))

    def _on_notification(self, out: _Outgoing, msg: Message, now: float) -> None:
        if not is_success_code(msg.code) or msg.observe is None:
            self._forget(out, now)
            self._events.append(NotificationReceived(out.id, msg))
            reason = "server ended the observation" if msg.observe is None else f"error {msg.code}"
            self._events.append(ClientObservationEnded(out.id, reason))
            return
        if not is_fresh(out.observe_seq, out.observe_time, msg.observe, now):
            logger.debug(
                "stale notification %d (after %d) from %s: dropped",
                msg.observe,
                out.observe_seq,
                out.address,
            )
            return
        out.observe_seq = msg.observe
        out.observe_time = now
        if msg.block2 is not None and msg.block2.more:
            self._fetch_notification(out, msg, msg.block2, now)
            return
        self._events.append(NotificationReceived(out.id, msg))

    def _fetch_notification(
        self, parent: _Outgoing, first: Message, block: Block, now: float
    ) -> None:
        """Fetch the rest of a large notification with plain GETs (RFC 7959 2.6).

        The fetch is its own request (Rule 6); a newer large notification
        replaces a fetch still running.  It takes an NSTART slot without
        queueing: the notification would be stale by the time a slot frees.
        """
        old = self._fetches.get(parent.id)
        if old is not None:
            self._forget(old, now)
        fetch = _Outgoing(
            parent.id, parent.request.with_(observe=None), parent.address, parent.token
        )
        fetch.parent = parent
        fetch.mtype = parent.mtype
        fetch.body = bytearray(first.payload)
        fetch.block2_etag = first.etag
        fetch.first_observe = first.observe
        fetch.sub_token = self._new_token(fetch.address)
        self._tokens[(fetch.address, fetch.sub_token)] = fetch
        self._fetches[parent.id] = fetch
        self._active[fetch.address] = self._active.get(fetch.address, 0) + 1
        _move(fetch, _State.EXCHANGING)
        self._follow_block2(fetch, Block(block.num + 1, False, block.szx), now)

    def _leave_exchanging(self, out: _Outgoing, state: _State, now: float) -> None:
        """Move ``out`` on from EXCHANGING and hand its NSTART slot on (Rule 3)."""
        assert out.state is _State.EXCHANGING
        _move(out, state)
        address = out.address
        active = self._active.get(address, 0) - 1
        waiting = self._waiting.get(address)
        while waiting:
            nxt = waiting.popleft()
            if nxt.state is not _State.QUEUED:
                continue  # cancelled while it waited
            if not waiting:
                del self._waiting[address]
            self._active[address] = active + 1
            _move(nxt, _State.EXCHANGING)
            self._send_first(nxt, now)
            return
        if waiting is not None:
            del self._waiting[address]
        if active > 0:
            self._active[address] = active
        else:
            self._active.pop(address, None)

    def _forget(self, out: _Outgoing, now: float) -> None:
        """Drop every trace of a logical request (tokens, timers, retransmission, slot)."""
        state = out.state
        if state is _State.DONE:
            return
        if out.transmission is not None:
            self._finish_transmission(out.transmission)
            out.transmission = None
        out.timer_at = None
        if self._tokens.get((out.address, out.token)) is out:
            del self._tokens[(out.address, out.token)]
        if self._tokens.get((out.address, out.sub_token)) is out:
            del self._tokens[(out.address, out.sub_token)]
        if self._requests.get(out.id) is out:
            del self._requests[out.id]
        if self._fetches.get(out.id) is out:
            del self._fetches[out.id]
        if state is _State.EXCHANGING:
            self._leave_exchanging(out, _State.DONE, now)
        else:
            _move(out, _State.DONE)  # a QUEUED one is skipped when its turn comes

    def _fail(self, out: _Outgoing, error: CoapError, now: float) -> None:
        self._forget(out, now)
        if out.parent is not None:
            logger.debug("fetching a large notification from %s failed: %s", out.address, error)
            return  # only that notification is lost (Rule 6)
        self._events.append(RequestFailed(out.id, error))

    def _response_wait_expired(self, out: _Outgoing, now: float) -> None:
        out.timer_at = None
        logger.debug("no response from %s within %s s", out.address, self._response_timeout)
        self._fail(out, RequestTimeout(f"no response from {out.address}"), now)

    def _ping_done(self, ping: _Ping, outcome: Message | CoapError) -> None:
        ping.transmission = None
        if self._pings.pop(ping.id, None) is None:
            return
        if isinstance(outcome, Message):
            self._events.append(ResponseReceived(ping.id, outcome))
        else:
            self._events.append(RequestFailed(ping.id, outcome))


# ----------------------------------------------------------------------------------
# Private: the state the engine keeps per exchange
# ----------------------------------------------------------------------------------


class _State(enum.Enum):
    """Where a logical request of ours is (Rule 3)."""

    QUEUED = "queued"
    """Waiting for an NSTART slot; nothing sent yet."""
    EXCHANGING = "exchanging"
    """Holds the peer's NSTART slot: a CON awaits its ACK (``transmission``) or a
    separate/NON response is awaited (``timer_at``), one block or follow-up at a time."""
    OBSERVING = "observing"
    """The registration was answered with Observe: notifications flow; no slot held."""
    DONE = "done"
    """Forgotten: tokens, timers and the slot are released; later answers are unknown."""


_TRANSITIONS: Final[dict[_State, frozenset[_State]]] = {
    _State.QUEUED: frozenset((_State.EXCHANGING, _State.DONE)),
    _State.EXCHANGING: frozenset((_State.OBSERVING, _State.DONE)),
    _State.OBSERVING: frozenset((_State.DONE,)),
    _State.DONE: frozenset(),
}
"""The moves Rule 3 allows."""


def _move(out: _Outgoing, state: _State) -> None:
    assert state in _TRANSITIONS[out.state], f"request {out.id}: {out.state} -> {state}"
    out.state = state


#: (host, port, MID) of a received CON or NON: flat, so that it holds no tuple of its own.
_DedupKey = tuple[str, int, int]
#: What duplicate detection remembers of a message: its token, when it is forgotten, its id
#: (unique, and its exchange's id if it started one) and the reply replayed to its
#: duplicates. A tuple of atomic values, replaced rather than changed: the collector stops
#: tracking it at its first collection, so the hundred thousand entries a busy endpoint
#: remembers are not walked again by every middle and full collection (objects with slots
#: were: a storm's collections took 5-8 % of the loop, and their pauses were its p99).
_DedupEntry = tuple[bytes, float, int, bytes | None]
_TOKEN: Final = 0
_EXPIRES: Final = 1
_ID: Final = 2
_REPLY: Final = 3
#: The arrival order, for expiry and the size bound: (key, id, expires). It holds the key,
#: a tuple: the collector untracks it once the key is untracked, which may take a second
#: collection when the first one happens to examine it before its key.
_DedupOrder = tuple[_DedupKey, int, float]


class _Incoming:
    """A request we received and have not answered yet."""

    __slots__ = (
        "acked",
        "address",
        "answered",
        "block1_echo",
        "block2_key",
        "deadline",
        "dedup_key",
        "id",
        "message",
        "mid",
        "mtype",
        "observation",
        "token",
    )

    def __init__(
        self,
        request_id: int,
        message: Message,
        address: Address,
        dedup_key: _DedupKey,
        deadline: float,
    ) -> None:
        self.id = request_id
        self.message = message
        self.address = address
        self.mtype = message.type
        self.mid = message.mid
        self.token = message.token
        self.dedup_key = dedup_key
        self.deadline = deadline  # empty ACK due (CON only)
        self.acked = False
        self.answered = False
        self.block1_echo: Block | None = None
        self.block2_key: Hashable | None = None
        self.observation: _ServerObservation | None = None


class _Transmission:
    """A CON message of ours awaiting ACK/RST, retransmitted with back-off (Rule 4)."""

    __slots__ = ("address", "data", "done", "mid", "owner", "retransmits", "timeout", "timer_at")

    def __init__(
        self,
        address: Address,
        mid: int,
        data: bytes,
        timeout: float,
        now: float,
        owner: _Outgoing | _ServerObservation | _Ping | None,
    ) -> None:
        self.address = address
        self.mid = mid
        self.data = data
        self.timeout = timeout
        self.timer_at = now + timeout
        self.retransmits = 0
        self.owner = owner
        self.done = False


class _Upload:
    """A request body we send block by block (Block1, RFC 7959 2.5)."""

    __slots__ = ("offset", "szx")

    def __init__(self, szx: int) -> None:
        self.offset = 0  # of the block in flight
        self.szx = szx  # shrinks when the server asks for smaller blocks


class _Outgoing:
    """One logical request of ours (possibly several block exchanges, possibly observing)."""

    __slots__ = (
        "address",
        "block2_etag",
        "body",
        "first_observe",
        "id",
        "mtype",
        "observe_seq",
        "observe_time",
        "parent",
        "request",
        "state",
        "sub_token",
        "timer_at",
        "token",
        "transmission",
        "upload",
    )

    def __init__(self, request_id: int, request: Message, address: Address, token: bytes) -> None:
        self.id = request_id
        self.request = request
        self.address = address
        self.token = token  # the request's token; notifications come with it
        self.sub_token = token  # token of the exchange in flight (block follow-ups get new ones)
        self.mtype = _NON if request.type == _NON else _CON
        self.state = _State.QUEUED
        self.parent: _Outgoing | None = None  # the observation a notification fetch completes
        self.transmission: _Transmission | None = None
        self.timer_at: float | None = None  # waiting for a separate / NON response
        self.upload: _Upload | None = None
        self.body: bytearray | None = None  # Block2 reassembly
        self.block2_etag: tuple[bytes, ...] = ()
        self.first_observe: int | None = None
        self.observe_seq = 0
        self.observe_time = 0.0


class _ServerObservation:
    """An observation a peer holds on us (RFC 7641 server side)."""

    __slots__ = (
        "address",
        "block2_key",
        "deliveries",
        "ended",
        "id",
        "in_flight",
        "last_con",
        "non_mids",
        "registered",
        "token",
    )

    def __init__(self, obs_id: int, address: Address, token: bytes, now: float) -> None:
        self.id = obs_id
        self.address = address
        self.token = token
        self.registered = False
        self.ended = False
        self.in_flight: _Transmission | None = None
        self.deliveries: list[int] = []
        self.last_con = now
        self.non_mids: deque[int] = deque()
        self.block2_key: Hashable | None = None


class _Ping:
    """A CoAP ping of ours (empty CON, RFC 7252 4.3): any RST or empty ACK answers it."""

    __slots__ = ("address", "id", "transmission")

    def __init__(self, ping_id: int, address: Address) -> None:
        self.id = ping_id
        self.address = address
        self.transmission: _Transmission | None = None


def _body_etag(body: bytes) -> bytes:
    """An ETag for a body we slice into blocks: the same bytes always give the same tag."""
    return hashlib.blake2b(body, digest_size=8).digest()


_Timed = _Transmission | _Outgoing

"""The registration interface (``/rd``), per the seed change requests.

Register ``POST /rd?ep=&ept=&lt=&sms=&lwm2m=&b=&Q`` answers 2.01 with
``Location-Path: rd/<id>``; Update is ``POST`` (published LwM2M) or ``PUT``
(seed 002 change 4) on ``/rd/<id>`` and answers 2.04; De-register is
``DELETE /rd/<id>`` and answers 2.02. Bad parameters, a bad payload or a name
that does not match the client's security identity answer 4.00 with a
diagnostic payload; a name held by a live registration of another client
answers 4.09 (seed 002 change 6).

"Same client" means: the same DTLS identity (PSK identity, or certificate)
when the request came over DTLS; the same IP address in NoSec mode (the port
may change behind NAT). Such a client registering again replaces its old
registration (seed 002 5.2.1), whose location then answers 4.04.

A client's address is the source of its last Register or Update: behind a
NAT its port may change between Updates (rebinding), and the server's own
requests follow it there.

Every refused Register goes to :attr:`Registrar.refusals` (one rate-limited
WARNING line, the ``lwm2m_registrations_rejected_total{reason}`` count, the
endpoint's recent refusals): the client is told why, and so is the operator.
Refused Updates and De-registers are not recorded: a 4.04 after a server
restart is routine and the client registers again.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lwm2m.coap.codes import Code
from lwm2m.coap.later import Later
from lwm2m.coap.message import Message
from lwm2m.coap.peer import Peer, PeerIdentity
from lwm2m.formats.media import ContentFormat
from lwm2m.protocol.refusals import SERVER_REFUSALS, RefusalKind, RefusalLog
from lwm2m.protocol.registration import (
    RegistrationParamError,
    parse_register_query,
    parse_update_query,
)
from lwm2m.server.events import (
    DeregistrationEvent,
    EventType,
    RegistrationEvent,
    ServerEventBus,
    UpdatedEvent,
)
from lwm2m.server.object_links import LinkFormatError, decode_links_payload
from lwm2m.server.registration_log import RegistrationLog
from lwm2m.stores.base import (
    RegistrationConflict,
    RegistrationStore,
    SecurityStore,
    StoreError,
)
from lwm2m.stores.records import ObjectLinks, Registration, shared_links

if TYPE_CHECKING:
    from lwm2m.security.credentials import X509Expectation

logger = logging.getLogger(__name__)

#: The kinds of the events published here, as :meth:`ServerEventBus.hears` takes them.
_REGISTRATION = EventType.REGISTRATION.value
_UPDATED = EventType.UPDATED.value
_DEREGISTRATION = EventType.DEREGISTRATION.value

#: Reason phrase of the seed's Table 23 (seed 000 change 5).
X509_NAME_MISMATCH = "Endpoint Client Name does not match with CN field of X.509 Certificates"
PSK_NAME_MISMATCH = "Endpoint Client Name does not match the PSK identity"
UNKNOWN_ENDPOINT = "Unknown Endpoint Client Name"

#: Seconds a registration survives past its lifetime before it is removed:
#: an Update sent right at the end of the lifetime must not race the sweep.
DEFAULT_LIFETIME_GRACE_S = 15.0


class RegistrationRejected(Exception):
    """A Register/Update/De-register that is answered with an error code.

    ``reason`` is the refusal's metric label (``REASONS[RefusalKind.REGISTER]``);
    without one it follows from the code.
    """

    def __init__(self, code: Code, diagnostic: str, reason: str | None = None) -> None:
        super().__init__(f"{code.dotted} {diagnostic}")
        self.code = code
        self.diagnostic = diagnostic
        self.reason = reason or _REASON_OF_CODE.get(code, "bad_request")

    def to_response(self) -> Message:
        return Message(
            self.code,
            payload=self.diagnostic.encode("utf-8"),
            content_format=int(ContentFormat.TEXT),
        )


_REASON_OF_CODE = {Code.FORBIDDEN: "forbidden", Code.CONFLICT: "conflict"}

RemovedCallback = Callable[[Registration, str], Awaitable[None] | None]
"""Called with (registration, reason) after a registration ended: ``deregistered``,
``expired`` or ``replaced``. The server drops observations and queued requests. It
returns what is left to await, or None when it is all done (a replaced registration
that left nothing behind: a storm's Register then needs no coroutine)."""

ContactCallback = Callable[[Registration, bool], None]
"""Called with the registration a Register (False) or an Update (True) just made or
renewed, once it is stored and before its answer is sent. The server sends what
was queued for a queue-mode client, wakes what waits for it to come back, and
restores dormant observations after an Update. Handed the registration itself, it
looks nothing up, and the answer needs no wrapper to run it after."""


def _bad(diagnostic: str, reason: str = "bad_request") -> RegistrationRejected:
    return RegistrationRejected(Code.BAD_REQUEST, diagnostic, reason)


def _random_ids() -> Iterator[str]:
    """Registration ids: 8 hex digits of the wall clock's seconds, then 10 random hex digits.

    Not guessable: the 40 bits from the OS's CSPRNG are what they were when ids were
    random only. Ordered by time: the SQLite store's id index then grows at its end
    instead of at a random leaf per Register, which was half of the pages a durable
    Register wrote to the WAL (docs/performance.md, fourth pass); and two ids can only
    collide within one second. The random bytes are read 4,000 at a time (800 ids per
    system call instead of one each).
    """
    second = -1
    prefix = ""
    while True:
        digits = os.urandom(4000).hex()
        for start in range(0, 8000, 10):
            now = int(time.time())
            if now != second:
                second, prefix = now, f"{now & 0xFFFFFFFF:08x}"
            yield prefix + digits[start : start + 10]


_random_id = _random_ids().__next__

#: Decoded announcements by payload: a fleet sends the same few payloads byte for
#: byte, and one dict lookup replaces parsing and interning them. Only valid
#: payloads are kept, within bounds hostile ones cannot push (4 MiB at most).
_LINKS_OF_PAYLOAD: dict[bytes, ObjectLinks] = {}
_LINKS_CACHE_LIMIT = 4096
_LINKS_CACHE_MAX_BYTES = 1024


def _store_failure(exc: StoreError) -> Message:
    logger.error("registration store failure: %s", exc)
    return RegistrationRejected(
        Code.INTERNAL_SERVER_ERROR, "the registration could not be stored"
    ).to_response()


def _write_failure(error: BaseException | None) -> Message:
    """The answer to a write the store's callback refused."""
    return _store_failure(error if isinstance(error, StoreError) else StoreError(str(error)))


def _same_client(existing: Registration, peer: Peer) -> bool:
    """``identity_key`` of both equal; without DTLS on either side (a plain UDP fleet),
    the hosts compared as they are, without building the keys."""
    if existing.identity is None and peer.identity is None:
        return existing.address[0] == peer.address[0]
    return identity_key(existing.identity, existing.address[0]) == identity_key(
        peer.identity, peer.address[0]
    )


def identity_key(peer_identity: PeerIdentity | None, address_host: str) -> tuple[str, bytes]:
    """What makes two requests come from "the same client" (conflict rule)."""
    if peer_identity is not None:
        if peer_identity.certificate_der is not None:
            return ("x509", peer_identity.certificate_der)
        if peer_identity.psk_identity is not None:
            return ("psk", peer_identity.psk_identity)
    return ("ip", address_host.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class RegistrarConfig:
    lifetime_grace_s: float = DEFAULT_LIFETIME_GRACE_S
    #: Refuse NoSec Register for endpoints that have an entry in the security store.
    require_security_when_known: bool = True
    #: Accept only endpoints that have an entry in the security store; others get
    #: 4.00 "Unknown Endpoint Client Name" (seed 000 Table 23).
    known_endpoints_only: bool = False


class Registrar:
    """Handles ``/rd`` requests against a registration store and publishes events."""

    def __init__(
        self,
        registrations: RegistrationStore,
        security: SecurityStore | None,
        events: ServerEventBus,
        *,
        config: RegistrarConfig | None = None,
        clock: Callable[[], float] = time.time,
        on_removed: RemovedCallback | None = None,
        on_contact: ContactCallback | None = None,
        new_id: Callable[[], str] | None = None,
        refusals: RefusalLog | None = None,
    ) -> None:
        self.registrations = registrations
        self.security = security
        self.events = events
        self.config = config or RegistrarConfig()
        self.clock = clock
        self.on_removed = on_removed
        self.on_contact = on_contact
        self._new_id = new_id or _random_id
        #: Where refused Registers are logged, counted and remembered for the operator.
        self.refusals = (
            refusals if refusals is not None else RefusalLog("server", SERVER_REFUSALS, clock=clock)
        )
        #: Per-registration lines within a budget, and the counts of the periodic summary.
        self.log = RegistrationLog(logger)
        #: Answers that wait for a replaced registration's end (rare: it left work behind).
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ dispatch
    async def handle(self, message: Message, peer: Peer) -> Message:
        """Answer one request whose Uri-Path starts with ``rd``."""
        answer = self.answer(message, peer)
        return answer if isinstance(answer, Message) else await answer

    def answer(self, message: Message, peer: Peer) -> Message | Awaitable[Message]:
        """:meth:`handle`, answered on the spot where nothing needs to wait.

        On a :attr:`~lwm2m.stores.base.RegistrationStore.synchronous` store a
        Register (unless it replaces a registration whose end has work to await),
        an Update and a De-register (unless its end has work to await) are done
        without a coroutine, refusals included; so is a wrong method or path on
        any store: the Message is returned. On a store that writes by callback
        (SQLite) they are a :class:`~lwm2m.coap.later.Later` resolved by the
        commit; the rest (a shared store's writes) is an awaitable of the Message.
        """
        path = message.uri_path
        try:
            if len(path) == 1:
                if message.code != Code.POST:
                    raise RegistrationRejected(Code.METHOD_NOT_ALLOWED, "use POST /rd to register")
                return self._register_answer(message, peer)
            if len(path) == 2:
                if message.code in (Code.POST, Code.PUT):
                    return self._update_answer(path[1], message, peer)
                if message.code == Code.DELETE:
                    return self._deregister_answer(path[1], peer)
                raise RegistrationRejected(
                    Code.METHOD_NOT_ALLOWED, "use POST or PUT to update, DELETE to de-register"
                )
            raise RegistrationRejected(Code.NOT_FOUND, "no such registration resource")
        except RegistrationRejected as exc:
            return exc.to_response()
        except StoreError as exc:
            return _store_failure(exc)

    async def _answered(self, pending: Awaitable[Message]) -> Message:
        """The answer of a request that had to wait, its refusal or store failure included."""
        try:
            return await pending
        except RegistrationRejected as exc:
            return exc.to_response()
        except StoreError as exc:
            return _store_failure(exc)

    # ------------------------------------------------------------------ register
    def _register_answer(self, message: Message, peer: Peer) -> Message | Awaitable[Message]:
        store = self.registrations
        if store.synchronous:
            old, new = store.add_now(self._checked_registration(message, peer))
            return self._registered(new, old) if old is None else self._replaced(old, new)
        if store.adds_by_callback:
            return self._register_later(self._checked_registration(message, peer), message, peer)
        return self._answered(self.register(message, peer))

    def _register_later(
        self, registration: Registration, message: Message, peer: Peer
    ) -> Later[Message]:
        """A durable Register answered from the store's callback once its batch committed
        (:class:`~lwm2m.coap.later.Later`: no coroutine per request)."""
        answer: Later[Message] = Later()

        def done(old: Registration | None, error: BaseException | None) -> None:
            if isinstance(error, RegistrationConflict):
                answer.resolve(self._conflict(error, message, peer).to_response())
            elif error is not None:
                answer.resolve(_write_failure(error))
            elif old is None:
                answer.resolve(self._registered(registration, None))
            else:
                replaced = self._replaced(old, registration)
                if isinstance(replaced, Message):
                    answer.resolve(replaced)
                else:
                    self._spawn_then(replaced, answer)

        self.registrations.add_then(registration, done)
        return answer

    def _spawn_then(self, pending: Awaitable[Message], answer: Later[Message]) -> None:
        """Resolve ``answer`` with ``pending``'s Message, awaited in a task of its own."""

        async def run() -> None:
            answer.resolve(await self._answered(pending))

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _replaced(self, old: Registration, new: Registration) -> Message | Awaitable[Message]:
        """``new`` took ``old``'s place: ``old`` ends, then 2.01 (once its hook is done)."""
        self._replaced_now(old, new.registered_at)
        pending = self.on_removed(old, "replaced") if self.on_removed is not None else None
        if pending is None:
            return self._registered(new, old)
        return self._answered(self._registered_after(pending, new, old))

    async def _registered_after(
        self, pending: Awaitable[None], new: Registration, old: Registration
    ) -> Message:
        await pending
        return self._registered(new, old)

    async def register(self, message: Message, peer: Peer) -> Message:
        registration = self._checked_registration(message, peer)
        try:
            old, new = await self.registrations.add(registration)
        except RegistrationConflict as exc:  # a shared store saw another node's client first
            raise self._conflict(exc, message, peer) from None
        if old is not None:
            replaced = self._replaced(old, new)
            return replaced if isinstance(replaced, Message) else await replaced
        return self._registered(new, None)

    def _conflict(
        self, exc: RegistrationConflict, message: Message, peer: Peer
    ) -> RegistrationRejected:
        """The 4.09 of a name the store found held by another client, told to the operator."""
        rejection = RegistrationRejected(Code.CONFLICT, str(exc), "conflict")
        self._refused(message, peer, rejection)
        return rejection

    def _checked_registration(self, message: Message, peer: Peer) -> Registration:
        """:meth:`_new_registration`, its refusal told to the operator."""
        try:
            return self._new_registration(message, peer)
        except RegistrationRejected as exc:
            self._refused(message, peer, exc)
            raise

    def _new_registration(self, message: Message, peer: Peer) -> Registration:
        """The registration a Register asks for, once every rule holds (else rejected)."""
        try:
            params = parse_register_query(message.uri_query)
        except RegistrationParamError as exc:
            raise _bad(str(exc)) from None
        links = self._links(message, required=True)
        self._check_identity(params.endpoint, params.endpoint_type, peer)
        now = self.clock()
        # From memory: the whole fleet on one process's stores; in a cluster (a partial
        # store) what this node holds, and a name held elsewhere is the store's to refuse:
        # its add() checks the same rule atomically (RegistrationConflict in register()), so
        # a Register of a name this node does not hold costs no read before the write.
        existing = self.registrations.get_by_endpoint(params.endpoint)
        if (
            existing is not None
            and existing.expires_at + self.config.lifetime_grace_s >= now
            and not _same_client(existing, peer)
        ):
            raise RegistrationRejected(
                Code.CONFLICT,
                f"endpoint name {params.endpoint!r} is registered by another client",
                "conflict",
            )
        # Positional (in the order of the fields): a fifth cheaper than by keyword.
        return Registration(
            self._unique_id(),
            params.endpoint,
            peer.address,
            params.lifetime_s,
            now,
            now,
            params.endpoint_type,
            params.lwm2m_version,
            params.binding,
            params.queue_mode,
            params.sms_number,
            links,
            peer.identity,
            peer.transport,
        )

    def _replaced_now(self, old: Registration, now: float) -> None:
        # Its log line is the new one's ("registered ... replacing id="): one line, and one
        # look at the log's budget, per Register of a storm.
        events = self.events
        if events.hears(_DEREGISTRATION):
            events.publish(DeregistrationEvent(old.endpoint, now, registration=old, replaced=True))

    def _registered(self, new: Registration, old: Registration | None) -> Message:
        log = self.log
        log.registered += 1
        emit = log.emitter()
        if emit is not None:
            emit(
                "registered %s id=%s from %s:%d lt=%d lwm2m=%s b=%s%s%s",
                new.endpoint,
                new.id,
                new.address[0],
                new.address[1],
                new.lifetime_s,
                new.lwm2m_version,
                new.binding,
                " (queue mode)" if new.queue_mode else "",
                "" if old is None else f", replacing id={old.id}",
            )
        events = self.events
        if events.hears(_REGISTRATION):
            events.publish(
                RegistrationEvent(new.endpoint, new.registered_at, registration=new, replaced=old)
            )
        if self.on_contact is not None:
            self.on_contact(new, False)
        return Message(Code.CREATED, location_path=("rd", new.id))

    # ------------------------------------------------------------------ update
    def _update_answer(
        self, registration_id: str, message: Message, peer: Peer
    ) -> Message | Awaitable[Message]:
        store = self.registrations
        # The whole fleet in memory (memory, SQLite): read there; answer at once, or from
        # the commit.
        if not (store.synchronous or store.updates_by_callback) or store.partial:
            return self._answered(self.update(registration_id, message, peer))
        current = store.get(registration_id)
        if current is None:
            raise RegistrationRejected(Code.NOT_FOUND, "no such registration")
        renewed = self._renewed(current, message, peer)
        if store.synchronous:
            return self._updated(*store.update_now(renewed))
        return self._update_later(renewed)

    def _update_later(self, registration: Registration) -> Later[Message]:
        """A durable Update answered from the store's callback once its batch committed,
        as :meth:`_register_later` (no coroutine per request)."""
        answer: Later[Message] = Later()

        def done(old: Registration | None, error: BaseException | None) -> None:
            if error is None and old is not None:
                answer.resolve(self._updated(old, registration))
            else:
                answer.resolve(_write_failure(error))

        self.registrations.update_then(registration, done)
        return answer

    async def update(self, registration_id: str, message: Message, peer: Peer) -> Message:
        # fetch: the registration may be another node's (a node that is gone: this
        # Update takes it over, same id, new address; see docs/cluster.md).
        current = await self.registrations.fetch(registration_id)
        if current is None:
            raise RegistrationRejected(Code.NOT_FOUND, "no such registration")
        old, new = await self.registrations.update(self._renewed(current, message, peer))
        return self._updated(old, new)

    def _renewed(self, current: Registration, message: Message, peer: Peer) -> Registration:
        """``current`` as an Update renews it, once every rule holds (else rejected)."""
        try:
            params = parse_update_query(message.uri_query)
        except RegistrationParamError as exc:
            raise _bad(str(exc)) from None
        if params.endpoint is not None and params.endpoint != current.endpoint:
            raise _bad(f"ep={params.endpoint!r} is not the registered name")
        if params.endpoint_type is not None and params.endpoint_type != current.endpoint_type:
            raise _bad(f"ept={params.endpoint_type} is not the registered type")
        if identity_key(current.identity, "") != identity_key(peer.identity, ""):
            raise _bad("the update does not come from the registered client's security identity")
        links = self._links(message, required=False) if message.payload else current.links
        return current.renewed(
            address=peer.address,
            transport=peer.transport,
            updated_at=self.clock(),
            lifetime_s=params.lifetime_s if params.lifetime_s is not None else current.lifetime_s,
            sms_number=params.sms_number if params.sms_number is not None else current.sms_number,
            binding=params.binding if params.binding is not None else current.binding,
            queue_mode=params.queue_mode if params.queue_mode is not None else current.queue_mode,
            links=links,
        )

    def _updated(self, old: Registration, new: Registration) -> Message:
        log = self.log
        log.updated += 1
        if old.address != new.address:
            # NAT rebinding or a new IP: later requests go to where the Update came from.
            log.line(
                "%s id=%s now at %s:%d (was %s:%d)",
                new.endpoint,
                new.id,
                new.address[0],
                new.address[1],
                old.address[0],
                old.address[1],
            )
        log.line("updated %s id=%s lt=%d", new.endpoint, new.id, new.lifetime_s)
        events = self.events
        if events.hears(_UPDATED):
            events.publish(
                UpdatedEvent(new.endpoint, new.updated_at, previous=old, registration=new)
            )
        if self.on_contact is not None:
            self.on_contact(new, True)
        return Message(Code.CHANGED)

    # ------------------------------------------------------------------ de-register
    def _deregister_answer(self, registration_id: str, peer: Peer) -> Message | Awaitable[Message]:
        """A De-register on a store that removes by callback and holds the whole fleet
        (memory, SQLite) without a coroutine: the Message at once when nothing is left to
        wait for, else a Later resolved once the removal is durable (and the end's work
        done)."""
        store = self.registrations
        if not (store.synchronous or store.removes_by_callback) or store.partial:
            return self._answered(self.deregister(registration_id, peer))
        current = self._deregistered_by(store.get(registration_id), peer)
        answer: Later[Message] = Later()

        def done(removed: Registration | None, error: BaseException | None) -> None:
            if error is not None:
                answer.resolve(_write_failure(error))
                return
            if removed is None:  # not held any more: the store's contract allows it
                answer.resolve(
                    RegistrationRejected(Code.NOT_FOUND, "no such registration").to_response()
                )
                return
            pending = self._ended(removed, "deregistered")
            if pending is None:
                answer.resolve(Message(Code.DELETED))
            else:
                self._spawn_then(self._deleted_after(pending), answer)

        store.remove_then(current.id, done)
        return answer.result() if answer.done else answer

    async def _deleted_after(self, pending: Awaitable[None]) -> Message:
        await pending
        return Message(Code.DELETED)

    def _deregistered_by(self, current: Registration | None, peer: Peer) -> Registration:
        """``current``, when it exists and ``peer`` may end it (else rejected)."""
        if current is None:
            raise RegistrationRejected(Code.NOT_FOUND, "no such registration")
        if current.identity is not None and identity_key(current.identity, "") != identity_key(
            peer.identity, ""
        ):
            raise _bad("the de-register does not come from the registered client's identity")
        return current

    async def deregister(self, registration_id: str, peer: Peer) -> Message:
        current = self._deregistered_by(await self.registrations.fetch(registration_id), peer)
        await self.remove(current, "deregistered")
        return Message(Code.DELETED)

    async def remove(self, registration: Registration, reason: str) -> Registration | None:
        """End a registration (De-register, expiry, or an operator's request)."""
        removed = await self.registrations.remove(registration.id)
        if removed is None:
            return None
        pending = self._ended(removed, reason)
        if pending is not None:
            await pending
        return removed

    def _ended(self, removed: Registration, reason: str) -> Awaitable[None] | None:
        """Count, log and publish the end of ``removed``; the end hook's work, if any."""
        if reason == "expired":
            self.log.expired += 1
        else:
            self.log.deregistered += 1
        self.log.line("deregistered %s id=%s (%s)", removed.endpoint, removed.id, reason)
        events = self.events
        if events.hears(_DEREGISTRATION):
            events.publish(
                DeregistrationEvent(
                    removed.endpoint,
                    self.clock(),
                    registration=removed,
                    expired=reason == "expired",
                )
            )
        return self.on_removed(removed, reason) if self.on_removed is not None else None

    async def expire(self) -> list[Registration]:
        """Remove every registration past its lifetime plus the grace period."""
        removed: list[Registration] = []
        now = self.clock()
        for reg in await self.registrations.fetch_expired(now, self.config.lifetime_grace_s):
            if await self.remove(reg, "expired") is not None:
                removed.append(reg)
        return removed

    # ------------------------------------------------------------------ helpers
    def _refused(self, message: Message, peer: Peer, rejection: RegistrationRejected) -> None:
        """Tell the operator (log, metric, recent refusals) why a Register was refused."""
        endpoint = message.query().get("ep")
        self.refusals.record(
            RefusalKind.REGISTER,
            rejection.reason,
            rejection.diagnostic,
            peer.address,
            endpoint=endpoint or None,
            identity=peer.identity,
            code=rejection.code.dotted,
        )

    def _unique_id(self) -> str:
        while True:
            rid = self._new_id()
            if self.registrations.get(rid) is None:
                return rid

    @staticmethod
    def _links(message: Message, *, required: bool) -> ObjectLinks:
        if message.content_format not in (None, int(ContentFormat.LINK_FORMAT)):
            raise _bad(f"payload must be application/link-format, not {message.content_format}")
        if required and not message.payload.strip():
            raise _bad("missing payload: the objects and object instances (link-format)")
        payload = message.payload
        links = _LINKS_OF_PAYLOAD.get(payload)
        if links is not None:
            return links
        try:
            # Shared objects: a fleet announces the same objects a million times.
            links = shared_links(decode_links_payload(payload))
        except LinkFormatError as exc:
            raise _bad(f"payload is not valid link-format: {exc}") from None
        if len(payload) <= _LINKS_CACHE_MAX_BYTES and len(_LINKS_OF_PAYLOAD) < _LINKS_CACHE_LIMIT:
            _LINKS_OF_PAYLOAD[payload] = links
        return links

    def _check_certificate_expectation(self, der: bytes, expectation: X509Expectation) -> None:
        """The endpoint's own X.509 entry (seed 000 change 4): direct or indirect trust.

        The handshake already proved the chain against the server-wide CAs; an entry
        narrows that to one certificate (direct trust) or to its own CAs and expected
        Subject/SubjectAltName names (indirect trust), checked at ``now``.
        """
        from lwm2m.security.x509 import (
            CertificateError,
            has_names,
            load_certificate,
            verify_client_certificate,
        )

        if expectation.certificate_der is None and not expectation.ca_pems:
            if expectation.expected_names and not has_names(
                load_certificate(der), expectation.expected_names
            ):
                raise _bad(
                    "client certificate lacks the expected names "
                    f"{list(expectation.expected_names)}",
                    "certificate_untrusted",
                )
            return
        now = datetime.datetime.fromtimestamp(self.clock(), datetime.UTC)
        try:
            verify_client_certificate(der, expectation, now)
        except CertificateError as exc:
            raise _bad(
                f"client certificate not trusted for this endpoint: {exc}", "certificate_untrusted"
            ) from None

    def _check_identity(self, endpoint: str, ept: int | None, peer: Peer) -> None:
        identity = peer.identity
        entry = self.security.get(endpoint) if self.security is not None else None
        if entry is None and self.config.known_endpoints_only:
            raise _bad(UNKNOWN_ENDPOINT, "unknown_endpoint")
        if identity is None:
            if entry is not None and self.config.require_security_when_known:
                raise _bad(
                    f"endpoint {endpoint!r} must register over a secure (DTLS) connection",
                    "security_required",
                )
            return
        if identity.certificate_der is not None:
            # Imported here: the X.509 stack (cryptography) is only needed with DTLS.
            from lwm2m.security.x509 import CertificateError, check_registration_name

            try:
                check_registration_name(identity.certificate_der, ept, endpoint)
            except CertificateError:
                raise _bad(X509_NAME_MISMATCH, "x509_name_mismatch") from None
            if entry is not None and entry.x509 is not None:
                self._check_certificate_expectation(identity.certificate_der, entry.x509)
            return
        if identity.psk_identity is not None:
            bound = (
                self.security.get_by_psk_identity(identity.psk_identity)
                if self.security is not None
                else None
            )
            if bound is None or bound.endpoint != endpoint:
                raise _bad(PSK_NAME_MISMATCH, "psk_identity_mismatch")

"""Registration with one LwM2M server: Register, Update, De-register, retries.

One :class:`ServerSession` per server account (seed 002 5.2.1: register to
every server that has a Server object instance). Timers live on the client's
shared scheduler, so an idle registered device costs one heap entry.

Rules (docs/compliance.md, "Registration timing and retries"):

1. Register ``POST /rd?ep=&lt=&lwm2m=&b=[&Q][&ept=]`` with the object links;
   2.01 with Location-Path gives the registration handle. The registration
   runs until ``lifetime`` after the Register (or Update) that succeeded was
   *first sent*: the server started counting no earlier than that.
2. Update ``POST /rd/<id>`` (1.1; the seed's PUT is accepted by our server too)
   is due at :func:`update_delay`: ``lifetime - MAX_TRANSMIT_WAIT`` when a whole
   CON exchange fits in the second half of the lifetime, else at half the
   lifetime (as Anjay; Wakaama switches at ``lifetime = MAX_TRANSMIT_WAIT``),
   drawn up to 10 % earlier so that a fleet registered together spreads out.
   Also at once when lifetime/binding or the objects change.
3. When the registration's end comes and the Update is still unanswered, the
   exchange is abandoned and the client registers again at once (waiting out
   the retransmissions would leave it unregistered meanwhile). An Update
   answered with an error (4.04: the server forgot us) or timed out also
   registers again at once.
4. A failed Register follows the LwM2M 1.1 procedure (6.2.1.1) with the Server
   object's resources 17-20, defaults 5 / 60 s / 86400 s / 1 when absent: after
   attempt n of a sequence wait ``Retry Timer * 2**(n-1)``; after ``Retry
   Count`` attempts the sequence failed: wait ``Sequence Delay Timer`` and
   start the next; after ``Sequence Retry Count`` sequences the registration
   failed ("registration-failed" event: the client bootstraps when resource
   16 allows and it has a bootstrap account). Every wait is drawn between 1
   and 1.2 times its value so that a fleet does not retry in lock-step. Where
   the spec stops (no bootstrap possible), we go on with a new round of
   sequences after the Sequence Delay Timer; a Sequence Delay Timer of
   2**32-1 means no further sequence (Server object, E.2).
5. De-register ``DELETE /rd/<id>`` on shutdown and factory reset (seed 5.2.3).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from lwm2m.client.scheduler import Scheduler, Timer
from lwm2m.client.store import ServerAccount
from lwm2m.coap.codes import Code
from lwm2m.coap.errors import CoapError
from lwm2m.coap.message import Message
from lwm2m.coap.peer import Address
from lwm2m.coap.tasks import cancel_and_wait
from lwm2m.formats.media import ContentFormat
from lwm2m.protocol.registration import DEFAULT_LIFETIME_S, RegisterParams

logger = logging.getLogger(__name__)


class RegistrationState(enum.Enum):
    IDLE = "idle"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"  # waiting for the next retry
    DEREGISTERED = "deregistered"
    DISABLED = "disabled"


@dataclass(frozen=True, slots=True)
class RegistrationInfo:
    """What a session needs from the client to build its messages."""

    endpoint: str
    endpoint_type: int | None
    lwm2m_version: str
    queue_mode: bool


class Transport:
    """How a session reaches its server: resolved address and a request function."""

    __slots__ = ("address", "request")

    def __init__(
        self, address: Address, request: Callable[[Message, Address], Awaitable[Message]]
    ) -> None:
        self.address = address
        self.request = request


#: MAX_TRANSMIT_WAIT with RFC 7252's default transmission parameters.
DEFAULT_EXCHANGE_S = 93.0

#: Sequence Delay Timer value that means "no further sequence" (Server object, E.2).
NO_MORE_SEQUENCES_S = 2**32 - 1

#: Update due up to this fraction earlier than :func:`update_delay` (fleet spreading).
UPDATE_JITTER = 0.1

#: Retry waits drawn up to this fraction later than the procedure's value.
RETRY_JITTER = 0.2


def update_delay(lifetime_s: float, exchange_s: float = DEFAULT_EXCHANGE_S) -> float:
    """Seconds after a registration starts when its Update is due (rule 2).

    ``exchange_s`` is the longest a CON exchange can take (MAX_TRANSMIT_WAIT).
    A lifetime of at least two exchanges sends the Update one whole exchange
    before the end; a shorter one at half the lifetime, so that an Update is
    never sent more often than twice per lifetime.
    """
    return max(lifetime_s - exchange_s, lifetime_s / 2.0)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The LwM2M 1.1 registration retry parameters (Server resources 16-20).

    The defaults are the spec's (Table 6.2.1.1-1 "Registration Procedures
    Default Values"), used for each resource the Server instance lacks.
    """

    retry_count: int = 5
    retry_timer_s: float = 60.0
    sequence_delay_s: float = 86400.0
    sequence_retry_count: int = 1
    bootstrap_on_failure: bool = True

    @classmethod
    def of(cls, account: ServerAccount) -> RetryPolicy:
        default = cls()
        return cls(
            retry_count=max(1, _or(account.retry_count, default.retry_count)),
            retry_timer_s=max(0.0, float(_or(account.retry_timer_s, default.retry_timer_s))),
            sequence_delay_s=max(
                0.0, float(_or(account.sequence_delay_s, default.sequence_delay_s))
            ),
            sequence_retry_count=max(
                1, _or(account.sequence_retry_count, default.sequence_retry_count)
            ),
            bootstrap_on_failure=account.bootstrap_on_failure,
        )

    def wait_after(self, attempt: int) -> float:
        """The wait after failed attempt ``attempt`` (1-based) of a sequence that goes on."""
        return self.retry_timer_s * (1 << min(attempt - 1, 30))


def _or(value: int | None, default: int | float) -> int:
    return int(default) if value is None else value


class ServerSession:
    """Registration state machine for one server account."""

    def __init__(
        self,
        account: ServerAccount,
        transport: Transport,
        info: Callable[[], RegistrationInfo],
        payload: Callable[[], bytes],
        scheduler: Scheduler,
        rng: random.Random,
        *,
        exchange_s: float = DEFAULT_EXCHANGE_S,
        on_event: Callable[[ServerSession, str], None] | None = None,
    ) -> None:
        self.account = account
        self.transport = transport
        self._info = info
        self._payload = payload
        self.scheduler = scheduler
        self.rng = rng
        #: the longest one CON exchange can take (MAX_TRANSMIT_WAIT of the endpoint)
        self.exchange_s = exchange_s
        self.on_event = on_event
        self.state = RegistrationState.IDLE
        self.location: tuple[str, ...] = ()
        #: failed Register attempts in a row (all sequences)
        self.failures = 0
        self.registrations = 0
        self.updates = 0
        self.last_update_at: float | None = None
        #: when the registration runs out (scheduler clock), while registered
        self.expires_at: float | None = None
        #: when the next periodic Update is due (scheduler clock), while registered
        self.next_update_at: float | None = None
        self.sent_lifetime: int | None = None
        self.sent_binding: str | None = None
        self.sent_payload: bytes | None = None
        self._timer: Timer | None = None
        self._deadline: Timer | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending_update = False
        self._attempt = 0  # failed attempts in the current sequence
        self._sequence = 0  # failed sequences in the current round
        #: the server answered an Update with an error: it no longer knows this
        #: registration (nor its observations); cleared once registered again
        self.server_forgot = False
        #: the device is shutting down: no Register or Update starts any more
        #: (a stop must not be prolonged by exchanges nobody will wait for)
        self.stopping = False

    @property
    def short_server_id(self) -> int:
        return self.account.short_server_id

    @property
    def lifetime_s(self) -> int:
        return self.account.lifetime_s or DEFAULT_LIFETIME_S

    @property
    def registered(self) -> bool:
        return self.state is RegistrationState.REGISTERED

    @property
    def retry_at(self) -> float | None:
        """When the next Register attempt is due (scheduler clock), while failed."""
        if self.state is not RegistrationState.FAILED or self._timer is None:
            return None
        return self._timer.when

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy.of(self.account)

    def _event(self, what: str) -> None:
        if self.on_event is not None:
            self.on_event(self, what)

    # -- scheduling --------------------------------------------------------------------

    def start(self) -> None:
        """Register now (in the background)."""
        self._cancel_timer()
        self._run(self._register())

    def _run(self, coro: Awaitable[None]) -> None:
        if self.stopping:
            coro.close()  # type: ignore[attr-defined]
            return
        if self._task is not None and not self._task.done():
            # One exchange at a time; remember that an update is wanted.
            self._pending_update = True
            coro.close()  # type: ignore[attr-defined]
            return
        self._task = asyncio.ensure_future(coro)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.expires_at = None
        self.next_update_at = None

    def _schedule(self, delay_s: float, action: Callable[[], Awaitable[None]]) -> None:
        self._cancel_timer()
        if self.stopping:
            return
        self._timer = self.scheduler.call_later(delay_s, lambda: self._run(action()))

    def request_update(self) -> None:
        """Send an Update soon (objects, lifetime or binding changed, or asked by a server)."""
        if self.state is RegistrationState.REGISTERED:
            self._cancel_timer()
            self._run(self._update())
        elif self.state in (RegistrationState.IDLE, RegistrationState.FAILED):
            self.start()
        else:
            self._pending_update = True

    def set_account(self, account: ServerAccount) -> None:
        """The Server/Security instance changed (lifetime, binding, retry parameters ...)."""
        self.account = account

    # -- the exchanges ---------------------------------------------------------------

    def _register_message(self) -> Message:
        info = self._info()
        params = RegisterParams(
            endpoint=info.endpoint,
            endpoint_type=info.endpoint_type,
            lifetime_s=self.lifetime_s,
            lwm2m_version=info.lwm2m_version,
            binding=self.account.binding.replace("Q", "") or "U",
            queue_mode=info.queue_mode or "Q" in self.account.binding,
        )
        query = list(params.to_query())
        if self.account.lifetime_s is None:
            # seed Table 3: no Lifetime resource -> the parameter MUST NOT be sent
            query = [q for q in query if not q.startswith("lt=")]
        if not any(q.startswith("lwm2m=") for q in query):
            query.insert(2 if info.endpoint_type is None else 3, f"lwm2m={info.lwm2m_version}")
        payload = self._payload()
        self.sent_payload = payload
        self.sent_lifetime = self.lifetime_s
        self.sent_binding = self.account.binding
        return Message(
            code=Code.POST,
            uri_path=("rd",),
            uri_query=tuple(query),
            content_format=ContentFormat.LINK_FORMAT,
            payload=payload,
        )

    async def _register(self) -> None:
        self._cancel_deadline()
        self.state = RegistrationState.REGISTERING
        started = self.scheduler.now()
        try:
            response = await self.transport.request(
                self._register_message(), self.transport.address
            )
        except CoapError as exc:
            self._failed(f"register: {type(exc).__name__}: {exc}")
            return
        except asyncio.CancelledError:
            raise
        if response.code != Code.CREATED or not response.location_path:
            self._failed(
                f"register answered {Code.from_byte(response.code)} {response.payload[:80]!r}"
            )
            return
        self.location = response.location_path
        self.failures = 0
        self._attempt = 0
        self._sequence = 0
        self.registrations += 1
        self.state = RegistrationState.REGISTERED
        self.last_update_at = self.scheduler.now()
        logger.info(
            "registered to %s as /%s (lifetime %d s)",
            self.account.uri,
            "/".join(self.location),
            self.lifetime_s,
        )
        self._event("registered")
        self.server_forgot = False
        self._renewed(started)
        self._after_exchange()

    def _renewed(self, started: float) -> None:
        """The registration runs one lifetime from ``started`` (rule 1): arm its end."""
        self._cancel_deadline()
        self.expires_at = started + self.lifetime_s
        self._deadline = self.scheduler.call_at(self.expires_at, self._lifetime_ended)
        delay = update_delay(self.lifetime_s, self.exchange_s)
        self.next_update_at = started + delay * self.rng.uniform(1.0 - UPDATE_JITTER, 1.0)

    def _after_exchange(self) -> None:
        self._task = None
        if self._pending_update and self.state is RegistrationState.REGISTERED:
            self._pending_update = False
            self._run(self._update())
            return
        self._pending_update = False
        if self.state is RegistrationState.REGISTERED and self.next_update_at is not None:
            self._schedule(self.next_update_at - self.scheduler.now(), self._update)

    def _lifetime_ended(self) -> None:
        """Rule 3: the registration ran out before its Update succeeded."""
        self._deadline = None
        if self.state is not RegistrationState.REGISTERED or self.stopping:
            return
        logger.warning(
            "registration to %s ran out with its Update unanswered; registering again",
            self.account.uri,
        )
        self._cancel_timer()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()  # frees the CoAP exchange: its retransmissions stop
        self.state = RegistrationState.FAILED
        self._pending_update = False
        self._event("update-failed")
        self._run(self._register())

    def _failed(self, reason: str) -> None:
        """Rule 4: a Register attempt failed; wait per the 1.1 retry procedure."""
        self.failures += 1
        self.state = RegistrationState.FAILED
        self._task = None
        self._pending_update = False
        policy = self.retry_policy()
        self._attempt += 1
        registration_failed = False
        if self._attempt < policy.retry_count:
            delay = policy.wait_after(self._attempt)
            step = f"attempt {self._attempt + 1}/{policy.retry_count}"
        else:
            self._attempt = 0
            self._sequence += 1
            delay = policy.sequence_delay_s
            if self._sequence >= policy.sequence_retry_count:
                self._sequence = 0
                registration_failed = True
                step = "registration failed; next round of sequences"
            else:
                step = f"sequence {self._sequence + 1}/{policy.sequence_retry_count}"
        if delay >= NO_MORE_SEQUENCES_S:
            self._cancel_timer()
            logger.warning(
                "registration to %s failed (%s); no further sequence", self.account.uri, reason
            )
        else:
            delay *= self.rng.uniform(1.0, 1.0 + RETRY_JITTER)
            logger.warning(
                "registration to %s failed (%s); %s in %.1f s",
                self.account.uri,
                reason,
                step,
                delay,
            )
            self._schedule(delay, self._register)
        self._event("failed")
        if registration_failed:
            self._event("registration-failed")

    def _update_message(self) -> Message:
        query: list[str] = []
        if self.sent_lifetime != self.lifetime_s:
            query.append(f"lt={self.lifetime_s}")
        if self.sent_binding != self.account.binding:
            query.append(f"b={self.account.binding.replace('Q', '') or 'U'}")
            if "Q" in self.account.binding:
                query.append("Q")
        payload = self._payload()
        changed = payload != self.sent_payload
        self.sent_lifetime = self.lifetime_s
        self.sent_binding = self.account.binding
        self.sent_payload = payload
        return Message(
            code=Code.POST,
            uri_path=self.location,
            uri_query=tuple(query),
            content_format=ContentFormat.LINK_FORMAT if changed else None,
            payload=payload if changed else b"",
        )

    async def _update(self) -> None:
        if self.state is not RegistrationState.REGISTERED:
            self._task = None
            return
        started = self.scheduler.now()
        try:
            response = await self.transport.request(self._update_message(), self.transport.address)
        except CoapError as exc:
            logger.warning("update to %s failed: %s; registering again", self.account.uri, exc)
            self._update_failed()
            return
        except asyncio.CancelledError:
            raise
        if response.code != Code.CHANGED:
            logger.warning(
                "update to %s answered %s; registering again",
                self.account.uri,
                Code.from_byte(response.code),
            )
            self.server_forgot = True
            self._update_failed()
            return
        self.updates += 1
        self.last_update_at = self.scheduler.now()
        self._renewed(started)
        self._event("updated")
        self._after_exchange()

    def _update_failed(self) -> None:
        self._cancel_deadline()
        self.state = RegistrationState.FAILED
        self._task = None
        self._event("update-failed")
        self._run(self._register())

    async def deregister(self) -> bool:
        """Send De-register (if registered) and stop; returns True when the server confirmed."""
        self._cancel_timer()
        self._cancel_deadline()
        task, self._task = self._task, None
        if task is not None and not task.done():
            await cancel_and_wait([task])
        was_registered = self.state is RegistrationState.REGISTERED
        self.state = RegistrationState.DEREGISTERED
        if not was_registered or not self.location:
            return False
        try:
            response = await self.transport.request(
                Message(code=Code.DELETE, uri_path=self.location), self.transport.address
            )
        except CoapError as exc:
            logger.warning("de-register from %s failed: %s", self.account.uri, exc)
            return False
        self._event("deregistered")
        return response.code == Code.DELETED

    def stop(self) -> None:
        """Forget the registration without telling the server (reboot, disable)."""
        self._cancel_timer()
        self._cancel_deadline()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None
        if self.state is not RegistrationState.DEREGISTERED:
            self.state = RegistrationState.IDLE

    def disable(self, seconds: float) -> None:
        """Server Disable (1/x/4): stay away for the Disable Timeout, then register again."""
        self.stop()
        self.state = RegistrationState.DISABLED
        self._schedule(seconds, self._register)

"""Registration with one LwM2M server: Register, Update, De-register, retries.

One :class:`ServerSession` per server account (seed 002 5.2.1: register to
every server that has a Server object instance). Timers live on the client's
shared scheduler, so an idle registered device costs one heap entry.

* Register ``POST /rd?ep=&lt=&lwm2m=&b=[&Q][&ept=]`` with the object links;
  2.01 with Location-Path gives the registration handle.
* Update ``POST /rd/<id>`` (1.1; the seed's PUT is accepted by our server too)
  a little before the lifetime ends (90 %, at least 2 s early), or at once when
  lifetime/binding or the objects change; a 4.04 means the server forgot us:
  register again.
* De-register ``DELETE /rd/<id>`` on shutdown and factory reset (seed 5.2.3).
* A failed Register is retried with exponential backoff (2 s doubling to
  5 min, +/-20 % jitter); after ``bootstrap_after_failures`` failures in a
  row the client falls back to bootstrap when it has a bootstrap account.
"""

from __future__ import annotations

import asyncio
import contextlib
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


def update_delay(lifetime_s: int) -> float:
    """When to send the Update: at 90 % of the lifetime, and at least 2 s before it ends."""
    return max(1.0, min(lifetime_s * 0.9, lifetime_s - 2.0))


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
        retry_initial_s: float = 2.0,
        retry_max_s: float = 300.0,
        on_event: Callable[[ServerSession, str], None] | None = None,
    ) -> None:
        self.account = account
        self.transport = transport
        self._info = info
        self._payload = payload
        self.scheduler = scheduler
        self.rng = rng
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.on_event = on_event
        self.state = RegistrationState.IDLE
        self.location: tuple[str, ...] = ()
        self.failures = 0
        self.registrations = 0
        self.updates = 0
        self.last_update_at: float | None = None
        self.sent_lifetime: int | None = None
        self.sent_binding: str | None = None
        self.sent_payload: bytes | None = None
        self._timer: Timer | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending_update = False
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
        """The Server/Security instance changed (lifetime, binding ...)."""
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
        self.state = RegistrationState.REGISTERING
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
        self._after_exchange()

    def _after_exchange(self) -> None:
        self._task = None
        if self._pending_update and self.state is RegistrationState.REGISTERED:
            self._pending_update = False
            self._run(self._update())
            return
        self._pending_update = False
        if self.state is RegistrationState.REGISTERED:
            self._schedule(update_delay(self.lifetime_s), self._update)

    def _failed(self, reason: str) -> None:
        self.failures += 1
        self.state = RegistrationState.FAILED
        delay = min(self.retry_max_s, self.retry_initial_s * (2 ** (self.failures - 1)))
        delay *= self.rng.uniform(0.8, 1.2)
        logger.warning(
            "registration to %s failed (%s); retry %d in %.1f s",
            self.account.uri,
            reason,
            self.failures,
            delay,
        )
        self._task = None
        self._pending_update = False
        self._event("failed")
        self._schedule(delay, self._register)

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
        try:
            response = await self.transport.request(self._update_message(), self.transport.address)
        except CoapError as exc:
            logger.warning("update to %s failed: %s; registering again", self.account.uri, exc)
            self.state = RegistrationState.FAILED
            self._task = None
            self._event("update-failed")
            self._run(self._register())
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
            self.state = RegistrationState.FAILED
            self._task = None
            self._event("update-failed")
            self._run(self._register())
            return
        self.updates += 1
        self.last_update_at = self.scheduler.now()
        self._event("updated")
        self._after_exchange()

    async def deregister(self) -> bool:
        """Send De-register (if registered) and stop; returns True when the server confirmed."""
        self._cancel_timer()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
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

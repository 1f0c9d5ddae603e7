"""Observations on the client: when to notify (pmin, pmax, gt, lt, st, epmin, epmax).

Attributes are kept per server and per path (Write-Attributes is per server)
and inherited object -> instance -> resource; the Server object's Default
Minimum/Maximum Period fill in pmin/pmax when no level sets them.

Decisions are made on the shared :class:`~lwm2m.client.scheduler.Scheduler`'s
clock. An idle observation costs a pmax timer at most; a value change costs a
task only when a notification is actually due.

* A change inside ``pmin`` is remembered and notified when ``pmin`` ends.
* For a numeric resource with ``gt``/``lt``/``st``, a change notifies only when
  the value crosses ``gt`` or ``lt`` or moved by at least ``st`` since the last
  notification; without those, any change notifies.
* ``pmax`` notifies even without a change.
* ``epmax`` re-reads computed values (resources with a reader) at least that
  often, ``epmin`` keeps those samples at least that far apart.

Notification Storing When Disabled or Offline (Server resource 6, LwM2M 1.1
E.2): while a server cannot be reached (account disabled, registration lost)
a notification that falls due is, with resource 6 true, rendered at that
moment and kept in a bounded per-server FIFO (the oldest is dropped when it
is full) that :meth:`ObservationManager.resume` sends in order once the
server is back; with resource 6 false it is dropped and the observation sends
its latest value on resume.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from lwm2m.client.scheduler import Scheduler, Timer
from lwm2m.client.stored_values import Stored, as_number
from lwm2m.coap.message import Message
from lwm2m.model.path import Path
from lwm2m.protocol.attributes import Attributes

logger = logging.getLogger(__name__)

#: per server, how many notifications are kept while it is unreachable
DEFAULT_STORED_NOTIFICATIONS = 64


@dataclass(frozen=True, slots=True)
class Rendered:
    """One notification ready to go: the message and the values it carries.

    ``final`` marks an error notification (the observed node is gone): it ends
    the observation once delivered.
    """

    message: Message
    values: dict[Path, Stored]
    final: bool = False


#: (observation) -> the notification with the current values (reads and encodes).
RenderNotification = Callable[["Observation"], Awaitable[Rendered]]
#: (observation, message) -> send it; False when the observation is over (RST, cancel).
DeliverNotification = Callable[["Observation", Message], Awaitable[bool]]
#: (paths) -> current values of the observed leaves (reading computed resources).
Sampler = Callable[[tuple[Path, ...]], Awaitable[dict[Path, Stored]]]


class AttributeStore:
    """Write-Attributes values by (Short Server ID, path)."""

    __slots__ = ("_attrs",)

    def __init__(self) -> None:
        self._attrs: dict[tuple[int, Path], Attributes] = {}

    def get(self, ssid: int, path: Path) -> Attributes:
        return self._attrs.get((ssid, path), _EMPTY)

    def set(self, ssid: int, path: Path, attributes: Attributes) -> None:
        if attributes.is_empty():
            self._attrs.pop((ssid, path), None)
        else:
            self._attrs[(ssid, path)] = attributes

    def effective(
        self, ssid: int, path: Path, default_pmin: int = 0, default_pmax: int | None = None
    ) -> Attributes:
        """Attributes at ``path`` inherited from its instance and object levels."""
        result = _EMPTY
        chain = [path]
        while chain[-1].depth > 1:
            chain.append(chain[-1].parent)
        for level in reversed(chain):
            result = self.get(ssid, level).inherit(result)
        if result.pmin is None and default_pmin:
            result = Attributes(pmin=default_pmin).inherit(result)
        if result.pmax is None and default_pmax:
            result = Attributes(pmax=default_pmax).inherit(result)
        return result

    def remove_server(self, ssid: int) -> None:
        for key in [k for k in self._attrs if k[0] == ssid]:
            del self._attrs[key]

    def remove_under(self, path: Path) -> None:
        for key in [k for k in self._attrs if k[1].startswith(path)]:
            del self._attrs[key]

    def items(self) -> list[tuple[int, Path, Attributes]]:
        return [(ssid, path, attrs) for (ssid, path), attrs in self._attrs.items()]


_EMPTY = Attributes()


@dataclass(slots=True, eq=False)
class Observation:
    """One observation by one server of one path (or several: Observe-Composite)."""

    ssid: int
    paths: tuple[Path, ...]
    token: bytes
    content_format: int
    composite: bool
    handle: object  # the endpoint's ServerObservation (or a test double)
    last_sent_at: float = 0.0
    last_values: dict[Path, Stored] | None = None
    last_sample_at: float = 0.0
    dirty: bool = False
    sending: bool = False
    timer: Timer | None = None
    sample_timer: Timer | None = None
    closed: bool = False
    #: a notification was dropped while the server was unreachable (resource 6 false)
    missed: bool = False


@dataclass(frozen=True, slots=True)
class StoredNotification:
    """A notification that fell due while its server was unreachable."""

    observation: Observation
    message: Message
    stored_at: float


def _numeric_leaves(values: dict[Path, Stored] | None) -> dict[Path, float]:
    result: dict[Path, float] = {}
    for path, value in (values or {}).items():
        number = as_number(value)
        if number is not None and path.depth >= 3:
            result[path] = number
    return result


def should_notify(
    attrs: Attributes, old: dict[Path, Stored] | None, new: dict[Path, Stored]
) -> bool:
    """Whether a change from ``old`` to ``new`` passes the gt/lt/st conditions."""
    if old == new:
        return False
    if attrs.gt is None and attrs.lt is None and attrs.st is None:
        return True
    old_n = _numeric_leaves(old)
    new_n = _numeric_leaves(new)
    if not new_n:
        return True  # the conditions apply to numeric values only
    for path, value in new_n.items():
        before = old_n.get(path)
        if before is None:
            return True
        if attrs.gt is not None and (before > attrs.gt) != (value > attrs.gt):
            return True
        if attrs.lt is not None and (before < attrs.lt) != (value < attrs.lt):
            return True
        if attrs.st is not None and abs(value - before) >= attrs.st:
            return True
    return False


class ObservationManager:
    """Every observation of one client, keyed by (server, token)."""

    def __init__(
        self,
        scheduler: Scheduler,
        attributes: AttributeStore,
        render: RenderNotification,
        deliver: DeliverNotification,
        sample: Sampler,
        defaults: Callable[[int], tuple[int, int | None]],
        has_reader: Callable[[Path], bool],
        *,
        reachable: Callable[[int], bool] = lambda ssid: True,
        storing: Callable[[int], bool] = lambda ssid: True,
        stored_limit: int = DEFAULT_STORED_NOTIFICATIONS,
    ) -> None:
        self.scheduler = scheduler
        self.attributes = attributes
        self._render = render
        self._deliver = deliver
        self._sample = sample
        self._defaults = defaults
        self._has_reader = has_reader
        self._reachable = reachable
        self._storing = storing
        if stored_limit < 1:
            raise ValueError("stored_limit must be at least 1")
        self.stored_limit = stored_limit
        #: notifications dropped because a server's store was full (oldest first)
        self.stored_dropped = 0
        self._observations: dict[tuple[int, bytes], Observation] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: dict[int, deque[StoredNotification]] = {}
        self._flushing: set[int] = set()

    def __len__(self) -> int:
        return len(self._observations)

    def all(self) -> list[Observation]:
        return list(self._observations.values())

    def add(self, observation: Observation, values: dict[Path, Stored]) -> None:
        """Start after the first response (which carried ``values``) was built."""
        key = (observation.ssid, observation.token)
        old = self._observations.pop(key, None)
        if old is not None:
            self._close(old)
        now = self.scheduler.now()
        observation.last_sent_at = now
        observation.last_sample_at = now
        observation.last_values = values
        self._observations[key] = observation
        self._arm_pmax(observation)
        self._arm_sampling(observation)

    def attributes_for(self, obs: Observation) -> Attributes:
        pmin, pmax = self._defaults(obs.ssid)
        if obs.composite or len(obs.paths) != 1:
            # Composite observations take the server's defaults only (1.1 5.1.2.1).
            return Attributes(pmin=pmin or None, pmax=pmax)
        return self.attributes.effective(obs.ssid, obs.paths[0], pmin, pmax)

    def remove(self, ssid: int, token: bytes) -> Observation | None:
        obs = self._observations.pop((ssid, token), None)
        if obs is not None:
            self._close(obs)
        return obs

    def cancel_server(self, ssid: int) -> None:
        """End every observation of a server but keep its attributes (it registered anew)."""
        for key in [k for k in self._observations if k[0] == ssid]:
            obs = self._observations.pop(key)
            self._close(obs)
            cancel = getattr(obs.handle, "cancel", None)
            if callable(cancel):
                cancel()
        self._held.pop(ssid, None)

    def remove_server(self, ssid: int) -> None:
        """Forget every observation (and attribute) of a server (deregistration, seed D.1.2)."""
        for key in [k for k in self._observations if k[0] == ssid]:
            self._close(self._observations.pop(key))
        self._held.pop(ssid, None)
        self.attributes.remove_server(ssid)

    def remove_under(self, path: Path) -> None:
        """An instance was deleted: observations of it and below end."""
        for key, obs in list(self._observations.items()):
            if any(p.startswith(path) for p in obs.paths):
                del self._observations[key]
                self._close(obs)
                cancel = getattr(obs.handle, "cancel", None)
                if callable(cancel):
                    cancel()

    def clear(self) -> None:
        for obs in self._observations.values():
            self._close(obs)
        self._observations.clear()
        self._held.clear()
        for task in list(self._tasks):
            task.cancel()

    def _close(self, obs: Observation) -> None:
        obs.closed = True
        for timer in (obs.timer, obs.sample_timer):
            if timer is not None:
                timer.cancel()
        obs.timer = obs.sample_timer = None

    # -- change handling -----------------------------------------------------------------

    def value_changed(self, path: Path) -> None:
        for obs in self._observations.values():
            if any(path.startswith(p) or p.startswith(path) for p in obs.paths):
                obs.dirty = True
                self._evaluate(obs)

    def attributes_changed(self, ssid: int) -> None:
        """New attributes apply from now on: re-arm the timers of that server."""
        for obs in self._observations.values():
            if obs.ssid == ssid:
                self._arm_pmax(obs)
                self._arm_sampling(obs)

    def _evaluate(self, obs: Observation) -> None:
        if obs.closed or obs.sending:
            return
        attrs = self.attributes_for(obs)
        now = self.scheduler.now()
        pmin_end = obs.last_sent_at + (attrs.pmin or 0)
        if now < pmin_end:
            if obs.timer is None or obs.timer.when > pmin_end:
                if obs.timer is not None:
                    obs.timer.cancel()
                obs.timer = self.scheduler.call_at(pmin_end, lambda: self._on_timer(obs))
            return
        self._start(obs, forced=False)

    def _on_timer(self, obs: Observation) -> None:
        obs.timer = None
        if obs.closed:
            return
        attrs = self.attributes_for(obs)
        now = self.scheduler.now()
        pmax_due = attrs.pmax is not None and now >= obs.last_sent_at + attrs.pmax
        if pmax_due:
            self._start(obs, forced=True)
        elif obs.dirty:
            self._start(obs, forced=False)
        else:
            self._arm_pmax(obs)

    def _arm_pmax(self, obs: Observation) -> None:
        if obs.timer is not None:
            obs.timer.cancel()
            obs.timer = None
        if obs.closed:
            return
        attrs = self.attributes_for(obs)
        if attrs.pmax is not None and attrs.pmax > 0:
            when = obs.last_sent_at + max(attrs.pmax, attrs.pmin or 0)
            obs.timer = self.scheduler.call_at(when, lambda: self._on_timer(obs))

    def _arm_sampling(self, obs: Observation) -> None:
        if obs.sample_timer is not None:
            obs.sample_timer.cancel()
            obs.sample_timer = None
        if obs.closed or not any(self._has_reader(p) for p in obs.paths):
            return
        attrs = self.attributes_for(obs)
        if attrs.epmax is None or attrs.epmax <= 0:
            return
        when = obs.last_sample_at + max(attrs.epmax, attrs.epmin or 0)
        obs.sample_timer = self.scheduler.call_at(when, lambda: self._on_sample_timer(obs))

    def _on_sample_timer(self, obs: Observation) -> None:
        obs.sample_timer = None
        if not obs.closed:
            self._spawn(self._sample_task(obs))

    async def _sample_task(self, obs: Observation) -> None:
        obs.last_sample_at = self.scheduler.now()
        try:
            values = await self._sample(obs.paths)
        except Exception:
            logger.debug("sampling %s failed", obs.paths, exc_info=True)
            values = obs.last_values or {}
        if values != obs.last_values:
            obs.dirty = True
            self._evaluate(obs)
        self._arm_sampling(obs)

    def _start(self, obs: Observation, *, forced: bool) -> None:
        obs.sending = True
        self._spawn(self._notify_task(obs, forced))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify_task(self, obs: Observation, forced: bool) -> None:
        try:
            attrs = self.attributes_for(obs)
            if not forced:
                values = await self._sample(obs.paths)
                obs.dirty = False
                if not should_notify(attrs, obs.last_values, values):
                    return
            obs.dirty = False
            if not self.online(obs.ssid) and not self._storing(obs.ssid):
                self._drop(obs)
                return
            rendered = await self._render(obs)
            if not self.online(obs.ssid):
                self._hold(obs, rendered)
                return
            if not await self._deliver(obs, rendered.message) or rendered.final:
                self.remove(obs.ssid, obs.token)
                return
            obs.last_values = rendered.values
            obs.last_sent_at = self.scheduler.now()
        except Exception:
            obs.dirty = False  # no retry loop on a persistent failure
            logger.exception("notification for %s failed", [str(p) for p in obs.paths])
        finally:
            obs.sending = False
            if not obs.closed:
                self._arm_pmax(obs)
                if obs.dirty:  # changed while this one was being sent
                    self._evaluate(obs)

    # -- unreachable servers (Server resource 6) --------------------------------------------

    def online(self, ssid: int) -> bool:
        """Notifications to ``ssid`` go out now (not while its stored ones are being sent)."""
        return ssid not in self._flushing and self._reachable(ssid)

    def stored(self, ssid: int) -> list[StoredNotification]:
        """The notifications kept for ``ssid``, oldest first."""
        return list(self._held.get(ssid, ()))

    def _drop(self, obs: Observation) -> None:
        """Resource 6 false: nothing is kept; the latest value goes out on resume."""
        obs.missed = True
        obs.last_sent_at = self.scheduler.now()  # pmin/pmax pace on, no busy timer

    def _hold(self, obs: Observation, rendered: Rendered) -> None:
        if rendered.final:
            self.remove(obs.ssid, obs.token)  # the node is gone; nobody to tell now
            return
        now = self.scheduler.now()
        queue = self._held.setdefault(obs.ssid, deque())
        if len(queue) >= self.stored_limit:
            queue.popleft()
            self.stored_dropped += 1
            logger.warning(
                "server %d unreachable: %d notifications stored, dropping the oldest",
                obs.ssid,
                len(queue) + 1,
            )
        queue.append(StoredNotification(obs, rendered.message, now))
        obs.last_values = rendered.values  # later changes compare with what was stored
        obs.last_sent_at = now

    def resume(self, ssid: int) -> None:
        """``ssid`` is reachable again: send its stored notifications in order, then
        the latest value of the observations whose notifications were dropped."""
        if ssid in self._flushing:
            return
        self._flushing.add(ssid)
        self._spawn(self._flush(ssid))

    async def _flush(self, ssid: int) -> None:
        try:
            queue = self._held.get(ssid)
            while queue:
                if not self._reachable(ssid):
                    return  # gone again: the rest waits for the next resume
                item = queue[0]
                if not item.observation.closed:
                    delivered = await self._deliver(item.observation, item.message)
                    if not delivered:
                        self.remove(item.observation.ssid, item.observation.token)
                queue.popleft()
            self._held.pop(ssid, None)
        except Exception:
            logger.exception("sending the notifications stored for server %d failed", ssid)
        finally:
            self._flushing.discard(ssid)
        if not self._reachable(ssid):
            return
        for obs in list(self._observations.values()):
            if obs.ssid == ssid and obs.missed and not obs.closed and not obs.sending:
                obs.missed = False
                self._start(obs, forced=True)

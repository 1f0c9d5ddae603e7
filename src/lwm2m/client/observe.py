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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from lwm2m.client.scheduler import Scheduler, Timer
from lwm2m.client.values import Stored, as_number
from lwm2m.model.path import Path
from lwm2m.protocol.attributes import Attributes

logger = logging.getLogger(__name__)

#: (observation) -> awaitable that reads, encodes and sends one notification;
#: returns the values sent (path -> value) or None when the observation ended.
SendNotification = Callable[["Observation"], Awaitable[dict[Path, Stored] | None]]
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
        send: SendNotification,
        sample: Sampler,
        defaults: Callable[[int], tuple[int, int | None]],
        has_reader: Callable[[Path], bool],
    ) -> None:
        self.scheduler = scheduler
        self.attributes = attributes
        self._send = send
        self._sample = sample
        self._defaults = defaults
        self._has_reader = has_reader
        self._observations: dict[tuple[int, bytes], Observation] = {}
        self._tasks: set[asyncio.Task[None]] = set()

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

    def remove_server(self, ssid: int) -> None:
        """Forget every observation (and attribute) of a server (deregistration, seed D.1.2)."""
        for key in [k for k in self._observations if k[0] == ssid]:
            self._close(self._observations.pop(key))
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
            sent = await self._send(obs)
            if sent is None:
                self.remove(obs.ssid, obs.token)
                return
            obs.dirty = False
            obs.last_values = sent
            obs.last_sent_at = self.scheduler.now()
        except Exception:
            logger.exception("notification for %s failed", [str(p) for p in obs.paths])
        finally:
            obs.sending = False
            if not obs.closed:
                self._arm_pmax(obs)

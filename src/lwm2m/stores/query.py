"""Paged, searched, filtered and sorted views of the registrations, and fleet counts.

Every backend keeps its registrations in memory (see :mod:`lwm2m.stores.base`):
SQLite and Redis only write through, and reads never leave the process. So
one index answers queries for all three backends, and they agree by
construction; a query never touches the disk or the network.

The index costs the registration path O(1) per change: counters are bumped
in place, and new endpoint names go to an unsorted ``pending`` list merged
into the sorted name list at the next query. The common page (no filter,
sorted by endpoint) is then a slice, whatever the fleet size. A search or a
filter scans the candidates once (the endpoint order is already there); other
sort orders take the ``offset + limit`` first of the matches with a heap.
"""

from __future__ import annotations

import bisect
import heapq
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from operator import attrgetter
from typing import Any

from lwm2m.stores.records import Registration

logger = logging.getLogger(__name__)

#: The chart of the overview covers this many minutes.
RECENT_MINUTES = 60


class SortKey(Enum):
    """What a page is sorted by (the REST API's ``sort=`` names)."""

    ENDPOINT = "endpoint"
    REGISTERED = "registrationDate"
    UPDATED = "lastUpdate"
    ADDRESS = "address"
    LIFETIME = "lifetime"


@dataclass(frozen=True, slots=True)
class RegistrationQuery:
    """One page of registrations: which ones (all filters must hold), in what order.

    ``text`` is a case-insensitive substring of the endpoint name or of the
    address (``host:port``). Times are wall-clock seconds, bounds exclusive.
    ``where`` is a predicate the store cannot evaluate itself (the queue's
    sleep state); it runs last, on candidates that passed the rest.
    """

    text: str | None = None
    binding: str | None = None
    lwm2m_version: str | None = None
    queue_mode: bool | None = None
    secure: bool | None = None
    registered_after: float | None = None
    registered_before: float | None = None
    updated_after: float | None = None
    updated_before: float | None = None
    where: Callable[[Registration], bool] | None = None
    sort: SortKey = SortKey.ENDPOINT
    descending: bool = False
    offset: int = 0
    limit: int | None = None

    @property
    def filtered(self) -> bool:
        """Whether any condition narrows the set (else the total is the store's size)."""
        return any(
            v is not None
            for v in (
                self.text,
                self.binding,
                self.lwm2m_version,
                self.queue_mode,
                self.secure,
                self.registered_after,
                self.registered_before,
                self.updated_after,
                self.updated_before,
                self.where,
            )
        )


@dataclass(frozen=True, slots=True)
class RegistrationPage:
    """The matching registrations of one page, and how many match in all.

    ``complete`` is False when a shared store answered a filter from a bounded
    scan (see docs/cluster.md): ``total`` then counts the matches it examined.
    """

    total: int
    items: tuple[Registration, ...]
    complete: bool = True


@dataclass(frozen=True, slots=True)
class RegistrationStats:
    """Fleet counts kept up to date on every change (no scan to answer them)."""

    total: int
    queue_mode: int
    secure: int
    by_binding: Mapping[str, int]
    by_version: Mapping[str, int]
    #: ``(minute start, registrations)`` for the last :data:`RECENT_MINUTES`
    #: minutes, oldest first: live registrations by the minute of their Register.
    registered_per_minute: tuple[tuple[float, int], ...] = field(default=())


class RegistrationIndex:
    """Secondary indexes of one registration store, told of every change by the store.

    It holds the live registration per endpoint name (to walk them in name
    order), a lower-case search line per name (endpoint and address), and
    the counters of :meth:`stats`. The search lines are built by the first
    text search, not on the registration path: after it, a storm only notes
    which names changed, and before it (or once half the lines are outdated)
    nothing is kept at all: the next search builds every line again.
    That set of names was 34 MB at a million registrations just loaded.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, Registration] = {}
        self._lines: dict[str, str] = {}
        #: Whether :attr:`_lines` is kept up to date (through :attr:`_stale`).
        self._lines_kept = False
        #: Names whose search line is missing, outdated or belongs to a removed name.
        self._stale: set[str] = set()
        #: The names in name order as of the last query, removed ones included until the next.
        self._sorted: list[str] = []
        #: Names added since the last query, not in :attr:`_sorted` yet.
        self._pending: list[str] = []
        #: Names in one of those two lists that are no longer live. Only these, not every
        #: listed name (a set of a million names is 34 MB): a name that is live or here is
        #: listed, any other is not.
        self._gone: set[str] = set()
        self._queue = 0
        #: Told when :attr:`queue_mode` leaves 0 (``RegistrationStore.watch_queue_mode``).
        self.queue_mode_watchers: list[Callable[[], None]] = []
        self._secure = 0
        self._binding: Counter[str] = Counter()
        self._version: Counter[str] = Counter()
        self._minutes: Counter[int] = Counter()

    @property
    def by_name(self) -> Mapping[str, Registration]:
        """The registration held under each name, kept by the calls below: the store's name
        lookup reads this dict rather than keep one of its own."""
        return self._by_name

    def added(self, reg: Registration) -> None:
        """The store now holds ``reg`` (after :meth:`removed` of the one it replaces)."""
        name = reg.endpoint
        by_name = self._by_name
        listed = name in by_name
        by_name[name] = reg
        if self._lines_kept:
            self._note_stale(name)
        self._count(reg, 1)
        if listed:
            return
        gone = self._gone
        if name in gone:
            gone.discard(name)  # listed still, and live again
        else:
            self._pending.append(name)

    def replaced(self, old: Registration, new: Registration) -> None:
        """An Update: ``new`` takes the place of ``old`` under the same name. Cheaper than
        :meth:`removed` then :meth:`added`, since an Update rarely moves a count."""
        name = new.endpoint
        self._by_name[name] = new
        if self._lines_kept and new.address != old.address:
            self._note_stale(name)
        if not _counted_alike(old, new):
            self._count(old, -1)
            self._count(new, 1)

    def swapped(self, old: Registration, new: Registration) -> None:
        """:meth:`removed` of ``old`` then :meth:`added` of ``new``, its successor under the
        same name (a Register replacing one, the whole of a storm after its first
        round): the counts move only when what they count differs, which it rarely does."""
        name = new.endpoint
        by_name = self._by_name
        if old.endpoint != name or by_name.get(name) is not old:
            self.removed(old)
            self.added(new)
            return
        by_name[name] = new
        if self._lines_kept:
            self._note_stale(name)
        if not _counted_alike(old, new):
            self._count(old, -1)
            self._count(new, 1)

    def removed(self, reg: Registration) -> None:
        """The store no longer holds ``reg``; its name leaves the sorted list at the next query."""
        if self._by_name.get(reg.endpoint) is reg:
            del self._by_name[reg.endpoint]
            self._gone.add(reg.endpoint)
            if self._lines_kept:
                self._note_stale(reg.endpoint)
        self._count(reg, -1)

    def query(self, query: RegistrationQuery) -> RegistrationPage:
        """The page ``query`` asks for; see the module docstring for the costs."""
        names = self._names()
        by_name = self._by_name
        stop = None if query.limit is None else query.offset + query.limit
        if not query.filtered and query.sort is SortKey.ENDPOINT:
            total = len(names)
            if query.descending:
                end = total - query.offset
                start = 0 if stop is None else max(0, total - stop)
                chosen = names[start:end][::-1] if end > start else []
            else:
                chosen = names[query.offset : stop]
            return RegistrationPage(total, tuple(by_name[n] for n in chosen))
        matches = self._matches(names, query)
        if query.sort is SortKey.ENDPOINT:
            ordered = matches[::-1] if query.descending else matches
            return RegistrationPage(len(matches), tuple(ordered[query.offset : stop]))
        key = _SORT_KEYS[query.sort]
        # Stable orders: equal keys stay in endpoint order, so pages never overlap.
        if stop is not None and stop < len(matches) // 4:
            pick = heapq.nlargest if query.descending else heapq.nsmallest
            first = pick(stop, matches, key=key)
            return RegistrationPage(len(matches), tuple(first[query.offset :]))
        matches.sort(key=key, reverse=query.descending)
        return RegistrationPage(len(matches), tuple(matches[query.offset : stop]))

    @property
    def queue_mode(self) -> int:
        """Registrations in queue mode (the count :meth:`stats` gives, without building them)."""
        return self._queue

    def stats(self, now: float) -> RegistrationStats:
        """The counts as they are now; ``now`` (wall clock) ends the per-minute series."""
        return RegistrationStats(
            total=len(self._by_name),
            queue_mode=self._queue,
            secure=self._secure,
            by_binding={k: v for k, v in sorted(self._binding.items()) if v > 0},
            by_version={k: v for k, v in sorted(self._version.items()) if v > 0},
            registered_per_minute=_series(self._minutes, now),
        )

    # Private

    def _count(self, reg: Registration, delta: int) -> None:
        if reg.queue_mode:
            self._queue += delta
            if delta > 0 and self._queue == 1:
                self._tell_queue_mode()
        self._secure += delta if reg.secure else 0
        self._binding[reg.binding] += delta
        self._version[reg.lwm2m_version] += delta
        minutes = self._minutes
        minute = int(reg.registered_at // 60)
        left = minutes[minute] + delta
        if left > 0:
            minutes[minute] = left
        else:
            minutes.pop(minute, None)

    def _tell_queue_mode(self) -> None:
        for watcher in self.queue_mode_watchers:
            try:
                watcher()
            except Exception:
                logger.exception("a queue-mode watcher failed")

    def _names(self) -> list[str]:
        """The sorted live endpoint names, after merging what changed since the last query."""
        if self._pending:
            if len(self._pending) < 64:
                for name in self._pending:
                    bisect.insort(self._sorted, name)
            else:
                self._sorted.extend(self._pending)
                self._sorted.sort()
            self._pending.clear()
        gone = self._gone
        if gone:
            # Removed names are dropped here rather than on the registration path.
            self._sorted = [n for n in self._sorted if n not in gone]
            gone.clear()
        return self._sorted

    def _search_lines(self) -> dict[str, str]:
        """The search line of every live name: those of the names changed since the last
        search made now, or all of them when they are not kept."""
        live = self._by_name
        if not self._lines_kept:
            self._lines = {name: _search_line(name, reg) for name, reg in live.items()}
            self._lines_kept = True
        elif self._stale:
            lines = self._lines
            for name in self._stale:
                reg = live.get(name)
                if reg is None:
                    lines.pop(name, None)
                else:
                    lines[name] = _search_line(name, reg)
            self._stale.clear()
        return self._lines

    def _note_stale(self, name: str) -> None:
        stale = self._stale
        stale.add(name)
        if 2 * len(stale) > len(self._by_name):
            # Half the lines outdated: the next search builds every line anew, at about
            # the cost of updating them, and memory holds neither meanwhile (the lines
            # of a million names are about 100 MB).
            self._lines_kept = False
            self._lines = {}
            self._stale = set()

    def _matches(self, names: list[str], query: RegistrationQuery) -> list[Registration]:
        """Each condition is one pass of a comprehension over what is left: C speed, not Python calls."""
        if query.text:
            text = query.text.lower()
            # Iterating the lines' dict avoids a lookup per name; the few hits
            # are then sorted, many hits keep the order of the sorted list.
            hits = [n for n, line in self._search_lines().items() if text in line]
            if len(hits) < len(names) // 8:
                names = sorted(hits)
            else:
                found = set(hits)
                names = [n for n in names if n in found]
        by_name = self._by_name
        regs = [by_name[n] for n in names]
        q = query
        if q.binding is not None:
            regs = [r for r in regs if r.binding == q.binding]
        if q.lwm2m_version is not None:
            regs = [r for r in regs if r.lwm2m_version == q.lwm2m_version]
        if q.queue_mode is not None:
            regs = [r for r in regs if r.queue_mode == q.queue_mode]
        if q.secure is not None:
            regs = [r for r in regs if r.secure == q.secure]
        if q.registered_after is not None:
            regs = [r for r in regs if r.registered_at > q.registered_after]
        if q.registered_before is not None:
            regs = [r for r in regs if r.registered_at < q.registered_before]
        if q.updated_after is not None:
            regs = [r for r in regs if r.updated_at > q.updated_after]
        if q.updated_before is not None:
            regs = [r for r in regs if r.updated_at < q.updated_before]
        if q.where is not None:
            regs = [r for r in regs if q.where(r)]
        return regs


def per_minute(times: Iterable[float], now: float) -> tuple[tuple[float, int], ...]:
    """``(minute start, count)`` of the last :data:`RECENT_MINUTES` minutes up to ``now``, oldest first."""
    return _series(Counter(int(t // 60) for t in times), now)


def per_minute_counts(counts: Mapping[int, int], now: float) -> tuple[tuple[float, int], ...]:
    """As :func:`per_minute`, from counts already kept per minute number (``t // 60``)."""
    return _series(counts, now)


def _series(counts: Mapping[int, int], now: float) -> tuple[tuple[float, int], ...]:
    last = int(now // 60)
    return tuple(
        (float(m * 60), counts.get(m, 0)) for m in range(last - RECENT_MINUTES + 1, last + 1)
    )


def _counted_alike(a: Registration, b: Registration) -> bool:
    """Whether :meth:`RegistrationIndex._count` counts ``a`` and ``b`` in the same places
    (then replacing one by the other moves no count)."""
    return (
        a.queue_mode == b.queue_mode
        and (a.identity is None) == (b.identity is None)  # .secure, without two calls
        and a.binding == b.binding
        and a.lwm2m_version == b.lwm2m_version
        and a.registered_at // 60 == b.registered_at // 60
    )


def _address(reg: Registration) -> str:
    host, port = reg.address[0], reg.address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _search_line(name: str, reg: Registration) -> str:
    """What a text search looks in: the endpoint name (any case) and the address."""
    return f"{name.lower()}\t{_address(reg)}"


_SORT_KEYS: dict[SortKey, Callable[[Registration], Any]] = {
    SortKey.REGISTERED: attrgetter("registered_at"),
    SortKey.UPDATED: attrgetter("updated_at"),
    SortKey.ADDRESS: attrgetter("address"),
    SortKey.LIFETIME: attrgetter("lifetime_s"),
}

__all__ = [
    "RECENT_MINUTES",
    "RegistrationIndex",
    "RegistrationPage",
    "RegistrationQuery",
    "RegistrationStats",
    "SortKey",
    "per_minute",
    "per_minute_counts",
]

"""Store interfaces shared by the LwM2M server and the bootstrap server.

Every store keeps its working set in memory and, when persistent, writes
through to a backend before the mutating coroutine returns: the server answers
a Register only after ``await registrations.add(...)``, so an acknowledged
registration is on disk (SQLite: WAL + fsync) when the client hears 2.01.

Two kinds of reads. The synchronous ones (``get``, ``query``, ...) answer from
the node's memory: for the memory and SQLite stores that is everything, and
they stay the fast path of every notification and Update. A store shared by
several nodes (Redis) keeps only part of the fleet in memory, so a miss there
proves nothing: the ``fetch*`` coroutines answer for the whole fleet (memory
and SQLite return their in-memory answer; Redis reads Redis on a miss), and
every caller that may meet a registration of another node uses them.
``partial`` says which kind of store it is. Writes are coroutines so that a
backend may do I/O.

Mutations return ``(old, new)`` so that callers (events, logs) see both sides
of a change without a second lookup.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from lwm2m.coap.peer import Address
from lwm2m.security.credentials import SecurityEntry
from lwm2m.stores.query import RegistrationPage, RegistrationQuery, RegistrationStats
from lwm2m.stores.records import ObservationRecord, Registration

JsonDoc = dict[str, Any]
"""A JSON-serialisable document (what :class:`DocumentStore` keeps)."""


class StoreError(Exception):
    """A backend failure (disk full, Redis gone, corrupt row)."""


class UnknownRegistration(StoreError, KeyError):
    """An update for a registration the store does not hold."""


#: ``done(replaced registration or None, None)`` after a durable add, ``done(None, error)``
#: after a refused one.
AddDone = Callable[[Registration | None, BaseException | None], None]

#: ``done(the registration it renewed, None)`` after a durable update, ``done(None, error)``
#: after a refused one.
UpdateDone = Callable[[Registration | None, BaseException | None], None]

#: ``done(the registration removed, or None when none was held, None)`` after a durable
#: removal, ``done(None, error)`` after a refused one.
RemoveDone = Callable[[Registration | None, BaseException | None], None]


@runtime_checkable
class RegistrationStore(Protocol):
    """Live registrations, indexed by id, endpoint name and source address."""

    def get(self, registration_id: str) -> Registration | None:
        """By registration id: what ``/rd/<id>`` Updates and De-registers name."""
        ...

    def get_by_endpoint(self, endpoint: str) -> Registration | None:
        """By Endpoint Client Name: how operators, the REST API and a re-Register find a client."""
        ...

    def get_by_address(self, address: Address) -> Registration | None:
        """The registration whose recorded source address is ``address`` (queue mode, /dp)."""
        ...

    def list(self) -> builtins.list[Registration]:
        """A snapshot, safe to iterate while registrations come and go."""
        ...

    @property
    def holds_queue_mode(self) -> bool:
        """Whether a registration in queue mode is held (in memory): the server looks up the
        registration of each datagram's sender, to wake a sleeping client, only then."""
        ...

    def watch_queue_mode(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` whenever :attr:`holds_queue_mode` turns true (at once when it
        is): the server hears its endpoints' datagrams only from then on, so a fleet
        without queue mode costs no call per datagram. Called from within the write that
        indexed the registration: it must not touch the store."""
        ...

    def __len__(self) -> int: ...

    def query(self, query: RegistrationQuery) -> RegistrationPage:
        """One page of matching registrations and their total: what the REST API lists at fleet scale."""
        ...

    def stats(self, now: float) -> RegistrationStats:
        """Counts by binding, LwM2M version, queue mode, security; registrations per minute up to ``now``."""
        ...

    def expired(self, now: float, grace_s: float = 0.0) -> builtins.list[Registration]:
        """Registrations whose ``expires_at + grace_s`` is before ``now`` (wall clock)."""
        ...

    @property
    def partial(self) -> bool:
        """True when the synchronous reads see only part of the fleet (a miss proves nothing)."""
        ...

    async def fetch(self, registration_id: str) -> Registration | None:
        """As :meth:`get`, for the whole fleet: a registration of another node included."""
        ...

    async def fetch_by_endpoint(self, endpoint: str) -> Registration | None:
        """As :meth:`get_by_endpoint`, for the whole fleet."""
        ...

    async def fetch_by_address(self, address: Address) -> Registration | None:
        """As :meth:`get_by_address`, for the whole fleet."""
        ...

    async def fetch_query(self, query: RegistrationQuery) -> RegistrationPage:
        """As :meth:`query`, over the whole fleet (see the backend for what it bounds)."""
        ...

    async def fetch_stats(self, now: float) -> RegistrationStats:
        """As :meth:`stats`, over the whole fleet."""
        ...

    async def fetch_count(self) -> int:
        """How many registrations the fleet holds (``len`` counts this node's memory)."""
        ...

    async def fetch_expired(self, now: float, grace_s: float = 0.0) -> builtins.list[Registration]:
        """As :meth:`expired`, over the whole fleet: what the expiry sweep removes."""
        ...

    async def take_over(self, registration: Registration, address: Address) -> Registration | None:
        """Make this node the owner of ``registration`` at the device's new ``address``
        when the node that owned it is gone; None when nobody else could own it (one
        process) or its owner is alive or it is gone."""
        ...

    async def add(self, registration: Registration) -> tuple[Registration | None, Registration]:
        """Store a new registration; an existing one with the same endpoint name is
        replaced and returned as ``old``."""
        ...

    async def update(self, registration: Registration) -> tuple[Registration, Registration]:
        """Replace the registration with the same id; raises :class:`UnknownRegistration`."""
        ...

    async def remove(self, registration_id: str) -> Registration | None:
        """Remove and return the registration, or None when unknown."""
        ...

    @property
    def synchronous(self) -> bool:
        """Whether :meth:`add_now` and :meth:`update_now` may be used: the store writes
        nothing through and holds the whole fleet, so a write is done when it returns."""
        ...

    def add_now(self, registration: Registration) -> tuple[Registration | None, Registration]:
        """:meth:`add` of a :attr:`synchronous` store, without a coroutine."""
        ...

    def update_now(self, registration: Registration) -> tuple[Registration, Registration]:
        """:meth:`update` of a :attr:`synchronous` store, without a coroutine."""
        ...

    @property
    def adds_by_callback(self) -> bool:
        """Whether :meth:`add_then` tells the end of a durable add by its callback (a store
        that holds the whole fleet and writes it through a group commit: SQLite)."""
        ...

    def add_then(self, registration: Registration, done: AddDone) -> None:
        """:meth:`add` without a coroutine (only when :attr:`adds_by_callback`): indexed at
        once, then ``done(old, None)`` once durable, or ``done(None, error)`` once the
        memory view went back (the write was refused)."""
        ...

    @property
    def updates_by_callback(self) -> bool:
        """Whether :meth:`update_then` tells the end of a durable update by its callback
        (as :attr:`adds_by_callback`)."""
        ...

    @property
    def removes_by_callback(self) -> bool:
        """Whether :meth:`remove_then` tells the end of a durable removal by its callback
        (as :attr:`adds_by_callback`)."""
        ...

    def remove_then(self, registration_id: str, done: RemoveDone) -> None:
        """:meth:`remove` without a coroutine (only when :attr:`removes_by_callback`):
        unindexed at once, then ``done(removed, None)`` once durable (``done(None, None)``
        at once when none is held), or ``done(None, error)`` once it is back (the write
        was refused)."""
        ...

    def update_then(self, registration: Registration, done: UpdateDone) -> None:
        """:meth:`update` without a coroutine (only when :attr:`updates_by_callback`): the
        memory view renewed at once, then ``done(old, None)`` once durable, or
        ``done(None, error)`` once it went back (the write was refused) or when the
        registration is not held (:class:`UnknownRegistration`)."""
        ...


@runtime_checkable
class ObservationStore(Protocol):
    """Observations held on clients, kept with (and dropped with) their registration."""

    def get(self, observation_id: str) -> ObservationRecord | None:
        """By observation id (the token in hex): what a notification or a cancel carries."""
        ...

    def for_registration(self, registration_id: str) -> builtins.list[ObservationRecord]:
        """The observations to restore, adopt or drop together with that registration."""
        ...

    def list(self) -> builtins.list[ObservationRecord]:
        """A snapshot of every stored observation (of this node's memory, when ``partial``)."""
        ...

    @property
    def partial(self) -> bool:
        """True when the synchronous reads see only part of the observations."""
        ...

    async def fetch(self, observation_id: str) -> ObservationRecord | None:
        """As :meth:`get`, for the whole fleet: an observation another node made included."""
        ...

    async def fetch_for_registration(
        self, registration_id: str
    ) -> builtins.list[ObservationRecord]:
        """As :meth:`for_registration`, for the whole fleet."""
        ...

    async def add(self, record: ObservationRecord) -> ObservationRecord | None:
        """Store an observation; returns the one it replaced (same id), if any."""
        ...

    async def remove(self, observation_id: str) -> ObservationRecord | None:
        """Forget one observation; returns it, or None when unknown."""
        ...

    async def remove_for_registration(
        self, registration_id: str
    ) -> builtins.list[ObservationRecord]:
        """Forget a registration's observations at once (its client lost its state); returns them."""
        ...

    def may_hold_for_registration(self, registration_id: str) -> bool:
        """False only when the store knows, without I/O, that the registration has no
        observation (a replaced registration then ends without a coroutine)."""
        ...


@runtime_checkable
class SecurityStore(Protocol):
    """Credentials per endpoint; PSK identities are unique across entries."""

    def get(self, endpoint: str) -> SecurityEntry | None:
        """The credentials ``endpoint`` must present over DTLS (None: it has no entry)."""
        ...

    def get_by_psk_identity(self, identity: bytes) -> SecurityEntry | None:
        """The entry a DTLS handshake names by PSK identity (identities are unique)."""
        ...

    def list(self) -> builtins.list[SecurityEntry]:
        """Every entry, sorted by endpoint, for the REST API and the command line."""
        ...

    async def fetch(self, endpoint: str) -> SecurityEntry | None:
        """As :meth:`get`, as the backend holds it now."""
        ...

    async def fetch_by_psk_identity(self, identity: bytes) -> SecurityEntry | None:
        """As :meth:`get_by_psk_identity`, as the backend holds it now."""
        ...

    async def put(self, entry: SecurityEntry) -> tuple[SecurityEntry | None, SecurityEntry]:
        """Add or replace the entry of ``entry.endpoint``; raises :class:`SecurityConflict`
        when its PSK identity belongs to another endpoint."""
        ...

    async def remove(self, endpoint: str) -> SecurityEntry | None:
        """Drop the entry of ``endpoint``; returns it, or None when unknown."""
        ...


class RegistrationConflict(StoreError):
    """A Register of a name live under another client, found by a shared store (4.09).

    The registrar checks the rule on its own view first; a store shared by
    several nodes checks it again atomically, since another node may have taken
    the name meanwhile.
    """


class SecurityConflict(StoreError, ValueError):
    """A PSK identity already bound to another endpoint."""


@runtime_checkable
class DocumentStore(Protocol):
    """Small JSON documents by (namespace, key), plus bounded append-only logs.

    The bootstrap server keeps its per-endpoint configurations here
    (``put("bootstrap-config", ep, doc)``) and its session history
    (``append("bootstrap-history", doc, keep=1000)``).
    """

    async def get(self, namespace: str, key: str) -> JsonDoc | None:
        """A copy of the document (None when absent): callers may change it freely."""
        ...

    async def put(self, namespace: str, key: str, doc: JsonDoc) -> JsonDoc | None:
        """Store ``doc``; returns the previous document under that key."""
        ...

    async def delete(self, namespace: str, key: str) -> JsonDoc | None:
        """Remove the document; returns it, or None when absent."""
        ...

    async def items(self, namespace: str) -> builtins.list[tuple[str, JsonDoc]]:
        """Every (key, doc) of a namespace, keys sorted."""
        ...

    async def take_all(self, namespace: str) -> builtins.list[tuple[str, JsonDoc]]:
        """Remove every document of a namespace and return them (keys sorted), as one
        step: of two callers, each document goes to one only.

        What a registration leaves behind (its queued requests, the attributes set on
        it) is taken at every De-register, so an empty namespace must cost no I/O
        where the store can know it (memory, SQLite) and one round trip elsewhere.
        """
        ...

    def may_hold(self, namespace: str) -> bool:
        """False only when the store knows, without I/O, that ``namespace`` is empty."""
        ...

    async def append(self, namespace: str, doc: JsonDoc, *, keep: int = 1000) -> None:
        """Append to a log, dropping the oldest entries beyond ``keep``."""
        ...

    async def tail(self, namespace: str, limit: int = 100) -> builtins.list[JsonDoc]:
        """The newest ``limit`` log entries, oldest first."""
        ...


class Stores(Protocol):
    """The bundle a server is built with (see :func:`lwm2m.stores.open_stores`)."""

    @property
    def registrations(self) -> RegistrationStore:
        """Live registrations: written on every Register, Update and De-register."""
        ...

    @property
    def observations(self) -> ObservationStore:
        """Observations the server holds, so they survive a restart."""
        ...

    @property
    def security(self) -> SecurityStore:
        """Client credentials, shared with the DTLS layer and the REST API."""
        ...

    @property
    def documents(self) -> DocumentStore:
        """JSON documents and logs (bootstrap configurations and session history)."""
        ...

    def counters(self) -> dict[str, float]:
        """The backend's own counters for /metrics (Prometheus names, without ``lwm2m_``)."""
        ...

    async def close(self) -> None:
        """Release the backend (files, connections); the stores are unusable afterwards."""
        ...


def check_json_doc(doc: Mapping[str, Any] | Sequence[Any]) -> None:
    """Reject documents that a persistent backend could not round-trip."""
    try:
        json.dumps(doc, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StoreError(f"document is not JSON-serialisable: {exc}") from None

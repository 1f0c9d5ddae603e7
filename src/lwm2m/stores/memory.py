"""In-memory stores: the working set of every store, and the ``--store memory`` backend.

The persistent stores (SQLite, Redis) subclass these and add a write-through
step in the ``_persist_*`` hooks, so the indexing logic exists once.
"""

from __future__ import annotations

import builtins
import copy
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from lwm2m.coap.peer import Address
from lwm2m.security.credentials import SecurityEntry
from lwm2m.stores.base import (
    AddDone,
    JsonDoc,
    RemoveDone,
    SecurityConflict,
    UnknownRegistration,
    UpdateDone,
    check_json_doc,
)
from lwm2m.stores.deadlines import Deadlines
from lwm2m.stores.query import (
    RegistrationIndex,
    RegistrationPage,
    RegistrationQuery,
    RegistrationStats,
)
from lwm2m.stores.records import ObservationRecord, Registration

#: Called once a write-through ended: with None when durable, else with why it was refused.
WriteDone = Callable[[BaseException | None], None]

#: What a subclass must leave as it is for its writes to be done when they return.
_SYNCHRONOUS_ONLY_AS_DEFINED_HERE = (
    "get",
    "get_by_endpoint",
    "fetch",
    "add",
    "update",
    "_persist_add",
    "_persist_update",
    "_persist_remove",
)


class MemoryRegistrationStore:
    """Registrations in dicts, with their deadlines by the second (lazy deletion) for
    :meth:`expired`."""

    def __init__(self) -> None:
        self._by_id: dict[str, Registration] = {}
        #: The registration held at each address (the object, so a lookup is one probe).
        self._by_address: dict[Address, Registration] = {}
        self._deadlines = Deadlines()
        self._query_index = RegistrationIndex()
        #: The registration held under each name: the query index's own dict, which it keeps
        #: as the store indexes (one probe a lookup, one dict for both; twice a Register).
        self._by_endpoint = self._query_index.by_name
        cls = type(self)
        self._synchronous = all(
            getattr(cls, name) is getattr(MemoryRegistrationStore, name)
            for name in _SYNCHRONOUS_ONLY_AS_DEFINED_HERE
        )
        self._adds_by_callback = (
            cls._persist_add_then is not MemoryRegistrationStore._persist_add_then
        )
        self._updates_by_callback = (
            cls._persist_update_then is not MemoryRegistrationStore._persist_update_then
        )
        self._removes_by_callback = (
            cls._persist_remove_then is not MemoryRegistrationStore._persist_remove_then
        )

    # -- reads
    def get(self, registration_id: str) -> Registration | None:
        """A dict lookup: registration reads sit on the request path."""
        return self._by_id.get(registration_id)

    def get_by_endpoint(self, endpoint: str) -> Registration | None:
        """Through the name index, so a name lookup costs what an id lookup does."""
        return self._by_endpoint.get(endpoint)

    def get_by_address(self, address: Address) -> Registration | None:
        """Through the address index: Send and queue-mode wake-ups name the client by address only."""
        return self._by_address.get(address)

    def list(self) -> builtins.list[Registration]:
        """A copy, so callers may remove registrations while iterating."""
        return list(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def expired(self, now: float, grace_s: float = 0.0) -> builtins.list[Registration]:
        """From the deadlines index, so the sweep costs the expired ones, not the fleet.

        Stale entries (updated or removed registrations) are skipped; the expired
        ones stay in the index until the caller removes them, so a sweep that fails
        to remove one finds it again next time.
        """
        by_id = self._by_id

        def deadline_of(rid: str) -> float | None:
            reg = by_id.get(rid)
            return None if reg is None else reg.expires_at

        return [by_id[rid] for rid in self._deadlines.due(now, grace_s, deadline_of)]

    def query(self, query: RegistrationQuery) -> RegistrationPage:
        """One page of the REST API's client list, from the secondary index (:mod:`lwm2m.stores.query`)."""
        return self._query_index.query(query)

    def stats(self, now: float) -> RegistrationStats:
        """Fleet counts, kept up to date on every change; ``now`` is wall-clock seconds."""
        return self._query_index.stats(now)

    @property
    def holds_queue_mode(self) -> bool:
        return self._query_index.queue_mode > 0

    def watch_queue_mode(self, callback: Callable[[], None]) -> None:
        """Told by the query index, whose count of queue-mode registrations leaves 0."""
        self._query_index.queue_mode_watchers.append(callback)
        if self.holds_queue_mode:
            callback()

    # -- the whole fleet's reads: memory holds it all, so they are the reads above
    @property
    def partial(self) -> bool:
        """Memory holds every registration: a miss is an answer."""
        return False

    async def fetch(self, registration_id: str) -> Registration | None:
        """:meth:`get` (it sees the whole fleet)."""
        return self.get(registration_id)

    async def fetch_by_endpoint(self, endpoint: str) -> Registration | None:
        """:meth:`get_by_endpoint` (it sees the whole fleet)."""
        return self.get_by_endpoint(endpoint)

    async def fetch_by_address(self, address: Address) -> Registration | None:
        """:meth:`get_by_address` (it sees the whole fleet)."""
        return self.get_by_address(address)

    async def fetch_query(self, query: RegistrationQuery) -> RegistrationPage:
        """:meth:`query` (it sees the whole fleet)."""
        return self.query(query)

    async def fetch_stats(self, now: float) -> RegistrationStats:
        """:meth:`stats` (it sees the whole fleet)."""
        return self.stats(now)

    async def fetch_count(self) -> int:
        """``len`` (it sees the whole fleet)."""
        return len(self)

    async def fetch_expired(self, now: float, grace_s: float = 0.0) -> builtins.list[Registration]:
        """:meth:`expired` (it sees the whole fleet)."""
        return self.expired(now, grace_s)

    async def take_over(self, registration: Registration, address: Address) -> Registration | None:
        """One process owns every registration: there is nothing to take over."""
        return None

    # -- writes
    @property
    def synchronous(self) -> bool:
        """True for this class itself; a subclass that writes through (a ``_persist_*``
        hook) or reads elsewhere (its own ``add``, ``fetch``...) is not."""
        return self._synchronous

    def add_now(self, registration: Registration) -> tuple[Registration | None, Registration]:
        """:meth:`add` with nothing to write through: the registrar's Register without a
        coroutine (only when :attr:`synchronous`)."""
        return self._put(registration), registration

    def update_now(self, registration: Registration) -> tuple[Registration, Registration]:
        """:meth:`update` with nothing to write through (only when :attr:`synchronous`)."""
        return self._renew(registration), registration

    @property
    def adds_by_callback(self) -> bool:
        """True for a subclass with a callback form of its write-through (``_persist_add_then``)."""
        return self._adds_by_callback

    def add_then(self, registration: Registration, done: AddDone) -> None:
        """:meth:`add` with a callback instead of a coroutine: index first, then write
        through; a refused write undoes the indexing before ``done`` hears of it."""
        old = self._put(registration)

        def written(error: BaseException | None) -> None:
            if error is None:
                done(old, None)
                return
            self._unput(registration, old)
            done(None, error)

        try:
            self._persist_add_then(registration, old, written)
        except Exception as exc:  # refused before it was queued (a closed store)
            written(exc)

    @property
    def updates_by_callback(self) -> bool:
        """True for a subclass with a callback form of its update (``_persist_update_then``)."""
        return self._updates_by_callback

    def update_then(self, registration: Registration, done: UpdateDone) -> None:
        """:meth:`update` with a callback instead of a coroutine: renewed first, then written
        through; a refused write puts the renewed registration back before ``done`` hears."""
        try:
            old = self._renew(registration)
        except UnknownRegistration as exc:
            done(None, exc)
            return

        def written(error: BaseException | None) -> None:
            if error is None:
                done(old, None)
                return
            self._replace(registration, old)
            done(None, error)

        try:
            self._persist_update_then(registration, old, written)
        except Exception as exc:  # refused before it was queued (a closed store)
            written(exc)

    async def add(self, registration: Registration) -> tuple[Registration | None, Registration]:
        """Index first, then write through; a failed write undoes the indexing.

        A registration is acknowledged only once durable, so the memory view must
        not hold one the backend refused.
        """
        old = self._put(registration)
        try:
            pending = self._persist_add(registration, old)
            if pending is not None:
                await pending
        except Exception:
            # Not durable, so not acknowledged: the memory view goes back too.
            self._unput(registration, old)
            raise
        return old, registration

    def _unput(self, registration: Registration, old: Registration | None) -> None:
        """Undo :meth:`_put` of a registration whose write was refused."""
        self._drop(registration)
        if old is not None:
            self._index(old)

    async def update(self, registration: Registration) -> tuple[Registration, Registration]:
        """As :meth:`add`: the memory view goes back when the write-through fails."""
        old = self._renew(registration)
        try:
            pending = self._persist_update(registration, old)
            if pending is not None:
                await pending
        except Exception:
            self._replace(registration, old)
            raise
        return old, registration

    @property
    def removes_by_callback(self) -> bool:
        """True for a subclass with a callback form of its removal (``_persist_remove_then``)."""
        return self._removes_by_callback

    def remove_then(self, registration_id: str, done: RemoveDone) -> None:
        """:meth:`remove` with a callback instead of a coroutine: unindexed first, then
        written through; a refused write indexes the registration again before ``done``."""
        old = self.get(registration_id)
        if old is None:
            done(None, None)
            return
        self._drop(old)

        def written(error: BaseException | None) -> None:
            if error is None:
                done(old, None)
                return
            self._index(old)
            done(None, error)

        try:
            self._persist_remove_then(old, written)
        except Exception as exc:  # refused before it was queued (a closed store)
            written(exc)

    async def remove(self, registration_id: str) -> Registration | None:
        """As :meth:`add`: the registration comes back when the write-through fails."""
        old = self.get(registration_id)
        if old is None:
            return None
        self._drop(old)
        try:
            pending = self._persist_remove(old)
            if pending is not None:
                await pending
        except Exception:
            self._index(old)
            raise
        return old

    # -- indexing
    def _put(self, registration: Registration) -> Registration | None:
        """Index ``registration`` in the place of the one of its name; returns that one."""
        old = self.get_by_endpoint(registration.endpoint)
        if old is None:
            self._index(registration)
            return None
        by_id = self._by_id
        if by_id.get(old.id) is not old or registration.id in by_id:
            self._drop(old)
            self._index(registration)
            return old
        # The usual replacement (every Register of a storm after its first round):
        # _drop(old) then _index(registration) in one pass over the indexes.
        del by_id[old.id]
        by_id[registration.id] = registration
        by_address = self._by_address
        if by_address.get(old.address) is old:
            del by_address[old.address]
        by_address[registration.address] = registration
        self._query_index.swapped(old, registration)  # the name index's entry too
        self._push_deadline(registration)
        return old

    def _renew(self, registration: Registration) -> Registration:
        """Index ``registration`` in the place of the one of its id; returns that one."""
        old = self.get(registration.id)
        if old is None:
            raise UnknownRegistration(registration.id)
        self._replace(old, registration)
        return old

    def _index(self, reg: Registration) -> None:
        previous = self._by_id.get(reg.id)
        if previous is not None:
            self._query_index.removed(previous)
        self._by_id[reg.id] = reg
        self._by_address[reg.address] = reg
        self._query_index.added(reg)  # the name index's entry too
        self._push_deadline(reg)

    def _push_deadline(self, reg: Registration) -> None:
        deadlines = self._deadlines
        deadlines.push(reg.expires_at, reg.id)
        # Lazy deletion leaves stale entries behind; rebuild when they dominate.
        if deadlines.entries > 4 * len(self._by_id) + 64:
            deadlines.rebuild((r.expires_at, r.id) for r in self._by_id.values())

    def _replace(self, old: Registration, new: Registration) -> None:
        """``new`` (same id) in the place of ``old``: an Update touches only what it changed."""
        if new.endpoint != old.endpoint or self._by_id.get(old.id) is not old:
            self._drop(old)
            self._index(new)
            return
        self._by_id[new.id] = new
        if new.address != old.address and self._by_address.get(old.address) is old:
            del self._by_address[old.address]
        self._by_address[new.address] = new
        if new.expires_at != old.expires_at:
            self._push_deadline(new)
        self._query_index.replaced(old, new)

    def _drop(self, reg: Registration) -> None:
        """Unindex the registration of ``reg``'s id: the one held, should ``reg`` be an
        older copy of it (the indexes hold the held one, under its name and address)."""
        held = self._by_id.pop(reg.id, None)
        if held is None:
            return
        self._query_index.removed(held)  # the name index's entry too
        if self._by_address.get(held.address) is held:
            del self._by_address[held.address]

    def _load(self, reg: Registration) -> None:
        """Index a registration read back from a backend (no write-through)."""
        self._put(reg)

    # -- write-through hooks: what to await until the write is durable, None when there is
    # nothing to write (memory). Plain calls, not coroutines: on the SQLite store each is the
    # future of the group commit, awaited once by the write above (no coroutine per layer).
    def _persist_add(
        self, reg: Registration, replaced: Registration | None
    ) -> Awaitable[None] | None:
        return None

    def _persist_update(self, reg: Registration, old: Registration) -> Awaitable[None] | None:
        return None

    def _persist_add_then(
        self, reg: Registration, replaced: Registration | None, written: WriteDone
    ) -> None:
        """:meth:`_persist_add` telling its end to ``written(error or None)`` (the memory
        store has nothing to write: at once)."""
        written(None)

    def _persist_update_then(
        self, reg: Registration, old: Registration, written: WriteDone
    ) -> None:
        """:meth:`_persist_update` telling its end to ``written(error or None)``."""
        written(None)

    def _persist_remove(self, reg: Registration) -> Awaitable[None] | None:
        return None

    def _persist_remove_then(self, reg: Registration, written: WriteDone) -> None:
        """:meth:`_persist_remove` telling its end to ``written(error or None)``."""
        written(None)


class MemoryObservationStore:
    """Observations by id and by registration: a registration's end drops its observations in one call."""

    def __init__(self) -> None:
        self._by_id: dict[str, ObservationRecord] = {}
        self._by_registration: dict[str, dict[str, ObservationRecord]] = {}

    def get(self, observation_id: str) -> ObservationRecord | None:
        """A dict lookup: every notification looks its observation up."""
        return self._by_id.get(observation_id)

    def for_registration(self, registration_id: str) -> builtins.list[ObservationRecord]:
        """Through the per-registration index (no scan of all observations)."""
        return list(self._by_registration.get(registration_id, {}).values())

    def list(self) -> builtins.list[ObservationRecord]:
        """A copy of every observation (for restore and display)."""
        return list(self._by_id.values())

    @property
    def partial(self) -> bool:
        """Memory holds every observation: a miss is an answer."""
        return False

    async def fetch(self, observation_id: str) -> ObservationRecord | None:
        """:meth:`get` (it sees every observation)."""
        return self.get(observation_id)

    async def fetch_for_registration(
        self, registration_id: str
    ) -> builtins.list[ObservationRecord]:
        """:meth:`for_registration` (it sees every observation)."""
        return self.for_registration(registration_id)

    async def add(self, record: ObservationRecord) -> ObservationRecord | None:
        """Index, then write through (the backend hook of persistent subclasses)."""
        old = self._take(record.id)
        self._put(record)
        await self._persist_add(record)
        return old

    async def remove(self, observation_id: str) -> ObservationRecord | None:
        """Unindex, then write through; returns the record, or None when unknown."""
        old = self._take(observation_id)
        if old is not None:
            await self._persist_remove([old])
        return old

    async def remove_for_registration(
        self, registration_id: str
    ) -> builtins.list[ObservationRecord]:
        """Unindex them all, then one write-through for the lot."""
        records = list(self._by_registration.pop(registration_id, {}).values())
        for rec in records:
            self._by_id.pop(rec.id, None)
        if records:
            await self._persist_remove(records)
        return records

    def may_hold_for_registration(self, registration_id: str) -> bool:
        return registration_id in self._by_registration

    def _put(self, record: ObservationRecord) -> None:
        self._by_id[record.id] = record
        self._by_registration.setdefault(record.registration_id, {})[record.id] = record

    def _take(self, observation_id: str) -> ObservationRecord | None:
        old = self._by_id.pop(observation_id, None)
        if old is not None:
            group = self._by_registration.get(old.registration_id)
            if group is not None:
                group.pop(old.id, None)
                if not group:
                    del self._by_registration[old.registration_id]
        return old

    async def _persist_add(self, record: ObservationRecord) -> None:
        return None

    async def _persist_remove(self, records: builtins.list[ObservationRecord]) -> None:
        return None


class MemorySecurityStore:
    """Entries by endpoint plus a PSK identity index, which enforces unique identities."""

    def __init__(self) -> None:
        self._by_endpoint: dict[str, SecurityEntry] = {}
        self._by_identity: dict[bytes, str] = {}

    def get(self, endpoint: str) -> SecurityEntry | None:
        """A dict lookup: the DTLS handshake and every Register consult it."""
        return self._by_endpoint.get(endpoint)

    def get_by_psk_identity(self, identity: bytes) -> SecurityEntry | None:
        """Through the identity index: a PSK handshake knows only the identity."""
        endpoint = self._by_identity.get(identity)
        return None if endpoint is None else self._by_endpoint.get(endpoint)

    def list(self) -> builtins.list[SecurityEntry]:
        """Sorted by endpoint, so listings are stable."""
        return [self._by_endpoint[k] for k in sorted(self._by_endpoint)]

    async def fetch(self, endpoint: str) -> SecurityEntry | None:
        """:meth:`get`: memory is the whole store."""
        return self.get(endpoint)

    async def fetch_by_psk_identity(self, identity: bytes) -> SecurityEntry | None:
        """:meth:`get_by_psk_identity`: memory is the whole store."""
        return self.get_by_psk_identity(identity)

    async def put(self, entry: SecurityEntry) -> tuple[SecurityEntry | None, SecurityEntry]:
        """Checked against the identity index before anything changes (:class:`SecurityConflict`)."""
        self._check(entry)
        old = self._set(entry)
        await self._persist_put(entry)
        return old, entry

    async def remove(self, endpoint: str) -> SecurityEntry | None:
        """Drop the entry and free its PSK identity for another endpoint."""
        old = self._by_endpoint.pop(endpoint, None)
        if old is not None:
            if old.psk is not None:
                self._by_identity.pop(old.psk.identity, None)
            await self._persist_remove(endpoint)
        return old

    def _check(self, entry: SecurityEntry) -> None:
        if entry.psk is not None:
            owner = self._by_identity.get(entry.psk.identity)
            if owner is not None and owner != entry.endpoint:
                raise SecurityConflict(
                    f"PSK identity {entry.psk.identity!r} is already used by endpoint {owner!r}"
                )

    def _set(self, entry: SecurityEntry) -> SecurityEntry | None:
        old = self._by_endpoint.get(entry.endpoint)
        if old is not None and old.psk is not None:
            self._by_identity.pop(old.psk.identity, None)
        self._by_endpoint[entry.endpoint] = entry
        if entry.psk is not None:
            self._by_identity[entry.psk.identity] = entry.endpoint
        return old

    async def _persist_put(self, entry: SecurityEntry) -> None:
        return None

    async def _persist_remove(self, endpoint: str) -> None:
        return None


class MemoryDocumentStore:
    """Documents and logs in dicts; copies in and out, so callers never share state with the store."""

    def __init__(self) -> None:
        self._docs: dict[str, dict[str, JsonDoc]] = {}
        self._logs: dict[str, deque[JsonDoc]] = {}

    async def get(self, namespace: str, key: str) -> JsonDoc | None:
        """A deep copy: the caller may edit it without changing the stored one."""
        doc = self._docs.get(namespace, {}).get(key)
        return None if doc is None else copy.deepcopy(doc)

    async def put(self, namespace: str, key: str, doc: JsonDoc) -> JsonDoc | None:
        """Checked to be JSON first, so memory behaves like the persistent stores."""
        check_json_doc(doc)
        space = self._docs.setdefault(namespace, {})
        old = space.get(key)
        space[key] = copy.deepcopy(doc)
        return old

    async def delete(self, namespace: str, key: str) -> JsonDoc | None:
        """Remove the document; returns it, or None when absent."""
        return self._docs.get(namespace, {}).pop(key, None)

    async def items(self, namespace: str) -> builtins.list[tuple[str, JsonDoc]]:
        """Deep copies, keys sorted (as the persistent stores return them)."""
        space = self._docs.get(namespace, {})
        return [(k, copy.deepcopy(space[k])) for k in sorted(space)]

    def may_hold(self, namespace: str) -> bool:
        return bool(self._docs.get(namespace))

    async def take_all(self, namespace: str) -> builtins.list[tuple[str, JsonDoc]]:
        """The namespace leaves the store whole (nobody else holds its documents)."""
        space = self._docs.pop(namespace, {})
        return [(k, space[k]) for k in sorted(space)]

    async def append(self, namespace: str, doc: JsonDoc, *, keep: int = 1000) -> None:
        """A bounded deque per log: the oldest entries go beyond ``keep``."""
        check_json_doc(doc)
        log = self._logs.get(namespace)
        if log is None or log.maxlen != keep:
            log = deque(log or (), maxlen=max(1, keep))
            self._logs[namespace] = log
        log.append(copy.deepcopy(doc))

    async def tail(self, namespace: str, limit: int = 100) -> builtins.list[JsonDoc]:
        """The newest ``limit`` entries (copies), oldest first."""
        log = self._logs.get(namespace)
        if not log or limit <= 0:
            return []
        return [copy.deepcopy(d) for d in list(log)[-limit:]]


RegT = TypeVar("RegT")
ObsT = TypeVar("ObsT")
SecT = TypeVar("SecT")
DocT = TypeVar("DocT")


class StoreBundle(Generic[RegT, ObsT, SecT, DocT]):
    """The four stores of one backend, typed as that backend's classes.

    Every backend's bundle (memory, SQLite, Redis) is this with its own store
    classes; ``close`` releases what the backend holds (nothing, in memory).
    """

    def __init__(
        self, registrations: RegT, observations: ObsT, security: SecT, documents: DocT
    ) -> None:
        self._registrations = registrations
        self._observations = observations
        self._security = security
        self._documents = documents

    @property
    def registrations(self) -> RegT:
        """Typed as the backend's class, so tests reach backend-specific members."""
        return self._registrations

    @property
    def observations(self) -> ObsT:
        """Typed as the backend's class (see :attr:`registrations`)."""
        return self._observations

    @property
    def security(self) -> SecT:
        """Typed as the backend's class (see :attr:`registrations`)."""
        return self._security

    @property
    def documents(self) -> DocT:
        """Typed as the backend's class (see :attr:`registrations`)."""
        return self._documents

    def counters(self) -> dict[str, float]:
        """None in memory; a backend with its own machinery (SQLite) overrides it."""
        return {}

    async def close(self) -> None:
        """Nothing to release in memory; backends override it."""
        return None


class MemoryStores(
    StoreBundle[
        MemoryRegistrationStore, MemoryObservationStore, MemorySecurityStore, MemoryDocumentStore
    ]
):
    """All four stores in memory: nothing survives a restart (``--store memory``)."""

    def __init__(self) -> None:
        super().__init__(
            MemoryRegistrationStore(),
            MemoryObservationStore(),
            MemorySecurityStore(),
            MemoryDocumentStore(),
        )

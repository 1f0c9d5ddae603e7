"""In-memory stores: the working set of every store, and the ``--store memory`` backend.

The persistent stores (SQLite, Redis) subclass these and add a write-through
step in the ``_persist_*`` hooks, so the indexing logic exists once.
"""

from __future__ import annotations

import builtins
import copy
import heapq
from collections import deque
from typing import Generic, TypeVar

from lwm2m.coap.peer import Address
from lwm2m.security.credentials import SecurityEntry
from lwm2m.stores.base import JsonDoc, SecurityConflict, UnknownRegistration, check_json_doc
from lwm2m.stores.records import ObservationRecord, Registration


class MemoryRegistrationStore:
    """Registrations in dicts, with an expiry heap (lazy deletion) for :meth:`expired`."""

    def __init__(self) -> None:
        self._by_id: dict[str, Registration] = {}
        self._by_endpoint: dict[str, str] = {}
        self._by_address: dict[Address, str] = {}
        self._expiry: builtins.list[tuple[float, str]] = []

    # -- reads
    def get(self, registration_id: str) -> Registration | None:
        return self._by_id.get(registration_id)

    def get_by_endpoint(self, endpoint: str) -> Registration | None:
        rid = self._by_endpoint.get(endpoint)
        return None if rid is None else self._by_id.get(rid)

    def get_by_address(self, address: Address) -> Registration | None:
        rid = self._by_address.get(address)
        return None if rid is None else self._by_id.get(rid)

    def list(self) -> builtins.list[Registration]:
        return list(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def expired(self, now: float, grace_s: float = 0.0) -> builtins.list[Registration]:
        result: builtins.list[Registration] = []
        heap = self._expiry
        while heap and heap[0][0] + grace_s < now:
            expires_at, rid = heapq.heappop(heap)
            reg = self._by_id.get(rid)
            # Stale heap entries (updated or removed registrations) are skipped.
            if reg is not None and reg.expires_at == expires_at:
                result.append(reg)
                # Keep it in the heap until it is really removed by the caller.
        for reg in result:
            heapq.heappush(heap, (reg.expires_at, reg.id))
        return result

    # -- writes
    async def add(self, registration: Registration) -> tuple[Registration | None, Registration]:
        old = self.get_by_endpoint(registration.endpoint)
        if old is not None:
            self._drop(old)
        self._index(registration)
        try:
            await self._persist_add(registration, old)
        except Exception:
            # Not durable, so not acknowledged: the memory view goes back too.
            self._drop(registration)
            if old is not None:
                self._index(old)
            raise
        return old, registration

    async def update(self, registration: Registration) -> tuple[Registration, Registration]:
        old = self._by_id.get(registration.id)
        if old is None:
            raise UnknownRegistration(registration.id)
        self._drop(old)
        self._index(registration)
        try:
            await self._persist_update(registration)
        except Exception:
            self._drop(registration)
            self._index(old)
            raise
        return old, registration

    async def remove(self, registration_id: str) -> Registration | None:
        old = self._by_id.get(registration_id)
        if old is None:
            return None
        self._drop(old)
        try:
            await self._persist_remove(old)
        except Exception:
            self._index(old)
            raise
        return old

    # -- indexing
    def _index(self, reg: Registration) -> None:
        self._by_id[reg.id] = reg
        self._by_endpoint[reg.endpoint] = reg.id
        self._by_address[reg.address] = reg.id
        heapq.heappush(self._expiry, (reg.expires_at, reg.id))
        # Lazy deletion leaves stale entries behind; rebuild when they dominate.
        if len(self._expiry) > 4 * len(self._by_id) + 64:
            self._expiry = [(r.expires_at, r.id) for r in self._by_id.values()]
            heapq.heapify(self._expiry)

    def _drop(self, reg: Registration) -> None:
        self._by_id.pop(reg.id, None)
        if self._by_endpoint.get(reg.endpoint) == reg.id:
            del self._by_endpoint[reg.endpoint]
        if self._by_address.get(reg.address) == reg.id:
            del self._by_address[reg.address]

    def _load(self, reg: Registration) -> None:
        """Index a registration read back from a backend (no write-through)."""
        old = self.get_by_endpoint(reg.endpoint)
        if old is not None:
            self._drop(old)
        self._index(reg)

    # -- write-through hooks (no-ops in memory)
    async def _persist_add(self, reg: Registration, replaced: Registration | None) -> None:
        return None

    async def _persist_update(self, reg: Registration) -> None:
        return None

    async def _persist_remove(self, reg: Registration) -> None:
        return None


class MemoryObservationStore:
    def __init__(self) -> None:
        self._by_id: dict[str, ObservationRecord] = {}
        self._by_registration: dict[str, dict[str, ObservationRecord]] = {}

    def get(self, observation_id: str) -> ObservationRecord | None:
        return self._by_id.get(observation_id)

    def for_registration(self, registration_id: str) -> builtins.list[ObservationRecord]:
        return list(self._by_registration.get(registration_id, {}).values())

    def list(self) -> builtins.list[ObservationRecord]:
        return list(self._by_id.values())

    async def add(self, record: ObservationRecord) -> ObservationRecord | None:
        old = self._take(record.id)
        self._put(record)
        await self._persist_add(record)
        return old

    async def remove(self, observation_id: str) -> ObservationRecord | None:
        old = self._take(observation_id)
        if old is not None:
            await self._persist_remove([old])
        return old

    async def remove_for_registration(
        self, registration_id: str
    ) -> builtins.list[ObservationRecord]:
        records = list(self._by_registration.pop(registration_id, {}).values())
        for rec in records:
            self._by_id.pop(rec.id, None)
        if records:
            await self._persist_remove(records)
        return records

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
    def __init__(self) -> None:
        self._by_endpoint: dict[str, SecurityEntry] = {}
        self._by_identity: dict[bytes, str] = {}

    def get(self, endpoint: str) -> SecurityEntry | None:
        return self._by_endpoint.get(endpoint)

    def get_by_psk_identity(self, identity: bytes) -> SecurityEntry | None:
        endpoint = self._by_identity.get(identity)
        return None if endpoint is None else self._by_endpoint.get(endpoint)

    def list(self) -> builtins.list[SecurityEntry]:
        return [self._by_endpoint[k] for k in sorted(self._by_endpoint)]

    async def put(self, entry: SecurityEntry) -> tuple[SecurityEntry | None, SecurityEntry]:
        self._check(entry)
        old = self._set(entry)
        await self._persist_put(entry)
        return old, entry

    async def remove(self, endpoint: str) -> SecurityEntry | None:
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
    def __init__(self) -> None:
        self._docs: dict[str, dict[str, JsonDoc]] = {}
        self._logs: dict[str, deque[JsonDoc]] = {}

    async def get(self, namespace: str, key: str) -> JsonDoc | None:
        doc = self._docs.get(namespace, {}).get(key)
        return None if doc is None else copy.deepcopy(doc)

    async def put(self, namespace: str, key: str, doc: JsonDoc) -> JsonDoc | None:
        check_json_doc(doc)
        space = self._docs.setdefault(namespace, {})
        old = space.get(key)
        space[key] = copy.deepcopy(doc)
        return old

    async def delete(self, namespace: str, key: str) -> JsonDoc | None:
        return self._docs.get(namespace, {}).pop(key, None)

    async def items(self, namespace: str) -> builtins.list[tuple[str, JsonDoc]]:
        space = self._docs.get(namespace, {})
        return [(k, copy.deepcopy(space[k])) for k in sorted(space)]

    async def append(self, namespace: str, doc: JsonDoc, *, keep: int = 1000) -> None:
        check_json_doc(doc)
        log = self._logs.get(namespace)
        if log is None or log.maxlen != keep:
            log = deque(log or (), maxlen=max(1, keep))
            self._logs[namespace] = log
        log.append(copy.deepcopy(doc))

    async def tail(self, namespace: str, limit: int = 100) -> builtins.list[JsonDoc]:
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
        return self._registrations

    @property
    def observations(self) -> ObsT:
        return self._observations

    @property
    def security(self) -> SecT:
        return self._security

    @property
    def documents(self) -> DocT:
        return self._documents

    async def close(self) -> None:
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

"""Redis stores (``--store redis://host:port/db``): shared by every server node on one prefix.

Layout: see :mod:`lwm2m.stores.redis_scripts` (registrations and their indexes,
observations, security entries) and :class:`RedisDocumentStore` (``doc:<ns>``
hashes, ``log:<ns>`` lists), all under a key prefix (``lwm2m:`` by default).
Durability is Redis's: run it with ``appendonly yes`` and ``appendfsync always``
for the SQLite store's guarantee.

Several ``lwm2m server`` processes (nodes) may share a prefix. Redis is the
truth: every change is a Lua script, so the 4.09 rule, "one node removes an
expired registration" and unique PSK identities hold across nodes. A node
does not hold the fleet: it keeps in memory the registrations it owns and a
bounded cache of others, reads Redis on a miss (the stores' ``fetch*``
coroutines), and pages and counts the fleet from indexes the scripts keep.
Each change is published on the ``changes`` channel; a node uses it to evict
or refresh what it caches, and drops its cache when the channel is lost
(Redis restarted) until it has subscribed again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from lwm2m.coap.peer import Address
from lwm2m.security.credentials import SecurityEntry
from lwm2m.stores.base import (
    JsonDoc,
    RegistrationConflict,
    SecurityConflict,
    StoreError,
    UnknownRegistration,
    check_json_doc,
)
from lwm2m.stores.codec import (
    dumps,
    load_doc,
    load_records,
    observation_text,
    registration_text,
    security_text,
)
from lwm2m.stores.memory import (
    MemoryObservationStore,
    MemoryRegistrationStore,
    MemorySecurityStore,
    StoreBundle,
)
from lwm2m.stores.query import (
    RegistrationIndex,
    RegistrationPage,
    RegistrationQuery,
    RegistrationStats,
    SortKey,
    per_minute_counts,
)
from lwm2m.stores.records import (
    ObservationRecord,
    RecordError,
    Registration,
    security_entry_from_dict,
)
from lwm2m.stores.redis_pipeline import open_pipeline
from lwm2m.stores.redis_scripts import (
    BY_INDEX,
    BY_NAMES,
    INDEX,
    OBSERVATION_ADD,
    OBSERVATION_REMOVE,
    OBSERVATIONS_OF,
    PAGE,
    REGISTER,
    REMOVE,
    SECURITY_PUT,
    SECURITY_REMOVE,
    TAKE_ALL,
    UPDATE,
    address_key,
    client_key,
    tag,
)
from lwm2m.stores.redis_subscription import Subscription

logger = logging.getLogger(__name__)

#: The registrar's default grace after a lifetime (``server.registrar``), during which
#: the name stays held against other clients.
DEFAULT_CONFLICT_GRACE_S = 15.0

#: Connections a node opens to Redis at most (each pub/sub feed holds one for good).
MAX_CONNECTIONS = 64
#: How long a command waits for a free connection before it is a StoreError.
POOL_WAIT_S = 10.0


def default_node_id() -> str:
    """Host and pid: unique among the processes sharing one Redis, and readable in logs."""
    return f"{socket.gethostname()}-{os.getpid()}"


class RedisConnection:
    """One redis-py client under a key prefix: what every cluster piece (stores, node
    registry, event relay, forwarding) shares, so one node opens one connection pool."""

    def __init__(self, client: Any, prefix: str, error: type[Exception]) -> None:
        self.client = client
        self.prefix = prefix
        self.error = error
        self.channel = prefix + "changes"
        self.pipeline = open_pipeline(client, error)

    def key(self, name: str) -> str:
        return self.prefix + name

    async def run(self, *commands: tuple[str, ...]) -> list[Any]:
        """The commands in one MULTI/EXEC round trip; one command alone is atomic by
        itself and goes without the MULTI/EXEC around it (the common read)."""
        try:
            if len(commands) == 1:
                return [await self.client.execute_command(*commands[0])]
            pipe = self.client.pipeline(transaction=True)
            for command in commands:
                pipe.execute_command(*command)
            result: list[Any] = await pipe.execute()
            return result
        except (OSError, self.error) as exc:
            raise StoreError(f"Redis: {exc}") from None

    async def script(self, script: Any, keys: list[str], args: list[str]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except (OSError, self.error) as exc:
            raise StoreError(f"Redis: {exc}") from None

    async def hot_script(self, script: Any, keys: list[str], args: list[str]) -> Any:
        """:meth:`script` through the pipelined connection (:mod:`redis_pipeline`), for the
        scripts of every Register, Update and De-register; short replies only."""
        if self.pipeline is None:
            return await self.script(script, keys, args)
        try:
            return await self.pipeline.evalsha(script, keys, args)
        except (OSError, self.error) as exc:
            raise StoreError(f"Redis: {exc}") from None

    async def close(self) -> None:
        """Close the pipelined connection and redis-py's pool."""
        if self.pipeline is not None:
            await self.pipeline.close()
        await self.client.aclose()


class RedisRegistrationStore(MemoryRegistrationStore):
    """Registrations in Redis, changed only by the scripts of :mod:`redis_scripts`.

    The inherited in-memory indexes hold what this node needs, not the fleet:
    the registrations it owns (it took their last Register or Update; loaded
    from ``reg:owned:<node>`` at start) and at most :attr:`cache_size` others,
    least recently used first out. The synchronous reads answer from there (so
    ``partial`` is True); the ``fetch*`` coroutines read Redis on a miss, and the
    REST API's pages and counts always read Redis (the scripts keep its indexes
    and counters). The ``changes`` channel evicts or refreshes cached keys only.
    """

    #: Registrations of other nodes kept in memory after a fetch.
    DEFAULT_CACHE_SIZE = 10_000
    #: Most registrations a filtered or re-sorted page examines (see :meth:`fetch_query`).
    DEFAULT_SCAN_LIMIT = 20_000
    #: Most expired registrations one sweep takes.
    EXPIRED_BATCH = 1000

    def __init__(
        self,
        redis: RedisConnection,
        *,
        node_id: str,
        conflict_grace_s: float,
        cache_size: int = DEFAULT_CACHE_SIZE,
        scan_limit: int = DEFAULT_SCAN_LIMIT,
    ) -> None:
        super().__init__()
        self._r = redis
        self.node_id = node_id
        self.conflict_grace_s = conflict_grace_s
        self.cache_size = cache_size
        self.scan_limit = scan_limit
        #: id -> the deadline this node saw expired: its removal is refused if it moved.
        self._claims: dict[str, float] = {}
        self._owned: set[str] = set()
        #: Other nodes' registrations in memory, least recently used first.
        self._cached: OrderedDict[str, None] = OrderedDict()
        #: Change messages applied so far, and (while reads are in flight) the last one per id.
        self._seq = 0
        self._in_flight = 0
        self._changed_at: dict[str, int] = {}
        #: The ``reg:seq`` number of this node's last write of each registration it holds.
        self._write_numbers: dict[str, int] = {}
        #: Called with an id this node has just taken from another node (its observations).
        self.on_taken: Callable[[str], Awaitable[None]] | None = None
        client = redis.client
        self._register = client.register_script(REGISTER)
        self._update = client.register_script(UPDATE)
        self._remove = client.register_script(REMOVE)
        self._index_script = client.register_script(INDEX)
        self._page = client.register_script(PAGE)
        self._by_names = client.register_script(BY_NAMES)
        self._by_index = client.register_script(BY_INDEX)

    # -- what this node holds
    @property
    def partial(self) -> bool:
        """Memory holds this node's registrations and a cache: a miss proves nothing."""
        return True

    @property
    def owned_count(self) -> int:
        """Registrations this node owns (all of them are in its memory)."""
        return len(self._owned)

    def owned_ids(self) -> list[str]:
        """The ids of the registrations this node owns."""
        return list(self._owned)

    @property
    def cached_count(self) -> int:
        """Other nodes' registrations in this node's memory (at most :attr:`cache_size`)."""
        return len(self._cached)

    def get(self, registration_id: str) -> Registration | None:
        """From memory; a cached one becomes the most recently used."""
        reg = self._by_id.get(registration_id)
        if reg is not None and registration_id in self._cached:
            self._cached.move_to_end(registration_id)
        return reg

    async def load_owned(self) -> int:
        """Read this node's registrations back (a restart, or after the change feed dropped)."""
        owned_key = self._r.key("reg:owned:" + self.node_id)
        cursor: Any = 0
        loaded = 0
        while True:
            ((cursor, ids),) = await self._r.run(("SSCAN", owned_key, str(cursor), "COUNT", "1000"))
            if ids:
                (raws,) = await self._r.run(("HMGET", self._r.key("registrations"), *ids))
                for raw in raws:
                    reg = _registration(raw)
                    if reg is not None:
                        self._keep(reg, owned=True)
                        loaded += 1
            if int(cursor) == 0:
                return loaded

    def clear_view(self) -> None:
        """Forget everything in memory (the change feed was lost: none of it is trusted)."""
        for rid in list(self._by_id):
            self._forget(rid)
        self._claims.clear()

    # -- the whole fleet's reads
    async def fetch(self, registration_id: str) -> Registration | None:
        """From memory, else one HGET (the answer is cached)."""
        reg = self.get(registration_id)
        if reg is not None:
            return reg
        return await self._read(("HGET", self._r.key("registrations"), registration_id))

    async def fetch_by_endpoint(self, endpoint: str) -> Registration | None:
        """From memory, else one script through ``reg:endpoint``."""
        reg = self.get_by_endpoint(endpoint)
        if reg is not None:
            return reg
        return await self._read_through("reg:endpoint", endpoint)

    async def fetch_by_address(self, address: Address) -> Registration | None:
        """From memory, else one script through ``reg:address``."""
        reg = self.get_by_address(address)
        if reg is not None:
            return reg
        return await self._read_through("reg:address", address_key(*address[:2]))

    async def fetch_query(self, query: RegistrationQuery) -> RegistrationPage:
        """A page from Redis.

        Unfiltered and by name (the REST API's default): ranks of ``reg:names``, one
        script, whatever the fleet size. Anything else is answered exactly while the
        fleet has at most :attr:`scan_limit` registrations (they are read and indexed
        for the query); beyond, from a bounded scan: a search examines the first
        :attr:`scan_limit` endpoint names containing the text (case-insensitive; the
        address is not searched), other filters and orders the first
        :attr:`scan_limit` names, and the page says ``complete=False``.
        """
        if not query.filtered and query.sort is SortKey.ENDPOINT:
            stop = -1 if query.limit is None else query.offset + query.limit - 1
            if query.limit == 0:
                (total,) = await self._r.run(("ZCARD", self._r.key("reg:names")))
                return RegistrationPage(int(total), ())
            reply = await self._r.script(
                self._page,
                [],
                [self._r.prefix, str(query.offset), str(stop), "1" if query.descending else "0"],
            )
            return RegistrationPage(int(reply[0]), tuple(_registrations(reply[1:])))
        (total,) = await self._r.run(("ZCARD", self._r.key("reg:names")))
        complete = int(total) <= self.scan_limit
        if complete:
            names = await self._names(None)
        else:
            names = await self._names(query.text)
        index = RegistrationIndex()
        for reg in await self._fetch_names(names):
            index.added(reg)
        page = index.query(query)
        return page if complete else RegistrationPage(page.total, page.items, complete=False)

    async def fetch_stats(self, now: float) -> RegistrationStats:
        """The counters the scripts keep in ``reg:stats``, and the size of ``reg:names``."""
        raw, total = await self._r.run(
            ("HGETALL", self._r.key("reg:stats")), ("ZCARD", self._r.key("reg:names"))
        )
        counts = {reply_text(k): int(v) for k, v in raw.items()}
        minutes = {int(k[2:]): v for k, v in counts.items() if k.startswith("m:") and v > 0}
        return RegistrationStats(
            total=int(total),
            queue_mode=counts.get("queue", 0),
            secure=counts.get("secure", 0),
            by_binding={k[2:]: v for k, v in sorted(counts.items()) if k[:2] == "b:" and v > 0},
            by_version={k[2:]: v for k, v in sorted(counts.items()) if k[:2] == "v:" and v > 0},
            registered_per_minute=per_minute_counts(minutes, now),
        )

    async def fetch_count(self) -> int:
        """HLEN of the registrations hash."""
        (count,) = await self._r.run(("HLEN", self._r.key("registrations")))
        return int(count)

    async def fetch_expired(self, now: float, grace_s: float = 0.0) -> list[Registration]:
        """Up to :attr:`EXPIRED_BATCH` ids from ``reg:deadline``, remembering each deadline
        for :meth:`remove`'s guard (every node sweeps; the remove script picks one)."""
        (pairs,) = await self._r.run(
            (
                "ZRANGEBYSCORE",
                self._r.key("reg:deadline"),
                "-inf",
                f"({now - grace_s!r}",
                "WITHSCORES",
                "LIMIT",
                "0",
                str(self.EXPIRED_BATCH),
            )
        )
        if not pairs:
            return []
        ids = [reply_text(i) for i, _ in pairs]
        (raws,) = await self._r.run(("HMGET", self._r.key("registrations"), *ids))
        result: list[Registration] = []
        for (_, deadline), raw in zip(pairs, raws, strict=True):
            reg = _registration(raw)
            if reg is not None:
                self._claims[reg.id] = float(deadline)
                result.append(reg)
        return result

    def expired(self, now: float, grace_s: float = 0.0) -> list[Registration]:
        """As the memory store's (this node's memory only), remembering each deadline."""
        result = super().expired(now, grace_s)
        for reg in result:
            self._claims[reg.id] = reg.expires_at
        return result

    async def take_over(self, registration: Registration, address: Address) -> Registration | None:
        """An Update of the registration at ``address`` by this node, if its owner is gone.

        The owner is gone when its liveness key ``node:<id>`` (kept by every node's
        heartbeat) has expired. Same id, new source address; ``reg:owner`` becomes
        this node. None when the owner is alive, is this node, or the registration
        is gone.
        """
        owner_key = self._r.key("reg:owner")
        (owner,) = await self._r.run(("HGET", owner_key, registration.id))
        if owner is None or reply_text(owner) == self.node_id:
            return None
        (alive,) = await self._r.run(("EXISTS", self._r.key("node:" + reply_text(owner))))
        if int(alive):
            return None
        try:
            _, new = await self.update(replace(registration, address=address))
        except UnknownRegistration:
            return None
        logger.info(
            "took %s id=%s over from node %s (gone), now at %s:%d",
            new.endpoint,
            new.id,
            reply_text(owner),
            *address[:2],
        )
        return new

    async def owner(self, registration_id: str) -> str | None:
        """The node that received the registration's last Register or Update."""
        (raw,) = await self._r.run(("HGET", self._r.key("reg:owner"), registration_id))
        return None if raw is None else reply_text(raw)

    # -- writes
    def _args(self, *values: str) -> list[str]:
        return [self._r.prefix, *values]

    async def add(self, registration: Registration) -> tuple[Registration | None, Registration]:
        """One script: refuse a name live under another client, else replace it.

        Raises :class:`RegistrationConflict` (the registrar answers 4.09), whichever
        node holds the other registration.
        """
        reply = await self._r.hot_script(
            self._register,
            [],
            self._args(
                registration.id,
                registration.endpoint,
                registration_text(registration),
                client_key(registration),
                repr(registration.expires_at),
                repr(registration.registered_at),
                repr(self.conflict_grace_s),
                self.node_id,
                tag(registration),
            ),
        )
        if reply_text(reply[0]) == "conflict":
            raise RegistrationConflict(
                f"endpoint name {registration.endpoint!r} is registered by another client"
            )
        old = _registration(reply[1]) if len(reply) > 1 else None
        if old is not None:
            self._forget(old.id)
        self._keep(registration, owned=True)
        self._written(registration.id, reply[2])
        return old, registration

    async def update(self, registration: Registration) -> tuple[Registration, Registration]:
        """One script; this node becomes the owner (it received the Update).

        When the registration was another node's, :attr:`on_taken` runs before this
        returns (the observations store reads its observations in).
        """
        taken = registration.id not in self._owned
        reply = await self._r.hot_script(
            self._update,
            [],
            self._args(
                registration.id,
                registration_text(registration),
                repr(registration.expires_at),
                self.node_id,
                tag(registration),
            ),
        )
        # {the JSON replaced, its write number}, or nil when the registration is gone.
        old = None if reply is None else _registration(reply[0])
        self._forget(registration.id)
        if old is None:
            raise UnknownRegistration(registration.id)
        self._keep(registration, owned=True)
        self._written(registration.id, reply[1])
        if taken and self.on_taken is not None:
            await self.on_taken(registration.id)
        return old, registration

    async def remove(self, registration_id: str) -> Registration | None:
        """One script, so of two nodes removing one registration only one gets it back.

        After :meth:`fetch_expired` the removal holds only if the deadline did not
        move (an Update on another node wins over this node's stale view).
        """
        limit = self._claims.pop(registration_id, None)
        reply = await self._r.hot_script(
            self._remove,
            [],
            self._args(registration_id, "+inf" if limit is None else repr(limit)),
        )
        removed = _registration(reply)
        if removed is not None or limit is None:
            self._forget(registration_id)
        return removed

    def refresh(
        self, registration_id: str, writer: str | None = None, number: int | None = None
    ) -> None:
        """A change message: forget a registration this node holds; ignore the others.

        ``writer`` is the node that wrote it (None: it was removed). This node's own
        writes are in memory already. Another node's write also made that node the
        owner (Register and Update move ``reg:owner`` to the writer), so what this node
        held is no longer its own: it is forgotten rather than read again, and the next
        read that needs it fetches it. Every node receives every change of the cluster,
        so a change costs the others no round trip to Redis.
        """
        self._seq += 1
        if self._in_flight:
            self._changed_at[registration_id] = self._seq
        if writer == self.node_id or registration_id not in self._by_id:
            return
        mine = self._write_numbers.get(registration_id)
        if number is not None and mine is not None and number < mine:
            # Older than this node's own write of it (both Updates raced; the message came
            # in after the script's answer): the registration is still this node's.
            return
        self._forget(registration_id)

    async def index_missing(self) -> None:
        """Index and count registrations written before the indexes existed (an older
        prefix), a chunk at a time: the fleet is never held in memory."""
        cursor: Any = 0
        while True:
            ((cursor, raw),) = await self._r.run(
                ("HSCAN", self._r.key("registrations"), str(cursor), "COUNT", "1000")
            )
            args: list[str] = []
            for value in raw.values():
                reg = _registration(value)
                if reg is not None:
                    args += [reg.id, reg.endpoint, client_key(reg), repr(reg.expires_at), tag(reg)]
            if args:
                await self._r.script(self._index_script, [], [self._r.prefix, *args])
            if int(cursor) == 0:
                return

    # -- private
    def _keep(self, reg: Registration, *, owned: bool) -> None:
        """Into memory: owned ones stay, the others join the cache (the oldest leave)."""
        other = self._by_endpoint.get(reg.endpoint)
        if other is not None and other.id != reg.id:
            self._forget(other.id)
        self._load(reg)
        if owned:
            self._owned.add(reg.id)
            self._cached.pop(reg.id, None)
            return
        self._owned.discard(reg.id)
        self._cached[reg.id] = None
        self._cached.move_to_end(reg.id)
        while len(self._cached) > self.cache_size:
            oldest, _ = self._cached.popitem(last=False)
            current = self._by_id.get(oldest)
            if current is not None:
                self._drop(current)

    def _forget(self, registration_id: str) -> None:
        current = self._by_id.get(registration_id)
        if current is not None:
            self._drop(current)
        self._owned.discard(registration_id)
        self._cached.pop(registration_id, None)
        self._write_numbers.pop(registration_id, None)

    def _written(self, registration_id: str, number: int) -> None:
        """The write number of this node's own Register or Update (see ``reg:seq``)."""
        self._write_numbers[registration_id] = number

    async def _read(self, command: tuple[str, ...]) -> Registration | None:
        return await self._cached_read(self._r.run(command), first=True)

    async def _read_through(self, index: str, field: str) -> Registration | None:
        return await self._cached_read(
            self._r.script(self._by_index, [], [self._r.prefix, index, field]), first=False
        )

    async def _cached_read(self, read: Awaitable[Any], *, first: bool) -> Registration | None:
        """Run ``read``; cache its answer unless a change of that id came meanwhile
        (the change message may be newer than the answer)."""
        start = self._seq
        self._in_flight += 1
        try:
            reply = await read
        finally:
            self._in_flight -= 1
        reg = _registration(reply[0] if first else reply)
        fresh = reg is not None and self._changed_at.get(reg.id, -1) < start
        if fresh and reg is not None and reg.id not in self._by_id:
            self._keep(reg, owned=False)
        if not self._in_flight:
            self._changed_at.clear()
        return reg

    async def _names(self, text: str | None) -> list[str]:
        """Endpoint names to examine: all of them (small fleets), those containing ``text``
        (ZSCAN, up to :attr:`scan_limit`), or the first :attr:`scan_limit`."""
        key = self._r.key("reg:names")
        if text is None:
            (raw,) = await self._r.run(("ZRANGE", key, "0", str(self.scan_limit - 1)))
            return [reply_text(n) for n in raw]
        pattern = "*" + _glob_nocase(text) + "*"
        names: list[str] = []
        cursor: Any = 0
        while len(names) < self.scan_limit:
            ((cursor, raw),) = await self._r.run(
                ("ZSCAN", key, str(cursor), "MATCH", pattern, "COUNT", "5000")
            )
            names += [reply_text(n) for n, _ in raw]
            if int(cursor) == 0:
                break
        return names[: self.scan_limit]

    async def _fetch_names(self, names: list[str]) -> list[Registration]:
        result: list[Registration] = []
        for start in range(0, len(names), 1000):
            reply = await self._r.script(
                self._by_names, [], [self._r.prefix, *names[start : start + 1000]]
            )
            result += _registrations(reply)
        return result


class RedisObservationStore(MemoryObservationStore):
    """Observations in Redis (``observations``, ``obs:reg:<id>``); in memory only those this
    node made and a bounded cache of others it read (least recently used out)."""

    DEFAULT_CACHE_SIZE = 10_000

    def __init__(
        self, redis: RedisConnection, *, node_id: str, cache_size: int = DEFAULT_CACHE_SIZE
    ) -> None:
        super().__init__()
        self._r = redis
        self.node_id = node_id
        self.cache_size = cache_size
        self._own: set[str] = set()
        self._cached: OrderedDict[str, None] = OrderedDict()
        client = redis.client
        self._add_script = client.register_script(OBSERVATION_ADD)
        self._remove_script = client.register_script(OBSERVATION_REMOVE)
        self._of_script = client.register_script(OBSERVATIONS_OF)

    @property
    def partial(self) -> bool:
        """Memory holds this node's observations and a cache: a miss proves nothing."""
        return True

    async def fetch(self, observation_id: str) -> ObservationRecord | None:
        """From memory, else one HGET (cached)."""
        record = self._by_id.get(observation_id)
        if record is not None:
            return record
        (raw,) = await self._r.run(("HGET", self._r.key("observations"), observation_id))
        if raw is None:
            return None
        record = ObservationRecord.from_dict(load_doc(raw))
        self._cache(record)
        return record

    async def fetch_for_registration(self, registration_id: str) -> list[ObservationRecord]:
        """Every observation of the registration in Redis (and into memory)."""
        reply = await self._r.script(self._of_script, [], [self._r.prefix, registration_id, "0"])
        records = [ObservationRecord.from_dict(load_doc(raw)) for raw in reply]
        for record in records:
            if record.id not in self._own:
                self._cache(record)
        return records

    async def index_missing(self) -> None:
        """``obs:reg:<id>`` sets for observations written before they existed (an older
        prefix), a chunk at a time; ``obs:indexed`` marks the prefix done."""
        cursor: Any = 0
        while True:
            ((cursor, raw),) = await self._r.run(
                ("HSCAN", self._r.key("observations"), str(cursor), "COUNT", "1000")
            )
            commands = []
            for oid, value in raw.items():
                record = ObservationRecord.from_dict(load_doc(value))
                commands.append(
                    ("SADD", self._r.key("obs:reg:" + record.registration_id), reply_text(oid))
                )
            if commands:
                await self._r.run(*commands)
            if int(cursor) == 0:
                break
        await self._r.run(("SET", self._r.key("obs:indexed"), "1"))

    async def load_for(self, registration_ids: list[str]) -> int:
        """Read the observations of these registrations (this node's own) into memory,
        a chunk of registrations per round trip."""
        loaded = 0
        for start in range(0, len(registration_ids), 500):
            chunk = registration_ids[start : start + 500]
            sets = await self._r.run(
                *(("SMEMBERS", self._r.key("obs:reg:" + rid)) for rid in chunk)
            )
            ids = [reply_text(i) for members in sets for i in members]
            if not ids:
                continue
            (raws,) = await self._r.run(("HMGET", self._r.key("observations"), *ids))
            for raw in raws:
                if raw is not None:
                    record = ObservationRecord.from_dict(load_doc(raw))
                    self._take(record.id)
                    self._put(record)
                    self._own.add(record.id)
                    loaded += 1
        return loaded

    async def take(self, registration_id: str) -> None:
        """This node took the registration over: its observations become this node's."""
        for record in await self.fetch_for_registration(registration_id):
            self._cached.pop(record.id, None)
            self._own.add(record.id)

    async def add(self, record: ObservationRecord) -> ObservationRecord | None:
        """One script (hash, per-registration set, change message); kept in memory."""
        raw = await self._r.script(
            self._add_script,
            [],
            [
                self._r.prefix,
                record.id,
                record.registration_id,
                observation_text(record),
                self.node_id,
            ],
        )
        local = self._take(record.id)
        self._cached.pop(record.id, None)
        self._put(record)
        self._own.add(record.id)
        if raw is None:
            return local
        return ObservationRecord.from_dict(load_doc(raw))

    async def remove(self, observation_id: str) -> ObservationRecord | None:
        """One script: of two nodes removing it, one gets it back."""
        self._forget(observation_id)
        reply = await self._r.script(self._remove_script, [], [self._r.prefix, observation_id])
        return ObservationRecord.from_dict(load_doc(reply[0])) if reply else None

    def may_hold_for_registration(self, registration_id: str) -> bool:
        """Another node may have written them: only Redis knows."""
        return True

    async def remove_for_registration(self, registration_id: str) -> list[ObservationRecord]:
        """Every observation of the registration in Redis, not only those in memory."""
        for record in self.for_registration(registration_id):
            self._forget(record.id)
        reply = await self._r.hot_script(
            self._of_script, [], [self._r.prefix, registration_id, "1"]
        )
        return [ObservationRecord.from_dict(load_doc(raw)) for raw in reply]

    async def refresh(self, observation_id: str, writer: str | None = None) -> None:
        """A change message: re-read an observation this node holds; ignore the others."""
        if writer == self.node_id or observation_id not in self._by_id:
            return
        (raw,) = await self._r.run(("HGET", self._r.key("observations"), observation_id))
        own = observation_id in self._own
        self._forget(observation_id)
        if raw is not None:
            record = ObservationRecord.from_dict(load_doc(raw))
            if own:
                self._put(record)
                self._own.add(record.id)
            else:
                self._cache(record)

    def clear_view(self) -> None:
        """Forget everything in memory (the change feed was lost); reads go to Redis."""
        for oid in list(self._by_id):
            self._forget(oid)

    def _cache(self, record: ObservationRecord) -> None:
        self._take(record.id)
        self._put(record)
        if record.id in self._own:
            return
        self._cached[record.id] = None
        self._cached.move_to_end(record.id)
        while len(self._cached) > self.cache_size:
            oldest, _ = self._cached.popitem(last=False)
            self._take(oldest)

    def _forget(self, observation_id: str) -> None:
        self._take(observation_id)
        self._own.discard(observation_id)
        self._cached.pop(observation_id, None)


class RedisSecurityStore(MemorySecurityStore):
    """Security entries in Redis; every node holds them all (the DTLS handshake looks PSK
    identities up synchronously). A PSK identity is unique across nodes: ``sec:psk`` is
    checked and written by one script, so of two nodes putting one identity for two
    endpoints, one gets :class:`SecurityConflict`."""

    def __init__(self, redis: RedisConnection, docs: dict[Any, Any], *, node_id: str) -> None:
        super().__init__()
        self._r = redis
        self.node_id = node_id
        self._put_script = redis.client.register_script(SECURITY_PUT)
        self._remove_script = redis.client.register_script(SECURITY_REMOVE)
        self.reload(docs)

    def reload(self, docs: dict[Any, Any]) -> None:
        """Replace the memory with ``docs`` (HGETALL of ``security``)."""
        self._by_endpoint.clear()
        self._by_identity.clear()
        load_records(docs.values(), security_entry_from_dict, self._set, kind="security entry")

    async def index_missing(self) -> None:
        """``sec:psk`` and ``sec:identity`` for entries written before they existed."""
        commands: list[tuple[str, ...]] = []
        for entry in self.list():
            if entry.psk is not None:
                identity = entry.psk.identity.hex()
                commands += [
                    ("HSETNX", self._r.key("sec:psk"), identity, entry.endpoint),
                    ("HSETNX", self._r.key("sec:identity"), entry.endpoint, identity),
                ]
        if commands:
            await self._r.run(*commands)

    async def put(self, entry: SecurityEntry) -> tuple[SecurityEntry | None, SecurityEntry]:
        """Checked atomically against Redis (this node's memory may lag behind it)."""
        identity = "" if entry.psk is None else entry.psk.identity.hex()
        reply = await self._r.script(
            self._put_script,
            [],
            [self._r.prefix, entry.endpoint, security_text(entry), identity, self.node_id],
        )
        if reply_text(reply[0]) == "conflict":
            raise SecurityConflict(
                f"PSK identity {entry.psk.identity if entry.psk else b''!r} is already used "
                f"by endpoint {reply_text(reply[1])!r}"
            )
        local = self._set(entry)
        old = reply[1] if len(reply) > 1 else None
        return (local if old is None else security_entry_from_dict(load_doc(old))), entry

    async def remove(self, endpoint: str) -> SecurityEntry | None:
        """One script, which frees the PSK identity for another endpoint."""
        self._unset(endpoint)
        raw = await self._r.script(self._remove_script, [], [self._r.prefix, endpoint])
        return None if raw is None else security_entry_from_dict(load_doc(raw))

    async def refresh(self, endpoint: str, writer: str | None = None) -> None:
        """Re-read one entry from Redis into this node's memory."""
        if writer == self.node_id:
            return
        (raw,) = await self._r.run(("HGET", self._r.key("security"), endpoint))
        self._unset(endpoint)
        if raw is not None:
            self._set(security_entry_from_dict(load_doc(raw)))

    def _unset(self, endpoint: str) -> None:
        old = self._by_endpoint.pop(endpoint, None)
        if (
            old is not None
            and old.psk is not None
            and self._by_identity.get(old.psk.identity) == endpoint
        ):
            del self._by_identity[old.psk.identity]


class RedisDocumentStore:
    """Documents in one hash per namespace, logs in one list each; not cached in memory.

    They are small and rarely read (bootstrap configurations, session history),
    so a round trip per read costs less than a second copy to keep in step.
    """

    def __init__(self, redis: RedisConnection) -> None:
        self._r = redis
        self._take_all = redis.client.register_script(TAKE_ALL)

    async def get(self, namespace: str, key: str) -> JsonDoc | None:
        """One HGET; None when absent."""
        (raw,) = await self._r.run(("HGET", self._r.key(f"doc:{namespace}"), key))
        return None if raw is None else load_doc(raw)

    async def put(self, namespace: str, key: str, doc: JsonDoc) -> JsonDoc | None:
        """HGET and HSET in one transaction, so the returned old document is the one replaced."""
        check_json_doc(doc)
        name = self._r.key(f"doc:{namespace}")
        old, _ = await self._r.run(("HGET", name, key), ("HSET", name, key, dumps(doc)))
        return None if old is None else load_doc(old)

    async def delete(self, namespace: str, key: str) -> JsonDoc | None:
        """HGET and HDEL in one transaction, so the returned document is the one removed."""
        name = self._r.key(f"doc:{namespace}")
        old, _ = await self._r.run(("HGET", name, key), ("HDEL", name, key))
        return None if old is None else load_doc(old)

    async def items(self, namespace: str) -> list[tuple[str, JsonDoc]]:
        """One HGETALL, sorted by key here (Redis hashes are unordered)."""
        (raw,) = await self._r.run(("HGETALL", self._r.key(f"doc:{namespace}")))
        items = {reply_text(k): load_doc(v) for k, v in raw.items()}
        return [(k, items[k]) for k in sorted(items)]

    def may_hold(self, namespace: str) -> bool:
        """Another node may have written it: only Redis knows."""
        return True

    async def take_all(self, namespace: str) -> list[tuple[str, JsonDoc]]:
        """HGETALL and DEL in one script: one round trip (pipelined: every De-register
        takes two namespaces, nearly always empty), and each document goes to one node."""
        name = self._r.key(f"doc:{namespace}")
        flat = await self._r.hot_script(self._take_all, [name], [])
        items = {reply_text(flat[i]): load_doc(flat[i + 1]) for i in range(0, len(flat), 2)}
        return [(k, items[k]) for k in sorted(items)]

    async def append(self, namespace: str, doc: JsonDoc, *, keep: int = 1000) -> None:
        """RPUSH then LTRIM in one transaction: the log never exceeds ``keep``."""
        check_json_doc(doc)
        name = self._r.key(f"log:{namespace}")
        await self._r.run(("RPUSH", name, dumps(doc)), ("LTRIM", name, str(-max(1, keep)), "-1"))

    async def tail(self, namespace: str, limit: int = 100) -> list[JsonDoc]:
        """One LRANGE from the end of the list, oldest first."""
        if limit <= 0:
            return []
        (raw,) = await self._r.run(("LRANGE", self._r.key(f"log:{namespace}"), str(-limit), "-1"))
        return [load_doc(r) for r in raw]


def reply_text(value: Any) -> str:
    """A Redis reply as text: ``bytes`` from a raw connection, ``str`` from redis-py with
    ``decode_responses``, an integer from a counter."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _registration(raw: Any) -> Registration | None:
    return None if raw is None else Registration.from_dict(load_doc(raw))


def _registrations(raws: list[Any]) -> list[Registration]:
    return [Registration.from_dict(load_doc(raw)) for raw in raws]


def _glob_nocase(text: str) -> str:
    """``text`` as a case-insensitive Redis glob (``[aA]``), its special characters escaped."""
    out = []
    for char in text:
        if char.lower() != char.upper():
            out.append(f"[{char.lower()}{char.upper()}]")
        elif char in "*?[]\\^-":
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


#: Seconds between two attempts to subscribe again after the change feed dropped.


class RedisStores(
    StoreBundle[
        RedisRegistrationStore, RedisObservationStore, RedisSecurityStore, RedisDocumentStore
    ]
):
    """The four stores over one Redis connection (``--store redis://...``), one node's share."""

    def __init__(
        self,
        redis: RedisConnection,
        security: dict[Any, Any],
        *,
        node_id: str,
        conflict_grace_s: float = DEFAULT_CONFLICT_GRACE_S,
        cache_size: int = RedisRegistrationStore.DEFAULT_CACHE_SIZE,
    ) -> None:
        super().__init__(
            RedisRegistrationStore(
                redis, node_id=node_id, conflict_grace_s=conflict_grace_s, cache_size=cache_size
            ),
            RedisObservationStore(redis, node_id=node_id, cache_size=cache_size),
            RedisSecurityStore(redis, security, node_id=node_id),
            RedisDocumentStore(redis),
        )
        self.registrations.on_taken = self.observations.take
        self._redis = redis
        self.node_id = node_id
        self._feed = Subscription(
            redis,
            [redis.channel],
            self._on_change,
            name="change",
            on_lost=self._forget_view,
            on_back=self._reload_share,
        )
        self._marks: dict[str, asyncio.Future[None]] = {}
        #: Set while the change feed is subscribed (cleared when it drops).
        self.feed_up = self._feed.up

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        prefix: str = "lwm2m:",
        node_id: str | None = None,
        conflict_grace_s: float = DEFAULT_CONFLICT_GRACE_S,
        cache_size: int = RedisRegistrationStore.DEFAULT_CACHE_SIZE,
        max_connections: int = MAX_CONNECTIONS,
    ) -> RedisStores:
        """Subscribe to the changes, then read this node's share back (no change falls
        in between): its own registrations and the security entries, not the fleet.

        A missing redis-py or a bad URL is a :class:`StoreError`.
        """
        try:  # redis-py is an optional dependency (pip install 'lwm2m[redis]')
            import redis.asyncio as aioredis
            from redis.exceptions import RedisError
        except ImportError:
            raise StoreError("the Redis store needs redis-py: pip install 'lwm2m[redis]'") from None
        try:
            # A storm keeps more commands in flight than a node should open connections:
            # beyond the bound a command waits for a free connection instead of failing
            # ("Too many connections" answered Registers 5.00 under 64 requests in flight).
            pool = aioredis.BlockingConnectionPool.from_url(
                url, max_connections=max_connections, timeout=POOL_WAIT_S
            )
            client = aioredis.Redis.from_pool(pool)
        except ValueError as exc:
            raise StoreError(f"bad Redis URL {url!r}: {exc}") from None
        redis = RedisConnection(client, prefix, RedisError)
        stores = cls(
            redis,
            {},
            node_id=node_id or default_node_id(),
            conflict_grace_s=conflict_grace_s,
            cache_size=cache_size,
        )
        try:
            await stores._feed.start()
            sec, regs, tagged, psk, obs_indexed = await redis.run(
                ("HGETALL", redis.key("security")),
                ("HLEN", redis.key("registrations")),
                ("HLEN", redis.key("reg:tags")),
                ("HLEN", redis.key("sec:psk")),
                ("EXISTS", redis.key("obs:indexed")),
            )
            stores.security.reload(sec)
            if int(regs) != int(tagged):
                await stores.registrations.index_missing()
            if sec and not int(psk):
                await stores.security.index_missing()
            if not int(obs_indexed):  # a new prefix is marked before its first observation
                await stores.observations.index_missing()
            await stores.registrations.load_owned()
            await stores.observations.load_for(stores.registrations.owned_ids())
        except (StoreError, RecordError):
            await stores._feed.close()
            await client.aclose()
            raise
        return stores

    def _on_change(self, channel: str, data: bytes) -> Awaitable[None] | None:
        """Apply another node's change to this node's memory, in the order Redis ran them.

        A registration's change (nearly all of them: one per Register, Update,
        De-register of the cluster) is applied here and now; the others read
        Redis, and the feed waits for them before the next message.
        """
        try:
            kind, _, rest = data.decode().partition(" ")
        except UnicodeDecodeError as exc:
            logger.error("Redis change %r not applied: %s", data, exc)
            return None
        key, _, writer = rest.partition(" ")
        if kind == "r":
            writer, _, number = writer.partition(" ")
            self.registrations.refresh(
                key, writer or None, int(number) if number.isdigit() else None
            )
            return None
        return self._apply(kind, key, writer or None, data)

    def _forget_view(self) -> None:
        """The feed dropped: changes may be missed from now on, so memory holds nothing stale."""
        self.registrations.clear_view()
        self.observations.clear_view()

    async def _reload_share(self) -> None:
        """The feed is back: this node's share is read again (changes missed meanwhile
        cannot leave a stale entry behind)."""
        self._forget_view()
        try:
            (sec,) = await self._redis.run(("HGETALL", self._redis.key("security")))
            self.security.reload(sec)
            owned = await self.registrations.load_owned()
            await self.observations.load_for(self.registrations.owned_ids())
        except RecordError as exc:
            raise StoreError(f"reading this node's share again: {exc}") from None
        logger.info("Redis: %d own registrations read again after a feed loss", owned)

    async def _apply(self, kind: str, key: str, writer: str | None, data: bytes) -> None:
        try:
            if kind == "o":
                await self.observations.refresh(key, writer)
            elif kind == "s":
                await self.security.refresh(key, writer)
            elif kind == "m":
                mark = self._marks.pop(key, None)
                if mark is not None and not mark.done():
                    mark.set_result(None)
            else:
                logger.warning("unknown Redis change message kind %r ignored", kind)
        except (StoreError, RecordError) as exc:
            logger.error("Redis change %r not applied: %s", data, exc)

    async def sync(self, timeout: float = 5.0) -> None:
        """Return once every change published before this call is in this node's view.

        Redis delivers a channel's messages in the order it ran the PUBLISHes, so
        our own mark coming back means everything before it was applied.
        """
        token = secrets.token_hex(8)
        mark: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._marks[token] = mark
        try:
            await self._redis.run(("PUBLISH", self._redis.channel, "m " + token))
            await asyncio.wait_for(mark, timeout)
        except TimeoutError:
            raise StoreError("Redis change feed did not answer") from None
        finally:
            self._marks.pop(token, None)

    @property
    def redis(self) -> RedisConnection:
        """The shared connection, for the cluster pieces that live above the stores."""
        return self._redis

    async def close(self) -> None:
        """Stop following the changes and close the connection; Redis keeps the data."""
        await self._feed.close()
        await self._redis.close()

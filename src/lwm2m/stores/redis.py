"""Redis stores (``--store redis://host:port/db``): shared by every server node on one prefix.

Layout (all under a key prefix, ``lwm2m:`` by default): hashes
``registrations`` (id -> JSON), ``observations`` (id -> JSON), ``security``
(endpoint -> JSON), ``doc:<namespace>`` (key -> JSON), lists ``log:<namespace>``,
and the registration indexes of :mod:`lwm2m.stores.redis_scripts`
(``reg:endpoint``, ``reg:client``, ``reg:deadline``, ``reg:owner``). Durability
is Redis's: run it with ``appendonly yes`` and ``appendfsync always`` for the
SQLite store's guarantee.

Several ``lwm2m server`` processes (nodes) may share a prefix. Redis is the
truth: Register, Update and De-register are Lua scripts, so the 4.09 rule and
"one node removes an expired registration" hold across nodes. Each mutation
publishes its key on the ``changes`` channel; every node applies those messages
to its view, because the store interface reads synchronously (notifications
and the REST layer read on hot paths). That view still holds the whole fleet:
see docs/cluster.md for what remains.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from typing import Any

from lwm2m.security.credentials import SecurityEntry
from lwm2m.stores.base import (
    JsonDoc,
    RegistrationConflict,
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
from lwm2m.stores.records import (
    ObservationRecord,
    RecordError,
    Registration,
    security_entry_from_dict,
)
from lwm2m.stores.redis_scripts import REGISTER, REMOVE, UPDATE, client_key

logger = logging.getLogger(__name__)

#: The registrar's default grace after a lifetime (``server.registrar``), during which
#: the name stays held against other clients.
DEFAULT_CONFLICT_GRACE_S = 15.0


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

    def key(self, name: str) -> str:
        return self.prefix + name

    async def run(self, *commands: tuple[str, ...]) -> list[Any]:
        try:
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


class RedisRegistrationStore(MemoryRegistrationStore):
    """Registrations in Redis, changed only by the scripts of :mod:`redis_scripts`.

    The inherited in-memory indexes are this node's view, kept in step by the
    ``changes`` channel; a write updates it at once, so the node that answered a
    Register reads its own write.
    """

    def __init__(
        self, redis: RedisConnection, docs: dict[Any, Any], *, node_id: str, conflict_grace_s: float
    ) -> None:
        super().__init__()
        self._r = redis
        self.node_id = node_id
        self.conflict_grace_s = conflict_grace_s
        #: id -> the deadline this node saw expired: its removal is refused if it moved.
        self._claims: dict[str, float] = {}
        client = redis.client
        self._register = client.register_script(REGISTER)
        self._update = client.register_script(UPDATE)
        self._remove = client.register_script(REMOVE)
        load_records(docs.values(), Registration.from_dict, self._load, kind="registration")

    def _keys(self, *names: str) -> list[str]:
        return [self._r.key(n) for n in names] + [self._r.channel]

    def expired(self, now: float, grace_s: float = 0.0) -> list[Registration]:
        """As the memory store's, remembering each deadline for :meth:`remove`'s guard."""
        result = super().expired(now, grace_s)
        for reg in result:
            self._claims[reg.id] = reg.expires_at
        return result

    async def add(self, registration: Registration) -> tuple[Registration | None, Registration]:
        """One script: refuse a name live under another client, else replace it.

        Raises :class:`RegistrationConflict` (the registrar answers 4.09), whichever
        node holds the other registration.
        """
        reply = await self._r.script(
            self._register,
            self._keys("registrations", "reg:endpoint", "reg:client", "reg:deadline", "reg:owner"),
            [
                registration.id,
                registration.endpoint,
                registration_text(registration),
                client_key(registration),
                repr(registration.expires_at),
                repr(registration.registered_at),
                repr(self.conflict_grace_s),
                self.node_id,
            ],
        )
        if _text(reply[0]) == "conflict":
            raise RegistrationConflict(
                f"endpoint name {registration.endpoint!r} is registered by another client"
            )
        old = _registration(reply[1]) if len(reply) > 1 else None
        if old is not None:
            self._forget(old.id)
        self._load(registration)
        return old, registration

    async def update(self, registration: Registration) -> tuple[Registration, Registration]:
        """One script; this node becomes the owner (it received the Update)."""
        reply = await self._r.script(
            self._update,
            self._keys("registrations", "reg:deadline", "reg:owner"),
            [
                registration.id,
                registration_text(registration),
                repr(registration.expires_at),
                self.node_id,
            ],
        )
        old = _registration(reply)
        if old is None:
            self._forget(registration.id)
            raise UnknownRegistration(registration.id)
        self._forget(registration.id)
        self._load(registration)
        return old, registration

    async def remove(self, registration_id: str) -> Registration | None:
        """One script, so of two nodes removing one registration only one gets it back.

        After :meth:`expired` the removal holds only if the deadline did not move
        (an Update on another node wins over this node's stale view).
        """
        limit = self._claims.pop(registration_id, None)
        reply = await self._r.script(
            self._remove,
            self._keys("registrations", "reg:endpoint", "reg:client", "reg:deadline", "reg:owner"),
            [registration_id, "+inf" if limit is None else repr(limit)],
        )
        removed = _registration(reply)
        if removed is not None or limit is None:
            self._forget(registration_id)
        return removed

    async def owner(self, registration_id: str) -> str | None:
        """The node that received the registration's last Register or Update."""
        (raw,) = await self._r.run(("HGET", self._r.key("reg:owner"), registration_id))
        return None if raw is None else _text(raw)

    async def refresh(self, registration_id: str) -> None:
        """Re-read one registration from Redis into this node's view (a change message)."""
        (raw,) = await self._r.run(("HGET", self._r.key("registrations"), registration_id))
        self._forget(registration_id)
        reg = _registration(raw)
        if reg is not None:
            self._load(reg)

    def _forget(self, registration_id: str) -> None:
        current = self._by_id.get(registration_id)
        if current is not None:
            self._drop(current)

    async def index_missing(self) -> None:
        """Build the indexes of registrations written before they existed (older prefixes)."""
        commands: list[tuple[str, ...]] = []
        for reg in self.list():
            commands += [
                ("HSETNX", self._r.key("reg:endpoint"), reg.endpoint, reg.id),
                ("HSETNX", self._r.key("reg:client"), reg.id, client_key(reg)),
                ("ZADD", self._r.key("reg:deadline"), "NX", repr(reg.expires_at), reg.id),
            ]
        if commands:
            await self._r.run(*commands)


class RedisObservationStore(MemoryObservationStore):
    """Observations in one Redis hash (id -> JSON); each write announces its id."""

    def __init__(self, redis: RedisConnection, docs: dict[Any, Any]) -> None:
        super().__init__()
        self._r = redis
        load_records(docs.values(), ObservationRecord.from_dict, self._put, kind="observation")

    async def _persist_add(self, record: ObservationRecord) -> None:
        await self._r.run(
            ("HSET", self._r.key("observations"), record.id, observation_text(record)),
            ("PUBLISH", self._r.channel, "o " + record.id),
        )

    async def _persist_remove(self, records: list[ObservationRecord]) -> None:
        await self._r.run(
            ("HDEL", self._r.key("observations"), *(r.id for r in records)),
            *(("PUBLISH", self._r.channel, "o " + r.id) for r in records),
        )

    async def refresh(self, observation_id: str) -> None:
        """Re-read one observation from Redis into this node's view."""
        (raw,) = await self._r.run(("HGET", self._r.key("observations"), observation_id))
        self._take(observation_id)
        if raw is not None:
            self._put(ObservationRecord.from_dict(load_doc(raw)))


class RedisSecurityStore(MemorySecurityStore):
    """Security entries in one Redis hash (endpoint -> JSON); each write announces its endpoint."""

    def __init__(self, redis: RedisConnection, docs: dict[Any, Any]) -> None:
        super().__init__()
        self._r = redis
        load_records(docs.values(), security_entry_from_dict, self._set, kind="security entry")

    async def _persist_put(self, entry: SecurityEntry) -> None:
        await self._r.run(
            ("HSET", self._r.key("security"), entry.endpoint, security_text(entry)),
            ("PUBLISH", self._r.channel, "s " + entry.endpoint),
        )

    async def _persist_remove(self, endpoint: str) -> None:
        await self._r.run(
            ("HDEL", self._r.key("security"), endpoint),
            ("PUBLISH", self._r.channel, "s " + endpoint),
        )

    async def refresh(self, endpoint: str) -> None:
        """Re-read one entry from Redis into this node's view."""
        (raw,) = await self._r.run(("HGET", self._r.key("security"), endpoint))
        old = self._by_endpoint.pop(endpoint, None)
        if old is not None and old.psk is not None:
            self._by_identity.pop(old.psk.identity, None)
        if raw is not None:
            self._set(security_entry_from_dict(load_doc(raw)))


class RedisDocumentStore:
    """Documents in one hash per namespace, logs in one list each; not cached in memory.

    They are small and rarely read (bootstrap configurations, session history),
    so a round trip per read costs less than a second copy to keep in step.
    """

    def __init__(self, redis: RedisConnection) -> None:
        self._r = redis

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
        items = {_text(k): load_doc(v) for k, v in raw.items()}
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


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _registration(raw: Any) -> Registration | None:
    return None if raw is None else Registration.from_dict(load_doc(raw))


class RedisStores(
    StoreBundle[
        RedisRegistrationStore, RedisObservationStore, RedisSecurityStore, RedisDocumentStore
    ]
):
    """The four stores over one Redis connection (``--store redis://...``), one node's share."""

    def __init__(
        self,
        redis: RedisConnection,
        loaded: dict[str, dict[Any, Any]],
        *,
        node_id: str,
        conflict_grace_s: float = DEFAULT_CONFLICT_GRACE_S,
    ) -> None:
        super().__init__(
            RedisRegistrationStore(
                redis,
                loaded["registrations"],
                node_id=node_id,
                conflict_grace_s=conflict_grace_s,
            ),
            RedisObservationStore(redis, loaded["observations"]),
            RedisSecurityStore(redis, loaded["security"]),
            RedisDocumentStore(redis),
        )
        self._redis = redis
        self.node_id = node_id
        self._pubsub: Any = None
        self._listener: asyncio.Task[None] | None = None
        self._marks: dict[str, asyncio.Future[None]] = {}
        self._closing = False

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        prefix: str = "lwm2m:",
        node_id: str | None = None,
        conflict_grace_s: float = DEFAULT_CONFLICT_GRACE_S,
    ) -> RedisStores:
        """Subscribe to the changes, then read the stores back (no change falls in between).

        A missing redis-py or a bad URL is a :class:`StoreError`.
        """
        try:  # redis-py is an optional dependency (pip install 'lwm2m[redis]')
            import redis.asyncio as aioredis
            from redis.exceptions import RedisError
        except ImportError:
            raise StoreError("the Redis store needs redis-py: pip install 'lwm2m[redis]'") from None
        try:
            client = aioredis.from_url(url)
        except ValueError as exc:
            raise StoreError(f"bad Redis URL {url!r}: {exc}") from None
        redis = RedisConnection(client, prefix, RedisError)
        pubsub = client.pubsub()
        try:
            try:
                await pubsub.subscribe(redis.channel)
            except (OSError, RedisError) as exc:
                raise StoreError(f"Redis: {exc}") from None
            regs, obs, sec, indexed = await redis.run(
                ("HGETALL", redis.key("registrations")),
                ("HGETALL", redis.key("observations")),
                ("HGETALL", redis.key("security")),
                ("HLEN", redis.key("reg:endpoint")),
            )
            stores = cls(
                redis,
                {"registrations": regs, "observations": obs, "security": sec},
                node_id=node_id or default_node_id(),
                conflict_grace_s=conflict_grace_s,
            )
            if regs and not indexed:
                await stores.registrations.index_missing()
        except (StoreError, RecordError):
            await pubsub.aclose()
            await client.aclose()
            raise
        stores._pubsub = pubsub
        stores._listener = asyncio.create_task(stores._listen(), name="redis-changes")
        return stores

    async def _listen(self) -> None:
        """Apply other nodes' changes to this node's view, in the order Redis ran them."""
        assert self._pubsub is not None
        try:
            async for message in self._pubsub.listen():
                if message.get("type") != "message":
                    continue
                kind, _, key = _text(message["data"]).partition(" ")
                try:
                    await self._apply(kind, key)
                except (StoreError, RecordError) as exc:
                    logger.error("Redis change %s %r not applied: %s", kind, key, exc)
        except (OSError, self._redis.error) as exc:
            if self._closing:
                return
            logger.error("Redis change feed lost; this node's view is now stale: %s", exc)

    async def _apply(self, kind: str, key: str) -> None:
        if kind == "r":
            await self.registrations.refresh(key)
        elif kind == "o":
            await self.observations.refresh(key)
        elif kind == "s":
            await self.security.refresh(key)
        elif kind == "m":
            mark = self._marks.pop(key, None)
            if mark is not None and not mark.done():
                mark.set_result(None)

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
        # Closing the subscription ends the listener's read: redis-py's listen() can
        # absorb a plain cancel while it reads, so the cancel is only the fallback.
        self._closing = True
        if self._pubsub is not None:
            with contextlib.suppress(OSError, self._redis.error):
                await self._pubsub.aclose()
        if self._listener is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._listener), 1.0)
            if not self._listener.done():
                self._listener.cancel()
        await self._redis.client.aclose()

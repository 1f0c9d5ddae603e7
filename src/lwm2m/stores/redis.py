"""Redis stores (``--store redis://host:port/db``): the in-memory stores plus write-through.

Layout (all under a key prefix, ``lwm2m:`` by default): hashes
``registrations`` (id -> JSON), ``observations`` (id -> JSON), ``security``
(endpoint -> JSON), ``doc:<namespace>`` (key -> JSON) and lists
``log:<namespace>``. Each mutation is one MULTI/EXEC transaction awaited
before the coroutine returns. Durability is Redis's: run it with
``appendonly yes`` and ``appendfsync always`` for the SQLite store's guarantee.

The server keeps the working set in memory (loaded at open), so one LwM2M
server process owns a prefix; several servers need several prefixes.
"""

from __future__ import annotations

from typing import Any

from lwm2m.security.credentials import SecurityEntry
from lwm2m.stores.base import JsonDoc, StoreError, check_json_doc
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
from lwm2m.stores.records import ObservationRecord, Registration, security_entry_from_dict


class _Redis:
    def __init__(self, client: Any, prefix: str, error: type[Exception]) -> None:
        self.client = client
        self.prefix = prefix
        self.error = error

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


class RedisRegistrationStore(MemoryRegistrationStore):
    """Registrations in one Redis hash (id -> JSON), read whole at open.

    The replaced registration's entry is removed in the same transaction as the
    new one is written, so a crash never leaves two for one endpoint.
    """

    def __init__(self, redis: _Redis, docs: dict[Any, Any]) -> None:
        super().__init__()
        self._r = redis
        load_records(docs.values(), Registration.from_dict, self._load, kind="registration")

    async def _persist_add(self, reg: Registration, replaced: Registration | None) -> None:
        key = self._r.key("registrations")
        commands: list[tuple[str, ...]] = []
        if replaced is not None:
            commands.append(("HDEL", key, replaced.id))
        commands.append(("HSET", key, reg.id, registration_text(reg)))
        await self._r.run(*commands)

    async def _persist_update(self, reg: Registration) -> None:
        await self._r.run(("HSET", self._r.key("registrations"), reg.id, registration_text(reg)))

    async def _persist_remove(self, reg: Registration) -> None:
        await self._r.run(("HDEL", self._r.key("registrations"), reg.id))


class RedisObservationStore(MemoryObservationStore):
    """Observations in one Redis hash (id -> JSON), read whole at open."""

    def __init__(self, redis: _Redis, docs: dict[Any, Any]) -> None:
        super().__init__()
        self._r = redis
        load_records(docs.values(), ObservationRecord.from_dict, self._put, kind="observation")

    async def _persist_add(self, record: ObservationRecord) -> None:
        await self._r.run(
            ("HSET", self._r.key("observations"), record.id, observation_text(record))
        )

    async def _persist_remove(self, records: list[ObservationRecord]) -> None:
        await self._r.run(("HDEL", self._r.key("observations"), *(r.id for r in records)))


class RedisSecurityStore(MemorySecurityStore):
    """Security entries in one Redis hash (endpoint -> JSON), read whole at open."""

    def __init__(self, redis: _Redis, docs: dict[Any, Any]) -> None:
        super().__init__()
        self._r = redis
        load_records(docs.values(), security_entry_from_dict, self._set, kind="security entry")

    async def _persist_put(self, entry: SecurityEntry) -> None:
        await self._r.run(("HSET", self._r.key("security"), entry.endpoint, security_text(entry)))

    async def _persist_remove(self, endpoint: str) -> None:
        await self._r.run(("HDEL", self._r.key("security"), endpoint))


class RedisDocumentStore:
    """Documents in one hash per namespace, logs in one list each; not cached in memory.

    They are small and rarely read (bootstrap configurations, session history),
    so a round trip per read costs less than a second copy to keep in step.
    """

    def __init__(self, redis: _Redis) -> None:
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


class RedisStores(
    StoreBundle[
        RedisRegistrationStore, RedisObservationStore, RedisSecurityStore, RedisDocumentStore
    ]
):
    """The four stores over one Redis connection (``--store redis://...``)."""

    def __init__(self, redis: _Redis, loaded: dict[str, dict[Any, Any]]) -> None:
        super().__init__(
            RedisRegistrationStore(redis, loaded["registrations"]),
            RedisObservationStore(redis, loaded["observations"]),
            RedisSecurityStore(redis, loaded["security"]),
            RedisDocumentStore(redis),
        )
        self._redis = redis

    @classmethod
    async def open(cls, url: str, *, prefix: str = "lwm2m:") -> RedisStores:
        """Connect and read the stores back; a missing redis-py or a bad URL is a :class:`StoreError`."""
        try:  # redis-py is an optional dependency (pip install 'lwm2m[redis]')
            import redis.asyncio as aioredis
            from redis.exceptions import RedisError
        except ImportError:
            raise StoreError("the Redis store needs redis-py: pip install 'lwm2m[redis]'") from None
        try:
            client = aioredis.from_url(url)
        except ValueError as exc:
            raise StoreError(f"bad Redis URL {url!r}: {exc}") from None
        redis = _Redis(client, prefix, RedisError)
        try:
            regs, obs, sec = await redis.run(
                ("HGETALL", redis.key("registrations")),
                ("HGETALL", redis.key("observations")),
                ("HGETALL", redis.key("security")),
            )
        except StoreError:
            await client.aclose()
            raise
        return cls(redis, {"registrations": regs, "observations": obs, "security": sec})

    async def close(self) -> None:
        """Close the connection; Redis keeps the data."""
        await self._redis.client.aclose()

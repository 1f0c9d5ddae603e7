"""The cluster's nodes: each node's heartbeat in Redis, and the list every node reads.

Rules (the contract the cluster pieces share, docs/cluster.md):

1. Every ``interval_s`` a node SETs ``<prefix>node:<id>`` to its JSON state
   (``id``, ``http``, ``coap``, ``started``, ``heartbeat``, ``owned``) with a TTL of
   three intervals, SADDs its id to ``<prefix>nodes`` and keeps the same JSON in the
   hash ``<prefix>nodes:last`` (no TTL: what a gone node last said). A node is
   alive while its key exists; a node that stops beating is gone once it expires.
2. A clean stop DELetes the key at once (and leaves its last state).
3. A node gone for ``prune_after_s`` (1 h) is removed from the set and the hash by
   whichever alive node notices first, so the list does not grow forever.
4. ``owned`` is ``SCARD reg:owned:<id>``, read at each beat: the set the store's
   Register/Update/remove scripts keep exact (the registrations whose last Register or
   Update this node received), so counting costs one O(1) command, not a scan.

Without a shared store (SQLite, memory) there is no Redis: nothing is written, and
:meth:`ClusterNodes.list` answers this node alone, so its readers work the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lwm2m.coap.tasks import cancel_and_wait
from lwm2m.protocol.log_limit import LogLimiter
from lwm2m.stores.base import StoreError
from lwm2m.stores.redis import RedisConnection, reply_text

if TYPE_CHECKING:
    from lwm2m.server.server import LwM2MServer

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 1.0
#: A key lives this many intervals: two missed beats are forgiven.
TTL_INTERVALS = 3
DEFAULT_PRUNE_AFTER_S = 3600.0
#: At most this often, an alive node looks for nodes to forget.
PRUNE_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class NodeState:
    """One node as the registry knows it; None: that node did not say (or said nonsense)."""

    id: str
    alive: bool
    http: str | None
    coap: str | None
    started: float | None
    #: Wall-clock time of its last heartbeat.
    heartbeat: float | None
    owned: int | None


class ClusterNodes:
    """This node's heartbeat and the view of all nodes; ``start()``, then ``stop()``."""

    def __init__(
        self,
        node_id: str,
        redis: RedisConnection | None = None,
        *,
        http: Callable[[], str | None] = lambda: None,
        coap: Callable[[], str | None] = lambda: None,
        interval_s: float = DEFAULT_INTERVAL_S,
        prune_after_s: float = DEFAULT_PRUNE_AFTER_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if interval_s <= 0:
            raise ValueError("the heartbeat interval must be positive")
        self.node_id = node_id
        self.redis = redis
        self.interval_s = interval_s
        self.prune_after_s = prune_after_s
        self._http = http
        self._coap = coap
        self._clock = clock
        self.started = clock()
        self.last_heartbeat: float | None = None
        #: Registrations this node owned at its last beat (None: not counted yet).
        self.owned: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._log = LogLimiter()

    @classmethod
    def of_server(
        cls,
        server: LwM2MServer,
        node_id: str,
        redis: RedisConnection | None = None,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        prune_after_s: float = DEFAULT_PRUNE_AFTER_S,
    ) -> ClusterNodes:
        """The registry of ``server``'s node, its addresses read at each beat (the HTTP
        port is known only once the web server listens)."""

        def http() -> str | None:
            address = server.http_address
            return None if address is None else f"http://{_host_port(address)}"

        def coap() -> str | None:
            try:
                return _host_port(server.coap_address)
            except RuntimeError:  # not started
                return None

        return cls(
            node_id,
            redis,
            http=http,
            coap=coap,
            interval_s=interval_s,
            prune_after_s=prune_after_s,
        )

    @property
    def shared(self) -> bool:
        """True when other nodes may share the store (Redis)."""
        return self.redis is not None

    def key(self, node_id: str) -> str:
        """The liveness key of a node."""
        assert self.redis is not None
        return self.redis.key(f"node:{node_id}")

    async def start(self) -> None:
        """Beat once, then every interval (nothing without Redis)."""
        if self.redis is None or self._task is not None:
            return
        try:
            await self.heartbeat()
        except StoreError as exc:  # Redis away: the loop tries again every interval
            logger.error("cluster heartbeat: %s", exc)
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._beat_loop(), name="cluster heartbeat")

    def beat_soon(self) -> None:
        """Beat now rather than at the next interval: what the node says changed (its
        HTTP address became known)."""
        if self._wake is not None:
            self._wake.set()

    async def stop(self, *, clean: bool = True) -> None:
        """Stop beating; ``clean`` DELetes the key now (else it expires: a crash, in tests)."""
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None
        if clean and self.redis is not None:
            state = self._state(self._clock())
            try:
                await self.redis.run(
                    ("DEL", self.key(self.node_id)),
                    ("HSET", self.redis.key("nodes:last"), self.node_id, state),
                )
            except StoreError as exc:
                logger.warning("node key not deleted (it expires by itself): %s", exc)

    async def heartbeat(self) -> None:
        """One beat: count what this node owns, then the key with its TTL, the set, the last state."""
        assert self.redis is not None
        (owned,) = await self.redis.run(("SCARD", self.redis.key(f"reg:owned:{self.node_id}")))
        self.owned = int(owned)
        now = self._clock()
        state = self._state(now)
        ttl_ms = max(1, round(self.interval_s * TTL_INTERVALS * 1000))
        await self.redis.run(
            ("SET", self.key(self.node_id), state, "PX", str(ttl_ms)),
            ("SADD", self.redis.key("nodes"), self.node_id),
            ("HSET", self.redis.key("nodes:last"), self.node_id, state),
        )
        self.last_heartbeat = now

    async def list(self) -> list[NodeState]:
        """Every node of ``<prefix>nodes``, alive or gone, sorted by id; this node alone
        without Redis."""
        if self.redis is None:
            return [self.local_state()]
        (members,) = await self.redis.run(("SMEMBERS", self.redis.key("nodes")))
        ids = sorted({reply_text(m) for m in members} | {self.node_id})
        live, last = await self.redis.run(
            ("MGET", *(self.key(i) for i in ids)), ("HMGET", self.redis.key("nodes:last"), *ids)
        )
        result = []
        for node_id, alive_doc, last_doc in zip(ids, live, last, strict=True):
            if node_id == self.node_id and alive_doc is None and self._task is None:
                result.append(self.local_state(alive=False))
                continue
            result.append(self._parse(node_id, alive_doc is not None, alive_doc or last_doc))
        return result

    async def is_alive(self, node_id: str) -> bool:
        """Whether that node's key exists (its last beat is less than 3 intervals old)."""
        if self.redis is None:
            return node_id == self.node_id
        (exists,) = await self.redis.run(("EXISTS", self.key(node_id)))
        return bool(exists)

    def local_state(self, *, alive: bool = True) -> NodeState:
        """This node as it would describe itself now."""
        return NodeState(
            self.node_id,
            alive,
            self._http(),
            self._coap(),
            self.started,
            self.last_heartbeat if self.redis is not None else self._clock(),
            self.owned,
        )

    async def prune(self) -> int:
        """Forget nodes gone for longer than ``prune_after_s``; how many were."""
        assert self.redis is not None
        now = self._clock()
        removed = 0
        for state in await self.list():
            if state.alive or state.id == self.node_id:
                continue
            if state.heartbeat is not None and now - state.heartbeat < self.prune_after_s:
                continue
            await self.redis.run(
                ("SREM", self.redis.key("nodes"), state.id),
                ("HDEL", self.redis.key("nodes:last"), state.id),
            )
            logger.info("cluster node %s forgotten (gone since %s)", state.id, state.heartbeat)
            removed += 1
        return removed

    # Private

    def _state(self, now: float) -> str:
        return json.dumps(
            {
                "id": self.node_id,
                "http": self._http(),
                "coap": self._coap(),
                "started": self.started,
                "heartbeat": now,
                "owned": self.owned,
            },
            separators=(",", ":"),
        )

    def _parse(self, node_id: str, alive: bool, raw: Any) -> NodeState:
        """A node's JSON as another node wrote it: wrong fields become None, never a failure."""
        doc: Any = None
        if raw is not None:
            try:
                doc = json.loads(raw)
            except ValueError:
                doc = None
            if not isinstance(doc, dict):
                self._warn("bad node state", "node %s: its state is not a JSON object", node_id)
                doc = None
        doc = doc or {}
        return NodeState(
            node_id,
            alive,
            _opt(doc.get("http"), str),
            _opt(doc.get("coap"), str),
            _number(doc.get("started")),
            _number(doc.get("heartbeat")),
            _count(doc.get("owned")),
        )

    async def _beat_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + self.interval_s
        prune_at = loop.time() + min(PRUNE_EVERY_S, self.prune_after_s)
        wake = self._wake
        assert wake is not None
        while True:
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: see campaigns._drive
                async with asyncio.timeout(max(0.0, next_beat - loop.time())):
                    await wake.wait()
            wake.clear()
            next_beat += self.interval_s
            if next_beat < loop.time():  # the loop was held up: no burst of beats after it
                next_beat = loop.time() + self.interval_s
            try:
                await self.heartbeat()
                if loop.time() >= prune_at:
                    prune_at = loop.time() + min(PRUNE_EVERY_S, self.prune_after_s)
                    await self.prune()
            except StoreError as exc:
                self._warn("heartbeat", "cluster heartbeat failed: %s", exc)

    def _warn(self, key: str, text: str, *args: object) -> None:
        now = time.monotonic()
        if self._log.allow(key, now):
            logger.warning(text, *args)
        counts = self._log.take_summary(now)
        if counts:
            logger.warning("cluster nodes: %s more lines not logged", sum(counts.values()))


def _host_port(address: tuple[Any, ...]) -> str:
    host, port = str(address[0]), int(address[1])
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _opt(value: Any, kind: type) -> Any:
    return value if isinstance(value, kind) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _count(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value

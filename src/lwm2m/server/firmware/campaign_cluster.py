"""What campaign managers of several nodes on one Redis share beyond the records (issue 12).

The campaign and device records are documents in the shared store already
(:mod:`~lwm2m.server.firmware.campaign_records`). This module adds what lets
each node drive only the devices it owns, and lets every node see every change:

1. **Changes.** A node that stores a campaign or device record PUBLISHes
   ``{"from": node, "campaign": id, "device": endpoint | null}`` on
   ``<prefix>campaigns``; the other nodes re-read that record from the store.
   A malformed message is logged (rate-limited) and dropped.
2. **Leases.** A device is driven by at most one node at a time: the one that
   holds ``<prefix>campaign:lease:<campaign>:<endpoint>`` (SET NX with an
   expiry, refreshed while held, deleted by its holder only). A node takes a
   lease only for a device it owns (``reg:owner``), or, to let a device whose
   owner is gone wait and time out, for a moment in which it sends nothing.
3. **End.** Of the nodes that see every device of a campaign at its end, the one
   that SETs ``<prefix>campaign:end:<campaign>`` first writes the end.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from lwm2m.protocol.log_limit import LogLimiter
from lwm2m.server.cluster_owners import ClusterOwners
from lwm2m.stores.base import StoreError
from lwm2m.stores.redis import RedisConnection
from lwm2m.stores.redis_subscription import Subscription

logger = logging.getLogger(__name__)

#: A lease outlives its holder by at most this long (the holder refreshes it at a third).
DEFAULT_LEASE_S = 15.0
#: How long the end marker of a campaign is kept (it only has to outlive the race).
END_MARK_S = 86_400
MAX_MESSAGE = 4096
#: Devices looked up per round trip.
BATCH = 1000

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_REFRESH = """
local lost = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
  else
    table.insert(lost, i)
  end
end
return lost
"""


@dataclass(frozen=True, slots=True)
class Change:
    """A record another node stored: the campaign's (``device`` None) or one device's."""

    origin: str
    campaign: str
    device: str | None


class CampaignCluster:
    """One node's share of the campaigns of a cluster: changes, leases, owners."""

    def __init__(
        self, redis: RedisConnection, node_id: str, *, lease_s: float = DEFAULT_LEASE_S
    ) -> None:
        self.redis = redis
        self.node_id = node_id
        self.lease_s = lease_s
        self.channel = redis.prefix + "campaigns"
        self.owners = ClusterOwners(redis)
        self._release = redis.client.register_script(_RELEASE)
        self._refresh = redis.client.register_script(_REFRESH)
        self._subscription: Subscription | None = None
        self._on_change: Callable[[Change], Awaitable[None]] | None = None
        self._limit = LogLimiter()
        #: Malformed change messages dropped (rule 1).
        self.malformed = 0

    # ================================================================ lifecycle
    async def start(
        self,
        on_change: Callable[[Change], Awaitable[None]],
        on_back: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Subscribe before the caller loads the records, so no change falls in between.

        ``on_back`` runs when the subscription comes back after Redis restarted:
        changes published meanwhile are lost, so the caller reads the records again.
        """
        self._on_change = on_change
        self._subscription = Subscription(
            self.redis, [self.channel], self._on_message, name="campaign change", on_back=on_back
        )
        await self._subscription.start()

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.close()

    # ================================================================== changes
    async def published(self, campaign: str, device: str | None = None) -> None:
        """Tell the other nodes a record changed (rule 1)."""
        message = {"from": self.node_id, "campaign": campaign, "device": device}
        await self.redis.run(("PUBLISH", self.channel, json.dumps(message)))

    # =================================================================== owners
    async def owner(self, endpoint: str) -> str | None:
        return await self.owners.owner_of(endpoint)

    async def owners_of(self, endpoints: list[str]) -> dict[str, str | None]:
        """The owner of each device (None: unregistered), a few round trips for many devices."""
        r = self.redis
        found: dict[str, str | None] = {}
        for start in range(0, len(endpoints), BATCH):
            batch = endpoints[start : start + BATCH]
            (ids,) = await r.run(("HMGET", r.key("reg:endpoint"), *batch))
            present = [(ep, _text(i)) for ep, i in zip(batch, ids, strict=True) if i is not None]
            if present:
                (nodes,) = await r.run(("HMGET", r.key("reg:owner"), *(i for _, i in present)))
                for (ep, _), node in zip(present, nodes, strict=True):
                    found[ep] = None if node is None else _text(node)
        return {ep: found.get(ep) for ep in endpoints}

    async def alive(self, nodes: Iterable[str]) -> set[str]:
        """The nodes among ``nodes`` whose liveness key exists (this node counts as alive)."""
        wanted = sorted(set(nodes) - {self.node_id})
        if not wanted:
            return {self.node_id}
        r = self.redis
        found = await r.run(*(("EXISTS", r.key(f"node:{n}")) for n in wanted))
        return {n for n, exists in zip(wanted, found, strict=True) if exists} | {self.node_id}

    async def reachable_here(self, endpoint: str) -> bool:
        """Whether this node owns the device (only the owner can reach it)."""
        return await self.owner(endpoint) == self.node_id

    # =================================================================== leases
    def lease_key(self, campaign: str, endpoint: str) -> str:
        return self.redis.key(f"campaign:lease:{campaign}:{endpoint}")

    async def claim(self, campaign: str, endpoint: str) -> bool:
        ms = str(int(self.lease_s * 1000))
        (done,) = await self.redis.run(
            ("SET", self.lease_key(campaign, endpoint), self.node_id, "NX", "PX", ms)
        )
        return bool(done)

    async def release(self, campaign: str, endpoint: str) -> None:
        key = self.lease_key(campaign, endpoint)
        await self.redis.script(self._release, [key], [self.node_id])

    async def refresh(self, leases: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Extend the leases still held; the ones lost (expired, taken) are returned."""
        held = list(leases)
        if not held:
            return []
        keys = [self.lease_key(c, e) for c, e in held]
        ms = str(int(self.lease_s * 1000))
        lost = await self.redis.script(self._refresh, keys, [self.node_id, ms])
        return [held[int(i) - 1] for i in lost]

    async def claim_end(self, campaign: str) -> bool:
        key = self.redis.key(f"campaign:end:{campaign}")
        (done,) = await self.redis.run(("SET", key, self.node_id, "NX", "EX", str(END_MARK_S)))
        return bool(done)

    # ================================================================== Private
    async def _on_message(self, channel: str, data: bytes) -> None:
        try:
            change = parse_change(data)
        except ValueError as exc:
            self._drop(str(exc))
            return
        if change.origin == self.node_id or self._on_change is None:
            return
        try:
            await self._on_change(change)
        except (StoreError, ValueError, KeyError) as exc:
            logger.error("campaign change %s not applied: %s", change, exc)

    def _drop(self, reason: str) -> None:
        self.malformed += 1
        now = time.monotonic()
        summary = self._limit.take_summary(now)
        if summary:
            logger.warning("%d more malformed campaign changes not logged", sum(summary.values()))
        if self._limit.allow("malformed", now):
            logger.warning("malformed campaign change on %s dropped: %s", self.channel, reason)


def parse_change(raw: object) -> Change:
    """A change message of rule 1; ValueError says what is wrong."""
    if not isinstance(raw, bytes | str) or len(raw) > MAX_MESSAGE:
        raise ValueError("not a short text message")
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError("not a JSON object")
    origin, campaign, device = doc.get("from"), doc.get("campaign"), doc.get("device")
    if not isinstance(origin, str) or not isinstance(campaign, str) or not campaign:
        raise ValueError("from and campaign must be strings")
    if device is not None and (not isinstance(device, str) or not device):
        raise ValueError("device must be an endpoint name or null")
    return Change(origin, campaign, device)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value

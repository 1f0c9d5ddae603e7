"""Which node owns a device, and whether that node is alive (issue 12).

The owner is the node that received the registration's last Register or Update
(``reg:owner``, written by the registration scripts): through a load balancer or
over DTLS only that node can reach the device. A node is alive while its
liveness key ``<prefix>node:<id>`` exists (each node refreshes it with a short
expiry, see docs/cluster.md). Both answers come from Redis, not from this node's
view, so a request right after an Update on another node already goes the right
way.
"""

from __future__ import annotations

from lwm2m.stores.redis import RedisConnection, reply_text


class ClusterOwners:
    """Owner and liveness look-ups over the node's Redis connection."""

    def __init__(self, redis: RedisConnection) -> None:
        self._redis = redis

    async def owner_of(self, endpoint: str) -> str | None:
        """The owner of ``endpoint``'s registration; None when unregistered or never owned.

        Raises :class:`~lwm2m.stores.base.StoreError` when Redis fails.
        """
        r = self._redis
        (registration_id,) = await r.run(("HGET", r.key("reg:endpoint"), endpoint))
        if registration_id is None:
            return None
        (owner,) = await r.run(("HGET", r.key("reg:owner"), reply_text(registration_id)))
        return None if owner is None else reply_text(owner)

    async def alive(self, node_id: str) -> bool:
        """The node's liveness key exists (it heartbeated within its expiry)."""
        (exists,) = await self._redis.run(("EXISTS", self._redis.key(f"node:{node_id}")))
        return bool(exists)

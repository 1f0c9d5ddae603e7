"""The queued-request news between server nodes sharing one Redis: one pub/sub channel.

Channel ``<prefix>queued``; each message is a JSON object:

- ``{"kind": "queued", "registration_id": ...}``: a node queued a request; the
  node where that client is awake sends it now (it would otherwise wait for the
  client's next wake-up).
- ``{"kind": "answer", "node": ..., "id": ..., "result": {...}}``: a node sent a
  request queued by ``node``; that node hands the result to its waiting caller.

Messages are hints: the queued requests themselves are in the document store,
so a lost message delays a request (until the next wake-up) or loses an answer
whose caller then times out, as it would without a cluster. A message that
does not parse is logged and skipped; it never stops the listener.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from lwm2m.server.queued_requests import QueuedResult
from lwm2m.stores.redis import RedisConnection
from lwm2m.stores.redis_subscription import Subscription

logger = logging.getLogger(__name__)

CHANNEL = "queued"


class RedisQueueRelay:
    """:class:`~lwm2m.server.queued_requests.QueueRelay` over a Redis channel."""

    def __init__(
        self,
        redis: RedisConnection,
        node_id: str,
        *,
        on_queued: Callable[[str], None],
        on_answer: Callable[[str, QueuedResult], bool],
    ) -> None:
        self._redis = redis
        self._node_id = node_id
        self._channel = redis.key(CHANNEL)
        self._on_queued = on_queued
        self._on_answer = on_answer
        self._subscription = Subscription(
            redis, [self._channel], self._on_message, name="queued-request"
        )

    async def start(self) -> None:
        """Subscribe before returning, so no news published after start is missed
        (and again after Redis restarts: news published meanwhile are lost hints)."""
        await self._subscription.start()

    async def queued(self, registration_id: str) -> None:
        await self._publish({"kind": "queued", "registration_id": registration_id})

    async def answered(self, node: str, request_id: str, result: QueuedResult) -> None:
        await self._publish(
            {"kind": "answer", "node": node, "id": request_id, "result": result.to_json()}
        )

    async def close(self) -> None:
        await self._subscription.close()

    # Private

    async def _publish(self, message: dict[str, Any]) -> None:
        await self._redis.run(("PUBLISH", self._channel, json.dumps(message)))

    def _on_message(self, channel: str, data: bytes) -> None:
        self.receive(data)

    def receive(self, data: bytes | str) -> None:
        """Act on one channel message; a malformed one is logged and skipped."""
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            kind = doc.get("kind")
            if kind == "queued":
                registration_id = doc["registration_id"]
                if not isinstance(registration_id, str):
                    raise ValueError("registration_id is not a string")
                self._on_queued(registration_id)
            elif kind == "answer":
                if doc.get("node") != self._node_id:
                    return
                result = doc["result"]
                if not isinstance(result, dict):
                    raise ValueError("result is not an object")
                self._on_answer(str(doc["id"]), QueuedResult.from_json(result))
            else:
                raise ValueError(f"unknown kind {kind!r}")
        except (ValueError, KeyError, TypeError) as exc:
            logger.error("bad message on the queued-request channel skipped: %s", exc)

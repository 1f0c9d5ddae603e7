"""Every event to every cluster node, once: the relay over the Redis ``<prefix>events`` channel.

Rules:

1. A node relays what it published itself (``event.origin is None``) and nothing
   else: an event relayed to it is re-published on its bus with ``origin`` set to
   the node it came from, so it is never relayed again.
2. Its own messages come back from the channel (a subscriber hears every PUBLISH);
   they are recognised by their origin and ignored, so each node's bus carries
   each event exactly once.
3. Publishing on the bus never waits on Redis (it runs inside request handling):
   the listener only queues the event; a sender task encodes and PUBLISHes in
   batches. A full queue (Redis slow or away) drops the oldest and counts it.
4. What arrives is the network's: a message that is not JSON or holds an event that
   does not decode is logged (rate-limited) and dropped; the listener goes on. A lane
   this node does not have (a role it does not run) is skipped silently. Losing the subscription (Redis restarted) is logged and the
   listener subscribes again with a bounded back-off.

Pub/sub keeps no history: a node hears the events published while it is
subscribed, not those from before it started or while it was cut off.

Each message carries the events one node queued since its last message:
``{"v": 2, "origin": node id, "events": [{"lane": "server"|"bootstrap", "event": {...}}, ...]}``
(at most :data:`BATCH` events or about :data:`MESSAGE_BYTES`). Under a registration storm
that is one PUBLISH, and one message for each other node to read, per loop turn instead of
per request. A version 1 message (one event: ``{"v": 1, "origin", "lane", "event"}``, what
nodes before batching sent) is still understood, so nodes can be upgraded one at a time;
an old node drops the batches of a new one (counted as malformed) until it is upgraded.
A lane pairs a bus with its event codec (the server's :mod:`lwm2m.server.cluster_event_codec`,
the bootstrap server's :func:`lwm2m.bootstrap.events.bootstrap_event_from_json`), so one relay
carries the events of both roles without this package importing the other role.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from lwm2m.coap.tasks import wait_then_cancel
from lwm2m.protocol.events import EventBus
from lwm2m.protocol.log_limit import LogLimiter
from lwm2m.server.cluster_event_codec import event_from_json, event_to_json
from lwm2m.server.events import ServerEvent, ServerEventBus
from lwm2m.stores.redis import RedisConnection
from lwm2m.stores.redis_subscription import Subscription

logger = logging.getLogger(__name__)

#: The channel under the key prefix.
CHANNEL = "events"
#: Events waiting for the sender; beyond, the oldest are dropped.
DEFAULT_BUFFER = 10_000
#: Events in one message at most.
BATCH = 500
#: A message is closed once its events' JSON passes this many bytes.
MESSAGE_BYTES = 256 * 1024
#: Messages sent in one pipeline (then the sender looks at its queue again).
MESSAGES_PER_SEND = 8
#: Seconds the sender waits after Redis refused a batch (the subscription's own
#: backoff is :mod:`lwm2m.stores.redis_subscription`'s).
RETRY_S = 0.1
VERSION = 2
#: The single-event messages of nodes from before batching.
SINGLE_VERSION = 1


class RelayedEvent(Protocol):
    """What the relay needs of an event: where it came from (None: this node)."""

    @property
    def endpoint(self) -> str: ...

    @property
    def origin(self) -> str | None: ...


E = TypeVar("E", bound=RelayedEvent)


@dataclass(frozen=True, slots=True)
class EventLane(Generic[E]):
    """One bus and how its events travel: ``decode`` raises ValueError on bad input."""

    name: str
    bus: EventBus[E]
    encode: Callable[[E], Mapping[str, Any]]
    decode: Callable[[object, str], E]


def server_lane(bus: ServerEventBus) -> EventLane[ServerEvent]:
    """The LwM2M server's events (REGISTRATION ... SEND) as the ``server`` lane."""
    return EventLane(
        "server", bus, event_to_json, lambda data, origin: event_from_json(data, origin=origin)
    )


class ClusterEvents:
    """The relay of one node; ``await start()`` once, ``await stop()`` at the end."""

    def __init__(
        self,
        redis: RedisConnection,
        node_id: str,
        lanes: Sequence[EventLane[Any]],
        *,
        buffer: int = DEFAULT_BUFFER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self.node_id = node_id
        self.channel = redis.key(CHANNEL)
        self._lanes = {lane.name: lane for lane in lanes}
        self._clock = clock
        self._pending: deque[tuple[EventLane[Any], Any]] = deque(maxlen=buffer)
        self._wake = asyncio.Event()
        self._removers: list[Callable[[], None]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._subscription = Subscription(
            redis, [self.channel], self._on_message, name="cluster event relay"
        )
        #: How this node's own messages start: they come back from the channel and are
        #: recognised without parsing them (every node hears every batch of its own).
        self._own_head = f'{{"v":{VERSION},"origin":{json.dumps(node_id)},'.encode()
        self._batch_head = self._own_head.decode() + '"events":['
        self._closing = False
        self._log = LogLimiter()
        #: For /metrics and tests: events sent, re-published, dropped, refused.
        self.relayed = 0
        self.received = 0
        self.dropped = 0
        self.malformed = 0
        self.ignored = 0

    async def start(self) -> None:
        """Subscribe first, then relay: a node hears the others from the moment it relays."""
        await self._subscription.start()
        for lane in self._lanes.values():
            self._removers.append(lane.bus.add_listener(self._listener(lane)))
        self._tasks = [asyncio.create_task(self._send_loop(), name="cluster events out")]

    async def stop(self, timeout: float = 2.0) -> None:
        """Stop listening; what is queued is sent within ``timeout`` seconds, then dropped.

        A stop that is itself cancelled (a shutdown bounded in time) still ends the
        sender and closes the subscription, then raises its cancellation
        (:func:`~lwm2m.coap.tasks.wait_then_cancel`).
        """
        for remove in self._removers:
            remove()
        self._removers.clear()
        self._closing = True
        self._wake.set()
        tasks, self._tasks = self._tasks, []
        try:
            await wait_then_cancel(tasks, timeout)
            for task in tasks:
                if not task.cancelled() and task.exception() is not None:
                    logger.error("the cluster event sender failed: %r", task.exception())
        finally:
            await self._subscription.close()

    def counters(self) -> dict[str, float]:
        """For /metrics."""
        return {
            "cluster_events_relayed_total": float(self.relayed),
            "cluster_events_received_total": float(self.received),
            "cluster_events_dropped_total": float(self.dropped),
            "cluster_events_malformed_total": float(self.malformed),
        }

    def handle_message(self, data: bytes | str) -> None:
        """One message of the channel: its events re-published on their lanes' buses,
        ignored (this node's own, a lane it does not run), or refused."""
        if isinstance(data, bytes) and data.startswith(self._own_head):
            return
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict):
                raise ValueError("not a JSON object")
            origin = doc.get("origin")
            if not isinstance(origin, str) or not origin:
                raise ValueError("origin is not a node id")
            if origin == self.node_id:
                return
            version = doc.get("v")
            if version == VERSION:
                items = doc.get("events")
                if not isinstance(items, list):
                    raise ValueError("events is not a list")
            elif version == SINGLE_VERSION:
                items = [doc]
            else:
                raise ValueError(f"not a relay message of version {SINGLE_VERSION} or {VERSION}")
        except Exception as exc:  # the network's bytes: whatever they break, the relay goes on
            self.malformed += 1
            self._warn("malformed", "cluster event message dropped: %s", exc)
            return
        for item in items:
            self._republish(item, origin)

    # Private

    def _republish(self, item: object, origin: str) -> None:
        try:
            if not isinstance(item, dict):
                raise ValueError("an event item is not a JSON object")
            name = item.get("lane")
            if not isinstance(name, str):
                raise ValueError("lane is not a name")
            lane = self._lanes.get(name)
            if lane is None:
                # A role this node does not run (its bootstrap server disabled): not an error.
                self.ignored += 1
                return
            event = lane.decode(item.get("event"), origin)
        except Exception as exc:  # one bad event: the others of its message still go
            self.malformed += 1
            self._warn("malformed", "cluster event dropped: %s", exc)
            return
        self.received += 1
        lane.bus.publish(event)

    def _listener(self, lane: EventLane[Any]) -> Callable[[Any], None]:
        def listener(event: Any) -> None:
            if event.origin is not None:
                return  # relayed to us: its node relayed it already
            if len(self._pending) == self._pending.maxlen:
                self.dropped += 1
            self._pending.append((lane, event))
            self._wake.set()

        return listener

    async def _send_loop(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            messages, count = self._messages()
            if not messages:
                continue
            try:
                if len(messages) == 1:
                    await self._redis.client.publish(self.channel, messages[0])
                else:
                    pipe = self._redis.client.pipeline(transaction=False)
                    for message in messages:
                        pipe.publish(self.channel, message)
                    await pipe.execute()
                self.relayed += count
            except (OSError, self._redis.error) as exc:
                self.dropped += count
                self._warn("publish", "cluster events not relayed (Redis: %s)", exc)
                if not self._closing:
                    await asyncio.sleep(RETRY_S)

    def _messages(self) -> tuple[list[str], int]:
        """What is queued, as version 2 messages, and how many events they hold."""
        messages: list[str] = []
        items: list[str] = []
        size = 0
        count = 0
        head = self._batch_head
        while self._pending and len(messages) < MESSAGES_PER_SEND:
            lane, event = self._pending.popleft()
            try:
                item = json.dumps(
                    {"lane": lane.name, "event": lane.encode(event)},
                    separators=(",", ":"),
                    allow_nan=False,
                )
            except (ValueError, TypeError) as exc:
                self.dropped += 1
                self._warn("encode", "cluster event %r not relayed: %s", event, exc)
                continue
            items.append(item)
            size += len(item)
            count += 1
            if len(items) >= BATCH or size >= MESSAGE_BYTES:
                messages.append(head + ",".join(items) + "]}")
                items, size = [], 0
        if items:
            messages.append(head + ",".join(items) + "]}")
        return messages, count

    def _on_message(self, channel: str, data: bytes) -> None:
        self.handle_message(data)
        self._summary()

    def _warn(self, key: str, text: str, *args: object) -> None:
        if self._log.allow(key, self._clock()):
            logger.warning(text, *args)

    def _summary(self) -> None:
        counts = self._log.take_summary(self._clock())
        if counts:
            detail = ", ".join(f"{n} {key}" for key, n in sorted(counts.items()))
            logger.warning("cluster event relay: %s more lines not logged", detail)

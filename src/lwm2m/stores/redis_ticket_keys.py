"""DTLS session-ticket keys in Redis, shared by every server node on one prefix.

Why tickets rather than a session cache in Redis: pyOpenSSL exposes no
external session cache callbacks, and a ticket needs no lookup on the handshake
path at all; each node opens any node's ticket with the shared key
(:mod:`lwm2m.coap.dtls_tickets`).

Keys are numbered by generation, ``floor(unix time / rotation_s)``. Each node,
on each refresh, creates the current generation's key with ``SET NX`` (the
first node wins, the others read its key) and reads the previous and next
ones, in one transaction: ``<prefix>dtls:ticket-key:<generation>`` = 160 hex
digits (name | HMAC key | AES key), expiring after three rotations. A node
seals new tickets with the current key and accepts the previous one (and the
next one, for a node whose clock runs behind), so a ticket resumes for one to
two rotations and never after. No node coordinates, and a node that cannot
reach Redis keeps its keys until they age out.

Key material is never logged; a malformed value is reported by key name and
ignored.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable

from lwm2m.coap.dtls_binding import TICKET_KEYS_LEN
from lwm2m.coap.dtls_tickets import TicketKey
from lwm2m.coap.tasks import cancel_and_wait
from lwm2m.stores.base import StoreError
from lwm2m.stores.redis import RedisConnection

logger = logging.getLogger(__name__)

#: half a day: a ticket resumes for 12 to 24 hours after its full handshake
DEFAULT_ROTATION_S = 12 * 3600.0


class RedisTicketKeys:
    """A :class:`lwm2m.coap.dtls_tickets.TicketKeySource` fed from Redis.

    :meth:`ticket_keys` answers from memory (the DTLS layer calls it per
    ClientHello); :meth:`refresh`, run by :meth:`run` in the background, reads
    Redis. ``clock`` is wall-clock seconds: generations must agree across hosts.
    """

    def __init__(
        self,
        redis: RedisConnection,
        *,
        rotation_s: float = DEFAULT_ROTATION_S,
        clock: Callable[[], float] = time.time,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if rotation_s <= 0:
            raise ValueError("rotation_s must be positive")
        self._redis = redis
        self.rotation_s = rotation_s
        self._clock = clock
        self._random_bytes = random_bytes
        #: (generation, key), current first
        self._keys: tuple[tuple[int, TicketKey], ...] = ()
        self._task: asyncio.Task[None] | None = None

    @property
    def session_lifetime_s(self) -> int:
        """How long a session may resume: as long as its ticket's key is accepted."""
        return max(1, int(2 * self.rotation_s))

    @property
    def refresh_interval_s(self) -> float:
        return min(self.rotation_s / 10, 30.0)

    def ticket_keys(self) -> tuple[TicketKey, ...]:
        return tuple(key for _generation, key in self._keys)

    def generation(self) -> int:
        return int(self._clock() // self.rotation_s)

    async def refresh(self) -> None:
        """Create this generation's key if no node has, and load the keys to accept.

        Raises :class:`StoreError` when Redis fails; the keys held stay in use
        (minus any that aged out).
        """
        current = self.generation()
        name = self._key_name
        ttl_ms = int(3 * self.rotation_s * 1000)
        fresh = self._random_bytes(TICKET_KEYS_LEN).hex()
        wanted = (current, current + 1, current - 1)
        try:
            results = await self._redis.run(
                ("SET", name(current), fresh, "NX", "PX", str(ttl_ms)),
                ("MGET", *(name(g) for g in wanted)),
            )
        except StoreError:
            self._keys = tuple((g, k) for g, k in self._keys if g >= current - 1)
            raise
        keys: list[tuple[int, TicketKey]] = []
        for generation, value in zip(wanted, results[1], strict=True):
            if value is None:
                continue
            key = self._parse(name(generation), value)
            if key is not None:
                keys.append((generation, key))
        self._keys = tuple(keys)

    async def run(self) -> None:
        """Refresh until cancelled; a failure is logged and retried at the next interval."""
        while True:
            try:
                await self.refresh()
            except StoreError as exc:
                logger.warning("DTLS ticket keys not refreshed: %s", exc)
            except Exception:
                # Whatever Redis answered, the node keeps serving with the keys it has.
                logger.exception("DTLS ticket keys not refreshed")
            await asyncio.sleep(self.refresh_interval_s)

    async def start(self) -> None:
        """Load the keys once (so the first handshakes already share them), then keep them fresh."""
        try:
            await self.refresh()
        except StoreError as exc:
            logger.warning("DTLS ticket keys not loaded yet: %s", exc)
        self._task = asyncio.ensure_future(self._refresh_later())

    async def close(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait([task])

    async def _refresh_later(self) -> None:
        await asyncio.sleep(self.refresh_interval_s)
        await self.run()

    # Private

    def _key_name(self, generation: int) -> str:
        return self._redis.key(f"dtls:ticket-key:{generation}")

    @staticmethod
    def _parse(name: str, value: object) -> TicketKey | None:
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)
        try:
            return TicketKey(bytes.fromhex(text))
        except ValueError:
            # Never the value itself: it may be (part of) a key.
            logger.error("malformed DTLS ticket key %s in Redis: ignored", name)
            return None

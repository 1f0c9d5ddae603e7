"""Firmware image bytes in Redis, so every node of a cluster can serve every image (issue 12).

A device owned by node b pulls ``/fw/{id}`` from b (CoAP through the load
balancer, or HTTP from whichever node), while the image may have been uploaded
on node a. The metadata is already shared (the document store is Redis); this
module shares the bytes.

Rules:

1. An image is one Redis hash ``<prefix>fw:<id>``: field ``"n"`` holds the
   number of chunks, fields ``"0"``, ``"1"``, ... the chunks
   (:data:`CHUNK_BYTES` each, the last one shorter). It is written before the
   metadata (the repository's rule 1 holds across nodes: metadata implies
   complete bytes) and deleted after it.
2. Chunks are written and read a few at a time (:data:`CHUNKS_PER_ROUND_TRIP`),
   so no single Redis command carries a whole 64 MiB image.
3. A reader checks size and SHA-256 against the metadata before it caches the
   bytes (:meth:`lwm2m.server.firmware.repository.FirmwareRepository.fetch`):
   a partial or damaged copy is never served.
"""

from __future__ import annotations

from typing import Any

from lwm2m.stores.redis import RedisConnection

CHUNK_BYTES = 256 * 1024
CHUNKS_PER_ROUND_TRIP = 16


class RedisImageBlobs:
    """Image bytes as chunked fields of one hash per image, under the node's key prefix."""

    def __init__(self, redis: RedisConnection, *, chunk_bytes: int = CHUNK_BYTES) -> None:
        self._redis = redis
        self.chunk_bytes = chunk_bytes

    def key(self, image_id: str) -> str:
        return self._redis.key(f"fw:{image_id}")

    async def put(self, image_id: str, data: bytes) -> None:
        """Store ``data``; the count field is written last, so a reader never sees half."""
        key = self.key(image_id)
        chunks = [data[i : i + self.chunk_bytes] for i in range(0, len(data), self.chunk_bytes)]
        await self._redis.run(("DEL", key))
        for start in range(0, len(chunks), CHUNKS_PER_ROUND_TRIP):
            fields: list[Any] = []
            for index, chunk in enumerate(chunks[start : start + CHUNKS_PER_ROUND_TRIP], start):
                fields += [str(index), chunk]
            await self._redis.run(("HSET", key, *fields))
        await self._redis.run(("HSET", key, "n", str(len(chunks))))

    async def get(self, image_id: str) -> bytes | None:
        """The stored bytes; None when absent or incomplete (a chunk missing)."""
        key = self.key(image_id)
        (count,) = await self._redis.run(("HGET", key, "n"))
        if count is None:
            return None
        try:
            total = int(count)
        except ValueError:
            return None
        parts: list[bytes] = []
        for start in range(0, total, CHUNKS_PER_ROUND_TRIP):
            names = [str(i) for i in range(start, min(total, start + CHUNKS_PER_ROUND_TRIP))]
            (values,) = await self._redis.run(("HMGET", key, *names))
            if any(v is None for v in values):
                return None
            parts.extend(bytes(v) for v in values)
        return b"".join(parts)

    async def delete(self, image_id: str) -> None:
        await self._redis.run(("DEL", self.key(image_id)))

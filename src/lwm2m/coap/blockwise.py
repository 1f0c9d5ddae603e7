"""Block-wise transfer pieces (RFC 7959) that need no engine state."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Generic, TypeVar

from lwm2m.coap.message import Message
from lwm2m.coap.options import OptionNumber

V = TypeVar("V")


def block_size(szx: int) -> int:
    return 1 << (szx + 4)


def slice_block(body: bytes, num: int, szx: int) -> tuple[bytes, bool] | None:
    """Block ``num`` of ``body`` and whether more follow; None if it starts past the end."""
    size = 1 << (szx + 4)
    start = num * size
    if start >= len(body) and not (start == 0 and not body):
        return None
    end = start + size
    return body[start:end], end < len(body)


def transfer_key(address: object, msg: Message) -> Hashable:
    """What ties the blocks of one transfer together (RFC 7959 2.4: same cache key)."""
    tags = tuple(v for n, v in msg.other_options if n == OptionNumber.REQUEST_TAG)
    return (address, int(msg.code), msg.uri_host, msg.uri_path, msg.uri_query, msg.accept, tags)


class Assembly:
    """An incomplete Block1 body: bytes so far and the block size in use."""

    __slots__ = ("body", "szx")

    def __init__(self, szx: int) -> None:
        self.body = bytearray()
        self.szx = szx


class ExpiringStore(Generic[V]):
    """A small bounded map whose entries expire; the oldest go first when it is full.

    Bounds the memory that block-wise state can take no matter how many
    transfers peers start and abandon.
    """

    __slots__ = ("_items", "_limit")

    def __init__(self, limit: int) -> None:
        self._items: dict[Hashable, tuple[float, V]] = {}
        self._limit = limit

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable, now: float) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= now:
            del self._items[key]
            return None
        return item[1]

    def put(self, key: Hashable, value: V, expires: float) -> None:
        self._items.pop(key, None)
        while len(self._items) >= self._limit:
            del self._items[next(iter(self._items))]
        self._items[key] = (expires, value)

    def pop(self, key: Hashable) -> V | None:
        item = self._items.pop(key, None)
        return None if item is None else item[1]

    def values(self) -> list[V]:
        return [value for _, value in self._items.values()]

    def expire(self, now: float) -> None:
        for key in [k for k, (exp, _) in self._items.items() if exp <= now]:
            del self._items[key]

    def next_expiry(self) -> float | None:
        return min((exp for exp, _ in self._items.values()), default=None)

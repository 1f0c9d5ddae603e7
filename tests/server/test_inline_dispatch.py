"""Which servers start their request handler outside a Task (``Endpoint(inline_handlers=True)``).

Only where every first step of :meth:`LwM2MServer.handle` needs no Task: the
memory and SQLite stores (the Register/Update/De-register paths themselves run
inline throughout tests/server, whose fixture uses the memory store, and in
tests/server/test_group_commit.py on SQLite).
"""

from __future__ import annotations

from pathlib import Path

from lwm2m.server.server import LwM2MServer
from lwm2m.stores import open_stores
from lwm2m.stores.memory import MemoryStores


class _OtherStores(MemoryStores):
    """Stands for a backend the server knows nothing about (a Redis client needs a Task)."""


async def test_inline_only_on_the_memory_and_sqlite_stores(tmp_path: Path) -> None:
    assert LwM2MServer(MemoryStores()).inline_handlers
    sqlite = await open_stores("sqlite", tmp_path)
    try:
        assert LwM2MServer(sqlite).inline_handlers
    finally:
        await sqlite.close()
    assert not LwM2MServer(_OtherStores()).inline_handlers

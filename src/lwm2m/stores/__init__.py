"""Stores shared by the LwM2M server and the bootstrap server.

``open_stores("sqlite", data_dir)`` (the default of ``lwm2m server``),
``open_stores("memory")`` or ``open_stores("redis://host:6379/0")`` return a
:class:`Stores` bundle: registrations, observations, security entries and
JSON documents (bootstrap configurations, session history).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lwm2m.stores.base import (
        DocumentStore,
        JsonDoc,
        ObservationStore,
        RegistrationConflict,
        RegistrationStore,
        SecurityConflict,
        SecurityStore,
        StoreError,
        Stores,
        UnknownRegistration,
    )
    from lwm2m.stores.memory import MemoryStores
    from lwm2m.stores.records import (
        ObjectLinks,
        ObservationRecord,
        RecordError,
        RegisteredObject,
        Registration,
    )

#: Where each name of ``__all__`` lives. Imported at first use (PEP 562): the SQLite
#: writer process imports ``lwm2m.stores.sqlite_writer`` and must not pay for the
#: stores' dependencies (cryptography among them) at every start.
_LAZY = {
    **dict.fromkeys(
        (
            "DocumentStore",
            "JsonDoc",
            "ObservationStore",
            "RegistrationConflict",
            "RegistrationStore",
            "SecurityConflict",
            "SecurityStore",
            "StoreError",
            "Stores",
            "UnknownRegistration",
        ),
        "lwm2m.stores.base",
    ),
    "MemoryStores": "lwm2m.stores.memory",
    **dict.fromkeys(
        ("ObjectLinks", "ObservationRecord", "RecordError", "RegisteredObject", "Registration"),
        "lwm2m.stores.records",
    ),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "DocumentStore",
    "JsonDoc",
    "MemoryStores",
    "ObjectLinks",
    "ObservationRecord",
    "ObservationStore",
    "RecordError",
    "RegisteredObject",
    "Registration",
    "RegistrationConflict",
    "RegistrationStore",
    "SecurityConflict",
    "SecurityStore",
    "StoreError",
    "Stores",
    "UnknownRegistration",
    "open_stores",
]

SQLITE_FILENAME = "lwm2m.sqlite3"


async def open_stores(
    spec: str = "sqlite",
    data_dir: str | Path = "lwm2m-data",
    *,
    load_in_background: bool = False,
    node_id: str | None = None,
) -> Stores:
    """Open the stores named by ``--store``: ``memory``, ``sqlite`` or a ``redis://`` URL.

    ``load_in_background`` (SQLite): return before the stored registrations are
    all read back; they load while the server serves (see ``SqliteRegistrationStore``).
    ``node_id`` names this process among the nodes sharing a Redis store (the
    owner recorded with the registrations it receives); the other stores have
    one process and ignore it.
    """
    from lwm2m.stores.base import StoreError
    from lwm2m.stores.memory import MemoryStores

    if spec == "memory":
        return MemoryStores()
    if spec == "sqlite":
        from lwm2m.stores.sqlite import SqliteStores

        directory = Path(data_dir)
        directory.mkdir(parents=True, exist_ok=True)
        return await SqliteStores.open(
            directory / SQLITE_FILENAME, load_in_background=load_in_background
        )
    if spec.startswith(("redis://", "rediss://", "unix://")):
        from lwm2m.stores.redis import RedisStores

        return await RedisStores.open(spec, node_id=node_id)
    raise StoreError(f"unknown store {spec!r} (expected sqlite, memory or a redis:// URL)")

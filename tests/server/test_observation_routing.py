"""The server's live observations: a De-register stops its own and only its own."""

from __future__ import annotations

import asyncio
from typing import Any

from lwm2m.model.path import Path
from lwm2m.server.events import ServerEventBus
from lwm2m.server.observations import Observations
from lwm2m.stores.memory import MemoryObservationStore
from lwm2m.stores.records import ObservationRecord


class Handle:
    """A client observation that never notifies; records how it was cancelled."""

    def __init__(self) -> None:
        self.cancelled: bool | None = None
        self._never: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def __aiter__(self) -> Handle:
        return self

    async def __anext__(self) -> Any:
        return await self._never

    async def cancel(self, *, active: bool = True) -> None:
        self.cancelled = active


def _record(n: int, registration: str) -> ObservationRecord:
    return ObservationRecord(
        id=f"{n:04x}",
        registration_id=registration,
        endpoint=f"ep-{registration}",
        paths=(Path.parse("/3/0/9"),),
    )


async def test_drop_registration_stops_that_registrations_observations_only() -> None:
    store = MemoryObservationStore()
    observations = Observations(store, ServerEventBus())
    handles: dict[str, Handle] = {}
    for n in range(30):
        record = _record(n, f"r{n % 3}")
        handles[record.id] = Handle()
        await observations.add(record, handles[record.id])
    # One live for r1 that the store no longer lists (another node removed its row).
    adopted = _record(99, "r1")
    handles[adopted.id] = Handle()
    observations.adopt(adopted, handles[adopted.id])

    dropped = await observations.drop_registration("r1")

    assert sorted(r.id for r in dropped) == sorted(f"{n:04x}" for n in range(30) if n % 3 == 1)
    for oid, handle in handles.items():
        of_r1 = oid == adopted.id or int(oid, 16) % 3 == 1
        assert observations.is_live(oid) is not of_r1, oid
        assert (handle.cancelled is False) is of_r1, oid  # passive cancel for r1's only
    assert await observations.drop_registration("r1") == []
    await observations.close()
    assert not any(observations.is_live(oid) for oid in handles)

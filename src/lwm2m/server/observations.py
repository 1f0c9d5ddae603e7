"""Observations the server holds on its clients, and their notifications.

An observation is recorded in the :class:`ObservationStore` with its
registration and lives in memory as a :class:`ClientObservation` of the CoAP
endpoint, whose notifications are decoded here and published as
:class:`NotificationEvent`. Ending the registration (De-register, expiry,
re-Register) cancels its observations passively: the record is dropped and
the next notification is answered with RST.

After a server restart the records are still in the store but no endpoint
knows their tokens.  A notification carrying a stored token, from the
registered address (and DTLS identity), is accepted and the observation
adopted again (:meth:`Observations.adopt`, as Leshan matches notifications
against its persisted observations); any other unknown token gets RST.
Observations nobody has heard from yet are re-established at the client's
next Update (see :meth:`LwM2MServer.restore_observations`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from lwm2m.coap.codes import MessageType, is_success_code
from lwm2m.coap.errors import CoapError
from lwm2m.coap.message import Message
from lwm2m.coap.tasks import cancel_and_wait
from lwm2m.coap.tcp_connection import ConnectionLost
from lwm2m.formats.errors import FormatError
from lwm2m.model.nodes import Node
from lwm2m.model.path import Path
from lwm2m.model.registry import ModelRegistry
from lwm2m.server import payloads
from lwm2m.server.events import NotificationEvent, ServerEventBus
from lwm2m.stores.base import ObservationStore
from lwm2m.stores.records import ObservationRecord

logger = logging.getLogger(__name__)


class ClientObservationLike(Protocol):
    """What :class:`lwm2m.coap.endpoint.ClientObservation` offers (structural)."""

    def __aiter__(self) -> Any: ...

    async def cancel(self, *, active: bool = True) -> None: ...


@dataclass(slots=True)
class _Live:
    record: ObservationRecord
    handle: ClientObservationLike
    task: asyncio.Task[None] | None = None


def decode_values(
    record: ObservationRecord, message: Message, model: ModelRegistry | None
) -> dict[Path, Node]:
    """The values a notification (or the first Observe response) carries."""
    if record.composite:
        return payloads.decode_composite(
            message.content_format, message.payload, record.paths, model
        )
    return {
        record.path: payloads.decode(message.content_format, message.payload, record.path, model)
    }


class Observations:
    def __init__(
        self,
        store: ObservationStore,
        events: ServerEventBus,
        *,
        model: ModelRegistry | None = None,
        clock: Callable[[], float] = time.time,
        on_activity: Callable[[ObservationRecord], None] | None = None,
    ) -> None:
        self.store = store
        self.events = events
        self.model = model
        self.clock = clock
        self.on_activity = on_activity
        self._live: dict[str, _Live] = {}
        #: The live observation ids of each registration: a De-register stops its own
        #: without looking at every live observation of the server.
        self._live_of: dict[str, set[str]] = {}

    def is_live(self, observation_id: str) -> bool:
        return observation_id in self._live

    async def add(self, record: ObservationRecord, handle: ClientObservationLike) -> None:
        """Keep a newly established observation and start routing its notifications."""
        old = self._release(record.id)
        if old is not None:
            await self._stop(old, active=False)
        await self.store.add(record)
        live = _Live(record, handle)
        self._hold(live)
        live.task = asyncio.get_running_loop().create_task(
            self._pump(live), name=f"observation {record.endpoint} {record.id}"
        )

    def adopt(self, record: ObservationRecord, handle: ClientObservationLike) -> None:
        """Route the notifications of a stored observation taken over after a restart.

        Synchronous (it runs inside the endpoint's datagram callback): the
        record is already in the store, only the routing starts.
        """
        if record.id in self._live:
            raise ValueError(f"observation {record.id} is already live")
        live = _Live(record, handle)
        self._hold(live)
        live.task = asyncio.get_running_loop().create_task(
            self._pump(live), name=f"observation {record.endpoint} {record.id}"
        )

    def _hold(self, live: _Live) -> None:
        record = live.record
        self._live[record.id] = live
        self._live_of.setdefault(record.registration_id, set()).add(record.id)

    def _release(self, observation_id: str) -> _Live | None:
        live = self._live.pop(observation_id, None)
        if live is not None:
            ids = self._live_of.get(live.record.registration_id)
            if ids is not None:
                ids.discard(observation_id)
                if not ids:
                    del self._live_of[live.record.registration_id]
        return live

    async def _pump(self, live: _Live) -> None:
        record = live.record
        try:
            async for message in live.handle:
                assert isinstance(message, Message)
                if self.on_activity is not None:
                    self.on_activity(record)
                if not is_success_code(int(message.code)):
                    # A 4.xx/5.xx notification ends the observation (RFC 7641 3.2).
                    logger.info(
                        "observation %s on %s ended by the client (%s)",
                        record.id,
                        record.endpoint,
                        message.code,
                    )
                    break
                received_at = self.clock()
                try:
                    values, records = payloads.decode_reported(
                        message.content_format,
                        message.payload,
                        record.paths if record.composite else (record.path,),
                        self.model,
                        received_at,
                        single=not record.composite,
                    )
                except FormatError as exc:
                    logger.warning(
                        "undecodable notification from %s for %s: %s",
                        record.endpoint,
                        record.id,
                        exc,
                    )
                    continue
                self.events.publish(
                    NotificationEvent(
                        record.endpoint,
                        received_at,
                        observation=record,
                        values=values,
                        content_format=message.content_format,
                        sequence=message.observe,
                        confirmable=message.type == MessageType.CON,
                        records=records,
                    )
                )
        except ConnectionLost as exc:
            # CoAP over TCP: the client's connection closed.  The observation
            # stays stored, dormant, and is registered again when the client
            # reconnects and updates (see LwM2MServer.restore_observations).
            logger.info("observation %s on %s dormant: %s", record.id, record.endpoint, exc)
            if self._live.get(record.id) is live:
                self._release(record.id)
            return
        except CoapError as exc:
            logger.info("observation %s on %s ended: %s", record.id, record.endpoint, exc)
        except asyncio.CancelledError:
            raise
        # Ended on the client's side (error notification, RST, stream closed).
        if self._live.get(record.id) is live:
            self._release(record.id)
            await self.store.remove(record.id)

    async def cancel(self, observation_id: str, *, active: bool) -> ObservationRecord | None:
        """Reactive (``active=True``: GET with Observe=1) or passive (forget; RST next) cancel."""
        live = self._release(observation_id)
        record = await self.store.remove(observation_id)
        if live is not None:
            await self._stop(live, active=active)
            return live.record
        return record

    def may_hold(self, registration_id: str) -> bool:
        """False when no observation of the registration is live here and the store
        knows, without I/O, that it holds none."""
        return registration_id in self._live_of or self.store.may_hold_for_registration(
            registration_id
        )

    async def drop_registration(self, registration_id: str) -> list[ObservationRecord]:
        """The registration ended: forget its observations (passive cancel)."""
        records = await self.store.remove_for_registration(registration_id)
        for rec in records:
            live = self._release(rec.id)
            if live is not None:
                await self._stop(live, active=False)
        # Live ones the store no longer listed (another node's write, a failed add).
        for oid in list(self._live_of.get(registration_id, ())):
            live = self._release(oid)
            if live is not None:
                await self._stop(live, active=False)
        return records

    async def _stop(self, live: _Live, *, active: bool) -> None:
        task = live.task
        if task is not None and task is not asyncio.current_task():
            await cancel_and_wait([task])
        with contextlib.suppress(CoapError, Exception):
            await live.handle.cancel(active=active)

    async def close(self) -> None:
        for live in list(self._live.values()):
            await self._stop(live, active=False)
        self._live.clear()
        self._live_of.clear()

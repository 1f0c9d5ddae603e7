"""Firmware campaigns: drive many devices through the Firmware Update object, safely.

The per-device decisions live in :mod:`~lwm2m.server.firmware.campaign_machine`;
this module is its I/O edge. It performs the machine's actions with the
server's operations (Read, Write, Observe, Execute), turns their outcomes and
the server's events (notifications of /5/0/3 and /5/0/5, Registers) into
machine events, stores every changed device record before acting on it, and
tells listeners (the web's SSE stream) how things go.

- At most ``concurrency`` devices of a campaign are in progress; pause stops
  new devices from starting (those in progress finish their update: an update
  half done is riskier than one completed), resume lets them start again,
  cancel ends the devices that have not executed the update yet.
- Queue-mode devices: the server's requests wait until the device wakes, within
  the time left before the device's deadline. Devices not registered wait for
  their Register within the same deadline.
- A restart (:meth:`CampaignManager.start` on the same store) resumes running
  campaigns where their devices were; a device whose Execute was sent is only
  ever waited for (machine rule 3).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lwm2m.coap.codes import Code
from lwm2m.model.nodes import LwM2MObject, Node, ObjectInstance, Resource
from lwm2m.model.path import Path
from lwm2m.protocol.errors import RemoteError
from lwm2m.server.errors import ServerError
from lwm2m.server.events import NotificationEvent, RegistrationEvent, UpdatedEvent
from lwm2m.server.firmware.campaign_machine import (
    TERMINAL,
    Action,
    Begin,
    Cancel,
    Checked,
    Delivered,
    DeviceEvent,
    DeviceMachine,
    DeviceRecord,
    Executed,
    Method,
    Online,
    Phase,
    RequestFailed,
    Reregistered,
    Status,
    Tick,
    Unregistered,
    VersionRead,
)
from lwm2m.server.firmware.campaign_records import (
    Campaign,
    CampaignConflict,
    CampaignError,
    CampaignNotFound,
    CampaignSpec,
    CampaignState,
    CampaignStore,
    CorruptedImage,
)
from lwm2m.server.firmware.repository import FirmwareImage, FirmwareRepository

logger = logging.getLogger(__name__)

STATE = Path.parse("/5/0/3")
RESULT = Path.parse("/5/0/5")
FIRMWARE_INSTANCE = Path.parse("/5/0")
FIRMWARE_VERSION = Path.parse("/3/0/3")
DEFAULT_POLL_S = 5.0
#: Requests never wait longer than this, even with a long campaign timeout.
MAX_REQUEST_S = 300.0
#: Clean-up requests of a finished device (stop observing, reset) wait no longer.
CLEANUP_REQUEST_S = 10.0
#: Bounded buffer of each listener of :meth:`CampaignManager.subscribe`.
LISTENER_BUFFER = 1000


@dataclass(frozen=True, slots=True)
class CampaignEvent:
    """What SSE listeners see: ``CAMPAIGN`` (a campaign's progress) or ``CAMPAIGN_DEVICE``."""

    kind: str
    campaign: str
    data: dict[str, Any]


class CampaignManager:
    """Every campaign of one server: create, list, pause, resume, cancel, and run them."""

    def __init__(
        self,
        server: Any,
        repository: FirmwareRepository,
        *,
        store: CampaignStore | None = None,
        clock: Callable[[], float] = time.time,
        poll_s: float = DEFAULT_POLL_S,
    ) -> None:
        self.server = server
        self.repository = repository
        self.store = store or CampaignStore(server.stores.documents)
        self.clock = clock
        self.poll_s = poll_s
        self.campaigns: dict[str, Campaign] = {}
        self.counts: dict[str, float] = {}
        self._runs: dict[str, _Run] = {}
        self._listeners: list[asyncio.Queue[CampaignEvent]] = []
        self._events_task: asyncio.Task[None] | None = None
        self._subscription: Any = None
        self._ended: dict[str, asyncio.Event] = {}

    # ================================================================ lifecycle
    async def start(self) -> None:
        """Load stored campaigns and resume the running ones (after a restart)."""
        self._subscription = self.server.events.subscribe(buffer=100_000)
        self._events_task = asyncio.create_task(self._route_events())
        self.repository.in_use = self.in_use
        for campaign in await self.store.load():
            self.campaigns[campaign.id] = campaign
            if campaign.state in (CampaignState.RUNNING, CampaignState.PAUSED):
                # Paused ones too: their devices under way are confirmed, none starts.
                logger.info("resuming campaign %s (%s)", campaign.id, campaign.state.value)
                await self._launch(campaign)

    async def stop(self) -> None:
        """Stop driving (nothing is changed in the store: a restart resumes)."""
        runs = list(self._runs.values())
        self._runs.clear()
        for run in runs:
            run.task.cancel()
        for run in runs:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await run.task
        if self._subscription is not None:
            self._subscription.close()
        if self._events_task is not None:
            self._events_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._events_task

    def in_use(self, image_id: str) -> bool:
        """Whether a running or paused campaign uses the image (it may not be deleted)."""
        return any(
            c.spec.firmware == image_id and c.state in (CampaignState.RUNNING, CampaignState.PAUSED)
            for c in self.campaigns.values()
        )

    def counters(self) -> dict[str, float]:
        """For /metrics: ``campaign_devices_<outcome>_total`` and friends."""
        return dict(self.counts)

    # ================================================================== queries
    def list(self) -> list[Campaign]:
        return sorted(self.campaigns.values(), key=lambda c: (c.created, c.id))

    def get(self, campaign_id: str) -> Campaign:
        campaign = self.campaigns.get(campaign_id)
        if campaign is None:
            raise CampaignNotFound(f"no campaign {campaign_id!r}")
        return campaign

    async def wait_ended(self, campaign_id: str) -> Campaign:
        """Wait until every device of the campaign reached its end (bound it with a timeout)."""
        campaign = self.get(campaign_id)
        if campaign.finished is None:
            await self._ended.setdefault(campaign_id, asyncio.Event()).wait()
        return campaign

    async def subscribe(self) -> AsyncIterator[CampaignEvent]:
        """Campaign events as they happen (bounded: a slow reader loses the oldest)."""
        queue: asyncio.Queue[CampaignEvent] = asyncio.Queue(LISTENER_BUFFER)
        self._listeners.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._listeners.remove(queue)

    # ================================================================== changes
    async def create(self, body: object) -> Campaign:
        """Check the request and the image, then start; nothing touches a device before."""
        spec = CampaignSpec.parse(body)
        image = await self.repository.get(spec.firmware)
        if image is None:
            raise CampaignError(f"firmware: no image {spec.firmware!r}")
        if not await self.repository.verify(image.id):
            raise CorruptedImage(
                f"firmware image {image.id} ({image.name} {image.version}) is corrupted: its "
                "stored file no longer matches its SHA-256; upload it again"
            )
        if spec.method is Method.HTTP and getattr(self.server, "http_address", None) is None:
            raise CampaignConflict("method http: no HTTP server serves firmware downloads")
        if spec.endpoints is not None:
            endpoints = list(spec.endpoints)
        else:
            endpoints = sorted(
                r.endpoint for r in self.server.registrations() if spec.selects(r.endpoint)
            )
            if not endpoints:
                raise CampaignError("filter: no registered device matches")
        busy = sorted(set(endpoints) & self._busy_endpoints())
        if busy:
            raise CampaignConflict(
                f"{len(busy)} device(s) are in another running campaign, e.g. {busy[0]}"
            )
        campaign = Campaign(
            id=Campaign.new_id(),
            spec=spec,
            version=image.version,
            image_name=image.name,
            created=self.clock(),
            devices={ep: DeviceRecord(ep) for ep in endpoints},
        )
        for record in campaign.devices.values():
            await self.store.save_device(campaign.id, record)
        await self.store.save(campaign)
        self.campaigns[campaign.id] = campaign
        self._count("campaigns_started_total")
        logger.info(
            "campaign %s: %s %s to %d device(s) by %s",
            campaign.id,
            image.name,
            image.version,
            len(endpoints),
            spec.method.value,
        )
        await self._launch(campaign)
        return campaign

    async def pause(self, campaign_id: str) -> Campaign:
        campaign = self.get(campaign_id)
        if campaign.state is not CampaignState.RUNNING:
            raise CampaignConflict(f"campaign {campaign_id} is {campaign.state.value}, not running")
        await self._set_state(campaign, CampaignState.PAUSED)
        run = self._runs.get(campaign_id)
        if run is not None:
            run.go.clear()
        return campaign

    async def resume(self, campaign_id: str) -> Campaign:
        campaign = self.get(campaign_id)
        if campaign.state is not CampaignState.PAUSED:
            raise CampaignConflict(f"campaign {campaign_id} is {campaign.state.value}, not paused")
        await self._set_state(campaign, CampaignState.RUNNING)
        run = self._runs.get(campaign_id)
        if run is None:
            await self._launch(campaign)
        else:
            run.go.set()
        return campaign

    async def cancel(self, campaign_id: str) -> Campaign:
        campaign = self.get(campaign_id)
        if campaign.state in (CampaignState.CANCELLED, CampaignState.FINISHED):
            raise CampaignConflict(f"campaign {campaign_id} is already {campaign.state.value}")
        run = self._runs.get(campaign_id)
        await self._set_state(campaign, CampaignState.CANCELLED)
        if run is not None:
            run.cancelled = True
            run.go.set()
            for inbox in run.inboxes.values():
                inbox.put_nowait(Cancel())
        # Devices no driver holds (pending, or all of a paused campaign after a restart).
        now = self.clock()
        for endpoint, record in list(campaign.devices.items()):
            if run is not None and endpoint in run.inboxes:
                continue
            machine = self._machine(campaign, record)
            machine.handle(Cancel(), now)
            await self._commit(campaign, machine)
        if run is None:
            if any(r.phase not in TERMINAL for r in campaign.devices.values()):
                # Devices told to Execute are still confirmed (machine rule 3).
                await self._launch(campaign)
                launched = self._runs.get(campaign.id)
                if launched is not None:
                    launched.cancelled = True
            else:
                await self._finish(campaign)
        return campaign

    # ================================================================== Private
    def _busy_endpoints(self) -> set[str]:
        return {
            ep
            for c in self.campaigns.values()
            if c.state in (CampaignState.RUNNING, CampaignState.PAUSED)
            for ep, record in c.devices.items()
            if record.phase not in TERMINAL
        }

    async def _launch(self, campaign: Campaign) -> None:
        image = await self.repository.get(campaign.spec.firmware)
        if image is None or not await self.repository.verify(image.id):
            campaign.error = "firmware image missing or corrupted; campaign paused"
            if campaign.state is CampaignState.RUNNING:
                await self._set_state(campaign, CampaignState.PAUSED)
            else:
                await self.store.save(campaign)
            return
        run = _Run(campaign, image)
        if campaign.state is CampaignState.RUNNING:
            run.go.set()
        run.task = asyncio.create_task(self._run(run))
        self._runs[campaign.id] = run
        self._publish_progress(campaign)

    async def _run(self, run: _Run) -> None:
        campaign = run.campaign
        slots = asyncio.Semaphore(campaign.spec.concurrency)
        drivers: list[asyncio.Task[None]] = []
        try:
            # Devices already under way (a restart) take their slots first.
            started = [r for r in campaign.devices.values() if r.phase not in TERMINAL]
            ordered = sorted(started, key=lambda r: r.phase is Phase.PENDING)
            for record in ordered:
                await slots.acquire()
                # A pause while we waited for a slot holds back this device too.
                while record.phase is Phase.PENDING and not run.go.is_set():
                    slots.release()
                    await run.go.wait()
                    await slots.acquire()
                if run.cancelled and record.phase is Phase.PENDING:
                    slots.release()
                    break
                current = campaign.devices[record.endpoint]
                if current.phase in TERMINAL:  # cancelled while we waited
                    slots.release()
                    continue
                run.inboxes[record.endpoint] = asyncio.Queue()
                task = asyncio.create_task(self._drive_slot(run, current, slots))
                drivers.append(task)
            if drivers:
                await asyncio.gather(*drivers)
        except asyncio.CancelledError:
            for task in drivers:
                task.cancel()
            await asyncio.gather(*drivers, return_exceptions=True)
            raise
        if self._runs.get(campaign.id) is run:
            del self._runs[campaign.id]
            await self._finish(campaign)

    async def _finish(self, campaign: Campaign) -> None:
        if any(r.phase not in TERMINAL for r in campaign.devices.values()):
            return
        if campaign.state is CampaignState.RUNNING:
            campaign.state = CampaignState.FINISHED
        campaign.finished = self.clock()
        await self.store.save(campaign)
        self._ended.setdefault(campaign.id, asyncio.Event()).set()
        self._publish_progress(campaign)
        logger.info("campaign %s %s: %s", campaign.id, campaign.state.value, campaign.totals())

    async def _drive_slot(self, run: _Run, record: DeviceRecord, slots: asyncio.Semaphore) -> None:
        try:
            await self._drive(run, record)
        except Exception:
            logger.exception("campaign %s: driving %s failed", run.campaign.id, record.endpoint)
        finally:
            run.inboxes.pop(record.endpoint, None)
            slots.release()

    async def _drive(self, run: _Run, record: DeviceRecord) -> None:
        campaign = run.campaign
        machine = self._machine(campaign, record)
        inbox = run.inboxes[record.endpoint]
        now = self.clock()
        registered = self.server.get_registration(record.endpoint) is not None
        if record.phase is Phase.PENDING:
            actions = machine.handle(Begin(registered=registered), now)
        elif record.phase is Phase.WAITING and registered:
            actions = machine.handle(Online(), now)
        else:
            actions = machine.resume(now)
        if run.cancelled:
            actions = machine.handle(Cancel(), now) if not machine.record.done else []
        while True:
            await self._commit(campaign, machine)
            while actions:
                event = await self._perform(run, machine, actions.pop(0))
                if event is None:
                    continue
                more = machine.handle(event, self.clock())
                await self._commit(campaign, machine)
                # A machine that just finished asks only for clean-up (stop observing, reset).
                actions = more if machine.record.done else actions + more
            if machine.record.done:
                return
            timer = machine.timer()
            wait = None if timer is None else max(0.0, timer - self.clock())
            try:
                event = await asyncio.wait_for(inbox.get(), wait)
            except TimeoutError:
                event = Tick()
            actions = machine.handle(event, self.clock())

    def _machine(self, campaign: Campaign, record: DeviceRecord) -> DeviceMachine:
        return DeviceMachine(
            record=record,
            version=campaign.version,
            method=campaign.spec.method,
            timeout_s=campaign.spec.timeout_s,
            retries=campaign.spec.retries,
            poll_s=self.poll_s,
        )

    async def _commit(self, campaign: Campaign, machine: DeviceMachine) -> None:
        """Store the device's record if it changed (before its actions are performed)."""
        record = machine.record
        old = campaign.devices.get(record.endpoint)
        if old == record:
            return
        await self.store.save_device(campaign.id, record)
        # Shown only once stored: what the API shows is what a restart resumes from.
        campaign.devices[record.endpoint] = record
        if old is not None and record.attempts > max(old.attempts, 1):
            self._count("campaign_retries_total")
        if record.phase in TERMINAL and (old is None or old.phase not in TERMINAL):
            self._count(f"campaign_devices_{record.phase.value}_total")
            logger.info(
                "campaign %s: %s %s %s",
                campaign.id,
                record.endpoint,
                record.phase.value,
                record.error,
            )
        self._publish(
            CampaignEvent(
                "CAMPAIGN_DEVICE", campaign.id, {"campaign": campaign.id, **record.to_json()}
            )
        )
        if old is None or old.phase is not record.phase:
            self._publish_progress(campaign)

    async def _set_state(self, campaign: Campaign, state: CampaignState) -> None:
        campaign.state = state
        await self.store.save(campaign)
        self._publish_progress(campaign)

    def _publish_progress(self, campaign: Campaign) -> None:
        self._publish(CampaignEvent("CAMPAIGN", campaign.id, campaign.summary()))

    def _publish(self, event: CampaignEvent) -> None:
        for queue in self._listeners:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(event)

    def _count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0.0) + 1.0

    # ------------------------------------------------------------------ actions
    async def _perform(
        self, run: _Run, machine: DeviceMachine, action: Action
    ) -> DeviceEvent | None:
        endpoint = machine.record.endpoint
        deadline = machine.record.deadline
        if machine.record.done:
            timeout = CLEANUP_REQUEST_S  # best effort: the device's result is already known
        else:
            timeout = MAX_REQUEST_S if deadline is None else deadline - self.clock()
            timeout = max(0.5, min(timeout, MAX_REQUEST_S))
        try:
            event: DeviceEvent | None = await _PERFORMERS[action](self, run, endpoint, timeout)
            return event
        except RemoteError as exc:
            absent = exc.code == Code.NOT_FOUND and action is Action.READ_SUPPORT
            return RequestFailed(f"{action.value}: the device answered {exc}", absent=absent)
        except (ServerError, ValueError, OSError) as exc:
            return RequestFailed(f"{action.value}: {exc or type(exc).__name__}")

    async def _read_support(self, run: _Run, endpoint: str, timeout: float) -> DeviceEvent:
        registration = self.server.get_registration(endpoint)
        if registration is None:
            return Unregistered()
        fw = _resources(
            (await self.server.read(endpoint, FIRMWARE_INSTANCE, timeout=timeout)).content
        )
        version = await self._read_text(endpoint, FIRMWARE_VERSION, timeout)
        wanted = {**run.campaign.spec.required_values, **run.image.target}
        values: dict[str, str] = {}
        for path in wanted:
            text = await self._read_text(endpoint, Path.parse(path), timeout)
            if text is not None:
                values[path] = text
        protocols = fw.get(8)
        return Checked(
            state=_int(fw.get(3)),
            result=_int(fw.get(5)),
            protocols=None if protocols is None else frozenset(_ints(protocols)),
            delivery=_int(fw.get(9)),
            version=version,
            matches=all(values.get(p) == v for p, v in wanted.items()),
            secure=registration.secure,
        )

    async def _read_text(self, endpoint: str, path: Path, timeout: float) -> str | None:
        try:
            node = (await self.server.read(endpoint, path, timeout=timeout)).content
        except RemoteError:
            return None
        value = node.value if isinstance(node, Resource) else None
        return None if value is None else str(value)

    async def _reset(self, run: _Run, endpoint: str, timeout: float) -> DeviceEvent | None:
        with contextlib.suppress(RemoteError, ServerError):
            await self.server.write(endpoint, "/5/0/1", "", timeout=timeout)
        return None

    async def _deliver(self, run: _Run, endpoint: str, timeout: float) -> DeviceEvent:
        method = run.campaign.spec.method
        if method is Method.PUSH:
            await self.server.write(
                endpoint, "/5/0/0", await run.package(self.repository), timeout=timeout
            )
            self._count("campaign_pushes_total")
            return Delivered()
        registration = self.server.get_registration(endpoint)
        if registration is None:
            return RequestFailed("the device is not registered")
        uri = self.server.firmware_uri(run.image.id, registration, method.value)
        await self.server.write(endpoint, "/5/0/1", uri, timeout=timeout)
        self._count("campaign_package_uris_total")
        return Delivered()

    async def _observe(self, run: _Run, endpoint: str, timeout: float) -> DeviceEvent:
        observed = {p for rec in self.server.observations_of(endpoint) for p in rec.paths}
        values: dict[int, object] = {}
        for path in (STATE, RESULT):
            if path in observed:
                continue
            response = await self.server.observe(endpoint, path, timeout=timeout)
            node = response.content
            if isinstance(node, Resource):
                values[path.resource_id or 0] = node.value
        if len(values) < 2:
            return await self._read_status(run, endpoint, timeout)
        return Status(state=_int(values.get(3)), result=_int(values.get(5)))

    async def _read_status(self, run: _Run, endpoint: str, timeout: float) -> DeviceEvent:
        fw = _resources(
            (await self.server.read(endpoint, FIRMWARE_INSTANCE, timeout=timeout)).content
        )
        return Status(state=_int(fw.get(3)), result=_int(fw.get(5)))

    async def _execute(self, run: _Run, endpoint: str, timeout: float) -> DeviceEvent:
        await self.server.execute(endpoint, "/5/0/2", timeout=timeout)
        self._count("campaign_executes_total")
        return Executed()

    async def _read_version(self, run: _Run, endpoint: str, timeout: float) -> DeviceEvent:
        version = await self._read_text(endpoint, FIRMWARE_VERSION, timeout)
        result = await self._read_text(endpoint, RESULT, timeout)
        return VersionRead(version=version, result=None if result is None else int(result))

    async def _stop_observing(self, run: _Run, endpoint: str, timeout: float) -> DeviceEvent | None:
        for record in self.server.observations_of(endpoint):
            if set(record.paths) & {STATE, RESULT}:
                with contextlib.suppress(ServerError, RemoteError):
                    await self.server.cancel_observation(endpoint, record, active=False)
        return None

    # ------------------------------------------------------------------- events
    async def _route_events(self) -> None:
        """Server events into the inboxes of the devices' drivers."""
        async for event in self._subscription:
            targets = [
                (run, run.inboxes[event.endpoint])
                for run in self._runs.values()
                if event.endpoint in run.inboxes
            ]
            if not targets:
                continue
            for run, inbox in targets:
                translated = _translate(event, run.campaign.devices[event.endpoint])
                if translated is not None:
                    inbox.put_nowait(translated)


class _Run:
    """A campaign being driven: its launcher task, the devices' inboxes, the pause gate."""

    def __init__(self, campaign: Campaign, image: FirmwareImage) -> None:
        self.campaign = campaign
        self.image = image
        self.go = asyncio.Event()
        self.cancelled = False
        self.inboxes: dict[str, asyncio.Queue[DeviceEvent]] = {}
        self.task: asyncio.Task[None]
        self._package: bytes | None = None

    async def package(self, repository: FirmwareRepository) -> bytes:
        """The image's bytes, read once per run (pushes share one copy)."""
        if self._package is None:
            self._package = await asyncio.to_thread(
                repository.read, self.image.id, 0, self.image.size
            )
        return self._package


_Performer = Callable[[CampaignManager, _Run, str, float], Any]

_PERFORMERS: dict[Action, _Performer] = {
    Action.READ_SUPPORT: CampaignManager._read_support,
    Action.RESET: CampaignManager._reset,
    Action.DELIVER: CampaignManager._deliver,
    Action.OBSERVE: CampaignManager._observe,
    Action.READ_STATUS: CampaignManager._read_status,
    Action.EXECUTE: CampaignManager._execute,
    Action.READ_VERSION: CampaignManager._read_version,
    Action.STOP_OBSERVING: CampaignManager._stop_observing,
}


def _translate(event: object, record: DeviceRecord) -> DeviceEvent | None:
    if isinstance(event, NotificationEvent):
        state = _value(event.values, STATE)
        result = _value(event.values, RESULT)
        if state is None and result is None:
            return None
        return Status(state=_int(state), result=_int(result))
    if isinstance(event, RegistrationEvent | UpdatedEvent):
        # After Execute, a Register (reboot) or a Registration Update (the device's
        # way of saying it came back) is the cue to confirm /3/0/3.
        return Reregistered() if record.executed else Online()
    return None


def _value(values: Mapping[Path, Node], path: Path) -> object:
    node = values.get(path)
    return node.value if isinstance(node, Resource) else None


def _resources(node: Node) -> dict[int, object]:
    """Resource id -> value (or instances mapping) of an instance read of /5/0."""
    if isinstance(node, LwM2MObject):
        node = next(iter(node.instances.values()))
    if not isinstance(node, ObjectInstance):
        return {}
    return {
        rid: (res.instances if res.is_multiple else res.value)
        for rid, res in node.resources.items()
    }


def _int(value: object) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError:
        return None


def _ints(value: object) -> list[int]:
    if isinstance(value, Mapping):
        return [v for v in (_int(x) for x in value.values()) if v is not None]
    single = _int(value)
    return [] if single is None else [single]

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

In a cluster (``cluster`` given: nodes on one Redis, see
:mod:`~lwm2m.server.firmware.campaign_cluster`) every node runs every campaign
and drives the devices it owns, under a lease per device:

- A node looks at the campaign's unfinished devices every ``poll_s`` and when
  something changed (a Register or Update it received, a record another node
  stored, a driver ending). It drives a device it owns once it holds the
  device's lease, reading the device's record from the store first, so a device
  that moved to it continues from its stored phase (machine ``resume``).
- A driver sends only while its node owns the device: before each request it
  checks ``reg:owner``, and hands over (stops, record kept) when the owner
  changed. ``concurrency`` bounds the devices in progress per node.
- A device no node can reach (unregistered, or its owner's liveness key gone)
  waits: any node may take its lease for an instant, without sending anything,
  to start it (WAITING, not registered) or to apply its timeout, so the wait is
  bounded by the campaign's timeouts.
- Pause, resume and cancel store the campaign and publish the change; every
  node applies it to its drivers. Progress and the end come from the shared
  device records, so every node's API shows the same campaign.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lwm2m.coap.codes import Code
from lwm2m.coap.tasks import cancel_and_wait
from lwm2m.model.nodes import LwM2MObject, Node, ObjectInstance, Resource
from lwm2m.model.path import Path
from lwm2m.protocol.errors import RemoteError
from lwm2m.server.errors import ServerError
from lwm2m.server.events import NotificationEvent, RegistrationEvent, ServerEvent, UpdatedEvent
from lwm2m.server.firmware.campaign_cluster import CampaignCluster, Change
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
from lwm2m.stores.base import StoreError
from lwm2m.stores.query import RegistrationQuery

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
#: Registrations read per page when a cluster node lists the fleet for a filter.
FLEET_PAGE = 1000
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
        cluster: CampaignCluster | None = None,
    ) -> None:
        self.server = server
        self.repository = repository
        self.store = store or CampaignStore(server.stores.documents)
        self.clock = clock
        self.poll_s = poll_s
        self.cluster = cluster
        self._lease_task: asyncio.Task[None] | None = None
        self.campaigns: dict[str, Campaign] = {}
        self.counts: dict[str, float] = {}
        self._runs: dict[str, _Run] = {}
        self._listeners: list[asyncio.Queue[CampaignEvent]] = []
        self._stop_routing: Callable[[], None] | None = None
        self._ended: dict[str, asyncio.Event] = {}
        self._launching: set[str] = set()

    # ================================================================ lifecycle
    async def start(self) -> None:
        """Load stored campaigns and resume the running ones (after a restart)."""
        if self.cluster is None:
            self.repository.in_use = self.in_use
        else:
            self.repository.in_use = self.in_use_anywhere
            await self.cluster.start(self._apply_change, self._read_all_again)
            self._lease_task = asyncio.create_task(self._keep_leases())
        for campaign in await self.store.load():
            if campaign.id in self.campaigns:
                continue  # a cluster node's change brought it in while we loaded
            self.campaigns[campaign.id] = campaign
            if campaign.state in (CampaignState.RUNNING, CampaignState.PAUSED):
                # Paused ones too: their devices under way are confirmed, none starts.
                logger.info("resuming campaign %s (%s)", campaign.id, campaign.state.value)
                await self._launch(campaign)

    async def stop(self) -> None:
        """Stop driving (nothing is changed in the store: a restart resumes)."""
        runs = list(self._runs.values())
        self._runs.clear()
        self._route_while_running()
        await cancel_and_wait([*(run.task for run in runs), self._lease_task])
        if self.cluster is not None:
            await self.cluster.stop()
        if self._stop_routing is not None:
            self._stop_routing()
            self._stop_routing = None

    def in_use(self, image_id: str) -> bool:
        """Whether a running or paused campaign uses the image (it may not be deleted)."""
        return any(
            c.spec.firmware == image_id and c.state in (CampaignState.RUNNING, CampaignState.PAUSED)
            for c in self.campaigns.values()
        )

    async def in_use_anywhere(self, image_id: str) -> bool:
        """:meth:`in_use` over the shared campaigns of every node (a cluster)."""
        return any(
            c.spec.firmware == image_id and c.state in (CampaignState.RUNNING, CampaignState.PAUSED)
            for c in await self.store.load_campaigns()
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
            endpoints = sorted(r.endpoint for r in await self._fleet() if spec.selects(r.endpoint))
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
        if self.cluster is not None:
            await self.cluster.published(campaign.id)
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
        campaign = await self._current(campaign_id)
        if campaign.state is not CampaignState.RUNNING:
            raise CampaignConflict(f"campaign {campaign_id} is {campaign.state.value}, not running")
        await self._set_state(campaign, CampaignState.PAUSED)
        run = self._runs.get(campaign_id)
        if run is not None:
            run.go.clear()
        return campaign

    async def resume(self, campaign_id: str) -> Campaign:
        campaign = await self._current(campaign_id)
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
        campaign = await self._current(campaign_id)
        if campaign.state in (CampaignState.CANCELLED, CampaignState.FINISHED):
            raise CampaignConflict(f"campaign {campaign_id} is already {campaign.state.value}")
        run = self._runs.get(campaign_id)
        await self._set_state(campaign, CampaignState.CANCELLED)
        if run is not None:
            _cancel_run(run)
        if self.cluster is not None:
            # Every node cancels the devices it drives or finds unreachable (its scan).
            if run is None:
                await self._launch(campaign)
            return campaign
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
    async def _current(self, campaign_id: str) -> Campaign:
        """The campaign, its state re-read from the store in a cluster (another node may have
        paused, resumed or cancelled it a moment ago)."""
        campaign = self.get(campaign_id)
        if self.cluster is not None:
            stored = await self.store.load_campaign(campaign_id)
            if stored is not None:
                campaign.state, campaign.finished = stored.state, stored.finished
        return campaign

    async def _fleet(self) -> Sequence[Any]:
        """Every registration: this node's memory, or in a cluster the fleet in Redis, by pages."""
        if self.cluster is None:
            registrations: Sequence[Any] = self.server.registrations()
            return registrations
        fleet: builtins.list[Any] = []
        while True:
            page = await self.server.stores.registrations.fetch_query(
                RegistrationQuery(offset=len(fleet), limit=FLEET_PAGE)
            )
            fleet.extend(page.items)
            if not page.items or len(fleet) >= page.total:
                return fleet

    async def _registration(self, endpoint: str) -> Any:
        """The device's registration; in a cluster a node's memory holds only part of the fleet."""
        if self.cluster is None:
            return self.server.get_registration(endpoint)
        return await self.server.fetch_registration(endpoint)

    def _busy_endpoints(self) -> set[str]:
        return {
            ep
            for c in self.campaigns.values()
            if c.state in (CampaignState.RUNNING, CampaignState.PAUSED)
            for ep, record in c.devices.items()
            if record.phase not in TERMINAL
        }

    async def _launch(self, campaign: Campaign) -> None:
        if campaign.id in self._runs or campaign.id in self._launching:
            return
        self._launching.add(campaign.id)
        try:
            await self._launch_checked(campaign)
        finally:
            self._launching.discard(campaign.id)
        run = self._runs.get(campaign.id)
        cancelled = campaign.state is CampaignState.CANCELLED
        if self.cluster is not None and run is not None and cancelled:
            _cancel_run(run)  # its devices not told to Execute end cancelled

    async def _launch_checked(self, campaign: Campaign) -> None:
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
        self._route_while_running()
        self._publish_progress(campaign)

    async def _run(self, run: _Run) -> None:
        if self.cluster is not None:
            await self._run_cluster(run, self.cluster)
            return
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
            self._route_while_running()
            await self._finish(campaign)

    async def _run_cluster(self, run: _Run, cluster: CampaignCluster) -> None:
        """Drive the devices this node owns; tend the ones no node can reach (module doc)."""
        campaign = run.campaign
        slots = asyncio.Semaphore(campaign.spec.concurrency)
        try:
            while True:
                run.wake.clear()
                undone = [r for r in campaign.devices.values() if r.phase not in TERMINAL]
                if not undone:
                    break
                idle = [r for r in undone if r.endpoint not in run.inboxes]
                idle.sort(key=lambda r: r.phase is Phase.PENDING)  # under way first
                owners = await cluster.owners_of([r.endpoint for r in idle])
                alive = await cluster.alive(o for o in owners.values() if o is not None)
                for record in idle:
                    owner = owners[record.endpoint]
                    if owner == cluster.node_id:
                        held_back = record.phase is Phase.PENDING and not run.go.is_set()
                        if not held_back and not slots.locked():
                            await self._take(run, cluster, record, slots)
                    elif owner is None or owner not in alive:
                        await self._tend_unreachable(run, cluster, record)
                # asyncio.timeout, not wait_for: on 3.11 wait_for loses a cancellation
                # that comes as its wait ends (stop() then waited for the whole run).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_s):
                        await run.wake.wait()
            if run.drivers:
                await asyncio.gather(*run.drivers.values(), return_exceptions=True)
        except asyncio.CancelledError:
            for task in run.drivers.values():
                task.cancel()
            await asyncio.gather(*run.drivers.values(), return_exceptions=True)
            raise
        if self._runs.get(campaign.id) is run:
            del self._runs[campaign.id]
            self._route_while_running()
            await self._finish(campaign)

    async def _take(
        self, run: _Run, cluster: CampaignCluster, record: DeviceRecord, slots: asyncio.Semaphore
    ) -> None:
        """Drive a device this node owns, once its lease is ours; the stored record is the truth."""
        campaign, endpoint = run.campaign, record.endpoint
        if not await cluster.claim(campaign.id, endpoint):
            return  # another node drives it (the device moved here a moment ago)
        stored = await self.store.load_device(campaign.id, endpoint) or record
        campaign.devices[endpoint] = stored
        if stored.done:
            await cluster.release(campaign.id, endpoint)
            return
        await slots.acquire()
        run.inboxes[endpoint] = asyncio.Queue()
        run.drivers[endpoint] = asyncio.create_task(self._drive_slot(run, stored, slots))

    async def _tend_unreachable(
        self, run: _Run, cluster: CampaignCluster, record: DeviceRecord
    ) -> None:
        """A device no node can reach waits, within its timeouts; nothing is sent to it.

        It starts as not registered (WAITING: its attempt's deadline runs), and the
        deadline ends the wait as on one node; the node that receives its next
        Register or Update owns it and drives it on from there.
        """
        now = self.clock()
        due = record.deadline is not None and now >= record.deadline
        event: DeviceEvent
        if run.cancelled and not record.executed:
            event = Cancel()
        elif record.phase is Phase.PENDING and run.go.is_set():
            event = Begin(registered=False)
        elif due:
            event = Tick()
        else:
            return
        campaign = run.campaign
        if not await cluster.claim(campaign.id, record.endpoint):
            return
        try:
            stored = await self.store.load_device(campaign.id, record.endpoint) or record
            campaign.devices[record.endpoint] = stored
            if stored.done:
                return
            machine = self._machine(campaign, stored)
            # The actions asked for (a new attempt's check, clean-up) are not performed:
            # the device's next driver redoes its phase's request (machine resume).
            machine.handle(event, self.clock())
            await self._commit(campaign, machine)
        finally:
            await cluster.release(campaign.id, record.endpoint)

    async def _read_all_again(self) -> None:
        """The cluster's change feed came back after Redis restarted: what other nodes
        stored meanwhile was not announced, so every campaign is read again."""
        assert self.cluster is not None
        for campaign in await self.store.load():
            await self._apply_change(Change(self.cluster.node_id, campaign.id, None))

    async def _apply_change(self, change: Change) -> None:
        """Another node stored a campaign or device record: take it into this node's view."""
        campaign = self.campaigns.get(change.campaign)
        if change.device is not None:
            record = await self.store.load_device(change.campaign, change.device)
            if campaign is None or record is None:
                return  # a campaign's devices come with its first change (below)
            old = campaign.devices.get(record.endpoint)
            if old is not None and old.done and not record.done:
                return  # an end is final; an older write read late
            campaign.devices[record.endpoint] = record
            self._publish(
                CampaignEvent(
                    "CAMPAIGN_DEVICE", campaign.id, {"campaign": campaign.id, **record.to_json()}
                )
            )
            if old is None or old.phase is not record.phase:
                self._publish_progress(campaign)
            run = self._runs.get(campaign.id)
            if run is not None:
                run.wake.set()
            return
        stored = await self.store.load_campaign(change.campaign)
        if stored is None:
            return
        if campaign is None:
            stored.devices = await self.store.load_devices(stored.id)
            if stored.id in self.campaigns:
                return  # loaded meanwhile (start, or an earlier change)
            self.campaigns[stored.id] = stored
            if stored.finished is not None:
                self._ended.setdefault(stored.id, asyncio.Event()).set()
            elif stored.state in (CampaignState.RUNNING, CampaignState.PAUSED):
                await self._launch(stored)
            self._publish_progress(stored)
            return
        campaign.state, campaign.finished, campaign.error = (
            stored.state,
            stored.finished,
            stored.error,
        )
        run = self._runs.get(campaign.id)
        if campaign.state is CampaignState.PAUSED and run is not None:
            run.go.clear()
        elif campaign.state is CampaignState.RUNNING:
            if run is None:
                await self._launch(campaign)
            else:
                run.go.set()
        elif campaign.state is CampaignState.CANCELLED:
            if run is None and campaign.finished is None:
                await self._launch(campaign)
                run = self._runs.get(campaign.id)
            if run is not None:
                _cancel_run(run)
        if run is not None:
            run.wake.set()
        if campaign.finished is not None:
            self._ended.setdefault(campaign.id, asyncio.Event()).set()
        self._publish_progress(campaign)

    async def _keep_leases(self) -> None:
        """Refresh the leases of the devices this node drives; stop a driver whose lease is lost."""
        assert self.cluster is not None
        while True:
            await asyncio.sleep(self.cluster.lease_s / 3)
            held = [(cid, ep) for cid, run in self._runs.items() for ep in run.drivers]
            try:
                lost = await self.cluster.refresh(held)
            except StoreError as exc:
                logger.error("campaign leases not refreshed: %s", exc)
                continue
            for campaign_id, endpoint in lost:
                run = self._runs.get(campaign_id)
                task = None if run is None else run.drivers.get(endpoint)
                if task is not None:
                    logger.warning(
                        "campaign %s: lease of %s lost; another node may drive it",
                        campaign_id,
                        endpoint,
                    )
                    task.cancel()

    async def _finish(self, campaign: Campaign) -> None:
        if any(r.phase not in TERMINAL for r in campaign.devices.values()):
            return
        if self.cluster is not None:
            if not await self.cluster.claim_end(campaign.id):
                return  # another node writes the end; its change reaches this view
            stored = await self.store.load_campaign(campaign.id)
            if stored is not None:
                campaign.state = stored.state
        if campaign.state is CampaignState.RUNNING:
            campaign.state = CampaignState.FINISHED
        campaign.finished = self.clock()
        await self.store.save(campaign)
        if self.cluster is not None:
            await self.cluster.published(campaign.id)
        self._ended.setdefault(campaign.id, asyncio.Event()).set()
        self._publish_progress(campaign)
        logger.info("campaign %s %s: %s", campaign.id, campaign.state.value, campaign.totals())

    async def _drive_slot(self, run: _Run, record: DeviceRecord, slots: asyncio.Semaphore) -> None:
        try:
            await self._drive(run, record)
        except _HandOver as exc:
            logger.info("campaign %s: %s handed over: %s", run.campaign.id, record.endpoint, exc)
        except Exception:
            logger.exception("campaign %s: driving %s failed", run.campaign.id, record.endpoint)
        finally:
            run.inboxes.pop(record.endpoint, None)
            run.drivers.pop(record.endpoint, None)
            slots.release()
            if self.cluster is not None:
                with contextlib.suppress(StoreError):
                    await self.cluster.release(run.campaign.id, record.endpoint)
                run.wake.set()

    async def _drive(self, run: _Run, record: DeviceRecord) -> None:
        campaign = run.campaign
        machine = self._machine(campaign, record)
        inbox = run.inboxes[record.endpoint]
        now = self.clock()
        registered = await self._registration(record.endpoint) is not None
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
            if self.cluster is not None:
                # Wake up now and then to notice that the device moved to another node.
                wait = self.poll_s if wait is None else min(wait, self.poll_s)
            try:
                # Not wait_for: on Python 3.11 it returns the event when the cancel of a
                # stop() comes as the event does, and the driver went on to its deadline.
                async with asyncio.timeout(wait):
                    event = await inbox.get()
            except TimeoutError:
                if self.cluster is not None and not await self.cluster.reachable_here(
                    record.endpoint
                ):
                    raise _HandOver("another node owns the device now") from None
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
        if self.cluster is not None:
            await self.cluster.published(campaign.id, record.endpoint)
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
        if self.cluster is not None:
            await self.cluster.published(campaign.id)
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
        if self.cluster is not None and not await self.cluster.reachable_here(endpoint):
            # Only the owner reaches the device; the new owner redoes this phase's request.
            raise _HandOver(f"{action.value}: another node owns the device now")
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
        registration = await self._registration(endpoint)
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
        registration = await self._registration(endpoint)
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
    def _route_while_running(self) -> None:
        """Listen to the server's events while a campaign runs here, and only then.

        Without a listener (nor an SSE subscriber) the registrar builds no
        event at all (``EventBus.heard``): a storm with no campaign running
        pays nothing for campaigns.
        """
        if self._runs and self._stop_routing is None:
            self._stop_routing = self.server.events.add_listener(self._route_event)
        elif not self._runs and self._stop_routing is not None:
            self._stop_routing()
            self._stop_routing = None

    def _route_event(self, event: ServerEvent) -> None:
        """A server event into the inboxes of the devices' drivers, as it is published.

        A listener rather than a subscription: every event of a registration
        storm went through a buffer and a task step here; nothing is dropped.
        It listens only while a campaign runs (:meth:`_route_while_running`).
        """
        if not self._runs or event.origin is not None:
            # Relayed from another cluster node: that node owns the device and drives
            # it from its own events; a device that comes here brings its own Update.
            return
        if self.cluster is not None and isinstance(event, RegistrationEvent | UpdatedEvent):
            # The device may have just come to this node: look again at once.
            for run in self._runs.values():
                if event.endpoint in run.campaign.devices:
                    run.wake.set()
        for run in list(self._runs.values()):
            inbox = run.inboxes.get(event.endpoint)
            if inbox is not None:
                translated = _translate(event, run.campaign.devices[event.endpoint])
                if translated is not None:
                    inbox.put_nowait(translated)


class _HandOver(Exception):
    """The device is no longer this node's to drive (cluster): stop, keep its record."""


def _cancel_run(run: _Run) -> None:
    run.cancelled = True
    run.go.set()
    run.wake.set()
    for inbox in run.inboxes.values():
        inbox.put_nowait(Cancel())


class _Run:
    """A campaign being driven: its launcher task, the devices' inboxes, the pause gate."""

    def __init__(self, campaign: Campaign, image: FirmwareImage) -> None:
        self.campaign = campaign
        self.image = image
        self.go = asyncio.Event()
        self.cancelled = False
        #: Cluster: something changed, look at the devices again.
        self.wake = asyncio.Event()
        self.drivers: dict[str, asyncio.Task[None]] = {}
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

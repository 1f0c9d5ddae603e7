"""One device's way through a firmware campaign: a pure state machine.

Rules:

1. Everything that decides what happens to one device in a campaign lives here:
   events come in (:meth:`DeviceMachine.handle`), actions come out, ``now`` is
   passed in. No I/O, no clock, no asyncio; the driver
   (:mod:`lwm2m.server.firmware.campaigns`) performs the actions and turns their
   outcomes into events.
2. Transitions are the table :data:`TRANSITIONS`, keyed by (phase, event type).
   An event with no entry for the current phase is ignored (a late answer, a
   notification after the end), never an error.
3. ``executed`` becomes True when the machine asks for Execute /5/0/2, *before*
   the driver sends it (the driver stores the record first). From then on the
   package is never delivered again unless the device itself reported that the
   update failed (Update Result 2-9): a server restart mid-update resumes by
   waiting for confirmation, so nothing is updated twice. Execute alone is sent
   again only to a device still Downloaded with no Update Result (it never got
   the first one: nothing was installed).
4. Success is the device's new Firmware Version /3/0/3 equal to the image's
   version. A device that reports Update Result 1 (success) but keeps its old
   /3/0/3 is UNCONFIRMED: updated as far as it says, version not confirmed.
5. Times are wall-clock seconds (deadlines must survive a restart). Each attempt
   has a deadline ``timeout_s`` after it began; while waiting for the device,
   its status is polled every ``poll_s`` in case a notification was lost (or the
   observation died with a reboot).

Theory of operation (LwM2M 1.1 E.6, Firmware Update object 5)::

    PENDING --Begin--> WAITING (not registered) --Online--> CHECKING
    CHECKING: read /5/0/3, /5/0/5, /5/0/8, /5/0/9, /3/0/3 and the target paths
      --Checked--> DELIVERING (Write /5/0/0 push | /5/0/1 Package URI pull)
      --Delivered--> DOWNLOADING (observe /5/0/3, /5/0/5)
      --Status(Downloaded)--> UPDATING (Execute /5/0/2)
      --Status(result 1) | Reregistered--> CONFIRMING (read /3/0/3, /5/0/5)
      --VersionRead--> UPDATED | UNCONFIRMED | FAILED
    a failure with retries left goes back to CHECKING (a new attempt).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

__all__ = [
    "RESULT_REASONS",
    "TERMINAL",
    "Action",
    "Begin",
    "Cancel",
    "Checked",
    "Delivered",
    "DeviceEvent",
    "DeviceMachine",
    "DeviceRecord",
    "Executed",
    "Method",
    "Online",
    "Phase",
    "RequestFailed",
    "Reregistered",
    "Status",
    "Tick",
    "Unregistered",
    "VersionRead",
]


class Method(enum.StrEnum):
    """How the package reaches the device: pushed in a Write, or pulled from a URI."""

    PUSH = "push"
    COAP = "coap"
    HTTP = "http"


class Phase(enum.StrEnum):
    PENDING = "pending"
    WAITING = "waiting"  # not registered (offline or asleep before its first Register)
    CHECKING = "checking"
    DELIVERING = "delivering"
    DOWNLOADING = "downloading"
    UPDATING = "updating"
    CONFIRMING = "confirming"
    UPDATED = "updated"
    UNCONFIRMED = "unconfirmed"
    SKIPPED = "skipped"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset(
    {Phase.UPDATED, Phase.UNCONFIRMED, Phase.SKIPPED, Phase.FAILED, Phase.CANCELLED}
)

#: Firmware Update State /5/0/3.
IDLE, DOWNLOADING, DOWNLOADED, UPDATING = 0, 1, 2, 3

#: Update Result /5/0/5 codes 2-9 (LwM2M 1.1 E.6) as operators read them.
RESULT_REASONS: Mapping[int, str] = {
    2: "not enough flash memory for the package (Update Result 2)",
    3: "out of RAM during download (Update Result 3)",
    4: "connection lost during download (Update Result 4)",
    5: "integrity check failure (Update Result 5)",
    6: "unsupported package type (Update Result 6)",
    7: "invalid URI (Update Result 7)",
    8: "firmware update failed (Update Result 8)",
    9: "unsupported protocol (Update Result 9)",
}
#: Results a new attempt may cure; the others say the package or URI is wrong for the device.
RETRYABLE_RESULTS = frozenset({3, 4, 5, 8})

#: Protocol Support /5/0/8 values for each pull method (and coaps when the device uses DTLS).
_PROTOCOL = {Method.COAP: 0, Method.HTTP: 2}
_COAPS = 1


# ====================================================================== events
@dataclass(frozen=True, slots=True)
class DeviceEvent:
    name: ClassVar[str] = "event"


@dataclass(frozen=True, slots=True)
class Begin(DeviceEvent):
    """The campaign gives the device a slot; ``registered``: the server knows it now."""

    registered: bool


@dataclass(frozen=True, slots=True)
class Online(DeviceEvent):
    """The device (re-)registered or woke up."""


@dataclass(frozen=True, slots=True)
class Unregistered(DeviceEvent):
    """The device has no registration now (de-registered or expired): wait for it."""


@dataclass(frozen=True, slots=True)
class Checked(DeviceEvent):
    """The answers to the support check; None where the device has no such resource."""

    state: int | None
    result: int | None
    protocols: frozenset[int] | None
    delivery: int | None
    version: str | None
    matches: bool = True
    secure: bool = False


@dataclass(frozen=True, slots=True)
class Delivered(DeviceEvent):
    """The device acknowledged the package (push) or the Package URI (pull)."""


@dataclass(frozen=True, slots=True)
class Status(DeviceEvent):
    """State /5/0/3 and/or Update Result /5/0/5, from a notification or a read."""

    state: int | None = None
    result: int | None = None


@dataclass(frozen=True, slots=True)
class Executed(DeviceEvent):
    """The device acknowledged Execute /5/0/2."""


@dataclass(frozen=True, slots=True)
class Reregistered(DeviceEvent):
    """The device registered again after Execute (it rebooted into the new firmware)."""


@dataclass(frozen=True, slots=True)
class VersionRead(DeviceEvent):
    version: str | None
    result: int | None


@dataclass(frozen=True, slots=True)
class RequestFailed(DeviceEvent):
    """A request of the current phase failed; ``absent``: the device has no such object (4.04)."""

    reason: str
    absent: bool = False


@dataclass(frozen=True, slots=True)
class Tick(DeviceEvent):
    """Time passed (the driver calls at :meth:`DeviceMachine.timer`)."""


@dataclass(frozen=True, slots=True)
class Cancel(DeviceEvent):
    """The operator cancelled the campaign."""


# ===================================================================== actions
class Action(enum.Enum):
    READ_SUPPORT = "read-support"  # read /5/0/3,5,8,9 /3/0/3 and the target paths -> Checked
    RESET = "reset"  # Write "" to /5/0/1: back to Idle (cancel a stale download)
    DELIVER = "deliver"  # push: Write /5/0/0 (Block1); pull: Write /5/0/1 -> Delivered
    OBSERVE = "observe"  # observe /5/0/3 and /5/0/5 -> Status
    READ_STATUS = "read-status"  # read /5/0/3 and /5/0/5 -> Status
    EXECUTE = "execute"  # Execute /5/0/2 -> Executed
    READ_VERSION = "read-version"  # read /3/0/3 and /5/0/5 -> VersionRead
    STOP_OBSERVING = "stop-observing"  # cancel the observations of object 5


# ====================================================================== record
@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """What the store keeps per device (and the REST API shows)."""

    endpoint: str
    phase: Phase = Phase.PENDING
    attempts: int = 0
    result: int | None = None  # the last Update Result seen
    error: str = ""
    executed: bool = False
    delivered: bool = False
    old_version: str | None = None
    new_version: str | None = None
    attempt_started: float | None = None
    deadline: float | None = None
    poll_at: float | None = None
    finished: float | None = None

    @property
    def done(self) -> bool:
        return self.phase in TERMINAL

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "state": self.phase.value,
            "attempts": self.attempts,
            "lastResult": self.result,
            "error": self.error,
            "executed": self.executed,
            "delivered": self.delivered,
            "oldVersion": self.old_version,
            "newVersion": self.new_version,
            "attemptStarted": self.attempt_started,
            "deadline": self.deadline,
            "pollAt": self.poll_at,
            "finished": self.finished,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> DeviceRecord:
        return cls(
            endpoint=str(doc["endpoint"]),
            phase=Phase(doc.get("state", "pending")),
            attempts=int(doc.get("attempts", 0)),
            result=_opt_int(doc.get("lastResult")),
            error=str(doc.get("error", "")),
            executed=bool(doc.get("executed", False)),
            delivered=bool(doc.get("delivered", False)),
            old_version=_opt_str(doc.get("oldVersion")),
            new_version=_opt_str(doc.get("newVersion")),
            attempt_started=_opt_float(doc.get("attemptStarted")),
            deadline=_opt_float(doc.get("deadline")),
            poll_at=_opt_float(doc.get("pollAt")),
            finished=_opt_float(doc.get("finished")),
        )


# ===================================================================== machine
@dataclass(slots=True)
class DeviceMachine:
    """One device's campaign state; ``handle`` returns the actions to perform, in order."""

    record: DeviceRecord
    version: str  # the image's version: what /3/0/3 must say afterwards
    method: Method
    timeout_s: float
    retries: int
    poll_s: float = 5.0
    _actions: list[Action] = field(default_factory=list)

    @property
    def phase(self) -> Phase:
        return self.record.phase

    def timer(self) -> float | None:
        """When to call with :class:`Tick` next (None: no timer)."""
        if self.record.done or self.record.phase is Phase.PENDING:
            return None
        times = [t for t in (self.record.deadline, self.record.poll_at) if t is not None]
        return min(times) if times else None

    def handle(self, event: DeviceEvent, now: float) -> list[Action]:
        handler = TRANSITIONS.get((self.record.phase, type(event)))
        if handler is None:
            return []
        self._actions = []
        handler(self, event, now)
        actions, self._actions = self._actions, []
        return actions

    def resume(self, now: float) -> list[Action]:
        """After a server restart: redo the phase's request (never a Deliver after Execute)."""
        phase = self.record.phase
        if phase in (Phase.CHECKING, Phase.DELIVERING):
            # The delivery may or may not have landed; the check reads the device's state.
            self._set(phase=Phase.CHECKING)
            return [Action.READ_SUPPORT]
        if phase is Phase.DOWNLOADING:
            return [Action.OBSERVE]
        if phase in (Phase.UPDATING, Phase.CONFIRMING):
            self._set(phase=Phase.UPDATING, poll_at=now)
            return [Action.OBSERVE]
        return []

    # ------------------------------------------------------------------ handlers
    def _begin(self, event: Begin, now: float) -> None:
        self._new_attempt(now)
        if not event.registered:
            self._set(phase=Phase.WAITING)
            return
        self._set(phase=Phase.CHECKING)
        self._do(Action.READ_SUPPORT)

    def _unregistered(self, event: Unregistered, now: float) -> None:
        self._set(phase=Phase.WAITING)

    def _online(self, event: Online, now: float) -> None:
        self._set(phase=Phase.CHECKING)
        self._do(Action.READ_SUPPORT)

    def _checked(self, event: Checked, now: float) -> None:
        rec = self.record
        if rec.old_version is None and event.version is not None:
            self._set(old_version=event.version)
        if not event.matches:
            self._finish(
                Phase.SKIPPED, "does not match the campaign filter or the image target", now
            )
            return
        if event.version == self.version and not rec.executed:
            self._set(new_version=event.version)
            self._finish(Phase.SKIPPED, f"already runs version {self.version}", now)
            return
        unsupported = self._unsupported(event)
        if unsupported:
            self._finish(Phase.FAILED, unsupported, now)
            return
        if event.state == UPDATING:
            self._fail("the device is busy updating another package", now, retryable=True)
            return
        self._set(phase=Phase.DELIVERING, delivered=False)
        if event.state not in (IDLE, None):
            self._do(Action.RESET)
        self._do(Action.DELIVER)

    def _delivered(self, event: Delivered, now: float) -> None:
        self._set(phase=Phase.DOWNLOADING, delivered=True, poll_at=now + self.poll_s)
        self._do(Action.OBSERVE)

    def _status_downloading(self, event: Status, now: float) -> None:
        if event.result is not None:
            self._set(result=event.result)
        if event.state == DOWNLOADED:
            self._set(phase=Phase.UPDATING, executed=True, poll_at=now + self.poll_s)
            self._do(Action.EXECUTE)
            return
        if event.result is not None and event.result in RESULT_REASONS:
            self._fail_with(event.result, now)

    def _status_updating(self, event: Status, now: float) -> None:
        if event.result is not None:
            self._set(result=event.result)
        if event.state == DOWNLOADED and event.result in (0, None):
            # Downloaded with no result: the Execute never arrived (lost, or the server
            # stopped between storing and sending it). Nothing was installed: send again.
            self._do(Action.EXECUTE)
            return
        if event.result == 1:
            self._set(phase=Phase.CONFIRMING)
            self._do(Action.READ_VERSION)
            return
        if event.result is not None and event.result in RESULT_REASONS:
            # The device says it did not update: a new attempt may deliver again (rule 3).
            self._set(executed=False)
            self._fail_with(event.result, now)

    def _reregistered(self, event: Reregistered, now: float) -> None:
        self._set(phase=Phase.CONFIRMING)
        self._do(Action.READ_VERSION)

    def _version_read(self, event: VersionRead, now: float) -> None:
        if event.result is not None:
            self._set(result=event.result)
        if event.version is not None:
            self._set(new_version=event.version)
        if event.version == self.version:
            self._do(Action.STOP_OBSERVING)
            self._finish(Phase.UPDATED, "", now)
        elif event.result == 1:
            self._do(Action.STOP_OBSERVING)
            self._finish(
                Phase.UNCONFIRMED,
                f"the device reports success but still runs {event.version!r}, "
                f"not {self.version!r}",
                now,
            )
        elif event.result is not None and event.result in RESULT_REASONS:
            self._set(executed=False)
            self._fail_with(event.result, now)
        else:
            # Rebooted but not finished yet (or the result was reset): keep waiting.
            self._set(phase=Phase.UPDATING, poll_at=now + self.poll_s)

    def _request_failed(self, event: RequestFailed, now: float) -> None:
        if event.absent:
            self._finish(Phase.FAILED, f"no Firmware Update object: {event.reason}", now)
            return
        self._fail(event.reason, now, retryable=True)

    def _request_failed_waiting(self, event: RequestFailed, now: float) -> None:
        """A status read failed: the device may be rebooting; the deadline decides."""
        if self.record.phase is Phase.CONFIRMING:
            self._set(phase=Phase.UPDATING)

    def _tick(self, event: Tick, now: float) -> None:
        rec = self.record
        if rec.deadline is not None and now >= rec.deadline:
            self._timeout(now)
            return
        if rec.poll_at is not None and now >= rec.poll_at:
            if rec.phase in (Phase.DOWNLOADING, Phase.UPDATING):
                self._set(poll_at=now + self.poll_s)
                self._do(Action.READ_STATUS)
            else:
                self._set(poll_at=None)

    def _cancel(self, event: Cancel, now: float) -> None:
        if self.record.executed:
            return  # an update under way is confirmed, not abandoned (rule 3)
        if self.record.delivered or self.record.phase is Phase.DELIVERING:
            self._do(Action.STOP_OBSERVING)
            self._do(Action.RESET)
        self._finish(Phase.CANCELLED, "campaign cancelled", now)

    # ------------------------------------------------------------------ helpers
    def _timeout(self, now: float) -> None:
        rec = self.record
        if rec.phase is Phase.WAITING:
            self._finish(Phase.FAILED, "offline: did not register within the timeout", now)
        elif rec.executed:
            self._do(Action.STOP_OBSERVING)
            self._finish(
                Phase.FAILED, "no confirmation of the update within the timeout after Execute", now
            )
        else:
            self._fail(f"timed out while {rec.phase.value}", now, retryable=True)

    def _fail(self, reason: str, now: float, *, retryable: bool) -> None:
        rec = self.record
        if retryable and not rec.executed and rec.attempts <= self.retries:
            self._set(error=reason)
            self._new_attempt(now)
            self._set(phase=Phase.CHECKING)
            self._do(Action.READ_SUPPORT)
            return
        self._do(Action.STOP_OBSERVING)
        self._finish(Phase.FAILED, reason, now)

    def _fail_with(self, result: int, now: float) -> None:
        self._fail(RESULT_REASONS[result], now, retryable=result in RETRYABLE_RESULTS)

    def _new_attempt(self, now: float) -> None:
        rec = self.record
        self._set(
            attempts=rec.attempts + 1,
            attempt_started=now,
            deadline=now + self.timeout_s,
            poll_at=None,
            delivered=False,
        )

    def _finish(self, phase: Phase, error: str, now: float) -> None:
        self._set(phase=phase, error=error, finished=now, deadline=None, poll_at=None)

    def _unsupported(self, event: Checked) -> str:
        delivery = event.delivery
        if self.method is Method.PUSH:
            if delivery == 0:
                return "the device only pulls packages (Firmware Update Delivery Method 0)"
            return ""
        if delivery == 1:
            return "the device only accepts pushed packages (Firmware Update Delivery Method 1)"
        wanted = _COAPS if self.method is Method.COAP and event.secure else _PROTOCOL[self.method]
        if event.protocols is not None and wanted not in event.protocols:
            return f"the device does not support protocol {wanted} for pulling (/5/0/8)"
        return ""

    def _set(self, **changes: Any) -> None:
        self.record = replace(self.record, **changes)

    def _do(self, action: Action) -> None:
        self._actions.append(action)


_Handler = Callable[[DeviceMachine, Any, float], None]

_WAITING_FOR_DEVICE = (Phase.DOWNLOADING, Phase.UPDATING, Phase.CONFIRMING)
_ACTIVE = (
    Phase.WAITING,
    Phase.CHECKING,
    Phase.DELIVERING,
    Phase.DOWNLOADING,
    Phase.UPDATING,
    Phase.CONFIRMING,
)

TRANSITIONS: dict[tuple[Phase, type[DeviceEvent]], _Handler] = {
    (Phase.PENDING, Begin): DeviceMachine._begin,
    (Phase.PENDING, Cancel): DeviceMachine._cancel,
    (Phase.WAITING, Online): DeviceMachine._online,
    (Phase.CHECKING, Checked): DeviceMachine._checked,
    (Phase.CHECKING, Unregistered): DeviceMachine._unregistered,
    (Phase.CHECKING, RequestFailed): DeviceMachine._request_failed,
    (Phase.DELIVERING, Delivered): DeviceMachine._delivered,
    (Phase.DELIVERING, RequestFailed): DeviceMachine._request_failed,
    (Phase.DOWNLOADING, Status): DeviceMachine._status_downloading,
    (Phase.UPDATING, Status): DeviceMachine._status_updating,
    (Phase.UPDATING, Reregistered): DeviceMachine._reregistered,
    (Phase.CONFIRMING, Reregistered): DeviceMachine._reregistered,
    (Phase.CONFIRMING, VersionRead): DeviceMachine._version_read,
    **{(p, RequestFailed): DeviceMachine._request_failed_waiting for p in _WAITING_FOR_DEVICE},
    **{(p, Tick): DeviceMachine._tick for p in _ACTIVE},
    **{(p, Cancel): DeviceMachine._cancel for p in _ACTIVE},
}


# ===================================================================== Private
def _opt_int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]


def _opt_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)

"""The per-device campaign machine alone: events in, actions out, a fake ``now``."""

from __future__ import annotations

import pytest

from lwm2m.server.firmware.campaign_machine import (
    RESULT_REASONS,
    Action,
    Begin,
    Cancel,
    Checked,
    Delivered,
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

IDLE_CHECK = Checked(state=0, result=0, protocols=frozenset({0, 2}), delivery=2, version="1.0")


def machine(method: Method = Method.PUSH, retries: int = 1) -> DeviceMachine:
    return DeviceMachine(
        DeviceRecord("dev"), version="2.0", method=method, timeout_s=60, retries=retries, poll_s=5
    )


def to_updating(m: DeviceMachine) -> None:
    assert m.handle(Begin(registered=True), 0) == [Action.READ_SUPPORT]
    assert m.handle(IDLE_CHECK, 1) == [Action.DELIVER]
    assert m.handle(Delivered(), 2) == [Action.OBSERVE]
    assert m.handle(Status(state=1, result=0), 3) == []
    assert m.handle(Status(state=2), 4) == [Action.EXECUTE]
    assert m.record.executed and m.phase is Phase.UPDATING


def test_happy_path_confirms_by_version() -> None:
    m = machine()
    to_updating(m)
    assert m.handle(Executed(), 5) == []
    assert m.handle(Status(result=1), 6) == [Action.READ_VERSION]
    assert m.handle(VersionRead("2.0", 1), 7) == [Action.STOP_OBSERVING]
    assert m.phase is Phase.UPDATED and m.record.old_version == "1.0"
    assert m.record.finished == 7 and m.timer() is None


def test_reregistration_confirms_too() -> None:
    m = machine()
    to_updating(m)
    assert m.handle(Reregistered(), 6) == [Action.READ_VERSION]
    # Rebooted but still installing: keep waiting (and polling).
    assert m.handle(VersionRead("1.0", 0), 7) == []
    assert m.phase is Phase.UPDATING and m.timer() == 12
    assert m.handle(Tick(), 12) == [Action.READ_STATUS]
    assert m.handle(Status(state=0, result=1), 13) == [Action.READ_VERSION]
    m.handle(VersionRead("2.0", 1), 14)
    assert m.phase is Phase.UPDATED


def test_success_with_old_version_is_unconfirmed_not_failed() -> None:
    m = machine()
    to_updating(m)
    m.handle(Status(result=1), 6)
    m.handle(VersionRead("1.0", 1), 7)
    assert m.phase is Phase.UNCONFIRMED
    assert "'1.0'" in m.record.error and m.record.result == 1


@pytest.mark.parametrize("result", sorted(RESULT_REASONS))
def test_each_result_code_has_a_reason(result: int) -> None:
    m = machine(retries=0)
    m.handle(Begin(registered=True), 0)
    m.handle(IDLE_CHECK, 1)
    m.handle(Delivered(), 2)
    m.handle(Status(state=0, result=result), 3)
    assert m.phase is Phase.FAILED
    assert m.record.error == RESULT_REASONS[result] and f"Update Result {result}" in m.record.error


def test_retryable_failure_starts_a_new_attempt_until_retries_run_out() -> None:
    m = machine(retries=1)
    to_updating(m)
    # The update failed: the device says so, so delivering again is allowed.
    assert m.handle(Status(state=2, result=8), 6) == [Action.READ_SUPPORT]
    assert m.phase is Phase.CHECKING and m.record.attempts == 2 and not m.record.executed
    assert m.record.deadline == 66
    # Still Downloaded: reset, then deliver again.
    downloaded = Checked(state=2, result=8, protocols=None, delivery=2, version="1.0")
    assert m.handle(downloaded, 7) == [Action.RESET, Action.DELIVER]
    m.handle(Delivered(), 8)
    m.handle(Status(state=2), 9)
    assert m.handle(Status(state=2, result=8), 10) == [Action.STOP_OBSERVING]
    assert m.phase is Phase.FAILED and m.record.attempts == 2


def test_permanent_results_are_not_retried() -> None:
    m = machine(retries=5)
    m.handle(Begin(registered=True), 0)
    m.handle(IDLE_CHECK, 1)
    m.handle(Delivered(), 2)
    m.handle(Status(state=0, result=6), 3)
    assert m.phase is Phase.FAILED and m.record.attempts == 1


def test_timeout_after_execute_never_redelivers() -> None:
    m = machine(retries=3)
    to_updating(m)
    assert m.handle(Tick(), 60) == [Action.STOP_OBSERVING]
    assert m.phase is Phase.FAILED and "after Execute" in m.record.error
    assert m.record.attempts == 1


def test_resume_after_execute_waits_and_never_delivers() -> None:
    m = machine()
    to_updating(m)
    restarted = DeviceMachine(
        DeviceRecord.from_json(m.record.to_json()), "2.0", Method.PUSH, 60, 1, poll_s=5
    )
    assert restarted.record == m.record
    assert restarted.resume(30) == [Action.OBSERVE]
    assert restarted.phase is Phase.UPDATING
    # A Checked (as if a stale check answered) is ignored in this phase.
    assert restarted.handle(IDLE_CHECK, 31) == []
    assert restarted.handle(RequestFailed("no answer"), 32) == []
    assert restarted.phase is Phase.UPDATING


def test_resume_before_execute_checks_again() -> None:
    m = machine()
    m.handle(Begin(registered=True), 0)
    m.handle(IDLE_CHECK, 1)
    assert m.phase is Phase.DELIVERING
    assert m.resume(2) == [Action.READ_SUPPORT] and m.phase is Phase.CHECKING


@pytest.mark.parametrize(
    ("method", "check", "reason"),
    [
        (Method.PUSH, Checked(0, 0, None, 0, "1.0"), "only pulls"),
        (Method.COAP, Checked(0, 0, None, 1, "1.0"), "only accepts pushed"),
        (Method.HTTP, Checked(0, 0, frozenset({0}), 2, "1.0"), "protocol 2"),
        (Method.COAP, Checked(0, 0, frozenset({0}), 2, "1.0", secure=True), "protocol 1"),
    ],
)
def test_unsupported_delivery_fails_without_touching_the_device(
    method: Method, check: Checked, reason: str
) -> None:
    m = machine(method)
    m.handle(Begin(registered=True), 0)
    assert m.handle(check, 1) == []
    assert m.phase is Phase.FAILED and reason in m.record.error


def test_already_updated_or_filtered_devices_are_skipped() -> None:
    m = machine()
    m.handle(Begin(registered=True), 0)
    m.handle(Checked(0, 0, None, 2, "2.0"), 1)
    assert m.phase is Phase.SKIPPED and "already runs" in m.record.error
    m = machine()
    m.handle(Begin(registered=True), 0)
    m.handle(Checked(0, 0, None, 2, "1.0", matches=False), 1)
    assert m.phase is Phase.SKIPPED and "filter" in m.record.error


def test_missing_object_fails_at_once() -> None:
    m = machine(retries=3)
    m.handle(Begin(registered=True), 0)
    m.handle(RequestFailed("4.04", absent=True), 1)
    assert m.phase is Phase.FAILED and "no Firmware Update object" in m.record.error


def test_offline_device_waits_for_its_register_within_the_deadline() -> None:
    m = machine()
    assert m.handle(Begin(registered=False), 0) == []
    assert m.phase is Phase.WAITING and m.timer() == 60
    assert m.handle(Tick(), 59) == []
    assert m.handle(Online(), 59.5) == [Action.READ_SUPPORT]
    m = machine()
    m.handle(Begin(registered=False), 0)
    m.handle(Tick(), 60)
    assert m.phase is Phase.FAILED and "offline" in m.record.error


def test_cancel_before_execute_resets_after_execute_is_ignored() -> None:
    m = machine()
    m.handle(Begin(registered=True), 0)
    m.handle(IDLE_CHECK, 1)
    m.handle(Delivered(), 2)
    assert m.handle(Cancel(), 3) == [Action.STOP_OBSERVING, Action.RESET]
    assert m.phase is Phase.CANCELLED
    m = machine()
    to_updating(m)
    assert m.handle(Cancel(), 5) == [] and m.phase is Phase.UPDATING
    pending = machine()
    assert pending.handle(Cancel(), 0) == [] and pending.phase is Phase.CANCELLED


def test_late_events_after_the_end_are_ignored() -> None:
    m = machine()
    to_updating(m)
    m.handle(Status(result=1), 6)
    m.handle(VersionRead("2.0", 1), 7)
    for event in (Status(state=0, result=8), Reregistered(), Tick(), Cancel(), Online()):
        assert m.handle(event, 8) == []
    assert m.phase is Phase.UPDATED


def test_execute_is_sent_again_only_to_a_device_that_never_got_it() -> None:
    m = machine()
    to_updating(m)
    # Still Downloaded, no result: the Execute was lost (or never left before a restart).
    assert m.handle(Status(state=2, result=0), 10) == [Action.EXECUTE]
    assert m.handle(Status(state=3, result=0), 11) == []
    # Downloaded with a failure result is a failed update, not a lost Execute.
    assert m.handle(Status(state=2, result=8), 12) == [Action.READ_SUPPORT]


def test_a_device_gone_during_the_check_waits_for_its_register() -> None:
    m = machine()
    m.handle(Begin(registered=True), 0)
    assert m.handle(Unregistered(), 1) == []
    assert m.phase is Phase.WAITING and m.record.attempts == 1 and m.timer() == 60
    assert m.handle(Online(), 2) == [Action.READ_SUPPORT]

"""Per-registration log lines within a budget, counts in the periodic summary."""

from __future__ import annotations

import logging

import pytest

from lwm2m.server.registration_log import RegistrationLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_storm_goes_to_debug_beyond_the_budget(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.registration_log")
    clock = Clock()
    log = RegistrationLog(logger, lines_per_s=10.0, burst=5.0, clock=clock)
    caplog.set_level(logging.DEBUG, logger=logger.name)
    for n in range(20):
        log.registered += 1
        log.line("registered dev-%d", n)
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert [r.getMessage() for r in infos] == [f"registered dev-{n}" for n in range(5)]
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 15
    assert log.suppressed == 15
    clock.now += 0.5  # the budget refills: five more lines at INFO
    caplog.clear()
    for n in range(7):
        log.line("updated dev-%d", n)
    assert sum(r.levelno == logging.INFO for r in caplog.records) == 5

    caplog.clear()
    clock.now += 9.5
    log.summary(live=20)
    (summary,) = caplog.records
    assert summary.levelno == logging.INFO
    assert summary.getMessage() == (
        "registrations: 20 live; in the last 10 s: 20 Register, 0 Update, 0 De-register, "
        "0 expired (17 lines at DEBUG only)"
    )
    caplog.clear()
    log.summary(live=20)  # nothing happened since: no line
    assert caplog.records == []


def test_info_disabled_costs_no_budget(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.registration_log.quiet")
    caplog.set_level(logging.WARNING, logger=logger.name)
    log = RegistrationLog(logger, lines_per_s=1.0, burst=1.0, clock=Clock())
    for n in range(10):
        log.line("registered dev-%d", n)
    assert caplog.records == [] and log.suppressed == 0


def test_beyond_the_budget_with_debug_off_there_is_nothing_to_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The storm's case at the default level: the registrar gets no emitter, builds no
    line, and the summary still counts what was left out."""
    logger = logging.getLogger("test.registration_log.info")
    caplog.set_level(logging.INFO, logger=logger.name)
    clock = Clock()
    log = RegistrationLog(logger, lines_per_s=10.0, burst=2.0, clock=clock)
    emitters = [log.emitter() for _ in range(5)]
    assert emitters[:2] == [logger.info, logger.info]
    assert emitters[2:] == [None, None, None]
    assert log.suppressed == 3
    caplog.set_level(logging.DEBUG, logger=logger.name)
    assert log.emitter() == logger.debug and log.suppressed == 4
    clock.now += 1.0  # ten tokens back, two kept (the burst)
    assert log.emitter() == logger.info

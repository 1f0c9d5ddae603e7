"""Per-registration log lines within a budget, counts in the periodic summary."""

from __future__ import annotations

import logging

import pytest
from server_helpers import register_message

from lwm2m.coap.codes import Code
from lwm2m.coap.endpoint import Endpoint
from lwm2m.server import LwM2MServer, ServerConfig
from lwm2m.server.registration_log import RegistrationLog
from lwm2m.stores.memory import MemoryStores


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


async def test_a_register_replacing_a_registration_is_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A re-Register (every request of a storm after its first round) logs one line that
    names the registration it replaces, not a de-registration line too."""
    server = LwM2MServer(MemoryStores(), config=ServerConfig(coap_port=0))
    await server.start()
    device = await Endpoint.create("127.0.0.1", 0)
    caplog.set_level(logging.INFO, logger="lwm2m.server.registrar")
    try:
        first = await device.request(register_message(("ep=again",)), server.coap_address)
        second = await device.request(register_message(("ep=again",)), server.coap_address)
    finally:
        await device.close()
        await server.stop()
    assert first.code == second.code == Code.CREATED
    old_id, new_id = first.location_path[1], second.location_path[1]
    lines = [r.getMessage() for r in caplog.records if r.name == "lwm2m.server.registrar"]
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"registered again id={old_id} ") and "replacing" not in lines[0]
    assert lines[1].startswith(f"registered again id={new_id} ")
    assert lines[1].endswith(f", replacing id={old_id}")

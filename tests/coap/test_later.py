"""Later: a value handed to plain callbacks, in order, when it is set."""

from __future__ import annotations

import asyncio
import logging

import pytest

from lwm2m.coap.later import Later


def test_callbacks_run_in_order_when_resolved_and_at_once_after() -> None:
    later: Later[int] = Later()
    seen: list[tuple[str, int]] = []
    later.then(lambda v: seen.append(("a", v)))
    later.then(lambda v: seen.append(("b", v)))
    assert not later.done and seen == []
    later.resolve(7)
    assert later.done and later.result() == 7
    assert seen == [("a", 7), ("b", 7)]
    later.then(lambda v: seen.append(("c", v)))
    assert seen[-1] == ("c", 7)


def test_resolving_twice_or_reading_early_is_an_error() -> None:
    later: Later[int] = Later()
    with pytest.raises(RuntimeError):
        later.result()
    later.resolve(1)
    with pytest.raises(RuntimeError):
        later.resolve(2)
    assert later.result() == 1


def test_a_failing_callback_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    later: Later[str] = Later()
    seen: list[str] = []

    def fails(_: str) -> None:
        raise ValueError("boom")

    later.then(fails)
    later.then(seen.append)
    with caplog.at_level(logging.ERROR, logger="lwm2m.coap.later"):
        later.resolve("x")
    assert seen == ["x"]
    assert "boom" in caplog.text


async def test_it_can_be_awaited_before_and_after_it_is_resolved() -> None:
    later: Later[str] = Later()
    asyncio.get_running_loop().call_later(0.01, later.resolve, "v")
    assert await later == "v"
    assert await later == "v"

"""Work put off to the end of the endpoint's dispatch (``lwm2m.coap.dispatch_end``)."""

from __future__ import annotations

import logging
import threading

import pytest

from lwm2m.coap.dispatch_end import at_dispatch_end, dispatching


def test_outside_a_dispatch_nothing_is_taken() -> None:
    ran: list[int] = []
    assert not at_dispatch_end(lambda: ran.append(1))
    assert ran == []


def test_inside_it_runs_once_the_block_ends_in_order() -> None:
    ran: list[str] = []
    with dispatching():
        assert at_dispatch_end(lambda: ran.append("a"))
        assert at_dispatch_end(lambda: ran.append("b"))
        assert ran == []
    assert ran == ["a", "b"]
    assert not at_dispatch_end(lambda: ran.append("late"))  # the scope is gone


def test_a_failing_callback_is_logged_and_the_others_run(caplog: pytest.LogCaptureFixture) -> None:
    ran: list[str] = []

    def broken() -> None:
        raise RuntimeError("bug")

    with caplog.at_level(logging.ERROR, logger="lwm2m.coap.dispatch_end"), dispatching():
        at_dispatch_end(broken)
        at_dispatch_end(lambda: ran.append("after"))
    assert ran == ["after"]
    assert any("end of a dispatch" in r.message for r in caplog.records)


def test_a_block_that_raises_still_runs_what_it_was_given() -> None:
    ran: list[str] = []
    with pytest.raises(ValueError), dispatching():
        at_dispatch_end(lambda: ran.append("flushed"))
        raise ValueError("the dispatch failed")
    assert ran == ["flushed"]


def test_nested_blocks_run_their_own_at_their_own_end() -> None:
    ran: list[str] = []
    with dispatching():
        at_dispatch_end(lambda: ran.append("outer"))
        with dispatching():
            at_dispatch_end(lambda: ran.append("inner"))
        assert ran == ["inner"]
    assert ran == ["inner", "outer"]


def test_another_thread_is_not_inside_this_dispatch() -> None:
    seen: list[bool] = []
    with dispatching():
        thread = threading.Thread(target=lambda: seen.append(at_dispatch_end(lambda: None)))
        thread.start()
        thread.join()
    assert seen == [False]

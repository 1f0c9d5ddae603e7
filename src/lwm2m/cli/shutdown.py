"""Bounded shutdown for the long-running commands (client, simulator, server, bootstrap).

A service manager gives a stopping process a fixed time (systemd: 90 s)
before it sends SIGKILL, and a user at a terminal expects Ctrl-C to work.
So every command stops in two steps:

* the first SIGINT/SIGTERM starts a graceful stop bounded by
  ``--stop-timeout`` seconds (De-registers, in-flight store writes);
* a second one ends the process at once (``os._exit``): whatever was
  acknowledged is already durable (stores commit before answering, the
  client's state file is written synchronously), so skipping the rest loses
  only work nobody was told is done.

Nobody may need to send that second signal: a stop still running
:data:`REPORT_AFTER_S` past its bound logs what it waits on (every pending
task and where it is suspended), and one still running :data:`EXIT_AFTER_S`
past it is ended by faulthandler's watchdog thread, which prints every
thread's stack first. Both name the step that broke the bound, which a
service manager's SIGKILL would not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import faulthandler
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from lwm2m.coap.endpoint import NO_RESPONSE, Handler, IncomingRequest, NoResponse
from lwm2m.coap.later import Later
from lwm2m.coap.message import Message

logger = logging.getLogger(__name__)

#: Default bound of a graceful stop, in seconds: well below a service manager's patience.
DEFAULT_STOP_TIMEOUT_S = 5.0

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: How long an abandoned step may take to unwind its cancellation.
_CANCEL_GRACE_S = 1.0
#: Past the stop's bound, after this many seconds the tasks still pending are logged...
REPORT_AFTER_S = 3.0
#: ... and after this many the process ends (exit status 1) with every thread's stack.
EXIT_AFTER_S = 10.0


def add_stop_timeout_argument(
    parser: argparse.ArgumentParser, what: str, *, watchdog: bool = True
) -> None:
    """``watchdog``: the command arms :class:`StopSignals`' watchdog, and its help says so."""
    ends = f", and so does a stop still running S + {EXIT_AFTER_S:g} s after it (exit 1)"
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=DEFAULT_STOP_TIMEOUT_S,
        metavar="S",
        help=f"on SIGINT/SIGTERM, {what} for at most S seconds "
        f"(default {DEFAULT_STOP_TIMEOUT_S:g}); a second signal exits at once"
        f"{ends if watchdog else ''}",
    )


def check_stop_timeout(value: float) -> str | None:
    """Why ``--stop-timeout`` is unusable, or None."""
    if not value >= 0:  # also rejects NaN
        return "--stop-timeout must be zero or more seconds"
    return None


class StopSignals:
    """SIGINT/SIGTERM: the first sets :attr:`requested`, a second exits the process now.

    With ``stop_timeout_s``, the first signal also arms the watchdog of the
    module docstring (counted from the signal, as a service manager counts).
    """

    def __init__(
        self,
        name: str,
        exit_now: Callable[[int], None] = os._exit,
        *,
        stop_timeout_s: float | None = None,
    ) -> None:
        self.name = name
        self.requested = asyncio.Event()
        self._exit_now = exit_now
        self.stop_timeout_s = stop_timeout_s

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in _SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._received, sig)

    def _received(self, sig: signal.Signals) -> None:
        if not self.requested.is_set():
            self.requested.set()
            self._arm_watchdog()
            return
        # The graceful stop is taking too long for the user: leave now.
        sys.stderr.write(f"lwm2m {self.name}: {sig.name} again, exiting now\n")
        sys.stderr.flush()
        self._exit_now(128 + int(sig))

    def _arm_watchdog(self) -> None:
        if self.stop_timeout_s is None:
            return
        asyncio.get_running_loop().call_later(
            self.stop_timeout_s + REPORT_AFTER_S, self._report_pending
        )
        # A thread of its own: it fires even when the loop is blocked, or already closed
        # while asyncio.run() joins a thread.
        try:
            faulthandler.dump_traceback_later(
                self.stop_timeout_s + EXIT_AFTER_S, exit=True, file=sys.stderr
            )
        except (AttributeError, OSError, RuntimeError, ValueError) as exc:
            # stderr is not a file (closed, or replaced by an object without a descriptor):
            # the report above still goes through logging.
            logger.warning("stop watchdog thread not armed: %s", exc)

    def _report_pending(self) -> None:
        assert self.stop_timeout_s is not None
        logger.error(
            "stop still running %g s after the signal (bound %g s); waiting on:\n%s",
            self.stop_timeout_s + REPORT_AFTER_S,
            self.stop_timeout_s,
            pending_tasks_text(),
        )


def disarm_watchdog() -> None:
    """The stop is over (its loop has closed): no forced exit for a caller that goes on."""
    faulthandler.cancel_dump_traceback_later()


def pending_tasks_text() -> str:
    """Every pending task of the running loop, and its chain of awaits down to what it
    waits on (a Task's own stack shows only its outermost coroutine)."""
    lines = []
    for task in sorted(asyncio.all_tasks(), key=lambda t: t.get_name()):
        lines.append(f"  task {task.get_name()!r}:")
        awaited: Any = task.get_coro()
        for _ in range(_AWAIT_DEPTH):
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is None:
                break
            code = frame.f_code
            lines.append(f"    {code.co_filename}:{frame.f_lineno} in {code.co_name}")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        # The future the Task is parked on (the chain above ends in its iterator).
        waiter = getattr(task, "_fut_waiter", None)
        if waiter is not None:
            lines.append(f"    waiting on {waiter!r}")
    return "\n".join(lines) or "  (no task)"


#: How deep a chain of awaits :func:`pending_tasks_text` follows.
_AWAIT_DEPTH = 16


async def bounded(step: Awaitable[object], timeout_s: float, what: str) -> bool:
    """Await one shutdown step for at most ``timeout_s``; False (and a warning) when cut short."""
    task = asyncio.ensure_future(step)
    try:
        await asyncio.wait_for(asyncio.shield(task), max(0.0, timeout_s))
    except TimeoutError:
        logger.warning("%s: not done within %.1f s, abandoned", what, timeout_s)
        task.cancel()
        # A step that ignores its cancellation must not hold the process either.
        await asyncio.wait({task}, timeout=_CANCEL_GRACE_S)
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: it failed while being abandoned
        return False
    except Exception:
        logger.exception("%s failed", what)
        return False
    return True


class RequestGate:
    """Admits CoAP requests until closed; then new ones go unanswered, those in flight finish.

    A stopping server must not take on work it may be unable to finish, yet
    a request it has started (a Register waiting for its store commit) should
    get its answer. Unanswered requests are declined silently (no ACK, no
    RST): the peer retransmits, and a restarted server answers.
    """

    def __init__(self) -> None:
        self._open = True
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def admit(self, handler: Handler) -> Handler:
        """``handler`` behind this gate.

        A request the handler answers on the spot (a plain return, no awaitable)
        is never in flight: nothing can run between its start and its answer.
        """

        def gated(
            request: IncomingRequest,
        ) -> Awaitable[Message | NoResponse] | Message | NoResponse:
            if not self._open:
                return NO_RESPONSE
            pending = handler(request)
            if isinstance(pending, (Message, NoResponse)):
                return pending
            self._in_flight += 1
            if self._in_flight == 1:  # else already cleared (a call each, a storm's every request)
                self._idle.clear()
            if isinstance(pending, Later):
                pending.then(self._finished)
                return pending
            return self._finish(pending)

        return gated

    async def _finish(self, pending: Awaitable[Message | NoResponse]) -> Message | NoResponse:
        try:
            return await pending
        finally:
            self._finished(None)

    def _finished(self, _: object) -> None:
        self._in_flight -= 1
        if not self._in_flight:
            self._idle.set()

    def close(self) -> None:
        self._open = False

    async def drained(self) -> None:
        """Wait until no admitted request is being handled."""
        await self._idle.wait()

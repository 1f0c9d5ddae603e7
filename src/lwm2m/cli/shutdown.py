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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable

from lwm2m.coap.endpoint import NO_RESPONSE, Handler, IncomingRequest, NoResponse
from lwm2m.coap.message import Message

logger = logging.getLogger(__name__)

#: Default bound of a graceful stop, in seconds: well below a service manager's patience.
DEFAULT_STOP_TIMEOUT_S = 5.0

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: How long an abandoned step may take to unwind its cancellation.
_CANCEL_GRACE_S = 1.0


def add_stop_timeout_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--stop-timeout",
        type=float,
        default=DEFAULT_STOP_TIMEOUT_S,
        metavar="S",
        help=f"on SIGINT/SIGTERM, {what} for at most S seconds "
        f"(default {DEFAULT_STOP_TIMEOUT_S:g}); a second signal exits at once",
    )


def check_stop_timeout(value: float) -> str | None:
    """Why ``--stop-timeout`` is unusable, or None."""
    if not value >= 0:  # also rejects NaN
        return "--stop-timeout must be zero or more seconds"
    return None


class StopSignals:
    """SIGINT/SIGTERM: the first sets :attr:`requested`, a second exits the process now."""

    def __init__(self, name: str, exit_now: Callable[[int], None] = os._exit) -> None:
        self.name = name
        self.requested = asyncio.Event()
        self._exit_now = exit_now

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in _SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._received, sig)

    def _received(self, sig: signal.Signals) -> None:
        if not self.requested.is_set():
            self.requested.set()
            return
        # The graceful stop is taking too long for the user: leave now.
        sys.stderr.write(f"lwm2m {self.name}: {sig.name} again, exiting now\n")
        sys.stderr.flush()
        self._exit_now(128 + int(sig))


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
            self._idle.clear()
            return self._finish(pending)

        return gated

    async def _finish(self, pending: Awaitable[Message | NoResponse]) -> Message | NoResponse:
        try:
            return await pending
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    def close(self) -> None:
        self._open = False

    async def drained(self) -> None:
        """Wait until no admitted request is being handled."""
        await self._idle.wait()

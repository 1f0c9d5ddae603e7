"""Event loop selection: uvloop when it is installed, asyncio's own loop otherwise.

Using uvloop is the application's choice (it changes the whole process), so
nothing in the library installs it implicitly; ``lwm2m`` entry points call this.
"""

from __future__ import annotations

import asyncio
import importlib


def install_best_event_loop() -> bool:
    """Make new event loops uvloop loops if uvloop imports; True if it did."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True


def new_event_loop(*, prefer_uvloop: bool = True) -> asyncio.AbstractEventLoop:
    """A fresh loop: uvloop's if wanted and available, else asyncio's default."""
    if prefer_uvloop:
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            pass
        else:
            loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
            return loop
    # asyncio's own loop even where the policy is uvloop's (install_best_event_loop ran).
    return asyncio.DefaultEventLoopPolicy().new_event_loop()


def reads_datagrams_in_batches(loop: asyncio.AbstractEventLoop) -> bool:
    """True when ``loop`` hands a socket's waiting datagrams over in one go (uvloop:
    libuv reads up to 32 each wake-up), so answering them together pays. asyncio's
    own loop reads one datagram a readiness event: a deferred answer only waits."""
    return type(loop).__module__.split(".", 1)[0] == "uvloop"

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
    return asyncio.new_event_loop()

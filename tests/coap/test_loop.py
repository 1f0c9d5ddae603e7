"""Event loop selection helpers."""

from __future__ import annotations

import asyncio
import importlib.util

from lwm2m.coap.loop import install_best_event_loop, new_event_loop

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None


def test_new_event_loop() -> None:
    plain = new_event_loop(prefer_uvloop=False)
    best = new_event_loop()
    try:
        assert type(plain).__module__.startswith("asyncio")
        assert type(best).__module__.startswith("uvloop" if HAVE_UVLOOP else "asyncio")
    finally:
        plain.close()
        best.close()


def test_install_best_event_loop() -> None:
    try:
        assert install_best_event_loop() is HAVE_UVLOOP
        loop = asyncio.new_event_loop()
        try:
            assert type(loop).__module__.startswith("uvloop" if HAVE_UVLOOP else "asyncio")
        finally:
            loop.close()
    finally:
        asyncio.set_event_loop_policy(None)

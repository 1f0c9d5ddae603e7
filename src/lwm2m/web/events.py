"""Server-sent events: ``GET /api/event[?ep=]`` (Leshan's event stream).

Each event is ``event: KIND`` plus ``data: {json}``; a comment line every
``keepalive_s`` keeps proxies from closing an idle stream and lets the
server notice a client that went away. A stream ends when the HTTP client
disconnects (Starlette cancels the generator) or when the hub closes
(server shutdown), so uvicorn's graceful shutdown never waits on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence

from lwm2m.coap.tasks import cancel_and_wait
from lwm2m.web.backend import WebEvent

logger = logging.getLogger(__name__)

EventSource = Callable[[str | None], AsyncIterator[WebEvent]]

DEFAULT_KEEPALIVE_S = 15.0
#: A stream's own buffer: a browser that stops reading loses old events, not memory.
STREAM_BUFFER = 1000


def format_event(event: WebEvent) -> bytes:
    """One SSE frame; a single ``data:`` line suffices because JSON has no raw newlines."""
    data = json.dumps(event.data, separators=(",", ":"), ensure_ascii=False)
    # json.dumps never emits raw newlines, so one data line is enough.
    return f"event: {event.kind}\ndata: {data}\n\n".encode()


class EventHub:
    """Merges the backends' event sources into per-request SSE byte streams."""

    def __init__(
        self, sources: Sequence[EventSource], keepalive_s: float = DEFAULT_KEEPALIVE_S
    ) -> None:
        self._sources = list(sources)
        self.keepalive_s = keepalive_s
        self._closing = asyncio.Event()
        self.open_streams = 0

    @property
    def closed(self) -> bool:
        """True once shutdown began; new streams end at once."""
        return self._closing.is_set()

    def close(self) -> None:
        """End every open stream (called when the HTTP server starts shutting down)."""
        self._closing.set()

    async def stream(self, endpoint: str | None) -> AsyncIterator[bytes]:
        """The SSE byte stream of one HTTP request, of one endpoint when given.

        Each request gets its own iterators from every source, so a slow browser
        only loses its own oldest events.
        """
        queue: asyncio.Queue[WebEvent] = asyncio.Queue(STREAM_BUFFER)
        iterators = [source(endpoint) for source in self._sources]
        pumps = [asyncio.create_task(self._pump(it, queue)) for it in iterators]
        closing = asyncio.create_task(self._closing.wait())
        self.open_streams += 1
        # Kept outside the loop so that a stream cancelled while waiting (the HTTP
        # client went away) cancels its pending get instead of leaking the task.
        getter: asyncio.Task[WebEvent] | None = None
        try:
            # Sent at once so the client sees the stream open before any event.
            yield b"retry: 3000\n: connected\n\n"
            while not self._closing.is_set():
                getter = asyncio.create_task(queue.get())
                done, _ = await asyncio.wait(
                    {getter, closing}, timeout=self.keepalive_s, return_when=asyncio.FIRST_COMPLETED
                )
                if getter in done:
                    yield format_event(getter.result())
                    continue
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getter
                if closing in done:
                    break
                yield b": keep-alive\n\n"
        finally:
            self.open_streams -= 1
            if getter is not None and not getter.done():
                getter.cancel()
            closing.cancel()
            await cancel_and_wait(pumps)
            for it in iterators:
                aclose = getattr(it, "aclose", None)
                if aclose is not None:
                    with contextlib.suppress(Exception):
                        await aclose()

    async def _pump(self, events: AsyncIterator[WebEvent], queue: asyncio.Queue[WebEvent]) -> None:
        try:
            async for event in events:
                if queue.full():
                    queue.get_nowait()  # drop the oldest, keep the stream live
                queue.put_nowait(event)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("event source failed; the stream continues without it")

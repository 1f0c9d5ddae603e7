"""``GET /api/event``: event format, endpoint filter, keep-alives, and clean endings."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
from web_fakes import Running, SseReader

from lwm2m.web.backend import WebEvent
from lwm2m.web.events import format_event


def test_format_event_is_one_sse_block() -> None:
    text = format_event(WebEvent("NOTIFICATION", "d", {"ep": "d", "val": "a\nb"})).decode()
    assert text == 'event: NOTIFICATION\ndata: {"ep":"d","val":"a\\nb"}\n\n'


async def test_events_are_filtered_by_endpoint(running: Running) -> None:
    async with running.http.stream("GET", "/api/event?ep=dev-2") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "no-cache"
        events = SseReader(stream.aiter_lines())
        assert await events.next_comment() == "connected"
        await asyncio.wait_for(running.devices.bus.subscribed.wait(), 5)
        running.devices.add("dev-1b", {"/3/0/9": 1})
        running.devices.add("dev-2", {"/3/0/9": 2})
        kind, data = await events.next()
        assert (kind, data) == ("REGISTRATION", {"endpoint": "dev-2"})


async def test_notifications_and_bootstrap_events_share_the_stream(running: Running) -> None:
    async with running.http.stream("GET", "/api/event") as stream:
        events = SseReader(stream.aiter_lines())
        await events.next_comment()
        await running.http.post("/api/clients/dev-1/3/0/14/observe")
        await running.http.put("/api/clients/dev-1/3/0/14", json={"value": "+09"})
        note = await events.wait_for("NOTIFICATION", ep="dev-1")
        assert note["res"] == "/3/0/14" and note["val"]["value"] == "+09"
        config = {"servers": []}
        await running.http.put("/api/bootstrap/dev-1", json=config)
        await running.http.post("/api/bootstrap/dev-1/push?address=127.0.0.1:9")
        assert await events.wait_for("BOOTSTRAP_FINISHED", ep="dev-1") == {"ep": "dev-1"}


async def test_keepalive_comments_on_an_idle_stream(running: Running) -> None:
    # The fixture's hub sends a keep-alive after 0.2 s without events.
    async with running.http.stream("GET", "/api/event") as stream:
        events = SseReader(stream.aiter_lines())
        assert await events.next_comment() == "connected"
        async with asyncio.timeout(10):
            assert await events.next_comment() == "keep-alive"


async def test_client_disconnect_releases_the_subscription(running: Running) -> None:
    bus = running.devices.bus
    async with running.http.stream("GET", "/api/event") as stream:
        events = SseReader(stream.aiter_lines())
        await events.next_comment()
        await asyncio.wait_for(bus.subscribed.wait(), 5)
        assert bus.subscribers >= 1
        before = bus.subscribers
        bus.unsubscribed.clear()
    await asyncio.wait_for(bus.unsubscribed.wait(), 5)
    assert bus.subscribers == before - 1


async def test_server_shutdown_ends_open_streams(running: Running) -> None:
    async with running.http.stream("GET", "/api/event") as stream:
        events = SseReader(stream.aiter_lines())
        await events.next_comment()
        stopping = asyncio.create_task(running.web.stop())
        async with asyncio.timeout(10):
            try:
                while True:
                    await events.next()
            except (EOFError, httpx.RemoteProtocolError, httpx.ReadError):
                pass
        await asyncio.wait_for(stopping, 10)


async def test_serve_runs_until_cancelled_then_closes_the_port() -> None:
    from web_fakes import FakeDevices

    from lwm2m.web.app import build_app, serve

    ports: asyncio.Queue[int] = asyncio.Queue()
    task = asyncio.create_task(
        serve(build_app(FakeDevices(), None), "127.0.0.1", 0, ready=ports.put_nowait)
    )
    port = await asyncio.wait_for(ports.get(), 10)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        assert (await http.get("/api/clients")).json() == []
        async with http.stream("GET", "/api/event") as stream:
            events = SseReader(stream.aiter_lines())
            await events.next_comment()
            task.cancel()
            with contextlib.suppress(EOFError, httpx.RemoteProtocolError, httpx.ReadError):
                async with asyncio.timeout(10):
                    await events.next()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert task.cancelled()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        try:
            await http.get("/api/clients")
        except httpx.ConnectError:
            pass
        else:
            raise AssertionError("still listening after serve() was cancelled")


async def test_cancelled_stream_leaves_no_pending_task() -> None:
    """A stream cancelled while it waits (the HTTP client left) cancels its queue read."""
    from collections.abc import AsyncIterator

    from lwm2m.web.events import EventHub

    async def silent(endpoint: str | None) -> AsyncIterator[WebEvent]:
        await asyncio.Event().wait()
        yield WebEvent("NEVER", None, {})

    hub = EventHub([silent], keepalive_s=60)
    stream = hub.stream(None)
    assert (await anext(stream)).startswith(b"retry:")
    waiting = asyncio.create_task(anext(stream))
    await asyncio.sleep(0)  # let it reach its wait
    await asyncio.sleep(0)
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    await stream.aclose()
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for _ in range(3):
        await asyncio.sleep(0)
    assert [t for t in others if not t.done()] == []
    assert hub.open_streams == 0

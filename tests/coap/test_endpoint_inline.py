"""Inline handlers (``Endpoint(inline_handlers=True)``): the first step outside any Task.

The fast path of the server on the memory and SQLite stores: what it must keep
from the Task path (dedup and the cached answer, 5.00 on a handler bug, a
handler suspended on a future, cancellation at close) over real UDP.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import pytest

from lwm2m.coap.codec import decode, encode
from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.endpoint import Endpoint, IncomingRequest
from lwm2m.coap.message import Message
from lwm2m.coap.peer import Address

LABEL: contextvars.ContextVar[str] = contextvars.ContextVar("LABEL", default="endpoint")


class Raw(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.received.put_nowait(data)

    def send(self, message: Message, address: Address) -> None:
        assert self.transport is not None
        self.transport.sendto(encode(message), address)

    async def next(self) -> bytes:
        return await asyncio.wait_for(self.received.get(), 5)


@pytest.fixture(autouse=True)
async def loop_errors() -> AsyncIterator[list[dict[str, object]]]:
    """Fail, instead of hanging, when a loop callback of the endpoint raises.

    A callback that raises while resuming a parked handler can leave the loop
    unable to run any task again (an eager start that fails after taking the
    loop's current task), so no ``wait_for`` timeout would ever fire: stopping
    the loop makes the test's ``run_until_complete`` return with an error.
    """
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []

    def on_error(_: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        loop.default_exception_handler(context)  # logged with its traceback
        errors.append(context)
        loop.stop()

    previous = loop.get_exception_handler()
    loop.set_exception_handler(on_error)
    yield errors
    loop.set_exception_handler(previous)
    assert errors == []


@pytest.fixture
async def raw() -> AsyncIterator[Raw]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(Raw, local_addr=("127.0.0.1", 0))
    yield proto
    transport.close()


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[Endpoint]:
    """An inline-handler endpoint whose close is bounded, like every wait here."""
    server = await asyncio.wait_for(Endpoint.create(handler=handler, inline_handlers=True), 5)
    try:
        yield server
    finally:
        await asyncio.wait_for(server.close(), 5)


class Handler:
    """Counts its calls; /boom raises, /wait suspends on ``gate``, /yield on nothing."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate: asyncio.Future[bytes] | None = None
        self.waiting = asyncio.Event()
        self.cancelled = asyncio.Event()
        self.in_task_after_wait: bool | None = None

    async def __call__(self, request: IncomingRequest) -> Message:
        self.calls += 1
        path = request.message.uri_path
        LABEL.set("handler")  # must not leak into the endpoint's context
        if path == ("boom",):
            raise RuntimeError("handler bug")
        if path == ("yield",):
            await asyncio.sleep(0)  # a bare yield, no future to park on
            self.in_task_after_wait = asyncio.current_task() is not None
            return Message(Code.CONTENT, payload=b"yielded by " + LABEL.get().encode())
        if path == ("wait",):
            self.gate = asyncio.get_running_loop().create_future()
            self.waiting.set()
            try:
                payload = await self.gate
            except asyncio.CancelledError:
                self.cancelled.set()
                raise
            self.in_task_after_wait = asyncio.current_task() is not None
            return Message(Code.CONTENT, payload=payload + LABEL.get().encode())
        return Message(Code.CONTENT, payload=b"n=%d" % self.calls)


def con(mid: int, *path: str) -> Message:
    return Message(Code.GET, MessageType.CON, mid, token=mid.to_bytes(2, "big"), uri_path=path)


async def test_retransmitted_con_is_answered_from_the_cache(raw: Raw) -> None:
    handler = Handler()
    async with serving(handler) as server:
        raw.send(con(7, "r"), server.local_address)
        first = await raw.next()
        raw.send(con(7, "r"), server.local_address)  # the same MID again: a retransmission
        again = await raw.next()
        assert again == first
        assert decode(first).payload == b"n=1"
        assert handler.calls == 1
        assert LABEL.get() == "endpoint"


async def test_handler_exception_answers_500_and_the_endpoint_serves_on(raw: Raw) -> None:
    handler = Handler()
    async with serving(handler) as server:
        raw.send(con(1, "boom"), server.local_address)
        assert decode(await raw.next()).code == Code.INTERNAL_SERVER_ERROR
        raw.send(con(1, "boom"), server.local_address)  # its retransmission: the cached 5.00
        assert decode(await raw.next()).code == Code.INTERNAL_SERVER_ERROR
        raw.send(con(2, "r"), server.local_address)
        answer = decode(await raw.next())
        assert (answer.code, answer.payload) == (Code.CONTENT, b"n=2")
        assert handler.calls == 2


async def test_handler_suspended_on_a_future_answers_once_it_is_done(raw: Raw) -> None:
    handler = Handler()
    async with serving(handler) as server:
        raw.send(con(3, "wait"), server.local_address)
        await asyncio.wait_for(handler.waiting.wait(), 5)
        raw.send(con(4, "r"), server.local_address)  # others are served meanwhile
        assert decode(await raw.next()).payload == b"n=2"
        assert handler.gate is not None
        handler.gate.set_result(b"done by ")
        answer = decode(await raw.next())
        assert (answer.mid, answer.code, answer.payload) == (3, Code.CONTENT, b"done by handler")
        # Stepped on from the future's callback, without a Task (SQLite's batches).
        assert handler.in_task_after_wait is False
        assert LABEL.get() == "endpoint"


async def test_handler_yielding_without_a_future_continues_in_a_task(raw: Raw) -> None:
    handler = Handler()
    async with serving(handler) as server:
        raw.send(con(6, "yield"), server.local_address)
        answer = decode(await raw.next())
        assert (answer.mid, answer.payload) == (6, b"yielded by handler")
        assert handler.in_task_after_wait is True
        assert LABEL.get() == "endpoint"


async def test_close_cancels_a_parked_handler(raw: Raw) -> None:
    handler = Handler()
    server = await asyncio.wait_for(Endpoint.create(handler=handler, inline_handlers=True), 5)
    raw.send(con(5, "wait"), server.local_address)
    await asyncio.wait_for(handler.waiting.wait(), 5)
    await asyncio.wait_for(server.close(), 5)
    assert handler.cancelled.is_set()
    assert handler.gate is not None and not handler.gate.done()  # not the handler's to cancel


async def test_answers_of_one_loop_turn_all_go_out(raw: Raw) -> None:
    handler = Handler()
    async with serving(handler) as server:
        for mid in range(20):
            raw.send(con(100 + mid, "r"), server.local_address)
        mids = sorted([decode(await raw.next()).mid for _ in range(20)])
        assert mids == list(range(100, 120))

"""``lwm2m server`` stopping under registration load: bounded, and nothing acknowledged is lost.

Real process, real signal, a few hundred devices registering while the stop
begins. Bounds are generous: they prove the stop is bounded, not its speed.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import signal
import subprocess
import sys
from pathlib import Path as FsPath
from typing import Any, cast

from lwm2m.cli.shutdown import RequestGate
from lwm2m.coap import codec
from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.endpoint import NO_RESPONSE, IncomingRequest, NoResponse
from lwm2m.coap.message import Message

DEVICES = 400
BOUND_S = 40.0


class Device(asyncio.DatagramProtocol):
    """One socket, one Register (sent once: a lost one simply stays unacknowledged)."""

    def __init__(self, endpoint: str, acked: dict[str, str], progress: asyncio.Event) -> None:
        self.endpoint = endpoint
        self.acked = acked
        self.progress = progress
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def register(self, server: tuple[str, int], mid: int) -> None:
        message = Message(
            Code.POST,
            MessageType.CON,
            mid,
            mid.to_bytes(2, "big"),
            uri_path=("rd",),
            uri_query=(f"ep={self.endpoint}", "lt=3600"),
            payload=b"</1/0>,</3/0>",
        )
        self.transport.sendto(codec.encode(message), server)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        reply = codec.decode(data)
        if reply.code == Code.CREATED and reply.location_path:
            self.acked[self.endpoint] = reply.location_path[-1]
            self.progress.set()


async def _listening_port(stream: asyncio.StreamReader) -> int:
    match = await _log_line(stream, r"listening on coap://127\.0\.0\.1:(\d+)")
    return int(match.group(1))


async def test_stop_under_registration_load_keeps_every_acknowledged_registration(
    tmp_path: FsPath,
) -> None:
    from lwm2m.stores import open_stores

    data = tmp_path / "data"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lwm2m", "server", "--coap-port", "0", "--coaps-port", "0",
        "--http-port", "0", "--no-bootstrap", "--data", str(data), "--stop-timeout", "5",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    loop = asyncio.get_running_loop()
    acked: dict[str, str] = {}
    progress = asyncio.Event()
    devices: list[Device] = []
    try:
        port = await _listening_port(proc.stderr)
        for index in range(DEVICES):
            _, device = await loop.create_datagram_endpoint(
                lambda i=index: Device(f"load-{i:04d}", acked, progress),  # type: ignore[misc]
                local_addr=("127.0.0.1", 0),
            )
            devices.append(device)

        async def load() -> None:
            # Registers keep coming while the server stops (pacing, not synchronisation).
            for index, device in enumerate(devices):
                device.register(("127.0.0.1", port), index)
                if index % 20 == 19:
                    await asyncio.sleep(0.01)

        loading = asyncio.ensure_future(load())
        async with asyncio.timeout(30):
            while len(acked) < DEVICES // 4:
                progress.clear()
                await progress.wait()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), BOUND_S) == 0
        await loading
    finally:
        for device in devices:
            if device.transport is not None:
                device.transport.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert len(acked) >= DEVICES // 4
    stores = await open_stores("sqlite", data)  # what a restarted server loads
    try:
        lost = [
            ep
            for ep, location in acked.items()
            if (reg := stores.registrations.get_by_endpoint(ep)) is None or reg.id != location
        ]
        assert lost == []
    finally:
        await stores.close()


async def test_gate_finishes_admitted_requests_and_declines_new_ones() -> None:
    gate = RequestGate()
    release = asyncio.Event()

    async def slow(request: IncomingRequest) -> Message | NoResponse:
        await release.wait()
        return Message(Code.CREATED)

    handler = gate.admit(slow)
    request = cast(IncomingRequest, object())  # the gate never looks inside
    pending = handler(request)
    assert inspect.isawaitable(pending)
    admitted = asyncio.ensure_future(pending)
    await asyncio.wait_for(_until(lambda: gate.in_flight == 1), 5)
    gate.close()
    assert handler(request) is NO_RESPONSE  # declined on the spot, nothing to await
    drained = asyncio.ensure_future(gate.drained())
    assert not drained.done()
    release.set()
    response = await asyncio.wait_for(admitted, 5)
    assert isinstance(response, Message) and response.code == Code.CREATED
    await asyncio.wait_for(drained, 5)
    assert gate.in_flight == 0


async def test_the_gate_passes_answers_given_on_the_spot_without_counting_them() -> None:
    gate = RequestGate()
    seen: list[int] = []

    def at_once(request: IncomingRequest) -> Message | NoResponse:
        seen.append(gate.in_flight)
        return Message(Code.CHANGED)

    handler = gate.admit(at_once)
    request = cast(IncomingRequest, object())
    answer = handler(request)
    assert isinstance(answer, Message) and answer.code == Code.CHANGED
    assert seen == [0] and gate.in_flight == 0
    await asyncio.wait_for(gate.drained(), 5)  # nothing in flight: drained at once
    gate.close()
    assert handler(request) is NO_RESPONSE and seen == [0]  # the handler is not called


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0)


def test_a_negative_stop_timeout_is_refused() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lwm2m", "server", "--coap-port", "0", "--stop-timeout", "nan"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "--stop-timeout" in proc.stderr


async def test_second_signal_exits_while_a_bootstrap_session_hangs(tmp_path: FsPath) -> None:
    config = tmp_path / "bs.json"
    config.write_text(
        json.dumps(
            {"clients": {"dev-1": {"servers": [{"short_server_id": 1, "uri": "coap://h:5683"}]}}}
        )
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lwm2m", "server", "--coap-port", "0", "--coaps-port", "0",
        "--http-port", "0", "--store", "memory", "--bootstrap-coap-port", "0",
        "--bootstrap-coaps-port", "0", "--bootstrap-config", str(config), "--stop-timeout", "600",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    loop = asyncio.get_running_loop()
    received: asyncio.Queue[Message] = asyncio.Queue()

    class Silent(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
            received.put_nowait(codec.decode(data))

    transport, _ = await loop.create_datagram_endpoint(Silent, local_addr=("127.0.0.1", 0))
    try:
        match = await _log_line(proc.stderr, r"bootstrap server on coap 127\.0\.0\.1:(\d+)")
        request = Message(
            Code.POST, MessageType.CON, 1, b"\x01", uri_path=("bs",), uri_query=("ep=dev-1",)
        )
        transport.sendto(codec.encode(request), ("127.0.0.1", int(match.group(1))))
        answer = await asyncio.wait_for(received.get(), 10)
        assert answer.code == Code.CHANGED
        push = await asyncio.wait_for(received.get(), 10)  # never answered: the session hangs
        assert push.is_request
        proc.send_signal(signal.SIGTERM)
        await _log_line(proc.stderr, r"stopping \(at most 600 s\)")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), BOUND_S) == 128 + signal.SIGTERM
    finally:
        transport.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def _log_line(stream: asyncio.StreamReader, pattern: str) -> re.Match[str]:
    while True:
        raw = await asyncio.wait_for(stream.readline(), 30)
        assert raw, f"the server exited before logging {pattern!r}"
        match = re.search(pattern, raw.decode())
        if match:
            return match

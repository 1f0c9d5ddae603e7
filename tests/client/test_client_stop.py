"""Stopping is bounded: one device or a fleet, with the server answering or gone.

Real processes and signals. Bounds are generous (tens of seconds): they only
prove that a stop no longer waits out CoAP retransmission sequences (about
60-93 s per De-register before), not how fast it is.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest
from client_harness import MakeClient
from client_rawserver import RawServer

from lwm2m.coap import codec
from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.message import Message

PING_BATCH = 50
#: A stop must end well before one De-register's retransmissions would (>= 62 s).
BOUND_S = 40.0


class AutoServer(asyncio.DatagramProtocol):
    """Answers every Register, Update and De-register at once, until told to go silent."""

    def __init__(self) -> None:
        self.answering = True
        self.locations = itertools.count()
        self.registered: set[str] = set()
        self.devices: set[tuple[str, int]] = set()
        self._pings: dict[bytes, asyncio.Future[None]] = {}
        self.deregistered: set[tuple[str, ...]] = set()
        self.registers_after_silence = 0
        self.transport: asyncio.DatagramTransport | None = None
        self.changed = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    @property
    def uri(self) -> str:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return f"coap://{host}:{port}"

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        msg = codec.decode(data)
        if not msg.is_request:
            ping = self._pings.pop(msg.token, None)
            if ping is not None and not ping.done():
                ping.set_result(None)
            return
        register = msg.code == Code.POST and msg.uri_path == ("rd",)
        if not self.answering:
            self.registers_after_silence += register
            return
        if register:
            self.registered.add(next(q for q in msg.uri_query if q.startswith("ep=")))
            self.devices.add((addr[0], addr[1]))
            answer = Message(
                Code.CREATED,
                MessageType.ACK,
                msg.mid,
                msg.token,
                location_path=("rd", str(next(self.locations))),
            )
        elif msg.code == Code.DELETE:
            self.deregistered.add(msg.uri_path)
            answer = Message(Code.DELETED, MessageType.ACK, msg.mid, msg.token)
        else:
            answer = Message(Code.CHANGED, MessageType.ACK, msg.mid, msg.token)
        assert self.transport is not None
        self.transport.sendto(codec.encode(answer), addr)
        self.changed.set()

    async def until_registered(self, count: int, timeout: float = 60.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.registered) < count:
                self.changed.clear()
                await self.changed.wait()
        # A round trip to each device: every one has taken its 2.01 in. In small
        # batches, so that the answers cannot overflow this socket's buffer.
        devices = sorted(self.devices)
        for start in range(0, len(devices), PING_BATCH):
            async with asyncio.timeout(timeout):
                await asyncio.gather(
                    *(
                        self._ping(i, a)
                        for i, a in enumerate(devices[start : start + PING_BATCH], start)
                    )
                )

    async def _ping(self, index: int, address: tuple[str, int]) -> None:
        token = index.to_bytes(4, "big")
        answered = asyncio.get_running_loop().create_future()
        self._pings[token] = answered
        ping = Message(Code.GET, MessageType.CON, index, token, uri_path=("3", "0", "0"))
        assert self.transport is not None
        self.transport.sendto(codec.encode(ping), address)
        await answered


@pytest.fixture
async def auto_server() -> AsyncIterator[AutoServer]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        AutoServer, local_addr=("127.0.0.1", 0)
    )
    yield protocol
    transport.close()


async def _spawn(*argv: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lwm2m",
        "--log-level",
        "WARNING",
        "client",
        "--host",
        "127.0.0.1",
        "--no-console",
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def _exit(proc: asyncio.subprocess.Process, timeout: float = BOUND_S) -> tuple[int, str]:
    """Exit status and stderr, failing when the process outlives ``timeout``."""
    assert proc.stderr is not None
    err, _ = await asyncio.wait_for(asyncio.gather(proc.stderr.read(), proc.wait()), timeout)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def _killed(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def _registered(server: RawServer, address: tuple[str, int]) -> None:
    """A round trip after the 2.01: the device has taken its registration in."""
    answer = await server.request(Message(Code.GET, uri_path=("3", "0", "0")), address)
    assert answer.code == Code.CONTENT


def _last_line(err: str) -> str:
    return err.strip().splitlines()[-1]


# -- one device -----------------------------------------------------------------------


async def test_single_device_stops_within_deadline_when_its_server_is_gone(
    server: RawServer,
) -> None:
    proc = await _spawn("--endpoint", "lone", "--server", server.uri, "--stop-timeout", "1")
    try:
        _, address = await server.accept_registration("lone")
        await _registered(server, address)
        server.close()  # the server went away
        proc.send_signal(signal.SIGINT)
        status, err = await _exit(proc)
        assert status == 3
        assert _last_line(err) == "stopped: de-registered 0 of 1 registered devices (1 device)"
    finally:
        await _killed(proc)


async def test_second_signal_exits_at_once(server: RawServer) -> None:
    proc = await _spawn("--endpoint", "lone", "--server", server.uri, "--stop-timeout", "600")
    try:
        _, address = await server.accept_registration("lone")
        await _registered(server, address)
        proc.send_signal(signal.SIGTERM)
        msg, _ = await server.next_request(timeout=10)  # the De-register, never answered
        assert msg.code == Code.DELETE
        proc.send_signal(signal.SIGINT)
        status, err = await _exit(proc, timeout=20)
        assert status == 128 + signal.SIGINT
        assert "SIGINT again, exiting now" in err
    finally:
        await _killed(proc)


async def test_stop_timeout_is_checked() -> None:
    proc = await _spawn("--endpoint", "e", "--server", "coap://127.0.0.1:9", "--stop-timeout", "-1")
    status, err = await _exit(proc)
    assert status == 2 and "--stop-timeout" in err


# -- a fleet ----------------------------------------------------------------------------

FLEET = 300


async def test_fleet_deregisters_every_device_from_a_reachable_server(
    auto_server: AutoServer,
) -> None:
    proc = await _spawn(
        "--endpoint", "fleet", "--server", auto_server.uri, "--count", str(FLEET),
        "--rate", "2000", "--stop-timeout", "5",
    )  # fmt: skip
    try:
        await auto_server.until_registered(FLEET)
        proc.send_signal(signal.SIGTERM)
        status, err = await _exit(proc)
        assert status == 0, err[-2000:]
        assert len(auto_server.deregistered) == FLEET
        assert _last_line(err) == (
            f"stopped: de-registered {FLEET} of {FLEET} registered devices ({FLEET} devices)"
        )
    finally:
        await _killed(proc)


async def test_fleet_stops_within_deadline_when_the_server_is_gone(
    auto_server: AutoServer,
) -> None:
    proc = await _spawn(
        "--endpoint", "fleet", "--server", auto_server.uri, "--count", str(FLEET),
        "--rate", "2000", "--stop-timeout", "2",
    )  # fmt: skip
    try:
        await auto_server.until_registered(FLEET)
        auto_server.answering = False  # the server went away
        proc.send_signal(signal.SIGTERM)
        status, err = await _exit(proc)
        assert status == 3, err[-2000:]
        assert _last_line(err) == (
            f"stopped: de-registered 0 of {FLEET} registered devices ({FLEET} devices)"
        )
        assert auto_server.registers_after_silence == 0  # nobody registered again while stopping
    finally:
        await _killed(proc)


# -- in process: a stopping device starts nothing --------------------------------------


async def test_a_stopping_device_starts_no_update_register_or_bootstrap(
    make_client: MakeClient, server: RawServer
) -> None:
    h = await make_client(lifetime_s=60)
    session = h.client.sessions[1]
    sent: list[tuple[int, tuple[str, ...]]] = []
    request = session.transport.request

    async def recording(message: Message, address: tuple[str, int]) -> Message:
        sent.append((message.code, message.uri_path))
        return await request(message, address)

    session.transport.request = recording
    h.client.begin_stop()
    h.client.trigger_update()  # a Registration Update Trigger arriving now
    h.scheduler.advance(120)  # the periodic Update falls due
    h.client.start_bootstrap()
    session.start()  # what a failed Update does next: register again
    stopping = asyncio.ensure_future(h.client.stop(timeout_s=10))
    msg, addr = await server.next_request()
    server.reply(msg, addr, Code.DELETED)
    assert await stopping is True
    assert sent == [(Code.DELETE, ("rd", "abc"))]


async def test_stop_gives_up_on_an_unanswered_deregister(
    make_client: MakeClient, server: RawServer
) -> None:
    h = await make_client()
    stopping = asyncio.ensure_future(h.client.stop(timeout_s=0.2))
    msg, _ = await server.next_request()
    assert msg.code == Code.DELETE  # never answered
    assert await asyncio.wait_for(stopping, BOUND_S) is False
    assert not h.client.running

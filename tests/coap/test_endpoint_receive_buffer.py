"""A server's UDP socket holds a storm: the receive buffer it asks for, and what that buys.

A burst larger than the system's default buffer (about 200 KB on Linux, a few
hundred small datagrams) loses datagrams in the kernel, and each loss costs
its sender a retransmission two seconds or more later.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
from pathlib import Path
from typing import cast

import pytest

from lwm2m.bootstrap.server import BootstrapServer
from lwm2m.cli import server as server_command
from lwm2m.cli.main import build_parser
from lwm2m.coap.codec import decode, encode
from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.endpoint import SERVER_RECEIVE_BUFFER, Endpoint, IncomingRequest
from lwm2m.coap.message import Message
from lwm2m.server.server import LwM2MServer, ServerConfig


def _read_rmem_max() -> int | None:
    """Linux's cap on a socket's receive buffer; None elsewhere, or where it cannot be read."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return int(Path("/proc/sys/net/core/rmem_max").read_text())
    except (OSError, ValueError):
        return None


RMEM_MAX = _read_rmem_max()
linux_only = pytest.mark.skipif(
    RMEM_MAX is None, reason="the sizes checked are Linux's (net.core.rmem_max unreadable here)"
)


def _rmem_max() -> int:
    assert RMEM_MAX is not None
    return RMEM_MAX


def _default_receive_buffer() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


async def _answer(request: IncomingRequest) -> Message:
    return Message(Code.CONTENT, payload=b"ok")


@linux_only
async def test_the_buffer_asked_for_is_the_one_granted_up_to_the_system_cap() -> None:
    asked = 1 << 20
    endpoint = await Endpoint.create("127.0.0.1", 0, handler=_answer, receive_buffer=asked)
    plain = await Endpoint.create("127.0.0.1", 0, handler=_answer)
    try:
        # Linux grants min(asked, rmem_max) for data and reports twice that.
        assert endpoint.receive_buffer == 2 * min(asked, _rmem_max())
        assert plain.receive_buffer == _default_receive_buffer()
    finally:
        await endpoint.close()
        await plain.close()
    assert endpoint.receive_buffer == 0  # closed: no socket to ask


@linux_only
async def test_a_capped_buffer_is_told(caplog: pytest.LogCaptureFixture) -> None:
    asked = 4 * _rmem_max()
    if asked >= 1 << 31:
        pytest.skip("net.core.rmem_max is too large to ask beyond it (a C int)")
    with caplog.at_level(logging.INFO, logger="lwm2m.coap.endpoint"):
        endpoint = await Endpoint.create("127.0.0.1", 0, handler=_answer, receive_buffer=asked)
    await endpoint.close()
    capped = [r.getMessage() for r in caplog.records if "capped" in r.getMessage()]
    assert capped == [
        f"UDP receive buffer capped at {_rmem_max()} of the {asked} bytes asked for (Linux: "
        "raise net.core.rmem_max): a storm of requests may overflow it and be retransmitted"
    ]


@linux_only
async def test_a_capped_buffer_is_told_once_for_all_the_sockets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    asked = 3 * _rmem_max()  # a size no other test asks for: told once in this process
    if asked >= 1 << 31:
        pytest.skip("net.core.rmem_max is too large to ask beyond it (a C int)")
    with caplog.at_level(logging.INFO, logger="lwm2m.coap.endpoint"):
        endpoints = [
            await Endpoint.create("127.0.0.1", 0, handler=_answer, receive_buffer=asked)
            for _ in range(3)
        ]
    for endpoint in endpoints:
        assert endpoint.receive_buffer == 2 * _rmem_max()
        await endpoint.close()
    assert sum("capped" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("size", [0, -1, 1 << 31])
async def test_a_buffer_of_no_bytes_or_beyond_a_c_int_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match=f"positive number of bytes up to {(1 << 31) - 1}, not"):
        await Endpoint.create("127.0.0.1", 0, handler=_answer, receive_buffer=size)


@linux_only
async def test_the_server_asks_for_a_storm_sized_buffer() -> None:
    async with LwM2MServer(config=ServerConfig(coap_port=0)) as server:
        endpoint = cast(Endpoint, server._coap)
        assert endpoint.receive_buffer == 2 * min(SERVER_RECEIVE_BUFFER, _rmem_max())
    async with LwM2MServer(config=ServerConfig(coap_port=0, udp_receive_buffer=None)) as server:
        assert cast(Endpoint, server._coap).receive_buffer == _default_receive_buffer()


@linux_only
async def test_the_bootstrap_server_asks_for_a_storm_sized_buffer_too() -> None:
    bootstrap = BootstrapServer()
    await bootstrap.start("127.0.0.1", 0)
    try:
        (endpoint,) = bootstrap._endpoints
        assert endpoint.receive_buffer == 2 * min(SERVER_RECEIVE_BUFFER, _rmem_max())
    finally:
        await bootstrap.stop()


BURST = 1500


@linux_only
@pytest.mark.skipif(
    RMEM_MAX is not None and RMEM_MAX < SERVER_RECEIVE_BUFFER,
    reason="net.core.rmem_max caps the buffer below the server's request on this machine",
)
async def test_a_burst_beyond_the_default_buffer_is_answered_whole() -> None:
    """1,500 requests sent while the loop cannot read (the sender holds it): the default
    buffer holds a few hundred of them, the server's all."""
    endpoint = await Endpoint.create(
        "127.0.0.1", 0, handler=_answer, receive_buffer=SERVER_RECEIVE_BUFFER
    )
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SERVER_RECEIVE_BUFFER)
    sender.bind(("127.0.0.1", 0))
    sender.setblocking(False)
    try:
        target = endpoint.local_address
        for mid in range(BURST):  # no await: the endpoint reads nothing meanwhile
            request = Message(Code.GET, MessageType.CON, mid, mid.to_bytes(2, "big"))
            sender.sendto(encode(request.with_(uri_path=("burst",))), target)
        answered: set[int] = set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while len(answered) < BURST and loop.time() < deadline:
            try:
                data = sender.recv(2048)
            except BlockingIOError:
                await asyncio.sleep(0.01)
                continue
            answer = decode(data)
            assert answer.type is MessageType.ACK and answer.code == Code.CONTENT
            answered.add(answer.mid)
        assert len(answered) == BURST
    finally:
        sender.close()
        await endpoint.close()


@pytest.mark.parametrize("size", ["-1", str(1 << 31)])
def test_the_command_asks_for_the_storm_buffer_and_refuses_what_no_socket_takes(
    size: str, caplog: pytest.LogCaptureFixture
) -> None:
    argv = ["server"]
    assert build_parser(argv).parse_args(argv).udp_receive_buffer == SERVER_RECEIVE_BUFFER
    argv = ["server", "--udp-receive-buffer", size]
    with caplog.at_level(logging.ERROR):
        assert server_command.run(build_parser(argv).parse_args(argv)) == 2
    assert (
        "--udp-receive-buffer must be a number of bytes up to 2147483647, "
        "or 0 for the system's default"
    ) in [r.getMessage() for r in caplog.records]

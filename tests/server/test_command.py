"""``lwm2m server`` as a process: binds, logs one line per registration event, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path as FsPath

from server_helpers import RawPeer, output_line, register_message, started_server

from lwm2m.coap.codes import Code
from lwm2m.coap.message import Message


async def test_server_command_lifecycle(tmp_path: FsPath) -> None:
    proc, port = await started_server(tmp_path / "data")
    assert proc.stderr is not None
    peer = await RawPeer.create()
    try:
        reply = await peer.request(register_message(("ep=cmd-dev",)), ("127.0.0.1", port))
        assert reply.code == Code.CREATED
        await output_line(proc.stderr, r"registered cmd-dev ")
        reply = await peer.request(
            Message(Code.DELETE, uri_path=reply.location_path), ("127.0.0.1", port)
        )
        assert reply.code == Code.DELETED
        await output_line(proc.stderr, r"deregistered cmd-dev ")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        assert (tmp_path / "data" / "lwm2m.sqlite3").exists()
    finally:
        peer.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_acknowledged_registration_survives_kill(tmp_path: FsPath) -> None:
    from lwm2m.stores import open_stores

    data = tmp_path / "data"
    proc, port = await started_server(data)
    peer = await RawPeer.create()
    try:
        address = peer.address
        reply = await peer.request(register_message(("ep=durable", "lt=600")), ("127.0.0.1", port))
        assert reply.code == Code.CREATED
        proc.kill()  # no clean shutdown: only what was committed exists
        await proc.wait()
    finally:
        peer.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stores = await open_stores("sqlite", data)
    try:
        reg = stores.registrations.get_by_endpoint("durable")
        assert reg is not None and reg.id == reply.location_path[1]
        assert reg.address == address
    finally:
        await stores.close()


async def test_server_command_listens_for_coap_over_tcp(tmp_path: FsPath) -> None:
    import socket

    from lwm2m.coap.tcp_framing import Capabilities, FrameDecoder, encode_frame, encode_signal

    with socket.socket() as probe:  # a free TCP port (0 means "disabled" on the command line)
        probe.bind(("127.0.0.1", 0))
        tcp_port = probe.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lwm2m", "server",
        "--coap-port", "0", "--coaps-port", "0", "--http-port", "0", "--no-bootstrap",
        "--coap-tcp-port", str(tcp_port), "--data", str(tmp_path / "data"),
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    writer: asyncio.StreamWriter | None = None
    try:
        await output_line(proc.stderr, rf"and coap\+tcp://127\.0\.0\.1:{tcp_port}")
        reader, writer = await asyncio.open_connection("127.0.0.1", tcp_port)
        register = Message(
            Code.POST, token=b"r", uri_path=("rd",), uri_query=("ep=tcp-cmd", "b=T"),
            content_format=40, payload=b"</3/0>",
        )  # fmt: skip
        writer.write(encode_signal(Capabilities(1152)) + encode_frame(register))
        decoder = FrameDecoder(1 << 20)
        frames: list[object] = []
        while len(frames) < 2:
            data = await asyncio.wait_for(reader.read(4096), 20)
            assert data, "the server closed the connection"
            frames.extend(decoder.feed(data))
        assert isinstance(frames[0], Capabilities)
        assert isinstance(frames[1], Message) and frames[1].code == Code.CREATED
        await output_line(proc.stderr, r"registered tcp-cmd ")
    finally:
        if writer is not None:
            writer.close()
        if proc.returncode is None:
            # (no exit-status check: the command installs its signal handlers a moment
            # after it starts serving, so an early SIGTERM may still kill it outright)
            proc.kill()
            await proc.wait()

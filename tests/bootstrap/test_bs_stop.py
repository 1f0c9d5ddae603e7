"""``lwm2m bootstrap`` stopping: a session in flight finishes, a new device gets no answer,
and the stop is bounded when a device stops answering. Real process, real signal."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from pathlib import Path as FsPath

from bs_rawpeer import RawPeer

from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.message import Message

CONFIG = {
    "clients": {"dev-1": {"servers": [{"short_server_id": 1, "uri": "coap://127.0.0.1:5683"}]}}
}
BOUND_S = 40.0


async def _spawn(tmp_path: FsPath, *options: str) -> asyncio.subprocess.Process:
    file = tmp_path / "bs.json"
    file.write_text(json.dumps(CONFIG))
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lwm2m", "bootstrap", "--coap-port", "0", "--coaps-port", "0",
        "--config", str(file), *options,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def _line(proc: asyncio.subprocess.Process, pattern: str) -> re.Match[str]:
    assert proc.stderr is not None
    while True:
        raw = await asyncio.wait_for(proc.stderr.readline(), 30)
        assert raw, f"the command ended before logging {pattern!r}"
        match = re.search(pattern, raw.decode())
        if match:
            return match


async def _request_bootstrap(peer: RawPeer, ep: str, to: tuple[str, int], mid: int) -> None:
    message = Message(Code.POST, MessageType.CON, mid, mid.to_bytes(2, "big"))
    peer.send(message.with_(uri_path=("bs",), uri_query=(f"ep={ep}",)), to)


async def _killed(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


async def test_stop_lets_the_session_in_flight_finish_and_answers_no_new_device(
    tmp_path: FsPath, raw_peer: RawPeer
) -> None:
    proc = await _spawn(tmp_path, "--stop-timeout", "30")
    late = RawPeer()
    loop = asyncio.get_running_loop()
    await loop.create_datagram_endpoint(lambda: late, local_addr=("127.0.0.1", 0))
    try:
        port = int((await _line(proc, r"bootstrap server on coap 127\.0\.0\.1:(\d+)")).group(1))
        server = ("127.0.0.1", port)
        await _request_bootstrap(raw_peer, "dev-1", server, 1)
        answer, _ = await raw_peer.receive()
        assert answer.code == Code.CHANGED
        first, addr = await raw_peer.receive()  # the session's first push: held back
        assert first.is_request
        proc.send_signal(signal.SIGTERM)
        await _line(proc, r"stopping \(at most 30 s\)")
        await _request_bootstrap(late, "dev-1", server, 2)  # arrives while stopping
        # The session goes on to its Bootstrap-Finish.
        request, mids = first, set()
        while True:
            if request.is_request and request.mid not in mids:
                mids.add(request.mid)
                code = Code.DELETED if request.code == Code.DELETE else Code.CHANGED
                raw_peer.answer(request, addr, code)
                if request.code == Code.POST and request.uri_path == ("bs",):
                    break
            request, addr = await raw_peer.receive(timeout=10)
        assert await asyncio.wait_for(proc.wait(), BOUND_S) == 0
        assert late.queue.empty()  # the late Request Bootstrap got no answer at all
    finally:
        late.close()
        await _killed(proc)


async def test_stop_is_bounded_when_a_device_stops_answering(
    tmp_path: FsPath, raw_peer: RawPeer
) -> None:
    proc = await _spawn(tmp_path, "--stop-timeout", "1")
    try:
        port = int((await _line(proc, r"bootstrap server on coap 127\.0\.0\.1:(\d+)")).group(1))
        await _request_bootstrap(raw_peer, "dev-1", ("127.0.0.1", port), 1)
        answer, _ = await raw_peer.receive()
        assert answer.code == Code.CHANGED
        await raw_peer.receive()  # the first push, never answered: the device went away
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), BOUND_S) == 0
    finally:
        await _killed(proc)


def test_a_negative_stop_timeout_is_refused() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lwm2m", "bootstrap", "--coap-port", "0", "--stop-timeout", "-1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "--stop-timeout" in proc.stderr

"""Starting and stopping a libcoap server process for the interop tests.

``coap-server -p PORT`` binds the port over UDP and TCP, and PORT + 1 for DTLS and
TLS: a free port picked for one of them can be taken for another by a test running
beside it, and the server then exits at once. Such a start is retried on a new port
instead of failing the test at setup.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

Process = asyncio.subprocess.Process

ATTEMPTS = 5


async def start_server(
    command: Callable[[int], list[str]],
    pick_port: Callable[[], int],
    ready: Callable[[int], Awaitable[bool]],
    deadline_s: float = 10.0,
) -> tuple[Process, int]:
    """Start ``command(port)`` until ``ready(port)`` says it serves; the process and port.

    ``ready`` is polled while the process runs and returns True once the server
    answers; a process that exits before that is started again on a new port.
    """
    for _ in range(ATTEMPTS):
        port = pick_port()
        args = command(port)
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        loop = asyncio.get_running_loop()
        give_up = loop.time() + deadline_s
        while proc.returncode is None:
            if await ready(port):
                return proc, port
            if loop.time() > give_up:
                await stop(proc)
                raise RuntimeError(f"{args[0]} on port {port} did not answer in {deadline_s} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 0.05)
        # It exited (its port was taken meanwhile): try another one.
    raise RuntimeError(f"{command(0)[0]} did not start in {ATTEMPTS} attempts")


async def stop(proc: Process) -> None:
    """Stop the server; one that has already exited is simply reaped."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
    await proc.wait()

"""The stop watchdog of lwm2m.cli.shutdown: a stop that overruns its bound says what held it,
then the process ends, with no second signal (a real process and a real SIGTERM)."""

from __future__ import annotations

import asyncio
import io
import signal
import sys
import textwrap
import time

import pytest

from lwm2m.cli import shutdown

#: A command's shape: StopSignals, then a stop step that never ends (it even swallows
#: its cancellation, the worst case), so only the watchdog can end the process.
STUCK_COMMAND = textwrap.dedent(
    """
    import asyncio, sys
    from lwm2m.cli import shutdown

    shutdown.REPORT_AFTER_S = 0.3
    shutdown.EXIT_AFTER_S = 3.0  # room for the report on a loaded machine

    async def inner_wait() -> None:
        await asyncio.get_running_loop().create_future()

    async def stuck_step() -> None:
        while True:
            try:
                await inner_wait()
            except asyncio.CancelledError:
                pass

    async def main() -> None:
        signals = shutdown.StopSignals("test", stop_timeout_s=0.2)
        signals.install()
        print("ready", file=sys.stderr, flush=True)
        await signals.requested.wait()
        await asyncio.create_task(stuck_step(), name="the stuck step")

    asyncio.run(main())
    """
)

#: The same command whose stop ends in time: no report, exit status 0.
PROMPT_COMMAND = textwrap.dedent(
    """
    import asyncio, sys
    from lwm2m.cli import shutdown

    shutdown.REPORT_AFTER_S = 0.3
    shutdown.EXIT_AFTER_S = 0.6

    async def main() -> None:
        signals = shutdown.StopSignals("test", stop_timeout_s=0.2)
        signals.install()
        print("ready", file=sys.stderr, flush=True)
        await signals.requested.wait()

    asyncio.run(main())
    shutdown.disarm_watchdog()
    # Work after the stop (a caller that goes on) is not cut short by the watchdog.
    import time
    time.sleep(1.5)
    print("went on", file=sys.stderr, flush=True)
    """
)


async def _run_and_stop(code: str) -> tuple[int, str, float]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    assert (await asyncio.wait_for(proc.stderr.readline(), 30)).strip() == b"ready"
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        err = await asyncio.wait_for(proc.stderr.read(), 30)
        status = await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return status, err.decode(errors="replace"), time.monotonic() - started


async def test_an_overrun_stop_names_what_held_it_then_the_process_ends() -> None:
    status, err, _ = await _run_and_stop(STUCK_COMMAND)
    assert status == 1, err
    report, _, dump = err.partition("Timeout (")
    # The loop's report: the stuck task by name, its chain of awaits and what that ends on.
    assert "stop still running 0.5 s after the signal (bound 0.2 s)" in report
    step = report.split("task 'the stuck step':", 1)[1]
    assert step.index("in stuck_step") < step.index("in inner_wait")
    assert "waiting on <Future pending" in step
    # faulthandler's dump: every thread's stack, the main thread in the loop's wait.
    assert "Thread 0x" in dump or "Current thread 0x" in dump, dump


async def test_a_stop_within_its_bound_is_left_alone() -> None:
    status, err, _ = await _run_and_stop(PROMPT_COMMAND)
    assert status == 0, err
    assert "stop still running" not in err
    assert "Timeout (" not in err
    assert "went on" in err


def test_a_stderr_without_a_descriptor_leaves_only_the_report(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """In process, with stderr replaced (as a test runner or an embedding app may do)."""
    monkeypatch.setattr(sys, "stderr", io.StringIO())

    async def arm() -> None:
        signals = shutdown.StopSignals("test", stop_timeout_s=3600)
        signals.install()
        try:
            signals._received(signal.SIGTERM)
        finally:
            shutdown.disarm_watchdog()

    with caplog.at_level("WARNING", logger="lwm2m.cli.shutdown"):
        asyncio.run(arm())
    assert "stop watchdog thread not armed" in caplog.text

"""How many simulated devices one process keeps registered against the project's server.

Starts ``lwm2m server`` (memory store, no HTTP, no bootstrap) in a separate
process on a free loopback port, then runs N devices in this process with the
given lifetime for the given duration, and prints:

* registered devices at the end, and at the server (``lwm2m server`` keeps
  them only while their Updates arrive in time: an expired one is dropped);
* Updates done and the worst lateness of an Update after it was due (one per
  device every :func:`~lwm2m.client.registration.update_delay`: the lifetime
  less MAX_TRANSMIT_WAIT, or half the lifetime when that is later; 30 s for
  the default 60 s lifetime);
* peak resident memory (RSS) of this process and CPU time used.

    python bench/simulator.py --count 10000 --lifetime 60 --duration 150

Stops by itself (bounded count and time); traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import socket
import subprocess
import sys
import time

from lwm2m.client.config import ClientConfig, FactoryAccount
from lwm2m.client.registration import update_delay
from lwm2m.client.simulator import Simulator
from lwm2m.model.registry import default_registry


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def raise_fd_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


async def main(args: argparse.Namespace) -> int:
    raise_fd_limit(args.count + 1024)
    server_proc: subprocess.Popen[bytes] | None = None
    if args.server:
        uri = args.server
    else:
        port = free_udp_port()
        server_proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lwm2m",
                "--log-level",
                "WARNING",
                "server",
                "--coap-port",
                str(port),
                "--coaps-port",
                "0",
                "--http-port",
                "0",
                "--store",
                "memory",
                "--no-bootstrap",
            ],
        )
        uri = f"coap://127.0.0.1:{port}"
        await asyncio.sleep(2.0)  # let it bind
    base = ClientConfig(
        "bench", servers=(FactoryAccount(uri, lifetime_s=args.lifetime),), local_host="127.0.0.1"
    )
    sim = Simulator(base, args.count, registry=default_registry(), rate_per_s=args.rate, seed=1)
    loop = asyncio.get_running_loop()
    cpu0 = time.process_time()
    t0 = loop.time()
    peak = 0.0
    lateness = 0.0
    try:
        starter = asyncio.ensure_future(sim.start())
        while loop.time() - t0 < args.duration:
            await asyncio.sleep(5)
            peak = max(peak, rss_mb())
            s = sim.summary()
            now = loop.time()
            # A registered device whose last Update is older than the Update delay plus
            # slack is late (the server would soon expire it).
            late = 0
            for client in sim.clients:
                for session in client.sessions.values():
                    if session.registered and session.last_update_at is not None:
                        overdue = now - session.last_update_at - update_delay(args.lifetime)
                        if overdue > 0:
                            lateness = max(lateness, overdue)
                            if overdue > 5:
                                late += 1
            print(
                f"t={now - t0:6.1f}s {s.line()}  late>5s {late}  rss {rss_mb():.0f} MB",
                flush=True,
            )
        await starter
        summary = sim.summary()
        elapsed = loop.time() - t0
    finally:
        cpu = time.process_time() - cpu0
        await sim.stop()
        if server_proc is not None:
            server_proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server_proc.wait(10)
    print()
    print(f"devices                 {args.count} (lifetime {args.lifetime} s, {elapsed:.0f} s run)")
    print(f"registered at the end   {summary.registered}")
    print(f"failed                  {summary.failed}")
    print(f"registrations / updates {summary.registrations} / {summary.updates}")
    # The server answers 4.04 to an Update of a registration it expired; the
    # device then registers again. So extra registrations = devices the server lost.
    print(f"re-registrations        {summary.registrations - args.count} (devices the server lost)")
    print(f"worst update lateness   {lateness:.1f} s after it was due")
    print(
        f"peak RSS                {peak:.0f} MB ({peak * 1024 / max(1, args.count):.1f} KB/device)"
    )
    print(f"CPU time                {cpu:.1f} s ({100 * cpu / elapsed:.0f} % of one core)")
    return 0 if summary.registered == args.count else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--lifetime", type=int, default=60)
    parser.add_argument("--duration", type=float, default=150.0)
    parser.add_argument("--rate", type=float, default=1000.0, help="devices started per second")
    parser.add_argument(
        "--server", help="use a running server (coap://host:port) instead of starting one"
    )
    sys.exit(asyncio.run(main(parser.parse_args())))

"""CoAP server throughput: lwm2m.coap vs aiocoap under the same load.

Each server runs in its own process; a separate raw-UDP load generator process
keeps a window of CON GETs in flight (fresh MID and token each, so no reply
comes from a duplicate cache) and counts answers.  Prints requests/s per
server (median of ``--rounds``) and, last, ``ratio lwm2m/aiocoap: X`` using
our best figure (uvloop when measured).

    python bench/coap_throughput.py --seconds 5
    python bench/coap_throughput.py --seconds 5 --no-uvloop

All traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import select
import socket
import statistics
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

PATH = b"bench"
PAYLOAD = b"hello world"


# --------------------------------------------------------------------- servers


def _serve_lwm2m(use_uvloop: bool, eager: bool, conn: Connection) -> None:
    from lwm2m.coap.codes import Code
    from lwm2m.coap.endpoint import Endpoint, IncomingRequest
    from lwm2m.coap.loop import new_event_loop
    from lwm2m.coap.message import Message

    response = Message(Code.CONTENT, payload=PAYLOAD, content_format=0)

    async def handler(request: IncomingRequest) -> Message:
        return response

    async def main() -> None:
        endpoint = await Endpoint.create("127.0.0.1", 0, handler=handler, eager_handlers=eager)
        conn.send(endpoint.local_address[1])
        await asyncio.Event().wait()

    loop = new_event_loop(prefer_uvloop=use_uvloop)
    conn.send(type(loop).__module__)
    loop.run_until_complete(main())


def _serve_aiocoap(port: int, conn: Connection) -> None:
    import aiocoap  # type: ignore[import-untyped]
    import aiocoap.resource as resource  # type: ignore[import-untyped]

    class Bench(resource.Resource):  # type: ignore[misc]
        async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
            return aiocoap.Message(payload=PAYLOAD, content_format=0)

    async def main() -> None:
        site = resource.Site()
        site.add_resource([PATH.decode()], Bench())
        await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", port))
        conn.send(port)
        await asyncio.Event().wait()

    loop = asyncio.new_event_loop()
    conn.send(type(loop).__module__)
    loop.run_until_complete(main())


# --------------------------------------------------------------------- load generator


def _load(port: int, seconds: float, window: int, seed: int, conn: Connection) -> None:
    """Keep ``window`` CON GETs in flight for ``seconds``; report completed requests."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    # ver 1, CON, TKL 4 | GET | MID | token | Uri-Path "bench"
    head = bytes((0x44, 0x01))
    opt = bytes((0xB0 | len(PATH),)) + PATH
    inflight: dict[int, float] = {}
    counter = seed << 24

    def send_new(now: float) -> None:
        nonlocal counter
        counter = (counter + 1) & 0xFFFFFFFF
        token = counter.to_bytes(4, "big")
        sock.send(head + token[2:] + token + opt)
        inflight[counter] = now

    conn.recv()  # go
    start = time.perf_counter()
    warm_end = start + min(0.5, seconds / 4)
    end = warm_end + seconds
    for _ in range(window):
        send_new(start)
    coarse_now = start
    done = 0
    lost = 0
    counted_from = 0
    warm = True
    next_sweep = start + 0.5
    recv = sock.recv
    while True:
        try:
            data = recv(2048)
        except BlockingIOError:
            now = coarse_now = time.perf_counter()
            if now >= end:
                break
            select.select([sock], [], [], 0.05)
            if now >= next_sweep:
                next_sweep = now + 0.5
                stale = [k for k, t in inflight.items() if now - t > 1.0]
                for key in stale:
                    del inflight[key]
                    lost += 1
                    send_new(now)
            continue
        if len(data) < 8 or data[0] & 0x0F != 4:
            continue
        key = int.from_bytes(data[4:8], "big")
        if inflight.pop(key, None) is None:
            continue
        done += 1
        if done & 255 == 0:
            coarse_now = time.perf_counter()
            if warm and coarse_now >= warm_end:
                warm = False
                counted_from = done
            if coarse_now >= end:
                break
        send_new(coarse_now)
    elapsed = time.perf_counter() - warm_end
    conn.send((done - counted_from, elapsed, lost))
    sock.close()


def _measure(port: int, seconds: float, window: int, clients: int) -> float:
    ctx = mp.get_context("spawn")
    pipes = []
    procs = []
    for i in range(clients):
        parent, child = ctx.Pipe()
        proc = ctx.Process(
            target=_load, args=(port, seconds, max(1, window // clients), i + 1, child), daemon=True
        )
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    time.sleep(0.3)  # let the interpreters start before the clock runs
    for parent in pipes:
        parent.send("go")
    total = 0.0
    for parent in pipes:
        done, elapsed, _lost = parent.recv()
        total += done / elapsed
    for proc in procs:
        proc.join()
    return total


def _start_server(
    target: Callable[..., None], *args: object
) -> tuple[mp.process.BaseProcess, int, str]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(*args, child), daemon=True)
    proc.start()
    loop_kind = parent.recv()
    port = parent.recv()
    return proc, port, loop_kind


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run(
    name: str, target: Callable[..., None], args: tuple[object, ...], opts: argparse.Namespace
) -> float:
    proc, port, loop_kind = _start_server(target, *args)
    try:
        _measure(port, min(1.0, opts.seconds), opts.window, opts.clients)  # warm-up
        rates = [
            _measure(port, opts.seconds, opts.window, opts.clients) for _ in range(opts.rounds)
        ]
    finally:
        proc.terminate()
        proc.join()
    median = statistics.median(rates)
    figures = ", ".join(f"{r:,.0f}" for r in rates)
    print(f"{name:<28} {median:>10,.0f} req/s  (loop {loop_kind}; rounds: {figures})", flush=True)
    return median


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=64, help="requests in flight")
    parser.add_argument("--clients", type=int, default=1, help="load generator processes")
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--uvloop",
        dest="uvloop",
        action="store_const",
        const="only",
        help="our server on uvloop only",
    )
    group.add_argument(
        "--no-uvloop", dest="uvloop", action="store_const", const="none", help="asyncio loop only"
    )
    parser.add_argument(
        "--no-eager",
        dest="eager",
        action="store_false",
        help="schedule a Task per handler instead of starting it eagerly (3.12+; always on 3.11)",
    )
    parser.set_defaults(uvloop="both")
    opts = parser.parse_args(argv)

    print(
        f"CoAP CON GET -> 2.05 '{PAYLOAD.decode()}'; {opts.window} in flight; "
        f"{os.cpu_count()} CPUs; eager handlers: {opts.eager}",
        flush=True,
    )
    ours: dict[str, float] = {}
    if opts.uvloop in ("both", "none"):
        ours["asyncio"] = _run("lwm2m.coap (asyncio)", _serve_lwm2m, (False, opts.eager), opts)
    if opts.uvloop in ("both", "only"):
        try:
            import uvloop  # noqa: F401
        except ImportError:
            print("uvloop is not installed: skipping the uvloop run", file=sys.stderr)
        else:
            ours["uvloop"] = _run("lwm2m.coap (uvloop)", _serve_lwm2m, (True, opts.eager), opts)
    theirs = _run("aiocoap (asyncio)", _serve_aiocoap, (_free_port(),), opts)
    for kind, rate in ours.items():
        print(f"ratio lwm2m({kind})/aiocoap: {rate / theirs:.2f}")
    best = ours.get("uvloop", ours.get("asyncio", 0.0))
    print(f"ratio lwm2m/aiocoap: {best / theirs:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""CoAP server throughput: lwm2m.coap vs aiocoap under the same load.

Each server runs in its own process; a separate raw-UDP load generator process
keeps a window of CON GETs in flight (fresh MID and token each, so no reply
comes from a duplicate cache) and counts answers.  Prints requests/s per
server (median of ``--rounds``) and, last, ``ratio lwm2m/aiocoap: X`` using
our best figure (uvloop when measured).

The same load over CoAP over TCP and over TLS (RFC 8323; TLS with an ECDSA
certificate, the version both ends pick) follows: one connection per load
process, the same window of GETs in flight, frames written back to back, then
``ratio TLS/TCP``.

DTLS (PSK, CCM8, our endpoint on asyncio) reuses ``bench/dtls.py``'s method,
since the raw load generator speaks no DTLS: ``--dtls-clients`` client
Endpoints in one process send CON GETs back to back, rounds alternating plain
UDP and DTLS.  Both rows are printed and ``ratio DTLS/UDP`` divides those two,
not the raw-UDP rows above (different load, not comparable).

    python bench/coap_throughput.py --seconds 5
    python bench/coap_throughput.py --seconds 5 --no-uvloop
    python bench/coap_throughput.py --seconds 5 --transports tcp,tls
    python bench/coap_throughput.py --seconds 5 --transports udp,dtls

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
from pathlib import Path

# bench/dtls.py is imported as the module ``dtls``; spawned children inherit sys.path.
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

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


def _serve_lwm2m_stream(
    use_uvloop: bool, tls: tuple[bytes, bytes] | None, conn: Connection
) -> None:
    """Our CoAP-over-TCP endpoint, under TLS when ``tls`` = (certificate PEM, key PEM)."""
    from lwm2m.coap.codes import Code
    from lwm2m.coap.endpoint import IncomingRequest
    from lwm2m.coap.loop import new_event_loop
    from lwm2m.coap.message import Message
    from lwm2m.coap.tcp_connection import TcpConfig
    from lwm2m.coap.tcp_transport import TcpEndpoint

    response = Message(Code.CONTENT, payload=PAYLOAD, content_format=0)

    async def handler(request: IncomingRequest) -> Message:
        return response

    async def main() -> None:
        security = None
        if tls is not None:
            from lwm2m.coap.dtls import DtlsServerConfig
            from lwm2m.coap.tls import TlsServer

            security = TlsServer(
                DtlsServerConfig(
                    certificate_pem=tls[0], private_key_pem=tls[1], require_client_certificate=False
                )
            )
        endpoint = await TcpEndpoint.listen(
            "127.0.0.1", 0, handler=handler, config=TcpConfig(keepalive_s=None), security=security
        )
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


def _load_stream(
    port: int, seconds: float, window: int, seed: int, ca_pem: bytes | None, conn: Connection
) -> None:
    """Keep ``window`` GETs in flight over one TCP (or TLS) connection; report completions."""
    import ssl

    sock: socket.socket = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if ca_pem is not None:
        ctx = ssl.create_default_context(cadata=ca_pem.decode())
        sock = ctx.wrap_socket(sock, server_hostname="localhost")
    # CSM first (RFC 8323 5.3): Max-Message-Size 1152
    sock.sendall(bytes((0x30, 0xE1, 0x22, 0x04, 0x80)))
    # Len 6 (Uri-Path "bench"), TKL 4 | GET | token
    head = bytes((0x64, 0x01))
    opt = bytes((0xB0 | len(PATH),)) + PATH
    counter = seed << 24

    def request() -> bytes:
        nonlocal counter
        counter = (counter + 1) & 0xFFFFFFFF
        return head + counter.to_bytes(4, "big") + opt

    conn.recv()  # go
    start = time.perf_counter()
    warm_end = start + min(0.5, seconds / 4)
    end = warm_end + seconds
    sock.sendall(b"".join(request() for _ in range(window)))
    buf = bytearray()
    done = counted_from = 0
    warm = True
    while True:
        data = sock.recv(65536)
        if not data:
            break
        buf += data
        answered = 0
        pos = 0
        while pos < len(buf):
            first = buf[pos]
            length, tkl = first >> 4, first & 0x0F
            ext = (0, 1, 2, 4)[length - 12] if length >= 13 else 0
            if length >= 13:
                if pos + 1 + ext > len(buf):
                    break
                length = (
                    int.from_bytes(buf[pos + 1 : pos + 1 + ext], "big") + (13, 269, 65805)[ext // 2]
                )
            size = 1 + ext + 1 + tkl + length
            if pos + size > len(buf):
                break
            if buf[pos + 1 + ext] == 0x45:  # 2.05
                answered += 1
            pos += size
        del buf[:pos]
        if answered:
            done += answered
            sock.sendall(b"".join(request() for _ in range(answered)))
            now = time.perf_counter()
            if warm and now >= warm_end:
                warm = False
                counted_from = done
            if now >= end:
                break
    elapsed = time.perf_counter() - warm_end
    conn.send((done - counted_from, elapsed, 0))
    sock.close()


def _measure(
    port: int,
    seconds: float,
    window: int,
    clients: int,
    stream: bool = False,
    ca_pem: bytes | None = None,
) -> float:
    ctx = mp.get_context("spawn")
    pipes = []
    procs = []
    for i in range(clients):
        parent, child = ctx.Pipe()
        per = max(1, window // clients)
        load_args: tuple[object, ...] = (
            (port, seconds, per, i + 1, ca_pem, child)
            if stream
            else (port, seconds, per, i + 1, child)
        )
        proc = ctx.Process(target=_load_stream if stream else _load, args=load_args, daemon=True)
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
    name: str,
    target: Callable[..., None],
    args: tuple[object, ...],
    opts: argparse.Namespace,
    *,
    stream: bool = False,
    ca_pem: bytes | None = None,
) -> float:
    proc, port, loop_kind = _start_server(target, *args)
    try:
        _measure(port, min(1.0, opts.seconds), opts.window, opts.clients, stream, ca_pem)
        rates = [
            _measure(port, opts.seconds, opts.window, opts.clients, stream, ca_pem)
            for _ in range(opts.rounds)
        ]
    finally:
        proc.terminate()
        proc.join()
    return _row(name, rates, f"loop {loop_kind}")


def _row(name: str, rates: list[float], note: str) -> float:
    """Print one table row (median of the rounds) and return the median."""
    median = statistics.median(rates)
    figures = ", ".join(f"{r:,.0f}" for r in rates)
    print(f"{name:<32} {median:>10,.0f} req/s  ({note}; rounds: {figures})", flush=True)
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
    parser.add_argument(
        "--dtls-clients",
        type=int,
        default=8,
        help="client Endpoints sending back to back for the DTLS and its UDP reference rows",
    )
    parser.add_argument(
        "--transports",
        default="udp,dtls,tcp,tls",
        help="comma-separated: udp (with the aiocoap comparison), dtls, tcp, tls (default: all)",
    )
    parser.set_defaults(uvloop="both")
    opts = parser.parse_args(argv)
    transports = {t.strip() for t in opts.transports.split(",") if t.strip()}
    unknown = transports - {"udp", "dtls", "tcp", "tls"}
    if unknown:
        parser.error(f"unknown transports: {', '.join(sorted(unknown))}")

    print(
        f"CoAP CON GET -> 2.05 '{PAYLOAD.decode()}'; {opts.window} in flight; "
        f"{os.cpu_count()} CPUs; eager handlers: {opts.eager}",
        flush=True,
    )
    ours: dict[str, float] = {}
    if transports & {"tcp", "tls"}:
        _run_streams(opts, transports)
    if "dtls" in transports:
        _run_dtls(opts)
    if "udp" not in transports:
        return 0
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


def _run_streams(opts: argparse.Namespace, transports: set[str]) -> None:
    """CoAP over TCP and TLS rows (our server on the asyncio loop, and uvloop when asked)."""
    kinds = {"both": ["asyncio", "uvloop"], "none": ["asyncio"], "only": ["uvloop"]}[opts.uvloop]
    if "uvloop" in kinds:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            kinds.remove("uvloop")
    tcp: dict[str, float] = {}
    tls: dict[str, float] = {}
    if "tcp" in transports:
        for kind in kinds:
            tcp[kind] = _run(
                f"lwm2m.coap TCP ({kind})",
                _serve_lwm2m_stream,
                (kind == "uvloop", None),
                opts,
                stream=True,
            )
    if "tls" in transports:
        from lwm2m.security.certs import make_ca, make_cert

        ca = make_ca("bench")
        cert = make_cert(ca, "localhost", ["localhost"])
        for kind in kinds:
            tls[kind] = _run(
                f"lwm2m.coap TLS ({kind})",
                _serve_lwm2m_stream,
                (kind == "uvloop", (cert.cert_pem, cert.key_pem)),
                opts,
                stream=True,
                ca_pem=ca.cert_pem,
            )
    for kind in kinds:
        if kind in tcp and kind in tls:
            print(f"ratio TLS/TCP ({kind}): {tls[kind] / tcp[kind]:.2f}", flush=True)


def _run_dtls(opts: argparse.Namespace) -> None:
    """DTLS PSK row and its plain-UDP reference, both measured by bench/dtls.py's load."""
    import dtls as dtls_bench  # bench/dtls.py

    rates = dtls_bench.request_rates(opts.seconds, opts.dtls_clients, opts.rounds)
    note = f"loop asyncio; {opts.dtls_clients} client endpoints"
    plain = _row("lwm2m.coap UDP (endpoints)", rates[False], note)
    secure = _row("lwm2m.coap DTLS PSK (endpoints)", rates[True], note)
    print(f"ratio DTLS/UDP (same load): {secure / plain:.2f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())

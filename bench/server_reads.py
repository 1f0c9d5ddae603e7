"""Benchmark of the LwM2M server's reads, and memory per registration.

    python bench/server_reads.py [--store memory|sqlite] [--clients 1000] [--seconds 5]

Registrations/s are measured by ``bench/server.py`` (a C load generator).

1. Reads per second: ``--clients`` simulated clients (one UDP socket each, in
   a separate process) register, then answer every GET with a fixed
   text/plain payload; the server reads from them with ``--read-window`` reads in
   flight (beyond ~128 in flight on loopback, socket buffers overflow and
   CoAP retransmission timeouts dominate the figure) through :meth:`LwM2MServer.read` (the full API path: typed
   request, CON exchange, decoding with the model).
2. Memory per registration: 100,000 Register requests run through the
   registrar into the in-memory store; tracemalloc's net growth divided by
   the count.

Figures are printed; nothing is asserted (timings belong here, not in tests).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import multiprocessing as mp
import os
import sys
import tempfile
import time
import tracemalloc
from typing import Any

from lwm2m.coap import codec
from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.message import Message
from lwm2m.coap.peer import Peer
from lwm2m.server import LwM2MServer, ServerConfig
from lwm2m.stores import open_stores

PAYLOAD = b'</>;rt="oma.lwm2m",</1/0>,</3/0>,</4/0>,</5/0>'


def _install_loop() -> None:
    try:
        from lwm2m.coap.loop import install_best_event_loop

        install_best_event_loop()
    except ImportError:
        pass


class _Socket(asyncio.DatagramProtocol):
    """A raw UDP socket matching ACKs to waiters by message ID."""

    def __init__(self, on_request: Any = None) -> None:
        self.waiters: dict[int, asyncio.Future[Message]] = {}
        self.transport: Any = None
        self.on_request = on_request
        self.mid = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        msg = codec.decode(data)
        if msg.type == MessageType.ACK:
            fut = self.waiters.pop(msg.mid, None)
            if fut is not None and not fut.done():
                fut.set_result(msg)
        elif msg.type == MessageType.CON and self.on_request is not None:
            self.transport.sendto(codec.encode(self.on_request(msg)), addr)

    async def request(self, message: Message, address: tuple[str, int]) -> Message:
        self.mid = (self.mid + 1) & 0xFFFF
        mid = self.mid
        fut: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self.waiters[mid] = fut
        data = codec.encode(message.with_(mid=mid, token=mid.to_bytes(2, "big")))
        # A lost datagram (full socket buffer) is retransmitted like CoAP would.
        for _ in range(4):
            self.transport.sendto(data, address)
            try:
                return await asyncio.wait_for(asyncio.shield(fut), 2.0)
            except TimeoutError:
                continue
        raise TimeoutError(f"no answer to MID {mid}")


# --------------------------------------------------------------------------- load generators


class _Responder(_Socket):
    """A simulated client's socket: answers any CON request without decoding it.

    The reply is built from the request's header bytes (ACK, 2.05, same MID and
    token, Content-Format 0, payload): the load generator must not be the
    bottleneck of a server benchmark.
    """

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) >= 4 and data[0] >> 4 & 3 == 0 and 1 <= data[1] <= 31:
            tkl = data[0] & 0x0F
            self.transport.sendto(
                bytes((0x60 | tkl, 0x45)) + data[2 : 4 + tkl] + b"\xc0\xffACME Corp", addr
            )
            return
        super().datagram_received(data, addr)


def _simulated_clients(address: tuple[str, int], count: int, conn: Any) -> None:
    _install_loop()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        socks = []
        for _ in range(count):
            _, proto = await loop.create_datagram_endpoint(_Responder, local_addr=("127.0.0.1", 0))
            socks.append(proto)
        sem = asyncio.Semaphore(200)

        async def register(n: int, sock: _Socket) -> None:
            async with sem:
                reply = await sock.request(
                    Message(
                        Code.POST,
                        uri_path=("rd",),
                        uri_query=(f"ep=sim-{n}", "lt=3600"),
                        payload=PAYLOAD,
                    ),
                    address,
                )
                assert reply.code == Code.CREATED

        await asyncio.gather(*(register(n, s) for n, s in enumerate(socks)))
        conn.send("registered")
        await loop.run_in_executor(None, conn.recv)  # wait until the server is done

    asyncio.run(main())


# --------------------------------------------------------------------------- benchmarks


async def bench_reads(store: str, clients: int, window: int, seconds: float) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        stores = await open_stores(store, tmp)
        server = LwM2MServer(stores, config=ServerConfig(coap_port=0, request_timeout_s=10))
        await server.start()
        parent, child = mp.Pipe()
        proc = mp.get_context("spawn").Process(
            target=_simulated_clients, args=(server.coap_address, clients, child)
        )
        proc.start()
        loop = asyncio.get_running_loop()
        assert await loop.run_in_executor(None, parent.recv) == "registered"
        names = [f"sim-{n}" for n in range(clients)]
        assert all(server.get_registration(n) is not None for n in names)
        count = 0
        stop_at = time.perf_counter() + seconds

        async def lane(k: int) -> None:
            nonlocal count
            i = k
            while time.perf_counter() < stop_at:
                resp = await server.read(names[i % clients], "/3/0/0")
                assert resp.content.value == "ACME Corp"  # type: ignore[union-attr]
                count += 1
                i += window

        start = time.perf_counter()
        await asyncio.gather(*(lane(k) for k in range(window)))
        elapsed = time.perf_counter() - start
        parent.send("done")
        proc.join()
        await server.stop()
        await stores.close()
    rate = count / elapsed
    print(
        f"Reads ({clients} simulated clients, {window} in flight): "
        f"{count} in {elapsed:.2f} s = {rate:,.0f}/s"
    )
    return rate


async def bench_memory(count: int) -> float:
    stores = await open_stores("memory")
    server = LwM2MServer(stores, config=ServerConfig(coap_port=0))
    registrar = server.registrar
    messages = [
        Message(
            Code.POST,
            uri_path=("rd",),
            uri_query=(f"ep=urn:uuid:{n:08x}-0000-4000-8000-000000000000", "lt=86400", "b=U"),
            payload=PAYLOAD,
        )
        for n in range(count)
    ]
    peers = [Peer((f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}", 5683)) for n in range(count)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for msg, peer in zip(messages, peers, strict=True):
        reply = await registrar.register(msg, peer)
        assert reply.code == Code.CREATED
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    per = (after - before) / count
    print(
        f"Memory: {count:,} registrations add {(after - before) / 1e6:.1f} MB = {per:,.0f} bytes each"
    )
    return per


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", default="memory", help="memory or sqlite")
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--read-window", type=int, default=64, help="reads in flight")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--registrations", type=int, default=100_000)
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, loop {type(asyncio.get_running_loop()).__module__}"
    )
    reads = await bench_reads(args.store, args.clients, args.read_window, args.seconds)
    per = await bench_memory(args.registrations)
    print(
        f"reads >= 10,000/s {'met' if reads >= 10000 else 'MISSED'}; "
        f"< 2 KB per registration {'met' if per < 2048 else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.WARNING)
    _install_loop()
    sys.exit(asyncio.run(main()))

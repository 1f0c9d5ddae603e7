"""The server's own CPU time per registration request, without sockets or a load generator.

    python bench/hot_path.py [--store memory|sqlite] [--endpoints 20000] [--rounds 3]

Builds the server as ``lwm2m server`` does (``LwM2MServer`` behind the shutdown
gate, the endpoint with the server's ``inline_handlers``, the command's garbage
collector thresholds), replaces the
endpoint's socket by a sink, and feeds Register, Update and De-register
datagrams straight into the endpoint's datagram callback, 128 in flight per
loop turn as ``bench/loadgen.c`` keeps them. It prints the process CPU time per
request of each phase (median of the rounds): the Python cost of datagram ->
engine -> handler -> answer, without the system calls that ``bench/server.py``
also counts, and steadier than it on a shared machine. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import tempfile
import time
from typing import Any, cast

from lwm2m.cli.gc_policy import tune_for_server
from lwm2m.cli.shutdown import RequestGate
from lwm2m.coap.codec import decode, encode
from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.endpoint import Endpoint
from lwm2m.coap.loop import install_best_event_loop
from lwm2m.coap.message import Message
from lwm2m.server.server import LwM2MServer, ServerConfig
from lwm2m.stores import open_stores

LANES = 128
PAYLOAD = b'</>;rt="oma.lwm2m",</1/0>,</3/0>,</4/0>,</5/0>'
Datagram = tuple[bytes, tuple[str, int]]


class Sink:
    """Stands for the socket: keeps what the endpoint sends, and the MIDs answered."""

    def __init__(self) -> None:
        self.sent: list[Datagram] = []
        self.answered: set[tuple[tuple[str, int], int]] = set()
        self.expected = 0
        self.all_answered: asyncio.Future[None] | None = None

    def sendto(self, data: bytes, address: tuple[str, int]) -> None:
        if len(data) >= 4 and data[1]:  # not an empty ACK: the answer
            self.sent.append((data, address))
            self.answered.add((address, data[2] << 8 | data[3]))
            done = self.all_answered
            if len(self.answered) >= self.expected and done is not None and not done.done():
                done.set_result(None)


async def phase(endpoint: Any, sink: Sink, requests: list[Datagram]) -> float:
    """CPU µs per request, LANES requests per loop turn, each batch answered before the next.

    A batch still waiting (for the SQLite commit) is awaited on a future, not
    polled: the figure must not count the bench's own waiting.
    """
    loop = asyncio.get_running_loop()
    started = time.process_time()
    for i in range(0, len(requests), LANES):
        batch = requests[i : i + LANES]
        sink.answered.clear()
        sink.expected = len(batch)
        sink.all_answered = loop.create_future()
        for data, address in batch:
            endpoint._datagram_received(data, address)
        if len(sink.answered) < len(batch):
            await sink.all_answered
    return (time.process_time() - started) / len(requests) * 1e6


async def run(store: str, endpoints: int, rounds: int) -> dict[str, list[float]]:
    data = tempfile.mkdtemp()
    stores = await open_stores(store, data)
    server = LwM2MServer(stores, config=ServerConfig(coap_port=0))
    gate = RequestGate()
    # (an older tree without inline handlers can be measured too: PYTHONPATH=<its src>)
    inline = getattr(server, "inline_handlers", None)
    options = {} if inline is None else {"inline_handlers": inline}
    endpoint = await Endpoint.create(
        "127.0.0.1", 0, handler=gate.admit(getattr(server, "handle_now", server.handle)), **options
    )
    await server.start_with(endpoint, None)
    sink = Sink()
    # The sink stands in for the socket: it has sendto, the one call Endpoint._pump makes
    # on its socket on this path (the endpoint's transport stays, to close the real one).
    endpoint._sock = cast(socket.socket, sink)
    # Per lane (source port) as loadgen.c does: a (peer, MID) pair never repeats in a run.
    mids = [0] * LANES
    tokens = 0

    def datagram(n: int, message: Message) -> Datagram:
        nonlocal tokens
        lane = n % LANES
        mid = mids[lane] = (mids[lane] + 1) & 0xFFFF
        tokens += 1
        framed = Message(
            message.code,
            MessageType.CON,
            mid,
            tokens.to_bytes(4, "big"),
            message.payload,
            uri_path=message.uri_path,
            uri_query=message.uri_query,
            content_format=message.content_format,
        )
        return encode(framed), ("127.0.0.1", 40000 + lane)

    figures: dict[str, list[float]] = {
        "register": [],
        "reregister": [],
        "update": [],
        "deregister": [],
    }
    try:
        for _ in range(rounds):
            query = ("lt=86400", "lwm2m=1.1", "b=U")
            for name in ("register", "reregister"):  # the second replaces each one (a storm)
                registers = [
                    datagram(
                        n,
                        Message(
                            Code.POST,
                            uri_path=("rd",),
                            uri_query=(f"ep=dev{n:07d}", *query),
                            payload=PAYLOAD,
                            content_format=40,
                        ),
                    )
                    for n in range(endpoints)
                ]
                sink.sent.clear()
                figures[name].append(await phase(endpoint, sink, registers))
            locations = [decode(d).location_path for d, _ in sink.sent]
            held = [path for path in locations if path]
            for name, code in (("update", Code.POST), ("deregister", Code.DELETE)):
                requests = [datagram(n, Message(code, uri_path=p)) for n, p in enumerate(held)]
                sink.sent.clear()
                figures[name].append(await phase(endpoint, sink, requests))
                answers = {decode(d).code for d, _ in sink.sent}
                if answers - {Code.CHANGED, Code.DELETED}:
                    print(f"  {name}: unexpected answers {sorted(int(c) for c in answers)}")
    finally:
        await server.stop()
        await endpoint.close()
        await stores.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", action="append", help="memory and/or sqlite (default: both)")
    parser.add_argument("--endpoints", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    install_best_event_loop()
    tune_for_server()
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for store in args.store or ["memory", "sqlite"]:
        figures = asyncio.run(run(store, args.endpoints, args.rounds))
        medians = ", ".join(f"{k} {statistics.median(v):.1f}" for k, v in figures.items())
        print(f"{store}: CPU µs per request (median of {args.rounds}): {medians}")


if __name__ == "__main__":
    main()

"""Memory of one cluster node over a large fleet in Redis (issue 12: 1 M registered, 50 k own, < 300 MB).

Writes ``--total`` registrations with distinct payloads into a private redis-server
(started here on a free port), through the store's own Register script so every
index and counter is as a node would leave it; ``--own`` of them are owned by node
``x``, the rest by other nodes. Then starts ``lwm2m server --store redis://...
--node-id x`` and prints its RSS once it answers, after a storm of Updates from
its own devices (one per device, from new source ports), and after REST pages and
counts of the whole fleet. A node ``nobody`` (owning nothing) is measured first,
as the baseline of a node on that Redis.

    PYTHONPATH=src python3 bench/cluster_memory.py                  # 1 M / 50 k
    PYTHONPATH=src python3 bench/cluster_memory.py --total 200000 --own 10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from server import kill_children, spawn

from lwm2m.coap import codec
from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.message import Message
from lwm2m.server.object_links import decode_links_payload
from lwm2m.stores.codec import registration_text
from lwm2m.stores.records import Registration
from lwm2m.stores.redis_scripts import REGISTER, client_key, tag

PREFIX = "lwm2m:"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("redis-server is not installed")
    port = free_port()
    proc = spawn(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    sys.exit("redis-server did not start")


_LINKS: dict[str, Any] = {}


def _links(payload: str) -> Any:
    """Parsed once per distinct payload (7,469 of them), as the server shares them."""
    links = _LINKS.get(payload)
    if links is None:
        links = _LINKS[payload] = decode_links_payload(payload.encode())
    return links


def registration(i: int, now: float) -> Registration:
    """Distinct payloads: each device announces its own instances and names."""
    rng = random.Random(i)
    payload = f"</1/0>,</3/0>,</4/0>,</3303/{i % 7}>,</3303/{i % 11 + 7}>,</{10240 + i % 97}/0>"
    return Registration(
        id=f"{i:010x}",
        endpoint=f"urn:dev:{'meter' if i % 3 else 'tracker'}-{i:08d}",
        address=(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 40000 + i % 20000),
        lifetime_s=86400,
        registered_at=now - rng.randrange(3600),
        updated_at=now,
        lwm2m_version=rng.choice(["1.0", "1.1", "1.2"]),
        binding=rng.choice(["U", "UQ"]),
        queue_mode=i % 5 == 0,
        links=_links(payload),
    )


def fill(port: int, total: int, own: int, node: str) -> float:
    """Every registration through the Register script, pipelined; owned ones first."""
    import redis

    client = redis.Redis(port=port)
    sha = client.script_load(REGISTER)
    now = time.time()
    start = time.perf_counter()
    pipe = client.pipeline(transaction=False)
    for i in range(total):
        reg = registration(i, now)
        owner = node if i < own else f"other-{i % 3}"
        pipe.evalsha(
            sha,
            0,
            PREFIX,
            reg.id,
            reg.endpoint,
            registration_text(reg),
            client_key(reg),
            repr(reg.expires_at),
            repr(reg.registered_at),
            "15.0",
            owner,
            tag(reg),
        )
        if i % 2000 == 1999:
            pipe.execute()
            if i % 100_000 == 99_999:
                print(f"  {i + 1} written", flush=True)
    pipe.execute()
    used = client.info("memory")["used_memory"] / 2**20
    print(f"Redis holds {client.hlen(PREFIX + 'registrations')} registrations, {used:.0f} MB")
    return time.perf_counter() - start


def start_node(port: int, node: str, data: Path) -> tuple[subprocess.Popen[bytes], int, int]:
    """The real command; its CoAP and HTTP ports read back from its log."""
    log_path = data / f"{node}.log"
    cmd = [sys.executable, "-m", "lwm2m", "--log-level", "INFO", "server"]
    cmd += ["--store", f"redis://127.0.0.1:{port}/0", "--node-id", node, "--data", str(data)]
    # --http-port 0 turns the web app off: a free port is picked here.
    cmd += ["--coap-port", "0", "--coaps-port", "0", "--http-port", str(free_port())]
    cmd += ["--no-bootstrap"]
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    proc = spawn(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.perf_counter() + 600
    while time.perf_counter() < deadline:
        text = log_path.read_text(errors="replace")
        coap = re.search(r"listening on coap://127\.0\.0\.1:(\d+)", text)
        http = re.search(r"http://[0-9.]+:(\d+)", text)
        if coap and http:
            return proc, int(coap.group(1)), int(http.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    sys.exit(f"node {node} did not start:\n{log_path.read_text()[-3000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Storm(asyncio.DatagramProtocol):
    """Updates of the own registrations, ``window`` in flight, from one new source port."""

    def __init__(self, ids: list[str], window: int) -> None:
        self.ids = ids
        self.window = window
        self.next = 0
        self.pending: dict[int, str] = {}
        self.codes: dict[str, int] = {}
        self.done = asyncio.get_running_loop().create_future()
        self.transport: Any = None
        self.target: tuple[str, int] = ("127.0.0.1", 0)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def send_more(self) -> None:
        while len(self.pending) < self.window and self.next < len(self.ids):
            rid = self.ids[self.next]
            mid = self.next & 0xFFFF
            self.next += 1
            msg = Message(Code.POST, MessageType.CON, mid, mid.to_bytes(2, "big"))
            self.pending[mid] = rid
            self.transport.sendto(codec.encode(msg.with_(uri_path=("rd", rid))), self.target)
        if not self.pending and self.next >= len(self.ids) and not self.done.done():
            self.done.set_result(None)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        reply = codec.decode(data)
        if self.pending.pop(reply.mid, None) is not None:
            code = reply.code  # an int for a code the codec has no name for
            name = code.dotted if isinstance(code, Code) else f"{code >> 5}.{code & 0x1F:02d}"
            self.codes[name] = self.codes.get(name, 0) + 1
        self.send_more()


async def storm(port: int, ids: list[str], window: int = 64) -> tuple[float, dict[str, int]]:
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    codes: dict[str, int] = {}
    for chunk in range(0, len(ids), 60000):  # MIDs of one socket stay unique
        part = ids[chunk : chunk + 60000]
        transport, proto = await loop.create_datagram_endpoint(
            lambda part=part: Storm(part, window),  # type: ignore[misc]
            local_addr=("127.0.0.1", 0),
        )
        proto.target = ("127.0.0.1", port)
        proto.send_more()
        while not proto.done.done():
            sent = proto.next
            await asyncio.wait([proto.done], timeout=5)
            if proto.next == sent and proto.pending:  # lost datagrams: send them again
                for mid, rid in list(proto.pending.items()):
                    msg = Message(Code.POST, MessageType.CON, mid, mid.to_bytes(2, "big"))
                    transport.sendto(codec.encode(msg.with_(uri_path=("rd", rid))), proto.target)
        transport.close()
        for code, n in proto.codes.items():
            codes[code] = codes.get(code, 0) + n
    return time.perf_counter() - start, codes


def rest(http: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{http}{path}", timeout=60) as answer:
        return json.load(answer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--total", type=int, default=1_000_000)
    parser.add_argument("--own", type=int, default=50_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        redis_proc, port = start_redis(data)
        try:
            print(f"writing {args.total} registrations, {args.own} of them node x's ...")
            took = fill(port, args.total, args.own, "x")
            print(f"written in {took:.0f} s")
            base, _, _ = start_node(port, "nobody", data)
            time.sleep(2)
            baseline = rss_mb(base.pid)
            stop(base)
            print(f"node owning nothing: RSS {baseline:.0f} MB")
            start = time.perf_counter()
            node, coap, http = start_node(port, "x", data)
            started = time.perf_counter() - start
            time.sleep(2)
            at_start = rss_mb(node.pid)
            print(f"node x started in {started:.1f} s: RSS {at_start:.0f} MB")
            ids = [f"{i:010x}" for i in range(args.own)]
            secs, codes = asyncio.run(storm(coap, ids))
            after = rss_mb(node.pid)
            print(f"{len(ids)} Updates in {secs:.1f} s ({codes}): RSS {after:.0f} MB")
            page = rest(http, "/api/clients?limit=50&offset=500000")
            stats = rest(http, "/api/stats")
            search = rest(http, "/api/clients?limit=20&q=tracker-0000")
            print(
                f"REST: page total {page.get('total')}, stats {stats.get('registrations')}, "
                f"search total {search.get('total')}: RSS {rss_mb(node.pid):.0f} MB"
            )
            per = (after - baseline) * 1024 / max(1, args.own)
            print(
                f"per own registration: {per:.1f} kB over the baseline; "
                f"at 50 k own: {baseline + per * 50_000 / 1024:.0f} MB (target < 300 MB)"
            )
            stop(node)
        finally:
            redis_proc.terminate()
            redis_proc.wait(10)


if __name__ == "__main__":
    try:
        main()
    finally:
        kill_children()

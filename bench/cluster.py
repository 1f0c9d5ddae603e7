"""Benchmark of a cluster behind nginx: Register/s and Read/s with 1 node and with 2 nodes.

    python bench/cluster.py [--seconds 5] [--rounds 3] [--devices 200]

Everything runs on this machine: redis-server (``appendonly yes``,
``appendfsync always``: the durability of the SQLite store), nginx with the
stream configuration of docs/cluster-nginx.conf, ``lwm2m server --store
redis://...`` nodes, and the load:

1. the generator's own ceiling through nginx to a trivial C responder
   (``bench/loadgen.c respond``), and without nginx, so nginx's cost shows;
2. Register/s (also Update/s, De-register/s) of the re-registration storm of
   ``bench/loadgen.c`` through nginx, with 1 node then 2 nodes; the
   generator's lanes are separate sockets, so nginx's hash on
   ``$remote_addr:$remote_port`` spreads them over the nodes, and each name
   always goes out of the same lane (``sticky``), as a device keeps its
   source port and so its node (without it, every other Register and Update
   moved a registration to the other node: a take-over per request, which
   real devices do only when their node dies);
3. Read/s: ``--devices`` simulated devices (``lwm2m client --count``)
   registered through nginx, read (/3/0/0) through the REST API of each one's
   owner node by ``--concurrency`` requests in flight, with 1 node then 2.

Each figure is the median of ``--rounds``; the ratio 2 nodes / 1 node is
printed. Nothing is asserted (timings belong here, not in tests).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from server import (
    build_loadgen,
    cpu_s,
    kill_children,
    machine_line,
    run_loadgen,
    spawn,
    stop,
    wait_coap,
)

STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
#: redis-server's pid by URL, and nginx's master pid by its UDP port, for their CPU figures.
REDIS_PIDS: dict[str, int] = {}
NGINX_PIDS: dict[int, int] = {}


def free_port(kind: socket.SocketKind) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def nginx_config(prefix: Path, listen: int, upstreams: list[int]) -> str:
    """docs/cluster-nginx.conf's stream part, on loopback ports, in the foreground."""
    servers = "".join(
        f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=30s;\n" for p in upstreams
    )
    return (
        f"load_module {STREAM_MODULE};\ndaemon off;\nworker_processes 1;\n"
        f"pid {prefix}/nginx.pid;\nerror_log {prefix}/error.log warn;\n"
        "events { worker_connections 8192; }\n"
        "stream {\n  upstream lwm2m_coap {\n    hash $remote_addr:$remote_port consistent;\n"
        f"{servers}  }}\n"
        f"  server {{ listen 127.0.0.1:{listen} udp; proxy_pass lwm2m_coap; proxy_timeout 600s; }}\n"
        "}\n"
    )


@contextmanager
def nginx(workdir: Path, upstreams: list[int]) -> Iterator[int]:
    """nginx in front of ``upstreams``; yields its UDP port."""
    prefix = workdir / f"nginx-{len(upstreams)}-{time.monotonic_ns()}"
    prefix.mkdir()
    port = free_port(socket.SOCK_DGRAM)
    conf = prefix / "nginx.conf"
    conf.write_text(nginx_config(prefix, port, upstreams))
    proc = spawn(
        ["nginx", "-p", str(prefix), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not (prefix / "nginx.pid").exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start: {(prefix / 'error.log').read_text()}")
            time.sleep(0.05)
        NGINX_PIDS[port] = proc.pid
        yield port
    finally:
        stop(proc)


@contextmanager
def redis(workdir: Path) -> Iterator[str]:
    directory = workdir / f"redis-{time.monotonic_ns()}"
    directory.mkdir()
    port = free_port(socket.SOCK_STREAM)
    proc = spawn(
        [
            *("redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)),
            *("--save", "", "--appendonly", "yes", "--appendfsync", "always"),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        REDIS_PIDS[f"redis://127.0.0.1:{port}/0"] = proc.pid
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc)


class Node:
    def __init__(self, workdir: Path, url: str, node_id: str) -> None:
        self.data = workdir / f"node-{node_id}-{time.monotonic_ns()}"
        self.data.mkdir()
        self.http_port = free_port(socket.SOCK_STREAM)
        self.base_url = f"http://127.0.0.1:{self.http_port}"
        log = open(self.data / "node.log", "wb")  # noqa: SIM115 - closed with the process
        self.proc = spawn(
            [
                *(sys.executable, "-m", "lwm2m", "server", "--store", url, "--node-id", node_id),
                *("--data", str(self.data), "--coap-port", "0", "--coaps-port", "0"),
                *("--http-port", str(self.http_port), "--no-bootstrap"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 120
        while True:
            found = re.search(r"listening on coap://127\.0\.0\.1:(\d+)", self.log())
            if found:
                self.coap_port = int(found.group(1))
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"node {node_id} did not start: {self.log()[-2000:]}")
            time.sleep(0.05)
        wait_coap(self.coap_port, self.proc)

    def log(self) -> str:
        return (self.data / "node.log").read_text(errors="replace")


@contextmanager
def nodes(workdir: Path, url: str, count: int) -> Iterator[list[Node]]:
    started: list[Node] = []
    try:
        for i in range(count):
            started.append(Node(workdir, url, "abcdefgh"[i]))
        yield started
    finally:
        for node in started:
            stop(node.proc)


def with_children(pid: int) -> list[int]:
    """``pid`` and its children (nginx's master and its worker)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *(int(c) for c in children)]


def storm(
    loadgen: Path,
    port: int,
    args: argparse.Namespace,
    tag: str,
    pids: tuple[int, ...] = (),
    others: tuple[int, ...] = (),
) -> dict[str, float]:
    """Rates of the storm's phases, ``cpu_us``: the nodes' CPU per request answered, and
    ``others_us``: what Redis and nginx (``others``) spent per request."""
    watched = [*pids, *others]
    before = {pid: cpu_s(pid) for pid in watched}
    phases = run_loadgen(
        loadgen, "storm", port, args.seconds, args.endpoints, args.inflight, tag, sticky=True
    )
    rates: dict[str, float] = {
        p: phases[p]["rate"] for p in ("register", "update", "deregister") if p in phases
    }
    served = sum(phases[p]["ok"] for p in rates)
    if served:
        spent = {pid: cpu_s(pid) - before[pid] for pid in watched}
        if pids:
            rates["cpu_us"] = sum(spent[pid] for pid in pids) / served * 1e6
        if others:
            rates["others_us"] = sum(spent[pid] for pid in others) / served * 1e6
    return rates


def _texts(mapping: dict[bytes | str, bytes | str]) -> dict[str, str]:
    """A Redis hash as text (redis-py types every reply ``bytes | str``)."""
    from lwm2m.stores.redis import reply_text

    return {reply_text(key): reply_text(value) for key, value in mapping.items()}


def reads_per_s(
    url: str, node_list: list[Node], port: int, workdir: Path, args: argparse.Namespace, tag: str
) -> float:
    """Read/s of /3/0/0 through the owner nodes' REST APIs, devices registered through nginx."""
    import redis as redis_py

    fleet_log = open(workdir / f"fleet-{tag}.log", "wb")  # noqa: SIM115 - closed below
    fleet = spawn(
        [
            *(sys.executable, "-m", "lwm2m", "client", "--endpoint", tag),
            *("--server", f"coap://127.0.0.1:{port}", "--count", str(args.devices)),
            *("--lifetime", "600", "--host", "127.0.0.1", "--no-console"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=fleet_log,
        stderr=subprocess.STDOUT,
    )
    try:
        client = redis_py.Redis.from_url(url, decode_responses=True)
        deadline = time.monotonic() + 60
        while True:
            ids = _texts(client.hgetall("lwm2m:reg:endpoint"))
            mine = {ep: i for ep, i in ids.items() if ep.startswith(tag + "-")}
            if len(mine) == args.devices:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(mine)} of {args.devices} devices registered")
            time.sleep(0.2)
        owners = _texts(client.hgetall("lwm2m:reg:owner"))
        by_id = {node_id: node for node_id, node in zip("abcdefgh", node_list, strict=False)}
        targets = [f"{by_id[owners[i]].base_url}/api/clients/{ep}/3/0/0" for ep, i in mine.items()]
        client.close()
        return asyncio.run(_read_load(targets, args.seconds, args.concurrency))
    finally:
        fleet.kill()
        fleet.wait()
        fleet_log.close()


async def _read_load(targets: list[str], seconds: float, concurrency: int) -> float:
    done = 0
    failed = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        end = time.monotonic() + seconds

        async def worker(offset: int) -> None:
            nonlocal done, failed
            i = offset
            while time.monotonic() < end:
                reply = await client.get(targets[i % len(targets)])
                if reply.status_code == 200:
                    done += 1
                else:
                    failed += 1
                i += concurrency

        start = time.monotonic()
        await asyncio.gather(*(worker(k) for k in range(concurrency)))
        elapsed = time.monotonic() - start
    if failed:
        print(f"  {failed} Reads failed")
    return done / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per phase")
    parser.add_argument("--rounds", type=int, default=3, help="median of this many runs")
    parser.add_argument("--endpoints", type=int, default=20_000)
    parser.add_argument(
        "--inflight",
        type=int,
        default=64,
        help="loadgen lanes (sockets): at most 100 (the Redis pool)",
    )
    parser.add_argument("--devices", type=int, default=200, help="simulated devices for Read/s")
    parser.add_argument("--concurrency", type=int, default=32, help="REST Reads in flight")
    args = parser.parse_args()
    for tool in ("nginx", "redis-server"):
        if shutil.which(tool) is None:
            print(
                f"{tool} is not installed (apt-get install nginx libnginx-mod-stream redis-server)"
            )
            return 1
    if not Path(STREAM_MODULE).exists():
        print(f"{STREAM_MODULE} is absent (apt-get install libnginx-mod-stream)")
        return 1
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        loadgen = build_loadgen(tmp)
        if loadgen is None:
            return 1

        # 1. the generator's ceiling, straight and through nginx
        responder = spawn([str(loadgen), "respond", "0"], stdout=subprocess.PIPE, text=True)
        assert responder.stdout is not None
        rport = int(responder.stdout.readline().split("=")[1])
        direct = [storm(loadgen, rport, args, "c")["register"] for _ in range(args.rounds)]
        with nginx(tmp, [rport]) as port:
            proxied = [storm(loadgen, port, args, "p")["register"] for _ in range(args.rounds)]
        responder.kill()
        responder.wait()
        print(
            f"loadgen ceiling, trivial C responder: Register {statistics.median(direct):,.0f}/s "
            f"direct, {statistics.median(proxied):,.0f}/s through nginx"
        )

        # 2. and 3. the cluster, 1 node then 2, alternating per round
        registers: dict[int, list[float]] = {1: [], 2: []}
        updates: dict[int, list[float]] = {1: [], 2: []}
        reads: dict[int, list[float]] = {1: [], 2: []}
        cpu: dict[int, list[float]] = {1: [], 2: []}
        other_cpu: dict[int, list[float]] = {1: [], 2: []}
        for r in range(args.rounds):
            for count in (1, 2):
                with (
                    redis(tmp) as url,
                    nodes(tmp, url, count) as node_list,
                    nginx(tmp, [n.coap_port for n in node_list]) as port,
                ):
                    pids = tuple(n.proc.pid for n in node_list)
                    others = (REDIS_PIDS[url], *with_children(NGINX_PIDS[port]))
                    rates = storm(loadgen, port, args, f"s{count}{r}", pids, others)
                    cpu[count].append(rates.get("cpu_us", float("nan")))
                    other_cpu[count].append(rates.get("others_us", float("nan")))
                    registers[count].append(rates["register"])
                    updates[count].append(rates.get("update", float("nan")))
                    reads[count].append(
                        reads_per_s(url, node_list, port, tmp, args, f"r{count}{r}")
                    )
                    errors = sum(n.log().count(" ERROR ") for n in node_list)
                    if errors:
                        first = next(
                            line
                            for n in node_list
                            for line in n.log().splitlines()
                            if " ERROR " in line
                        )
                        print(f"  {errors} ERROR lines in the nodes' logs, first: {first[:300]}")
        load = os.getloadavg()
        for name, figures in (("Register", registers), ("Update", updates), ("Read", reads)):
            one, two = statistics.median(figures[1]), statistics.median(figures[2])
            print(
                f"{name}/s through nginx: 1 node {one:,.0f}, 2 nodes {two:,.0f}, "
                f"ratio {two / one:.2f} (rounds: {[round(x) for x in figures[1]]} / "
                f"{[round(x) for x in figures[2]]})"
            )
        print(
            f"nodes' CPU per storm request (Register, Update, De-register): 1 node "
            f"{statistics.median(cpu[1]):,.0f} us, 2 nodes {statistics.median(cpu[2]):,.0f} us"
        )
        print(
            f"redis-server + nginx CPU per storm request: 1 node "
            f"{statistics.median(other_cpu[1]):,.0f} us, 2 nodes "
            f"{statistics.median(other_cpu[2]):,.0f} us (on 2 cores, 2 nodes can give at most "
            "2 x (node) / (node + these) of one node bound by its core)"
        )
        print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        kill_children()

"""Processes of an end-to-end cluster: nginx (UDP stream), ``lwm2m server`` nodes, a simulated fleet.

Everything runs as a real subprocess on 127.0.0.1 with free ports, logs to a
file under the test's directory (a pipe nobody reads would stall a chatty
process) and is killed at teardown. Waits poll the processes' observable
state (Redis keys, REST answers) against a deadline: these are other
processes, so there is no in-process event to await.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
import pytest
from redis_helpers import RedisServer

#: Where Debian's libnginx-mod-stream puts the stream module.
STREAM_MODULE = Path("/usr/lib/nginx/modules/ngx_stream_module.so")

if TYPE_CHECKING:
    import redis

T = TypeVar("T")


def wait_until(check: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """``check()`` until it returns something truthy; AssertionError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what} (last: {last!r})")
        time.sleep(0.1)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def nginx_binary() -> str:
    """The nginx binary, or a skip naming the packages when it or its stream module is absent."""
    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )
    if binary is None:
        pytest.skip("nginx is not installed (apt-get install nginx libnginx-mod-stream)")
    if not STREAM_MODULE.exists():
        pytest.skip(
            f"nginx's stream module {STREAM_MODULE} is absent (apt-get install libnginx-mod-stream)"
        )
    return binary


def stream_config(
    *,
    prefix: Path,
    coap_listen: int,
    coap_upstreams: Iterable[int],
    proxy_timeout_s: int,
    coaps_listen: int | None = None,
    coaps_upstreams: Iterable[int] = (),
) -> str:
    """The nginx configuration of docs/cluster-nginx.conf, on loopback ports and in the foreground.

    The stream part is the shipped one: hash on the client's address *and
    port*, ``max_fails=1 fail_timeout=30s``, ``proxy_responses`` unset.
    """

    def upstream(name: str, ports: Iterable[int]) -> str:
        servers = "".join(
            f"        server 127.0.0.1:{port} max_fails=1 fail_timeout=30s;\n" for port in ports
        )
        return (
            f"    upstream {name} {{\n"
            "        hash $remote_addr:$remote_port consistent;\n"
            f"{servers}    }}\n"
        )

    def server(port: int, name: str) -> str:
        return (
            "    server {\n"
            f"        listen 127.0.0.1:{port} udp reuseport;\n"
            f"        proxy_pass {name};\n"
            f"        proxy_timeout {proxy_timeout_s}s;\n"
            "    }\n"
        )

    blocks = upstream("lwm2m_coap", coap_upstreams) + server(coap_listen, "lwm2m_coap")
    if coaps_listen is not None:
        blocks += upstream("lwm2m_coaps", coaps_upstreams) + server(coaps_listen, "lwm2m_coaps")
    return (
        f"load_module {STREAM_MODULE};\n"
        "daemon off;\n"
        "worker_processes 1;\n"
        f"pid {prefix}/nginx.pid;\n"
        f"error_log {prefix}/error.log notice;\n"
        "events { worker_connections 4096; }\n"
        f"stream {{\n{blocks}}}\n"
    )


class Nginx:
    """nginx in the foreground with its own prefix directory (``-p``) and configuration (``-c``)."""

    def __init__(self, prefix: Path, config: str) -> None:
        self.binary = nginx_binary()
        self.prefix = prefix
        prefix.mkdir(parents=True, exist_ok=True)
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(config)
        self.error_log = prefix / "error.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        check = subprocess.run(
            [self.binary, "-t", "-p", str(self.prefix), "-c", str(self.conf)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert check.returncode == 0, check.stderr
        with open(self.prefix / "stderr.log", "ab") as out:
            self.proc = subprocess.Popen(
                [self.binary, "-p", str(self.prefix), "-c", str(self.conf)],
                stdout=out,
                stderr=out,
            )
        wait_until(
            lambda: (
                self.proc is not None
                and (self.proc.poll() is None or self._fail())
                and "start worker process" in self.log()
            ),
            10,
            "nginx started",
        )

    def _fail(self) -> bool:
        raise AssertionError(f"nginx exited: {self.log()[-2000:]}")

    def log(self) -> str:
        return self.error_log.read_text() if self.error_log.exists() else ""

    def stop(self) -> None:
        _end(self.proc, signal.SIGTERM)  # fast shutdown: SIGQUIT would wait for the UDP sessions


class Node:
    """One ``lwm2m server`` process of the cluster, restartable on the same ports."""

    def __init__(
        self, node_id: str, redis_url: str, directory: Path, *, coap_port: int = 0
    ) -> None:
        self.node_id = node_id
        self.redis_url = redis_url
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.coap_port = coap_port or free_udp_port()
        self.http_port = free_tcp_port()
        self.base_url = f"http://127.0.0.1:{self.http_port}"
        self.log_file = directory / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_file, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "lwm2m", "server", "--store", self.redis_url),
                    *("--node-id", self.node_id, "--data", str(self.directory / "data")),
                    *("--coap-port", str(self.coap_port), "--http-port", str(self.http_port)),
                    *("--coaps-port", "0", "--no-bootstrap", "--stop-timeout", "1"),
                    *("--lifetime-grace", str(LIFETIME_GRACE_S)),
                ],
                stdout=out,
                stderr=out,
            )

    def wait_ready(self, timeout_s: float = 30) -> None:
        def up() -> bool:
            if self.proc is None or self.proc.poll() is not None:
                raise AssertionError(f"node {self.node_id} exited: {self.log()[-2000:]}")
            try:
                return httpx.get(self.base_url + "/api/server", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, timeout_s, f"node {self.node_id} answers its REST API")

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def kill(self) -> None:
        _end(self.proc, signal.SIGKILL)

    def stop(self) -> None:
        _end(self.proc, signal.SIGTERM)

    def endpoints(self) -> dict[str, str]:
        """endpoint -> registration id, as this node's REST API lists them."""
        reply = httpx.get(self.base_url + "/api/clients", timeout=10)
        reply.raise_for_status()
        return {c["endpoint"]: c["registrationId"] for c in reply.json()}


#: Seconds a registration outlives its lifetime on the nodes (short, so expiry tests are short).
LIFETIME_GRACE_S = 5


class Fleet:
    """``lwm2m client --count N``: N simulated devices, each its own UDP socket, in one process."""

    def __init__(
        self, base: str, count: int, server_port: int, lifetime_s: int, directory: Path
    ) -> None:
        self.base = base
        self.count = count
        self.server_port = server_port
        self.lifetime_s = lifetime_s
        directory.mkdir(parents=True, exist_ok=True)
        self.log_file = directory / f"fleet-{base}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoints(self) -> list[str]:
        width = len(str(self.count - 1))
        return [f"{self.base}-{i:0{width}d}" for i in range(self.count)]

    def start(self) -> None:
        with open(self.log_file, "ab") as out:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "lwm2m", "client", "--endpoint", self.base),
                    *("--server", f"coap://127.0.0.1:{self.server_port}"),
                    *("--count", str(self.count), "--rate", "1000"),
                    *("--lifetime", str(self.lifetime_s), "--host", "127.0.0.1", "--no-console"),
                    # nginx drops the first two datagrams of a session whose node died (the
                    # first fails on receive, the second on send and closes the session), so
                    # the third goes to a survivor: with ACK_TIMEOUT 1 s it leaves within ~5 s,
                    # inside the time an Update of a 20-30 s lifetime has left.
                    *("--ack-timeout", "1"),
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def pause(self) -> None:
        """SIGSTOP: the devices fall silent (no Update, no retransmission) until :meth:`resume`."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: the devices vanish without De-register, as a fleet losing power does."""
        _end(self.proc, signal.SIGKILL)


def _end(proc: subprocess.Popen[bytes] | None, sig: signal.Signals) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class SseParser:
    """``event:``/``data:`` lines of a text/event-stream, fed one at a time, to (kind, data) frames."""

    def __init__(self) -> None:
        self.kind = ""

    def feed(self, line: str) -> tuple[str, dict[str, Any]] | None:
        if line.startswith("event:"):
            self.kind = line[6:].strip()
        elif line.startswith("data:") and self.kind:
            kind, self.kind = self.kind, ""
            data: dict[str, Any] = json.loads(line[5:])
            return kind, data
        return None


#: Devices of one simulated fleet.
FLEET_SIZE = 300
#: Their registration lifetime: Updates every ~5 s, expiry ~15 s after a silent device's last one
#: (the node-kill and restart tests ask for 30 s: an Update then has time for retransmissions).
LIFETIME_S = 10
#: nginx keeps a device's UDP session this long without traffic; longer than the Update interval,
#: so the owner node can reach every device between its Updates.
PROXY_TIMEOUT_S = 60
NODE_IDS = ("a", "b", "c")


class Cluster:
    """The processes of one cluster and the few actions the tests take on them."""

    def __init__(self, directory: Path) -> None:
        nginx_binary()  # skip before starting anything when nginx is absent
        self.directory = directory
        redis_binary = shutil.which("redis-server")
        if redis_binary is None:
            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        pytest.importorskip(
            "redis", reason="redis-py is not installed (pip install 'lwm2m[redis]')"
        )
        (directory / "redis").mkdir()
        self.redis = RedisServer(redis_binary, directory / "redis")
        self.nodes = {
            node_id: Node(node_id, self.redis.url, directory / node_id) for node_id in NODE_IDS
        }
        self.port = free_udp_port()
        self.nginx = Nginx(
            directory / "nginx",
            stream_config(
                prefix=directory / "nginx",
                coap_listen=self.port,
                coap_upstreams=[node.coap_port for node in self.nodes.values()],
                proxy_timeout_s=PROXY_TIMEOUT_S,
            ),
        )
        self.fleet: Fleet | None = None
        self._fleets = 0

    def start(self) -> None:
        self.redis.start()
        for node in self.nodes.values():
            node.start()
        for node in self.nodes.values():
            node.wait_ready()
        self.nginx.start()

    def stop(self) -> None:
        if self.fleet is not None:
            self.fleet.kill()
        self.nginx.stop()
        for node in self.nodes.values():
            node.kill()
        self.redis.stop()

    def redis_client(self) -> redis.Redis:
        import redis

        return redis.Redis.from_url(self.redis.url, decode_responses=True)

    def registrations(self) -> dict[str, str]:
        """endpoint -> registration id, straight from Redis (the truth)."""
        with self.redis_client() as client:
            return dict(client.hgetall("lwm2m:reg:endpoint"))

    def owners(self) -> dict[str, str]:
        """registration id -> node id of its owner, from Redis."""
        with self.redis_client() as client:
            return dict(client.hgetall("lwm2m:reg:owner"))

    def live_fleet(self, lifetime_s: int = LIFETIME_S) -> Fleet:
        """The running fleet, all registered; a new one (new names) if the last was killed
        or has another lifetime."""
        if self.fleet is None or not self.fleet.alive() or self.fleet.lifetime_s != lifetime_s:
            if self.fleet is not None:
                self.fleet.kill()
            self._fleets += 1
            self.fleet = Fleet(
                f"dev{self._fleets}", FLEET_SIZE, self.port, lifetime_s, self.directory
            )
            self.fleet.start()
        fleet = self.fleet
        wait_until(
            lambda: set(fleet.endpoints) <= set(self.registrations()),
            30,
            f"all {FLEET_SIZE} devices of {fleet.base} registered",
        )
        return fleet

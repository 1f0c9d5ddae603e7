"""Two ``lwm2m server`` processes on one Redis: each beats, lists the other, and a SIGTERM
takes its node out of the list at once (the stop deletes its key)."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path as FsPath

import httpx
from server_helpers import free_tcp_port, output_line


@asynccontextmanager
async def server_process(
    redis_url: str, tmp_path: FsPath, node_id: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "lwm2m", "server", "--store", redis_url, "--node-id", node_id),
        *("--coap-port", "0", "--coaps-port", "0", "--no-bootstrap"),
        *("--http-port", str(free_tcp_port())),
        *("--cluster-heartbeat", "1", "--data", str(tmp_path / node_id)),
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        await output_line(proc.stderr, rf"cluster node {node_id}: heartbeat every 1 s")
        port = (await output_line(proc.stderr, r"REST API on http://127\.0\.0\.1:(\d+)/")).group(1)
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_two_server_processes_see_each_other_and_a_stop_leaves_the_list(
    redis_url: str, tmp_path: FsPath
) -> None:
    async with AsyncExitStack() as stack:
        proc_a, url_a = await stack.enter_async_context(server_process(redis_url, tmp_path, "a"))
        _, url_b = await stack.enter_async_context(server_process(redis_url, tmp_path, "b"))
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
        # Node a tells its HTTP address in a beat right after it binds (beat_soon), which
        # may land just after its "REST API on" line: wait for it, a few seconds at most.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while True:
            body = (await http.get(url_b + "/api/cluster")).json()
            nodes = {n["id"]: n for n in body["nodes"]}
            if nodes.get("a", {}).get("http") == url_a or loop.time() > deadline:
                break
            await asyncio.sleep(0.05)
        assert body["node"] == "b" and body["shared"] is True
        assert nodes["a"]["alive"] and nodes["b"]["alive"]
        assert nodes["a"]["http"] == url_a
        metrics = (await http.get(url_a + "/metrics")).text
        assert 'lwm2m_cluster_nodes{state="alive"} 2' in metrics
        proc_a.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc_a.wait(), 20) == 0
        body = (await http.get(url_b + "/api/cluster")).json()
        assert {n["id"]: n["alive"] for n in body["nodes"]} == {"a": False, "b": True}

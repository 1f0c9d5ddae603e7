"""Durable Register under group commit: 2.01 only after the batch holding the row committed."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path as FsPath

from server_helpers import RawPeer, register_message, started_server

from lwm2m.coap.codes import Code
from lwm2m.server import LwM2MServer, ServerConfig
from lwm2m.stores import SQLITE_FILENAME, open_stores
from lwm2m.stores.sqlite import SqliteStores
from lwm2m.web.metrics import Metrics


async def _register_each(peers: list[RawPeer], server: LwM2MServer, prefix: str) -> list[Code]:
    """The answer codes of one Register from each peer, all at once (one batch)."""
    replies = await asyncio.gather(
        *(
            peer.request(register_message((f"ep={prefix}-{n}",)), server.coap_address)
            for n, peer in enumerate(peers)
        )
    )
    return [Code(r.code) for r in replies]


async def test_register_refused_when_its_batch_fails_to_commit(tmp_path: FsPath) -> None:
    # The writer on a thread, to swap its COMMIT for a failing disk (the writer process
    # runs the same BatchWriter).
    stores = await SqliteStores.open(tmp_path / SQLITE_FILENAME, writer="thread")

    def failing_commit(single: object = None) -> None:
        raise sqlite3.OperationalError("disk I/O error (simulated)")

    stores._db._batch_writer.commit = failing_commit  # type: ignore[method-assign]
    peers = [await RawPeer.create() for _ in range(16)]
    try:
        async with LwM2MServer(stores, config=ServerConfig(coap_port=0)) as server:
            codes = await _register_each(peers, server, "lost")
            assert codes == [Code.INTERNAL_SERVER_ERROR] * len(peers)
            assert server.registrations() == []
            del stores._db._batch_writer.commit  # the disk is back
            reply = await peers[0].request(register_message(("ep=kept",)), server.coap_address)
            assert reply.code == Code.CREATED
    finally:
        for peer in peers:
            peer.close()
        await stores.close()
    reopened = await open_stores("sqlite", tmp_path)
    try:
        assert [r.endpoint for r in reopened.registrations.list()] == ["kept"]
    finally:
        await reopened.close()


async def test_every_acknowledged_register_survives_kill_9_in_a_storm(tmp_path: FsPath) -> None:
    """SIGKILL while batches are in flight: every 2.01 the clients saw has its row."""
    data = tmp_path / "data"
    proc, port = await started_server(data)
    peers = [await RawPeer.create() for _ in range(32)]
    acknowledged: dict[str, str] = {}
    enough = asyncio.Event()
    try:

        async def lane(n: int, peer: RawPeer) -> None:
            for i in range(10_000):
                ep = f"storm-{n}-{i}"
                reply = await peer.request(register_message((f"ep={ep}",)), ("127.0.0.1", port))
                assert reply.code == Code.CREATED
                acknowledged[ep] = reply.location_path[1]
                if len(acknowledged) >= 400:
                    enough.set()

        lanes = [asyncio.ensure_future(lane(n, p)) for n, p in enumerate(peers)]
        await asyncio.wait_for(enough.wait(), 60)
        proc.kill()  # with requests of every lane in flight
        await proc.wait()
        for task in lanes:
            task.cancel()
        await asyncio.gather(*lanes, return_exceptions=True)
    finally:
        for peer in peers:
            peer.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    stores = await open_stores("sqlite", data)
    try:
        stored = {r.endpoint: r.id for r in stores.registrations.list()}
        missing = {ep for ep in acknowledged if stored.get(ep) != acknowledged[ep]}
        assert not missing, f"{len(missing)} acknowledged registrations lost: {sorted(missing)[:5]}"
        assert len(acknowledged) >= 400
    finally:
        await stores.close()


async def test_the_server_counts_commits_writes_and_writer_deaths_for_metrics(
    tmp_path: FsPath,
) -> None:
    stores = await open_stores("sqlite", tmp_path)
    assert isinstance(stores, SqliteStores)
    peers = [await RawPeer.create() for _ in range(10)]
    try:
        async with LwM2MServer(stores, config=ServerConfig(coap_port=0)) as server:
            assert await _register_each(peers, server, "counted") == [Code.CREATED] * len(peers)
            counters = server.counters()
            assert counters["sqlite_writes_total"] == len(peers)
            assert 1 <= counters["sqlite_commits_total"] <= len(peers)
            assert counters["sqlite_writer_deaths_total"] == 0
            rendered = Metrics().render(
                registrations=None, bootstrap_configs=None, backend_counters=counters
            )
            assert "# TYPE lwm2m_sqlite_writer_deaths_total counter" in rendered
    finally:
        for peer in peers:
            peer.close()
        await stores.close()

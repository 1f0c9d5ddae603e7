"""`lwm2m client`: options, service mode with SIGTERM, --count, and the interactive console."""

from __future__ import annotations

import argparse
import asyncio
import io
import signal
import sys

import pytest
from client_harness import MakeClient, until
from client_rawserver import RawServer

from lwm2m.cli.client import add_arguments, build_config, run
from lwm2m.cli.console import Console
from lwm2m.client.config import ClientConfigError
from lwm2m.client.simulator import device_endpoint
from lwm2m.coap.codes import Code


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_build_config() -> None:
    args = parse(
        "--endpoint",
        "IMEI:490154203237518",
        "--ept",
        "2",
        "--server",
        "coap://127.0.0.1:5683",
        "--lifetime",
        "45",
        "--queue",
        "--bootstrap",
        "coap://127.0.0.1:5783",
    )
    config = build_config(args)
    assert config.endpoint_type == 2 and config.queue_mode
    (server, bootstrap) = config.servers
    assert (server.lifetime_s, server.binding, server.short_server_id) == (45, "UQ", 1)
    assert bootstrap.bootstrap
    psk = build_config(
        parse("-e", "d", "-s", "coaps://h:5684", "--psk-identity", "id", "--psk-key", "00ff")
    )
    assert psk.servers[0].psk_key == b"\x00\xff" and psk.servers[0].security_mode == 0
    with pytest.raises(ClientConfigError):
        build_config(parse("-e", "d", "-s", "coaps://h", "--psk-identity", "id", "--psk-key", "zz"))
    with pytest.raises(ClientConfigError):
        build_config(parse("-e", "d", "-s", "http://h"))
    with pytest.raises(ClientConfigError):
        build_config(parse("-e", "bad", "--ept", "1", "-s", "coap://h"))
    storing = build_config(
        parse(
            "-e", "d", "-s", "coap://h", "--stored-notifications", "5", "--no-notification-storing"
        )
    )
    assert storing.stored_notifications_max == 5
    assert not storing.servers[0].notification_storing
    assert config.stored_notifications_max == 64 and server.notification_storing
    with pytest.raises(ClientConfigError, match="stored_notifications_max"):
        build_config(parse("-e", "d", "-s", "coap://h", "--stored-notifications", "0"))


def test_coap_timing_options() -> None:
    default = build_config(parse("-e", "d", "-s", "coap://h")).transmission
    assert (default.ack_timeout_s, default.max_retransmit) == (2.0, 4)
    slow = build_config(
        parse("-e", "d", "-s", "coap://h", "--ack-timeout", "10", "--max-retransmit", "2")
    ).transmission
    assert (slow.ack_timeout_s, slow.max_retransmit) == (10.0, 2)
    # The Update schedule reads the exchange time from the same parameters.
    assert slow.max_transmit_wait_s == 10.0 * 7 * 1.5
    # --stop-timeout bounds a Factory Reset's De-registers too.
    assert (
        build_config(parse("-e", "d", "-s", "coap://h", "--stop-timeout", "2")).deregister_timeout_s
        == 2
    )
    for bad in ("0", "-1", "nan", "inf"):
        with pytest.raises(ClientConfigError, match="--ack-timeout"):
            build_config(parse("-e", "d", "-s", "coap://h", "--ack-timeout", bad))
    with pytest.raises(ClientConfigError, match="--max-retransmit"):
        build_config(parse("-e", "d", "-s", "coap://h", "--max-retransmit", "-1"))


def test_run_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(parse("-e", "d", "-s", "coap://h", "--count", "0")) == 2
    assert run(parse("-e", "d", "-s", "coap://h", "--count", "2", "--state", "x.json")) == 2
    assert run(parse("-e", "d", "-s", "coap://h:99999")) == 2
    assert run(parse("-e", "d", "-s", "coap://h", "--ack-timeout", "0")) == 2
    assert "lwm2m client:" in capsys.readouterr().err


def test_device_names() -> None:
    assert device_endpoint("dev", 7, 10000) == "dev-0007"
    assert device_endpoint("dev", 0, 1) == "dev-0"


async def _spawn(*argv: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "lwm2m",
        "--log-level",
        "WARNING",
        "client",
        *argv,
        stdin=asyncio.subprocess.DEVNULL,  # service mode: stdin closed
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_service_mode_deregisters_on_sigterm(server: RawServer) -> None:
    proc = await _spawn("--endpoint", "svc-1", "--server", server.uri, "--host", "127.0.0.1")
    try:
        msg, _ = await server.accept_registration("svc")
        assert "ep=svc-1" in msg.uri_query
        proc.send_signal(signal.SIGTERM)
        msg, addr = await server.next_request(timeout=10)
        assert msg.code == Code.DELETE and msg.uri_path == ("rd", "svc")
        server.reply(msg, addr, Code.DELETED)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_count_runs_many_devices_and_deregisters_all(server: RawServer) -> None:
    proc = await _spawn(
        "--endpoint", "many", "--server", server.uri, "--host", "127.0.0.1", "--count", "3"
    )
    try:
        names = set()
        for index in range(3):
            msg, _ = await server.accept_registration(f"m{index}")
            names.add(next(q for q in msg.uri_query if q.startswith("ep=")))
        assert names == {"ep=many-0", "ep=many-1", "ep=many-2"}
        proc.send_signal(signal.SIGINT)
        deleted = set()
        for _ in range(3):
            msg, addr = await server.next_request(timeout=10)
            assert msg.code == Code.DELETE
            deleted.add(msg.uri_path)
            server.reply(msg, addr, Code.DELETED)
        assert deleted == {("rd", "m0"), ("rd", "m1"), ("rd", "m2")}
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert proc.stderr is not None
        err = (await proc.stderr.read()).decode()
        assert "registered 3" in err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_console_commands(make_client: MakeClient) -> None:
    h = await make_client()
    out = io.StringIO()
    quit_called: list[bool] = []
    console = Console(h.client, lambda: quit_called.append(True), out)
    await console.execute("help")
    assert "factory-reset" in out.getvalue()
    await console.execute("list")
    assert "/3 " in out.getvalue() and "Device" in out.getvalue()
    await console.execute("show /3/0/9")
    assert "/3/0/9 = 100" in out.getvalue()
    await console.execute("set /3/0/9 42")
    assert h.client.instance(3, 0).get(9) == 42  # type: ignore[union-attr]
    await console.execute("set /3/0/9 lots")
    assert "error:" in out.getvalue()
    await console.execute("move 10.5 20.25")
    assert h.client.instance(6, 0).get(0) == 10.5  # type: ignore[union-attr]
    await console.execute("update")
    msg, addr = await h.server.next_request()
    assert msg.uri_path == ("rd", "abc")
    h.server.reply(msg, addr, Code.CHANGED)
    await console.execute("sleep")
    assert h.client.sleeping
    await console.execute("wake")
    assert not h.client.sleeping
    msg, addr = await h.server.next_request()  # waking sends an Update
    h.server.reply(msg, addr, Code.CHANGED)
    await console.execute("status")
    assert "registered" in out.getvalue()
    await console.execute("bogus")
    assert "unknown command" in out.getvalue()
    await console.execute("quit")
    assert quit_called == [True]
    await until(lambda: True)


def test_build_config_tcp_servers_get_binding_t() -> None:
    config = build_config(
        parse(
            "-e", "d",
            "-s", "coap+tcp://127.0.0.1:5683",
            "-s", "coaps+tcp://h", "--psk-identity", "id", "--psk-key", "00ff",
            "--bootstrap", "coap+tcp://127.0.0.1:5783",
        )
    )  # fmt: skip
    plain, secure, bootstrap = config.servers
    assert (plain.binding, plain.security_mode) == ("T", 3)
    assert (secure.binding, secure.security_mode, secure.psk_identity) == ("T", 0, b"id")
    assert bootstrap.bootstrap and bootstrap.uri == "coap+tcp://127.0.0.1:5783"
    assert build_config(parse("-e", "d", "-q", "-s", "coap+tcp://h")).servers[0].binding == "TQ"
    with pytest.raises(ClientConfigError):  # coaps+tcp without credentials
        build_config(parse("-e", "d", "-s", "coaps+tcp://h"))

"""The Bootstrap Server against a raw UDP socket playing the client: exact wire checks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from bs_rawpeer import RawPeer

from lwm2m.bootstrap.events import (
    BootstrapEvent,
    BootstrapRejected,
    FailureReason,
    SessionAnswer,
    SessionFailed,
    SessionFinished,
    SessionMode,
    SessionRequest,
    SessionStarted,
)
from lwm2m.bootstrap.history import SessionStatus
from lwm2m.bootstrap.server import BootstrapServer, parse_address
from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.message import Message
from lwm2m.formats import registry as formats
from lwm2m.model.nodes import ObjectInstance
from lwm2m.model.path import Path
from lwm2m.model.registry import default_registry
from lwm2m.protocol.bootstrap_config import parse_client_config

CONFIG: dict[str, Any] = {
    "ept": 1,
    "delete": ["/0", "/1"],
    "servers": [
        {
            "short_server_id": 101,
            "uri": "coap://127.0.0.1:5683",
            "lifetime": 300,
            "binding": "U",
            "security": {"mode": "nosec"},
        }
    ],
    "bootstrap_server": {"uri": "coap://127.0.0.1:5783"},
    "acl": [{"object": 3, "instance": 0, "rights": {"101": "RWE"}}],
}
EP = "A1B2C3-Sensor-0042"


@pytest.fixture
async def bs() -> AsyncIterator[BootstrapServer]:
    server = BootstrapServer(request_timeout_s=1.0)
    await server.configs.put(EP, CONFIG)
    await server.start("127.0.0.1", 0)
    yield server
    await server.close()


def _collect(server: BootstrapServer) -> list[BootstrapEvent]:
    events: list[BootstrapEvent] = []
    server.events.add_listener(events.append)
    return events


async def _play_client(
    peer: RawPeer,
    bs_address: tuple[str, int],
    *,
    fail_at: str | None = None,
    fail_code: Code = Code.BAD_REQUEST,
    discover: bytes | None = None,
) -> list[Message]:
    """Answer every bootstrap request like a well-behaved client; returns what was received."""
    received: list[Message] = []
    while True:
        msg, source = await peer.receive()
        assert source == bs_address
        received.append(msg)
        path = msg.path_str
        if fail_at is not None and path == fail_at:
            peer.answer(msg, source, fail_code, b"nope", content_format=0)
            return received
        if msg.code == Code.DELETE:
            peer.answer(msg, source, Code.DELETED)
        elif msg.code == Code.PUT:
            peer.answer(msg, source, Code.CHANGED)
        elif msg.code == Code.GET:
            if discover is None:
                peer.answer(msg, source, Code.METHOD_NOT_ALLOWED)  # a 1.0 client
            else:
                peer.answer(msg, source, Code.CONTENT, discover, content_format=40)
        elif msg.code == Code.POST and msg.uri_path == ("bs",):
            peer.answer(msg, source, Code.CHANGED)
            return received
        else:
            raise AssertionError(f"unexpected {msg}")


async def test_client_initiated_exact_sequence(bs: BootstrapServer, raw_peer: RawPeer) -> None:
    events = _collect(bs)
    assert bs.coap_address is not None
    response = await raw_peer.request(
        Message(Code.POST, uri_path=("bs",), uri_query=(f"ep={EP}", "ept=1")), bs.coap_address
    )
    assert response.code == Code.CHANGED and response.payload == b""
    received = await _play_client(raw_peer, bs.coap_address)
    await bs.wait_idle()

    ops = [(Code(m.code), m.path_str, m.content_format) for m in received]
    assert ops == [
        (Code.DELETE, "/0", None),
        (Code.DELETE, "/1", None),
        (Code.GET, "/0", None),
        (Code.PUT, "/0/0", 11542),
        (Code.PUT, "/0/1", 11542),
        (Code.PUT, "/1/0", 11542),
        (Code.PUT, "/2/0", 11542),
        (Code.POST, "/bs", None),
    ]
    assert all(m.type is MessageType.CON for m in received)
    assert received[2].accept == 40
    model = default_registry()
    bs_sec = formats.decode(received[3].payload, Path(0, 0), 11542, model)
    dm_sec = formats.decode(received[4].payload, Path(0, 1), 11542, model)
    server = formats.decode(received[5].payload, Path(1, 0), 11542, model)
    acl = formats.decode(received[6].payload, Path(2, 0), 11542, model)
    assert isinstance(bs_sec, ObjectInstance) and isinstance(dm_sec, ObjectInstance)
    assert isinstance(server, ObjectInstance) and isinstance(acl, ObjectInstance)
    assert (
        bs_sec.resources[0].value == "coap://127.0.0.1:5783" and bs_sec.resources[1].value is True
    )
    assert dm_sec.resources[0].value == "coap://127.0.0.1:5683"
    assert dm_sec.resources[1].value is False
    assert dm_sec.resources[2].value == 3  # NoSec
    assert dm_sec.resources[10].value == 101
    assert server.resources[0].value == 101 and server.resources[1].value == 300
    assert server.resources[7].value == "U"
    assert acl.resources[0].value == 3 and acl.resources[1].value == 0
    assert dict(acl.resources[2].instances or {}) == {101: 7} and acl.resources[3].value == 101

    (record,) = bs.sessions.list(EP)
    assert record.status is SessionStatus.FINISHED and record.mode is SessionMode.CLIENT_INITIATED
    assert record.address == f"127.0.0.1:{raw_peer.address[1]}"
    assert [s.code for s in record.steps] == [
        "2.02",
        "2.02",
        "4.05",  # Bootstrap-Discover refused (a 1.0 client): tolerated
        "2.04",
        "2.04",
        "2.04",
        "2.04",
        "2.04",
    ]
    kinds = [type(e) for e in events]
    assert kinds[0] is SessionStarted and kinds[-1] is SessionFinished
    assert kinds.count(SessionRequest) == kinds.count(SessionAnswer) == 8
    assert not bs.configs.needs_bootstrap(EP)


@pytest.mark.parametrize("pct", [110, 112])
async def test_senml_when_client_prefers_it(
    bs: BootstrapServer, raw_peer: RawPeer, pct: int
) -> None:
    assert bs.coap_address is not None
    await raw_peer.request(
        Message(Code.POST, uri_path=("bs",), uri_query=(f"ep={EP}", f"pct={pct}")), bs.coap_address
    )
    received = await _play_client(raw_peer, bs.coap_address)
    writes = [m for m in received if m.code == Code.PUT]
    assert {m.content_format for m in writes} == {pct}
    node = formats.decode(writes[1].payload, Path(0, 1), pct, default_registry())
    assert isinstance(node, ObjectInstance) and node.resources[10].value == 101
    await bs.wait_idle()
    assert bs.sessions.list(EP)[0].ok


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        (("ep=unknown-device",), "Unknown Endpoint"),
        ((f"ep={EP}", "ept=66"), "Unknown Endpoint"),  # right name, wrong type
        (("ept=1",), "missing mandatory parameter 'ep'"),
        ((f"ep={EP}", "foo=1"), "unknown parameter 'foo'"),
        ((f"ep={EP}", "ept=7"), "reserved"),
    ],
)
async def test_refused_requests_get_4_00(
    bs: BootstrapServer, raw_peer: RawPeer, query: tuple[str, ...], fragment: str
) -> None:
    events = _collect(bs)
    assert bs.coap_address is not None
    response = await raw_peer.request(
        Message(Code.POST, uri_path=("bs",), uri_query=query), bs.coap_address
    )
    assert response.code == Code.BAD_REQUEST
    assert fragment in response.payload.decode()
    (event,) = events
    assert isinstance(event, BootstrapRejected)
    (record,) = bs.sessions.list()
    assert record.status is SessionStatus.FAILED and fragment in record.message
    assert raw_peer.queue.empty()


async def test_other_paths_and_methods(bs: BootstrapServer, raw_peer: RawPeer) -> None:
    assert bs.coap_address is not None
    r = await raw_peer.request(
        Message(Code.GET, uri_path=("bs",), uri_query=(f"ep={EP}",)), bs.coap_address
    )
    assert r.code == Code.METHOD_NOT_ALLOWED
    r = await raw_peer.request(
        Message(Code.POST, uri_path=("rd",), uri_query=(f"ep={EP}",)), bs.coap_address
    )
    assert r.code == Code.NOT_FOUND


async def test_failed_write_ends_session_without_finish(
    bs: BootstrapServer, raw_peer: RawPeer
) -> None:
    events = _collect(bs)
    assert bs.coap_address is not None
    await raw_peer.request(
        Message(Code.POST, uri_path=("bs",), uri_query=(f"ep={EP}",)), bs.coap_address
    )
    received = await _play_client(
        raw_peer, bs.coap_address, fail_at="/1/0", fail_code=Code.BAD_REQUEST
    )
    await bs.wait_idle()
    assert received[-1].path_str == "/1/0"
    assert raw_peer.queue.empty()  # no Bootstrap-Finish after a failure
    (record,) = bs.sessions.list(EP)
    assert record.status is SessionStatus.FAILED
    assert record.failure is FailureReason.ERROR_RESPONSE and record.code == "4.00"
    assert "write /1/0: client answered 4.00 (nope)" in record.message
    assert isinstance(events[-1], SessionFailed)
    assert bs.configs.needs_bootstrap(EP)


async def test_second_request_while_running_is_refused(
    bs: BootstrapServer, raw_peer: RawPeer
) -> None:
    assert bs.coap_address is not None
    await raw_peer.request(
        Message(Code.POST, uri_path=("bs",), uri_query=(f"ep={EP}",)), bs.coap_address
    )
    first_delete, source = await raw_peer.receive()
    assert first_delete.code == Code.DELETE
    # A second Request Bootstrap while the session waits for our answer.
    raw_peer.send(
        Message(
            Code.POST,
            type=MessageType.CON,
            mid=7,
            token=b"x",
            uri_path=("bs",),
            uri_query=(f"ep={EP}",),
        ),
        bs.coap_address,
    )
    refusal, _ = await raw_peer.receive()
    assert refusal.mid == 7 and refusal.code == Code.BAD_REQUEST
    assert b"already running" in refusal.payload
    raw_peer.answer(first_delete, source, Code.DELETED)
    await _play_client(raw_peer, bs.coap_address)
    await bs.wait_idle()
    statuses = [r.failure for r in bs.sessions.list(EP)]
    assert statuses == [None, FailureReason.BUSY]


async def test_silent_client_times_out(bs: BootstrapServer, raw_peer: RawPeer) -> None:
    bs.request_timeout_s = 0.2
    result = await bs.push(EP, raw_peer.address)
    assert not result.ok and result.failure is FailureReason.TIMEOUT
    assert result.mode is SessionMode.SERVER_INITIATED
    assert "no answer" in result.message
    assert result.steps[0].code is None


async def test_push_runs_whole_sequence(bs: BootstrapServer, raw_peer: RawPeer) -> None:
    import asyncio

    assert bs.coap_address is not None
    push = asyncio.create_task(bs.push(EP, f"127.0.0.1:{raw_peer.address[1]}"))
    received = await _play_client(raw_peer, bs.coap_address)
    result = await push
    assert result.ok and result.mode is SessionMode.SERVER_INITIATED
    assert received[0].code == Code.DELETE and received[-1].uri_path == ("bs",)
    assert bs.sessions.get(result.id) == result


async def test_push_unknown_endpoint(bs: BootstrapServer) -> None:
    result = await bs.push("nobody", ("127.0.0.1", 9))
    assert result.failure is FailureReason.UNKNOWN_ENDPOINT


async def test_registration_hook_pushes_only_changed_configs(
    bs: BootstrapServer, raw_peer: RawPeer
) -> None:
    import asyncio

    assert bs.coap_address is not None
    hook = asyncio.create_task(bs.on_registration(EP, raw_peer.address))
    await _play_client(raw_peer, bs.coap_address)
    first = await hook
    assert first is not None and first.ok
    assert await bs.on_registration(EP, raw_peer.address) is None  # unchanged
    changed = dict(CONFIG, delete=["/0"])
    await bs.configs.put(EP, changed)
    hook = asyncio.create_task(bs.on_registration(EP, raw_peer.address))
    received = await _play_client(raw_peer, bs.coap_address)
    assert [m.path_str for m in received if m.code == Code.DELETE] == ["/0"]
    second = await hook
    assert second is not None and second.ok


@pytest.mark.parametrize(
    ("discover", "expected"),
    [
        # The client's bootstrap account is /0/3 and server 101 is /0/5: both replaced in place.
        (
            b'</>;lwm2m="1.1",</0/3>;uri="coap://bs",</0/5>;ssid=101;uri="coap://x"',
            ["/0/3", "/0/5"],
        ),
        # Bootstrap account at /0/1 (where the config would put server 101): 101 moves to /0/2.
        (b'</0/1>;uri="coap://bs"', ["/0/1", "/0/2"]),
        # Nothing there: the configured IDs.
        (b"</0>", ["/0/0", "/0/1"]),
    ],
)
async def test_discover_places_security_instances(
    bs: BootstrapServer, raw_peer: RawPeer, discover: bytes, expected: list[str]
) -> None:
    assert bs.coap_address is not None
    await raw_peer.request(
        Message(Code.POST, uri_path=("bs",), uri_query=(f"ep={EP}",)), bs.coap_address
    )
    received = await _play_client(raw_peer, bs.coap_address, discover=discover)
    security_writes = [m.path_str for m in received if m.code == Code.PUT and m.uri_path[0] == "0"]
    assert security_writes == expected
    await bs.wait_idle()
    assert bs.sessions.list(EP)[0].ok


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:5683") == ("127.0.0.1", 5683)
    assert parse_address("[::1]:5683") == ("::1", 5683)
    for bad in ("nohost", ":1", "h:0", "h:x", "::1:5"):
        with pytest.raises(ValueError):
            parse_address(bad)


def test_config_helper_is_what_server_uses() -> None:
    cfg = parse_client_config(EP, CONFIG)
    assert cfg.endpoint_type == 1

"""Refused Request Bootstraps and failed handshakes of the bootstrap listener are visible.

Over real UDP and DTLS: one WARNING line with endpoint, address, identity and
reason, ``lwm2m_bootstrap_rejected_total{reason}`` (or the DTLS failure
metric), and the refusal in ``GET /api/refusals``, also merged with the LwM2M
server's refusals of the same name.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from bs_rawpeer import RawPeer

from lwm2m.bootstrap.embedded import build_dtls, identity_checker
from lwm2m.bootstrap.server import BootstrapServer
from lwm2m.coap.codes import Code
from lwm2m.coap.dtls import DtlsClient, DtlsClientConfig
from lwm2m.coap.endpoint import Endpoint
from lwm2m.coap.errors import CoapError
from lwm2m.coap.message import Message
from lwm2m.protocol.refusals import Refusal, RefusalKind
from lwm2m.security.credentials import PskCredential, SecurityEntry
from lwm2m.server import LwM2MServer, ServerConfig
from lwm2m.stores.memory import MemoryStores
from lwm2m.web.app import WebServer, create_app

TIMEOUT_S = 10.0
CONFIG: dict[str, Any] = {
    "servers": [
        {
            "short_server_id": 101,
            "uri": "coap://127.0.0.1:5683",
            "security": {"mode": "nosec"},
        }
    ],
}
KEY_A = PskCredential(b"id-a", b"\x0a" * 16)
KEY_B = PskCredential(b"id-b", b"\x0b" * 16)


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self._changed.set()

    async def one_refusal(self) -> tuple[Refusal, str]:
        """The only WARNING so far, a refusal: the record's refusal and its line."""
        async with asyncio.timeout(TIMEOUT_S):
            while not self.records:
                self._changed.clear()
                await self._changed.wait()
        [record] = self.records
        refusal: Refusal = record.refusal  # type: ignore[attr-defined]
        return refusal, record.getMessage()


@pytest.fixture
def warnings() -> Iterator[Warnings]:
    handler = Warnings()
    logger = logging.getLogger("lwm2m")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@dataclass
class Stack:
    bootstrap: BootstrapServer
    server: LwM2MServer | None
    http: httpx.AsyncClient

    async def metric(self, name: str, **labels: str) -> float:
        text = (await self.http.get("/metrics")).text
        inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
        match = re.search(rf"^{name}\{{{re.escape(inner)}\}} (\S+)$", text, re.MULTILINE)
        assert match is not None, f"{name}{{{inner}}} missing from /metrics"
        return float(match.group(1))

    async def refusals(self, **query: str) -> dict[str, Any]:
        response = await self.http.get("/api/refusals", params=query)
        assert response.status_code == 200
        data: dict[str, Any] = response.json()
        return data


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    """A bootstrap server with PSK DTLS and the identity rule, its web app; no LwM2M server."""
    stores = MemoryStores()
    await stores.security.put(SecurityEntry("dev-a", psk=KEY_A))
    await stores.security.put(SecurityEntry("dev-b", psk=KEY_B))
    bootstrap = BootstrapServer(
        request_timeout_s=1.0, identity_check=identity_checker(stores.security)
    )
    await bootstrap.configs.put("dev-a", CONFIG)
    await bootstrap.configs.put("dev-open", CONFIG)
    await bootstrap.start("127.0.0.1", 0, coaps_port=0, dtls=build_dtls(stores.security))
    web = WebServer(create_app(None, bootstrap), "127.0.0.1", 0)
    await web.start()
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{web.port}", timeout=TIMEOUT_S
    ) as http:
        yield Stack(bootstrap, None, http)
    await web.stop()
    await bootstrap.close()


@pytest.fixture
async def raw() -> AsyncIterator[RawPeer]:
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_datagram_endpoint(RawPeer, local_addr=("127.0.0.1", 0))
    yield peer
    assert peer.transport is not None
    peer.transport.close()


def request_bootstrap(*query: str) -> Message:
    return Message(Code.POST, uri_path=("bs",), uri_query=query)


def source_of(raw: RawPeer) -> str:
    return f"{raw.address[0]}:{raw.address[1]}"


@pytest.mark.parametrize(
    ("query", "endpoint", "reason"),
    [
        (("ep=nobody",), "nobody", "unknown_endpoint"),
        (("ep=dev-a",), "dev-a", "security_required"),  # has a PSK, asked over CoAP
        (("ep=dev-open", "pct=x"), "dev-open", "bad_request"),
    ],
)
async def test_refused_request_bootstrap_over_udp(
    stack: Stack,
    raw: RawPeer,
    warnings: Warnings,
    query: tuple[str, ...],
    endpoint: str,
    reason: str,
) -> None:
    assert stack.bootstrap.coap_address is not None
    reply = await raw.request(request_bootstrap(*query), stack.bootstrap.coap_address)
    assert reply.code == Code.BAD_REQUEST
    refusal, line = await warnings.one_refusal()
    assert refusal.kind is RefusalKind.BOOTSTRAP
    assert (refusal.endpoint, refusal.reason, refusal.code) == (endpoint, reason, "4.00")
    assert refusal.message == reply.payload.decode()
    assert line.startswith(
        f"bootstrap request refused: ep={endpoint!r} identity=none from {source_of(raw)} "
        f"reason={reason} (4.00 "
    )
    assert line.endswith("[bootstrap]")
    assert await stack.metric("lwm2m_bootstrap_rejected_total", reason=reason) == 1
    [entry] = (await stack.refusals(ep=endpoint))["endpoints"]
    assert entry["count"] == 1 and entry["registered"] is False
    assert entry["last"]["kind"] == "bootstrap" and entry["last"]["service"] == "bootstrap"
    assert entry["last"]["address"] == source_of(raw)
    text = (await stack.http.get("/metrics")).text
    assert "lwm2m_registrations_rejected_total" not in text  # no LwM2M server here


async def dtls_client(credential: PskCredential, handshake_timeout_s: float = 60.0) -> Endpoint:
    async def no_handler(request: object) -> Message:
        return Message(Code.NOT_FOUND)

    layer = DtlsClient(DtlsClientConfig(psk=credential, handshake_timeout_s=handshake_timeout_s))
    return await Endpoint.create("127.0.0.1", 0, handler=no_handler, security=layer)


async def test_psk_of_another_endpoint_over_dtls(stack: Stack, warnings: Warnings) -> None:
    assert stack.bootstrap.coaps_address is not None
    client = await dtls_client(KEY_B)
    try:
        reply = await client.request(
            request_bootstrap("ep=dev-a"), stack.bootstrap.coaps_address, timeout=TIMEOUT_S
        )
        source = f"127.0.0.1:{client.local_address[1]}"
    finally:
        await client.close()
    assert reply.code == Code.BAD_REQUEST
    refusal, line = await warnings.one_refusal()
    assert (refusal.endpoint, refusal.reason, refusal.identity) == (
        "dev-a",
        "identity_mismatch",
        "psk:id-b",
    )
    assert f"ep='dev-a' identity=psk:id-b from {source} reason=identity_mismatch" in line
    assert await stack.metric("lwm2m_bootstrap_rejected_total", reason="identity_mismatch") == 1


async def test_failed_handshake_on_the_bootstrap_listener(stack: Stack, warnings: Warnings) -> None:
    assert stack.bootstrap.coaps_address is not None
    client = await dtls_client(PskCredential(b"stranger", b"\x01" * 16), handshake_timeout_s=1.0)
    try:
        with pytest.raises(CoapError):
            await client.request(
                request_bootstrap("ep=dev-a"), stack.bootstrap.coaps_address, timeout=TIMEOUT_S
            )
        source = f"127.0.0.1:{client.local_address[1]}"
    finally:
        await client.close()
    refusal, line = await warnings.one_refusal()
    assert (refusal.kind, refusal.reason) == (RefusalKind.DTLS_HANDSHAKE, "unknown_psk_identity")
    assert line.startswith(f"DTLS handshake failed: from {source} reason=unknown_psk_identity")
    metric = "lwm2m_dtls_handshake_failures_total"
    assert await stack.metric(metric, service="bootstrap", reason="unknown_psk_identity") == 1
    [entry] = (await stack.refusals(search="stranger"))["unnamed"]
    assert entry["kind"] == "dtls_handshake" and entry["address"] == source


async def test_server_and_bootstrap_refusals_of_one_name_are_merged(
    raw: RawPeer, warnings: Warnings
) -> None:
    server = LwM2MServer(config=ServerConfig(coap_port=0, known_endpoints_only=True))
    await server.start()
    bootstrap = BootstrapServer()
    await bootstrap.start("127.0.0.1", 0)
    web = WebServer(create_app(server, bootstrap), "127.0.0.1", 0)
    await web.start()
    try:
        assert bootstrap.coap_address is not None
        reply = await raw.request(request_bootstrap("ep=dev-z"), bootstrap.coap_address)
        assert reply.code == Code.BAD_REQUEST
        register = Message(Code.POST, uri_path=("rd",), uri_query=("ep=dev-z",), payload=b"</1>")
        reply = await raw.request(register, server.coap_address)
        assert reply.code == Code.BAD_REQUEST
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web.port}") as http:
            data = (await http.get("/api/refusals", params={"search": "dev-z"})).json()
            metrics = (await http.get("/metrics")).text
    finally:
        await web.stop()
        await bootstrap.close()
        await server.stop()
    [entry] = data["endpoints"]
    assert entry["count"] == 2
    assert [r["kind"] for r in entry["recent"]] == ["register", "bootstrap"]  # newest first
    assert entry["last"]["service"] == "server"
    assert 'lwm2m_registrations_rejected_total{reason="unknown_endpoint"} 1' in metrics
    assert 'lwm2m_bootstrap_rejected_total{reason="unknown_endpoint"} 1' in metrics
    assert len([r for r in warnings.records if hasattr(r, "refusal")]) == 2

"""Refused Registers and failed DTLS handshakes are visible: log line, metric, REST route.

Each case runs the server and its web app on 127.0.0.1, provokes one refusal
over real UDP (or DTLS), and checks the one WARNING line (endpoint, source
address, identity, reason), ``/metrics`` and ``GET /api/refusals``.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from server_helpers import RawPeer, register_message

from lwm2m.coap.codes import Code
from lwm2m.coap.dtls import DtlsClient, DtlsClientConfig, DtlsServerConfig
from lwm2m.coap.endpoint import Endpoint
from lwm2m.coap.errors import CoapError
from lwm2m.coap.message import Message
from lwm2m.protocol.log_limit import DEFAULT_BURST
from lwm2m.protocol.refusals import Refusal, RefusalKind
from lwm2m.security.certs import IssuedCertificate, make_ca, make_cert
from lwm2m.security.client_config import ServerTrust
from lwm2m.security.credentials import (
    PskCredential,
    SecurityEntry,
    X509Credential,
    X509Expectation,
)
from lwm2m.server import LwM2MServer, ServerConfig
from lwm2m.server.registrar import X509_NAME_MISMATCH
from lwm2m.stores.memory import MemoryStores
from lwm2m.web.app import WebServer, create_app

TIMEOUT_S = 10.0
#: Short handshakes, so that a wrong key fails (by timing out) within the test.
HANDSHAKE_TIMEOUT_S = 1.0


class Warnings(logging.Handler):
    """Every WARNING (and above) the stack logs, awaitable."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self._changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self._changed.set()

    @property
    def refusals(self) -> list[Refusal]:
        return [r.refusal for r in self.records if hasattr(r, "refusal")]

    async def wait_for_refusals(self, count: int) -> list[Refusal]:
        async with asyncio.timeout(TIMEOUT_S):
            while len(self.refusals) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.refusals


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
    server: LwM2MServer
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


StartStack = Callable[..., Awaitable[Stack]]


@pytest.fixture
async def start() -> AsyncIterator[StartStack]:
    running: list[tuple[LwM2MServer, WebServer, httpx.AsyncClient]] = []

    async def start_stack(
        stores: MemoryStores | None = None, dtls: DtlsServerConfig | None = None, **options: object
    ) -> Stack:
        config = ServerConfig(coap_port=0, coaps_port=0, dtls=dtls, **options)  # type: ignore[arg-type]
        server = LwM2MServer(stores or MemoryStores(), config=config)
        await server.start()
        web = WebServer(create_app(server, None), "127.0.0.1", 0)
        await web.start()
        http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{web.port}", timeout=TIMEOUT_S)
        running.append((server, web, http))
        return Stack(server, http)

    yield start_stack
    for server, web, http in running:
        await http.aclose()
        await web.stop()
        await server.stop()


@pytest.fixture
async def raw() -> AsyncIterator[RawPeer]:
    peer = await RawPeer.create()
    yield peer
    peer.close()


def address(peer: RawPeer) -> str:
    return f"{peer.address[0]}:{peer.address[1]}"


async def assert_one_register_refusal(
    stack: Stack, warnings: Warnings, *, endpoint: str, reason: str, code: str, source: str
) -> Refusal:
    """The one WARNING line, the metric at 1, and the REST route's entry for ``endpoint``."""
    [refusal] = await warnings.wait_for_refusals(1)
    [record] = warnings.records  # nothing else at WARNING
    assert refusal.kind is RefusalKind.REGISTER
    assert (refusal.endpoint, refusal.reason, refusal.code) == (endpoint, reason, code)
    line = record.getMessage()
    assert f"ep={endpoint!r}" in line and f"from {source}" in line
    assert f"reason={reason}" in line and f"identity={refusal.identity or 'none'}" in line
    assert await stack.metric("lwm2m_registrations_rejected_total", reason=reason) == 1
    data = await stack.refusals(ep=endpoint)
    [entry] = data["endpoints"]
    assert entry["endpoint"] == endpoint and entry["count"] == 1
    assert entry["last"]["reason"] == reason and entry["last"]["code"] == code
    assert entry["last"]["address"] == source and entry["last"]["kind"] == "register"
    return refusal


async def test_malformed_register(start: StartStack, raw: RawPeer, warnings: Warnings) -> None:
    stack = await start()
    reply = await raw.request(
        register_message(("ep=dev-bad", "lt=soon")), stack.server.coap_address
    )
    assert reply.code == Code.BAD_REQUEST
    refusal = await assert_one_register_refusal(
        stack, warnings, endpoint="dev-bad", reason="bad_request", code="4.00", source=address(raw)
    )
    assert refusal.identity is None
    assert await stack.metric("lwm2m_registrations_rejected_total", reason="conflict") == 0


async def test_unknown_endpoint_under_known_endpoints_only(
    start: StartStack, raw: RawPeer, warnings: Warnings
) -> None:
    stack = await start(known_endpoints_only=True)
    reply = await raw.request(register_message(("ep=stranger",)), stack.server.coap_address)
    assert reply.payload == b"Unknown Endpoint Client Name"
    refusal = await assert_one_register_refusal(
        stack,
        warnings,
        endpoint="stranger",
        reason="unknown_endpoint",
        code="4.00",
        source=address(raw),
    )
    assert refusal.message == "Unknown Endpoint Client Name"


async def test_nosec_register_of_an_endpoint_with_credentials(
    start: StartStack, raw: RawPeer, warnings: Warnings
) -> None:
    stores = MemoryStores()
    await stores.security.put(SecurityEntry("dev-psk", psk=PskCredential(b"id", b"\x01" * 16)))
    stack = await start(stores)
    reply = await raw.request(register_message(("ep=dev-psk",)), stack.server.coap_address)
    assert reply.code == Code.BAD_REQUEST
    await assert_one_register_refusal(
        stack,
        warnings,
        endpoint="dev-psk",
        reason="security_required",
        code="4.00",
        source=address(raw),
    )


async def test_name_held_by_another_client(
    start: StartStack, raw: RawPeer, warnings: Warnings
) -> None:
    stack = await start()
    holder = await RawPeer.create("127.0.0.2")  # another host: another NoSec client
    try:
        reply = await holder.request(register_message(("ep=dev-9",)), stack.server.coap_address)
        assert reply.code == Code.CREATED
        reply = await raw.request(register_message(("ep=dev-9",)), stack.server.coap_address)
        assert reply.code == Code.CONFLICT
    finally:
        holder.close()
    await assert_one_register_refusal(
        stack, warnings, endpoint="dev-9", reason="conflict", code="4.09", source=address(raw)
    )
    [entry] = (await stack.refusals(search="DEV-9"))["endpoints"]
    assert entry["registered"] is True  # by the other client
    assert entry["last"]["summary"] == "name held by another client"


@pytest.fixture(scope="module")
def ca() -> IssuedCertificate:
    return make_ca("refusal test CA")


def x509_server(ca: IssuedCertificate) -> DtlsServerConfig:
    server_cert = make_cert(ca, "lwm2m server", ["127.0.0.1"])
    return DtlsServerConfig(
        certificate_pem=server_cert.cert_pem,
        private_key_pem=server_cert.key_pem,
        trusted_ca_pems=(ca.cert_pem,),
    )


def x509_client(ca: IssuedCertificate, device: IssuedCertificate) -> DtlsClient:
    return DtlsClient(
        DtlsClientConfig(
            certificate=X509Credential(device.cert_pem, device.key_pem, ()),
            server_trust=ServerTrust(X509Expectation(ca_pems=(ca.cert_pem,))),
            server_host="127.0.0.1",
        )
    )


async def no_handler(request: object) -> Message:
    return Message(Code.NOT_FOUND)


async def test_certificate_cn_mismatch_over_dtls(
    start: StartStack, warnings: Warnings, ca: IssuedCertificate
) -> None:
    stack = await start(dtls=x509_server(ca))
    assert stack.server.coaps_address is not None
    client = await Endpoint.create(
        "127.0.0.1", 0, handler=no_handler, security=x509_client(ca, make_cert(ca, "dev-x"))
    )
    try:
        reply = await client.request(
            register_message(("ep=dev-y",)), stack.server.coaps_address, timeout=TIMEOUT_S
        )
        source = f"127.0.0.1:{client.local_address[1]}"
    finally:
        await client.close()
    assert reply.code == Code.BAD_REQUEST and reply.payload.decode() == X509_NAME_MISMATCH
    refusal = await assert_one_register_refusal(
        stack,
        warnings,
        endpoint="dev-y",
        reason="x509_name_mismatch",
        code="4.00",
        source=source,
    )
    assert refusal.identity == "x509:CN=dev-x"
    assert refusal.message == X509_NAME_MISMATCH
    assert (
        await stack.metric(
            "lwm2m_dtls_handshake_failures_total", service="server", reason="handshake_error"
        )
        == 0
    )


def psk_stores(handshake_timeout_s: float = 60.0) -> tuple[MemoryStores, DtlsServerConfig]:
    stores = MemoryStores()

    def lookup(identity: bytes) -> bytes | None:
        entry = stores.security.get_by_psk_identity(identity)
        return None if entry is None or entry.psk is None else entry.psk.key

    return stores, DtlsServerConfig(psk_lookup=lookup, handshake_timeout_s=handshake_timeout_s)


async def test_psk_identity_of_another_endpoint_over_dtls(
    start: StartStack, warnings: Warnings
) -> None:
    stores, dtls = psk_stores()
    await stores.security.put(SecurityEntry("dev-a", psk=PskCredential(b"id-a", b"\x0a" * 16)))
    other = PskCredential(b"id-b", b"\x0b" * 16)
    await stores.security.put(SecurityEntry("dev-b", psk=other))
    stack = await start(stores, dtls)
    assert stack.server.coaps_address is not None
    client = await Endpoint.create(
        "127.0.0.1", 0, handler=no_handler, security=DtlsClient(DtlsClientConfig(psk=other))
    )
    try:
        reply = await client.request(
            register_message(("ep=dev-a",)), stack.server.coaps_address, timeout=TIMEOUT_S
        )
        source = f"127.0.0.1:{client.local_address[1]}"
    finally:
        await client.close()
    assert reply.code == Code.BAD_REQUEST
    refusal = await assert_one_register_refusal(
        stack,
        warnings,
        endpoint="dev-a",
        reason="psk_identity_mismatch",
        code="4.00",
        source=source,
    )
    assert refusal.identity == "psk:id-b"


async def failed_handshake(stack: Stack, credential: PskCredential) -> str:
    """Register with ``credential``: the handshake fails. Returns the client's address."""
    assert stack.server.coaps_address is not None
    layer = DtlsClient(DtlsClientConfig(psk=credential, handshake_timeout_s=HANDSHAKE_TIMEOUT_S))
    client = await Endpoint.create("127.0.0.1", 0, handler=no_handler, security=layer)
    try:
        with pytest.raises(CoapError):
            await client.request(
                register_message(("ep=dev-h",)), stack.server.coaps_address, timeout=TIMEOUT_S
            )
        return f"127.0.0.1:{client.local_address[1]}"
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("credential", "reason"),
    [
        (PskCredential(b"nobody", b"\x01" * 16), "unknown_psk_identity"),
        # A wrong key: the server drops the client's Finished (bad record MAC, as DTLS
        # does) and both sides give up.
        (PskCredential(b"id-h", b"\x02" * 16), "timeout"),
    ],
)
async def test_failed_dtls_handshake(
    start: StartStack, warnings: Warnings, credential: PskCredential, reason: str
) -> None:
    stores, dtls = psk_stores(HANDSHAKE_TIMEOUT_S)
    await stores.security.put(SecurityEntry("dev-h", psk=PskCredential(b"id-h", b"\x01" * 16)))
    stack = await start(stores, dtls)
    source = await failed_handshake(stack, credential)
    [refusal] = await warnings.wait_for_refusals(1)
    assert [r.getMessage() for r in warnings.records if r.levelno >= logging.WARNING] == [
        warnings.records[0].getMessage()
    ]
    assert refusal.kind is RefusalKind.DTLS_HANDSHAKE
    assert (refusal.reason, refusal.endpoint, refusal.code) == (reason, None, None)
    line = warnings.records[0].getMessage()
    assert line.startswith(f"DTLS handshake failed: from {source} reason={reason} (")
    metric = "lwm2m_dtls_handshake_failures_total"
    assert await stack.metric(metric, service="server", reason=reason) == 1
    assert stack.server.counters()["dtls_handshake_failures_total"] == 1
    text = (await stack.http.get("/metrics")).text
    assert text.count(f"# TYPE {metric} counter") == 1  # the unlabelled counter gave way
    [entry] = (await stack.refusals(search="127.0.0.1"))["unnamed"]
    assert entry["address"] == source and entry["reason"] == reason
    assert entry["kind"] == "dtls_handshake" and entry["service"] == "server"
    if reason == "unknown_psk_identity":
        assert "nobody" in entry["message"]


async def test_a_burst_is_logged_in_bounded_lines_and_a_summary(
    start: StartStack, raw: RawPeer, warnings: Warnings
) -> None:
    burst = 1000
    stack = await start(known_endpoints_only=True)
    for i in range(burst):
        reply = await raw.request(register_message((f"ep=dev-{i}",)), stack.server.coap_address)
        assert reply.code == Code.BAD_REQUEST
    lines = [r for r in warnings.records if hasattr(r, "refusal")]
    # The bucket refills slowly: a few more lines may pass while the burst runs.
    assert DEFAULT_BURST <= len(lines) < DEFAULT_BURST + 10
    assert await stack.metric("lwm2m_registrations_rejected_total", reason="unknown_endpoint") == (
        burst
    )
    await stack.server.stop()  # pending suppressed lines are summarised on stop
    [summary] = [r for r in warnings.records if hasattr(r, "suppressed")]
    assert summary.suppressed == {"register/unknown_endpoint": burst - len(lines)}
    assert f"{burst - len(lines)} more refusals not logged" in summary.getMessage()
    assert len(warnings.records) == len(lines) + 1
    # Memory stays bounded: the last 20 names listed, each with its one refusal.
    data = await stack.refusals()
    names = [e["endpoint"] for e in data["endpoints"]]
    assert names == [f"dev-{i}" for i in range(burst - 1, burst - 21, -1)]

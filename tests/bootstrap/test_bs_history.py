"""Session history and configurations survive through the document store; identity checks."""

from __future__ import annotations

from lwm2m.bootstrap.embedded import identity_checker
from lwm2m.bootstrap.events import FailureReason, Operation, SessionMode
from lwm2m.bootstrap.history import SessionHistory, SessionRecord, SessionStatus, Step
from lwm2m.bootstrap.server import BootstrapServer
from lwm2m.coap.peer import Peer, PeerIdentity
from lwm2m.protocol.registration import BootstrapRequestParams
from lwm2m.security.credentials import PskCredential, SecurityEntry, X509Expectation
from lwm2m.stores.memory import MemoryDocumentStore, MemorySecurityStore


def _record(i: int, endpoint: str = "dev-1") -> SessionRecord:
    return SessionRecord(
        id=f"s{i}",
        endpoint=endpoint,
        mode=SessionMode.SERVER_INITIATED,
        address="127.0.0.1:5683",
        started_at=float(i),
        status=SessionStatus.FAILED,
        content_format=11542,
        steps=(
            Step(0, Operation.DELETE, "/0", 1.0, code="4.00", answered_at=2.0, diagnostic="no"),
        ),
        ended_at=float(i) + 1,
        failure=FailureReason.ERROR_RESPONSE,
        message="delete /0: ...",
        code="4.00",
    )


async def test_history_round_trips_and_is_bounded() -> None:
    docs = MemoryDocumentStore()
    history = SessionHistory(docs, limit=3)
    for i in range(5):
        await history.ended(_record(i, "dev-1" if i % 2 else "dev-2"))
    again = SessionHistory(docs, limit=3)
    await again.load()
    assert [r.id for r in again.list()] == ["s4", "s3", "s2"]
    assert again.get("s3") == _record(3, "dev-1")
    assert [r.id for r in again.list("dev-1")] == ["s3"]
    assert again.list(status=SessionStatus.FINISHED) == []


async def test_configs_and_applied_fingerprints_persist() -> None:
    docs = MemoryDocumentStore()
    first = BootstrapServer(documents=docs)
    config = await first.configs.put(
        "dev-1", {"servers": [{"short_server_id": 1, "uri": "coap://h"}]}
    )
    await first.configs.mark_applied("dev-1", config.fingerprint)
    await docs.put("bootstrap-config", "broken", {"servers": "nope"})
    second = BootstrapServer(documents=docs)
    problems = await second.load()
    assert [p.where for p in problems] == ["clients['broken'].servers"]
    assert second.configs.get("dev-1") == config
    assert not second.configs.needs_bootstrap("dev-1")
    assert await second.configs.delete("dev-1") is not None
    assert (
        second.configs.get("dev-1") is None and await docs.get("bootstrap-config", "dev-1") is None
    )


async def test_identity_checker() -> None:
    security = MemorySecurityStore()
    await security.put(SecurityEntry("dev-1", psk=PskCredential(b"id-1", b"k")))
    await security.put(SecurityEntry("dev-2", x509=X509Expectation(certificate_der=b"\x30\x01")))
    check = identity_checker(security)
    params = BootstrapRequestParams("dev-1")
    assert check(Peer(("h", 1)), params) is not None  # dev-1 has credentials: DTLS only
    assert check(Peer(("h", 1)), BootstrapRequestParams("dev-9")) is None  # plain UDP
    # Without a CoAPs endpoint, plain CoAP is the only way in: allowed.
    assert identity_checker(security, require_dtls=False)(Peer(("h", 1)), params) is None
    assert check(Peer(("h", 1), PeerIdentity(psk_identity=b"id-1")), params) is None
    assert check(Peer(("h", 1), PeerIdentity(psk_identity=b"other")), params) is not None
    other = BootstrapRequestParams("dev-2")
    assert check(Peer(("h", 1), PeerIdentity(psk_identity=b"id-1")), other) is not None
    assert check(Peer(("h", 1), PeerIdentity(certificate_der=b"\x30\x01")), other) is None
    assert check(Peer(("h", 1), PeerIdentity(certificate_der=b"\x30\x02")), other) is not None


async def test_server_initiated_sessions_need_a_started_server() -> None:
    bs = BootstrapServer()
    await bs.configs.put("dev-1", {"servers": [{"short_server_id": 1, "uri": "coap://h"}]})
    pushed = await bs.push("dev-1", ("127.0.0.1", 9))
    read = await bs.read("dev-1", ("127.0.0.1", 9), "/1")
    for record in (pushed, read):
        assert record.failure == FailureReason.TRANSPORT
        assert record.mode == SessionMode.SERVER_INITIATED
    assert [r.id for r in bs.sessions.list("dev-1")] == [read.id, pushed.id]

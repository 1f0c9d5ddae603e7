"""The refusal log: rate-limited lines with a summary, counts per reason, bounded memory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

from lwm2m.coap.dtls import HandshakeCompleted, HandshakeFailed
from lwm2m.coap.peer import PeerIdentity
from lwm2m.protocol.handshake_failures import HandshakeFailureTap, classify
from lwm2m.protocol.log_limit import LogLimiter
from lwm2m.protocol.refusals import (
    BOOTSTRAP_REFUSALS,
    REASONS,
    SERVER_REFUSALS,
    RefusalKind,
    RefusalLog,
    describe_identity,
    printable,
)
from lwm2m.security.certs import make_ca, make_cert

ADDR = ("192.0.2.7", 5683)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.arrived = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.arrived.set()

    @property
    def refusals(self) -> list[logging.LogRecord]:
        return [r for r in self.records if hasattr(r, "refusal")]

    @property
    def summaries(self) -> list[logging.LogRecord]:
        return [r for r in self.records if hasattr(r, "suppressed")]


@pytest.fixture
def lines() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("lwm2m.protocol.refusals")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def test_token_bucket_lets_a_burst_through_then_a_steady_rate() -> None:
    limiter = LogLimiter(burst=3, rate_per_s=0.5, summary_interval_s=60)
    assert [limiter.allow("a", 0.0) for _ in range(5)] == [True, True, True, False, False]
    assert limiter.allow("b", 0.0)  # each key has its own bucket
    assert not limiter.allow("a", 1.0)  # half a token
    assert limiter.allow("a", 2.0)
    assert limiter.pending == 3
    assert limiter.summary_due_at() == 60.0
    assert limiter.take_summary(59.0) is None
    assert limiter.take_summary(60.0) == {"a": 3}
    assert limiter.pending == 0 and limiter.summary_due_at() is None


def test_each_refusal_is_one_warning_with_its_fields(lines: Lines) -> None:
    log = RefusalLog("server", SERVER_REFUSALS, clock=Clock(1_700_000_000.0))
    refusal = log.record(
        RefusalKind.REGISTER,
        "conflict",
        "endpoint name 'dev-9' is registered by another client",
        ADDR,
        endpoint="dev-9",
        identity=PeerIdentity(psk_identity=b"id-9"),
        code="4.09",
    )
    [record] = lines.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "registration refused: ep='dev-9' identity=psk:id-9 from 192.0.2.7:5683 "
        "reason=conflict (4.09 endpoint name 'dev-9' is registered by another client) [server]"
    )
    assert record.refusal == refusal  # type: ignore[attr-defined]
    assert refusal.time == 1_700_000_000.0
    assert log.counts()[(RefusalKind.REGISTER, "conflict")] == 1
    assert log.counts()[(RefusalKind.DTLS_HANDSHAKE, "timeout")] == 0
    assert (RefusalKind.BOOTSTRAP, "busy") not in log.counts()
    entry = log.get("dev-9")
    assert entry is not None and entry.count == 1 and entry.last == refusal
    assert refusal.to_json()["summary"] == "name held by another client"


def test_reasons_are_a_fixed_set_per_listener() -> None:
    log = RefusalLog("bootstrap", BOOTSTRAP_REFUSALS)
    with pytest.raises(ValueError):
        log.record(RefusalKind.BOOTSTRAP, "dev-1", "made-up reason", ADDR)
    with pytest.raises(ValueError):
        log.record(RefusalKind.REGISTER, "conflict", "not a bootstrap refusal", ADDR)
    assert set(log.counts()) == {
        (kind, reason) for kind in BOOTSTRAP_REFUSALS for reason in REASONS[kind]
    }


def test_a_burst_gives_bounded_lines_then_one_summary(lines: Lines) -> None:
    mono = Clock(0.0)
    log = RefusalLog(
        "server",
        SERVER_REFUSALS,
        monotonic=mono,
        limiter=LogLimiter(burst=10, rate_per_s=0.1, summary_interval_s=60.0),
    )
    for i in range(1000):
        log.record(RefusalKind.REGISTER, "unknown_endpoint", "Unknown", ADDR, endpoint=f"d{i}")
    assert len(lines.refusals) == 10
    assert lines.summaries == []
    mono.now = 61.0  # the next refusal brings the summary first, then passes (refilled)
    log.record(RefusalKind.REGISTER, "conflict", "held", ADDR, endpoint="x")
    [summary] = lines.summaries
    assert summary.suppressed == {"register/unknown_endpoint": 990}  # type: ignore[attr-defined]
    assert summary.getMessage().startswith("990 more refusals not logged (rate limit) [server]")
    assert lines.records[-1].refusal.endpoint == "x"  # type: ignore[attr-defined]
    assert len(lines.records) == 12
    assert log.counts()[(RefusalKind.REGISTER, "unknown_endpoint")] == 1000


def test_close_logs_the_pending_summary(lines: Lines) -> None:
    log = RefusalLog("bootstrap", BOOTSTRAP_REFUSALS, limiter=LogLimiter(burst=1))
    for _ in range(3):
        log.record(RefusalKind.BOOTSTRAP, "busy", "already running", ADDR, endpoint="b")
    log.close()
    [summary] = lines.summaries
    assert summary.suppressed == {"bootstrap/busy": 2}  # type: ignore[attr-defined]
    log.close()
    assert len(lines.summaries) == 1


async def test_a_burst_then_silence_still_gets_its_summary(lines: Lines) -> None:
    log = RefusalLog(
        "server", SERVER_REFUSALS, limiter=LogLimiter(burst=1, summary_interval_s=0.05)
    )
    for _ in range(4):
        log.record(RefusalKind.DTLS_HANDSHAKE, "timeout", "handshake timed out", ADDR)
    async with asyncio.timeout(5):
        while not lines.summaries:
            lines.arrived.clear()
            await lines.arrived.wait()
    assert lines.summaries[0].suppressed == {"dtls_handshake/timeout": 3}  # type: ignore[attr-defined]
    log.close()
    assert len(lines.summaries) == 1


def test_memory_is_an_lru_of_names_with_a_few_refusals_each() -> None:
    clock = Clock()
    log = RefusalLog(
        "server", SERVER_REFUSALS, clock=clock, max_endpoints=3, per_endpoint=2, max_unnamed=2
    )
    for name in ("a", "b", "c", "a", "d", "a", "a"):
        clock.now += 1
        log.record(RefusalKind.REGISTER, "bad_request", "bad", ADDR, endpoint=name)
    assert [name for name, _ in log.endpoints()] == ["a", "d", "c"]  # "b" was the oldest
    entry = log.get("a")
    assert entry is not None and entry.count == 4 and len(entry.recent) == 2
    assert entry.last.time == clock.now
    for i in range(3):
        log.record(RefusalKind.DTLS_HANDSHAKE, "timeout", f"t{i}", ADDR)
    assert [r.message for r in log.unnamed()] == ["t2", "t1"]


def test_network_text_cannot_forge_log_lines(lines: Lines) -> None:
    log = RefusalLog("server", SERVER_REFUSALS)
    log.record(
        RefusalKind.REGISTER,
        "bad_request",
        "bad\nINFO registered dev-1",
        ADDR,
        endpoint="x" * 300 + "\n",
    )
    [record] = lines.records
    assert "\n" not in record.getMessage()
    assert "ep='" + "x" * 254 + "…' identity" in record.getMessage()
    refusal = record.refusal  # type: ignore[attr-defined]
    assert refusal.message == "bad\\nINFO registered dev-1"
    assert len(refusal.endpoint) == 255
    assert printable("a\x1bb", 10) == "a\\x1bb"


def test_identities_as_the_operator_reads_them() -> None:
    ca = make_ca("identity CA")
    der = make_cert(ca, "dev-x").der
    assert describe_identity(None) is None
    assert describe_identity(PeerIdentity(psk_identity=b"id\xff")) == "psk:id\\xff"
    assert describe_identity(PeerIdentity(certificate_der=der)) == "x509:CN=dev-x"
    assert (
        describe_identity(PeerIdentity(certificate_der=b"junk")) == "x509:<unreadable certificate>"
    )


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("unknown PSK identity b'x'", "unknown_psk_identity"),
        ("PSK identity b'x' is no longer known", "unknown_psk_identity"),
        ("client certificate rejected: certificate has expired", "certificate_rejected"),
        ("resumed session of unknown identity", "unknown_identity"),
        ("handshake timed out (no valid answer from the peer)", "timeout"),
        ("handshake gave up: too many retransmissions", "timeout"),
        ("replaced by a new handshake", "replaced"),
        ("no shared cipher", "handshake_error"),
    ],
)
def test_handshake_failure_labels(text: str, label: str) -> None:
    assert classify(text) == label
    assert label in REASONS[RefusalKind.DTLS_HANDSHAKE]


class Layer:
    """A security layer that only hands out events."""

    def __init__(self, *events: object) -> None:
        self.events = list(events)

    def receive_datagram(self, data: bytes, address: object, now: float) -> list[object]:
        return []

    def send(self, plaintext: bytes, address: object, now: float) -> None: ...

    def datagrams_to_send(self) -> list[object]:
        return []

    def next_event(self) -> object | None:
        return self.events.pop(0) if self.events else None

    def get_timer(self) -> float | None:
        return None

    def handle_timer(self, now: float) -> None: ...


def test_the_tap_passes_every_event_on_and_reports_failures() -> None:
    failed = HandshakeFailed(address=ADDR, reason="no shared cipher")
    done = HandshakeCompleted(address=ADDR, peer=None)  # type: ignore[arg-type]
    seen: list[HandshakeFailed] = []
    tap = HandshakeFailureTap(Layer(done, failed), seen.append)  # type: ignore[arg-type]
    assert [tap.next_event(), tap.next_event(), tap.next_event()] == [done, failed, None]
    assert seen == [failed]


def test_a_refusal_without_a_name_is_kept_apart(lines: Lines) -> None:
    log = RefusalLog("server", SERVER_REFUSALS)
    log.record(RefusalKind.REGISTER, "bad_request", "missing ep", ADDR, code="4.00")
    [record] = lines.records
    assert record.getMessage().startswith("registration refused: ep=- identity=none from ")
    assert log.endpoints() == []
    assert [r.message for r in log.unnamed()] == ["missing ep"]

"""Update timing, the end of a registration, and the LwM2M 1.1 retry procedure.

The client runs on a manual clock against a raw CoAP socket, so the waits of
the procedure are checked to the second without waiting for them.
"""

from __future__ import annotations

from client_harness import Harness, MakeClient, make_bootstrapping_client, until
from client_rawserver import RawServer

from lwm2m.client.registration import RegistrationState, RetryPolicy, update_delay
from lwm2m.client.store import ServerAccount
from lwm2m.coap.codes import Code
from lwm2m.coap.message import Message


def test_update_delay_fits_an_exchange_or_takes_half_the_lifetime() -> None:
    assert update_delay(300) == 207.0  # 300 - 93: a whole exchange fits after it
    assert update_delay(186) == 93.0  # exactly two exchanges: both rules agree
    assert update_delay(100) == 50.0  # shorter: half the lifetime, not 100 - 93 = 7
    assert update_delay(20) == 10.0
    assert update_delay(100, exchange_s=23.25) == 76.75  # ACK_TIMEOUT 0.5 s


def test_retry_policy_defaults_are_the_specs() -> None:
    account = ServerAccount(
        short_server_id=1, uri="coap://x", bootstrap=False, security_instance=0, server_instance=0
    )
    policy = RetryPolicy.of(account)
    assert (policy.retry_count, policy.retry_timer_s) == (5, 60.0)
    assert (policy.sequence_delay_s, policy.sequence_retry_count) == (86400.0, 1)
    assert [policy.wait_after(n) for n in (1, 2, 3, 4)] == [60.0, 120.0, 240.0, 480.0]


async def next_register(server: RawServer) -> tuple[Message, tuple[str, int]]:
    """The next Register, skipping retransmissions of anything else."""
    while True:
        msg, addr = await server.next_request()
        if msg.uri_path == ("rd",):
            return msg, addr


async def test_unanswered_update_registers_again_when_the_registration_ends(
    make_client: MakeClient,
) -> None:
    h = await make_client(lifetime_s=60)
    session = h.client.sessions[1]
    assert session.expires_at is not None and session.next_update_at is not None
    h.scheduler.advance(session.next_update_at - h.scheduler.now())
    update, _ = await h.server.next_request()
    assert update.uri_path == ("rd", "abc")  # left unanswered: CoAP retransmits for 93 s
    h.scheduler.advance(session.expires_at - h.scheduler.now() - 0.1)
    assert session.registered  # until its end
    h.scheduler.advance(0.2)
    assert not session.registered
    register, addr = await next_register(h.server)  # at once, not after 93 s
    h.server.reply(register, addr, Code.CREATED, location_path=("rd", "new"))
    await until(lambda: session.registered and session.location == ("rd", "new"))
    assert session.failures == 0 and not session.server_forgot


async def test_answered_update_moves_the_end(make_client: MakeClient) -> None:
    h = await make_client(lifetime_s=60)
    session = h.client.sessions[1]
    assert session.next_update_at is not None and session.expires_at is not None
    first_end = session.expires_at
    h.scheduler.advance(session.next_update_at - h.scheduler.now())
    msg, addr = await h.server.next_request()
    h.server.reply(msg, addr, Code.CHANGED)
    await until(lambda: session.updates == 1)
    assert session.expires_at > first_end
    h.scheduler.advance(first_end - h.scheduler.now() + 0.1)
    assert session.registered


async def _fail(h: Harness) -> None:
    msg, addr = await next_register(h.server)
    h.server.reply(msg, addr, Code.SERVICE_UNAVAILABLE)
    await until(lambda: h.client.sessions[1].state is RegistrationState.FAILED)


async def _expect_retry_after(h: Harness, wait_s: float) -> None:
    """Nothing before ``wait_s``; a Register by 1.2 x ``wait_s`` (the jitter)."""
    h.scheduler.advance(wait_s - 0.1)
    assert h.server.requests.empty()
    h.scheduler.advance(wait_s * 0.2 + 0.2)
    await until(lambda: not h.server.requests.empty())


async def test_retry_procedure_follows_server_resources_17_to_20(
    make_client: MakeClient,
) -> None:
    h = await make_client(register=False, lifetime_s=60)
    events: list[str] = []
    h.client.on_event = lambda client, what: events.append(what)
    server_instance = h.client.instance(1, 0)
    assert server_instance is not None
    for rid, value in ((17, 2), (18, 10), (19, 100), (20, 2)):
        server_instance.set(rid, value)
    await _fail(h)  # sequence 1, attempt 1
    await _expect_retry_after(h, 10)
    await _fail(h)  # attempt 2: the sequence failed
    assert "registration-failed" not in events
    await _expect_retry_after(h, 100)  # Communication Sequence Delay Timer
    await _fail(h)  # sequence 2, attempt 1
    await _expect_retry_after(h, 10)
    await _fail(h)  # the last sequence failed: the registration failed
    assert events.count("registration-failed") == 1
    await _expect_retry_after(h, 100)  # no bootstrap account: a new round
    msg, addr = await next_register(h.server)
    h.server.reply(msg, addr, Code.CREATED, location_path=("rd", "x"))
    await until(lambda: h.client.sessions[1].registered)
    assert h.client.sessions[1].failures == 0


async def test_absent_retry_resources_use_the_spec_defaults(make_client: MakeClient) -> None:
    h = await make_client(register=False, lifetime_s=60)
    server_instance = h.client.instance(1, 0)
    assert server_instance is not None
    for rid in (17, 18, 19, 20):
        server_instance.unset(rid)
    await _fail(h)
    await _expect_retry_after(h, 60)  # Communication Retry Timer default
    await _fail(h)
    await _expect_retry_after(h, 120)  # doubled


async def test_no_bootstrap_when_resource_16_forbids_it(
    make_client: MakeClient, server: RawServer
) -> None:
    bs = await RawServer().start()
    try:
        h, called = await make_bootstrapping_client(
            make_client, server, bs, bootstrap_after_failures=1
        )
        server_instance = h.client.instance(1, 0)
        assert server_instance is not None
        server_instance.set(16, False)  # Bootstrap on Registration Failure
        events: list[str] = []
        h.client.on_event = lambda client, what: events.append(what)
        await _fail(h)
        assert events.count("registration-failed") == 1
        await _expect_retry_after(h, 300)  # the factory Sequence Delay Timer (retry_max_s)
        assert not called
    finally:
        bs.close()


async def test_fleet_retries_are_spread(server: RawServer, make_client: MakeClient) -> None:
    """Devices refused at the same moment do not come back at the same moment."""
    harnesses = [await make_client(f"dev-{i}", register=False) for i in range(6)]
    for _ in harnesses:
        msg, addr = await next_register(server)
        server.reply(msg, addr, Code.SERVICE_UNAVAILABLE)
    sessions = [h.client.sessions[1] for h in harnesses]
    await until(lambda: all(s.state is RegistrationState.FAILED for s in sessions))
    waits = set()
    for h, session in zip(harnesses, sessions, strict=True):
        assert session.retry_at is not None
        waits.add(round(session.retry_at - h.scheduler.now(), 6))
    assert all(2.0 <= w <= 2.4 for w in waits)  # factory Retry Timer 2 s, up to 20 % later
    assert len(waits) == len(harnesses)

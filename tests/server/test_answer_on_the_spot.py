"""Registers and Updates answered without a coroutine (``Registrar.answer``, ``LwM2MServer.handle_now``).

On a store that writes nothing through, the registrar returns the response
itself; everywhere else (a write to wait for, a replaced registration whose
end has work to await, a De-register) it returns the awaitable of
``Registrar.handle``. Both must give the same answers, store contents and
events as ``handle`` does.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable
from pathlib import Path

import pytest
from server_helpers import register_message

from lwm2m.bootstrap.server import BootstrapServer
from lwm2m.coap.codes import Code
from lwm2m.coap.later import Later
from lwm2m.coap.message import Message
from lwm2m.coap.peer import Peer
from lwm2m.model.path import Path as LwPath
from lwm2m.protocol.attributes import AttributeUpdate
from lwm2m.protocol.events import EventBus
from lwm2m.server.events import DeregistrationEvent, RegistrationEvent, ServerEvent, UpdatedEvent
from lwm2m.server.registrar import Registrar
from lwm2m.server.server import LwM2MServer, ServerConfig
from lwm2m.stores import open_stores
from lwm2m.stores.base import RegistrationConflict
from lwm2m.stores.memory import MemoryRegistrationStore, MemoryStores
from lwm2m.stores.records import Registration

PEER = Peer(("127.0.0.1", 5000))
QUERY = ("ep=dev1", "lt=300", "lwm2m=1.1", "b=U")


class _Request:
    def __init__(self, message: Message, peer: Peer) -> None:
        self.message = message
        self.peer = peer


def _recorded(registrar: Registrar) -> list[ServerEvent]:
    seen: list[ServerEvent] = []
    registrar.events.add_listener(seen.append)
    return seen


def _count_built_events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the registrar's events as it builds them, from now on."""
    import lwm2m.server.registrar as registrar_module

    built: list[str] = []
    for name in ("RegistrationEvent", "DeregistrationEvent", "UpdatedEvent"):
        real = getattr(registrar_module, name)

        def counted(*args: object, _real: type = real, **kwargs: object) -> object:
            built.append(_real.__name__)
            return _real(*args, **kwargs)

        monkeypatch.setattr(registrar_module, name, counted)
    return built


async def _resolved(answer: Message | Awaitable[Message]) -> Message:
    return answer if isinstance(answer, Message) else await answer


def test_only_a_store_that_writes_nothing_through_is_synchronous(tmp_path: Path) -> None:
    class Persisting(MemoryRegistrationStore):
        def _persist_add(self, reg: Registration, replaced: Registration | None) -> None:
            return None

    assert MemoryRegistrationStore().synchronous
    assert not Persisting().synchronous


async def test_register_and_update_come_back_as_messages_on_the_memory_store() -> None:
    registrar = Registrar(MemoryRegistrationStore(), None, EventBus())
    events = _recorded(registrar)
    created = registrar.answer(register_message(QUERY), PEER)
    assert isinstance(created, Message) and created.code == Code.CREATED
    rid = created.location_path[1]
    assert registrar.registrations.get(rid) is not None
    changed = registrar.answer(
        Message(Code.POST, uri_path=("rd", rid), uri_query=("lt=600",)), PEER
    )
    assert isinstance(changed, Message) and changed.code == Code.CHANGED
    reg = registrar.registrations.get(rid)
    assert reg is not None and reg.lifetime_s == 600
    assert [type(e) for e in events] == [RegistrationEvent, UpdatedEvent]
    # A De-register whose end leaves nothing to await (no end hook here) is answered on the
    # spot too.
    deleted = registrar.answer(Message(Code.DELETE, uri_path=("rd", rid)), PEER)
    assert isinstance(deleted, Message) and deleted.code == Code.DELETED
    assert registrar.registrations.get(rid) is None
    assert [type(e) for e in events][-1] is DeregistrationEvent


async def test_refusals_are_answered_on_the_spot_and_recorded() -> None:
    registrar = Registrar(MemoryRegistrationStore(), None, EventBus())
    bad = registrar.answer(register_message(("ep=dev1", "lt=zero")), PEER)
    assert isinstance(bad, Message) and bad.code == Code.BAD_REQUEST
    assert b"lt='zero'" in bad.payload
    assert [name for name, _ in registrar.refusals.endpoints()] == ["dev1"]
    unknown = registrar.answer(Message(Code.POST, uri_path=("rd", "nope")), PEER)
    assert isinstance(unknown, Message) and unknown.code == Code.NOT_FOUND
    # A wrong method is refused on the spot too, with handle()'s answer.
    wrong = registrar.answer(Message(Code.GET, uri_path=("rd",)), PEER)
    assert isinstance(wrong, Message) and wrong.code == Code.METHOD_NOT_ALLOWED
    assert (await registrar.handle(Message(Code.GET, uri_path=("rd",)), PEER)).code == wrong.code


async def test_refusals_of_a_store_that_writes_through_are_recorded_too(tmp_path: Path) -> None:
    class Shared(MemoryRegistrationStore):
        """Stands for a cluster's store, which sees another node's client first."""

        async def add(self, registration: Registration) -> tuple[Registration | None, Registration]:
            raise RegistrationConflict(f"{registration.endpoint!r} is held by another node")

    registrar = Registrar(Shared(), None, EventBus())
    bad = registrar.answer(register_message(("ep=dev1", "lt=zero")), PEER)
    assert inspect.isawaitable(bad)
    assert (await bad).code == Code.BAD_REQUEST
    held = registrar.answer(register_message(("ep=dev2",)), PEER)
    assert inspect.isawaitable(held)
    assert (await held).code == Code.CONFLICT
    assert sorted(name for name, _ in registrar.refusals.endpoints()) == ["dev1", "dev2"]


async def test_a_replaced_registration_whose_end_is_awaited_keeps_the_order_of_handle() -> None:
    ended: list[tuple[str, str]] = []

    async def on_removed(reg: Registration, reason: str) -> None:
        ended.append((reg.id, reason))

    registrar = Registrar(MemoryRegistrationStore(), None, EventBus(), on_removed=on_removed)
    events = _recorded(registrar)
    first = await _resolved(registrar.answer(register_message(QUERY), PEER))
    again = registrar.answer(register_message(QUERY), PEER)
    assert inspect.isawaitable(again)  # on_removed has to be awaited before 2.01
    second = await again
    assert second.code == Code.CREATED and second.location_path != first.location_path
    assert ended == [(first.location_path[1], "replaced")]
    kinds = [(type(e).__name__, getattr(e, "replaced", None)) for e in events]
    assert [k for k, _ in kinds] == [
        "RegistrationEvent",
        "DeregistrationEvent",
        "RegistrationEvent",
    ]
    assert registrar.registrations.get(first.location_path[1]) is None


async def test_a_replacement_without_an_end_hook_is_answered_on_the_spot() -> None:
    registrar = Registrar(MemoryRegistrationStore(), None, EventBus())
    events = _recorded(registrar)
    await _resolved(registrar.answer(register_message(QUERY), PEER))
    again = registrar.answer(register_message(QUERY), PEER)
    assert isinstance(again, Message) and again.code == Code.CREATED
    replaced = [e for e in events if isinstance(e, DeregistrationEvent)]
    assert len(replaced) == 1 and replaced[0].replaced


async def test_an_end_hook_with_nothing_left_to_await_answers_a_replacement_on_the_spot() -> None:
    ended: list[str] = []

    def on_removed(reg: Registration, reason: str) -> None:
        ended.append(reason)  # all done here: nothing to await

    registrar = Registrar(MemoryRegistrationStore(), None, EventBus(), on_removed=on_removed)
    await _resolved(registrar.answer(register_message(QUERY), PEER))
    again = registrar.answer(register_message(QUERY), PEER)
    assert isinstance(again, Message) and again.code == Code.CREATED
    assert ended == ["replaced"]


async def test_a_durable_register_is_answered_by_its_commit_with_a_later(tmp_path: Path) -> None:
    """SQLite: the answer is a Later, resolved from the batch's commit; a replacement
    whose end has work to await resolves it once that work is done."""
    ended: list[str] = []

    async def on_removed(reg: Registration, reason: str) -> None:
        await asyncio.sleep(0.01)
        ended.append(reg.id)

    stores = await open_stores("sqlite", tmp_path)
    try:
        registrar = Registrar(stores.registrations, None, EventBus(), on_removed=on_removed)
        events = _recorded(registrar)
        first = registrar.answer(register_message(QUERY), PEER)
        assert isinstance(first, Later) and not first.done  # the commit is to come
        created = await first
        assert created.code == Code.CREATED
        old_id = created.location_path[1]
        again = registrar.answer(register_message(QUERY), PEER)
        assert isinstance(again, Later)
        replaced = await again
        assert replaced.code == Code.CREATED and ended == [old_id]
        assert [type(e).__name__ for e in events] == [
            "RegistrationEvent",
            "DeregistrationEvent",
            "RegistrationEvent",
        ]
        assert stores.registrations.get(old_id) is None
    finally:
        await stores.close()
    reopened = await open_stores("sqlite", tmp_path)
    try:
        assert [r.id for r in reopened.registrations.list()] == [replaced.location_path[1]]
    finally:
        await reopened.close()


async def test_the_sqlite_store_waits_for_its_commit(tmp_path: Path) -> None:
    stores = await open_stores("sqlite", tmp_path)
    try:
        assert not stores.registrations.synchronous
        registrar = Registrar(stores.registrations, stores.security, EventBus())
        pending = registrar.answer(register_message(QUERY), PEER)
        assert inspect.isawaitable(pending)
        created = await pending
        assert created.code == Code.CREATED
        assert stores.registrations.get(created.location_path[1]) is not None
    finally:
        await stores.close()
    stores = await open_stores("sqlite", tmp_path)  # and the row is there after a restart
    try:
        assert stores.registrations.get(created.location_path[1]) is not None
    finally:
        await stores.close()


async def test_handle_now_and_handle_agree() -> None:
    """The server's two entry points give the same answers for the same requests."""
    answers: dict[str, list[tuple[Code | int, bool]]] = {}
    for entry in ("handle", "handle_now"):
        server = LwM2MServer(MemoryStores(), config=ServerConfig(coap_port=0))
        call = getattr(server, entry)
        got: list[tuple[Code | int, bool]] = []
        created = await _resolved(call(_Request(register_message(QUERY), PEER)))
        rid = created.location_path[1]
        for message in (
            Message(Code.POST, uri_path=("rd", rid), uri_query=("lt=90",)),
            Message(Code.PUT, uri_path=("rd", rid), payload=b"</1/0>", content_format=40),
            register_message(("ep=dev1", "b=X")),
            Message(Code.DELETE, uri_path=("rd", rid)),
            Message(Code.GET, uri_path=("nothing",)),
        ):
            reply = await _resolved(call(_Request(message, PEER)))
            got.append((reply.code, bool(reply.payload)))
        answers[entry] = [(created.code, False), *got]
    assert answers["handle"] == answers["handle_now"]
    assert [code for code, _ in answers["handle"]] == [
        Code.CREATED,
        Code.CHANGED,
        Code.CHANGED,
        Code.BAD_REQUEST,
        Code.DELETED,
        Code.NOT_FOUND,
    ]


def _contacts_of(registrar: Registrar) -> list[tuple[str, bool]]:
    seen: list[tuple[str, bool]] = []
    stored = registrar.registrations

    def on_contact(reg: Registration, updated: bool) -> None:
        # Told once the registration is stored, with the registration itself.
        assert stored.get(reg.id) == reg
        seen.append((reg.id, updated))

    registrar.on_contact = on_contact
    return seen


async def test_the_contact_hook_sees_each_register_and_update_with_its_registration() -> None:
    """What the server does after a Register or an Update (queued requests, reconnects,
    dormant observations) is handed the registration, not looked up by address."""
    registrar = Registrar(MemoryRegistrationStore(), None, EventBus())
    contacts = _contacts_of(registrar)
    created = await _resolved(registrar.answer(register_message(QUERY), PEER))
    rid = created.location_path[1]
    update = Message(Code.POST, uri_path=("rd", rid), uri_query=("lt=600",))
    assert (await _resolved(registrar.answer(update, Peer(("127.0.0.1", 5001))))).code == (
        Code.CHANGED
    )
    refused = await _resolved(registrar.answer(register_message(("lt=300",)), PEER))
    assert refused.code == Code.BAD_REQUEST
    unknown = Message(Code.POST, uri_path=("rd", "nosuchid"))
    assert (await _resolved(registrar.answer(unknown, PEER))).code == Code.NOT_FOUND
    assert contacts == [(rid, False), (rid, True)]
    reg = registrar.registrations.get(rid)
    assert reg is not None and reg.address == ("127.0.0.1", 5001) and reg.lifetime_s == 600
    deleted = await _resolved(registrar.answer(Message(Code.DELETE, uri_path=("rd", rid)), PEER))
    assert deleted.code == Code.DELETED and len(contacts) == 2


async def test_the_contact_hook_of_a_durable_register_waits_for_the_commit(tmp_path: Path) -> None:
    stores = await open_stores("sqlite", tmp_path)
    try:
        registrar = Registrar(stores.registrations, None, EventBus())
        contacts = _contacts_of(registrar)
        answer = registrar.answer(register_message(QUERY), PEER)
        assert isinstance(answer, Later) and not answer.done
        assert contacts == []  # nothing told before the batch commits
        created = await answer
        assert contacts == [(created.location_path[1], False)]
    finally:
        await stores.close()


async def test_a_de_register_leaves_work_only_where_the_client_left_something() -> None:
    """Attributes the server gave a client are forgotten when it De-registers; a client
    that holds nothing ends without a coroutine (a storm of De-registers)."""
    server = LwM2MServer(MemoryStores(), config=ServerConfig(coap_port=0))
    plain = await _resolved(server.handle_now(_Request(register_message(QUERY), PEER)))
    reg = server.stores.registrations.get(plain.location_path[1])
    assert reg is not None
    assert server._registration_removed(reg, "deregistered") is None

    other = Peer(("127.0.0.1", 5002))
    given = await _resolved(server.handle_now(_Request(register_message(("ep=dev2",)), other)))
    await server.attributes.record("dev2", LwPath.parse("/3/0/9"), AttributeUpdate((("pmin", 5),)))
    assert await server.attributes.of("dev2")
    bye = Message(Code.DELETE, uri_path=("rd", given.location_path[1]))
    assert (await _resolved(server.handle_now(_Request(bye, other)))).code == Code.DELETED
    assert await server.attributes.of("dev2") == {}


async def test_no_event_is_built_while_nothing_hears_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A storm with no listener and no SSE subscriber builds no event; a subscriber that
    comes gets every event from then on, on both kinds of store."""
    built = _count_built_events(monkeypatch)
    sqlite = await open_stores("sqlite", tmp_path)
    try:
        for store in (MemoryRegistrationStore(), sqlite.registrations):
            built.clear()
            registrar = Registrar(store, None, EventBus())
            for _ in range(2):  # the second replaces the first
                created = await _resolved(registrar.answer(register_message(QUERY), PEER))
            rid = created.location_path[1]
            update = Message(Code.POST, uri_path=("rd", rid), uri_query=("lt=600",))
            assert (await _resolved(registrar.answer(update, PEER))).code == Code.CHANGED
            bye = Message(Code.DELETE, uri_path=("rd", rid))
            assert (await _resolved(registrar.answer(bye, PEER))).code == Code.DELETED
            assert built == []

            with registrar.events.subscribe() as subscription:
                for _ in range(2):
                    created = await _resolved(registrar.answer(register_message(QUERY), PEER))
                rid = created.location_path[1]
                update = Message(Code.POST, uri_path=("rd", rid), uri_query=("lt=600",))
                await _resolved(registrar.answer(update, PEER))
                await _resolved(registrar.answer(Message(Code.DELETE, uri_path=("rd", rid)), PEER))
                got = [type(subscription.get_nowait()).__name__ for _ in range(5)]
            expected = ["RegistrationEvent", "DeregistrationEvent", "RegistrationEvent"]
            expected += ["UpdatedEvent", "DeregistrationEvent"]
            assert got == expected
            assert built == expected
    finally:
        await sqlite.close()


async def test_a_listener_of_registrations_only_gets_no_other_event_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What ``lwm2m server``'s embedded bootstrap server listens to: REGISTRATION events.
    A storm then builds those only, not the de-registration of each replaced registration
    nor an event per Update or De-register."""
    built = _count_built_events(monkeypatch)
    registrar = Registrar(MemoryRegistrationStore(), None, EventBus())
    heard: list[object] = []
    registrar.events.add_listener(heard.append, kinds=("registration",))
    for _ in range(2):
        created = await _resolved(registrar.answer(register_message(QUERY), PEER))
    rid = created.location_path[1]
    update = Message(Code.POST, uri_path=("rd", rid), uri_query=("lt=600",))
    assert (await _resolved(registrar.answer(update, PEER))).code == Code.CHANGED
    bye = Message(Code.DELETE, uri_path=("rd", rid))
    assert (await _resolved(registrar.answer(bye, PEER))).code == Code.DELETED
    assert built == ["RegistrationEvent", "RegistrationEvent"]
    assert [type(e).__name__ for e in heard] == built


async def test_the_embedded_bootstrap_server_listens_to_registrations_only() -> None:
    server = LwM2MServer()
    assert not server.events.heard
    bootstrap = BootstrapServer()
    bootstrap.follow_server(server)
    try:
        assert server.events.hears("registration")
        assert not server.events.hears("updated") and not server.events.hears("deregistration")
    finally:
        await bootstrap.close()
    assert not server.events.heard


async def test_a_durable_update_is_answered_by_its_commit_with_a_later(tmp_path: Path) -> None:
    """SQLite: an Update is a Later too, resolved from its batch's commit (no coroutine);
    the renewed lifetime is on disk once it is answered, and an unknown id is a 4.04."""
    stores = await open_stores("sqlite", tmp_path)
    try:
        registrar = Registrar(stores.registrations, None, EventBus())
        created = await _resolved(registrar.answer(register_message(QUERY), PEER))
        rid = created.location_path[1]
        update = Message(Code.POST, uri_path=("rd", rid), uri_query=("lt=600",))
        pending = registrar.answer(update, PEER)
        assert isinstance(pending, Later) and not pending.done  # the commit is to come
        assert (await pending).code == Code.CHANGED
        unknown = Message(Code.POST, uri_path=("rd", "nobody"), uri_query=("lt=600",))
        assert (await _resolved(registrar.answer(unknown, PEER))).code == Code.NOT_FOUND
    finally:
        await stores.close()
    reopened = await open_stores("sqlite", tmp_path)
    try:
        stored = reopened.registrations.get(rid)
        assert stored is not None and stored.lifetime_s == 600
    finally:
        await reopened.close()


async def test_a_de_register_with_an_end_to_await_resolves_once_that_is_done() -> None:
    """Memory store: the De-register's answer waits for the end hook's work (a Later),
    and refusals (an unknown id, another client) are answered on the spot."""
    ended: list[str] = []

    async def on_removed(reg: Registration, reason: str) -> None:
        await asyncio.sleep(0.01)
        ended.append(reason)

    registrar = Registrar(MemoryRegistrationStore(), None, EventBus(), on_removed=on_removed)
    created = registrar.answer(register_message(QUERY), PEER)
    assert isinstance(created, Message)
    rid = created.location_path[1]
    unknown = registrar.answer(Message(Code.DELETE, uri_path=("rd", "nobody")), PEER)
    assert isinstance(unknown, Message) and unknown.code == Code.NOT_FOUND
    deleted = registrar.answer(Message(Code.DELETE, uri_path=("rd", rid)), PEER)
    assert isinstance(deleted, Later) and not deleted.done and ended == []
    assert (await deleted).code == Code.DELETED and ended == ["deregistered"]


async def test_a_durable_de_register_is_answered_by_its_commit_with_a_later(
    tmp_path: Path,
) -> None:
    stores = await open_stores("sqlite", tmp_path)
    try:
        registrar = Registrar(stores.registrations, None, EventBus())
        events = _recorded(registrar)
        created = await _resolved(registrar.answer(register_message(QUERY), PEER))
        rid = created.location_path[1]
        pending = registrar.answer(Message(Code.DELETE, uri_path=("rd", rid)), PEER)
        assert isinstance(pending, Later) and not pending.done  # the commit is to come
        assert stores.registrations.get(rid) is None  # gone from memory at once
        assert (await pending).code == Code.DELETED
        assert [type(e) for e in events] == [RegistrationEvent, DeregistrationEvent]
    finally:
        await stores.close()
    reopened = await open_stores("sqlite", tmp_path)
    try:
        assert reopened.registrations.get(rid) is None and len(reopened.registrations) == 0
    finally:
        await reopened.close()

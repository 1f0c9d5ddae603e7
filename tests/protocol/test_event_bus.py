"""The one event bus of both server roles."""

from __future__ import annotations

import logging

import pytest

from lwm2m.bootstrap.events import SessionFinished
from lwm2m.bootstrap.server import BootstrapServer
from lwm2m.protocol.events import EventBus, event_kind
from lwm2m.server.events import AwakeEvent, ServerEvent, SleepingEvent
from lwm2m.server.server import LwM2MServer


def test_both_roles_publish_on_the_same_bus_class() -> None:
    assert type(LwM2MServer().events) is EventBus
    assert type(BootstrapServer().events) is EventBus


async def test_listeners_see_every_event_and_a_failing_one_is_contained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus: EventBus[SessionFinished] = EventBus(buffer_size=1)
    seen: list[SessionFinished] = []

    def broken(event: SessionFinished) -> None:
        raise RuntimeError("listener bug")

    bus.add_listener(broken)
    remove = bus.add_listener(seen.append)
    sub = bus.subscribe("ep")
    with caplog.at_level(logging.ERROR, logger="lwm2m.protocol.events"):
        for n in range(3):
            bus.publish(SessionFinished(f"s{n}", "ep", float(n)))
    assert [e.session_id for e in seen] == ["s0", "s1", "s2"]
    assert sum("listener failed" in r.message for r in caplog.records) == 3
    # The bounded subscription kept the newest only.
    assert (await sub.get(timeout=1)).session_id == "s2"
    assert sub.dropped == 2
    remove()
    bus.publish(SessionFinished("s3", "ep", 3.0))
    assert len(seen) == 3


async def test_get_times_out_and_ends_when_closed() -> None:
    bus: EventBus[SleepingEvent] = EventBus()
    sub = bus.subscribe()
    with pytest.raises(TimeoutError):
        await sub.get(timeout=0.01)
    bus.publish(SleepingEvent("a", 1.0, "rid"))
    bus.close()
    assert [e.endpoint async for e in sub] == ["a"]
    assert bus.subscriber_count == 0


def test_heard_while_a_listener_or_a_subscription_is_there() -> None:
    """What lets a publisher skip building events nobody gets (a storm's Registers)."""
    bus: EventBus[SleepingEvent] = EventBus()
    assert not bus.heard
    remove = bus.add_listener(lambda event: None)
    assert bus.heard
    remove()
    assert not bus.heard
    remove()  # twice: still nothing
    assert not bus.heard
    everything = bus.subscribe()
    one = bus.subscribe("ep")
    assert bus.heard
    everything.close()
    assert bus.heard  # the endpoint's subscription still gets events
    one.close()
    assert not bus.heard
    bus.add_listener(lambda event: None)
    bus.subscribe("ep")
    bus.close()
    assert bus.heard  # the listener stays


def test_a_listener_naming_kinds_gets_those_only_and_is_heard_for_those_only() -> None:
    bus: EventBus[ServerEvent] = EventBus()
    assert not bus.hears("sleeping")
    asleep: list[ServerEvent] = []
    remove = bus.add_listener(asleep.append, kinds=("sleeping",))
    assert bus.heard
    assert bus.hears("sleeping") and not bus.hears("awake")
    bus.publish(SleepingEvent("a", 1.0, "rid"))
    bus.publish(AwakeEvent("a", 2.0, "rid"))
    assert [type(e) for e in asleep] == [SleepingEvent]
    # A listener of every kind, and a subscription, hear every kind.
    everything: list[ServerEvent] = []
    remove_all = bus.add_listener(everything.append)
    assert bus.hears("awake")
    remove_all()
    assert not bus.hears("awake")
    with bus.subscribe("b"):
        assert bus.hears("awake")
    assert not bus.hears("awake")
    remove()
    assert not bus.heard and not bus.hears("sleeping")


def test_a_remover_removes_its_own_entry_only() -> None:
    """The same function added twice (once for a kind, once for all) is two listeners."""
    bus: EventBus[ServerEvent] = EventBus()
    seen: list[ServerEvent] = []
    remove_one = bus.add_listener(seen.append, kinds=("sleeping",))
    bus.add_listener(seen.append)
    remove_one()
    bus.publish(AwakeEvent("a", 2.0, "rid"))
    assert len(seen) == 1  # the listener of every kind is still there
    remove_one()  # a second call changes nothing
    assert bus.hears("awake")


def test_event_kind_is_the_value_of_the_class_type() -> None:
    assert event_kind(SleepingEvent("a", 1.0, "rid")) == "sleeping"
    assert event_kind(SessionFinished("s", "ep", 1.0)) == SessionFinished.type.value
    assert event_kind(object()) is None


def test_an_event_without_a_kind_reaches_only_the_listeners_of_every_kind() -> None:
    class Untyped:
        endpoint = "a"

    bus: EventBus[Untyped] = EventBus()
    named: list[Untyped] = []
    every: list[Untyped] = []
    bus.add_listener(named.append, kinds=("sleeping",))
    bus.add_listener(every.append)
    bus.publish(Untyped())
    assert named == [] and len(every) == 1

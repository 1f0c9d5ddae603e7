"""SenML relative times (RFC 8428 4.5.3) become absolute at reception, for Send and Notify.

The codecs report ``bt`` + ``t`` as given; the server resolves times below
2**28 (and absent times) against its own clock when the message arrives, so
``SendEvent.records`` and ``NotificationEvent.records`` say when each value
was measured. The server's clock here is a fake one, advanced between the
messages, so the expected times are exact.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from server_helpers import Device, FakeClock

from lwm2m.coap.codes import Code
from lwm2m.coap.message import Message
from lwm2m.formats import cbor_strict
from lwm2m.formats.media import ContentFormat
from lwm2m.model.path import Path
from lwm2m.server import LwM2MServer, NotificationEvent, SendEvent
from lwm2m.server.payloads import RELATIVE_TIME_LIMIT, TimedValue, absolute_time

SENML_JSON = int(ContentFormat.SENML_JSON)
SENML_CBOR = int(ContentFormat.SENML_CBOR)
BATTERY = Path(3, 0, 9)
ABSOLUTE = 1_600_000_000  # a real epoch time (above 2**28)


class Observed:
    """A client whose /3/0/9 can be observed; notifications are sent by the test."""

    def __init__(self) -> None:
        self.observations: list[Any] = []

    async def handle(self, request: Any) -> Message:
        msg: Message = request.message
        if msg.code == Code.GET and msg.observe == 0:
            self.observations.append(request.start_observation())
            return Message(Code.CONTENT, payload=b"87", content_format=0)
        return Message(Code.NOT_FOUND)


@pytest.fixture
async def device(make_device: Any) -> tuple[Observed, Device]:
    fake = Observed()
    dev: Device = await make_device(fake.handle)
    reply = await dev.register("dev", "lt=300", "lwm2m=1.1", payload=b'</>;ct="110 112",</3/0>')
    assert reply.code == Code.CREATED
    return fake, dev


def test_absolute_time_boundaries() -> None:
    now = 1_700_000_000.0
    assert absolute_time(None, now) == now  # no time: "roughly now"
    assert absolute_time(0, now) == now
    assert absolute_time(-60, now) == now - 60
    assert absolute_time(5.5, now) == now + 5.5
    assert absolute_time(RELATIVE_TIME_LIMIT - 1, now) == now + RELATIVE_TIME_LIMIT - 1
    assert absolute_time(RELATIVE_TIME_LIMIT, now) == RELATIVE_TIME_LIMIT
    assert absolute_time(ABSOLUTE, now) == ABSOLUTE


async def _send(dev: Device, payload: bytes, fmt: int) -> Message:
    return await dev.endpoint.request(
        Message(Code.POST, uri_path=("dp",), payload=payload, content_format=fmt),
        dev.server_address,
        timeout=5,
    )


async def test_send_senml_json_times(
    server: LwM2MServer, clock: FakeClock, device: tuple[Observed, Device]
) -> None:
    _, dev = device
    clock.advance(123.0)
    now = clock()
    payload = json.dumps(
        [
            {"bn": "/3/0/", "bt": -60, "n": "9", "v": 80},  # a minute ago
            {"n": "9", "t": 30, "v": 81},  # bt + t = 30 s ago
            {"n": "9", "t": 60, "v": 82},  # bt + t = now
            {"bn": "/3/0/", "bt": ABSOLUTE, "n": "0", "vs": "ACME"},  # absolute
            {"bn": "/3/0/", "bt": 0, "n": "1", "vs": "Model 500"},  # bt 0: now
        ]
    ).encode()
    with server.events.subscribe("dev") as events:
        assert (await _send(dev, payload, SENML_JSON)).code == Code.CHANGED
        event = await asyncio.wait_for(events.get(), 5)
    assert isinstance(event, SendEvent) and event.time == now
    assert event.records == (
        TimedValue(BATTERY, 80, now - 60),
        TimedValue(BATTERY, 81, now - 30),
        TimedValue(BATTERY, 82, now),
        TimedValue(Path(3, 0, 0), "ACME", float(ABSOLUTE)),
        TimedValue(Path(3, 0, 1), "Model 500", now),
    )
    # A time series: the values hold the latest measurement of each resource.
    assert event.values[BATTERY].value == 82  # type: ignore[union-attr]
    assert event.values[Path(3, 0, 0)].value == "ACME"  # type: ignore[union-attr]


async def test_send_senml_cbor_without_times_is_now(
    server: LwM2MServer, clock: FakeClock, device: tuple[Observed, Device]
) -> None:
    _, dev = device
    # SenML CBOR labels: -2 bn, -3 bt, 0 n, 2 v, 6 t.
    payload = cbor_strict.dumps([{-2: "/3/0/9", 2: 5}, {-2: "/3/0/9", 6: -2.5, 2: 6}])
    with server.events.subscribe("dev") as events:
        assert (await _send(dev, payload, SENML_CBOR)).code == Code.CHANGED
        event = await asyncio.wait_for(events.get(), 5)
    assert isinstance(event, SendEvent)
    now = clock()
    assert [(r.value, r.time) for r in event.records] == [(5, now), (6, now - 2.5)]


async def test_notification_times_use_the_clock_at_reception(
    server: LwM2MServer, clock: FakeClock, device: tuple[Observed, Device]
) -> None:
    fake, _ = device
    with server.events.subscribe("dev") as events:
        await server.observe("dev", "/3/0/9")
        (obs,) = fake.observations
        clock.advance(10.0)
        first_at = clock()
        relative = json.dumps([{"bn": "/3/0/9", "bt": -5, "v": 40}]).encode()
        await obs.notify(Message(Code.CONTENT, payload=relative, content_format=SENML_JSON))
        first = await asyncio.wait_for(events.get(), 5)
        clock.advance(100.0)
        absolute = json.dumps([{"bn": "/3/0/9", "bt": ABSOLUTE, "v": 41}]).encode()
        await obs.notify(Message(Code.CONTENT, payload=absolute, content_format=SENML_JSON))
        second = await asyncio.wait_for(events.get(), 5)
        clock.advance(1.0)
        await obs.notify(Message(Code.CONTENT, payload=b"42", content_format=0))
        third = await asyncio.wait_for(events.get(), 5)
    assert isinstance(first, NotificationEvent) and first.time == first_at
    assert first.records == (TimedValue(BATTERY, 40, first_at - 5),)
    assert isinstance(second, NotificationEvent)
    assert second.records == (TimedValue(BATTERY, 41, float(ABSOLUTE)),)
    # text/plain carries no records (no time either): values only.
    assert isinstance(third, NotificationEvent) and third.records == ()
    assert third.values[BATTERY].value == 42  # type: ignore[union-attr]


async def test_notification_time_series_latest_value_wins(
    server: LwM2MServer, clock: FakeClock, device: tuple[Observed, Device]
) -> None:
    """Timestamped notification (values measured while storing): all records kept,
    the value is the most recent measurement, wherever it sits in the payload."""
    fake, _ = device
    with server.events.subscribe("dev") as events:
        await server.observe("dev", "/3/0/9")
        (obs,) = fake.observations
        series = json.dumps(
            [
                {"bn": "/3/0/9", "t": -5, "v": 40},
                {"bn": "/3/0/9", "t": -20, "v": 39},
                {"bn": "/3/0/9", "t": -35, "v": 38},
            ]
        ).encode()
        await obs.notify(Message(Code.CONTENT, payload=series, content_format=SENML_JSON))
        event = await asyncio.wait_for(events.get(), 5)
    now = clock()
    assert isinstance(event, NotificationEvent)
    assert [(r.value, r.time) for r in event.records] == [
        (40, now - 5),
        (39, now - 20),
        (38, now - 35),
    ]
    assert event.content is not None and event.content.value == 40  # type: ignore[union-attr]

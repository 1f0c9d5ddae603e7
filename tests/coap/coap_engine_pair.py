"""Two sans-I/O engines joined by an in-memory link and a fake clock (test helper)."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from lwm2m.coap.engine import Engine
from lwm2m.coap.events import Event, RequestReceived
from lwm2m.coap.message import Message
from lwm2m.coap.params import TransmissionParameters
from lwm2m.coap.peer import Address

CLIENT: Address = ("127.0.0.1", 1000)
SERVER: Address = ("127.0.0.1", 2000)

Handler = Callable[[RequestReceived], Message | None]


@dataclass
class Pair:
    """``client`` sends to ``server``; ``handler`` answers the server's requests inline.

    ``drop`` decides per datagram (data, source, destination) whether the link
    loses it; ``wire`` records everything sent as (source, data).
    """

    params: TransmissionParameters = field(default_factory=TransmissionParameters)
    handler: Handler | None = None
    drop: Callable[[bytes, Address, Address], bool] = lambda data, src, dst: False
    now: float = 100.0
    wire: list[tuple[Address, bytes]] = field(default_factory=list)
    client_events: list[Event] = field(default_factory=list)
    server_events: list[Event] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = Engine(self.params, rng=random.Random(1))
        self.server = Engine(self.params, rng=random.Random(2))

    def engine(self, address: Address) -> Engine:
        return self.client if address == CLIENT else self.server

    def pump(self) -> None:
        """Deliver datagrams and events until nothing moves (no time passes)."""
        for _ in range(10_000):
            moved = False
            for src, engine in ((CLIENT, self.client), (SERVER, self.server)):
                for data, dst in engine.datagrams_to_send(self.now):
                    moved = True
                    self.wire.append((src, data))
                    if not self.drop(data, src, dst):
                        self.engine(dst).receive_datagram(data, src, self.now)
            while (event := self.client.next_event()) is not None:
                moved = True
                self.client_events.append(event)
            while (event := self.server.next_event()) is not None:
                moved = True
                self.server_events.append(event)
                if isinstance(event, RequestReceived) and self.handler is not None:
                    response = self.handler(event)
                    if response is not None:
                        self.server.respond(event.request_id, response, self.now)
            if not moved:
                return
        raise AssertionError("link never went quiet")

    def advance(self, seconds: float) -> None:
        """Move the clock forward, firing every timer due on the way."""
        end = self.now + seconds
        while True:
            timers = [
                t for t in (self.client.get_timer(), self.server.get_timer()) if t is not None
            ]
            nxt = min(timers, default=None)
            if nxt is None or nxt > end:
                break
            self.now = max(self.now, nxt)
            self.client.handle_timer(self.now)
            self.server.handle_timer(self.now)
            self.pump()
        self.now = end
        self.pump()

    def request(self, message: Message, *, observe: bool = False) -> int:
        request_id = self.client.send_request(message, SERVER, self.now, observe=observe)
        self.pump()
        return request_id

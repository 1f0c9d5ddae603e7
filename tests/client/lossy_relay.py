"""A UDP relay that behaves like a NAT on a bad link (a uniquely named test helper).

Every device address that sends through the relay gets its own upstream
socket, so the server sees one port per device, as behind a NAT. Once
:meth:`LossyRelay.impair` is called, each datagram, either way, is dropped
with probability ``loss``, sent twice with probability ``duplicate``, and
delayed by a uniform 0..``max_delay_s`` (so datagrams overtake each other). :meth:`LossyRelay.rebind` forgets a device's
mapping: its next datagram leaves from a new port (NAT rebinding).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

Address = tuple[str, int]


@dataclass(slots=True)
class RelayStats:
    forwarded: int = 0
    dropped: int = 0
    duplicated: int = 0
    rebinds: int = 0


class _Downstream(asyncio.DatagramProtocol):
    def __init__(self, relay: LossyRelay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay._from_device(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        pass  # a device socket already closed: the datagram is lost, as on a link


class _Mapping(asyncio.DatagramProtocol):
    """One NAT binding: the upstream socket of one device."""

    def __init__(self, relay: LossyRelay, device: Address) -> None:
        self.relay = relay
        self.device = device
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: list[bytes] = []
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        if self.closed:  # rebound before its socket was open
            self.transport.close()
            return
        for data in self.pending:
            self.send(data)
        self.pending.clear()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.closed:
            self.relay._to_device(data, self.device)

    def error_received(self, exc: Exception) -> None:
        pass  # the server is restarting (ICMP port unreachable): lost

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        if self.transport is None:
            self.pending.append(data)
        elif not self.transport.is_closing():
            self.transport.sendto(data, self.relay.upstream)

    @property
    def address(self) -> Address | None:
        if self.transport is None:
            return None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return (host, port)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class LossyRelay:
    def __init__(self, upstream: Address, rng: random.Random) -> None:
        self.upstream = upstream
        self.rng = rng
        self.loss = 0.0
        self.duplicate = 0.0
        self.max_delay_s = 0.0
        self.stats = RelayStats()
        self._listen: asyncio.DatagramTransport | None = None
        self._nat: dict[Address, _Mapping] = {}
        self._tasks: set[asyncio.Task[object]] = set()

    async def start(self) -> Address:
        """Bind the device-facing socket; returns the address devices send to."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Downstream(self), local_addr=("127.0.0.1", 0)
        )
        self._listen = transport
        host, port = transport.get_extra_info("sockname")[:2]
        return (host, port)

    def impair(self, *, loss: float, duplicate: float, max_delay_s: float) -> None:
        """From now on drop, duplicate and delay datagrams (each way); a clean link before."""
        self.loss = loss
        self.duplicate = duplicate
        self.max_delay_s = max_delay_s

    def upstream_address(self, device: Address) -> Address | None:
        """The address the server sees for ``device`` now (None before its first datagram)."""
        mapping = self._nat.get(device)
        return None if mapping is None else mapping.address

    def rebind(self, device: Address) -> None:
        """Drop the device's binding: its next datagram gets a new upstream port."""
        mapping = self._nat.pop(device, None)
        if mapping is not None:
            mapping.close()
            self.stats.rebinds += 1

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for mapping in self._nat.values():
            mapping.close()
        self._nat.clear()
        if self._listen is not None:
            self._listen.close()

    # Private

    def _from_device(self, data: bytes, device: Address) -> None:
        mapping = self._nat.get(device)
        if mapping is None:
            mapping = _Mapping(self, device)
            self._nat[device] = mapping
            self._open(mapping)
        self._impair(lambda: mapping.send(data))

    def _to_device(self, data: bytes, device: Address) -> None:
        def deliver() -> None:
            if self._listen is not None and not self._listen.is_closing():
                self._listen.sendto(data, device)

        self._impair(deliver)

    def _open(self, mapping: _Mapping) -> None:
        loop = asyncio.get_running_loop()
        task = loop.create_task(
            loop.create_datagram_endpoint(lambda: mapping, local_addr=("127.0.0.1", 0))
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _impair(self, send: Callable[[], None]) -> None:
        if self.rng.random() < self.loss:
            self.stats.dropped += 1
            return
        copies = 1
        if self.rng.random() < self.duplicate:
            copies = 2
            self.stats.duplicated += 1
        loop = asyncio.get_running_loop()
        for _ in range(copies):
            self.stats.forwarded += 1
            loop.call_later(self.rng.uniform(0.0, self.max_delay_s), send)

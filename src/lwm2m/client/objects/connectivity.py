"""Connectivity Monitoring (4) and Connectivity Statistics (7)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lwm2m.client.instance import Instance, Res, execute

if TYPE_CHECKING:
    from lwm2m.client.objects.host import ClientHost


class ConnectivityMonitoring(Instance, object_id=4):
    __slots__ = ("client",)

    network_bearer = Res(0, 41)  # 41 = Ethernet
    available_bearers = Res(1, {0: 41})
    radio_signal_strength = Res(2, 0)
    link_quality = Res(3, 100)
    ip_addresses = Res[dict[int, str]](4)
    link_utilization = Res(6, 0)

    def __init__(self, client: ClientHost, instance_id: int = 0) -> None:
        super().__init__(instance_id)
        self.client = client

    @ip_addresses.reader
    def _ips(self) -> dict[int, str]:
        address = self.client.local_address
        host = address[0] if address else "0.0.0.0"
        if host == "::":
            return {0: "::1"}
        return {0: "127.0.0.1" if host in ("0.0.0.0", "") else host}


class ConnectivityStatistics(Instance, object_id=7):
    """Counts the bytes the client's sockets sent and received while collecting.

    Start (6) and Stop (7) bound the collection; Tx/Rx Data are kilobytes,
    Average Message Size is bytes per datagram.
    """

    __slots__ = ("_base", "_frozen", "client", "collecting")

    tx_data = Res[int](2)
    rx_data = Res[int](3)
    max_message_size = Res(4, 1152)
    average_message_size = Res[int](5)
    collection_period = Res(8, 0)

    def __init__(self, client: ClientHost, instance_id: int = 0) -> None:
        super().__init__(instance_id)
        self.client = client
        self.collecting = False
        self._base = (0, 0, 0)
        self._frozen = (0, 0, 0)

    def _counters(self) -> tuple[int, int, int]:
        # The socket's own figures: what the radio carried, DTLS and
        # retransmissions included, not what the application meant to say.
        t = self.client.stats.traffic
        return t.bytes_sent, t.bytes_received, t.datagrams_sent + t.datagrams_received

    def _delta(self) -> tuple[int, int, int]:
        if not self.collecting:
            return self._frozen  # Stop keeps the figures of the last collection
        now = self._counters()
        return now[0] - self._base[0], now[1] - self._base[1], now[2] - self._base[2]

    @tx_data.reader
    def _tx(self) -> int:
        return self._delta()[0] // 1024

    @rx_data.reader
    def _rx(self) -> int:
        return self._delta()[1] // 1024

    @average_message_size.reader
    def _avg(self) -> int:
        tx, rx, count = self._delta()
        return (tx + rx) // count if count else 0

    @execute(6)
    def start(self, args: str) -> None:
        """Reset the counters and collect (LwM2M 1.0 E.8)."""
        self._base = self._counters()
        self._frozen = (0, 0, 0)
        self.collecting = True

    @execute(7)
    def stop(self, args: str) -> None:
        if self.collecting:
            self._frozen = self._delta()
        self.collecting = False

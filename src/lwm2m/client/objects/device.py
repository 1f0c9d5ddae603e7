"""Device object (3): identity, power, errors, time; Reboot and Factory Reset really act."""

from __future__ import annotations

import datetime
import time
from typing import TYPE_CHECKING

from lwm2m.client.instance import Instance, Res, execute

if TYPE_CHECKING:
    from lwm2m.client.objects.host import ClientHost

#: Error Code values (3/0/11).
NO_ERROR = 0
LOW_BATTERY = 1
EXTERNAL_POWER_OFF = 2
GPS_FAILURE = 3
LOW_SIGNAL = 4
OUT_OF_MEMORY = 5
SMS_FAILURE = 6
IP_CONNECTIVITY_FAILURE = 7
PERIPHERAL_MALFUNCTION = 8


class Device(Instance, object_id=3):
    __slots__ = ("client", "clock_offset_s")

    manufacturer = Res(0, "lwm2m-py")
    model_number = Res(1, "simulated")
    serial_number = Res(2, "0")
    firmware_version = Res(3, "1.0.0")
    available_power_sources = Res(6, {0: 1, 1: 5})  # DC power, internal battery
    power_source_voltage = Res(7, {0: 5000, 1: 3700})
    power_source_current = Res(8, {0: 120, 1: 80})
    battery_level = Res(9, 100)
    memory_free = Res(10, 4096)
    error_code = Res(11, {0: NO_ERROR})
    current_time = Res[datetime.datetime](13)
    utc_offset = Res(14, "+00:00")
    timezone = Res(15, "Etc/UTC")
    supported_binding = Res(16, "UQ")
    device_type = Res(17, "simulator")
    hardware_version = Res(18, "1.0")
    software_version = Res(19, "lwm2m-py")
    battery_status = Res(20, 0)  # normal
    memory_total = Res(21, 8192)

    def __init__(self, client: ClientHost, instance_id: int = 0) -> None:
        super().__init__(instance_id)
        self.client = client
        self.clock_offset_s = 0.0
        self._values[0] = client.config.manufacturer
        self._values[1] = client.config.model_number
        self._values[2] = client.config.serial_number or client.config.endpoint

    @current_time.reader
    def _now(self) -> datetime.datetime:
        return datetime.datetime.fromtimestamp(time.time() + self.clock_offset_s, datetime.UTC)

    @current_time.writer
    def _set_now(self, value: datetime.datetime) -> None:
        self.clock_offset_s = value.timestamp() - time.time()

    @execute(4)
    def reboot(self, args: str) -> None:
        self.client.after_response(self.client.reboot)

    @execute(5)
    def factory_reset(self, args: str) -> None:
        self.client.after_response(self.client.factory_reset)

    @execute(12)
    def reset_error_code(self, args: str) -> None:
        self.set(11, {0: NO_ERROR})

    # -- application helpers -----------------------------------------------------------

    def add_error(self, code: int) -> None:
        """Report an error (replaces "no error")."""
        current = self.get(11)
        codes = [v for v in current.values() if v != NO_ERROR] if isinstance(current, dict) else []
        if code not in codes:
            codes.append(code)
        self.set(11, dict(enumerate(codes or [NO_ERROR])))

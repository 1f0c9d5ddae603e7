"""Location object (6): :meth:`Location.move` updates position and timestamp together."""

from __future__ import annotations

import datetime

from lwm2m.client.instance import Instance, Res


class Location(Instance, object_id=6):
    __slots__ = ()

    latitude = Res(0, 48.8584)
    longitude = Res(1, 2.2945)
    altitude = Res(2, 35.0)
    radius = Res(3, 10.0)
    speed = Res(6, 0.0)

    def __init__(self, instance_id: int = 0) -> None:
        super().__init__(instance_id)
        self._values[5] = datetime.datetime.now(datetime.UTC).replace(microsecond=0)

    def move(
        self,
        latitude: float,
        longitude: float,
        altitude: float | None = None,
        speed: float | None = None,
    ) -> None:
        if not -90.0 <= latitude <= 90.0 or not -180.0 <= longitude <= 180.0:
            raise ValueError(f"position {latitude}, {longitude} out of range")
        self.set(0, latitude)
        self.set(1, longitude)
        if altitude is not None:
            self.set(2, altitude)
        if speed is not None:
            self.set(6, speed)
        self.set(5, datetime.datetime.now(datetime.UTC).replace(microsecond=0))

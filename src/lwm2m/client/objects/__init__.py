"""The core objects with real behaviour, installed on every :class:`LwM2MClient`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lwm2m.client.instance import Instance
from lwm2m.client.objects.connectivity import ConnectivityMonitoring, ConnectivityStatistics
from lwm2m.client.objects.device import Device
from lwm2m.client.objects.firmware import FirmwareInstaller, FirmwareUpdate
from lwm2m.client.objects.location import Location
from lwm2m.client.objects.server import ServerInstance

if TYPE_CHECKING:
    from lwm2m.client.objects.host import ClientHost

__all__ = [
    "ConnectivityMonitoring",
    "ConnectivityStatistics",
    "Device",
    "FirmwareInstaller",
    "FirmwareUpdate",
    "Location",
    "ServerInstance",
    "install_core_objects",
]


def install_core_objects(client: ClientHost) -> None:
    """Objects 0-7 with one instance each of 3-7 (0, 1, 2 are filled by configuration)."""
    store = client.store
    store.add_object(0, Instance)
    store.add_object(1, lambda iid: ServerInstance(iid, client))
    store.add_object(2, Instance)
    store.add_instance(Device(client))
    store.add_instance(ConnectivityMonitoring(client))
    store.add_instance(FirmwareUpdate(client))
    store.add_instance(Location())
    store.add_instance(ConnectivityStatistics(client))

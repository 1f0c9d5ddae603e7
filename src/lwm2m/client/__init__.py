"""The LwM2M client role: a device framework, the `lwm2m client` command and a simulator.

Public API::

    from lwm2m.client import LwM2MClient, ClientConfig, FactoryAccount, Instance, Res, execute
"""

from lwm2m.client.client import ClientStats, LwM2MClient
from lwm2m.client.config import ClientConfig, ClientConfigError, FactoryAccount
from lwm2m.client.instance import Instance, Res, execute
from lwm2m.client.store import ClientObject, ObjectStore, ServerAccount

__all__ = [
    "ClientConfig",
    "ClientConfigError",
    "ClientObject",
    "ClientStats",
    "FactoryAccount",
    "Instance",
    "LwM2MClient",
    "ObjectStore",
    "Res",
    "ServerAccount",
    "execute",
]

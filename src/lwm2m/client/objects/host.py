"""What the core objects use of the client that carries them.

The objects act on their client (reboot it, resolve a download URI, send an
Update, count its traffic), and :class:`~lwm2m.client.client.LwM2MClient`
installs them. Typing the objects against this Protocol instead of the class
keeps the import one way (``client.client`` -> ``client.objects``) and says
in one place how much of the client an object may touch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from lwm2m.client.config import ClientConfig
from lwm2m.client.instance import Instance
from lwm2m.client.registration import ServerSession
from lwm2m.client.store import ObjectStore, ServerAccount
from lwm2m.coap.endpoint import Endpoint
from lwm2m.coap.peer import Address
from lwm2m.coap.tcp_transport import TcpEndpoint
from lwm2m.coap.traffic import TrafficCounter


class ClientCounters(Protocol):
    """The client's counters as Connectivity Statistics reads them."""

    @property
    def traffic(self) -> TrafficCounter: ...


class ClientHost(Protocol):
    """The members of :class:`~lwm2m.client.client.LwM2MClient` the core objects use."""

    @property
    def config(self) -> ClientConfig: ...

    @property
    def store(self) -> ObjectStore: ...

    @property
    def stats(self) -> ClientCounters: ...

    @property
    def sessions(self) -> Mapping[int, ServerSession]: ...

    @property
    def local_address(self) -> Address | None: ...

    @property
    def endpoint_name(self) -> str: ...

    def instance(self, object_id: int, instance_id: int = 0) -> Instance | None: ...

    async def resolve(self, uri: str) -> Address: ...

    async def plain_endpoint(self, address: Address) -> Endpoint: ...

    async def endpoint_for(
        self, account: ServerAccount, address: Address | None = None
    ) -> Endpoint | TcpEndpoint: ...

    def after_response(self, action: Callable[[], Awaitable[None]]) -> None: ...

    async def reboot(self) -> None: ...

    async def factory_reset(self) -> None: ...

    def trigger_update(self, short_server_id: int | None = None) -> None: ...

    def start_bootstrap(self) -> None: ...

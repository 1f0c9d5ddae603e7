"""LwM2M Server object (1): the executes that act on the registration."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lwm2m.client.instance import Instance, execute

if TYPE_CHECKING:
    from lwm2m.client.objects.host import ClientHost

DEFAULT_DISABLE_TIMEOUT_S = 86400


class ServerInstance(Instance, object_id=1):
    __slots__ = ("client",)

    def __init__(self, instance_id: int, client: ClientHost) -> None:
        super().__init__(instance_id)
        self.client = client

    def _ssid(self) -> int | None:
        ssid = self.get(0)
        return ssid if isinstance(ssid, int) else None

    @execute(4)
    def disable(self, args: str) -> None:
        """De-register and stay away for the Disable Timeout (resource 5, default 1 day)."""
        ssid = self._ssid()
        session = self.client.sessions.get(ssid) if ssid is not None else None
        if session is None:
            return
        timeout = self.get(5)
        seconds = (
            timeout if isinstance(timeout, int) and timeout >= 0 else DEFAULT_DISABLE_TIMEOUT_S
        )

        async def run() -> None:
            await session.deregister()
            session.disable(float(seconds))

        self.client.after_response(run)

    @execute(8)
    def registration_update_trigger(self, args: str) -> None:
        ssid = self._ssid()
        if ssid is not None:
            self.client.trigger_update(ssid)

    @execute(9)
    def bootstrap_request_trigger(self, args: str) -> None:
        self.client.start_bootstrap()

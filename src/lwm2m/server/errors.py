"""Exceptions of the server's device-management API.

A 4.xx/5.xx answer from the client is :class:`lwm2m.protocol.errors.RemoteError`
(re-exported here) carrying the code; these are the other ways an operation
can fail.
"""

from __future__ import annotations

from lwm2m.protocol.errors import RemoteError

__all__ = [
    "ClientNotFound",
    "ClientSleeping",
    "ClientTimeout",
    "InvalidResponse",
    "QueueFull",
    "RemoteError",
    "ServerError",
]


class ServerError(Exception):
    """Base of the server API's own errors."""


class ClientNotFound(ServerError, LookupError):
    """No live registration for that endpoint name."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(f"no registered client {endpoint!r}")
        self.endpoint = endpoint


class ClientTimeout(ServerError, TimeoutError):
    """The client did not answer in time (or stayed asleep past the timeout)."""


class ClientSleeping(ServerError):
    """Queue-mode client asleep and the caller asked not to wait (``timeout=0``)."""


class QueueFull(ServerError):
    """Too many requests already wait for this sleeping queue-mode client."""


class InvalidResponse(ServerError, ValueError):
    """The client answered with something we cannot decode (bad payload, odd code)."""


class ObservationNotFound(ServerError, LookupError):
    """No such observation on that client."""


__all__ += ["ObservationNotFound"]

"""Typed LwM2M errors carrying their CoAP response code.

Local faults (raised by a handler, mapped to a response in one place) are
:class:`LwM2MError` subclasses; a fault reported by the peer comes back as
:class:`RemoteError` with the code the peer sent, so callers can tell whose
fault it was.
"""

from __future__ import annotations

from typing import ClassVar

from lwm2m.coap.codes import Code


class LwM2MError(Exception):
    """A failure that maps to a CoAP response code."""

    code: ClassVar[Code] = Code.INTERNAL_SERVER_ERROR

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.code.name.replace("_", " ").lower())
        self.message = message or self.code.name.replace("_", " ").lower()


class BadRequest(LwM2MError):
    code = Code.BAD_REQUEST


class Unauthorized(LwM2MError):
    code = Code.UNAUTHORIZED


class BadOption(LwM2MError):
    code = Code.BAD_OPTION


class Forbidden(LwM2MError):
    code = Code.FORBIDDEN


class NotFound(LwM2MError):
    code = Code.NOT_FOUND


class MethodNotAllowed(LwM2MError):
    code = Code.METHOD_NOT_ALLOWED


class NotAcceptable(LwM2MError):
    code = Code.NOT_ACCEPTABLE


class Conflict(LwM2MError):
    code = Code.CONFLICT


class PreconditionFailed(LwM2MError):
    code = Code.PRECONDITION_FAILED


class UnsupportedContentFormat(LwM2MError):
    code = Code.UNSUPPORTED_CONTENT_FORMAT


class InternalServerError(LwM2MError):
    code = Code.INTERNAL_SERVER_ERROR


class ServiceUnavailable(LwM2MError):
    code = Code.SERVICE_UNAVAILABLE


class RemoteError(Exception):
    """The peer answered with an error code (4.xx/5.xx)."""

    def __init__(self, code: Code | int, message: str = "") -> None:
        self.code = code
        self.message = message
        name = code.dotted if isinstance(code, Code) else f"{code >> 5}.{code & 31:02d}"
        super().__init__(f"{name} {message}".strip())

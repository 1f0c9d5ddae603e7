"""One place that turns failures into HTTP answers: JSON ``{"message": ...}``.

======================  =====  ==========================================
failure                 HTTP   why
======================  =====  ==========================================
UnknownClient           404    no such registration / configuration
InvalidInput, bad JSON  400    the caller's fault, nothing was sent
DeviceError             502    the device answered 4.xx/5.xx or failed
DeviceTimeout           504    no answer in time (or never woke up)
======================  =====  ==========================================
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

from lwm2m.coap.codes import Code
from lwm2m.web.backend import (
    BackendError,
    DeviceError,
    DeviceTimeout,
    InvalidInput,
    UnknownClient,
)
from lwm2m.web.schemas import ErrorBody


class ApiError(Exception):
    """Raised by route code to answer with an error status and message."""

    def __init__(self, status: int, message: str, code: Code | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def error_response(status: int, message: str, code: Code | None = None) -> JSONResponse:
    """The one JSON error shape of the API (``message``, plus the CoAP code when a device answered)."""
    body = ErrorBody(
        message=message,
        status=code.name if code is not None else None,
        code=code.dotted if code is not None else None,
    )
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status)


def status_of(exc: BackendError) -> int:
    """The HTTP status of a backend failure: the single place this mapping lives."""
    if isinstance(exc, UnknownClient):
        return 404
    if isinstance(exc, InvalidInput):
        return 400
    if isinstance(exc, DeviceTimeout):
        return 504
    return 502


#: documented on every route that talks to a device
DEVICE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Bad path, parameter or body."},
    401: {"model": ErrorBody, "description": "Missing or wrong bearer token."},
    404: {"model": ErrorBody, "description": "No registered client with this endpoint."},
    502: {"model": ErrorBody, "description": "The device answered with an error code."},
    504: {"model": ErrorBody, "description": "The device did not answer in time."},
}

#: documented on routes that only touch local stores
STORE_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Bad parameter or body."},
    401: {"model": ErrorBody, "description": "Missing or wrong bearer token."},
    404: {"model": ErrorBody, "description": "Not found."},
}


def install_error_handlers(app: FastAPI) -> None:
    """Route every error (ours, validation, Starlette's) to :func:`error_response`, so clients parse one shape."""

    async def on_api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.status, exc.message, exc.code)

    async def on_backend_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, BackendError)
        code = exc.code if isinstance(exc, DeviceError) else None
        return error_response(status_of(exc), exc.message, code)

    async def on_validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "request"
            problems.append(f"{where}: {err.get('msg', 'invalid')}")
        return error_response(400, "; ".join(problems) or "invalid request")

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        response = error_response(exc.status_code, str(exc.detail))
        if exc.headers:
            response.headers.update(exc.headers)
        if exc.status_code == 405:
            # Starlette names only the first matching route's methods; list them all.
            response.headers["Allow"] = ", ".join(allowed_methods(request))
        return response

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(BackendError, on_backend_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route accepts for this request's path (for ``Allow``)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if not isinstance(route, Route | APIRoute):
            continue
        match, _ = route.matches({**request.scope, "method": "GET", "type": "http"})
        if match is not Match.NONE and route.methods:
            methods |= set(route.methods)
    return sorted(methods)

"""Firmware images over HTTP: ``/api/firmware`` (manage) and ``/fw/{id}`` (devices pull).

Uploads come as ``multipart/form-data`` (field ``file``, plus ``name``,
``version``, ``target`` as a JSON object, ``sha256``) or as the raw image body
with ``?name=&version=&sha256=&target=``. Multipart bodies are parsed with the
standard library's MIME parser, so the API needs no extra package. The upload
is read up to the repository's size limit and refused with 413 beyond it.

``/fw/{id}`` needs no bearer token: devices fetching a Package URI have none.
An image id is 16 random hex digits, unguessable, and images are not listed
there. It serves Range requests (one range; 206, or 416 with
``Content-Range: bytes */size`` when the range is malformed or past the end),
HEAD, ``ETag`` (the first 8 bytes of the SHA-256, as on CoAP), ``If-None-Match``
and ``If-Range``; the bytes stream from the file in 64 KiB reads.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from lwm2m.server.firmware import FirmwareError, FirmwareImage, FirmwareRepository
from lwm2m.web.errors import STORE_ERRORS, ApiError
from lwm2m.web.schemas import ErrorBody

CHUNK_BYTES = 64 * 1024
#: room for multipart boundaries and form fields on top of the image size limit
MULTIPART_SLACK_BYTES = 64 * 1024


class FirmwareView(BaseModel):
    """A stored firmware image."""

    id: str = Field(description="16 hex digits; the image's URI is /fw/{id} (CoAP and HTTP).")
    name: str
    version: str = Field(description="What the device should report in /3/0/3 once updated.")
    size: int = Field(description="Bytes.")
    sha256: str = Field(description="Lower-case hex SHA-256 of the stored bytes.")
    created: float = Field(description="Upload time, seconds since the epoch.")
    target: dict[str, str] = Field(
        default_factory=dict,
        description="Resource path -> value a device must report (e.g. /3/0/1 model); "
        "empty: any device.",
    )


_UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "version"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "name": {"type": "string", "description": "default: the file name"},
                        "version": {"type": "string"},
                        "target": {
                            "type": "string",
                            "description": 'JSON object, e.g. {"/3/0/1": "Model X"}',
                        },
                        "sha256": {
                            "type": "string",
                            "description": "expected hex SHA-256; a mismatch is refused",
                        },
                    },
                }
            },
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
            },
        },
    }
}

_UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    **STORE_ERRORS,
    413: {"model": ErrorBody, "description": "The image is larger than the server accepts."},
}


def build_firmware_router(repository: FirmwareRepository) -> APIRouter:
    """``/api/firmware``: upload, list, show, delete (behind the API token)."""
    router = APIRouter(prefix="/api/firmware", tags=["firmware"])

    @router.get("", response_model=list[FirmwareView], summary="List firmware images")
    async def list_images() -> list[dict[str, object]]:
        return [image.to_json() for image in await repository.list()]

    @router.post(
        "",
        response_model=FirmwareView,
        status_code=201,
        summary="Upload a firmware image",
        description="multipart/form-data (file, name, version, target, sha256) or the raw "
        "image with ?name=&version=; the query parameters also apply to a multipart upload.",
        openapi_extra=_UPLOAD_BODY,
        responses=_UPLOAD_ERRORS,
    )
    async def upload(
        request: Request,
        name: str | None = Query(default=None, max_length=200),
        version: str | None = Query(default=None, max_length=200),
        sha256: str | None = Query(default=None, max_length=64),
        target: str | None = Query(default=None, max_length=4096, description="JSON object"),
    ) -> dict[str, object]:
        body = await _read_limited(request, repository.max_image_bytes)
        fields: dict[str, str] = {}
        content_type = request.headers.get("content-type", "")
        if content_type.lower().startswith("multipart/"):
            data, filename, fields = _parse_multipart(content_type, body)
            if name is None and not fields.get("name") and filename:
                fields["name"] = filename
        else:
            data = body
        given = {"name": name, "version": version, "sha256": sha256, "target": target}
        fields.update({k: v for k, v in given.items() if v is not None})
        if not data:
            raise ApiError(
                400, "the image is empty (send it as the body or the multipart field file)"
            )
        try:
            image = await repository.add(
                data,
                name=fields.get("name", ""),
                version=fields.get("version", ""),
                target=_parse_target(fields.get("target")),
                expected_sha256=fields.get("sha256") or None,
            )
        except FirmwareError as exc:
            raise ApiError(exc.status, str(exc)) from None
        return image.to_json()

    @router.get(
        "/{image_id}",
        response_model=FirmwareView,
        summary="Show a firmware image",
        responses=STORE_ERRORS,
    )
    async def show(image_id: str) -> dict[str, object]:
        image = await repository.get(image_id)
        if image is None:
            raise ApiError(404, f"no firmware image {image_id!r}")
        return image.to_json()

    @router.delete(
        "/{image_id}",
        status_code=204,
        summary="Delete a firmware image",
        responses={
            **STORE_ERRORS,
            409: {"model": ErrorBody, "description": "A running campaign uses the image."},
        },
    )
    async def delete(image_id: str) -> Response:
        try:
            if not await repository.delete(image_id):
                raise ApiError(404, f"no firmware image {image_id!r}")
        except FirmwareError as exc:
            raise ApiError(exc.status, str(exc)) from None
        return Response(status_code=204)

    return router


_DOWNLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {"schema": {"format": "binary"}}}},
    206: {"description": "The requested byte range."},
    304: {"description": "If-None-Match matched the ETag."},
    404: {"model": ErrorBody, "description": "No such image."},
    416: {"description": "Malformed range, or one past the end of the image."},
}


def build_download_router(repository: FirmwareRepository) -> APIRouter:
    """``/fw/{id}``: the image bytes for devices (no token, see the module docstring)."""
    router = APIRouter(tags=["firmware"])

    async def download(image_id: str, request: Request) -> Response:
        image = await _image(repository, image_id)
        etag = f'"{image.sha256[:16]}"'
        headers = {"ETag": etag, "Accept-Ranges": "bytes"}
        if etag in _tags(request.headers.get("if-none-match")):
            return Response(status_code=304, headers=headers)
        start, end = 0, image.size
        status = 200
        wanted = request.headers.get("range")
        if_range = request.headers.get("if-range")
        if wanted is not None and (if_range is None or if_range.strip() == etag):
            parsed = _parse_range(wanted, image.size)
            if parsed is _UNSATISFIABLE:
                return Response(
                    status_code=416, headers={**headers, "Content-Range": f"bytes */{image.size}"}
                )
            if isinstance(parsed, tuple):
                start, end = parsed
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{image.size}"
        headers["Content-Length"] = str(end - start)
        if request.method == "HEAD":
            return Response(
                status_code=status, headers=headers, media_type="application/octet-stream"
            )
        return StreamingResponse(
            _stream(repository, image.id, start, end),
            status_code=status,
            headers=headers,
            media_type="application/octet-stream",
        )

    for method, summary in (
        ("GET", "Download a firmware image (devices pull it here)"),
        ("HEAD", "Size and ETag of a firmware image"),
    ):
        router.add_api_route(
            "/fw/{image_id}",
            download,
            methods=[method],
            name=f"download_firmware_{method.lower()}",
            summary=summary,
            response_class=Response,
            responses=_DOWNLOAD_RESPONSES,
        )
    return router


# Private

_UNSATISFIABLE = object()


async def _image(repository: FirmwareRepository, image_id: str) -> FirmwareImage:
    """The image, ready to read on this node (shared images are fetched from the store)."""
    try:
        image = await repository.fetch(image_id)
    except FirmwareError as exc:
        raise ApiError(503, str(exc)) from None
    if image is None:
        raise ApiError(404, f"no firmware image {image_id!r}")
    return image


async def _read_limited(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it exceeds the image limit plus form overhead."""
    cap = limit + MULTIPART_SLACK_BYTES
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise ApiError(413, f"the upload is larger than the {limit} bytes allowed for an image")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > cap:
            raise ApiError(413, f"the upload is larger than the {limit} bytes allowed for an image")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_multipart(content_type: str, body: bytes) -> tuple[bytes, str | None, dict[str, str]]:
    """(file bytes, file name, other text fields) of a multipart/form-data body."""
    message = BytesParser(policy=policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not isinstance(message, EmailMessage) or not message.is_multipart():
        raise ApiError(400, "malformed multipart body")
    data = b""
    filename: str | None = None
    fields: dict[str, str] = {}
    seen: set[str] = set()
    for part in message.iter_parts():
        field = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(field, str) or not isinstance(payload, bytes):
            continue
        if field in seen:
            # two versions (or two images) in one upload: taking either would store
            # something the uploader may not have meant
            raise ApiError(400, f"form field {field!r} is given more than once")
        seen.add(field)
        if field == "file":
            data = payload
            filename = part.get_filename()
        else:
            try:
                fields[field] = payload.decode("utf-8")
            except UnicodeDecodeError:
                raise ApiError(400, f"form field {field!r} is not UTF-8") from None
    return data, filename, fields


def _parse_target(text: str | None) -> dict[str, str] | None:
    if text is None or not text.strip():
        return None
    try:
        target = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise ApiError(400, 'target must be a JSON object like {"/3/0/1": "Model X"}') from None
    if not isinstance(target, dict) or not all(isinstance(v, str) for v in target.values()):
        raise ApiError(400, 'target must be a JSON object of strings like {"/3/0/1": "Model X"}')
    return target


def _tags(header: str | None) -> list[str]:
    if header is None:
        return []
    return [t.strip().removeprefix("W/") for t in header.split(",")]


def _parse_range(header: str, size: int) -> tuple[int, int] | object | None:
    """(start, end exclusive) of a single ``bytes=`` range; None to ignore the header.

    Other units and multiple ranges are ignored (the whole image is sent, as
    RFC 9110 14.2 allows); a malformed or unsatisfiable byte range answers 416.
    """
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    if "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return _UNSATISFIABLE
    if first == "":
        if last == "" or int(last) == 0:
            return _UNSATISFIABLE
        return max(0, size - int(last)), size
    start = int(first)
    end = size if last == "" else min(size, int(last) + 1)
    if start >= size or end <= start:
        return _UNSATISFIABLE
    return start, end


async def _stream(
    repository: FirmwareRepository, image_id: str, start: int, end: int
) -> AsyncIterator[bytes]:
    offset = start
    while offset < end:
        chunk = await asyncio.to_thread(
            repository.read, image_id, offset, min(CHUNK_BYTES, end - offset)
        )
        if not chunk:
            return
        offset += len(chunk)
        yield chunk

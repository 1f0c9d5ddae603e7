"""``/api/firmware`` (upload, list, show, delete) and ``/fw/{id}`` (Range, HEAD, ETag)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path as FsPath

import httpx
import pytest

from lwm2m.server.firmware import FirmwareRepository
from lwm2m.stores.memory import MemoryStores
from lwm2m.web.app import WebServer, build_app

IMAGE = os.urandom(150_000) + b"\r\n--boundary\r\n"  # binary, with CRLF and dashes
LIMIT = 200_000


@pytest.fixture
async def repo(tmp_path: FsPath) -> FirmwareRepository:
    return await FirmwareRepository.open(MemoryStores().documents, tmp_path, max_image_bytes=LIMIT)


@pytest.fixture
async def http(repo: FirmwareRepository) -> AsyncIterator[httpx.AsyncClient]:
    web = WebServer(build_app(None, None, firmware=repo, api_token="secret"), "127.0.0.1", 0)
    await web.start()
    base = f"http://127.0.0.1:{web.port}"
    headers = {"Authorization": "Bearer secret"}
    async with httpx.AsyncClient(base_url=base, timeout=15, headers=headers) as client:
        yield client
    await web.stop()


async def test_multipart_upload_list_show_delete(
    http: httpx.AsyncClient, repo: FirmwareRepository
) -> None:
    digest = hashlib.sha256(IMAGE).hexdigest()
    response = await http.post(
        "/api/firmware",
        files={"file": ("app-2.0.bin", IMAGE)},
        data={"version": "2.0", "target": json.dumps({"/3/0/1": "Model X"}), "sha256": digest},
    )
    assert response.status_code == 201, response.text
    image = response.json()
    assert image["name"] == "app-2.0.bin" and image["version"] == "2.0"
    assert image["size"] == len(IMAGE) and image["sha256"] == digest
    assert image["target"] == {"/3/0/1": "Model X"}
    stored = await repo.get(image["id"])
    assert stored is not None and repo.read(stored.id, 0, len(IMAGE)) == IMAGE
    assert (await http.get("/api/firmware")).json() == [image]
    assert (await http.get(f"/api/firmware/{image['id']}")).json() == image
    assert (await http.delete(f"/api/firmware/{image['id']}")).status_code == 204
    assert (await http.get(f"/api/firmware/{image['id']}")).status_code == 404
    assert (await http.delete(f"/api/firmware/{image['id']}")).status_code == 404


async def test_raw_upload(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/api/firmware",
        params={"name": "fw", "version": "1.1"},
        content=IMAGE,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["sha256"] == hashlib.sha256(IMAGE).hexdigest()


@pytest.mark.parametrize(
    ("params", "body", "status", "message"),
    [
        ({"name": "fw"}, IMAGE, 400, "version is required"),
        ({"version": "1"}, IMAGE, 400, "name is required"),
        ({"name": "fw", "version": "1"}, b"", 400, "empty"),
        ({"name": "fw", "version": "1", "sha256": "abc"}, IMAGE, 400, "64 hexadecimal"),
        ({"name": "fw", "version": "1", "sha256": "0" * 64}, IMAGE, 400, "sha256 mismatch"),
        ({"name": "fw", "version": "1", "target": "[1]"}, IMAGE, 400, "target"),
        ({"name": "fw", "version": "1", "target": '{"/3": "x"}'}, IMAGE, 400, "resource path"),
        ({"name": "fw", "version": "1"}, b"x" * (LIMIT + 1), 413, "allowed"),
        ({"name": "fw", "version": "1"}, b"x" * (LIMIT + 100_000), 413, "allowed"),
    ],
)
async def test_upload_errors(
    http: httpx.AsyncClient,
    repo: FirmwareRepository,
    params: dict[str, str],
    body: bytes,
    status: int,
    message: str,
) -> None:
    response = await http.post("/api/firmware", params=params, content=body)
    assert response.status_code == status, response.text
    assert message in response.json()["message"]
    assert await repo.list() == []


@pytest.mark.parametrize(
    ("files", "field"),
    [
        (
            [("file", ("a.bin", IMAGE)), ("version", (None, "1")), ("version", (None, "2"))],
            "version",
        ),
        (
            [("file", ("a.bin", IMAGE)), ("file", ("b.bin", b"other")), ("version", (None, "1"))],
            "file",
        ),
    ],
)
async def test_a_repeated_form_field_is_refused(
    http: httpx.AsyncClient,
    repo: FirmwareRepository,
    files: list[tuple[str, tuple[str | None, bytes | str]]],
    field: str,
) -> None:
    response = await http.post("/api/firmware", files=files)
    assert response.status_code == 400, response.text
    assert response.json()["message"] == f"form field {field!r} is given more than once"
    assert await repo.list() == []


async def test_api_needs_the_token_but_download_does_not(
    http: httpx.AsyncClient, repo: FirmwareRepository
) -> None:
    image = await repo.add(IMAGE, name="fw", version="1")
    async with httpx.AsyncClient(base_url=str(http.base_url), timeout=15) as anonymous:
        assert (await anonymous.get("/api/firmware")).status_code == 401
        response = await anonymous.get(f"/fw/{image.id}")
    assert response.status_code == 200
    assert response.content == IMAGE


async def test_download_range_head_etag(http: httpx.AsyncClient, repo: FirmwareRepository) -> None:
    image = await repo.add(IMAGE, name="fw", version="1")
    url = f"/fw/{image.id}"
    etag = f'"{image.sha256[:16]}"'
    full = await http.get(url)
    assert full.status_code == 200 and full.content == IMAGE
    assert full.headers["etag"] == etag
    assert full.headers["content-length"] == str(len(IMAGE))
    assert full.headers["accept-ranges"] == "bytes"
    head = await http.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(IMAGE))
    part = await http.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == IMAGE[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(IMAGE)}"
    tail = await http.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == IMAGE[-10:]
    rest = await http.get(url, headers={"Range": f"bytes={len(IMAGE) - 5}-"})
    assert rest.status_code == 206 and rest.content == IMAGE[-5:]
    for bad in (f"bytes={len(IMAGE)}-", "bytes=abc", "bytes=9-3", "bytes=-0"):
        refused = await http.get(url, headers={"Range": bad})
        assert refused.status_code == 416, bad
        assert refused.headers["content-range"] == f"bytes */{len(IMAGE)}"
    stale = await http.get(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == IMAGE
    cached = await http.get(url, headers={"If-None-Match": etag})
    assert cached.status_code == 304
    assert (await http.get("/fw/0123456789abcdef")).status_code == 404


async def test_openapi_documents_firmware(http: httpx.AsyncClient) -> None:
    paths = (await http.get("/openapi.json")).json()["paths"]
    assert set(paths["/api/firmware"]) == {"get", "post"}
    assert "413" in paths["/api/firmware"]["post"]["responses"]
    assert set(paths["/api/firmware/{image_id}"]) == {"get", "delete"}
    assert "multipart/form-data" in paths["/api/firmware"]["post"]["requestBody"]["content"]
    assert "/fw/{image_id}" in paths

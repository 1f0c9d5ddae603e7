"""Firmware metadata survives a reopen of every persistent store (one codec for all)."""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Any

import pytest

from lwm2m.server.firmware import FirmwareRepository
from lwm2m.stores import open_stores


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_firmware_metadata_survives_reopen(
    backend: str, request: Any, tmp_path: FsPath
) -> None:
    spec = request.getfixturevalue("redis_url") if backend == "redis" else backend
    stores = await open_stores(spec, tmp_path)
    repo = await FirmwareRepository.open(stores.documents, tmp_path)
    image = await repo.add(b"\x00\x01" * 3000, name="fw", version="3.1", target={"/3/0/1": "M"})
    await stores.close()
    stores = await open_stores(spec, tmp_path)
    try:
        repo = await FirmwareRepository.open(stores.documents, tmp_path)
        assert await repo.list() == [image]
        assert repo.read(image.id, 2, 4) == b"\x00\x01\x00\x01"
        assert await repo.verify(image.id)
    finally:
        await stores.close()

"""The firmware repository: files written atomically, metadata in every store kind."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path as FsPath

import pytest

from lwm2m.server.firmware import (
    FirmwareError,
    FirmwareImage,
    FirmwareRepository,
    ImageInUse,
    ImageNotFound,
    ImageTooLarge,
)
from lwm2m.server.firmware.repository import NAMESPACE
from lwm2m.stores import Stores, open_stores
from lwm2m.stores.memory import MemoryStores

IMAGE = bytes(range(256)) * 40 + b"tail"


@pytest.fixture
async def repo(tmp_path: FsPath) -> AsyncIterator[FirmwareRepository]:
    yield await FirmwareRepository.open(MemoryStores().documents, tmp_path, max_image_bytes=20_000)


async def test_add_get_read_round_trip(repo: FirmwareRepository, tmp_path: FsPath) -> None:
    image = await repo.add(IMAGE, name="fw", version="2.0", target={"/3/0/1": "Model X"})
    assert image.size == len(IMAGE)
    assert image.sha256 == hashlib.sha256(IMAGE).hexdigest()
    assert len(image.id) == 16 and int(image.id, 16) >= 0
    assert await repo.get(image.id) == image
    assert await repo.list() == [image]
    assert repo.read(image.id, 0, 10) == IMAGE[:10]
    assert repo.read(image.id, len(IMAGE) - 4, 100) == b"tail"
    assert (tmp_path / "firmware" / f"{image.id}.bin").read_bytes() == IMAGE
    assert await repo.verify(image.id)
    assert image.to_json()["target"] == {"/3/0/1": "Model X"}
    assert FirmwareImage.from_json(image.to_json()) == image


async def test_refusals_write_nothing(repo: FirmwareRepository, tmp_path: FsPath) -> None:
    with pytest.raises(FirmwareError, match="sha256 mismatch"):
        await repo.add(IMAGE, name="fw", version="1", expected_sha256="ab" * 32)
    with pytest.raises(FirmwareError, match="64 hexadecimal"):
        await repo.add(IMAGE, name="fw", version="1", expected_sha256="xyz")
    with pytest.raises(FirmwareError, match="empty"):
        await repo.add(b"", name="fw", version="1")
    with pytest.raises(ImageTooLarge):
        await repo.add(b"x" * 20_001, name="fw", version="1")
    with pytest.raises(FirmwareError, match="version is required"):
        await repo.add(IMAGE, name="fw", version=" ")
    with pytest.raises(FirmwareError, match="name is required"):
        await repo.add(IMAGE, name="", version="1")
    with pytest.raises(FirmwareError, match="target"):
        await repo.add(IMAGE, name="fw", version="1", target={"/3": "x"})
    assert await repo.list() == []
    assert list((tmp_path / "firmware").glob("*")) == []
    # The right hash, in upper case, is accepted.
    digest = hashlib.sha256(IMAGE).hexdigest()
    image = await repo.add(IMAGE, name="fw", version="1", expected_sha256=digest.upper())
    assert image.sha256 == digest


async def test_delete_and_in_use(repo: FirmwareRepository, tmp_path: FsPath) -> None:
    image = await repo.add(IMAGE, name="fw", version="1")
    repo.in_use = lambda image_id: image_id == image.id
    with pytest.raises(ImageInUse):
        await repo.delete(image.id)
    repo.in_use = None
    assert await repo.delete(image.id)
    assert not await repo.delete(image.id)
    assert await repo.get(image.id) is None
    assert not (tmp_path / "firmware" / f"{image.id}.bin").exists()
    with pytest.raises(ImageNotFound):
        repo.read(image.id, 0, 1)


async def test_verify_detects_a_changed_file(repo: FirmwareRepository, tmp_path: FsPath) -> None:
    image = await repo.add(IMAGE, name="fw", version="1")
    path = tmp_path / "firmware" / f"{image.id}.bin"
    path.write_bytes(b"X" + IMAGE[1:])
    assert not await repo.verify(image.id)


def test_matches_target_filter() -> None:
    repo = FirmwareRepository(MemoryStores().documents, "/nonexistent")
    image = FirmwareImage("0" * 16, "fw", "1", 1, "0" * 64, 0.0, {"/3/0/1": "Model X"})
    assert repo.matches(image, {"/3/0/1": "Model X", "/3/0/0": "ACME"})
    assert not repo.matches(image, {"/3/0/1": "Model Y"})
    assert not repo.matches(image, {})
    anyone = FirmwareImage("1" * 16, "fw", "1", 1, "0" * 64, 0.0, {})
    assert repo.matches(anyone, {})


async def _reopen(spec: str, data_dir: FsPath) -> tuple[Stores, FirmwareRepository]:
    stores = await open_stores(spec, data_dir)
    return stores, await FirmwareRepository.open(stores.documents, data_dir)


async def test_sqlite_restart_keeps_images(tmp_path: FsPath) -> None:
    stores, repo = await _reopen("sqlite", tmp_path)
    image = await repo.add(IMAGE, name="fw", version="3.1", target={"/3/0/1": "M"})
    await stores.close()
    stores, repo = await _reopen("sqlite", tmp_path)
    try:
        assert await repo.list() == [image]
        assert repo.read(image.id, 100, 5) == IMAGE[100:105]
    finally:
        await stores.close()


async def test_crash_leftovers_are_swept(tmp_path: FsPath) -> None:
    """A crash after the rename but before the metadata, or mid-write: no image appears."""
    stores, repo = await _reopen("sqlite", tmp_path)
    kept = await repo.add(IMAGE, name="fw", version="1")
    await stores.close()
    directory = tmp_path / "firmware"
    (directory / "0123456789abcdef.bin").write_bytes(IMAGE)  # file, no metadata
    (directory / ".fedcba9876543210.tmp").write_bytes(IMAGE[:100])  # half written
    stores, repo = await _reopen("sqlite", tmp_path)
    try:
        assert [i.id for i in await repo.list()] == [kept.id]
        assert sorted(p.name for p in directory.iterdir()) == [f"{kept.id}.bin"]
    finally:
        await stores.close()


async def test_metadata_without_file_is_not_served(tmp_path: FsPath) -> None:
    stores = MemoryStores()
    repo = await FirmwareRepository.open(stores.documents, tmp_path)
    image = await repo.add(IMAGE, name="fw", version="1")
    os.unlink(tmp_path / "firmware" / f"{image.id}.bin")
    again = await FirmwareRepository.open(stores.documents, tmp_path)
    assert await again.list() == []
    assert await stores.documents.get(NAMESPACE, image.id) is not None


async def test_write_is_atomic(tmp_path: FsPath, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure between writing and renaming leaves neither a file nor metadata."""
    repo = await FirmwareRepository.open(MemoryStores().documents, tmp_path)

    def failing_replace(src: object, dst: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk gone"):
        await repo.add(IMAGE, name="fw", version="1")
    monkeypatch.undo()
    assert await repo.list() == []
    assert list((tmp_path / "firmware").iterdir()) == []

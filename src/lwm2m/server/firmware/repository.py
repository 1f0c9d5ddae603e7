"""Firmware images: the bytes as files under the data directory, the metadata in the store.

Rules:

1. An image's metadata exists only if its file is complete. ``add`` writes the
   bytes to a temporary file, fsyncs it, renames it to ``<id>.bin``, fsyncs the
   directory, and only then stores the metadata. ``delete`` drops the metadata
   first, then the file. A crash at any point leaves at worst a file without
   metadata, which :meth:`FirmwareRepository.open` removes (with leftover
   temporary files).
2. Metadata goes through the :class:`~lwm2m.stores.base.DocumentStore`
   (namespace ``firmware``) as the JSON of :meth:`FirmwareImage.to_json`, so
   the memory, SQLite and Redis stores keep it alike with one codec.
3. Images are immutable: a new version is a new image with a new id; the id
   (16 random hex digits) is what Package URIs name, so a URI never points
   at different bytes.
4. Reads are synchronous and served from the file (seek + read of one block),
   never by loading the whole image per request.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any, ClassVar

from lwm2m.model.path import Path, PathError
from lwm2m.stores.base import DocumentStore

logger = logging.getLogger(__name__)

NAMESPACE = "firmware"
DIRECTORY = "firmware"
DEFAULT_MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_TEXT_LENGTH = 200

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_ID = re.compile(r"[0-9a-f]{16}")


class FirmwareError(ValueError):
    """Refused input or an unknown image; ``status`` is the HTTP answer the REST API gives."""

    status: ClassVar[int] = 400


class ImageNotFound(FirmwareError):
    status = 404


class ImageTooLarge(FirmwareError):
    status = 413


class ImageInUse(FirmwareError):
    status = 409


@dataclass(frozen=True, slots=True)
class FirmwareImage:
    """One stored image; ``target`` maps resource paths to the value a device must report."""

    id: str
    name: str
    version: str
    size: int
    sha256: str
    created: float
    target: Mapping[str, str] = field(default_factory=dict)

    @property
    def etag(self) -> bytes:
        """The CoAP/HTTP entity tag: the first 8 bytes of the SHA-256."""
        return bytes.fromhex(self.sha256[:16])

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "size": self.size,
            "sha256": self.sha256,
            "created": self.created,
            "target": dict(self.target),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> FirmwareImage:
        try:
            target = doc.get("target") or {}
            image = cls(
                id=str(doc["id"]),
                name=str(doc["name"]),
                version=str(doc["version"]),
                size=int(doc["size"]),
                sha256=str(doc["sha256"]).lower(),
                created=float(doc["created"]),
                target={str(k): str(v) for k, v in dict(target).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FirmwareError(f"not a firmware document: {exc!r}") from None
        if not _ID.fullmatch(image.id) or not _SHA256.fullmatch(image.sha256):
            raise FirmwareError(f"not a firmware document: bad id or sha256 in {image.id!r}")
        return image


def check_sha256(text: str) -> str:
    """The lower-case hex digest, or :class:`FirmwareError` naming what is wrong."""
    text = text.strip()
    if not _SHA256.fullmatch(text):
        raise FirmwareError("sha256 must be 64 hexadecimal digits")
    return text.lower()


def check_target(target: Mapping[str, str] | None) -> dict[str, str]:
    """A target filter with canonical resource paths (``/3/0/1``) and string values."""
    checked: dict[str, str] = {}
    for key, value in (target or {}).items():
        try:
            path = Path.parse(str(key))
        except PathError as exc:
            raise FirmwareError(f"target: {exc}") from None
        if not path.is_resource and not path.is_resource_instance:
            raise FirmwareError(f"target: {key!r} is not a resource path like /3/0/1")
        if not isinstance(value, str):
            raise FirmwareError(f"target: the value of {key} must be a string")
        checked[str(path)] = value
    return checked


def _check_text(what: str, value: str) -> str:
    value = value.strip() if isinstance(value, str) else ""
    if not value:
        raise FirmwareError(f"{what} is required")
    if len(value) > MAX_TEXT_LENGTH or not value.isprintable():
        raise FirmwareError(f"{what} must be printable and at most {MAX_TEXT_LENGTH} characters")
    return value


class FirmwareRepository:
    """Images as files under ``<data_dir>/firmware/``, metadata in the store (survives restarts).

    Build it with ``await FirmwareRepository.open(stores.documents, data_dir)``.
    ``in_use`` may be set to a callable telling whether an image id is used by
    a running campaign; :meth:`delete` then refuses with :class:`ImageInUse`.
    """

    def __init__(
        self,
        documents: DocumentStore,
        directory: str | os.PathLike[str],
        *,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.documents = documents
        self.directory = FsPath(directory)
        self.max_image_bytes = max_image_bytes
        self.clock = clock
        self.in_use: Callable[[str], bool] | None = None
        self._images: dict[str, FirmwareImage] = {}

    @classmethod
    async def open(
        cls,
        documents: DocumentStore,
        data_dir: str | os.PathLike[str],
        *,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> FirmwareRepository:
        """Load the metadata, and drop what a crash may have left (rule 1)."""
        repo = cls(
            documents,
            FsPath(data_dir) / DIRECTORY,
            max_image_bytes=max_image_bytes,
            clock=clock,
        )
        await repo._load()
        return repo

    # ================================================================== queries
    def lookup(self, image_id: str) -> FirmwareImage | None:
        """:meth:`get` without the coroutine, for the per-block CoAP path."""
        return self._images.get(image_id)

    async def get(self, image_id: str) -> FirmwareImage | None:
        return self._images.get(image_id)

    async def list(self) -> builtins.list[FirmwareImage]:
        """Every image, oldest first."""
        return sorted(self._images.values(), key=lambda i: (i.created, i.id))

    def file_path(self, image_id: str) -> FsPath:
        """Where the bytes of ``image_id`` live; :class:`ImageNotFound` if unknown."""
        if image_id not in self._images:
            raise ImageNotFound(f"no firmware image {image_id!r}")
        return self.directory / f"{image_id}.bin"

    def read(self, image_id: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset`` (fewer at the end of the image)."""
        path = self.file_path(image_id)
        if offset < 0 or length < 0:
            raise FirmwareError("offset and length must not be negative")
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read(length)
        except FileNotFoundError:
            raise ImageNotFound(f"the file of firmware image {image_id!r} is missing") from None

    async def verify(self, image_id: str) -> bool:
        """Re-hash the stored file; False when it no longer matches its SHA-256 (or is gone)."""
        image = self._images.get(image_id)
        if image is None:
            raise ImageNotFound(f"no firmware image {image_id!r}")
        try:
            digest, size = await asyncio.to_thread(_hash_file, self.directory / f"{image_id}.bin")
        except OSError:
            return False
        return size == image.size and digest == image.sha256

    def matches(self, image: FirmwareImage, device_values: Mapping[str, str]) -> bool:
        """Whether a device reporting ``device_values`` (path -> value) is a target of ``image``."""
        return all(device_values.get(path) == value for path, value in image.target.items())

    # ================================================================== changes
    async def add(
        self,
        data: bytes,
        *,
        name: str,
        version: str,
        target: Mapping[str, str] | None = None,
        expected_sha256: str | None = None,
    ) -> FirmwareImage:
        """Store an image; refused (nothing written) when empty, too big or not the expected hash."""
        name = _check_text("name", name)
        version = _check_text("version", version)
        checked_target = check_target(target)
        expected = None if expected_sha256 is None else check_sha256(expected_sha256)
        if not data:
            raise FirmwareError("the image is empty")
        if len(data) > self.max_image_bytes:
            raise ImageTooLarge(
                f"the image has {len(data)} bytes, more than the {self.max_image_bytes} allowed"
            )
        image_id = secrets.token_hex(8)
        while image_id in self._images:
            image_id = secrets.token_hex(8)
        digest = await asyncio.to_thread(self._write, image_id, bytes(data), expected)
        image = FirmwareImage(
            id=image_id,
            name=name,
            version=version,
            size=len(data),
            sha256=digest,
            created=self.clock(),
            target=checked_target,
        )
        try:
            await self.documents.put(NAMESPACE, image_id, dict(image.to_json()))
        except BaseException:
            with contextlib.suppress(OSError):
                (self.directory / f"{image_id}.bin").unlink()
            raise
        self._images[image_id] = image
        logger.info(
            "firmware %s added: %s %s, %d bytes, sha256 %s",
            image_id,
            name,
            version,
            len(data),
            digest,
        )
        return image

    async def delete(self, image_id: str) -> bool:
        """Remove an image; False if unknown, :class:`ImageInUse` if a campaign uses it."""
        if image_id not in self._images:
            return False
        if self.in_use is not None and self.in_use(image_id):
            raise ImageInUse(f"firmware image {image_id} is used by a running campaign")
        await self.documents.delete(NAMESPACE, image_id)
        self._images.pop(image_id, None)
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread((self.directory / f"{image_id}.bin").unlink)
        logger.info("firmware %s deleted", image_id)
        return True

    # ================================================================== Private
    def _write(self, image_id: str, data: bytes, expected: str | None) -> str:
        """Hash, then write atomically (rule 1); the hash is checked before any byte lands."""
        digest = hashlib.sha256(data).hexdigest()
        if expected is not None and digest != expected:
            raise FirmwareError(
                f"sha256 mismatch: the upload hashes to {digest}, expected {expected}"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        final = self.directory / f"{image_id}.bin"
        temp = self.directory / f".{image_id}.tmp"
        try:
            with open(temp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise
        _fsync_directory(self.directory)
        return digest

    async def _load(self) -> None:
        for key, doc in await self.documents.items(NAMESPACE):
            try:
                image = FirmwareImage.from_json(doc)
            except FirmwareError as exc:
                logger.error("skipping unreadable firmware metadata %s: %s", key, exc)
                continue
            if not (self.directory / f"{image.id}.bin").is_file():
                logger.error(
                    "firmware %s (%s %s): file missing", image.id, image.name, image.version
                )
                continue
            self._images[image.id] = image
        await asyncio.to_thread(self._sweep)

    def _sweep(self) -> None:
        """Remove temporary files and files without metadata (a crash mid-add or mid-delete)."""
        if not self.directory.is_dir():
            return
        for entry in self.directory.iterdir():
            name = entry.name
            orphan = name.endswith(".bin") and name[: -len(".bin")] not in self._images
            if name.endswith(".tmp") or orphan:
                logger.warning("removing incomplete firmware file %s", entry)
                with contextlib.suppress(OSError):
                    entry.unlink()


def _hash_file(path: FsPath) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _fsync_directory(directory: FsPath) -> None:
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

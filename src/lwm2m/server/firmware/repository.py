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
5. Shared (a cluster on one Redis, ``blobs`` given): the bytes also live in the
   store (:mod:`~lwm2m.server.firmware.shared_images`), written before the
   metadata and deleted after it. The metadata in the store is the truth:
   :meth:`FirmwareRepository.fetch` re-reads it, and a node without the file
   copies the bytes from the store once, checks their size and SHA-256, and
   keeps them as its local file (a cache). An image deleted on another node is
   forgotten (and its cached file removed) at the next fetch.
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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any, ClassVar, Protocol

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


class ImageBlobs(Protocol):
    """Image bytes shared by the nodes of a cluster (rule 5)."""

    async def put(self, image_id: str, data: bytes) -> None: ...

    async def get(self, image_id: str) -> bytes | None: ...

    async def delete(self, image_id: str) -> None: ...


#: Tells whether a running campaign uses an image (sync on one node, async in a cluster).
InUse = Callable[[str], "bool | Awaitable[bool]"]


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
        blobs: ImageBlobs | None = None,
    ) -> None:
        self.documents = documents
        self.directory = FsPath(directory)
        self.max_image_bytes = max_image_bytes
        self.clock = clock
        self.blobs = blobs
        self.in_use: InUse | None = None
        self._images: dict[str, FirmwareImage] = {}
        self._fetching: dict[str, asyncio.Future[FirmwareImage | None]] = {}

    @property
    def shared(self) -> bool:
        """Whether images are shared with other nodes through the store (rule 5)."""
        return self.blobs is not None

    @classmethod
    async def open(
        cls,
        documents: DocumentStore,
        data_dir: str | os.PathLike[str],
        *,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
        clock: Callable[[], float] = time.time,
        blobs: ImageBlobs | None = None,
    ) -> FirmwareRepository:
        """Load the metadata, and drop what a crash may have left (rule 1)."""
        repo = cls(
            documents,
            FsPath(data_dir) / DIRECTORY,
            max_image_bytes=max_image_bytes,
            clock=clock,
            blobs=blobs,
        )
        await repo._load()
        return repo

    # ================================================================== queries
    def lookup(self, image_id: str) -> FirmwareImage | None:
        """:meth:`get` without the coroutine, for the per-block CoAP path."""
        return self._images.get(image_id)

    def cached(self, image_id: str) -> bool:
        """Whether this node can :meth:`read` the image now (known, and its file is here)."""
        return image_id in self._images and (self.directory / f"{image_id}.bin").is_file()

    async def get(self, image_id: str) -> FirmwareImage | None:
        """The image's metadata (shared: as the store has it now, bytes not fetched)."""
        if self.blobs is None:
            return self._images.get(image_id)
        return await self._metadata(image_id)

    async def list(self) -> builtins.list[FirmwareImage]:
        """Every image, oldest first (shared: every node's uploads)."""
        if self.blobs is not None:
            for key, doc in await self.documents.items(NAMESPACE):
                try:
                    image = FirmwareImage.from_json(doc)
                except FirmwareError as exc:
                    logger.error("skipping unreadable firmware metadata %s: %s", key, exc)
                    continue
                self._images[image.id] = image
        return sorted(self._images.values(), key=lambda i: (i.created, i.id))

    async def fetch(self, image_id: str) -> FirmwareImage | None:
        """The image ready to :meth:`read` on this node; None when there is no such image.

        On one node this is :meth:`lookup`. Shared (rule 5), the metadata is read
        from the store, and the bytes are copied from it when this node has no
        file yet (once, however many devices ask at the same time);
        :class:`FirmwareError` if the shared copy is incomplete or does not hash
        to the image's SHA-256.
        """
        if self.blobs is None:
            return self._images.get(image_id)
        image = await self._metadata(image_id)
        if image is None or (self.directory / f"{image.id}.bin").is_file():
            return image
        pending = self._fetching.get(image.id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[FirmwareImage | None] = asyncio.get_running_loop().create_future()
        self._fetching[image.id] = future
        try:
            result = await self._copy_from_store(image)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: a lone fetch raises it below
            raise
        else:
            future.set_result(result)
            return result
        finally:
            self._fetching.pop(image.id, None)

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
        if self.blobs is not None:
            try:
                await self.fetch(image_id)
            except FirmwareError as exc:
                logger.error("firmware %s: %s", image_id, exc)
                return False
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
        if self.blobs is not None:
            try:
                await self.blobs.put(image_id, bytes(data))
            except BaseException:
                with contextlib.suppress(OSError):
                    (self.directory / f"{image_id}.bin").unlink()
                raise
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
            if self.blobs is not None:
                with contextlib.suppress(Exception):
                    await self.blobs.delete(image_id)
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
        """Remove an image; False if unknown, :class:`ImageInUse` if a campaign uses it.

        Shared (rule 5): whichever node uploaded it, and refused while a campaign
        of any node uses it (``in_use`` then reads the shared campaigns).
        """
        known = image_id in self._images
        if self.blobs is not None:
            known = await self._metadata(image_id) is not None
        if not known:
            return False
        if self.in_use is not None:
            used = self.in_use(image_id)
            if not isinstance(used, bool):
                used = await used
            if used:
                raise ImageInUse(f"firmware image {image_id} is used by a running campaign")
        await self.documents.delete(NAMESPACE, image_id)
        if self.blobs is not None:
            await self.blobs.delete(image_id)
        self._forget(image_id)
        logger.info("firmware %s deleted", image_id)
        return True

    # ================================================================== Private
    async def _metadata(self, image_id: str) -> FirmwareImage | None:
        """The store's metadata of ``image_id`` (shared mode); forgets an image deleted elsewhere."""
        if not _ID.fullmatch(image_id):
            return None
        doc = await self.documents.get(NAMESPACE, image_id)
        if doc is None:
            if image_id in self._images:
                self._forget(image_id)
            return None
        image = FirmwareImage.from_json(doc)
        self._images[image.id] = image
        return image

    def _forget(self, image_id: str) -> None:
        self._images.pop(image_id, None)
        with contextlib.suppress(OSError):
            (self.directory / f"{image_id}.bin").unlink()

    async def _copy_from_store(self, image: FirmwareImage) -> FirmwareImage | None:
        """Cache the shared bytes as this node's file, once they check out (rule 5)."""
        assert self.blobs is not None
        data = await self.blobs.get(image.id)
        if data is None:
            if await self.documents.get(NAMESPACE, image.id) is None:
                self._forget(image.id)  # deleted meanwhile
                return None
            raise FirmwareError(f"firmware image {image.id}: its shared bytes are missing")
        if len(data) != image.size:
            raise FirmwareError(
                f"firmware image {image.id}: the shared copy has {len(data)} bytes, "
                f"not {image.size}"
            )
        await asyncio.to_thread(self._write, image.id, data, image.sha256)
        logger.info("firmware %s copied from the shared store (%d bytes)", image.id, image.size)
        return image

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
            if self.blobs is None and not (self.directory / f"{image.id}.bin").is_file():
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

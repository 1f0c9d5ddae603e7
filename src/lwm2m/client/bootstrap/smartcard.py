"""Bootstrap from Smartcard (seed 7.1): the bootstrap information in a card image.

Image layout (all integers big-endian; documented in docs/bootstrap.md)::

    offset  size  field
    0       4     magic  "LWSC" (4C 57 53 43)
    4       1     format version, 1
    5       1     flags, 0 (reserved)
    6       2     record count N
    8       4     length L of the records area
    12      L     N records
    12+L    4     CRC-32 (IEEE 802.3, as zlib.crc32) of bytes 0 .. 12+L-1

    record: 2 object ID (0 Security, 1 Server, 2 Access Control)
            2 object instance ID
            2 length V
            V the instance's resources in OMA TLV (as in a Write to /oid/iid)

:func:`decode_image` checks everything and raises :class:`SmartcardError`
with the byte offset of the first problem; :func:`encode_image` builds an
image (``python -m lwm2m.client.bootstrap.smartcard FACTORY.json ENDPOINT OUT.bin``).

On a real card the image is the content of a transparent elementary file;
:func:`read_card` reads it with SELECT + READ BINARY through PC/SC
(``pip install lwm2m[smartcard]`` for ``pyscard``).
"""

from __future__ import annotations

import struct
import sys
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path as FsPath

from lwm2m.formats import tlv
from lwm2m.formats.errors import FormatError
from lwm2m.model.nodes import ObjectInstance
from lwm2m.model.path import Path
from lwm2m.model.registry import ModelRegistry, default_registry
from lwm2m.protocol.provisioning import PlannedWrite

MAGIC = b"LWSC"
VERSION = 1
HEADER_SIZE = 12
CRC_SIZE = 4
RECORD_HEADER_SIZE = 6
ALLOWED_OBJECTS = (0, 1, 2)
#: File ID of the elementary file holding the image on a card (default for --smartcard-reader).
DEFAULT_FILE_ID = 0x6F4C
MAX_IMAGE_SIZE = 65536

Transmit = Callable[[list[int]], tuple[list[int], int, int]]


class SmartcardError(ValueError):
    """A corrupt or unusable smartcard image (or reader failure); says where."""

    def __init__(self, reason: str, offset: int | None = None) -> None:
        super().__init__(reason if offset is None else f"{reason} (at byte {offset})")
        self.reason = reason
        self.offset = offset


def encode_image(writes: Iterable[PlannedWrite], model: ModelRegistry | None = None) -> bytes:
    """An image holding these Security / Server / Access Control instances."""
    model = model if model is not None else default_registry()
    records = bytearray()
    count = 0
    for write in writes:
        oid, iid = write.path.object_id, write.path.instance_id
        if oid not in ALLOWED_OBJECTS or iid is None:
            raise SmartcardError(
                f"{write.path}: only Security, Server and Access Control instances"
            )
        body = tlv.encode(write.instance, write.path, model)
        if len(body) > 0xFFFF:
            raise SmartcardError(f"{write.path}: instance too large for a record")
        records += struct.pack(">HHH", oid, iid, len(body)) + body
        count += 1
    header = MAGIC + struct.pack(">BBHI", VERSION, 0, count, len(records))
    data = header + bytes(records)
    return data + struct.pack(">I", zlib.crc32(data))


def decode_image(data: bytes, model: ModelRegistry | None = None) -> list[PlannedWrite]:
    """The instances of an image; :class:`SmartcardError` on any corruption."""
    model = model if model is not None else default_registry()
    data = bytes(data)
    if len(data) < HEADER_SIZE + CRC_SIZE:
        raise SmartcardError(
            f"image of {len(data)} bytes is shorter than header and CRC", len(data)
        )
    if data[:4] != MAGIC:
        raise SmartcardError(f"bad magic {data[:4].hex()} (expected {MAGIC.hex()})", 0)
    version, flags, count, length = struct.unpack(">BBHI", data[4:HEADER_SIZE])
    if version != VERSION:
        raise SmartcardError(f"unsupported image version {version}", 4)
    if flags != 0:
        raise SmartcardError(f"reserved flags {flags:#04x} set", 5)
    expected = HEADER_SIZE + length + CRC_SIZE
    if len(data) < expected:
        raise SmartcardError(
            f"image truncated: {len(data)} bytes, header says {expected}", len(data)
        )
    if len(data) > expected:
        raise SmartcardError(f"{len(data) - expected} bytes after the CRC", expected)
    (crc,) = struct.unpack(">I", data[HEADER_SIZE + length :])
    actual = zlib.crc32(data[: HEADER_SIZE + length])
    if crc != actual:
        raise SmartcardError(
            f"CRC mismatch: stored {crc:08x}, computed {actual:08x}", HEADER_SIZE + length
        )
    writes: list[PlannedWrite] = []
    seen: set[tuple[int, int]] = set()
    pos = HEADER_SIZE
    end = HEADER_SIZE + length
    for index in range(count):
        if pos + RECORD_HEADER_SIZE > end:
            raise SmartcardError(f"record {index} header runs past the records area", pos)
        oid, iid, size = struct.unpack(">HHH", data[pos : pos + RECORD_HEADER_SIZE])
        if oid not in ALLOWED_OBJECTS:
            raise SmartcardError(
                f"record {index}: object {oid} is not Security, Server or Access Control", pos
            )
        if iid > 65534:
            raise SmartcardError(f"record {index}: instance ID {iid} out of range", pos + 2)
        if (oid, iid) in seen:
            raise SmartcardError(f"record {index}: /{oid}/{iid} appears twice", pos)
        seen.add((oid, iid))
        body_start = pos + RECORD_HEADER_SIZE
        if body_start + size > end:
            raise SmartcardError(
                f"record {index}: {size} bytes of TLV run past the records area", pos + 4
            )
        path = Path(oid, iid)
        try:
            node = tlv.decode(data[body_start : body_start + size], path, model)
        except FormatError as exc:
            raise SmartcardError(
                f"record {index} (/{oid}/{iid}): bad TLV: {exc}", body_start
            ) from None
        if not isinstance(
            node, ObjectInstance
        ):  # pragma: no cover - decode at /o/i gives instances
            raise SmartcardError(f"record {index}: not an object instance", body_start)
        writes.append(PlannedWrite(path, node))
        pos = body_start + size
    if pos != end:
        raise SmartcardError(
            f"{end - pos} bytes after record {count - 1 if count else 'none'}", pos
        )
    return writes


def load_image_file(path: str | FsPath, model: ModelRegistry | None = None) -> list[PlannedWrite]:
    try:
        data = FsPath(path).read_bytes()
    except OSError as exc:
        raise SmartcardError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_IMAGE_SIZE:
        raise SmartcardError(f"{path}: {len(data)} bytes is too large for a smartcard image")
    try:
        return decode_image(data, model)
    except SmartcardError as exc:
        raise SmartcardError(f"{path}: {exc.reason}", exc.offset) from None


# ----------------------------------------------------------------------------- PC/SC


def _check(sw1: int, sw2: int, what: str) -> None:
    if (sw1, sw2) != (0x90, 0x00):
        raise SmartcardError(f"{what} failed: status {sw1:02X}{sw2:02X}")


def read_image(transmit: Transmit, file_id: int = DEFAULT_FILE_ID) -> bytes:
    """SELECT the elementary file ``file_id`` and READ BINARY the whole image (header first)."""
    _, sw1, sw2 = transmit([0x00, 0xA4, 0x00, 0x04, 0x02, file_id >> 8, file_id & 0xFF])
    if sw1 == 0x61:  # response bytes available: the file was selected
        sw1, sw2 = 0x90, 0x00
    _check(sw1, sw2, f"SELECT {file_id:04X}")

    def read(offset: int, size: int) -> bytes:
        out = bytearray()
        while len(out) < size:
            chunk = min(0xFF, size - len(out))
            at = offset + len(out)
            if at > 0x7FFF:
                raise SmartcardError("image larger than READ BINARY can address")
            data, s1, s2 = transmit([0x00, 0xB0, at >> 8, at & 0xFF, chunk])
            _check(s1, s2, f"READ BINARY at {at}")
            if not data:
                raise SmartcardError(f"READ BINARY at {at} returned no data")
            out += bytes(data)
        return bytes(out[:size])

    header = read(0, HEADER_SIZE)
    if header[:4] != MAGIC:
        raise SmartcardError(f"bad magic {header[:4].hex()} on the card", 0)
    (length,) = struct.unpack(">I", header[8:12])
    if HEADER_SIZE + length + CRC_SIZE > MAX_IMAGE_SIZE:
        raise SmartcardError(f"card image of {length} bytes is too large", 8)
    return header + read(HEADER_SIZE, length + CRC_SIZE)


def read_card(reader_name: str | None = None, file_id: int = DEFAULT_FILE_ID) -> bytes:
    """The image from a PC/SC reader (the first one, or the one whose name contains ``reader_name``)."""
    try:
        from smartcard.System import readers
    except ImportError:
        raise SmartcardError(
            "PC/SC support needs pyscard: pip install 'lwm2m[smartcard]'"
        ) from None
    available = readers()
    chosen = [r for r in available if reader_name is None or reader_name in str(r)]
    if not chosen:
        raise SmartcardError(
            "no smartcard reader" + (f" matching {reader_name!r}" if reader_name else "")
        )
    connection = chosen[0].createConnection()
    try:
        connection.connect()
    except Exception as exc:  # pyscard raises its own exception tree
        raise SmartcardError(f"cannot connect to {chosen[0]}: {exc}") from None
    try:

        def transmit(apdu: list[int]) -> tuple[list[int], int, int]:
            data, sw1, sw2 = connection.transmit(apdu)
            return list(data), int(sw1), int(sw2)

        return read_image(transmit, file_id)
    finally:
        connection.disconnect()


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lwm2m.client.bootstrap.smartcard FACTORY.json ENDPOINT OUT.bin``: write an image."""
    from lwm2m.client.bootstrap.factory import load_factory_file
    from lwm2m.protocol.bootstrap_config import BootstrapConfigError
    from lwm2m.protocol.provisioning import plan_writes

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3:
        print(
            "usage: python -m lwm2m.client.bootstrap.smartcard FACTORY.json ENDPOINT OUT.bin",
            file=sys.stderr,
        )
        return 2
    try:
        config = load_factory_file(args[0], args[1])
    except BootstrapConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    FsPath(args[2]).write_bytes(encode_image(plan_writes(config)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

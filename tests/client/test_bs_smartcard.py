"""Smartcard images: round trip, every corruption gets a precise error, PC/SC reading."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path as FsPath

import pytest

from lwm2m.client.bootstrap.smartcard import (
    DEFAULT_FILE_ID,
    SmartcardError,
    decode_image,
    encode_image,
    load_image_file,
    main,
    read_image,
)
from lwm2m.protocol.bootstrap_config import parse_client_config
from lwm2m.protocol.provisioning import plan_writes

CONFIG = parse_client_config(
    "dev-1",
    {
        "servers": [
            {
                "short_server_id": 101,
                "uri": "coaps://127.0.0.1:5684",
                "security": {"mode": "psk", "identity": "dev-1", "key": "000102"},
            }
        ],
        "bootstrap_server": {"uri": "coap://127.0.0.1:5783"},
        "acl": [{"object": 3, "instance": 0, "rights": {"101": "RW"}}],
    },
)
WRITES = plan_writes(CONFIG)
IMAGE = encode_image(WRITES)


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def test_round_trip() -> None:
    decoded = decode_image(IMAGE)
    assert [str(w.path) for w in decoded] == ["/0/0", "/0/1", "/1/0", "/2/0"]
    sec = decoded[1].instance
    assert sec.resources[3].value == b"dev-1" and sec.resources[5].value == b"\x00\x01\x02"
    assert IMAGE[:4] == b"LWSC" and IMAGE[4] == 1


@pytest.mark.parametrize(
    ("image", "fragment", "offset"),
    [
        (b"LWSC", "shorter than header and CRC", 4),
        (b"XXXX" + IMAGE[4:], "bad magic", 0),
        (IMAGE[:4] + b"\x02" + IMAGE[5:], "unsupported image version 2", 4),
        (IMAGE[:5] + b"\x01" + IMAGE[6:], "reserved flags", 5),
        (IMAGE[:-5], "image truncated", len(IMAGE) - 5),
        (IMAGE + b"\x00", "1 bytes after the CRC", len(IMAGE)),
        (IMAGE[:20] + bytes([IMAGE[20] ^ 0xFF]) + IMAGE[21:], "CRC mismatch", len(IMAGE) - 4),
    ],
)
def test_corrupt_images(image: bytes, fragment: str, offset: int) -> None:
    with pytest.raises(SmartcardError) as info:
        decode_image(image)
    assert fragment in info.value.reason
    assert info.value.offset == offset


def _image(count: int, records: bytes) -> bytes:
    return _with_crc(b"LWSC" + struct.pack(">BBHI", 1, 0, count, len(records)) + records)


@pytest.mark.parametrize(
    ("image", "fragment"),
    [
        (_image(1, struct.pack(">HHH", 3, 0, 0)), "object 3 is not Security"),
        (_image(2, struct.pack(">HHH", 1, 0, 0) * 2), "/1/0 appears twice"),
        (_image(1, struct.pack(">HHH", 1, 0, 9) + b"\x00"), "run past the records area"),
        (_image(2, struct.pack(">HHH", 1, 0, 0)), "record 1 header runs past"),
        (_image(1, struct.pack(">HHH", 1, 0, 2) + b"\xc1\x00"), "bad TLV"),
        (_image(0, struct.pack(">HHH", 1, 0, 0)), "bytes after record"),
        (_image(1, struct.pack(">HHH", 1, 65535, 0)), "instance ID 65535 out of range"),
    ],
)
def test_bad_records(image: bytes, fragment: str) -> None:
    with pytest.raises(SmartcardError, match=fragment):
        decode_image(image)


def test_load_file_errors(tmp_path: FsPath) -> None:
    with pytest.raises(SmartcardError, match="cannot read"):
        load_image_file(tmp_path / "missing.bin")
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"garbage!" * 4)
    with pytest.raises(SmartcardError, match=r"bad\.bin: bad magic"):
        load_image_file(bad)


class FakeCard:
    """A card holding IMAGE in one transparent elementary file."""

    def __init__(self, content: bytes, file_id: int = DEFAULT_FILE_ID) -> None:
        self.content = content
        self.file_id = file_id
        self.selected = False
        self.apdus: list[list[int]] = []

    def transmit(self, apdu: list[int]) -> tuple[list[int], int, int]:
        self.apdus.append(apdu)
        if apdu[:2] == [0x00, 0xA4]:
            fid = apdu[5] << 8 | apdu[6]
            self.selected = fid == self.file_id
            return ([], 0x90, 0x00) if self.selected else ([], 0x6A, 0x82)
        if apdu[:2] == [0x00, 0xB0] and self.selected:
            offset = apdu[2] << 8 | apdu[3]
            return list(self.content[offset : offset + apdu[4]]), 0x90, 0x00
        return [], 0x6D, 0x00


def test_read_image_over_apdus() -> None:
    big = encode_image(WRITES * 1)  # a few hundred bytes: several READ BINARY
    card = FakeCard(big)
    assert read_image(card.transmit) == big
    reads = [a for a in card.apdus if a[1] == 0xB0]
    assert all(a[4] <= 0xFF for a in reads)
    assert decode_image(read_image(FakeCard(big).transmit))


def test_read_image_errors() -> None:
    with pytest.raises(SmartcardError, match="SELECT 6F4C failed: status 6A82"):
        read_image(FakeCard(IMAGE, file_id=0x1234).transmit)
    with pytest.raises(SmartcardError, match="bad magic"):
        read_image(FakeCard(b"\x00" * 64).transmit)


def test_image_tool(tmp_path: FsPath) -> None:
    factory = tmp_path / "factory.json"
    factory.write_text('{"servers": [{"short_server_id": 5, "uri": "coap://h"}]}')
    out = tmp_path / "card.bin"
    assert main([str(factory), "dev-1", str(out)]) == 0
    (sec, srv) = decode_image(out.read_bytes())
    assert sec.instance.resources[10].value == 5 and srv.instance.resources[0].value == 5
    assert main([str(factory)]) == 2

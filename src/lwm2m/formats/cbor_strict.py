"""Strict CBOR reading on top of cbor2.

cbor2 decodes leniently: it ignores trailing bytes, turns tags into Python
objects (datetimes, Decimals, sets ...) and accepts ``undefined`` and other
simple values. LwM2M payloads use none of that, so :func:`loads` first walks
the encoded item once, checking well-formedness, nesting depth, allowed tags
and simple values and that nothing follows the item, then lets cbor2 build
the Python value with duplicate map keys rejected.
"""

from __future__ import annotations

from collections.abc import Collection

import cbor2

from lwm2m.formats.errors import FormatError

MAX_DEPTH = 16


class _Scanner:
    __slots__ = ("allowed_tags", "data", "pos")

    def __init__(self, data: bytes, allowed_tags: Collection[int]) -> None:
        self.data = data
        self.pos = 0
        self.allowed_tags = allowed_tags

    def _need(self, count: int, what: str) -> None:
        if self.pos + count > len(self.data):
            raise FormatError(f"CBOR byte {self.pos}: truncated {what}")

    def _argument(self, info: int, start: int) -> int | None:
        """The head's argument; ``None`` for indefinite length (info 31)."""
        if info < 24:
            return info
        if info == 31:
            return None
        if info > 27:
            raise FormatError(f"CBOR byte {start}: reserved additional information {info}")
        size = 1 << (info - 24)
        self._need(size, "head")
        value = int.from_bytes(self.data[self.pos : self.pos + size], "big")
        self.pos += size
        return value

    def item(self, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise FormatError(f"CBOR byte {self.pos}: nested deeper than {MAX_DEPTH}")
        start = self.pos
        self._need(1, "item")
        initial = self.data[self.pos]
        self.pos += 1
        major, info = initial >> 5, initial & 0x1F
        if major == 7:
            if info in (20, 21, 22):  # false, true, null
                return
            if info in (25, 26, 27):  # half, single, double float
                size = 1 << (info - 24)
                self._need(size, "float")
                self.pos += size
                return
            if info == 31:
                raise FormatError(f"CBOR byte {start}: unexpected break")
            raise FormatError(f"CBOR byte {start}: simple value {info} not allowed")
        arg = self._argument(info, start)
        if major in (0, 1):
            if arg is None:
                raise FormatError(f"CBOR byte {start}: indefinite length integer")
            return
        if major in (2, 3):
            if arg is not None:
                self._need(arg, "string")
                if major == 3:
                    self._utf8(self.pos, arg)
                self.pos += arg
                return
            while True:  # indefinite string: definite chunks of the same major type
                self._need(1, "indefinite string")
                if self.data[self.pos] == 0xFF:
                    self.pos += 1
                    return
                chunk_start = self.pos
                chunk = self.data[self.pos]
                self.pos += 1
                if chunk >> 5 != major:
                    raise FormatError(f"CBOR byte {chunk_start}: bad chunk in indefinite string")
                chunk_size = self._argument(chunk & 0x1F, chunk_start)
                if chunk_size is None:
                    raise FormatError(f"CBOR byte {chunk_start}: nested indefinite string")
                self._need(chunk_size, "string chunk")
                if major == 3:
                    self._utf8(self.pos, chunk_size)
                self.pos += chunk_size
        if major in (4, 5):
            per_entry = 1 if major == 4 else 2
            if arg is not None:
                for _ in range(arg * per_entry):
                    self.item(depth + 1)
                return
            while True:
                self._need(1, "indefinite container")
                if self.data[self.pos] == 0xFF:
                    self.pos += 1
                    return
                for _ in range(per_entry):
                    self.item(depth + 1)
        # major 6: tag
        if arg is None:
            raise FormatError(f"CBOR byte {start}: indefinite tag")
        if arg not in self.allowed_tags:
            raise FormatError(f"CBOR byte {start}: tag {arg} not allowed here")
        self.item(depth + 1)

    def _utf8(self, start: int, size: int) -> None:
        try:
            self.data[start : start + size].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"CBOR byte {start + exc.start}: invalid UTF-8 in text") from None


def loads(data: bytes, *, allowed_tags: Collection[int] = ()) -> object:
    """One well-formed CBOR item and nothing after it, as a Python value."""
    data = bytes(data)
    if not data:
        raise FormatError("CBOR byte 0: empty payload")
    scanner = _Scanner(data, allowed_tags)
    scanner.item(0)
    if scanner.pos != len(data):
        raise FormatError(f"CBOR byte {scanner.pos}: trailing bytes after the CBOR item")
    try:
        return cbor2.loads(data, allow_duplicate_keys=False, max_depth=MAX_DEPTH + 4)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise FormatError(f"CBOR: {exc}") from None


def dumps(value: object) -> bytes:
    try:
        return bytes(cbor2.dumps(value))
    except (cbor2.CBOREncodeError, ValueError, TypeError) as exc:
        raise FormatError(f"CBOR encoding failed: {exc}") from None

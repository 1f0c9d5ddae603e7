"""CoAP wire format (RFC 7252 section 3): ``encode(Message) -> bytes``, ``decode(bytes) -> Message``.

This is the hot path of every role, so both directions work off flat tables
built once at import: no per-option objects, no enum construction per byte.

Decoding follows RFC 7252 5.4: an option value with a bad length or format, a
non-repeatable option that repeats, and options we have no typed field for
all land in ``Message.other_options`` as raw ``(number, value)`` pairs; the
engine then rejects the message if any of those is critical (odd number).
Structural errors (header, token, option header, payload marker) raise
:class:`MessageFormatError` with the byte offset.
"""

from __future__ import annotations

from typing import Final

from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.errors import MessageFormatError
from lwm2m.coap.message import Block, Message
from lwm2m.coap.options import TYPED_OPTIONS, OptionFormat

__all__ = ["VERSION", "decode", "encode", "encode_as", "encode_empty", "peek_header"]

VERSION: Final = 1
"""The only CoAP version (RFC 7252 3); messages of another are not ours."""

# Value kinds in the decode table (OptionFormat plus a special case for Block1/2).
_EMPTY, _OPAQUE, _UINT, _STRING, _BLOCK = 0, 1, 2, 3, 4

_DECODE_TABLE: dict[int, tuple[str, int, int, int, bool]] = {}
for _number, _spec in TYPED_OPTIONS.items():
    assert _spec.field is not None
    _kind = _BLOCK if _spec.field in ("block1", "block2") else int(_spec.format)
    _DECODE_TABLE[_number] = (
        _spec.field,
        _kind,
        _spec.min_length,
        _spec.max_length,
        _spec.repeatable,
    )
_REPEATABLE_FIELDS = tuple(s.field for s in TYPED_OPTIONS.values() if s.repeatable and s.field)
del _number, _spec, _kind

_CODES: tuple[Code | int, ...] = tuple(Code.from_byte(i) for i in range(256))
_TYPES: tuple[MessageType, ...] = (
    MessageType.CON,
    MessageType.NON,
    MessageType.ACK,
    MessageType.RST,
)
_UINT_SMALL: tuple[bytes, ...] = (b"", *(bytes((i,)) for i in range(1, 256)))

assert OptionFormat.STRING == _STRING and OptionFormat.UINT == _UINT


def peek_header(data: bytes) -> tuple[int, MessageType, int] | None:
    """``(version, type, mid)`` of a datagram whose 4-byte header is readable, else None.

    Used to answer a malformed CON with RST (RFC 7252 4.2) even when the rest
    of the message cannot be decoded.
    """
    if len(data) < 4:
        return None
    return data[0] >> 6, _TYPES[(data[0] >> 4) & 3], (data[2] << 8) | data[3]


def decode(data: bytes) -> Message:
    """Parse one datagram; raise :class:`MessageFormatError` if it is not a CoAP message."""
    n = len(data)
    if n < 4:
        raise MessageFormatError(f"datagram of {n} bytes is shorter than the 4-byte header", n)
    b0 = data[0]
    if b0 >> 6 != VERSION:
        raise MessageFormatError(f"unsupported CoAP version {b0 >> 6}", 0)
    tkl = b0 & 0x0F
    if tkl > 8:
        raise MessageFormatError(f"token length {tkl} is reserved (must be 0-8)", 0)
    code = _CODES[data[1]]
    if code == 0 and n > 4:
        raise MessageFormatError("empty message (code 0.00) carries token, options or payload", 4)
    mid = (data[2] << 8) | data[3]
    pos = 4 + tkl
    if pos > n:
        raise MessageFormatError(f"token of {tkl} bytes truncated", n)
    token = data[4:pos]
    mtype = _TYPES[(b0 >> 4) & 3]
    if pos == n:
        return Message(code, mtype, mid, token)

    number = 0
    kw: dict[str, object] = {}
    other: list[tuple[int, bytes]] | None = None
    payload = b""
    table = _DECODE_TABLE
    while pos < n:
        byte = data[pos]
        if byte == 0xFF:
            pos += 1
            if pos == n:
                raise MessageFormatError("payload marker followed by an empty payload", pos - 1)
            payload = data[pos:]
            break
        start = pos
        pos += 1
        delta = byte >> 4
        length = byte & 0x0F
        if delta >= 13:
            if delta == 13:
                if pos >= n:
                    raise MessageFormatError("option delta extension truncated", pos)
                delta = data[pos] + 13
                pos += 1
            elif delta == 14:
                if pos + 2 > n:
                    raise MessageFormatError("option delta extension truncated", pos)
                delta = ((data[pos] << 8) | data[pos + 1]) + 269
                pos += 2
            else:
                raise MessageFormatError("option delta 15 is reserved", start)
        if length >= 13:
            if length == 13:
                if pos >= n:
                    raise MessageFormatError("option length extension truncated", pos)
                length = data[pos] + 13
                pos += 1
            elif length == 14:
                if pos + 2 > n:
                    raise MessageFormatError("option length extension truncated", pos)
                length = ((data[pos] << 8) | data[pos + 1]) + 269
                pos += 2
            else:
                raise MessageFormatError("option length 15 is reserved", start)
        end = pos + length
        if end > n:
            raise MessageFormatError(
                f"option {number + delta} value of {length} bytes truncated", n
            )
        number += delta
        if number > 0xFFFF:
            raise MessageFormatError(f"option number {number} exceeds 65535", start)
        value = data[pos:end]
        pos = end
        entry = table.get(number)
        if entry is not None:
            field, kind, min_len, max_len, repeatable = entry
            if min_len <= length <= max_len and (repeatable or field not in kw):
                if kind == _STRING:
                    try:
                        text = value.decode("utf-8")
                    except UnicodeDecodeError:
                        pass
                    else:
                        if not repeatable:
                            kw[field] = text
                            continue
                        # The rest of a run of this option (Uri-Path, Uri-Query...) in one
                        # go: each repeat is a header byte below 13 (delta 0, a length
                        # under 13) and its text. Anything else (a longer value, bad
                        # UTF-8, the next option, the payload) is left to the loop.
                        items = [text]
                        while pos < n:
                            byte = data[pos]
                            if byte >= 13 or byte < min_len:
                                break
                            end = pos + 1 + byte
                            if end > n:
                                break
                            try:
                                items.append(data[pos + 1 : end].decode("utf-8"))
                            except UnicodeDecodeError:
                                break
                            pos = end
                        earlier = kw.get(field)
                        kw[field] = (*earlier, *items) if earlier else tuple(items)  # type: ignore[misc]
                        continue
                elif kind == _UINT:
                    kw[field] = int.from_bytes(value, "big")
                    continue
                elif kind == _OPAQUE:
                    kw[field] = (*kw.get(field, ()), value)  # type: ignore[misc]
                    continue
                elif kind == _BLOCK:
                    v = int.from_bytes(value, "big")
                    if v & 7 != 7:
                        kw[field] = Block(v >> 4, bool(v & 8), v & 7)
                        continue
                else:  # _EMPTY
                    kw[field] = True
                    continue
        # Unknown, malformed or supernumerary: keep raw, the engine judges criticality.
        if other is None:
            other = []
        other.append((number, value))
    if other is not None:
        kw["other_options"] = tuple(other)
    return Message(code, mtype, mid, token, payload, **kw)  # type: ignore[arg-type]


def _put(out: bytearray, last: int, number: int, value: bytes) -> int:
    """Append one option (header + value) and return its number as the new base."""
    delta = number - last
    length = len(value)
    if delta < 13 and length < 13:
        out.append((delta << 4) | length)
        out += value
        return number
    if delta < 13:
        d_nib, d_ext = delta, b""
    elif delta < 269:
        d_nib, d_ext = 13, bytes((delta - 13,))
    else:
        d_nib, d_ext = 14, (delta - 269).to_bytes(2, "big")
    if length < 13:
        l_nib, l_ext = length, b""
    elif length < 269:
        l_nib, l_ext = 13, bytes((length - 13,))
    elif length < 65805:
        l_nib, l_ext = 14, (length - 269).to_bytes(2, "big")
    else:
        raise ValueError(f"option {number} value of {length} bytes is too long")
    out.append((d_nib << 4) | l_nib)
    out += d_ext
    out += l_ext
    out += value
    return number


def _uint(value: int) -> bytes:
    if value < 256:
        if value < 0:
            raise ValueError(f"negative option value {value}")
        return _UINT_SMALL[value]
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _block(block: Block) -> bytes:
    if not 0 <= block.szx <= 6 or not 0 <= block.num < (1 << 20):
        raise ValueError(f"invalid block option {block}")
    return _uint((block.num << 4) | (8 if block.more else 0) | block.szx)


def _options_sorted(msg: Message) -> list[tuple[int, bytes]]:
    """All options as ``(number, raw value)``, stable-sorted by number (slow path)."""
    opts: list[tuple[int, bytes]] = []
    opts.extend((1, v) for v in msg.if_match)
    if msg.uri_host is not None:
        opts.append((3, msg.uri_host.encode()))
    opts.extend((4, v) for v in msg.etag)
    if msg.if_none_match:
        opts.append((5, b""))
    if msg.observe is not None:
        opts.append((6, _uint(msg.observe)))
    if msg.uri_port is not None:
        opts.append((7, _uint(msg.uri_port)))
    opts.extend((8, v.encode()) for v in msg.location_path)
    opts.extend((11, v.encode()) for v in msg.uri_path)
    if msg.content_format is not None:
        opts.append((12, _uint(msg.content_format)))
    if msg.max_age is not None:
        opts.append((14, _uint(msg.max_age)))
    opts.extend((15, v.encode()) for v in msg.uri_query)
    if msg.accept is not None:
        opts.append((17, _uint(msg.accept)))
    opts.extend((20, v.encode()) for v in msg.location_query)
    if msg.block2 is not None:
        opts.append((23, _block(msg.block2)))
    if msg.block1 is not None:
        opts.append((27, _block(msg.block1)))
    if msg.size2 is not None:
        opts.append((28, _uint(msg.size2)))
    if msg.proxy_uri is not None:
        opts.append((35, msg.proxy_uri.encode()))
    if msg.proxy_scheme is not None:
        opts.append((39, msg.proxy_scheme.encode()))
    if msg.size1 is not None:
        opts.append((60, _uint(msg.size1)))
    opts.extend(msg.other_options)
    opts.sort(key=lambda item: item[0])
    return opts


def encode(msg: Message) -> bytes:
    """Serialise ``msg``; raise ValueError for a message that cannot be put on the wire."""
    return encode_as(msg, msg.type, msg.mid, msg.token)


def encode_empty(mtype: MessageType, mid: int) -> bytes:
    """An Empty message (0.00, no token): an empty ACK, an RST, a ping (RFC 7252 4.1)."""
    return bytes(((VERSION << 6) | (mtype << 4), Code.EMPTY, mid >> 8, mid & 0xFF))


def encode_as(msg: Message, mtype: MessageType, mid: int, token: bytes) -> bytes:
    """Serialise ``msg`` with its header fields replaced.

    The engine stamps type, message ID and token on a handler's response this
    way instead of building a modified copy of the (26-field) message.
    """
    tkl = len(token)
    code = msg.code
    if tkl > 8:
        raise ValueError(f"token of {tkl} bytes is longer than 8")
    if not 0 <= mid <= 0xFFFF:
        raise ValueError(f"message ID {mid} out of range")
    if not 0 <= code <= 0xFF:
        raise ValueError(f"code {code} out of range")
    out = bytearray(((VERSION << 6) | (mtype << 4) | tkl, code, mid >> 8, mid & 0xFF))
    out += token
    if msg.other_options:
        last = 0
        for number, value in _options_sorted(msg):
            if not 0 <= number <= 0xFFFF:
                raise ValueError(f"option number {number} out of range")
            last = _put(out, last, number, value)
    else:
        # Fast path: typed fields in option-number order, no sorting, no tuples.
        last = 0
        if msg.if_match:
            for v in msg.if_match:
                last = _put(out, last, 1, v)
        if msg.uri_host is not None:
            last = _put(out, last, 3, msg.uri_host.encode())
        if msg.etag:
            for v in msg.etag:
                last = _put(out, last, 4, v)
        if msg.if_none_match:
            last = _put(out, last, 5, b"")
        if msg.observe is not None:
            last = _put(out, last, 6, _uint(msg.observe))
        if msg.uri_port is not None:
            last = _put(out, last, 7, _uint(msg.uri_port))
        if msg.location_path:
            for s in msg.location_path:
                last = _put(out, last, 8, s.encode())
        if msg.uri_path:
            for s in msg.uri_path:
                last = _put(out, last, 11, s.encode())
        if msg.content_format is not None:
            last = _put(out, last, 12, _uint(msg.content_format))
        if msg.max_age is not None:
            last = _put(out, last, 14, _uint(msg.max_age))
        if msg.uri_query:
            for s in msg.uri_query:
                last = _put(out, last, 15, s.encode())
        if msg.accept is not None:
            last = _put(out, last, 17, _uint(msg.accept))
        if msg.location_query:
            for s in msg.location_query:
                last = _put(out, last, 20, s.encode())
        if msg.block2 is not None:
            last = _put(out, last, 23, _block(msg.block2))
        if msg.block1 is not None:
            last = _put(out, last, 27, _block(msg.block1))
        if msg.size2 is not None:
            last = _put(out, last, 28, _uint(msg.size2))
        if msg.proxy_uri is not None:
            last = _put(out, last, 35, msg.proxy_uri.encode())
        if msg.proxy_scheme is not None:
            last = _put(out, last, 39, msg.proxy_scheme.encode())
        if msg.size1 is not None:
            last = _put(out, last, 60, _uint(msg.size1))
    if msg.payload:
        out.append(0xFF)
        out += msg.payload
    if code == 0 and len(out) > 4:
        raise ValueError("an empty message (code 0.00) carries no token, options or payload")
    return bytes(out)

"""CoAP over TCP framing (RFC 8323 section 3.2) and signaling messages (section 5), sans I/O.

Rules:

1. A frame is ``Len|TKL``, an optional extended length (1, 2 or 4 bytes for
   Len 13, 14, 15: offsets 13, 269, 65805), the code byte, the token, then
   options and payload exactly as over UDP.  ``Len`` counts options, payload
   marker and payload, never the token.  There is no type and no message ID:
   the stream is reliable and ordered.
2. Options and payload reuse :mod:`lwm2m.coap.codec` (a frame is rebuilt as a
   UDP message with type CON and message ID 0 for decoding), so a frame means
   exactly what the same message means over UDP.
3. Signaling codes 7.01-7.05 number their options per code (RFC 8323 5.3-5.6);
   they are parsed here into :class:`Signal` values and never reach the codec.
4. Anything that cannot be a frame (reserved TKL 9-15, a length beyond the
   agreed maximum, a bad option or marker) raises :class:`FrameError`: the
   connection's answer is an Abort (RFC 8323 5.6), the decoder is then dead.
5. Empty messages (code 0.00) are ignored (RFC 8323 3.2): the decoder skips them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from lwm2m.coap.codec import decode, encode_as
from lwm2m.coap.codes import MessageType
from lwm2m.coap.errors import CoapError, MessageFormatError
from lwm2m.coap.message import Message

__all__ = [
    "ABORT",
    "CSM",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "PING",
    "PONG",
    "RELEASE",
    "Abort",
    "Capabilities",
    "FrameDecoder",
    "FrameError",
    "Ping",
    "Pong",
    "Release",
    "Signal",
    "encode_frame",
    "encode_signal",
    "is_signal_code",
]

#: Signaling codes (RFC 8323 11.1): class 7.
CSM, PING, PONG, RELEASE, ABORT = 225, 226, 227, 228, 229

#: What a peer may assume before the other side's CSM (RFC 8323 5.3.1).
DEFAULT_MAX_MESSAGE_SIZE = 1152

_EXT_OFFSETS = (13, 269, 65805)


class FrameError(CoapError, ValueError):
    """The byte stream is not a valid CoAP-over-TCP frame sequence; the connection must abort."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """7.01 CSM: what the sender can take (Max-Message-Size, Block-Wise-Transfer)."""

    max_message_size: int | None = None
    block_wise_transfer: bool = False


@dataclass(frozen=True, slots=True)
class Ping:
    """7.02 Ping; ``custody`` asks the peer to answer once earlier messages are processed."""

    token: bytes = b""
    custody: bool = False


@dataclass(frozen=True, slots=True)
class Pong:
    """7.03 Pong: the answer to a Ping, same token."""

    token: bytes = b""
    custody: bool = False


@dataclass(frozen=True, slots=True)
class Release:
    """7.04 Release: the sender will close; come back later (Hold-Off) or elsewhere."""

    alternative_addresses: tuple[str, ...] = ()
    hold_off_s: int | None = None
    diagnostic: str = ""


@dataclass(frozen=True, slots=True)
class Abort:
    """7.05 Abort: the sender closes now; ``diagnostic`` says why (UTF-8 payload)."""

    diagnostic: str = ""
    bad_csm_option: int | None = None


Signal = Capabilities | Ping | Pong | Release | Abort


def is_signal_code(code: int) -> bool:
    return code >> 5 == 7


def encode_frame(msg: Message) -> bytes:
    """Serialise ``msg`` as one frame (its type and message ID are ignored)."""
    udp = encode_as(msg, MessageType.CON, 0, msg.token)
    return _frame(int(msg.code), msg.token, memoryview(udp)[4 + len(msg.token) :])


def encode_signal(signal: Signal) -> bytes:
    """Serialise a signaling message (RFC 8323 section 5)."""
    options: list[tuple[int, bytes]] = []
    payload = b""
    token = b""
    match signal:
        case Capabilities(max_message_size=size, block_wise_transfer=bwt):
            code = CSM
            if size is not None:
                options.append((2, _uint(size)))
            if bwt:
                options.append((4, b""))
        case Ping(token=tok, custody=custody) | Pong(token=tok, custody=custody):
            code = PING if isinstance(signal, Ping) else PONG
            token = tok
            if custody:
                options.append((2, b""))
        case Release(alternative_addresses=alts, hold_off_s=hold, diagnostic=diag):
            code = RELEASE
            options.extend((2, a.encode()) for a in alts)
            if hold is not None:
                options.append((4, _uint(hold)))
            payload = diag.encode()
        case Abort(diagnostic=diag, bad_csm_option=bad):
            code = ABORT
            if bad is not None:
                options.append((2, _uint(bad)))
            payload = diag.encode()
    body = bytearray()
    last = 0
    for number, value in options:
        _put_option(body, number - last, value)
        last = number
    if payload:
        body.append(0xFF)
        body += payload
    return _frame(code, token, body)


class FrameDecoder:
    """Incremental frame parser: ``feed(bytes)`` then iterate complete messages and signals.

    ``max_message_size`` bounds what one frame may claim (our advertised
    Max-Message-Size); a larger frame is refused before it is buffered.
    """

    __slots__ = ("_buf", "max_message_size")

    def __init__(self, max_message_size: int) -> None:
        self._buf = bytearray()
        self.max_message_size = max_message_size

    def feed(self, data: bytes) -> Iterator[Message | Signal]:
        """Append ``data`` and yield every complete frame; raise FrameError on garbage.

        Frames already yielded stay valid when a later one in the same chunk
        is malformed: the caller handles them, then aborts.
        """
        self._buf += data
        while True:
            frame = self._next()
            if frame is None:
                return
            if frame is not _EMPTY:
                yield frame  # type: ignore[misc]

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held (for a peer that stops mid-frame)."""
        return len(self._buf)

    # Private

    def _next(self) -> Message | Signal | object | None:
        buf = self._buf
        if not buf:
            return None
        first = buf[0]
        length, tkl = first >> 4, first & 0x0F
        if tkl > 8:
            raise FrameError(f"reserved token length {tkl}")
        pos = 1
        if length >= 13:
            ext = (1, 2, 4)[length - 13]
            if len(buf) < 1 + ext:
                return None
            length = int.from_bytes(buf[1 : 1 + ext], "big") + _EXT_OFFSETS[length - 13]
            pos += ext
        if length + tkl + 1 > self.max_message_size:
            raise FrameError(
                f"frame of {length + tkl + 1} bytes exceeds Max-Message-Size {self.max_message_size}"
            )
        end = pos + 1 + tkl + length
        if len(buf) < end:
            return None
        code = buf[pos]
        token = bytes(buf[pos + 1 : pos + 1 + tkl])
        body = bytes(buf[pos + 1 + tkl : end])
        del buf[:end]
        if code == 0:
            return _EMPTY
        if is_signal_code(code):
            return _parse_signal(code, token, body)
        try:
            return decode(bytes((0x40 | tkl, code, 0, 0)) + token + body)
        except MessageFormatError as exc:
            raise FrameError(f"malformed message: {exc}") from None


# Private

_EMPTY = object()


def _frame(code: int, token: bytes, body: bytes | bytearray | memoryview) -> bytes:
    length = len(body)
    tkl = len(token)
    if length < 13:
        head = bytes(((length << 4) | tkl, code))
    elif length < 269:
        head = bytes((0xD0 | tkl, length - 13, code))
    elif length < 65805:
        head = bytes((0xE0 | tkl,)) + (length - 269).to_bytes(2, "big") + bytes((code,))
    else:
        head = bytes((0xF0 | tkl,)) + (length - 65805).to_bytes(4, "big") + bytes((code,))
    return b"".join((head, token, body))


def _uint(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big") if value else b""


def _put_option(out: bytearray, delta: int, value: bytes) -> None:
    # Signal options are small numbers with short values: Len/delta < 269.
    length = len(value)
    d_nib, d_ext = (delta, b"") if delta < 13 else (13, bytes((delta - 13,)))
    l_nib, l_ext = (length, b"") if length < 13 else (13, bytes((length - 13,)))
    if length >= 269:
        l_nib, l_ext = 14, (length - 269).to_bytes(2, "big")
    out.append((d_nib << 4) | l_nib)
    out += d_ext + l_ext + value


def _walk_options(body: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Options and payload of a signal body (the RFC 7252 option format)."""
    options: list[tuple[int, bytes]] = []
    pos, number, end = 0, 0, len(body)
    while pos < end:
        head = body[pos]
        pos += 1
        if head == 0xFF:
            if pos == end:
                raise FrameError("payload marker without payload")
            return options, body[pos:]
        fields = []
        for nib in (head >> 4, head & 0x0F):
            if nib == 15:
                raise FrameError("reserved option nibble 15")
            if nib == 13:
                if pos + 1 > end:
                    raise FrameError("truncated option header")
                nib = body[pos] + 13
                pos += 1
            elif nib == 14:
                if pos + 2 > end:
                    raise FrameError("truncated option header")
                nib = int.from_bytes(body[pos : pos + 2], "big") + 269
                pos += 2
            fields.append(nib)
        number += fields[0]
        if pos + fields[1] > end:
            raise FrameError("truncated option value")
        options.append((number, body[pos : pos + fields[1]]))
        pos += fields[1]
    return options, b""


def _parse_signal(code: int, token: bytes, body: bytes) -> Signal:
    options, payload = _walk_options(body)
    try:
        text = payload.decode()
    except UnicodeDecodeError:
        raise FrameError("signal diagnostic payload is not UTF-8") from None
    if code == CSM:
        size: int | None = None
        bwt = False
        for number, value in options:
            if number == 2:
                size = int.from_bytes(value, "big")
            elif number == 4:
                bwt = True
            elif number & 1:
                raise FrameError(f"unknown critical CSM option {number}")
        return Capabilities(size, bwt)
    if code in (PING, PONG):
        custody = any(number == 2 for number, _ in options)
        _refuse_critical(options, (2,))
        return Ping(token, custody) if code == PING else Pong(token, custody)
    if code == RELEASE:
        _refuse_critical(options, (2, 4))
        alts = tuple(v.decode(errors="replace") for n, v in options if n == 2)
        holds = [int.from_bytes(v, "big") for n, v in options if n == 4]
        return Release(alts, holds[0] if holds else None, text)
    if code == ABORT:
        _refuse_critical(options, (2,))
        bad = [int.from_bytes(v, "big") for n, v in options if n == 2]
        return Abort(text, bad[0] if bad else None)
    raise FrameError(f"unknown signaling code 7.{code & 0x1F:02d}")


def _refuse_critical(options: list[tuple[int, bytes]], known: tuple[int, ...]) -> None:
    for number, _ in options:
        if number & 1 and number not in known:
            raise FrameError(f"unknown critical signal option {number}")

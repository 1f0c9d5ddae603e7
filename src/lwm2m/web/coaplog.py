"""CoAP message log events (``COAPLOG`` on ``/api/event?ep=``), after Leshan's demo.

The server's CoAP endpoints report every message through a tracer
(:meth:`lwm2m.coap.endpoint.Endpoint.add_message_tracer`); this module turns
one message into the JSON of one event. Only a stream asked for one client
installs a tracer, so the CoAP hot path stays free when nobody looks.
"""

from __future__ import annotations

from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.message import Block, Message
from lwm2m.web.backend import JsonObject, WebEvent

__all__ = ["COAPLOG", "coap_log_event", "coap_log_json", "options_text", "payload_text"]

COAPLOG = "COAPLOG"

#: Typed option fields in option-number order, with their RFC names.
_OPTION_FIELDS: tuple[tuple[str, str], ...] = (
    ("if_match", "If-Match"),
    ("uri_host", "Uri-Host"),
    ("etag", "ETag"),
    ("if_none_match", "If-None-Match"),
    ("observe", "Observe"),
    ("uri_port", "Uri-Port"),
    ("location_path", "Location-Path"),
    ("uri_path", "Uri-Path"),
    ("content_format", "Content-Format"),
    ("max_age", "Max-Age"),
    ("uri_query", "Uri-Query"),
    ("accept", "Accept"),
    ("location_query", "Location-Query"),
    ("block2", "Block2"),
    ("block1", "Block1"),
    ("size2", "Size2"),
    ("proxy_uri", "Proxy-Uri"),
    ("proxy_scheme", "Proxy-Scheme"),
    ("size1", "Size1"),
)

#: Longest payload shown; a log line is for reading, not for transferring firmware.
MAX_PAYLOAD_CHARS = 1024


def _value_text(value: object) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, Block):
        return f"{value.num}{'+' if value.more else ''}/{value.size}"
    if isinstance(value, str):
        return f'"{value}"'
    return str(value)


def options_text(msg: Message) -> str:
    """The options as one line, e.g. ``Uri-Path: "3", "0" | Accept: 11543``."""
    parts: list[str] = []
    for attr, name in _OPTION_FIELDS:
        value = getattr(msg, attr)
        if value is None or value == () or value is False:
            continue
        if value is True:
            parts.append(name)
        elif isinstance(value, tuple):
            parts.append(f"{name}: {', '.join(_value_text(v) for v in value)}")
        else:
            parts.append(f"{name}: {_value_text(value)}")
    for number, raw in msg.other_options:
        parts.append(f"Option {number}: {_value_text(raw)}")
    return " | ".join(parts)


def payload_text(payload: bytes) -> str:
    """Printable UTF-8 as text, anything else as ``Hex:`` and the bytes (both cut at a bound)."""
    if not payload:
        return ""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and all(c.isprintable() or c in "\r\n\t" for c in text):
        if len(text) > MAX_PAYLOAD_CHARS:
            return text[:MAX_PAYLOAD_CHARS] + f"… ({len(payload)} bytes)"
        return text
    shown = payload[: MAX_PAYLOAD_CHARS // 2]
    more = f"… ({len(payload)} bytes)" if len(shown) < len(payload) else ""
    return "Hex:" + shown.hex() + more


def _code_text(code: int) -> str:
    if 1 <= code <= 31:
        named = Code.from_byte(code)
        return named.name if isinstance(named, Code) else f"0.{code:02d}"
    return f"{code >> 5}.{code & 0x1F:02d}"


def coap_log_json(direction: str, msg: Message, endpoint: str, timestamp_ms: int) -> JsonObject:
    """One message as Leshan's COAPLOG data (plus ``codeName`` for responses)."""
    code = int(msg.code)
    data: JsonObject = {
        "ep": endpoint,
        "timestamp": timestamp_ms,
        "incoming": direction == "in",
        "type": MessageType(msg.type).name,
        "code": _code_text(code),
        "mId": msg.mid,
        "token": msg.token.hex(),
        "options": options_text(msg),
        "payload": payload_text(msg.payload),
    }
    if code >= 64:
        named = Code.from_byte(code)
        if isinstance(named, Code):
            data["codeName"] = named.name
    return data


def coap_log_event(direction: str, msg: Message, endpoint: str, timestamp_ms: int) -> WebEvent:
    """A COAPLOG web event: the UI's CoAP message log of one client."""
    return WebEvent(COAPLOG, endpoint, coap_log_json(direction, msg, endpoint, timestamp_ms))

"""COAPLOG event data: one CoAP message as Leshan's demo shows it."""

from __future__ import annotations

from lwm2m.coap.codes import Code, MessageType
from lwm2m.coap.message import Block, Message
from lwm2m.web.coaplog import MAX_PAYLOAD_CHARS, coap_log_event, options_text, payload_text


def test_request_and_response_fields() -> None:
    get = Message(
        Code.GET, MessageType.CON, 513, b"\x01\xab", uri_path=("3", "0", "9"), accept=11543
    )
    event = coap_log_event("out", get, "dev", 1700000000123)
    assert event.kind == "COAPLOG" and event.endpoint == "dev"
    assert event.data == {
        "ep": "dev",
        "timestamp": 1700000000123,
        "incoming": False,
        "type": "CON",
        "code": "GET",
        "mId": 513,
        "token": "01ab",
        "options": 'Uri-Path: "3", "0", "9" | Accept: 11543',
        "payload": "",
    }
    ack = Message(
        Code.CONTENT,
        MessageType.ACK,
        513,
        b"\x01\xab",
        b"42",
        content_format=0,
        etag=(b"\xbe\xef",),
        block2=Block(1, True, 6),
        if_none_match=True,
        other_options=((2048, b"x"),),
    )
    data = coap_log_event("in", ack, "dev", 1).data
    assert (data["incoming"], data["type"], data["code"], data["codeName"]) == (
        True,
        "ACK",
        "2.05",
        "CONTENT",
    )
    assert data["payload"] == "42"
    assert options_text(ack) == (
        "ETag: 0xbeef | If-None-Match | Content-Format: 0 | Block2: 1+/1024 | Option 2048: 0x78"
    )
    empty = coap_log_event("in", Message(Code.EMPTY, MessageType.RST, 7), "dev", 1).data
    assert (empty["code"], empty["type"], "codeName" in empty) == ("0.00", "RST", False)
    odd = coap_log_event("in", Message(0x9F, MessageType.NON), "dev", 1).data  # 4.31: no name
    assert odd["code"] == "4.31" and "codeName" not in odd


def test_payload_text_or_hex_and_bounded() -> None:
    assert payload_text(b"hello\nworld") == "hello\nworld"
    assert payload_text(b"\xc8\x00\x14") == "Hex:c80014"
    assert payload_text(b"a\x00b") == "Hex:610062"  # valid UTF-8 but not printable
    long_text = payload_text(b"t" * 5000)
    assert long_text.startswith("t" * MAX_PAYLOAD_CHARS) and long_text.endswith("(5000 bytes)")
    long_bin = payload_text(b"\xff" * 5000)
    assert long_bin.startswith("Hex:ffff") and long_bin.endswith("(5000 bytes)")
    assert len(long_bin) < 2 * MAX_PAYLOAD_CHARS

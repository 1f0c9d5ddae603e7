"""The CoAP message value type.

Known options are decoded into typed fields at the parse edge so that nothing
above the codec handles option numbers or raw bytes; options we have no field
for travel in ``other_options`` as ``(number, raw value)`` pairs.

The codec (``encode``/``decode``) lives in :mod:`lwm2m.coap.codec`.
"""

from __future__ import annotations

from dataclasses import replace

from lwm2m.coap.codes import Code, MessageType, is_request_code, is_response_code
from lwm2m.coap.values import value_class


@value_class
class Block:
    """A Block1/Block2 option value (RFC 7959): block number, more flag, size exponent."""

    num: int
    more: bool
    szx: int

    @property
    def size(self) -> int:
        return 1 << (self.szx + 4)

    @property
    def offset(self) -> int:
        return self.num * self.size


@value_class
class Message:
    """One CoAP message; immutable (see :mod:`lwm2m.coap.values` for why not ``frozen=True``)."""

    code: Code | int
    type: MessageType = MessageType.CON
    mid: int = 0
    token: bytes = b""
    payload: bytes = b""
    # Options with typed fields (RFC 7252, 7641, 7959). Repeatable ones are tuples.
    if_match: tuple[bytes, ...] = ()
    uri_host: str | None = None
    etag: tuple[bytes, ...] = ()
    if_none_match: bool = False
    observe: int | None = None
    uri_port: int | None = None
    location_path: tuple[str, ...] = ()
    uri_path: tuple[str, ...] = ()
    content_format: int | None = None
    max_age: int | None = None
    uri_query: tuple[str, ...] = ()
    accept: int | None = None
    location_query: tuple[str, ...] = ()
    block2: Block | None = None
    block1: Block | None = None
    size2: int | None = None
    proxy_uri: str | None = None
    proxy_scheme: str | None = None
    size1: int | None = None
    other_options: tuple[tuple[int, bytes], ...] = ()

    def with_(self, **changes: object) -> Message:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def is_request(self) -> bool:
        return is_request_code(self.code)

    @property
    def is_response(self) -> bool:
        return is_response_code(self.code)

    @property
    def is_empty(self) -> bool:
        return self.code == Code.EMPTY

    def query(self) -> dict[str, str]:
        """Uri-Query as a dict (``key=value``; a bare ``key`` maps to ``""``); later keys win."""
        result: dict[str, str] = {}
        for item in self.uri_query:
            key, _, value = item.partition("=")
            result[key] = value
        return result

    @property
    def path_str(self) -> str:
        return "/" + "/".join(self.uri_path)

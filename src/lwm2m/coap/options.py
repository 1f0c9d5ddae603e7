"""The CoAP option registry (RFC 7252 5.10, 7641, 7959, 7967, 8613, 9175).

Each known option has a format, allowed value lengths, whether it may repeat,
and (for the ones :class:`~lwm2m.coap.message.Message` has a typed field for)
the field name.  The codec turns this registry into flat lookup tables once at
import so the per-option work on the hot path is one dict lookup.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class OptionFormat(enum.IntEnum):
    EMPTY = 0
    OPAQUE = 1
    UINT = 2
    STRING = 3


class OptionNumber(enum.IntEnum):
    IF_MATCH = 1
    URI_HOST = 3
    ETAG = 4
    IF_NONE_MATCH = 5
    OBSERVE = 6
    URI_PORT = 7
    LOCATION_PATH = 8
    OSCORE = 9
    URI_PATH = 11
    CONTENT_FORMAT = 12
    MAX_AGE = 14
    URI_QUERY = 15
    HOP_LIMIT = 16
    ACCEPT = 17
    Q_BLOCK1 = 19
    LOCATION_QUERY = 20
    BLOCK2 = 23
    BLOCK1 = 27
    SIZE2 = 28
    Q_BLOCK2 = 31
    PROXY_URI = 35
    PROXY_SCHEME = 39
    SIZE1 = 60
    ECHO = 252
    NO_RESPONSE = 258
    REQUEST_TAG = 292

    @property
    def is_critical(self) -> bool:
        return is_critical(self.value)

    @property
    def is_unsafe(self) -> bool:
        return bool(self.value & 2)

    @property
    def is_no_cache_key(self) -> bool:
        return (self.value & 0x1E) == 0x1C


def is_critical(number: int) -> bool:
    """Odd option numbers are critical: an endpoint that does not know one must reject."""
    return bool(number & 1)


@dataclass(frozen=True, slots=True)
class OptionSpec:
    number: OptionNumber
    format: OptionFormat
    min_length: int
    max_length: int
    repeatable: bool
    field: str | None  # Message attribute, or None: the option travels in other_options


_F = OptionFormat
_N = OptionNumber

OPTIONS: dict[int, OptionSpec] = {
    spec.number: spec
    for spec in (
        OptionSpec(_N.IF_MATCH, _F.OPAQUE, 0, 8, True, "if_match"),
        OptionSpec(_N.URI_HOST, _F.STRING, 1, 255, False, "uri_host"),
        OptionSpec(_N.ETAG, _F.OPAQUE, 1, 8, True, "etag"),
        OptionSpec(_N.IF_NONE_MATCH, _F.EMPTY, 0, 0, False, "if_none_match"),
        OptionSpec(_N.OBSERVE, _F.UINT, 0, 3, False, "observe"),
        OptionSpec(_N.URI_PORT, _F.UINT, 0, 2, False, "uri_port"),
        OptionSpec(_N.LOCATION_PATH, _F.STRING, 0, 255, True, "location_path"),
        OptionSpec(_N.OSCORE, _F.OPAQUE, 0, 255, False, None),
        OptionSpec(_N.URI_PATH, _F.STRING, 0, 255, True, "uri_path"),
        OptionSpec(_N.CONTENT_FORMAT, _F.UINT, 0, 2, False, "content_format"),
        OptionSpec(_N.MAX_AGE, _F.UINT, 0, 4, False, "max_age"),
        OptionSpec(_N.URI_QUERY, _F.STRING, 0, 255, True, "uri_query"),
        OptionSpec(_N.HOP_LIMIT, _F.UINT, 1, 1, False, None),
        OptionSpec(_N.ACCEPT, _F.UINT, 0, 2, False, "accept"),
        OptionSpec(_N.Q_BLOCK1, _F.UINT, 0, 3, False, None),
        OptionSpec(_N.LOCATION_QUERY, _F.STRING, 0, 255, True, "location_query"),
        OptionSpec(_N.BLOCK2, _F.UINT, 0, 3, False, "block2"),
        OptionSpec(_N.BLOCK1, _F.UINT, 0, 3, False, "block1"),
        OptionSpec(_N.SIZE2, _F.UINT, 0, 4, False, "size2"),
        OptionSpec(_N.Q_BLOCK2, _F.UINT, 0, 3, False, None),
        OptionSpec(_N.PROXY_URI, _F.STRING, 1, 1034, False, "proxy_uri"),
        OptionSpec(_N.PROXY_SCHEME, _F.STRING, 1, 255, False, "proxy_scheme"),
        OptionSpec(_N.SIZE1, _F.UINT, 0, 4, False, "size1"),
        OptionSpec(_N.ECHO, _F.OPAQUE, 1, 40, False, None),
        OptionSpec(_N.NO_RESPONSE, _F.UINT, 0, 1, False, None),
        OptionSpec(_N.REQUEST_TAG, _F.OPAQUE, 0, 8, True, None),
    )
}
"""Every option number this stack knows, keyed by number."""

TYPED_OPTIONS: dict[int, OptionSpec] = {n: s for n, s in OPTIONS.items() if s.field is not None}
"""The subset decoded into typed :class:`Message` fields."""

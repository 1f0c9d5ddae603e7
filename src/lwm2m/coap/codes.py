"""CoAP message types, method and response codes (RFC 7252 names).

Content-Format numbers are an LwM2M matter here: :class:`lwm2m.formats.media.ContentFormat`.
"""

from __future__ import annotations

import enum


class MessageType(enum.IntEnum):
    CON = 0
    NON = 1
    ACK = 2
    RST = 3


class Code(enum.IntEnum):
    """Codes as the byte on the wire: class << 5 | detail."""

    EMPTY = 0
    GET = 1
    POST = 2
    PUT = 3
    DELETE = 4
    FETCH = 5
    PATCH = 6
    IPATCH = 7

    CREATED = 65  # 2.01
    DELETED = 66  # 2.02
    VALID = 67  # 2.03
    CHANGED = 68  # 2.04
    CONTENT = 69  # 2.05
    CONTINUE = 95  # 2.31

    BAD_REQUEST = 128  # 4.00
    UNAUTHORIZED = 129  # 4.01
    BAD_OPTION = 130  # 4.02
    FORBIDDEN = 131  # 4.03
    NOT_FOUND = 132  # 4.04
    METHOD_NOT_ALLOWED = 133  # 4.05
    NOT_ACCEPTABLE = 134  # 4.06
    REQUEST_ENTITY_INCOMPLETE = 136  # 4.08
    CONFLICT = 137  # 4.09
    PRECONDITION_FAILED = 140  # 4.12
    REQUEST_ENTITY_TOO_LARGE = 141  # 4.13
    UNSUPPORTED_CONTENT_FORMAT = 143  # 4.15

    INTERNAL_SERVER_ERROR = 160  # 5.00
    NOT_IMPLEMENTED = 161  # 5.01
    BAD_GATEWAY = 162  # 5.02
    SERVICE_UNAVAILABLE = 163  # 5.03
    GATEWAY_TIMEOUT = 164  # 5.04
    PROXYING_NOT_SUPPORTED = 165  # 5.05

    @property
    def class_(self) -> int:
        return self.value >> 5

    @property
    def detail(self) -> int:
        return self.value & 0x1F

    @property
    def is_request(self) -> bool:
        return 1 <= self.value <= 31

    @property
    def is_response(self) -> bool:
        return 64 <= self.value <= 191

    @property
    def is_success(self) -> bool:
        return self.class_ == 2

    @property
    def dotted(self) -> str:
        """``4.04`` style."""
        return f"{self.class_}.{self.detail:02d}"

    def __str__(self) -> str:
        return f"{self.dotted} {self.name.replace('_', ' ').title()}"

    @classmethod
    def from_byte(cls, value: int) -> Code | int:
        """The enum member, or the raw int for a code we have no name for."""
        try:
            return cls(value)
        except ValueError:
            return value

    @classmethod
    def from_dotted(cls, text: str) -> Code:
        cls_s, _, detail_s = text.partition(".")
        return cls((int(cls_s) << 5) | int(detail_s))

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
        return code_class(self.value)

    @property
    def detail(self) -> int:
        return self.value & 0x1F

    @property
    def is_request(self) -> bool:
        return is_request_code(self.value)

    @property
    def is_response(self) -> bool:
        return is_response_code(self.value)

    @property
    def is_success(self) -> bool:
        return is_success_code(self.value)

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


class CodeClass(enum.IntEnum):
    """The class digit of a code (RFC 7252 12.1): the ``4`` of 4.04."""

    REQUEST = 0  # also the Empty message (0.00)
    SUCCESS = 2
    CLIENT_ERROR = 4
    SERVER_ERROR = 5


def code_class(code: int) -> int:
    """The class digit of ``code`` (a :class:`CodeClass` value, or a reserved one)."""
    return code >> 5


def is_request_code(code: int) -> bool:
    """A method code: class 0 without Empty (0.00)."""
    return code >> 5 == CodeClass.REQUEST and code != Code.EMPTY


def is_response_code(code: int) -> bool:
    """A response code: classes 2, 4 and 5, and the reserved class 3 between them.

    Class 3 is not assigned; it still reads as a response so that a peer using
    it is answered as for any unknown response code rather than as a request.
    """
    return CodeClass.SUCCESS <= code >> 5 <= CodeClass.SERVER_ERROR


def is_success_code(code: int) -> bool:
    """2.xx: a request done, an observation on (RFC 7641 4.2: anything else ends it)."""
    return code >> 5 == CodeClass.SUCCESS

"""Content-Format numbers the LwM2M formats use (IANA CoAP Content-Formats registry).

The one enum of them: the CoAP layer carries a Content-Format option as a
plain number and never interprets it, so the roles take this enum too.
"""

from __future__ import annotations

import enum


class ContentFormat(enum.IntEnum):
    TEXT = 0
    LINK_FORMAT = 40
    OCTET_STREAM = 42
    CBOR = 60
    SENML_JSON = 110
    SENML_CBOR = 112
    LWM2M_TLV = 11542
    LWM2M_JSON = 11543
    LWM2M_CBOR = 11544
    # Numbers used before IANA registration; LwM2M 1.0 devices still send them.
    OMA_TLV_OLD = 1542
    OMA_JSON_OLD = 1543

    @property
    def canonical(self) -> ContentFormat:
        """The registered number for a legacy alias (1542 -> 11542, 1543 -> 11543)."""
        return _ALIASES.get(self, self)

    @property
    def media_type(self) -> str:
        return _MEDIA_TYPES[self.canonical]

    @classmethod
    def parse(cls, value: int | str) -> ContentFormat:
        """From a number, a media type or a short name (``tlv``, ``senml+cbor`` ...)."""
        if isinstance(value, int) and not isinstance(value, bool):
            try:
                return cls(value)
            except ValueError:
                raise ValueError(f"unsupported content format {value}") from None
        text = str(value).strip().lower()
        if text.isdigit():
            return cls.parse(int(text))
        for fmt, media in _MEDIA_TYPES.items():
            if text == media:
                return fmt
        if text in SHORT_NAMES:
            return SHORT_NAMES[text]
        raise ValueError(f"unknown content format {value!r}")


_ALIASES = {
    ContentFormat.OMA_TLV_OLD: ContentFormat.LWM2M_TLV,
    ContentFormat.OMA_JSON_OLD: ContentFormat.LWM2M_JSON,
}

_MEDIA_TYPES = {
    ContentFormat.TEXT: "text/plain;charset=utf-8",
    ContentFormat.LINK_FORMAT: "application/link-format",
    ContentFormat.OCTET_STREAM: "application/octet-stream",
    ContentFormat.CBOR: "application/cbor",
    ContentFormat.SENML_JSON: "application/senml+json",
    ContentFormat.SENML_CBOR: "application/senml+cbor",
    ContentFormat.LWM2M_TLV: "application/vnd.oma.lwm2m+tlv",
    ContentFormat.LWM2M_JSON: "application/vnd.oma.lwm2m+json",
    ContentFormat.LWM2M_CBOR: "application/vnd.oma.lwm2m+cbor",
}

#: names used by the CLI and the REST API
SHORT_NAMES: dict[str, ContentFormat] = {
    "text": ContentFormat.TEXT,
    "link": ContentFormat.LINK_FORMAT,
    "opaque": ContentFormat.OCTET_STREAM,
    "senml+json": ContentFormat.SENML_JSON,
    "senml-json": ContentFormat.SENML_JSON,
    "senml+cbor": ContentFormat.SENML_CBOR,
    "senml-cbor": ContentFormat.SENML_CBOR,
    "tlv": ContentFormat.LWM2M_TLV,
    "json": ContentFormat.LWM2M_JSON,
    "cbor": ContentFormat.LWM2M_CBOR,
    "plain-cbor": ContentFormat.CBOR,
}

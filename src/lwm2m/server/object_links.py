"""The Register/Update payload, interpreted into the record the stores keep.

Parsing and the LwM2M reading of the links (root path with
``rt="oma.lwm2m"``, ``ct=``, ``ver=``, instances) are the shared
:mod:`lwm2m.formats.link_format`; this module turns its answer into the
compact :class:`ObjectLinks` value kept with every registration. The raw
text is kept too, so link parameters the server ignores are not lost.

Results are interned by payload text: fleets of identical devices send
identical payloads, and sharing one parsed value keeps a registration small
(see bench/server.py, memory per registration).
"""

from __future__ import annotations

import functools

from lwm2m.formats.errors import FormatError
from lwm2m.formats.link_format import Link, parse_links, registration_objects
from lwm2m.stores.records import ObjectLinks, RegisteredObject

MAX_LINKS_PAYLOAD = 16 * 1024

__all__ = ["Link", "LinkFormatError", "decode_links_payload", "interpret_links", "parse_discover"]


class LinkFormatError(ValueError):
    """A payload that is not valid CoRE Link Format (or not LwM2M object links)."""


@functools.lru_cache(maxsize=4096)
def interpret_links(text: str) -> ObjectLinks:
    """Parse and interpret a Register/Update payload (cached: the result is immutable)."""
    if len(text) > MAX_LINKS_PAYLOAD:
        raise LinkFormatError(
            f"payload is {len(text)} characters, the maximum is {MAX_LINKS_PAYLOAD}"
        )
    try:
        found = registration_objects(parse_links(text))
    except FormatError as exc:
        raise LinkFormatError(str(exc)) from None
    return ObjectLinks(
        text=text,
        root_path=found.root_path.rstrip("/") or "/",
        objects=tuple(
            RegisteredObject(oid, found.versions.get(oid), found.instances[oid])
            for oid in found.object_ids
        ),
        content_formats=tuple(sorted(found.content_formats)),
    )


def decode_links_payload(payload: bytes) -> ObjectLinks:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise LinkFormatError("payload is not UTF-8") from None
    return interpret_links(text)


def parse_discover(payload: bytes) -> tuple[Link, ...]:
    """The links of a Discover answer."""
    try:
        return tuple(parse_links(payload.decode("utf-8")))
    except (UnicodeDecodeError, FormatError) as exc:
        raise LinkFormatError(str(exc)) from None

"""The Register/Update payload: CoRE Link Format (RFC 6690) read the LwM2M way.

``</>;rt="oma.lwm2m";ct=110,</1/0>,</3>;ver=1.1,</3/0>`` announces the root
path (an alternate one such as ``</lwm2m>`` moves every object below it), the
content formats the client supports (LwM2M 1.1 ``ct``), object versions
(``ver``) and the instances present. Link parameters the server does not use
are kept in the raw text but ignored; links that are not object or instance
paths below the root are ignored as well (RFC 6690 allows any target). What
is not link-format at all is rejected with :class:`LinkFormatError`.

Parsed payloads are interned: fleets of identical devices send identical
payloads, and sharing one parsed value keeps a registration small.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from lwm2m.model.path import Path, PathError
from lwm2m.stores.records import ObjectLinks, RegisteredObject

MAX_LINKS_PAYLOAD = 16 * 1024


class LinkFormatError(ValueError):
    """A payload that is not valid CoRE Link Format."""


@dataclass(frozen=True, slots=True)
class Link:
    target: str
    params: tuple[tuple[str, str | None], ...] = ()

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None

    def has(self, name: str) -> bool:
        return any(key == name for key, _ in self.params)


def parse_link_format(text: str) -> list[Link]:
    """Split RFC 6690 ``link-value *("," link-value)``; quoted strings may hold , and ;."""
    links: list[Link] = []
    i, n = 0, len(text)
    if text.strip() == "":
        return links
    while True:
        while i < n and text[i] in " \t\r\n":
            i += 1
        if i >= n or text[i] != "<":
            raise LinkFormatError(f"expected '<' at character {i}")
        end = text.find(">", i + 1)
        if end < 0:
            raise LinkFormatError(f"unterminated '<' at character {i}")
        target = text[i + 1 : end]
        if any(c in target for c in '<",; \t\r\n'):
            raise LinkFormatError(f"invalid character in link target {target!r}")
        i = end + 1
        params: list[tuple[str, str | None]] = []
        while i < n and text[i] == ";":
            i += 1
            start = i
            while i < n and (text[i].isalnum() or text[i] in "!#$&+-.^_`|~*"):
                i += 1
            name = text[start:i]
            if not name:
                raise LinkFormatError(f"empty link parameter name at character {start}")
            value: str | None = None
            if i < n and text[i] == "=":
                i += 1
                if i < n and text[i] == '"':
                    i += 1
                    chars: list[str] = []
                    while True:
                        if i >= n:
                            raise LinkFormatError("unterminated quoted string")
                        c = text[i]
                        if c == "\\" and i + 1 < n:
                            chars.append(text[i + 1])
                            i += 2
                            continue
                        if c == '"':
                            i += 1
                            break
                        chars.append(c)
                        i += 1
                    value = "".join(chars)
                else:
                    start = i
                    while i < n and text[i] not in ",;":
                        i += 1
                    value = text[start:i]
                    if value == "" or any(c in value for c in ' \t"<>'):
                        raise LinkFormatError(
                            f"invalid value for link parameter {name!r} at character {start}"
                        )
            params.append((name, value))
        links.append(Link(target, tuple(params)))
        if i >= n:
            return links
        if text[i] != ",":
            raise LinkFormatError(f"expected ',' or ';' at character {i}")
        i += 1


def _parse_ct(value: str | None) -> tuple[int, ...]:
    if value is None:
        return ()
    formats: list[int] = []
    for item in value.split():
        if not item.isascii() or not item.isdigit() or int(item) > 65535:
            raise LinkFormatError(f"ct={value!r} is not a list of content format numbers")
        formats.append(int(item))
    return tuple(formats)


def _relative(target: str, root: str) -> str | None:
    """The target below ``root``, or None when it is elsewhere."""
    if root == "/":
        return target
    if target == root:
        return "/"
    if target.startswith(root + "/"):
        return target[len(root) :]
    return None


@functools.lru_cache(maxsize=4096)
def interpret_links(text: str) -> ObjectLinks:
    """Parse and interpret a Register/Update payload (cached by text: the result is immutable)."""
    if len(text) > MAX_LINKS_PAYLOAD:
        raise LinkFormatError(
            f"payload is {len(text)} characters, the maximum is {MAX_LINKS_PAYLOAD}"
        )
    links = parse_link_format(text)
    root = "/"
    content_formats: tuple[int, ...] = ()
    for link in links:
        if link.param("rt") == "oma.lwm2m":
            target = link.target.rstrip("/") or "/"
            if not target.startswith("/"):
                raise LinkFormatError(f"root path {link.target!r} is not absolute")
            root = target
            content_formats = _parse_ct(link.param("ct"))
            break
    objects: dict[int, tuple[str | None, list[int]]] = {}
    for link in links:
        if link.param("rt") == "oma.lwm2m":
            continue
        relative = _relative(link.target, root)
        if relative is None or relative == "/":
            continue
        try:
            path = Path.parse(relative)
        except PathError:
            continue  # not an LwM2M object link: allowed, ignored
        if path.depth > 2:
            continue
        assert path.object_id is not None
        version, instances = objects.get(path.object_id, (None, []))
        if path.depth == 1:
            ver = link.param("ver")
            if ver is not None:
                version = ver
        else:
            assert path.instance_id is not None
            if path.instance_id not in instances:
                instances.append(path.instance_id)
        objects[path.object_id] = (version, instances)
    return ObjectLinks(
        text=text,
        root_path=root,
        objects=tuple(
            RegisteredObject(oid, ver, tuple(sorted(inst)))
            for oid, (ver, inst) in sorted(objects.items())
        ),
        content_formats=content_formats,
    )


def decode_links_payload(payload: bytes) -> ObjectLinks:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise LinkFormatError("payload is not UTF-8") from None
    return interpret_links(text)

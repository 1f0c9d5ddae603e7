"""CoRE Link Format (Content-Format 40, RFC 6690) and what LwM2M puts in it.

Grammar (RFC 6690 section 2, with RFC 5987 ``parmname``)::

    Link       = [ link-value *( "," link-value ) ]
    link-value = "<" URI-Reference ">" *( ";" link-param )
    link-param = parmname [ "=" ( ptoken / quoted-string ) ]
    ptoken     = 1*( "!" / "#" / "$" / "%" / "&" / "'" / "(" / ")" / "*" / "+" / "-"
                   / "." / "/" / DIGIT / ":" / "<" / "=" / ">" / "?" / "@" / ALPHA
                   / "[" / "]" / "^" / "_" / "`" / "{" / "|" / "}" / "~" )
    quoted-string = DQUOTE *( qdtext / "\\" CHAR ) DQUOTE

No white space is allowed anywhere. Parameters keep their order and
repetitions; a quoted value is stored unquoted (with escapes resolved).

LwM2M uses it for Register/Update payloads (``</>;rt="oma.lwm2m";ct=110,
</1/0>,</3>;ver=1.1``), Discover answers (``</3/0/1>;pmin=10;dim=3``) and
Bootstrap-Discover; :func:`registration_objects` and :func:`discover_links`
give those meanings.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from lwm2m.formats.errors import FormatError, guard
from lwm2m.model.path import Path, PathError

_ALNUM = string.ascii_letters + string.digits
PTOKEN_CHARS = frozenset(_ALNUM + "!#$%&'()*+-./:<=>?@[]^_`{|}~")
PARMNAME_CHARS = frozenset(_ALNUM + "!#$&+-.^_`|~")
#: parameters whose values we always quote when writing (RFC 6690 requires it for
#: anchor/title; rt/if are conventionally quoted by LwM2M implementations)
ALWAYS_QUOTED = frozenset({"anchor", "title", "rt", "if"})

Param = tuple[str, str | None]


@dataclass(frozen=True, slots=True)
class Link:
    target: str
    params: tuple[Param, ...] = ()

    def get(self, name: str) -> str | None:
        """The first value of ``name`` (``None`` if absent or valueless)."""
        for key, value in self.params:
            if key == name:
                return value
        return None

    def has(self, name: str) -> bool:
        return any(key == name for key, _ in self.params)

    def get_all(self, name: str) -> list[str | None]:
        return [value for key, value in self.params if key == name]

    def __str__(self) -> str:
        return format_link(self)


@guard
def parse_links(text: str | bytes) -> list[Link]:
    """Parse a link-format document; raises :class:`FormatError` with the offset."""
    if isinstance(text, bytes | bytearray | memoryview):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FormatError(f"byte {exc.start}: invalid UTF-8 in link format") from None
    links: list[Link] = []
    pos, end = 0, len(text)
    if end == 0:
        return links
    while True:
        if pos >= end or text[pos] != "<":
            raise FormatError(f"link format offset {pos}: expected '<'")
        close = text.find(">", pos + 1)
        if close < 0:
            raise FormatError(f"link format offset {pos}: unterminated '<'")
        target = text[pos + 1 : close]
        for i, ch in enumerate(target):
            if ch <= " " or ch in '<"\x7f':
                raise FormatError(f"link format offset {pos + 1 + i}: {ch!r} not allowed in a URI")
        pos = close + 1
        params: list[Param] = []
        while pos < end and text[pos] == ";":
            pos += 1
            start = pos
            while pos < end and text[pos] in PARMNAME_CHARS:
                pos += 1
            name = text[start:pos]
            if not name:
                raise FormatError(f"link format offset {start}: expected a parameter name")
            if pos < end and text[pos] == "*":
                raise FormatError(
                    f"link format offset {pos}: extended (RFC 5987) values unsupported"
                )
            value: str | None = None
            if pos < end and text[pos] == "=":
                pos += 1
                if pos < end and text[pos] == '"':
                    value, pos = _quoted(text, pos)
                else:
                    start = pos
                    while pos < end and text[pos] in PTOKEN_CHARS:
                        pos += 1
                    if pos == start:
                        raise FormatError(f"link format offset {start}: empty parameter value")
                    value = text[start:pos]
            params.append((name.lower(), value))
        links.append(Link(target, tuple(params)))
        if pos == end:
            return links
        if text[pos] != ",":
            raise FormatError(f"link format offset {pos}: expected ',' or ';', got {text[pos]!r}")
        pos += 1


def _quoted(text: str, pos: int) -> tuple[str, int]:
    start = pos
    pos += 1
    out: list[str] = []
    end = len(text)
    while pos < end:
        ch = text[pos]
        if ch == '"':
            return "".join(out), pos + 1
        if ch == "\\":
            if pos + 1 >= end:
                break
            escaped = text[pos + 1]
            if (escaped < " " and escaped != "\t") or escaped == "\x7f":
                raise FormatError(
                    f"link format offset {pos + 1}: control character in quoted string"
                )
            out.append(escaped)
            pos += 2
            continue
        if (ch < " " and ch != "\t") or ch == "\x7f":
            raise FormatError(f"link format offset {pos}: control character in quoted string")
        out.append(ch)
        pos += 1
    raise FormatError(f"link format offset {start}: unterminated quoted string")


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_param(name: str, value: str | None) -> str:
    if not name or not set(name) <= PARMNAME_CHARS:
        raise FormatError(f"invalid link parameter name {name!r}")
    if value is None:
        return name
    if any((ch < " " and ch != "\t") or ch == "\x7f" for ch in value):
        raise FormatError(f"link parameter {name}: control character in value")
    if name in ALWAYS_QUOTED or not value or not set(value) <= PTOKEN_CHARS:
        return f"{name}={_quote(value)}"
    return f"{name}={value}"


def format_link(link: Link) -> str:
    if ">" in link.target or any(ch <= " " or ch in '<"' for ch in link.target):
        raise FormatError(f"invalid link target {link.target!r}")
    return "<" + link.target + ">" + "".join(";" + format_param(n, v) for n, v in link.params)


def format_links(links: Iterable[Link]) -> str:
    return ",".join(format_link(link) for link in links)


# --- LwM2M meanings ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegisteredObjects:
    """What a Register/Update payload says about the client.

    ``instances[o]`` lists the announced instances of object ``o`` (empty
    when only ``</o>`` was sent); ``versions[o]`` is its ``ver=``;
    ``params[path]`` keeps the other parameters of each object/instance link.
    """

    root_path: str = "/"
    content_formats: frozenset[int] = frozenset()
    instances: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    versions: Mapping[int, str] = field(default_factory=dict)
    params: Mapping[Path, tuple[Param, ...]] = field(default_factory=dict)
    root_params: tuple[Param, ...] = ()

    def __post_init__(self) -> None:
        for name in ("instances", "versions", "params"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    @property
    def object_ids(self) -> tuple[int, ...]:
        return tuple(sorted(self.instances))

    def paths(self) -> list[Path]:
        """Every announced object (without instances) and object instance."""
        result: list[Path] = []
        for obj in sorted(self.instances):
            insts = self.instances[obj]
            if insts:
                result.extend(Path(obj, i) for i in insts)
            else:
                result.append(Path(obj))
        return result


def _parse_ct(value: str | None, where: object) -> list[int]:
    if value is None or not value:
        raise FormatError(f"{where}: ct needs a value")
    result = []
    # RFC 7252 lists several formats space separated in quotes; some clients use commas
    for part in value.replace(",", " ").split(" "):
        if not part.isascii() or not part.isdigit() or int(part) > 65535:
            raise FormatError(f"{where}: ct {value!r} is not a list of content formats")
        result.append(int(part))
    return result


def _parse_version(value: str | None, where: object) -> str:
    parts = (value or "").split(".")
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() for p in parts):
        raise FormatError(f"{where}: ver {value!r} is not MAJOR.MINOR")
    return value  # type: ignore[return-value]


@guard
def registration_objects(links: Sequence[Link]) -> RegisteredObjects:
    """Interpret a Register/Update payload (LwM2M TS Core 1.1, 6.2.1 and 5.3.1).

    The link with ``rt="oma.lwm2m"`` (or, without one, a plain ``</>`` link)
    gives the alternate root path and the supported content formats
    (``ct=110`` or ``ct="60 110"``); other links are ``</o>`` or ``</o/i>``
    under that root, with ``ver=`` on object links.
    """
    root = "/"
    content_formats: list[int] = []
    root_params: tuple[Param, ...] = ()
    root_index = -1
    for index, link in enumerate(links):
        rts = " ".join(v or "" for v in link.get_all("rt")).split()
        if "oma.lwm2m" in rts:
            if root_index >= 0:
                raise FormatError(f'link {index}: more than one rt="oma.lwm2m" link')
            root_index = index
    if root_index < 0:
        root_index = next((i for i, link in enumerate(links) if link.target == "/"), -1)
    if root_index >= 0:
        link = links[root_index]
        root = link.target or "/"
        if not root.startswith("/"):
            raise FormatError(f"link {root_index}: root path {root!r} must start with '/'")
        root_params = link.params
        for value in link.get_all("ct"):
            content_formats.extend(_parse_ct(value, f"link {root_index}"))
    prefix = root.rstrip("/")
    instances: dict[int, list[int]] = {}
    versions: dict[int, str] = {}
    params: dict[Path, tuple[Param, ...]] = {}
    for index, link in enumerate(links):
        if index == root_index:
            continue
        where = f"link {index} <{link.target}>"
        target = link.target
        if prefix and not (target == prefix or target.startswith(prefix + "/")):
            raise FormatError(f"{where}: not under the root path {root!r}")
        rel = target[len(prefix) :] if prefix else target
        try:
            path = Path.parse(rel) if rel.startswith("/") else None
        except PathError as exc:
            raise FormatError(f"{where}: {exc}") from None
        if path is None or path.is_root or path.depth > 2:
            raise FormatError(f"{where}: expected </object> or </object/instance>")
        if path in params:
            raise FormatError(f"{where}: announced twice")
        assert path.object_id is not None
        insts = instances.setdefault(path.object_id, [])
        if path.instance_id is not None:
            insts.append(path.instance_id)
        other: list[Param] = []
        for name, value in link.params:
            if name == "ver":
                if path.instance_id is not None:
                    raise FormatError(f"{where}: ver belongs on the object link")
                versions[path.object_id] = _parse_version(value, where)
            else:
                other.append((name, value))
        params[path] = tuple(other)
    return RegisteredObjects(
        root_path=root,
        content_formats=frozenset(content_formats),
        instances={o: tuple(sorted(i)) for o, i in instances.items()},
        versions=versions,
        params=params,
        root_params=root_params,
    )


def registration_links(
    objects: Mapping[int, Iterable[int]],
    *,
    versions: Mapping[int, str] | None = None,
    content_formats: Iterable[int] = (),
    root_path: str = "/",
) -> str:
    """A Register payload: the root link (when needed) then ``</o>`` / ``</o/i>`` links."""
    links: list[Link] = []
    cts = sorted(set(content_formats))
    prefix = root_path.rstrip("/")
    if cts or prefix:
        root_params: list[Param] = [("rt", "oma.lwm2m")]
        if len(cts) == 1:
            root_params.append(("ct", str(cts[0])))
        elif cts:
            root_params.append(("ct", " ".join(str(c) for c in cts)))
        links.append(Link(root_path, tuple(root_params)))
    versions = versions or {}
    for obj in sorted(objects):
        insts = sorted(set(objects[obj]))
        ver = versions.get(obj)
        if ver is not None or not insts:
            links.append(Link(f"{prefix}/{obj}", (("ver", ver),) if ver else ()))
        links.extend(Link(f"{prefix}/{obj}/{i}") for i in insts)
    return format_links(links)


def discover_links(entries: Iterable[tuple[Path, Sequence[Param]]]) -> str:
    """A Discover / Bootstrap-Discover answer: ``</3/0/1>;pmin=10;dim=3,...``."""
    return format_links(Link(str(path), tuple(params)) for path, params in entries)


def link_paths(links: Iterable[Link], root_path: str = "/") -> list[tuple[Path, Link]]:
    """The LwM2M path of each link (Discover answers), skipping links outside the root."""
    prefix = root_path.rstrip("/")
    result: list[tuple[Path, Link]] = []
    for link in links:
        target = link.target
        if prefix:
            if not (target == prefix or target.startswith(prefix + "/")):
                continue
            target = target[len(prefix) :] or "/"
        try:
            result.append((Path.parse(target), link))
        except PathError as exc:
            raise FormatError(f"<{link.target}>: {exc}") from None
    return result

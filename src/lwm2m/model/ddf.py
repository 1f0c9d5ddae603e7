"""Loader for OMA DDF XML files (the OMNA LwM2M registry object definitions).

A DDF file holds ``<LWM2M>`` with one or more ``<Object>`` elements, each with
its ``<Resources>``/``<Item ID="…">`` list (schema: LWM2M-v1_1.xsd). We read
it with :mod:`xml.parsers.expat` directly because it gives line numbers and
lets us refuse every DTD feature: a DDF never needs a DOCTYPE, and rejecting
it rules out external entities and entity-expansion bombs.

Every problem is a :class:`DdfError` naming the file and line. Softer
problems (a reusable resource redefined with another type, an executable
resource with a data type) are *warnings*: reported to ``on_warning`` (or the
log) and turned into errors in strict mode.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from xml.parsers import expat

from lwm2m.model import reusable
from lwm2m.model.definitions import ObjectDef, ResourceDef
from lwm2m.model.types import Operations, ResourceType

logger = logging.getLogger(__name__)

_VERSION = re.compile(r"[0-9]{1,4}\.[0-9]{1,4}")
_DECIMAL = re.compile(r"[0-9]{1,5}")
_URN = re.compile(r"urn:oma:lwm2m:(oma|ext|x|ext-x):([0-9]{1,5})(?::([0-9]{1,4}\.[0-9]{1,4}))?")
# DDF Type texts (schema enumeration), compared case-insensitively.
_TYPES = {
    "string": ResourceType.STRING,
    "integer": ResourceType.INTEGER,
    "unsigned integer": ResourceType.UNSIGNED_INTEGER,
    "float": ResourceType.FLOAT,
    "boolean": ResourceType.BOOLEAN,
    "opaque": ResourceType.OPAQUE,
    "time": ResourceType.TIME,
    "objlnk": ResourceType.OBJLNK,
    "corelnk": ResourceType.CORELNK,
    "": ResourceType.NONE,
}
# The schema's Operations values; "WR" is a common misspelling of RW.
_OPERATIONS = {
    "": Operations.NONE,
    "R": Operations.R,
    "W": Operations.W,
    "RW": Operations.RW,
    "WR": Operations.RW,
    "E": Operations.E,
}


class DdfError(ValueError):
    """A DDF file that cannot be used; ``file`` and ``line`` say where (line 0: unknown)."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}" if line else f"{file}: {message}")
        self.file = file
        self.line = line
        self.message = message


@dataclass(frozen=True, slots=True)
class DdfWarning:
    """A doubtful but usable definition (an error in strict mode)."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


WarningHandler = Callable[[DdfWarning], None]


@dataclass(slots=True)
class _Element:
    tag: str
    attrs: dict[str, str]
    line: int
    children: list[_Element] = field(default_factory=list)
    chunks: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "".join(self.chunks).strip()


class _Refused(Exception):
    """Raised inside expat callbacks to stop parsing; carries the line."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def _parse_xml(data: bytes, name: str) -> _Element:
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[_Element] = []
    root: list[_Element] = []

    def refuse(what: str) -> Callable[..., None]:
        def handler(*_args: object) -> None:
            raise _Refused(parser.CurrentLineNumber, f"{what} is not allowed in a DDF file")

        return handler

    def start(tag: str, attrs: dict[str, str]) -> None:
        element = _Element(tag, attrs, parser.CurrentLineNumber)
        if stack:
            stack[-1].children.append(element)
        else:
            root.append(element)
        stack.append(element)

    def end(_tag: str) -> None:
        stack.pop()

    def chars(text: str) -> None:
        if stack:
            stack[-1].chunks.append(text)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = chars
    parser.StartDoctypeDeclHandler = refuse("a DOCTYPE declaration")
    parser.EntityDeclHandler = refuse("an ENTITY declaration")
    parser.UnparsedEntityDeclHandler = refuse("an ENTITY declaration")
    parser.NotationDeclHandler = refuse("a NOTATION declaration")
    parser.ExternalEntityRefHandler = refuse("an external entity reference")  # type: ignore[assignment]
    try:
        parser.Parse(data, True)
    except _Refused as exc:
        raise DdfError(name, exc.line, exc.message) from None
    except expat.ExpatError as exc:
        reason = expat.ErrorString(exc.code) if exc.code is not None else str(exc)
        raise DdfError(name, exc.lineno, f"not well-formed XML: {reason}") from None
    except (LookupError, UnicodeError) as exc:
        # A declared encoding Python does not know, or bytes it cannot decode.
        raise DdfError(name, parser.CurrentLineNumber, f"bad character encoding: {exc}") from None
    if not root:  # pragma: no cover - expat reports "no element found" first
        raise DdfError(name, 1, "no XML element found")
    return root[0]


class _ObjectReader:
    """Reads one ``<Object>``; collects warnings, raises :class:`DdfError`."""

    def __init__(self, name: str, warn: Callable[[int, str], None]) -> None:
        self.name = name
        self.warn = warn

    def error(self, line: int, message: str) -> DdfError:
        return DdfError(self.name, line, message)

    def fields(self, element: _Element, known: Iterable[str]) -> dict[str, _Element]:
        wanted = set(known)
        found: dict[str, _Element] = {}
        for child in element.children:
            if child.tag not in wanted:
                continue  # Description2 and future elements: ignored
            if child.tag in found:
                raise self.error(child.line, f"<{element.tag}> has more than one <{child.tag}>")
            found[child.tag] = child
        return found

    def required(self, found: dict[str, _Element], parent: _Element, tag: str) -> _Element:
        element = found.get(tag)
        if element is None:
            raise self.error(parent.line, f"<{parent.tag}> is missing <{tag}>")
        return element

    def choice(self, element: _Element, yes: str, no: str) -> bool:
        text = element.text
        if text.lower() == yes.lower():
            return True
        if text.lower() == no.lower():
            return False
        raise self.error(element.line, f"<{element.tag}> is {text!r}, expected {yes} or {no}")

    def read_object(self, element: _Element) -> ObjectDef:
        found = self.fields(
            element,
            (
                "Name",
                "Description1",
                "ObjectID",
                "ObjectURN",
                "LWM2MVersion",
                "ObjectVersion",
                "MultipleInstances",
                "Mandatory",
                "Resources",
            ),
        )
        id_el = self.required(found, element, "ObjectID")
        if not _DECIMAL.fullmatch(id_el.text) or int(id_el.text) > 65535:
            raise self.error(id_el.line, f"ObjectID {id_el.text!r} is not an integer 0-65535")
        object_id = int(id_el.text)
        name = self.required(found, element, "Name").text
        if not name:
            raise self.error(found["Name"].line, f"object {object_id} has an empty <Name>")
        multiple = self.choice(
            self.required(found, element, "MultipleInstances"), "Multiple", "Single"
        )
        mandatory = self.choice(self.required(found, element, "Mandatory"), "Mandatory", "Optional")
        urn = ""
        urn_version: str | None = None
        if "ObjectURN" in found and found["ObjectURN"].text:
            urn_el = found["ObjectURN"]
            urn = urn_el.text
            match = _URN.fullmatch(urn)
            if match is None:
                self.warn(urn_el.line, f"ObjectURN {urn!r} is not urn:oma:lwm2m:{{oma|ext|x}}:ID")
            else:
                if int(match.group(2)) != object_id:
                    raise self.error(
                        urn_el.line, f"ObjectURN {urn!r} does not match ObjectID {object_id}"
                    )
                urn_version = match.group(3)
        version = self.version(found.get("ObjectVersion"), urn_version or "1.0")
        if urn_version is not None and urn_version != version:
            self.warn(
                found["ObjectURN"].line,
                f"ObjectURN version {urn_version} differs from ObjectVersion {version}",
            )
        lwm2m_version = self.version(found.get("LWM2MVersion"), "1.0")
        resources_el = self.required(found, element, "Resources")
        resources = self.read_resources(object_id, resources_el)
        description = found["Description1"].text if "Description1" in found else ""
        return ObjectDef.build(
            object_id,
            name,
            multiple=multiple,
            mandatory=mandatory,
            resources=resources,
            version=version,
            lwm2m_version=lwm2m_version,
            urn=urn,
            description=description,
        )

    def version(self, element: _Element | None, default: str) -> str:
        if element is None or not element.text:
            return default
        if not _VERSION.fullmatch(element.text):
            raise self.error(
                element.line, f"<{element.tag}> {element.text!r} is not a MAJOR.MINOR version"
            )
        return element.text

    def read_resources(self, object_id: int, element: _Element) -> list[ResourceDef]:
        result: list[ResourceDef] = []
        seen: dict[int, int] = {}
        for item in element.children:
            if item.tag != "Item":
                raise self.error(item.line, f"unexpected <{item.tag}> in <Resources>")
            res = self.read_item(object_id, item)
            if res.id in seen:
                raise self.error(
                    item.line,
                    f"object {object_id}: duplicate resource ID {res.id} "
                    f"(first defined on line {seen[res.id]})",
                )
            seen[res.id] = item.line
            result.append(res)
        return result

    def read_item(self, object_id: int, item: _Element) -> ResourceDef:
        raw_id = item.attrs.get("ID")
        if raw_id is None:
            raise self.error(item.line, f"object {object_id}: <Item> without an ID attribute")
        raw_id = raw_id.strip()
        if not _DECIMAL.fullmatch(raw_id) or int(raw_id) > 65535:
            raise self.error(
                item.line, f"object {object_id}: resource ID {raw_id!r} is not an integer 0-65535"
            )
        rid = int(raw_id)
        where = f"resource {object_id}/{rid}"
        found = self.fields(
            item,
            (
                "Name",
                "Operations",
                "MultipleInstances",
                "Mandatory",
                "Type",
                "RangeEnumeration",
                "Units",
                "Description",
            ),
        )
        name = self.required(found, item, "Name").text
        if not name:
            raise self.error(found["Name"].line, f"{where} has an empty <Name>")
        ops_el = self.required(found, item, "Operations")
        operations = _OPERATIONS.get(ops_el.text.upper())
        if operations is None:
            raise self.error(
                ops_el.line,
                f"{where}: Operations {ops_el.text!r} is not one of R, W, RW, E or empty",
            )
        multiple = self.choice(
            self.required(found, item, "MultipleInstances"), "Multiple", "Single"
        )
        mandatory = self.choice(self.required(found, item, "Mandatory"), "Mandatory", "Optional")
        type_el = self.required(found, item, "Type")
        rtype = _TYPES.get(" ".join(type_el.text.lower().split()))
        if rtype is None:
            raise self.error(
                type_el.line,
                f"{where}: unknown Type {type_el.text!r} (expected String, Integer, "
                "Unsigned Integer, Float, Boolean, Opaque, Time, Objlnk, Corelnk or empty)",
            )
        if operations is Operations.E and rtype is not ResourceType.NONE:
            self.warn(type_el.line, f"{where} is executable but has Type {type_el.text!r}")
        if operations is not Operations.E and rtype is ResourceType.NONE:
            self.warn(type_el.line, f"{where} has operations {ops_el.text!r} but no Type")
        res = ResourceDef(
            id=rid,
            name=name,
            operations=operations,
            multiple=multiple,
            mandatory=mandatory,
            type=rtype,
            range=found["RangeEnumeration"].text if "RangeEnumeration" in found else "",
            units=found["Units"].text if "Units" in found else "",
            description=found["Description"].text if "Description" in found else "",
        )
        problem = reusable.conflict(res)
        if problem is not None:
            self.warn(item.line, f"object {object_id}: {problem}")
        return res


def load_ddf_bytes(
    data: bytes,
    name: str = "<bytes>",
    *,
    strict: bool = False,
    on_warning: WarningHandler | None = None,
) -> list[ObjectDef]:
    """The objects defined by one DDF document; ``name`` is used in error messages.

    ``strict`` turns warnings into :class:`DdfError`; otherwise each goes to
    ``on_warning`` (default: logged at WARNING).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"DDF data must be bytes, got {type(data).__name__}")

    def warn(line: int, message: str) -> None:
        if strict:
            raise DdfError(name, line, message)
        warning = DdfWarning(name, line, message)
        if on_warning is None:
            logger.warning("%s", warning)
        else:
            on_warning(warning)

    root = _parse_xml(bytes(data), name)
    if root.tag != "LWM2M":
        raise DdfError(name, root.line, f"root element is <{root.tag}>, expected <LWM2M>")
    reader = _ObjectReader(name, warn)
    objects: list[ObjectDef] = []
    for child in root.children:
        if child.tag != "Object":
            raise DdfError(name, child.line, f"unexpected <{child.tag}> in <LWM2M>")
        objects.append(reader.read_object(child))
    if not objects:
        raise DdfError(name, root.line, "<LWM2M> defines no <Object>")
    return objects


def load_ddf_file(
    path: str | FsPath,
    *,
    strict: bool = False,
    on_warning: WarningHandler | None = None,
) -> list[ObjectDef]:
    """The objects defined by the DDF file at ``path``; errors name the file."""
    file = FsPath(path)
    try:
        data = file.read_bytes()
    except OSError as exc:
        raise DdfError(str(file), 0, f"cannot read: {exc.strerror or exc}") from None
    return load_ddf_bytes(data, str(file), strict=strict, on_warning=on_warning)


def load_ddf_directory(
    directory: str | FsPath,
    *,
    strict: bool = False,
    on_warning: WarningHandler | None = None,
) -> list[ObjectDef]:
    """All objects of every ``*.xml`` file in ``directory`` (not recursive), by file name.

    The first bad file stops the load with its :class:`DdfError`.
    """
    folder = FsPath(directory)
    if not folder.is_dir():
        raise DdfError(str(folder), 0, "not a directory")
    objects: list[ObjectDef] = []
    for file in sorted(p for p in folder.iterdir() if p.suffix.lower() == ".xml" and p.is_file()):
        objects.extend(load_ddf_file(file, strict=strict, on_warning=on_warning))
    return objects

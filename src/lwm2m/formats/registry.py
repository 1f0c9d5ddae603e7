"""Codecs by Content-Format, and which format to use with which client.

Every node codec is a pair of pure functions ``encode(node, path, model)`` /
``decode(data, path, model)``; this module picks one by Content-Format
number (legacy 1542/1543 included), adds the composite operations
(Read-Composite, Write-Composite, Observe-Composite, Send) and the
negotiation rules.

Negotiation (docs/compliance.md): LwM2M 1.0 clients get TLV (the one
structured format 1.0 makes mandatory). LwM2M 1.1+ clients get SenML CBOR
unless their ``ct=`` registration parameter lists other formats, in which
case the first announced of SenML CBOR, SenML JSON, LwM2M CBOR, TLV, LwM2M
JSON; a client announcing no structured format gets TLV. Composite
operations use SenML CBOR, SenML JSON or LwM2M CBOR only. This follows
Leshan's defaults (TLV for 1.0, SenML CBOR for 1.1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from lwm2m.formats import (
    cbor,
    lwm2m_cbor,
    lwm2m_json,
    opaque,
    senml_cbor,
    senml_json,
    text,
    tlv,
)
from lwm2m.formats.errors import FormatError, guard
from lwm2m.formats.media import ContentFormat
from lwm2m.formats.senml import Record
from lwm2m.formats.tree import NODE_TYPES, group_composite
from lwm2m.model.nodes import Node, Value
from lwm2m.model.path import Path
from lwm2m.model.registry import ModelRegistry

Encoder = Callable[[Node, Path, "ModelRegistry | None"], bytes]
Decoder = Callable[[bytes, Path, "ModelRegistry | None"], Node]
RecordDecoder = Callable[[bytes, "ModelRegistry | None"], list[Record]]


@dataclass(frozen=True, slots=True)
class Codec:
    format: ContentFormat
    encode: Encoder
    decode: Decoder
    #: plain text and opaque carry one resource or resource instance value only
    single_value_only: bool = False
    #: usable for Read-Composite, Write-Composite, Observe-Composite and Send
    composite: bool = False


CODECS: dict[ContentFormat, Codec] = {
    ContentFormat.TEXT: Codec(ContentFormat.TEXT, text.encode, text.decode, True),
    ContentFormat.OCTET_STREAM: Codec(
        ContentFormat.OCTET_STREAM, opaque.encode, opaque.decode, True
    ),
    ContentFormat.CBOR: Codec(ContentFormat.CBOR, cbor.encode, cbor.decode, True),
    ContentFormat.LWM2M_TLV: Codec(ContentFormat.LWM2M_TLV, tlv.encode, tlv.decode),
    ContentFormat.LWM2M_JSON: Codec(ContentFormat.LWM2M_JSON, lwm2m_json.encode, lwm2m_json.decode),
    ContentFormat.SENML_JSON: Codec(
        ContentFormat.SENML_JSON, senml_json.encode, senml_json.decode, composite=True
    ),
    ContentFormat.SENML_CBOR: Codec(
        ContentFormat.SENML_CBOR, senml_cbor.encode, senml_cbor.decode, composite=True
    ),
    ContentFormat.LWM2M_CBOR: Codec(
        ContentFormat.LWM2M_CBOR, lwm2m_cbor.encode, lwm2m_cbor.decode, composite=True
    ),
}

COMPOSITE_FORMATS = frozenset(f for f, c in CODECS.items() if c.composite)

_RECORD_DECODERS: dict[ContentFormat, RecordDecoder] = {
    ContentFormat.SENML_JSON: senml_json.decode_records,
    ContentFormat.SENML_CBOR: senml_cbor.decode_records,
    ContentFormat.LWM2M_CBOR: lwm2m_cbor.decode_records,
    ContentFormat.LWM2M_JSON: lambda data, model: lwm2m_json.decode_records(data, model),
}


def content_format(fmt: int) -> ContentFormat:
    """The canonical format for a number (legacy aliases mapped); FormatError if unknown."""
    try:
        return ContentFormat(fmt).canonical
    except ValueError:
        raise FormatError(f"unsupported content format {fmt}") from None


def codec(fmt: int) -> Codec:
    cf = content_format(fmt)
    found = CODECS.get(cf)
    if found is None:
        raise FormatError(f"content format {cf.value} ({cf.name}) does not carry LwM2M nodes")
    return found


def can_carry(fmt: int, node_kind: str) -> bool:
    """Whether ``fmt`` can carry a node of ``node_kind`` (see ``model.nodes.node_kind``).

    ``root`` means a composite payload.
    """
    try:
        found = codec(fmt)
    except FormatError:
        return False
    if node_kind == "root":
        return found.composite
    if found.single_value_only:
        return node_kind in ("resource", "resource_instance")
    return node_kind in ("object", "instance", "resource", "resource_instance")


def encode(
    node: Node | Mapping[Path, Node | Value],
    path: Path,
    fmt: int,
    model: ModelRegistry | None = None,
) -> bytes:
    """Encode a node at ``path``; a mapping of paths is encoded as a composite."""
    if isinstance(node, Mapping):
        return encode_composite(node, fmt, model)
    if not isinstance(node, NODE_TYPES):
        raise FormatError(f"{path}: {type(node).__name__} is not an LwM2M node")
    return codec(fmt).encode(node, path, model)


@guard
def decode(data: bytes, path: Path, fmt: int, model: ModelRegistry | None = None) -> Node:
    """Decode the node at ``path``; only :class:`FormatError` escapes on bad input."""
    return codec(fmt).decode(bytes(data), path, model)


def _composite_codec(fmt: int) -> ContentFormat:
    cf = content_format(fmt)
    if cf not in COMPOSITE_FORMATS:
        raise FormatError(f"content format {cf.value} ({cf.name}) cannot carry a composite")
    return cf


def encode_composite(
    items: Mapping[Path, Node | Value] | Iterable[Record],
    fmt: int,
    model: ModelRegistry | None = None,
) -> bytes:
    """Nodes or values at several paths, or timestamped :class:`Record` s (Send)."""
    cf = _composite_codec(fmt)
    if cf is ContentFormat.SENML_JSON:
        return senml_json.encode_composite(items, model)
    if cf is ContentFormat.SENML_CBOR:
        return senml_cbor.encode_composite(items, model)
    return lwm2m_cbor.encode_composite(items, model)


@guard
def decode_records(data: bytes, fmt: int, model: ModelRegistry | None = None) -> list[Record]:
    """Flat values with full paths and (SenML, LwM2M JSON) times, in payload order."""
    cf = content_format(fmt)
    decoder = _RECORD_DECODERS.get(cf)
    if decoder is None:
        raise FormatError(f"content format {cf.value} ({cf.name}) has no records")
    return decoder(bytes(data), model)


@guard
def decode_values(data: bytes, fmt: int, model: ModelRegistry | None = None) -> dict[Path, Value]:
    """``{path: value}`` of a composite payload (duplicate paths rejected)."""
    result: dict[Path, Value] = {}
    for record in decode_records(data, fmt, model):
        if record.path in result:
            raise FormatError(f"{record.path}: duplicate value")
        assert record.value is not None
        result[record.path] = record.value
    return result


@guard
def decode_composite(
    data: bytes,
    fmt: int,
    model: ModelRegistry | None = None,
    paths: Iterable[Path] | None = None,
) -> dict[Path, Node]:
    """Nodes of a composite payload, at the requested ``paths`` or grouped by resource."""
    cf = content_format(fmt)
    if cf is ContentFormat.LWM2M_CBOR:
        return lwm2m_cbor.decode_composite(bytes(data), model, paths)
    if cf not in _RECORD_DECODERS:
        raise FormatError(f"content format {cf.value} ({cf.name}) cannot carry a composite")
    records = decode_records(data, cf, model)
    return group_composite(
        ((r.path, r.value) for r in records if r.value is not None), model, paths
    )


def encode_paths(paths: Iterable[Path], fmt: int) -> bytes:
    """A Read-Composite / Observe-Composite request body listing ``paths``."""
    cf = _composite_codec(fmt)
    if cf is ContentFormat.SENML_JSON:
        return senml_json.encode_paths(paths)
    if cf is ContentFormat.SENML_CBOR:
        return senml_cbor.encode_paths(paths)
    return lwm2m_cbor.encode_paths(paths)


@guard
def decode_paths(data: bytes, fmt: int) -> list[Path]:
    cf = _composite_codec(fmt)
    if cf is ContentFormat.SENML_JSON:
        return senml_json.decode_paths(bytes(data))
    if cf is ContentFormat.SENML_CBOR:
        return senml_cbor.decode_paths(bytes(data))
    return lwm2m_cbor.decode_paths(bytes(data))


#: structured formats in order of preference for LwM2M 1.1+ clients
PREFERENCE_1_1 = (
    ContentFormat.SENML_CBOR,
    ContentFormat.SENML_JSON,
    ContentFormat.LWM2M_CBOR,
    ContentFormat.LWM2M_TLV,
    ContentFormat.LWM2M_JSON,
)


def preferred_format(
    lwm2m_version: str, announced: Iterable[int] | None, node_kind: str
) -> ContentFormat:
    """The format a server should ask for (Accept) or send, for one client.

    ``announced`` is the client's ``ct=`` registration parameter (``None``
    when absent); ``node_kind`` as in :func:`can_carry`.
    """
    cfs: set[ContentFormat] | None = None
    if announced is not None:
        cfs = set()
        for number in announced:
            try:
                cfs.add(ContentFormat(number).canonical)
            except ValueError:
                continue  # a format we do not implement
    if lwm2m_version.strip().startswith("1.0"):
        if node_kind == "root":
            raise FormatError("LwM2M 1.0 has no composite operations")
        return ContentFormat.LWM2M_TLV
    order: tuple[ContentFormat, ...] = PREFERENCE_1_1
    if node_kind == "root":
        order = tuple(f for f in PREFERENCE_1_1 if f in COMPOSITE_FORMATS)
    if cfs is None:
        return order[0]
    for fmt in order:
        if fmt in cfs:
            return fmt
    if node_kind == "root":
        raise FormatError("the client announced no format that can carry a composite")
    return ContentFormat.LWM2M_TLV

"""Content formats as the client uses them: which codec, which default, what to refuse.

The codecs live in :mod:`lwm2m.formats` (one module each); this module only
picks one for a request and maps their errors to LwM2M response codes:
an unknown Accept is 4.06 Not Acceptable, an unknown Content-Format 4.15, a
payload that does not decode 4.00.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType

from lwm2m.formats import lwm2m_cbor, lwm2m_json, opaque, senml_cbor, senml_json, text, tlv
from lwm2m.formats.errors import FormatError
from lwm2m.formats.media import ContentFormat
from lwm2m.formats.senml import Record
from lwm2m.model.nodes import Node, Resource, ResourceInstance
from lwm2m.model.path import Path
from lwm2m.model.registry import ModelRegistry
from lwm2m.model.types import ResourceType
from lwm2m.protocol.errors import BadRequest, NotAcceptable, UnsupportedContentFormat

CF = ContentFormat

_CODECS: dict[int, ModuleType] = {
    CF.TEXT: text,
    CF.OCTET_STREAM: opaque,
    CF.LWM2M_TLV: tlv,
    CF.OMA_TLV_OLD: tlv,
    CF.LWM2M_JSON: lwm2m_json,
    CF.OMA_JSON_OLD: lwm2m_json,
    CF.SENML_JSON: senml_json,
    CF.SENML_CBOR: senml_cbor,
    CF.LWM2M_CBOR: lwm2m_cbor,
}
#: Formats able to carry several values (and Read-Composite answers, for the last three).
MULTI_VALUE = frozenset(
    {
        CF.LWM2M_TLV,
        CF.OMA_TLV_OLD,
        CF.LWM2M_JSON,
        CF.OMA_JSON_OLD,
        CF.SENML_JSON,
        CF.SENML_CBOR,
        CF.LWM2M_CBOR,
    }
)
COMPOSITE = frozenset({CF.SENML_JSON, CF.SENML_CBOR, CF.LWM2M_CBOR})
SINGLE_VALUE = frozenset({CF.TEXT, CF.OCTET_STREAM})
SUPPORTED = frozenset(_CODECS)


def _is_single_value(node: Node) -> bool:
    return isinstance(node, ResourceInstance) or (
        isinstance(node, Resource) and not node.is_multiple
    )


def response_format(accept: int | None, node: Node, default_multi: int) -> int:
    """The Content-Format of a response carrying ``node``; raises NotAcceptable."""
    if accept is not None:
        if accept not in SUPPORTED:
            raise NotAcceptable(f"content format {accept} is not supported")
        if accept in SINGLE_VALUE and not _is_single_value(node):
            raise NotAcceptable(f"content format {accept} carries a single value only")
        if accept == CF.OCTET_STREAM and _value_type(node) not in (ResourceType.OPAQUE, None):
            raise NotAcceptable("application/octet-stream carries Opaque resources only")
        return accept
    if _is_single_value(node):
        return CF.OCTET_STREAM if _value_type(node) is ResourceType.OPAQUE else CF.TEXT
    return default_multi


def _value_type(node: Node) -> ResourceType | None:
    if isinstance(node, Resource):
        if node.type is not None:
            return node.type
        value = node.value
    elif isinstance(node, ResourceInstance):
        value = node.value
    else:
        return None
    return ResourceType.OPAQUE if isinstance(value, bytes) else None


def encode(node: Node, path: Path, fmt: int, model: ModelRegistry) -> bytes:
    codec = _CODECS.get(fmt)
    if codec is None:
        raise NotAcceptable(f"content format {fmt} is not supported")
    try:
        data: bytes = codec.encode(node, path, model)
    except FormatError as exc:
        raise NotAcceptable(f"cannot encode {path} as {fmt}: {exc}") from None
    return data


def decode(payload: bytes, path: Path, fmt: int | None, model: ModelRegistry) -> Node:
    """Decode a Write/Create payload; no Content-Format means text/plain (seed 8.1)."""
    fmt = CF.TEXT if fmt is None else fmt
    codec = _CODECS.get(fmt)
    if codec is None:
        raise UnsupportedContentFormat(f"content format {fmt} is not supported")
    try:
        node: Node = codec.decode(payload, path, model)
    except FormatError as exc:
        raise BadRequest(f"payload: {exc}") from None
    except ValueError as exc:  # node/path validation below the codec
        raise BadRequest(f"payload: {exc}") from None
    return node


def encode_composite(values: Mapping[Path, Node], fmt: int, model: ModelRegistry) -> bytes:
    if fmt not in COMPOSITE:
        raise NotAcceptable(f"content format {fmt} cannot carry a composite answer")
    try:
        data: bytes = _CODECS[fmt].encode_composite(values, model)
    except FormatError as exc:
        raise NotAcceptable(f"cannot encode composite answer: {exc}") from None
    return data


def decode_paths(payload: bytes, fmt: int | None) -> list[Path]:
    """The paths of a Read-/Observe-Composite request body."""
    if fmt not in COMPOSITE:
        raise UnsupportedContentFormat(f"content format {fmt} cannot carry composite paths")
    try:
        paths: list[Path] = _CODECS[fmt].decode_paths(payload)
    except (FormatError, ValueError) as exc:
        raise BadRequest(f"payload: {exc}") from None
    return paths


def decode_records(payload: bytes, fmt: int | None, model: ModelRegistry) -> list[Record]:
    """The (path, value) records of a Write-Composite request body."""
    if fmt not in COMPOSITE:
        raise UnsupportedContentFormat(f"content format {fmt} cannot carry a composite write")
    try:
        records: list[Record] = _CODECS[fmt].decode_records(payload, model)
    except (FormatError, ValueError) as exc:
        raise BadRequest(f"payload: {exc}") from None
    return records

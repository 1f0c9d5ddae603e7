"""Content formats on the server side: which one to ask for, and the codec calls.

The choice follows what the client can do: an LwM2M 1.0 client gets TLV (the
only multi-node format every 1.0 client has); a 1.1+ client gets the format
it announced with ``ct=`` on its root link, preferring SenML CBOR, then
SenML JSON, then TLV; without ``ct`` it gets TLV for single nodes and SenML
CBOR for composite operations (which need SenML). A per-call ``format``
overrides all of this.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import Literal

from lwm2m.coap.codes import ContentFormat
from lwm2m.formats.errors import FormatError
from lwm2m.formats.tree import assemble
from lwm2m.model.nodes import Node, Value
from lwm2m.model.path import Path
from lwm2m.model.registry import ModelRegistry
from lwm2m.stores.records import Registration

Kind = Literal["single", "composite"]

_MODULES: dict[int, str] = {
    ContentFormat.TEXT: "text",
    ContentFormat.OCTET_STREAM: "opaque",
    ContentFormat.LWM2M_TLV: "tlv",
    ContentFormat.OMA_TLV_OLD: "tlv",
    ContentFormat.SENML_JSON: "senml_json",
    ContentFormat.SENML_CBOR: "senml_cbor",
    ContentFormat.LWM2M_JSON: "lwm2m_json",
    ContentFormat.OMA_JSON_OLD: "lwm2m_json",
    ContentFormat.LWM2M_CBOR: "lwm2m_cbor",
}
_COMPOSITE = (ContentFormat.SENML_CBOR, ContentFormat.SENML_JSON)
_loaded: dict[int, ModuleType] = {}


class UnsupportedFormat(FormatError):
    """A content format this server has no codec for."""


def _module(fmt: int) -> ModuleType:
    mod = _loaded.get(fmt)
    if mod is None:
        name = _MODULES.get(fmt)
        if name is None:
            raise UnsupportedFormat(f"content format {fmt} is not supported")
        try:
            mod = importlib.import_module(f"lwm2m.formats.{name}")
        except ImportError:
            raise UnsupportedFormat(f"content format {fmt} has no codec") from None
        _loaded[fmt] = mod
    return mod


def _func(fmt: int, name: str) -> Callable[..., object]:
    func = getattr(_module(fmt), name, None)
    if func is None:
        raise UnsupportedFormat(f"content format {fmt} cannot {name.replace('_', ' ')}")
    return func  # type: ignore[no-any-return]


def preferred_format(registration: Registration, kind: Kind) -> int:
    announced = registration.links.content_formats
    if kind == "composite":
        for fmt in _COMPOSITE:
            if fmt in announced:
                return int(fmt)
        return int(ContentFormat.SENML_CBOR)
    if registration.lwm2m_version == "1.0":
        return int(ContentFormat.LWM2M_TLV)
    for fmt in (ContentFormat.SENML_CBOR, ContentFormat.SENML_JSON, ContentFormat.LWM2M_TLV):
        if fmt in announced:
            return int(fmt)
    return int(ContentFormat.LWM2M_TLV)


def encode(fmt: int, node: Node, path: Path, model: ModelRegistry | None) -> bytes:
    result = _func(fmt, "encode")(node, path, model)
    assert isinstance(result, bytes)
    return result


def decode(fmt: int | None, data: bytes, path: Path, model: ModelRegistry | None) -> Node:
    """Decode a single-node payload; no Content-Format means text/plain (RFC 7252 5.10.3)."""
    node = _func(int(ContentFormat.TEXT) if fmt is None else fmt, "decode")(data, path, model)
    return node  # type: ignore[return-value]


def encode_composite(
    fmt: int, values: Mapping[Path, Node | Value], model: ModelRegistry | None
) -> bytes:
    result = _func(fmt, "encode_composite")(values, model)
    assert isinstance(result, bytes)
    return result


def encode_paths(fmt: int, paths: Iterable[Path]) -> bytes:
    result = _func(fmt, "encode_paths")(list(paths))
    assert isinstance(result, bytes)
    return result


def decode_composite(
    fmt: int | None, data: bytes, requested: Iterable[Path] | None, model: ModelRegistry | None
) -> dict[Path, Node]:
    """Decode SenML records into one node per requested path.

    With ``requested=None`` (Send), each record becomes a node at its own path.
    Requested paths with no record in the payload are left out: the client
    had nothing there.
    """
    if fmt is None or fmt not in _COMPOSITE:
        raise UnsupportedFormat(f"content format {fmt} is not a composite (SenML) format")
    records = _func(fmt, "decode_records")(data, model)
    entries: list[tuple[Path, Value]] = [
        (r.path, r.value)
        for r in records  # type: ignore[attr-defined]
        if r.value is not None
    ]
    result: dict[Path, Node] = {}
    if requested is None:
        for path, value in entries:
            result[path] = assemble([(path, value)], path, model)
        return result
    for want in requested:
        mine = [(p, v) for p, v in entries if p.startswith(want)]
        if mine:
            result[want] = assemble(mine, want, model)
    return result

"""Content formats on the server side: which one to ask for, and the codec calls.

The choice is :func:`lwm2m.formats.registry.preferred_format` applied to the
client's registration: an LwM2M 1.0 client gets TLV; a 1.1+ client gets the
best format it announced with ``ct=`` on its root link (SenML CBOR first) or
SenML CBOR when it announced nothing. A per-call ``format`` overrides this.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from lwm2m.coap.codes import ContentFormat
from lwm2m.formats import registry
from lwm2m.formats.errors import FormatError
from lwm2m.model.nodes import Node, Value, node_kind
from lwm2m.model.path import Path
from lwm2m.model.registry import ModelRegistry
from lwm2m.stores.records import Registration


def preferred_format(registration: Registration, path: Path | None) -> int:
    """The format for one node at ``path``, or for a composite when ``path`` is None."""
    announced = registration.links.content_formats or None
    kind = "root" if path is None else node_kind(path)
    try:
        return int(registry.preferred_format(registration.lwm2m_version, announced, kind))
    except FormatError:
        # 1.0 has no composite operations; ask anyway and let the client answer 4.xx.
        return int(ContentFormat.SENML_CBOR)


def encode(fmt: int, node: Node, path: Path, model: ModelRegistry | None) -> bytes:
    return registry.encode(node, path, fmt, model)


def decode(fmt: int | None, data: bytes, path: Path, model: ModelRegistry | None) -> Node:
    """Decode a single-node payload; no Content-Format means text/plain (RFC 7252 5.10.3)."""
    return registry.decode(data, path, int(ContentFormat.TEXT) if fmt is None else fmt, model)


def encode_composite(
    fmt: int, values: Mapping[Path, Node | Value], model: ModelRegistry | None
) -> bytes:
    return registry.encode_composite(values, fmt, model)


def encode_paths(fmt: int, paths: Iterable[Path]) -> bytes:
    return registry.encode_paths(list(paths), fmt)


def decode_composite(
    fmt: int | None, data: bytes, requested: Iterable[Path] | None, model: ModelRegistry | None
) -> dict[Path, Node]:
    """Nodes at the requested paths (or grouped by resource when None, as for Send)."""
    if fmt is None:
        raise FormatError("a composite payload needs a Content-Format")
    return registry.decode_composite(
        data, fmt, model, None if requested is None else list(requested)
    )

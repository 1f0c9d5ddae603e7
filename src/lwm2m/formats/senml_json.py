"""SenML JSON (Content-Format 110, RFC 8428) for LwM2M 1.1 single nodes and composites."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from lwm2m.formats import jsonutil, senml
from lwm2m.formats.errors import guard
from lwm2m.formats.senml import Record
from lwm2m.formats.tree import assemble
from lwm2m.model.nodes import Node, Value
from lwm2m.model.path import Path
from lwm2m.model.registry import ModelRegistry


def encode(node: Node, path: Path, model: ModelRegistry | None = None) -> bytes:
    return jsonutil.dumps(senml.node_records(node, path, model, binary=False))


@guard
def decode_records(data: bytes, model: ModelRegistry | None = None) -> list[Record]:
    return senml.decode_records(jsonutil.loads(data), model, binary=False)


@guard
def decode(data: bytes, path: Path, model: ModelRegistry | None = None) -> Node:
    records = decode_records(data, model)
    return assemble(((r.path, r.value) for r in records if r.value is not None), path, model)


def encode_composite(
    items: Mapping[Path, Node | Value] | Iterable[Record], model: ModelRegistry | None = None
) -> bytes:
    return jsonutil.dumps(senml.composite_records(items, model, binary=False))


def encode_paths(paths: Iterable[Path]) -> bytes:
    return jsonutil.dumps(senml.path_records(paths))


@guard
def decode_paths(data: bytes) -> list[Path]:
    return senml.decode_paths(jsonutil.loads(data), binary=False)

"""SenML CBOR (Content-Format 112, RFC 8428 section 6): integer labels, ``vd`` as bytes.

Labels: bn -2, bt -3, n 0, v 2, vs 3, vb 4, t 6, vd 8, and LwM2M's ``"vlo"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from lwm2m.formats import cbor_strict, senml
from lwm2m.formats.errors import FormatError, guard
from lwm2m.formats.senml import CBOR_KEYS, CBOR_LABELS, Record
from lwm2m.formats.tree import assemble
from lwm2m.model.nodes import Node, Value
from lwm2m.model.path import Path
from lwm2m.model.registry import ModelRegistry


def _to_cbor(records: list[dict[str, object]]) -> bytes:
    return cbor_strict.dumps([{CBOR_KEYS[k]: v for k, v in rec.items()} for rec in records])


def _from_cbor(data: bytes) -> list[dict[str, object]]:
    items = cbor_strict.loads(data)
    if not isinstance(items, list):
        raise FormatError("SenML CBOR payload must be an array of records")
    result: list[dict[str, object]] = []
    for index, record in enumerate(items):
        if not isinstance(record, dict):
            raise FormatError(f"record {index}: must be a map")
        named: dict[str, object] = {}
        for key, value in record.items():
            if isinstance(key, bool) or not isinstance(key, int | str):
                raise FormatError(f"record {index}: label {key!r} is not an integer or string")
            name = CBOR_LABELS.get(key)
            if name is None:
                if isinstance(key, int) and key < 0 and key not in CBOR_LABELS:
                    # negative labels are reserved for base fields we do not know
                    raise FormatError(f"record {index}: unknown base label {key}")
                if isinstance(key, str) and key.endswith("_"):
                    raise FormatError(
                        f"record {index}: must-understand label {key!r} not supported"
                    )
                continue
            named[name] = value
        result.append(named)
    return result


def encode(node: Node, path: Path, model: ModelRegistry | None = None) -> bytes:
    return _to_cbor(senml.node_records(node, path, model, binary=True))


@guard
def decode_records(data: bytes, model: ModelRegistry | None = None) -> list[Record]:
    return senml.decode_records(_from_cbor(data), model, binary=True)


@guard
def decode(data: bytes, path: Path, model: ModelRegistry | None = None) -> Node:
    records = decode_records(data, model)
    return assemble(((r.path, r.value) for r in records if r.value is not None), path, model)


def encode_composite(
    items: Mapping[Path, Node | Value] | Iterable[Record], model: ModelRegistry | None = None
) -> bytes:
    return _to_cbor(senml.composite_records(items, model, binary=True))


def encode_paths(paths: Iterable[Path]) -> bytes:
    return _to_cbor(senml.path_records(paths))


@guard
def decode_paths(data: bytes) -> list[Path]:
    return senml.decode_paths(_from_cbor(data), binary=True)

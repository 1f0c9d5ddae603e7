"""Strict JSON reading: UTF-8 only, no duplicate keys, no NaN/Infinity, bounded depth."""

from __future__ import annotations

import json

from lwm2m.formats.errors import FormatError

MAX_DEPTH = 32


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result: dict[str, object] = {}
    for key, value in pairs:
        if key in result:
            raise FormatError(f"JSON: duplicate key {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> object:
    raise FormatError(f"JSON: {name} is not allowed")


def _depth(text: str) -> int:
    deepest = depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def loads(data: bytes) -> object:
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FormatError(f"byte {exc.start}: invalid UTF-8 in JSON") from None
    if _depth(text) > MAX_DEPTH:
        raise FormatError(f"JSON nested deeper than {MAX_DEPTH}")
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except json.JSONDecodeError as exc:
        raise FormatError(f"JSON byte {exc.pos}: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, FormatError):
            raise
        raise FormatError(f"JSON: {exc}") from None


def dumps(value: object) -> bytes:
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode(
            "utf-8"
        )
    except (ValueError, TypeError) as exc:
        raise FormatError(f"JSON encoding failed: {exc}") from None

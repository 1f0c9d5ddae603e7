"""The JSON text the persistent stores (SQLite, Redis) write, and reading it back.

Both backends keep every record as one JSON document (``to_dict``/``from_dict``
of :mod:`lwm2m.stores.records`) and every bootstrap document as a JSON object.
The encoding and the load-time rules live here once, so a rule (compact, no
NaN, a document is an object, an unreadable stored record is skipped rather
than failing the whole start-up) holds for every backend alike.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from lwm2m.security.credentials import SecurityEntry
from lwm2m.stores.base import JsonDoc, StoreError
from lwm2m.stores.records import (
    ObservationRecord,
    RecordError,
    Registration,
    security_entry_to_dict,
)

T = TypeVar("T")


def dumps(doc: Any) -> str:
    """Compact JSON; NaN and infinities are refused (other JSON readers reject them)."""
    return json.dumps(doc, separators=(",", ":"), allow_nan=False)


def registration_text(reg: Registration) -> str:
    """The stored text of a registration (one JSON document per row or hash field)."""
    return dumps(reg.to_dict())


def observation_text(record: ObservationRecord) -> str:
    """The stored text of an observation record."""
    return dumps(record.to_dict())


def security_text(entry: SecurityEntry) -> str:
    """The stored text of a security entry (keys base64-encoded)."""
    return dumps(security_entry_to_dict(entry))


def load_doc(raw: str | bytes) -> JsonDoc:
    """A stored document back; anything but a JSON object is a :class:`StoreError`."""
    doc = json.loads(raw)
    if not isinstance(doc, dict):
        raise StoreError("stored document is not a JSON object")
    return doc


def load_records(
    raws: Iterable[str | bytes],
    decode: Callable[[Mapping[str, Any]], T],
    index: Callable[[T], object],
    *,
    kind: str,
    log: logging.Logger | None = None,
) -> None:
    """Decode each stored record and index it, skipping (and logging to ``log``) bad ones.

    One corrupt row must not keep the server from starting with the others.
    """
    for raw in raws:
        try:
            index(decode(json.loads(raw)))
        except (RecordError, ValueError) as exc:
            if log is not None:
                log.error("skipping unreadable stored %s: %s", kind, exc)

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
    ObjectLinks,
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
    """The stored text of a registration (one JSON document per row or hash field).

    The document of :meth:`Registration.to_dict`, written field by field: it
    is written on every Register and Update, and building the dict for
    ``json.dumps`` cost four times as much. ``tests/stores`` holds it equal
    to ``dumps(reg.to_dict())``.
    """
    if reg.identity is not None:
        return dumps(reg.to_dict())
    links = reg.links
    host, port = reg.address
    return (
        f'{{"id":{_str(reg.id)},"endpoint":{_str(reg.endpoint)},'
        f'"address":[{_str(host)},{int(port)}],"lifetime_s":{int(reg.lifetime_s)},'
        f'"registered_at":{_float(reg.registered_at)},"updated_at":{_float(reg.updated_at)},'
        f'"endpoint_type":{_opt_int(reg.endpoint_type)},'
        f'"lwm2m_version":{_str(reg.lwm2m_version)},"binding":{_str(reg.binding)},'
        f'"queue_mode":{"true" if reg.queue_mode else "false"},'
        f'"sms_number":{"null" if reg.sms_number is None else _str(reg.sms_number)},'
        f'"links":{_links_text(links)}}}'
    )


_str = json.encoder.encode_basestring_ascii


def _float(value: float) -> str:
    text = repr(float(value))
    if text in ("nan", "inf", "-inf"):
        raise ValueError(f"Out of range float values are not JSON compliant: {text}")
    return text


def _opt_int(value: int | None) -> str:
    return "null" if value is None else str(int(value))


#: id(links) -> (links, its text): an Update keeps the links object of its
#: registration, so its text is encoded once, not on every Update. The entry
#: holds the object, so its id cannot be reused while cached.
_links_cache: dict[int, tuple[ObjectLinks, str]] = {}
_LINKS_CACHE_SIZE = 65536


def _links_text(links: ObjectLinks) -> str:
    cached = _links_cache.get(id(links))
    if cached is not None and cached[0] is links:
        return cached[1]
    text = _encode_links(links)
    if len(_links_cache) >= _LINKS_CACHE_SIZE:
        _links_cache.clear()
    _links_cache[id(links)] = (links, text)
    return text


def _encode_links(links: ObjectLinks) -> str:
    objects = ",".join(
        f'{{"id":{int(o.id)},"version":{"null" if o.version is None else _str(o.version)},'
        f'"instances":[{",".join(str(int(i)) for i in o.instances)}]}}'
        for o in links.objects
    )
    formats = ",".join(str(int(c)) for c in links.content_formats)
    return (
        f'{{"text":{_str(links.text)},"root_path":{_str(links.root_path)},'
        f'"content_formats":[{formats}],"objects":[{objects}]}}'
    )


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

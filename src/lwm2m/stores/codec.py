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
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from lwm2m.security.credentials import SecurityEntry
from lwm2m.stores.base import JsonDoc, StoreError
from lwm2m.stores.records import (
    ObjectLinks,
    ObservationRecord,
    RecordError,
    RegisteredObject,
    Registration,
    identity_from_dict,
    identity_to_dict,
    registered_object,
    security_entry_to_dict,
    stored_objects,
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
        f'"links":{_links_text(links)}{_transport(reg.transport)}}}'
    )


_str = json.encoder.encode_basestring_ascii


def _transport(transport: str) -> str:
    return "" if transport == "udp" else f',"transport":{_str(transport)}'


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


def registration_row(reg: Registration) -> tuple[Any, ...]:
    """The SQLite row of a registration, one column per field (see :func:`registration_from_row`).

    Columns rather than one JSON document: reading a million rows back is
    then a fetch of typed values instead of a JSON parse per row, and an
    Update that changes only the address and lifetime rewrites those columns
    alone. ``doc`` stays empty (it holds the document of rows written before).
    """
    links = reg.links
    host, port = reg.address
    identity = reg.identity
    return (
        reg.id,
        reg.endpoint,
        "",
        host,
        int(port),
        int(reg.lifetime_s),
        _finite(reg.registered_at),
        _finite(reg.updated_at),
        reg.endpoint_type,
        reg.lwm2m_version,
        reg.binding,
        1 if reg.queue_mode else 0,
        reg.sms_number,
        reg.transport,
        links.text,
        links.root_path,
        _formats_text(links.content_formats),
        _objects_text(links.objects),
        None if identity is None else dumps(identity_to_dict(identity)),
    )


def registration_update_row(reg: Registration) -> tuple[Any, ...]:
    """The values of :data:`REGISTRATION_UPDATE_COLUMNS`, then the id."""
    host, port = reg.address
    return (host, int(port), int(reg.lifetime_s), _finite(reg.updated_at), reg.transport, reg.id)


def registration_from_row(row: Sequence[Any]) -> Registration:
    """A registration back from its row (:data:`REGISTRATION_COLUMNS`), without a JSON parse.

    The object list is decoded once per distinct text (a fleet announces a
    few lists a million times). A malformed row is a :class:`RecordError`.
    """
    try:
        (rid, endpoint, doc, host, port, lifetime_s, registered_at, updated_at, ept,
         version, binding, queue_mode, sms, transport, links_text, root_path, formats,
         objects, identity) = row  # fmt: skip
        if registered_at is None:  # a row of the document format (before the columns)
            return Registration.from_dict(load_doc(doc))
        links = ObjectLinks(
            links_text if type(links_text) is str else str(links_text),
            root_path if type(root_path) is str else str(root_path),
            _stored_objects_text(objects),
            _stored_formats(formats),
        )
        registered_at = float(registered_at)
        updated_at = float(updated_at)
        return Registration(
            rid if type(rid) is str else str(rid),
            endpoint if type(endpoint) is str else str(endpoint),
            (host if type(host) is str else str(host), _shared_int(int(port))),
            _shared_int(int(lifetime_s)),
            registered_at,
            # One float object for both when equal (never updated since the Register).
            registered_at if updated_at == registered_at else updated_at,
            None if ept is None else int(ept),
            sys.intern(str(version)),
            sys.intern(str(binding)),
            bool(queue_mode),
            None if sms is None else str(sms),
            links,
            None if identity is None else identity_from_dict(load_doc(identity)),
            transport if transport == "udp" else str(transport),
        )
    except (TypeError, ValueError, AttributeError, StoreError) as exc:
        if isinstance(exc, RecordError):
            raise
        raise RecordError(f"not a registration row: {exc!r}") from None


#: Ports and lifetimes read back: a fleet uses a few (5683, 86400), and every int
#: above 256 read from SQLite is an object of its own (28 bytes, two per row).
_ints: dict[int, int] = {}


def _shared_int(value: int) -> int:
    shared = _ints.get(value)
    if shared is None:
        shared = value
        if len(_ints) < _CACHE_LIMIT:
            _ints[value] = value
    return shared


def _finite(value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"Out of range float values are not JSON compliant: {value!r}")
    return value


def _formats_text(formats: tuple[int, ...]) -> str:
    if not formats:  # what nearly every client announces
        return ""
    return " ".join(str(int(c)) for c in formats)


_formats_cache: dict[str, tuple[int, ...]] = {}


def _stored_formats(text: object) -> tuple[int, ...]:
    if not text:
        return ()
    raw = str(text)
    cached = _formats_cache.get(raw)
    if cached is None:
        # Written as "60 110"; a migrated document row holds the JSON list "[60,110]".
        items: list[Any] = json.loads(raw) if raw.startswith("[") else raw.split()
        cached = tuple(int(c) for c in items)
        if len(_formats_cache) < _CACHE_LIMIT:
            _formats_cache[raw] = cached
    return cached


#: id(objects) -> (objects, text), as for the links' text: an Update keeps its objects.
_objects_cache: dict[int, tuple[tuple[RegisteredObject, ...], str]] = {}
#: Stored text -> shared tuple: most rows of a fleet hold one of a few lists.
_stored_objects_cache: dict[str, tuple[RegisteredObject, ...]] = {}
_CACHE_LIMIT = 65536
#: A version holding one of these is written as JSON (the compact form could not say it).
_COMPACT_UNSAFE = frozenset(",/@[")


def _objects_text(objects: tuple[RegisteredObject, ...]) -> str:
    """``1/0,3/0,5@1.1``: object id, ``@version`` when announced, ``/instance`` each."""
    cached = _objects_cache.get(id(objects))
    if cached is not None and cached[0] is objects:
        return cached[1]
    parts = []
    compact = True
    for o in objects:
        head = str(int(o.id))
        if o.version is not None:
            if _COMPACT_UNSAFE.intersection(o.version):
                compact = False
                break
            head = f"{head}@{o.version}"
        parts.append("/".join((head, *(str(int(i)) for i in o.instances))))
    if compact:
        text = ",".join(parts)
    else:
        text = dumps(
            [{"id": o.id, "version": o.version, "instances": list(o.instances)} for o in objects]
        )
    if len(_objects_cache) >= _CACHE_LIMIT:
        _objects_cache.clear()
    _objects_cache[id(objects)] = (objects, text)
    return text


#: One object's compact text (``3/0``) -> the shared object: most are common to every row.
_stored_parts: dict[str, RegisteredObject] = {}


def _stored_object(part: str) -> RegisteredObject:
    head, *instances = part.split("/")
    oid, at, version = head.partition("@")
    obj = registered_object(int(oid), version if at else None, tuple(map(int, instances)))
    if len(_stored_parts) < _CACHE_LIMIT:
        _stored_parts[part] = obj
    return obj


def _stored_objects_text(text: object) -> tuple[RegisteredObject, ...]:
    if type(text) is not str:
        raise RecordError(f"object list is not text: {text!r}")
    shared = _stored_objects_cache.get(text)
    if shared is not None:
        return shared
    if text.startswith("["):  # JSON: written so, or migrated from a document row
        try:
            shared = stored_objects(json.loads(text))
        except (KeyError, TypeError) as exc:
            raise RecordError(f"not an object list: {exc!r}") from None
    else:
        # Equal lists have equal texts: the cache below shares them.
        parts = _stored_parts
        shared = tuple(parts.get(p) or _stored_object(p) for p in text.split(",")) if text else ()
    if len(_stored_objects_cache) < _CACHE_LIMIT:
        _stored_objects_cache[text] = shared
    return shared


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

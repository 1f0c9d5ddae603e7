"""The records the stores keep: registrations and observations.

They are plain frozen values so that a store can hand the same object to the
server, the REST layer and event subscribers without copies. Times are wall
clock seconds (``time.time()``), not monotonic ones: they are persisted and
must mean the same thing after a restart.

``to_dict``/``from_dict`` give the JSON document every persistent store
(SQLite, Redis) writes; the format is versioned by its keys only, unknown keys
are ignored on load so that newer servers can add fields.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import Mapping
from dataclasses import field
from typing import Any

from lwm2m.coap.peer import Address, PeerIdentity
from lwm2m.coap.values import value_class
from lwm2m.model.path import Path
from lwm2m.security.credentials import PskCredential, SecurityEntry, X509Expectation


class RecordError(ValueError):
    """A stored document that cannot be turned back into a record."""


@value_class
class RegisteredObject:
    """One object announced in the Register payload: ``</3>;ver=1.1`` or ``</3/0>``."""

    id: int
    version: str | None = None
    instances: tuple[int, ...] = ()


@value_class
class ObjectLinks:
    """What a Register/Update payload announced, interpreted.

    ``root_path`` is the alternate path (``</lwm2m>;rt="oma.lwm2m"``) or ``/``;
    ``content_formats`` are the ``ct=`` values of the root link (LwM2M 1.1);
    ``text`` is the payload as received, so unknown link parameters are kept
    (for display) while the rest of the server ignores them.
    """

    text: str = ""
    root_path: str = "/"
    objects: tuple[RegisteredObject, ...] = ()
    content_formats: tuple[int, ...] = ()

    def object(self, object_id: int) -> RegisteredObject | None:
        """The announced object ``object_id`` (None when not announced): a linear scan, objects are few."""
        for obj in self.objects:
            if obj.id == object_id:
                return obj
        return None


#: Interned announced objects and object lists: a fleet announces the same few
#: ``</3/0>`` a million times, and a million copies cost ~200 MB. Bounded, so
#: that hostile payloads cannot grow it without limit (beyond it: no sharing).
_INTERN_LIMIT = 65536
_objects: dict[tuple[int, str | None, tuple[int, ...]], RegisteredObject] = {}
_object_lists: dict[tuple[RegisteredObject, ...], tuple[RegisteredObject, ...]] = {}


def registered_object(
    object_id: int, version: str | None, instances: tuple[int, ...]
) -> RegisteredObject:
    """The shared :class:`RegisteredObject` of these values."""
    key = (object_id, version, instances)
    obj = _objects.get(key)
    if obj is None:
        obj = RegisteredObject(object_id, version, instances)
        if len(_objects) < _INTERN_LIMIT:
            _objects[key] = obj
    return obj


def shared_objects(objects: tuple[RegisteredObject, ...]) -> tuple[RegisteredObject, ...]:
    """The shared tuple equal to ``objects``, made of shared objects."""
    shared = _object_lists.get(objects)
    if shared is None:
        shared = tuple(registered_object(o.id, o.version, o.instances) for o in objects)
        if len(_object_lists) < _INTERN_LIMIT:
            _object_lists[shared] = shared
    return shared


#: The stored form of an object list -> its shared tuple: reading a million
#: registrations back, most lists are equal and need no validation again.
_stored_lists: dict[tuple[tuple[Any, Any, tuple[Any, ...]], ...], tuple[RegisteredObject, ...]] = {}


def stored_objects(docs: Any) -> tuple[RegisteredObject, ...]:
    """The shared object list of its stored JSON form (``[{"id", "version", "instances"}]``)."""
    key = tuple((o["id"], o.get("version"), tuple(o.get("instances", ()))) for o in docs)
    shared = _stored_lists.get(key)
    if shared is None:
        shared = shared_objects(
            tuple(
                registered_object(
                    int(oid), None if version is None else str(version), tuple(int(i) for i in inst)
                )
                for oid, version, inst in key
            )
        )
        if len(_stored_lists) < _INTERN_LIMIT:
            _stored_lists[key] = shared
    return shared


def shared_links(links: ObjectLinks) -> ObjectLinks:
    """``links`` with its objects shared with every equal announcement."""
    objects = shared_objects(links.objects)
    if objects is links.objects:
        return links
    return ObjectLinks(links.text, links.root_path, objects, links.content_formats)


@value_class
class Registration:
    """A live registration of one LwM2M client (Register, then Updates)."""

    id: str
    endpoint: str
    address: Address
    lifetime_s: int
    registered_at: float
    updated_at: float
    endpoint_type: int | None = None
    lwm2m_version: str = "1.0"
    binding: str = "U"
    queue_mode: bool = False
    sms_number: str | None = None
    links: ObjectLinks = field(default_factory=ObjectLinks)
    identity: PeerIdentity | None = None
    #: How the client registered and is reached: ``"udp"`` or ``"tcp"`` (RFC 8323).
    transport: str = "udp"

    @property
    def expires_at(self) -> float:
        """Wall-clock second after which the registration is stale (without grace)."""
        return self.updated_at + self.lifetime_s

    @property
    def secure(self) -> bool:
        """Registered over DTLS: requests to it must go over DTLS too."""
        return self.identity is not None

    @property
    def objects(self) -> tuple[RegisteredObject, ...]:
        """Shortcut to ``links.objects``, which most callers want."""
        return self.links.objects

    @property
    def root_path(self) -> str:
        """Shortcut to ``links.root_path``: every request's Uri-Path starts below it."""
        return self.links.root_path

    def renewed(
        self,
        *,
        address: Address,
        transport: str,
        updated_at: float,
        lifetime_s: int,
        sms_number: str | None,
        binding: str,
        queue_mode: bool,
        links: ObjectLinks,
    ) -> Registration:
        """This registration after an Update: ``dataclasses.replace`` with every field an
        Update may change, built directly (six times cheaper, it runs once per Update)."""
        return Registration(
            id=self.id,
            endpoint=self.endpoint,
            address=address,
            lifetime_s=lifetime_s,
            registered_at=self.registered_at,
            updated_at=updated_at,
            endpoint_type=self.endpoint_type,
            lwm2m_version=self.lwm2m_version,
            binding=binding,
            queue_mode=queue_mode,
            sms_number=sms_number,
            links=links,
            identity=self.identity,
            transport=transport,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form the persistent stores keep (bytes as base64)."""
        doc: dict[str, Any] = {
            "id": self.id,
            "endpoint": self.endpoint,
            "address": [self.address[0], self.address[1]],
            "lifetime_s": self.lifetime_s,
            "registered_at": self.registered_at,
            "updated_at": self.updated_at,
            "endpoint_type": self.endpoint_type,
            "lwm2m_version": self.lwm2m_version,
            "binding": self.binding,
            "queue_mode": self.queue_mode,
            "sms_number": self.sms_number,
            "links": {
                "text": self.links.text,
                "root_path": self.links.root_path,
                "content_formats": list(self.links.content_formats),
                "objects": [
                    {"id": o.id, "version": o.version, "instances": list(o.instances)}
                    for o in self.links.objects
                ],
            },
        }
        if self.transport != "udp":
            doc["transport"] = self.transport
        if self.identity is not None:
            doc["identity"] = identity_to_dict(self.identity)
        return doc

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Registration:
        """Read back what :meth:`to_dict` wrote; a malformed document is a :class:`RecordError`."""
        try:
            links = doc.get("links") or {}
            identity_doc = doc.get("identity")
            identity = None if identity_doc is None else identity_from_dict(identity_doc)
            host, port = doc["address"]
            return cls(
                id=str(doc["id"]),
                endpoint=str(doc["endpoint"]),
                address=(str(host), int(port)),
                lifetime_s=int(doc["lifetime_s"]),
                registered_at=float(doc["registered_at"]),
                updated_at=float(doc["updated_at"]),
                endpoint_type=None
                if doc.get("endpoint_type") is None
                else int(doc["endpoint_type"]),
                lwm2m_version=sys.intern(str(doc.get("lwm2m_version", "1.0"))),
                binding=sys.intern(str(doc.get("binding", "U"))),
                queue_mode=bool(doc.get("queue_mode", False)),
                sms_number=None if doc.get("sms_number") is None else str(doc["sms_number"]),
                links=ObjectLinks(
                    text=str(links.get("text", "")),
                    root_path=str(links.get("root_path", "/")),
                    content_formats=tuple(int(c) for c in links.get("content_formats", ())),
                    objects=stored_objects(links.get("objects", ())),
                ),
                identity=identity,
                transport=str(doc.get("transport", "udp")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RecordError(f"not a registration document: {exc!r}") from None


def identity_to_dict(identity: PeerIdentity) -> dict[str, Any]:
    """The stored form of a DTLS identity (bytes as base64)."""
    return {
        "psk_identity": _b64(identity.psk_identity),
        "certificate_der": _b64(identity.certificate_der),
    }


def identity_from_dict(doc: Mapping[str, Any]) -> PeerIdentity:
    """Read back what :func:`identity_to_dict` wrote; malformed: :class:`RecordError`."""
    try:
        return PeerIdentity(
            psk_identity=_unb64(doc.get("psk_identity")),
            certificate_der=_unb64(doc.get("certificate_der")),
        )
    except (TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, RecordError):
            raise
        raise RecordError(f"not an identity document: {exc!r}") from None


@value_class
class ObservationRecord:
    """An observation the server holds on a client (single path or composite).

    ``id`` is the CoAP token in hex: it is what a notification carries, and
    what a later cancel refers to.
    """

    id: str
    registration_id: str
    endpoint: str
    paths: tuple[Path, ...]
    composite: bool = False
    content_format: int | None = None
    created_at: float = 0.0

    @property
    def path(self) -> Path:
        """The observed path of a single observation (the first of a composite one)."""
        return self.paths[0]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form the persistent stores keep."""
        return {
            "id": self.id,
            "registration_id": self.registration_id,
            "endpoint": self.endpoint,
            "paths": [str(p) for p in self.paths],
            "composite": self.composite,
            "content_format": self.content_format,
            "created_at": self.created_at,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ObservationRecord:
        """Read back what :meth:`to_dict` wrote; a malformed document is a :class:`RecordError`."""
        try:
            return cls(
                id=str(doc["id"]),
                registration_id=str(doc["registration_id"]),
                endpoint=str(doc["endpoint"]),
                paths=tuple(Path.parse(str(p)) for p in doc["paths"]),
                composite=bool(doc.get("composite", False)),
                content_format=None
                if doc.get("content_format") is None
                else int(doc["content_format"]),
                created_at=float(doc.get("created_at", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"not an observation document: {exc!r}") from None


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: object) -> bytes | None:
    if text is None:
        return None
    if not isinstance(text, str):
        raise RecordError("binary field is not a base64 string")
    return base64.b64decode(text.encode("ascii"), validate=True)


def security_entry_to_dict(entry: SecurityEntry) -> dict[str, Any]:
    """The stored form of a security entry (bytes as base64, PEM as text)."""
    doc: dict[str, Any] = {"endpoint": entry.endpoint}
    if entry.psk is not None:
        doc["psk"] = {"identity": _b64(entry.psk.identity), "key": _b64(entry.psk.key)}
    if entry.x509 is not None:
        doc["x509"] = {
            "certificate_der": _b64(entry.x509.certificate_der),
            "ca_pems": [pem.decode("ascii") for pem in entry.x509.ca_pems],
            "expected_names": list(entry.x509.expected_names),
        }
    return doc


def security_entry_from_dict(doc: Mapping[str, Any]) -> SecurityEntry:
    """Read back what :func:`security_entry_to_dict` wrote; malformed: :class:`RecordError`."""
    try:
        psk = None
        if doc.get("psk") is not None:
            identity = _unb64(doc["psk"]["identity"])
            key = _unb64(doc["psk"]["key"])
            if identity is None or key is None:
                raise RecordError("psk needs identity and key")
            psk = PskCredential(identity=identity, key=key)
        x509 = None
        if doc.get("x509") is not None:
            x = doc["x509"]
            x509 = X509Expectation(
                certificate_der=_unb64(x.get("certificate_der")),
                ca_pems=tuple(str(p).encode("ascii") for p in x.get("ca_pems", ())),
                expected_names=tuple(str(n) for n in x.get("expected_names", ())),
            )
        return SecurityEntry(endpoint=str(doc["endpoint"]), psk=psk, x509=x509)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise RecordError(f"not a security entry document: {exc!r}") from None

"""The Write-Attributes this server has set on its clients, kept in the document store.

A client keeps the notification attributes (pmin, pmax, gt, lt, st, epmin,
epmax) it was given; the server otherwise forgets what it asked once the
2.04 is in. Kept here, in the ``attributes:<endpoint>`` namespace of the
:class:`~lwm2m.stores.base.DocumentStore` (one document per path, so two
paths never overwrite each other), they survive a restart and are known on
every node sharing the store: after a take-over the new node knows what
the device was told.

They are recorded by the node whose caller saw the client's 2.04 (a queued
Write-Attributes answered after its caller left is not recorded), and are
kept while the client is registered: a re-Register that replaces the
registration keeps them (the same client, which keeps its attributes), a
De-register or an expiry drops them.
"""

from __future__ import annotations

from lwm2m.model.path import Path
from lwm2m.protocol.attributes import AttributeUpdate
from lwm2m.stores.base import DocumentStore

NAMESPACE_PREFIX = "attributes:"

Attributes = dict[str, int | float]


def namespace(endpoint: str) -> str:
    return NAMESPACE_PREFIX + endpoint


class ServerAttributes:
    """Per endpoint and path, the attributes in force after the server's Write-Attributes."""

    def __init__(self, documents: DocumentStore) -> None:
        self.documents = documents

    async def record(self, endpoint: str, path: Path, update: AttributeUpdate) -> Attributes:
        """Apply an accepted Write-Attributes; returns the path's attributes now."""
        ns = namespace(endpoint)
        key = str(path)
        doc = await self.documents.get(ns, key)
        current = _attributes(doc)
        for name in update.remove:
            current.pop(name, None)
        current.update(update.set)
        if current:
            await self.documents.put(ns, key, {"attributes": current})
        elif doc is not None:
            await self.documents.delete(ns, key)
        return current

    async def of(self, endpoint: str) -> dict[Path, Attributes]:
        """Every path of ``endpoint`` with attributes the server set, in path order."""
        found: dict[Path, Attributes] = {}
        for key, doc in await self.documents.items(namespace(endpoint)):
            attributes = _attributes(doc)
            if attributes:
                try:
                    found[Path.parse(key)] = attributes
                except ValueError:
                    continue  # not written by us: skip
        return dict(sorted(found.items()))

    def may_hold(self, endpoint: str) -> bool:
        """False when the store knows, without I/O, that ``endpoint`` has none: its
        De-register then ends without a coroutine."""
        return self.documents.may_hold(namespace(endpoint))

    async def forget(self, endpoint: str) -> None:
        """The client left: what it was told no longer holds."""
        await self.documents.take_all(namespace(endpoint))


def _attributes(doc: object) -> Attributes:
    """The attributes of a stored document; anything malformed in it is left out."""
    if not isinstance(doc, dict):
        return {}
    raw = doc.get("attributes")
    if not isinstance(raw, dict):
        return {}
    return {
        str(k): v for k, v in raw.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }

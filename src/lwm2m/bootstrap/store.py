"""Bootstrap configurations by endpoint: validated CRUD over a document store.

Configurations are kept as their JSON documents in the ``bootstrap-config``
namespace of a :class:`~lwm2m.stores.base.DocumentStore`, so the memory,
SQLite and Redis backends all work; what the server uses is the parsed,
validated :class:`BootstrapConfig`. Writes are validated before anything is
stored: an invalid document never replaces a working one.

The ``bootstrap-applied`` namespace remembers, per endpoint, the fingerprint
of the configuration last written successfully; a registration of a client
whose configuration has changed since then triggers a server-initiated
bootstrap (:meth:`BootstrapServer.on_registration`).

Several nodes may share the document store (Redis): what one node writes,
another reads with :meth:`ConfigStore.fetch` and :meth:`ConfigStore.fetch_all`,
which the bootstrap server calls before it serves a Request Bootstrap, a push
or a registration, and the REST layer before it shows configurations. The
synchronous reads (:meth:`ConfigStore.get`, :meth:`ConfigStore.list`) give
this node's last view.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lwm2m.protocol.bootstrap_config import (
    BootstrapConfig,
    BootstrapConfigError,
    parse_client_config,
)
from lwm2m.stores.base import DocumentStore
from lwm2m.stores.memory import MemoryDocumentStore

CONFIG_NAMESPACE = "bootstrap-config"
APPLIED_NAMESPACE = "bootstrap-applied"


class ConfigStore:
    """The configurations the Bootstrap Server serves (reads are synchronous)."""

    def __init__(self, documents: DocumentStore | None = None) -> None:
        self._documents: DocumentStore = (
            documents if documents is not None else MemoryDocumentStore()
        )
        self._configs: dict[str, BootstrapConfig] = {}
        self._applied: dict[str, str] = {}

    async def load(self) -> list[BootstrapConfigError]:
        """Read stored configurations; returns the problems of documents that no longer validate."""
        problems: list[BootstrapConfigError] = []
        configs: dict[str, BootstrapConfig] = {}
        applied: dict[str, str] = {}
        for endpoint, doc in await self._documents.items(CONFIG_NAMESPACE):
            try:
                configs[endpoint] = parse_client_config(endpoint, doc)
            except BootstrapConfigError as exc:
                problems.append(exc)
        for endpoint, doc in await self._documents.items(APPLIED_NAMESPACE):
            fingerprint = doc.get("fingerprint")
            if isinstance(fingerprint, str):
                applied[endpoint] = fingerprint
        self._configs, self._applied = configs, applied
        return problems

    async def fetch(self, endpoint: str) -> BootstrapConfig | None:
        """The stored configuration of ``endpoint`` and its applied mark, read from the store.

        The view is updated with what was read. A stored document that no
        longer validates counts as no configuration (as at :meth:`load`).
        """
        doc = await self._documents.get(CONFIG_NAMESPACE, endpoint)
        config: BootstrapConfig | None = None
        if doc is not None:
            try:
                config = parse_client_config(endpoint, doc)
            except BootstrapConfigError:
                config = None
        if config is None:
            self._configs.pop(endpoint, None)
            self._applied.pop(endpoint, None)
            return None
        self._configs[endpoint] = config
        applied = await self._documents.get(APPLIED_NAMESPACE, endpoint)
        fingerprint = None if applied is None else applied.get("fingerprint")
        if isinstance(fingerprint, str):
            self._applied[endpoint] = fingerprint
        else:
            self._applied.pop(endpoint, None)
        return config

    async def fetch_all(self) -> list[BootstrapConfig]:
        """Every stored configuration (sorted by endpoint), the view replaced by what was read."""
        await self.load()
        return self.list()

    def get(self, endpoint: str) -> BootstrapConfig | None:
        return self._configs.get(endpoint)

    def list(self) -> list[BootstrapConfig]:
        return [self._configs[k] for k in sorted(self._configs)]

    def __contains__(self, endpoint: object) -> bool:
        return endpoint in self._configs

    def __len__(self) -> int:
        return len(self._configs)

    async def put(self, endpoint: str, doc: Mapping[str, Any]) -> BootstrapConfig:
        """Validate and store one endpoint's configuration; raises :class:`BootstrapConfigError`."""
        config = parse_client_config(endpoint, doc, where=f"clients[{endpoint!r}]")
        await self.put_config(config)
        return config

    async def put_config(self, config: BootstrapConfig) -> BootstrapConfig | None:
        """Store an already validated configuration; returns the one it replaced."""
        await self._documents.put(CONFIG_NAMESPACE, config.endpoint, config.to_json())
        old = self._configs.get(config.endpoint)
        self._configs[config.endpoint] = config
        return old

    async def put_all(self, configs: Mapping[str, BootstrapConfig]) -> None:
        for config in configs.values():
            await self.put_config(config)

    async def delete(self, endpoint: str) -> BootstrapConfig | None:
        await self._documents.delete(CONFIG_NAMESPACE, endpoint)
        await self._documents.delete(APPLIED_NAMESPACE, endpoint)
        self._applied.pop(endpoint, None)
        return self._configs.pop(endpoint, None)

    def applied_fingerprint(self, endpoint: str) -> str | None:
        return self._applied.get(endpoint)

    def needs_bootstrap(self, endpoint: str) -> bool:
        """True when ``endpoint`` has a configuration not yet written successfully."""
        config = self._configs.get(endpoint)
        return config is not None and self._applied.get(endpoint) != config.fingerprint

    async def mark_applied(self, endpoint: str, fingerprint: str) -> None:
        self._applied[endpoint] = fingerprint
        await self._documents.put(APPLIED_NAMESPACE, endpoint, {"fingerprint": fingerprint})

"""Factory Bootstrap (seed 7.1): accounts provisioned before the client first starts.

``--factory FILE`` holds the same JSON as one client of the Bootstrap Server's
configuration (``{"servers": [...], "bootstrap_server": {...}, "acl": [...]}``),
or a whole bootstrap configuration file from which the client's own endpoint
is taken. The instances are exactly what the Bootstrap Server would write
(:func:`lwm2m.protocol.provisioning.plan_writes`), installed into the store
before ``start()`` so that Factory Reset comes back to them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path as FsPath
from typing import TYPE_CHECKING, Any

from lwm2m.client.bootstrap.interface import node_values
from lwm2m.protocol.bootstrap_config import (
    BootstrapConfig,
    BootstrapConfigError,
    parse_client_config,
)
from lwm2m.protocol.provisioning import PlannedWrite, plan_writes

if TYPE_CHECKING:
    from lwm2m.client.client import LwM2MClient

PROVISIONING_OBJECTS = (0, 1, 2)


def parse_factory(data: Any, endpoint: str, *, base_dir: FsPath | None = None) -> BootstrapConfig:
    """A factory document for ``endpoint``: one client's configuration, or ``{"clients": ...}``."""
    if isinstance(data, dict) and "clients" in data:
        clients = data["clients"]
        if not isinstance(clients, dict) or endpoint not in clients:
            raise BootstrapConfigError("clients", f"no entry for endpoint {endpoint!r}")
        return parse_client_config(endpoint, clients[endpoint], base_dir=base_dir)
    return parse_client_config(endpoint, data, where="factory", base_dir=base_dir)


def load_factory_file(path: str | FsPath, endpoint: str) -> BootstrapConfig:
    """Read ``--factory FILE``; every problem is a :class:`BootstrapConfigError` naming the file and field."""
    fs_path = FsPath(path)
    try:
        data = json.loads(fs_path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BootstrapConfigError(str(fs_path), f"cannot read: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BootstrapConfigError(str(fs_path), f"not JSON: {exc}") from None
    try:
        return parse_factory(data, endpoint, base_dir=fs_path.parent)
    except BootstrapConfigError as exc:
        raise BootstrapConfigError(f"{fs_path}: {exc.where}", exc.problem) from None


def install_instances(client: LwM2MClient, writes: Iterable[PlannedWrite]) -> None:
    """Replace every Security, Server and Access Control instance by ``writes``."""
    store = client.store
    for oid in PROVISIONING_OBJECTS:
        store.add_object(oid)
        for inst in store.instances(oid):
            store.delete_instance(oid, inst.id)
    for write in writes:
        assert write.path.object_id is not None and write.path.instance_id is not None
        store.create_instance(
            write.path.object_id, write.path.instance_id, node_values(write.instance)
        )


def apply_factory(client: LwM2MClient, config: BootstrapConfig) -> None:
    """Factory Bootstrap: install ``config``'s accounts (call before ``client.start()``)."""
    install_instances(client, plan_writes(config))

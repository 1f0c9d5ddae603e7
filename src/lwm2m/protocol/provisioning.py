"""A client configuration as the object instances the Bootstrap Server writes.

Pure: :func:`plan_writes` turns a :class:`BootstrapConfig` into the ordered list
of ``(path, ObjectInstance)`` Bootstrap-Writes: Security (0) instances first
(bootstrap account, then LwM2M servers), then Server (1) instances, then
Access Control (2) instances. The client side uses the same functions for
Factory Bootstrap, so a ``--factory`` file and a bootstrap configuration
produce identical objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lwm2m.model.nodes import ObjectInstance, Resource
from lwm2m.model.path import Path
from lwm2m.model.types import ResourceType
from lwm2m.protocol.bootstrap_config import (
    AclEntry,
    BootstrapAccount,
    BootstrapConfig,
    LwM2MServerAccount,
)

SECURITY_OBJECT = 0
SERVER_OBJECT = 1
ACCESS_CONTROL_OBJECT = 2

# Security object (0) resources.
SEC_URI = 0
SEC_BOOTSTRAP = 1
SEC_MODE = 2
SEC_PUBLIC_KEY_OR_ID = 3
SEC_SERVER_PUBLIC_KEY = 4
SEC_SECRET_KEY = 5
SEC_SHORT_SERVER_ID = 10
SEC_HOLD_OFF = 11
SEC_ACCOUNT_TIMEOUT = 12

# Server object (1) resources.
SRV_SHORT_SERVER_ID = 0
SRV_LIFETIME = 1
SRV_DEFAULT_PMIN = 2
SRV_DEFAULT_PMAX = 3
SRV_DISABLE_TIMEOUT = 5
SRV_NOTIFICATION_STORING = 6
SRV_BINDING = 7

# Access Control object (2) resources.
ACL_OBJECT_ID = 0
ACL_INSTANCE_ID = 1
ACL_ACL = 2
ACL_OWNER = 3

_INT = ResourceType.INTEGER
_STR = ResourceType.STRING
_BOOL = ResourceType.BOOLEAN
_OPAQUE = ResourceType.OPAQUE


@dataclass(frozen=True, slots=True)
class PlannedWrite:
    """One Bootstrap-Write: an object instance at ``path`` (``/oid/iid``)."""

    path: Path
    instance: ObjectInstance


def bootstrap_security_instance(account: BootstrapAccount) -> ObjectInstance:
    """The Security instance of the client's Bootstrap-Server account."""
    sec = account.security
    return ObjectInstance.of(
        account.security_instance,
        [
            Resource.single(SEC_URI, account.uri, _STR),
            Resource.single(SEC_BOOTSTRAP, True, _BOOL),
            Resource.single(SEC_MODE, int(sec.mode), _INT),
            Resource.single(SEC_PUBLIC_KEY_OR_ID, sec.public_key_or_identity, _OPAQUE),
            Resource.single(SEC_SERVER_PUBLIC_KEY, sec.server_public_key, _OPAQUE),
            Resource.single(SEC_SECRET_KEY, sec.secret_key, _OPAQUE),
            Resource.single(SEC_HOLD_OFF, account.hold_off, _INT),
            Resource.single(SEC_ACCOUNT_TIMEOUT, account.account_timeout, _INT),
        ],
    )


def server_security_instance(server: LwM2MServerAccount) -> ObjectInstance:
    """The Security instance of an LwM2M Server account."""
    sec = server.security
    resources = [
        Resource.single(SEC_URI, server.uri, _STR),
        Resource.single(SEC_BOOTSTRAP, False, _BOOL),
        Resource.single(SEC_MODE, int(sec.mode), _INT),
        Resource.single(SEC_PUBLIC_KEY_OR_ID, sec.public_key_or_identity, _OPAQUE),
        Resource.single(SEC_SERVER_PUBLIC_KEY, sec.server_public_key, _OPAQUE),
        Resource.single(SEC_SECRET_KEY, sec.secret_key, _OPAQUE),
        Resource.single(SEC_SHORT_SERVER_ID, server.short_server_id, _INT),
    ]
    if server.hold_off is not None:
        resources.append(Resource.single(SEC_HOLD_OFF, server.hold_off, _INT))
    return ObjectInstance.of(server.security_instance, resources)


def server_instance(server: LwM2MServerAccount) -> ObjectInstance:
    """The Server instance of an LwM2M Server account."""
    resources = [
        Resource.single(SRV_SHORT_SERVER_ID, server.short_server_id, _INT),
        Resource.single(SRV_LIFETIME, server.lifetime, _INT),
    ]
    if server.default_min_period is not None:
        resources.append(Resource.single(SRV_DEFAULT_PMIN, server.default_min_period, _INT))
    if server.default_max_period is not None:
        resources.append(Resource.single(SRV_DEFAULT_PMAX, server.default_max_period, _INT))
    if server.disable_timeout is not None:
        resources.append(Resource.single(SRV_DISABLE_TIMEOUT, server.disable_timeout, _INT))
    resources.append(Resource.single(SRV_NOTIFICATION_STORING, server.notification_storing, _BOOL))
    resources.append(Resource.single(SRV_BINDING, server.binding, _STR))
    return ObjectInstance.of(server.server_instance, resources)


def access_control_instance(entry: AclEntry) -> ObjectInstance:
    """The Access Control instance for one ACL entry."""
    resources = [
        Resource.single(ACL_OBJECT_ID, entry.object_id, _INT),
        Resource.single(ACL_INSTANCE_ID, entry.instance_id, _INT),
    ]
    if entry.rights:
        resources.append(Resource.multiple(ACL_ACL, dict(entry.rights), _INT))
    resources.append(Resource.single(ACL_OWNER, entry.owner, _INT))
    return ObjectInstance.of(entry.acl_instance, resources)


def assign_security_instances(
    config: BootstrapConfig, existing: Mapping[int, int | None]
) -> dict[int, int]:
    """Where each configured Security instance goes on a client that already has some.

    ``existing`` is what Bootstrap-Discover of ``/0`` reported: instance ID ->
    Short Server ID (None for the Bootstrap-Server account). The configured
    bootstrap account replaces the client's one; a server account replaces the
    client's instance with the same Short Server ID; otherwise the configured
    ID is kept when free, else the lowest free ID is used. Returns configured
    ID -> ID to write.
    """
    by_ssid = {ssid: iid for iid, ssid in existing.items() if ssid is not None}
    client_bs = sorted(iid for iid, ssid in existing.items() if ssid is None)
    claimed: set[int] = set()
    mapping: dict[int, int] = {}
    wanted: list[tuple[int, int | None]] = []
    if config.bootstrap_server is not None:
        wanted.append((config.bootstrap_server.security_instance, None))
    wanted += [(s.security_instance, s.short_server_id) for s in config.servers]
    # First the instances that replace one the client has, then the rest.
    for configured, ssid in wanted:
        target = client_bs[0] if ssid is None and client_bs else by_ssid.get(ssid) if ssid else None
        if target is not None and target not in claimed:
            mapping[configured] = target
            claimed.add(target)
    for configured, _ in wanted:
        if configured in mapping:
            continue
        candidate = configured
        while candidate in claimed or candidate in existing:
            candidate += 1
        mapping[configured] = candidate
        claimed.add(candidate)
    return mapping


def _moved(inst: ObjectInstance, new_id: int) -> ObjectInstance:
    return inst if inst.id == new_id else ObjectInstance(new_id, inst.resources)


def plan_writes(
    config: BootstrapConfig, security_ids: Mapping[int, int] | None = None
) -> list[PlannedWrite]:
    """Every Bootstrap-Write for ``config``, in the order they are sent.

    ``security_ids`` (from :func:`assign_security_instances`) moves Security
    instances to the IDs the client needs.
    """
    ids = security_ids or {}
    writes: list[PlannedWrite] = []
    if config.bootstrap_server is not None:
        inst = bootstrap_security_instance(config.bootstrap_server)
        inst = _moved(inst, ids.get(inst.id, inst.id))
        writes.append(PlannedWrite(Path(SECURITY_OBJECT, inst.id), inst))
    for server in config.servers:
        inst = server_security_instance(server)
        inst = _moved(inst, ids.get(inst.id, inst.id))
        writes.append(PlannedWrite(Path(SECURITY_OBJECT, inst.id), inst))
    for server in config.servers:
        inst = server_instance(server)
        writes.append(PlannedWrite(Path(SERVER_OBJECT, inst.id), inst))
    for entry in config.acl:
        inst = access_control_instance(entry)
        writes.append(PlannedWrite(Path(ACCESS_CONTROL_OBJECT, inst.id), inst))
    return writes

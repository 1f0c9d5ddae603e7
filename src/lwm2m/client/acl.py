"""Access control (LwM2M 1.0 E.1.3 / 1.1 7.3, and seed D.1.2 for unbootstrapping).

Enforced only when more than one LwM2M Server account exists; a single server
has full access to every instance (except the Security object, which no
server ever reaches). For a given (object, instance) the rights of a server are:

1. its own ACL resource instance (resource instance ID = its Short Server ID);
2. else full rights (R, W, E, D) when it is the Access Control Owner;
3. else the default ACL resource instance (ID 0);
4. else nothing: the operation is answered 4.01 Unauthorized.

Create is checked on the object's ACL instance with instance ID 65535 (MAX_ID),
which bootstrap provisions. Discover is always allowed. Access Control object
instances are readable by every server and writable only by their owner.
"""

from __future__ import annotations

import enum

from lwm2m.client.store import ACCESS_CONTROL, SECURITY, ObjectStore
from lwm2m.protocol.errors import Unauthorized

MAX_ID = 65535


class Permission(enum.IntFlag):
    NONE = 0
    READ = 1  # Read, Observe, Write-Attributes
    WRITE = 2
    EXECUTE = 4
    DELETE = 8
    CREATE = 16


FULL = Permission.READ | Permission.WRITE | Permission.EXECUTE | Permission.DELETE


class AccessControl:
    """Decides which server may do what, from the Access Control object of a store."""

    __slots__ = ("store",)

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def enforced(self) -> bool:
        return len(self.store.server_accounts()) > 1

    def find(self, object_id: int, instance_id: int) -> tuple[dict[int, int], int | None] | None:
        """The ACL map and owner of the Access Control instance for (object, instance)."""
        for inst in self.store.instances(ACCESS_CONTROL):
            if inst.get(0) == object_id and inst.get(1) == instance_id:
                acl = inst.get(2)
                owner = inst.get(3)
                return (
                    {k: v for k, v in acl.items() if isinstance(v, int)}
                    if isinstance(acl, dict)
                    else {},
                    owner if isinstance(owner, int) and not isinstance(owner, bool) else None,
                )
        return None

    def rights(self, ssid: int, object_id: int, instance_id: int) -> Permission:
        if object_id == SECURITY:
            return Permission.NONE
        if not self.enforced():
            return FULL | Permission.CREATE
        if object_id == ACCESS_CONTROL:
            owner = self._acl_instance_owner(instance_id)
            return FULL if owner == ssid else Permission.READ
        entry = self.find(object_id, instance_id)
        if entry is None:
            return Permission.NONE
        acl, owner = entry
        if ssid in acl:
            return Permission(acl[ssid] & 0x1F)
        if owner == ssid:
            return FULL
        if 0 in acl:
            return Permission(acl[0] & 0x1F)
        return Permission.NONE

    def _acl_instance_owner(self, instance_id: int) -> int | None:
        inst = self.store.instance(ACCESS_CONTROL, instance_id)
        owner = None if inst is None else inst.get(3)
        return owner if isinstance(owner, int) else None

    def check(self, ssid: int, object_id: int, instance_id: int, needed: Permission) -> None:
        if needed not in self.rights(ssid, object_id, instance_id):
            raise Unauthorized(
                f"server {ssid} lacks {needed.name} rights on /{object_id}/{instance_id}"
            )

    def check_create(self, ssid: int, object_id: int) -> None:
        if object_id in (SECURITY, ACCESS_CONTROL):
            raise Unauthorized(f"servers cannot create instances of object {object_id}")
        if not self.enforced():
            return
        entry = self.find(object_id, MAX_ID)
        if entry is None or Permission.CREATE not in Permission(entry[0].get(ssid, 0) & 0x1F):
            raise Unauthorized(f"server {ssid} lacks Create rights on /{object_id}")

    def instance_created(self, ssid: int, object_id: int, instance_id: int) -> None:
        """A server created an instance: it becomes the Access Control Owner (1.1 7.3.x)."""
        if not self.enforced() or object_id == ACCESS_CONTROL:
            return
        self.store.create_instance(ACCESS_CONTROL, None, {0: object_id, 1: instance_id, 3: ssid})

    def instance_deleted(self, object_id: int, instance_id: int) -> None:
        """Drop the Access Control instance of a deleted instance."""
        for inst in self.store.instances(ACCESS_CONTROL):
            if inst.get(0) == object_id and inst.get(1) == instance_id:
                self.store.delete_instance(ACCESS_CONTROL, inst.id)

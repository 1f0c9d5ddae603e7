"""Unbootstrapping (seed 000, D.1.2): what deleting a server's Security instance implies.

When a Bootstrap-Delete removes the Security instance of LwM2M Server ``S``
(Short Server ID ``s``), the client MUST:

1. delete every object instance that only ``S`` may access (``S`` is its
   Access Control Owner and no other server has access), together with its
   Access Control instance;
2. for object instances other servers may access too, delete ``S``'s ACL
   resource instance and, where ``S`` was the Access Control Owner, make the
   server with the highest sum of rights (Write = 1, Delete = 1) the owner;
3. drop ``S``'s observations;
4. delete ``S``'s Server instance;
5. (MAY) De-register from ``S``.

:func:`plan_unbootstrap` is the pure part (rules 1, 2 and 4) over plain ACL
data, so every multi-server case can be tested exhaustively;
:class:`UnbootstrapPlan` says what to do and the client applies it (rules 3
and 5 are actions on its connections).

Precise readings (docs/bootstrap.md, docs/compliance.md):

- "may access": a server other than ``S`` may access an instance when its
  effective rights are non-zero: its own ACL resource instance when it has
  one, else the default ACL (resource instance 0), else none. The servers
  considered are the client's other LwM2M servers plus any Short Server ID
  named in that ACL.
- Rule 1 applies only when ``S`` is the owner; an instance owned by another
  server is never deleted, ``S``'s ACL resource instance is just removed.
- Ownership ties are broken by the lowest Short Server ID (the seed leaves
  the choice to the client; deterministic is testable).
- Access Control instances whose target instance is deleted (rule 1 or 4)
  are deleted as well: an ACL for a missing instance is meaningless.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from lwm2m.model.path import Path

DEFAULT_ACL_SSID = 0
WRITE = 2
DELETE = 8
SERVER_OBJECT = 1


@dataclass(frozen=True, slots=True)
class AclState:
    """One Access Control instance as data: target, ACL by Short Server ID, owner."""

    acl_instance: int
    object_id: int
    instance_id: int
    acl: Mapping[int, int]
    owner: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "acl", MappingProxyType(dict(sorted(self.acl.items()))))

    @property
    def target(self) -> Path:
        return Path(self.object_id, self.instance_id)


@dataclass(frozen=True, slots=True)
class OwnerChange:
    acl_instance: int
    old_owner: int
    new_owner: int


@dataclass(frozen=True, slots=True)
class UnbootstrapPlan:
    """What removing server ``short_server_id`` does to the client's objects."""

    short_server_id: int
    #: Rule 1 and 4: object instances to delete (Server instance of S included).
    delete_instances: tuple[Path, ...] = ()
    #: Access Control instances to delete (their target is deleted).
    delete_acl_instances: tuple[int, ...] = ()
    #: Rule 2: Access Control instances with their new content.
    update_acl_instances: tuple[AclState, ...] = ()
    owner_changes: tuple[OwnerChange, ...] = ()
    #: Rule 4: Server object instance IDs of S.
    delete_server_instances: tuple[int, ...] = field(default=())


def score(rights: int) -> int:
    """The ownership score of D.1.2 rule 2: Write counts 1, Delete counts 1."""
    return (1 if rights & WRITE else 0) + (1 if rights & DELETE else 0)


def effective_rights(acl: Mapping[int, int], ssid: int) -> int:
    """A server's rights on an instance: its own ACL entry, else the default ACL, else 0."""
    if ssid in acl:
        return acl[ssid]
    return acl.get(DEFAULT_ACL_SSID, 0)


def choose_owner(acl: Mapping[int, int], candidates: Iterable[int]) -> int | None:
    """The candidate with the highest score; ties go to the lowest Short Server ID."""
    best: tuple[int, int] | None = None
    for ssid in sorted(set(candidates)):
        rights = effective_rights(acl, ssid)
        if rights == 0:
            continue
        key = (-score(rights), ssid)
        if best is None or key < best:
            best = key
    return None if best is None else best[1]


def plan_unbootstrap(
    short_server_id: int,
    acl_instances: Iterable[AclState],
    server_instances: Mapping[int, int],
) -> UnbootstrapPlan:
    """Rules 1, 2 and 4 of D.1.2 for removing server ``short_server_id``.

    ``server_instances`` maps each Server object instance ID to its Short
    Server ID (all servers the client knows, ``S`` included).
    """
    s = short_server_id
    others = {ssid for ssid in server_instances.values() if ssid != s}
    delete_paths: list[Path] = []
    delete_acl: list[int] = []
    updates: list[AclState] = []
    changes: list[OwnerChange] = []

    own_server_iids = sorted(iid for iid, ssid in server_instances.items() if ssid == s)
    deleted_targets = {Path(SERVER_OBJECT, iid) for iid in own_server_iids}

    states = sorted(acl_instances, key=lambda a: a.acl_instance)
    for state in states:
        if state.target in deleted_targets:
            continue
        involved = state.owner == s or s in state.acl
        if not involved:
            continue
        candidates = (others | set(state.acl)) - {s, DEFAULT_ACL_SSID}
        shared = any(effective_rights(state.acl, c) != 0 for c in candidates)
        if state.owner == s and not shared:
            # Rule 1: only S may access it.
            delete_paths.append(state.target)
            deleted_targets.add(state.target)
            continue
        # Rule 2: remove S's ACL entry, hand over ownership if S had it.
        new_acl = {k: v for k, v in state.acl.items() if k != s}
        new_owner = state.owner
        if state.owner == s:
            chosen = choose_owner(new_acl, candidates)
            assert chosen is not None  # shared => some candidate has non-zero rights
            new_owner = chosen
            changes.append(OwnerChange(state.acl_instance, s, new_owner))
        updates.append(
            AclState(state.acl_instance, state.object_id, state.instance_id, new_acl, new_owner)
        )

    # Rule 4 and the ACLs of every deleted instance.
    for iid in own_server_iids:
        delete_paths.append(Path(SERVER_OBJECT, iid))
    for state in states:
        if state.target in deleted_targets:
            delete_acl.append(state.acl_instance)
    updates = [u for u in updates if u.acl_instance not in delete_acl]
    return UnbootstrapPlan(
        short_server_id=s,
        delete_instances=tuple(sorted(set(delete_paths))),
        delete_acl_instances=tuple(sorted(set(delete_acl))),
        update_acl_instances=tuple(updates),
        owner_changes=tuple(changes),
        delete_server_instances=tuple(own_server_iids),
    )


def apply_plan(plan: UnbootstrapPlan, acl_instances: Iterable[AclState]) -> dict[int, AclState]:
    """The ACL instances after ``plan`` (by ACL instance ID): a model for tests and chaining."""
    result = {a.acl_instance: a for a in acl_instances}
    for iid in plan.delete_acl_instances:
        result.pop(iid, None)
    for updated in plan.update_acl_instances:
        result[updated.acl_instance] = updated
    return result

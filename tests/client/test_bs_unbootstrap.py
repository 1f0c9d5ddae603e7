"""Unbootstrapping (seed D.1.2): every rule over multi-server ACL cases."""

from __future__ import annotations

import itertools

import pytest

from lwm2m.client.bootstrap.unbootstrap import (
    AclState,
    OwnerChange,
    apply_plan,
    choose_owner,
    plan_unbootstrap,
    score,
)
from lwm2m.model.path import Path

R, W, E, D, C = 1, 2, 4, 8, 16
S = 101
SERVERS = {0: 101, 1: 102, 2: 103}  # Server instance -> Short Server ID


def test_score_counts_write_and_delete_only() -> None:
    assert score(0) == 0
    assert score(R | E | C) == 0
    assert score(W) == 1 and score(D) == 1
    assert score(R | W | E | D | C) == 2


def test_rule1_instance_only_s_may_access_is_deleted_with_its_acl() -> None:
    acls = [AclState(0, 3303, 0, {S: R | W}, owner=S)]
    plan = plan_unbootstrap(S, acls, SERVERS)
    assert Path(3303, 0) in plan.delete_instances
    assert plan.delete_acl_instances == (0,)
    assert plan.update_acl_instances == ()


def test_rule1_other_servers_with_zero_rights_do_not_count() -> None:
    acls = [AclState(0, 3303, 0, {S: R, 102: 0, 0: 0}, owner=S)]
    plan = plan_unbootstrap(S, acls, SERVERS)
    assert Path(3303, 0) in plan.delete_instances


def test_rule2_shared_instance_loses_s_entry_and_owner_moves() -> None:
    acls = [AclState(4, 3, 0, {S: R | W | D, 102: R, 103: R | W}, owner=S)]
    plan = plan_unbootstrap(S, acls, SERVERS)
    assert Path(3, 0) not in plan.delete_instances
    (updated,) = plan.update_acl_instances
    assert dict(updated.acl) == {102: R, 103: R | W}
    assert updated.owner == 103  # W gives 1 point, R none
    assert plan.owner_changes == (OwnerChange(4, S, 103),)


def test_rule2_tie_goes_to_lowest_short_server_id() -> None:
    acls = [AclState(4, 3, 0, {S: R, 103: W | D, 102: R | W | D}, owner=S)]
    (updated,) = plan_unbootstrap(S, acls, SERVERS).update_acl_instances
    assert updated.owner == 102


def test_rule2_execute_and_create_do_not_win_ownership() -> None:
    acls = [AclState(4, 3, 0, {S: R, 102: R | E | C, 103: D}, owner=S)]
    (updated,) = plan_unbootstrap(S, acls, SERVERS).update_acl_instances
    assert updated.owner == 103


def test_rule2_default_acl_gives_other_servers_access() -> None:
    acls = [AclState(4, 3, 0, {S: R | W, 0: R | W}, owner=S)]
    (updated,) = plan_unbootstrap(S, acls, SERVERS).update_acl_instances
    assert dict(updated.acl) == {0: R | W}
    assert updated.owner == 102  # 102 and 103 tie through the default ACL


def test_rule2_s_not_owner_only_loses_its_entry() -> None:
    acls = [AclState(4, 3, 0, {S: R | W, 102: R}, owner=102)]
    plan = plan_unbootstrap(S, acls, SERVERS)
    (updated,) = plan.update_acl_instances
    assert dict(updated.acl) == {102: R} and updated.owner == 102
    assert plan.owner_changes == ()


def test_instance_owned_by_another_server_is_never_deleted() -> None:
    acls = [AclState(4, 3, 0, {S: R | W}, owner=102)]
    plan = plan_unbootstrap(S, acls, SERVERS)
    assert plan.delete_instances == (Path(1, 0),)
    (updated,) = plan.update_acl_instances
    assert dict(updated.acl) == {} and updated.owner == 102


def test_unrelated_acl_is_untouched() -> None:
    acls = [AclState(4, 3, 0, {102: R | W}, owner=102)]
    plan = plan_unbootstrap(S, acls, SERVERS)
    assert plan.update_acl_instances == () and plan.delete_acl_instances == ()


def test_rule4_server_instance_and_its_acl_are_deleted() -> None:
    acls = [
        AclState(0, 1, 0, {S: R | W, 102: R}, owner=S),  # ACL of S's own Server instance
        AclState(1, 1, 1, {102: R | W}, owner=102),
    ]
    plan = plan_unbootstrap(S, acls, SERVERS)
    assert plan.delete_server_instances == (0,)
    assert plan.delete_instances == (Path(1, 0),)
    assert plan.delete_acl_instances == (0,)
    assert plan.update_acl_instances == ()


def test_server_with_several_instances_and_unknown_server() -> None:
    plan = plan_unbootstrap(999, [], SERVERS)
    assert plan.delete_instances == () and plan.delete_server_instances == ()


def test_choose_owner_none_without_access() -> None:
    assert choose_owner({102: 0}, [102, 103]) is None


def test_sequential_removal_of_two_servers() -> None:
    acls = [
        AclState(0, 3, 0, {101: R | W | D, 102: R | W, 103: R}, owner=101),
        AclState(1, 5, 0, {101: R, 102: W}, owner=102),
    ]
    first = plan_unbootstrap(101, acls, SERVERS)
    after = apply_plan(first, acls)
    assert after[0].owner == 102 and dict(after[0].acl) == {102: R | W, 103: R}
    servers = {k: v for k, v in SERVERS.items() if v != 101}
    second = plan_unbootstrap(102, after.values(), servers)
    final = apply_plan(second, after.values())
    assert final[0].owner == 103 and dict(final[0].acl) == {103: R}
    assert Path(5, 0) in second.delete_instances and 1 not in final


# --- exhaustive: every combination of three servers' rights, default ACL and owner ----

RIGHTS = [None, 0, R, W, D, W | D, R | E, R | W | E | D | C]
DEFAULTS = [None, 0, R, W | D]


def _oracle(acl: dict[int, int], owner: int) -> tuple[str, int | None]:
    """The spec, restated: ('delete'|'keep'|'untouched', new owner)."""
    if owner != S and S not in acl:
        return "untouched", owner
    others = [102, 103]

    def rights(ssid: int) -> int:
        return acl[ssid] if ssid in acl else acl.get(0, 0)

    accessors = [o for o in others if rights(o)]
    if owner == S and not accessors:
        return "delete", None
    if owner != S:
        return "keep", owner
    best = max(score(rights(o)) for o in accessors)
    return "keep", min(o for o in accessors if score(rights(o)) == best)


@pytest.mark.parametrize("owner", [S, 102, 103])
def test_exhaustive_three_servers(owner: int) -> None:
    cases = 0
    for rs, r2, r3, default in itertools.product(RIGHTS, RIGHTS, RIGHTS, DEFAULTS):
        acl = {k: v for k, v in ((S, rs), (102, r2), (103, r3), (0, default)) if v is not None}
        state = AclState(7, 3303, 1, acl, owner)
        plan = plan_unbootstrap(S, [state], SERVERS)
        expected, new_owner = _oracle(acl, owner)
        after = apply_plan(plan, [state])
        if expected == "delete":
            assert Path(3303, 1) in plan.delete_instances, acl
            assert 7 not in after
        elif expected == "untouched":
            assert after[7] == state and Path(3303, 1) not in plan.delete_instances
        else:
            assert Path(3303, 1) not in plan.delete_instances, acl
            assert S not in after[7].acl
            assert after[7].owner == new_owner, (acl, owner)
            assert {k: v for k, v in after[7].acl.items()} == {
                k: v for k, v in acl.items() if k != S
            }
        assert plan.delete_server_instances == (0,)
        cases += 1
    assert cases == len(RIGHTS) ** 3 * len(DEFAULTS)

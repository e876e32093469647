"""What the engine keeps per VM (issue 15): nothing in autovlan, shared records elsewhere,
and the delta that lets intents do without a copy of every VM."""

from __future__ import annotations

from typing import Any

from vmfabric.core.model import (
    Host,
    HostUpsert,
    PortGroup,
    Power,
    Snapshot,
    Uplink,
    Vm,
    VmRemoved,
    VmUpsert,
)
from vmfabric.intents import AutovlanIntent, Removals, SessionPolicy, SwitchPolicy, full_desired
from vmfabric.intents import groups as groups_module
from vmfabric.intents.groups import AddressTarget, Glob, GroupDef, GroupsIntent, Tag
from vmfabric.inventory.index import Delta, Inventory

SW = SwitchPolicy("leaf1", frozenset({"p1", "p2"}))
HOSTS = (
    Host("vc", "esx1", uplinks=(Uplink("vmnic0", "leaf1", "p1", "static"),)),
    Host("vc", "esx2", uplinks=(Uplink("vmnic0", "leaf1", "p2", "static"),)),
)
PGS = (PortGroup("vc", "web", frozenset({110})), PortGroup("vc", "db", frozenset({120})))


def vm(name: str, host: str, nets: tuple[str, ...] = ("web",), tags: tuple[str, ...] = ()) -> Vm:
    return Vm("vc", name, name, host, Power.ON, nets, tags=tags)


def test_delta_names_each_changed_vms_record_from_before_the_batch() -> None:
    inv = Inventory(["vc"])
    first, moved = vm("a", "esx1"), vm("a", "esx2")
    inv.apply([Snapshot("vc", HOSTS, PGS, (first, vm("b", "esx1")))], 0.0)
    delta = inv.apply(
        [VmUpsert(moved), VmUpsert(vm("a", "esx1", ("db",))), VmRemoved("vc", "b")], 1
    )
    assert delta.before == {("vc", "a"): first, ("vc", "b"): vm("b", "esx1")}
    new = inv.apply([VmUpsert(vm("c", "esx1")), VmRemoved("vc", "c")], 2.0)
    assert new.vms == {("vc", "c")} and new.before == {}  # new in the batch: nothing before


def test_autovlan_made_over_a_filled_inventory_counts_every_vm_on_its_first_update() -> None:
    inv = Inventory(["vc"])
    vms = (vm("a", "esx1"), vm("b", "esx2", ("web", "db")))
    inv.apply([Snapshot("vc", HOSTS, PGS, vms)], 0.0)
    intent = AutovlanIntent([SW], [SessionPolicy("vc")], Removals(0.0))
    intent.update(inv, Delta(set(inv.vms)), 0.0)  # as the runtime feeds a rebuilt intent
    assert intent.desired_vlans() == full_desired(HOSTS, PGS, vms, [SessionPolicy("vc")], [SW])
    assert intent.users("leaf1", "p2", 120, inv) == {("vc", "b")}


def test_autovlan_recounts_vms_of_a_changed_host_against_what_it_counted() -> None:
    inv = Inventory(["vc"])
    intent = AutovlanIntent([SW], [SessionPolicy("vc")], Removals(0.0))
    intent.update(inv, inv.apply([Snapshot("vc", HOSTS, PGS, (vm("a", "esx1"),))], 0.0), 0.0)
    relinked = Host("vc", "esx1", uplinks=(Uplink("vmnic0", "leaf1", "p2", "static"),))
    moved = vm("a", "esx2", ("db",))
    dirty = intent.update(inv, inv.apply([HostUpsert(relinked), VmUpsert(moved)], 1.0), 1.0)
    assert dirty == {"leaf1"}
    assert intent.desired_vlans() == {("leaf1", "p2"): frozenset({120})}


def test_vms_tagged_alike_share_one_tag_tuple() -> None:
    inv = Inventory(["vc"])
    a = vm("a", "esx1", tags=tuple(["env:prod", "tier:web"]))
    b = vm("b", "esx1", tags=tuple(["env:prod", "tier:web"]))
    assert a.tags is not b.tags
    inv.apply([Snapshot("vc", HOSTS, PGS, (a, b))], 0.0)
    assert inv.vms[("vc", "a")].tags is inv.vms[("vc", "b")].tags


def test_vms_in_the_same_groups_share_one_membership_set_and_names_are_not_cached() -> None:
    groups = (GroupDef("web", Tag("tier:web")), GroupDef("a", Glob("name", "a*")))
    target = AddressTarget("fw1", "nftables", frozenset({"web", "a"}))
    intent = GroupsIntent(groups, (), (target,), (), Removals(0.0))
    inv = Inventory(["vc"])
    vms = tuple(vm(f"a{i}", "esx1", tags=("tier:web",)) for i in range(3))
    intent.update(inv, inv.apply([Snapshot("vc", HOSTS, PGS, vms)], 0.0), 0.0)
    first, *rest = (intent.groups_of(v.key) for v in vms)
    assert first == {"web", "a"} and all(g is first for g in rest)
    assert not intent.compiled._affix_keys  # one entry per VM name would be kept otherwise


def test_groups_see_a_removed_vm_as_it_was_before_the_batch() -> None:
    groups = (GroupDef("web", Tag("tier:web")),)
    target = AddressTarget("fw1", "nftables", frozenset({"web"}))
    intent = GroupsIntent(groups, (), (target,), (), Removals(0.0))
    inv = Inventory(["vc"])
    web = Vm("vc", "a", "a", "esx1", Power.ON, ("web",), ips=("10.0.0.1",), tags=("tier:web",))
    intent.update(inv, inv.apply([Snapshot("vc", HOSTS, PGS, (web,))], 0.0), 0.0)
    assert intent.addresses("web") == {"10.0.0.1"}
    dirty = intent.update(inv, inv.apply([VmRemoved("vc", "a")], 1.0), 1.0)
    assert dirty == {"fw1"} and intent.addresses("web") == frozenset()
    assert intent.members("web") == frozenset()


def test_big_groups_keep_their_members_in_a_set_and_stay_exact(monkeypatch: Any) -> None:
    monkeypatch.setattr(groups_module, "_SMALL", 2)  # a list up to 2 members, then a set
    intent = GroupsIntent((GroupDef("web", Tag("tier:web")),), (), (), (), Removals(0.0))
    inv = Inventory(["vc"])
    vms = [vm(f"v{i}", "esx1", tags=("tier:web",)) for i in range(4)]
    intent.update(inv, inv.apply([Snapshot("vc", HOSTS, PGS, tuple(vms[:2]))], 0.0), 0.0)
    assert isinstance(intent._members["web"], list)
    intent.update(inv, inv.apply([VmUpsert(v) for v in vms[2:]], 1.0), 1.0)
    assert isinstance(intent._members["web"], set)
    untagged = vm("v1", "esx1")
    intent.update(inv, inv.apply([VmUpsert(untagged), VmRemoved("vc", "v3")], 2.0), 2.0)
    assert intent.members("web") == {("vc", "v0"), ("vc", "v2")}

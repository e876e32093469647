"""The groups intent's incremental membership and desired state always equal a full
recompute, whatever sequence of VM events arrives (hypothesis), and a VM change touches
only the targets its groups feed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vmfabric.core.model import Power, SessionStatus, Snapshot, SourceEvent, Vm, VmRemoved, VmUpsert
from vmfabric.intents.groups import (
    AddressTarget,
    AllOf,
    AnyOf,
    Attr,
    DfwTarget,
    Glob,
    GroupDef,
    GroupsIntent,
    Not,
    Ref,
    RuleDef,
    Tag,
    full_membership,
)
from vmfabric.intents.removals import Removals
from vmfabric.inventory.index import Inventory

GROUPS = [
    GroupDef("web", Tag("tier:web")),
    GroupDef("app", AnyOf((Tag("app"), Glob("name", "app-*")))),
    GroupDef("db", Glob("name", "db-?"), ("10.9.0.0/24", "fd00:9::/64")),
    GroupDef("prod-web", AllOf((Ref("web"), Tag("env:prod")))),
    GroupDef("not-web", AllOf((Glob("session", "s1"), Not(Ref("web"))))),
    GroupDef("hv1-vms", Glob("host", "hv1")),
    GroupDef("owned", Attr("owner", "team-*")),
    GroupDef("linux", Glob("guest_os", "ubuntu*")),
    GroupDef("pg-a", Glob("portgroup", "pg-a")),
    GroupDef("folder", Glob("folder", "/dc/prod/*")),
    GroupDef("static", None, ("192.0.2.0/28",)),
    # globs indexed by literal prefix, suffix or neither
    GroupDef("ends-1", Glob("name", "*-1")),
    GroupDef("hv12", Glob("host", "hv[12]")),
    GroupDef("has-p", Glob("name", "*p*")),
    GroupDef("pg-any", AnyOf((Glob("portgroup", "*-b"), Glob("folder", "/dc/t*")))),
    GroupDef("lin-db", AllOf((Glob("guest_os", "*64Guest"), Glob("name", "db-1?")))),
]
RULES = [
    RuleDef("web-to-app", ("web",), ("app",)),
    RuleDef("app-to-db", ("app",), ("db",), block_unknown=True),
    RuleDef("scoped", ("prod-web",), (), scope=("hv1-vms",)),
    RuleDef("default", (), ("web", "app", "db")),
]
ADDRESS = [
    AddressTarget("fw", "nftables", frozenset({"web", "app", "db"}), ("web-to-app", "app-to-db")),
    AddressTarget("pa", "panos", frozenset(g.name for g in GROUPS)),
]
DFW = [DfwTarget(f"dfw@{h}", h, tuple(r.name for r in RULES)) for h in ("hv1", "hv2")]

names = st.sampled_from(["web-1", "app-1", "app-2", "app-", "db-1", "db-12", "x", "-1"])
tags = st.lists(st.sampled_from(["tier:web", "env:prod", "app", "x:app", "tier:db"]), max_size=3)
ips = st.lists(
    st.sampled_from(["10.0.0.1", "10.0.0.2", "10.9.0.5", "fd00::1", "fd00:9::5", "192.0.2.3"]),
    max_size=2,
    unique=True,
)


@st.composite
def vms(draw: st.DrawFn) -> Vm:
    return Vm(
        session=draw(st.sampled_from(["s1", "s2"])),
        id=draw(st.sampled_from(["a", "b", "c", "d"])),
        name=draw(names),
        host=draw(st.sampled_from(["hv1", "hv2", "hv3"])),
        power=draw(st.sampled_from([Power.ON, Power.OFF])),
        networks=tuple(draw(st.lists(st.sampled_from(["pg-a", "pg-b"]), max_size=2))),
        ips=tuple(sorted(draw(ips))),
        tags=tuple(sorted(set(draw(tags)))),
        attributes=tuple(
            draw(st.lists(st.sampled_from([("owner", "team-a"), ("x", "y")]), max_size=1))
        ),
        guest_os=draw(st.sampled_from(["", "ubuntu64Guest", "windows9Guest"])),
        folder=draw(st.sampled_from(["", "/dc/prod/web", "/dc/test"])),
    )


events = st.one_of(
    vms().map(VmUpsert),
    st.builds(VmRemoved, st.sampled_from(["s1", "s2"]), st.sampled_from(["a", "b", "c", "d"])),
    st.builds(
        lambda s, v: Snapshot(s, (), (), tuple({x.id: x for x in v if x.session == s}.values())),
        st.sampled_from(["s1", "s2"]),
        st.lists(vms(), max_size=3),
    ),
    st.builds(SessionStatus, st.sampled_from(["s1", "s2"]), st.just("disconnected")),
)


def intent() -> GroupsIntent:
    return GroupsIntent(GROUPS, RULES, ADDRESS, DFW, Removals(0.0))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(events, min_size=1, max_size=4), max_size=12))
def test_incremental_membership_equals_full_recompute(batches: list[list[SourceEvent]]) -> None:
    inv = Inventory(["s1", "s2"])
    gi = intent()
    for i, batch in enumerate(batches):
        delta = inv.apply(batch, float(i))
        gi.update(inv, delta, float(i))
        assert gi.membership() == full_membership(GROUPS, inv.vms.values())
        full = gi.recompute(inv)
        for target in gi.targets():
            assert gi.desired(target) == full[target], target


def test_a_tag_change_dirties_only_the_targets_of_its_groups() -> None:
    inv = Inventory(["s1"])
    gi = GroupsIntent(GROUPS, RULES, ADDRESS, [], Removals(0.0))
    vm = Vm("s1", "a", "x", "hv2", Power.ON, ips=("10.0.0.1",))
    gi.update(inv, inv.apply([Snapshot("s1", (), (), (vm,))], 1.0), 1.0)
    owned = Vm(
        "s1", "a", "x", "hv2", Power.ON, ips=("10.0.0.1",), attributes=(("owner", "team-b"),)
    )
    dirty = gi.update(inv, inv.apply([VmUpsert(owned)], 2.0), 2.0)
    assert dirty == {"pa"}, "owned is exported to pa only"
    assert gi.addresses("owned") == {"10.0.0.1"}
    web = Vm("s1", "a", "x", "hv2", Power.ON, ips=("10.0.0.1",), tags=("tier:web",))
    assert gi.update(inv, inv.apply([VmUpsert(web)], 3.0), 3.0) == {"fw", "pa"}
    powered_off = Vm("s1", "a", "x", "hv2", Power.OFF, ips=("10.0.0.1",), tags=("tier:web",))
    assert gi.update(inv, inv.apply([VmUpsert(powered_off)], 4.0), 4.0) == set()


def test_a_vm_address_inside_a_static_cidr_is_covered_by_it() -> None:
    inv = Inventory(["s1"])
    gi = intent()
    vm = Vm("s1", "a", "db-1", "hv1", Power.ON, ips=("10.9.0.5", "10.8.0.1"))
    gi.update(inv, inv.apply([Snapshot("s1", (), (), (vm,))], 1.0), 1.0)
    assert gi.addresses("db") == {"10.9.0.0/24", "fd00:9::/64", "10.8.0.1"}


def test_why_names_the_matching_conditions() -> None:
    gi = intent()
    vm = Vm("s1", "a", "web-1", "hv1", Power.ON, tags=("env:prod", "tier:web"))
    assert gi.compiled.why("prod-web", vm) == "group web (tag tier:web) and tag env:prod"
    assert gi.compiled.why("not-web", vm) == ""
    other = Vm("s1", "b", "app-7", "hv1", Power.ON)
    assert gi.compiled.why("not-web", other) == "session s1 and not (group web)"
    assert gi.compiled.why("app", other) == "name app-*"


def test_who_last_used_an_address_is_forgotten_once_it_is_removed() -> None:
    inv = Inventory(["s1", "s2"])
    gi = intent()
    vm = Vm("s2", "a", "web-1", "hv1", Power.ON, ips=("10.0.0.1",), tags=("tier:web",))
    gi.update(inv, inv.apply([Snapshot("s2", (), (), (vm,))], 1.0), 1.0)
    gi.update(inv, inv.apply([Snapshot("s2", (), (), ())], 2.0), 2.0)
    gi.update(inv, inv.apply([SessionStatus("s1", "disconnected")], 3.0), 3.0)
    gate = gi.gate(inv)
    assert gate("10.0.0.1") == ("", 1.0), "only s2 (in sync) could want it back"
    gi.removed("10.0.0.1")
    assert gate("10.0.0.1")[0] == "s1", "forgotten: any session out of sync holds it"
    assert "10.0.0.1" not in gi._vacated_by


def test_a_vm_leaving_a_host_is_not_held_by_another_session_out_of_sync() -> None:
    inv = Inventory(["s1", "s2"])
    gi = intent()
    web = Vm("s2", "a", "web-1", "hv1", Power.ON, ips=("10.0.0.1",), tags=("tier:web",))
    gi.update(
        inv, inv.apply([Snapshot("s1", (), (), ()), Snapshot("s2", (), (), (web,))], 1.0), 1.0
    )
    state = gi.desired("dfw@hv1")
    assert "vm-web-1" in state["egress"]
    gi.update(inv, inv.apply([SessionStatus("s1", "disconnected")], 2.0), 2.0)
    moved = Vm("s2", "a", "web-1", "hv2", Power.ON, ips=("10.0.0.1",), tags=("tier:web",))
    gi.update(inv, inv.apply([VmUpsert(moved)], 3.0), 3.0)
    plan = gi.plan("dfw@hv1", state, inv, 3.0)
    gone = {(c.holder, c.member) for c in plan.changes if c.action == "remove"}
    assert ("egress", "vm-web-1") in gone and ("ingress", "10.0.0.1=vm-web-1") in gone
    assert not [c for c in plan.held if "web-1" in c.member], "s1 never had web-1"

"""Planning semantics: adds at once, prune delay, origin tracking, fail-static, ranges."""

from __future__ import annotations

from support.autovlan import Autovlan, adds, removes
from vmfabric.core.model import (
    Host,
    PortGroup,
    PortMode,
    PortState,
    Power,
    SessionStatus,
    Snapshot,
    Uplink,
    Vm,
    VmRemoved,
    VmUpsert,
)
from vmfabric.intents import GuardLimits, SessionPolicy, SwitchPolicy, guard_verdict

SW = SwitchPolicy("leaf1", frozenset({"p1", "p2"}))
HOSTS = (
    Host("vc", "esx1", uplinks=(Uplink("vmnic0", "leaf1", "p1", "cdp"),)),
    Host("vc", "esx2", uplinks=(Uplink("vmnic0", "leaf1", "p2", "lldp"),)),
    Host("vc", "esx3", uplinks=(Uplink("vmnic0", "leaf1", "p3", "static"),)),  # not an edge port
)
PGS = (PortGroup("vc", "web", frozenset({110})), PortGroup("vc", "prot", frozenset({1001})))


def vm(name: str, host: str, power: Power = Power.ON, nets: tuple[str, ...] = ("web",)) -> Vm:
    return Vm("vc", name, name, host, power, nets)


def trunk(port: str, vlans: set[int], dynamic: set[int] | None = None) -> PortState:
    return PortState("leaf1", port, PortMode.TRUNK, frozenset(vlans), frozenset(dynamic or set()))


def engine(*vms: Vm, allowed: frozenset[int] = frozenset(range(1, 1001))) -> Autovlan:
    e = Autovlan([SW], [SessionPolicy("vc", True, allowed)], prune_delay=30.0)
    e.apply_one(Snapshot("vc", HOSTS, PGS, vms), now=0.0)
    return e


def states(**ports: PortState) -> dict[tuple[str, str], PortState]:
    return {("leaf1", name): st for name, st in ports.items()}


def test_vlan_is_added_at_once_with_vm_and_portgroup_as_reason() -> None:
    e = engine(vm("web-01", "esx1"))
    plan = e.plan(states(p1=trunk("p1", {4}), p2=trunk("p2", set())), now=0.0)
    (change,) = plan.changes
    assert (change.holder, change.action, change.member) == ("p1", "add", "110")
    assert change.reason == "VMs web-01 (port group web)" and change.sessions == ("vc",)


def test_removal_waits_for_prune_delay_and_is_cancelled_by_a_returning_vm() -> None:
    e = engine(vm("web-01", "esx1"))
    e.apply_one(VmUpsert(vm("web-01", "esx2")), now=10.0)  # vMotion esx1 -> esx2
    st = states(p1=trunk("p1", {110}, {110}), p2=trunk("p2", set()))
    plan = e.plan(st, now=10.0)
    assert adds(plan) == {("p2", 110)} and not removes(plan)
    assert plan.held[0].holder == "p1" and "prune delay" in plan.held[0].reason
    assert not removes(e.plan(st, now=39.9))  # p2 add still pending
    due = e.plan(st, now=40.0)
    assert removes(due) == {("p1", 110)}
    assert "prune delay 30s elapsed" in next(c.reason for c in due.changes if c.holder == "p1")
    e.apply_one(VmUpsert(vm("web-01", "esx1")), now=41.0)  # it came back
    assert not removes(e.plan(st, now=100.0))


def test_static_vlans_are_never_removed() -> None:
    e = engine()  # no VMs at all
    plan = e.plan(states(p1=trunk("p1", {110, 200}, dynamic={200})), now=1000.0)
    plan = e.plan(states(p1=trunk("p1", {110, 200}, dynamic={200})), now=2000.0)
    assert removes(plan) == {("p1", 200)} and not adds(plan)


def test_out_of_sync_session_holds_its_vlans() -> None:
    e = engine(vm("web-01", "esx1"))
    e.apply_one(SessionStatus("vc", "disconnected", error="timeout"), now=5.0)
    e.apply_one(VmRemoved("vc", "web-01"), now=5.0)
    st = states(p1=trunk("p1", {110}, {110}))
    assert not e.plan(st, now=1000.0).changes
    assert "not in sync" in e.plan(st, now=1000.0).held[0].reason
    e.apply_one(SessionStatus("vc", "connected"), now=1001.0)
    assert not e.plan(st, now=2000.0).changes, "connected is not in sync before a snapshot"
    e.apply_one(Snapshot("vc", HOSTS, PGS, ()), now=2001.0)
    assert not e.plan(st, now=2001.0).changes, "a snapshot with fewer VMs starts the delay"
    assert removes(e.plan(st, now=2031.0)) == {("p1", 110)}


def test_vlan_outside_allowed_range_is_never_added() -> None:
    e = engine(vm("db-01", "esx1", nets=("prot",)))
    assert not e.plan(states(p1=trunk("p1", set())), now=0.0).changes


def test_only_edge_ports_are_planned() -> None:
    e = engine(vm("web-01", "esx3"))
    plan = e.plan({("leaf1", "p3"): trunk("p3", set())}, now=0.0)
    assert not plan.changes and e.intent.desired_vlans() == {}


def test_powered_off_vm_needs_nothing() -> None:
    e = engine(vm("web-01", "esx1", Power.OFF))
    assert not e.plan(states(p1=trunk("p1", set())), now=0.0).changes


def test_open_port_is_left_alone_unless_the_switch_closes_open_ports() -> None:
    open_port = PortState("leaf1", "p1", PortMode.OPEN)
    e = engine(vm("web-01", "esx1"))
    plan = e.plan(states(p1=open_port), now=0.0)
    assert not plan.changes and "open_ports: keep" in plan.notes["p1"]
    closing = Autovlan(
        [SwitchPolicy("leaf1", frozenset({"p1"}), close_open=True)], [SessionPolicy("vc")], 30.0
    )
    closing.apply_one(Snapshot("vc", HOSTS, PGS, (vm("web-01", "esx1"),)), now=0.0)
    plan = closing.plan(states(p1=open_port), now=0.0)
    assert [(c.holder, c.action, c.member) for c in plan.changes] == [
        ("p1", "remove", "all"),  # closing the open port is a removal: audited and guarded
        ("p1", "add", "110"),
    ]


def test_guard_holds_mass_removals_and_never_adds() -> None:
    assert "max_removals=50" in guard_verdict(60, 80, "leaf1", GuardLimits())
    share = guard_verdict(42, 80, "leaf1", GuardLimits(max_removals=100))
    assert "42 of 80 dynamic" in share and "max_removal_share" in share
    assert guard_verdict(0, 80, "leaf1", GuardLimits()) == ""
    assert guard_verdict(9, 9, "leaf1", GuardLimits()) == "", "the share rule needs 10 members"


def test_next_deadline_is_when_the_pending_removal_becomes_due() -> None:
    e = engine(vm("web-01", "esx1"))
    e.apply_one(VmRemoved("vc", "web-01"), now=10.0)
    assert e.next_deadline(now=10.0) == 40.0
    assert e.next_deadline(now=40.0) is None  # due now: the plan at 40 takes it
    e.apply_one(SessionStatus("vc", "disconnected"), now=11.0)
    assert e.next_deadline(now=11.0) is None  # fail-static: no timer while out of sync


def test_snapshot_with_unknown_hosts_applies_but_holds_removals() -> None:
    e = engine(vm("web-01", "esx1"))
    e.apply_one(Snapshot("vc", HOSTS, PGS, (), unknown_hosts=("esx1",)), now=1.0)
    st = states(p1=trunk("p1", {110}, {110}))
    assert not e.in_sync("vc") and not e.plan(st, now=100.0).changes
    e.apply_one(Snapshot("vc", HOSTS, PGS, ()), now=101.0)
    assert e.in_sync("vc") and removes(e.plan(st, now=131.0)) == {("p1", 110)}


def test_check_mode_session_is_reported_never_applied() -> None:
    e = Autovlan(
        [SW],
        [SessionPolicy("vc", True, frozenset(range(1, 1001))), SessionPolicy("lab", check=True)],
        prune_delay=30.0,
    )
    e.apply_one(Snapshot("vc", HOSTS, PGS, ()), now=0.0)
    lab_hosts = tuple(Host("lab", h.name, uplinks=h.uplinks) for h in HOSTS)
    lab_pgs = (PortGroup("lab", "web", frozenset({110})),)
    lab_vm = Vm("lab", "t1", "test-01", "esx1", Power.ON, ("web",))
    e.apply_one(Snapshot("lab", lab_hosts, lab_pgs, (lab_vm,)), now=0.0)
    st = states(p1=trunk("p1", set()))
    plan = e.plan(st, now=0.0)
    assert not plan.changes, "a check-mode session's VLAN is never applied"
    assert [(c.holder, c.member, c.reason) for c in plan.check] == [
        ("p1", "110", "VMs test-01 (port group web)")
    ]
    e.apply_one(VmUpsert(vm("web-01", "esx1")), now=1.0)  # an enforcing VM wants 110 too
    plan = e.plan(st, now=1.0)
    assert adds(plan) == {("p1", 110)} and not plan.check
    e.apply_one(VmRemoved("vc", "web-01"), now=2.0)  # back to check-only
    assert e.intent.checked() == {("leaf1", "p1"): frozenset({110})}
    assert e.intent.desired_vlans() == {}

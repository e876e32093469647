"""Planning semantics: adds at once, prune delay, origin tracking, fail-static, ranges."""

from __future__ import annotations

from vmfabric.core.model import (
    Host,
    PortGroup,
    PortMode,
    PortPlan,
    PortState,
    Power,
    SessionStatus,
    Snapshot,
    Uplink,
    Vm,
    VmRemoved,
    VmUpsert,
)
from vmfabric.intents import AutovlanEngine, GuardLimits, SessionPolicy, SwitchPolicy, guard_verdict

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


def engine(*vms: Vm, allowed: frozenset[int] = frozenset(range(1, 1001))) -> AutovlanEngine:
    e = AutovlanEngine([SW], [SessionPolicy("vc", True, allowed)], prune_delay=30.0)
    e.apply_one(Snapshot("vc", HOSTS, PGS, vms), now=0.0)
    return e


def states(**ports: PortState) -> dict[tuple[str, str], PortState]:
    return {("leaf1", name): st for name, st in ports.items()}


def test_vlan_is_added_at_once_with_vm_and_portgroup_as_reason() -> None:
    e = engine(vm("web-01", "esx1"))
    plan = e.plan(states(p1=trunk("p1", {4}), p2=trunk("p2", set())), now=0.0)
    (port,) = plan.ports
    assert (port.port, port.add, port.remove) == ("p1", frozenset({110}), frozenset())
    assert port.reasons[0].vms == ("web-01",) and port.reasons[0].portgroups == ("web",)


def test_removal_waits_for_prune_delay_and_is_cancelled_by_a_returning_vm() -> None:
    e = engine(vm("web-01", "esx1"))
    e.apply_one(VmUpsert(vm("web-01", "esx2")), now=10.0)  # vMotion esx1 -> esx2
    st = states(p1=trunk("p1", {110}, {110}), p2=trunk("p2", set()))
    plan = e.plan(st, now=10.0)
    assert [(p.port, p.add, p.remove) for p in plan] == [("p2", frozenset({110}), frozenset())]
    assert plan.held[0].port == "p1" and "prune delay" in plan.held[0].reasons[0].note
    assert not e.plan(st, now=39.9).for_switch("leaf1")[0].remove  # p2 add still pending
    due = e.plan(st, now=40.0)
    assert ("p1", frozenset({110})) in [(p.port, p.remove) for p in due]
    e.apply_one(VmUpsert(vm("web-01", "esx1")), now=41.0)  # it came back
    assert all(not p.remove for p in e.plan(st, now=100.0))


def test_static_vlans_are_never_removed() -> None:
    e = engine()  # no VMs at all
    plan = e.plan(states(p1=trunk("p1", {110, 200}, dynamic={200})), now=1000.0)
    plan = e.plan(states(p1=trunk("p1", {110, 200}, dynamic={200})), now=2000.0)
    assert [p.remove for p in plan] == [frozenset({200})]


def test_out_of_sync_session_holds_its_vlans() -> None:
    e = engine(vm("web-01", "esx1"))
    e.apply_one(SessionStatus("vc", "disconnected", error="timeout"), now=5.0)
    e.apply_one(VmRemoved("vc", "web-01"), now=5.0)
    st = states(p1=trunk("p1", {110}, {110}))
    assert not e.plan(st, now=1000.0).ports
    assert "not in sync" in e.plan(st, now=1000.0).held[0].reasons[0].note
    e.apply_one(SessionStatus("vc", "connected"), now=1001.0)
    assert not e.plan(st, now=2000.0).ports, "connected is not in sync before a snapshot"
    e.apply_one(Snapshot("vc", HOSTS, PGS, ()), now=2001.0)
    assert not e.plan(st, now=2001.0).ports, "a snapshot with fewer VMs starts the prune delay"
    assert e.plan(st, now=2031.0).ports[0].remove == frozenset({110})


def test_vlan_outside_allowed_range_is_never_added() -> None:
    e = engine(vm("db-01", "esx1", nets=("prot",)))
    assert not e.plan(states(p1=trunk("p1", set())), now=0.0)


def test_only_edge_ports_are_planned() -> None:
    e = engine(vm("web-01", "esx3"))
    plan = e.plan({("leaf1", "p3"): trunk("p3", set())}, now=0.0)
    assert not plan and e.desired() == {}


def test_powered_off_vm_needs_nothing() -> None:
    e = engine(vm("web-01", "esx1", Power.OFF))
    assert not e.plan(states(p1=trunk("p1", set())), now=0.0)


def test_open_port_is_left_alone_unless_the_switch_closes_open_ports() -> None:
    open_port = PortState("leaf1", "p1", PortMode.OPEN)
    e = engine(vm("web-01", "esx1"))
    assert not e.plan(states(p1=open_port), now=0.0)
    closing = AutovlanEngine(
        [SwitchPolicy("leaf1", frozenset({"p1"}), close_open=True)], [SessionPolicy("vc")], 30.0
    )
    closing.apply_one(Snapshot("vc", HOSTS, PGS, (vm("web-01", "esx1"),)), now=0.0)
    assert closing.plan(states(p1=open_port), now=0.0).ports[0].add == frozenset({110})


def test_guard_holds_mass_removals_and_never_adds() -> None:
    st = {("leaf1", f"p{i}"): trunk(f"p{i}", {10, 20}, {10, 20}) for i in range(40)}
    big = [PortPlan("leaf1", f"p{i}", remove=frozenset({10, 20})) for i in range(30)]
    assert "max_removals=50" in guard_verdict(big, st, "leaf1", GuardLimits())
    share = [PortPlan("leaf1", f"p{i}", remove=frozenset({10, 20})) for i in range(21)]
    assert "max_removal_share" in guard_verdict(share, st, "leaf1", GuardLimits(max_removals=100))
    adds = [PortPlan("leaf1", f"p{i}", add=frozenset({30})) for i in range(40)]
    assert guard_verdict(adds, st, "leaf1", GuardLimits()) == ""


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
    assert not e.in_sync("vc") and not e.plan(st, now=100.0).ports
    e.apply_one(Snapshot("vc", HOSTS, PGS, ()), now=101.0)
    assert e.in_sync("vc") and e.plan(st, now=131.0).ports[0].remove == frozenset({110})


def test_check_mode_session_is_reported_never_applied() -> None:
    e = AutovlanEngine(
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
    assert not plan.ports, "a check-mode session's VLAN is never applied"
    assert [(p.port, p.add, p.reasons[0].vms) for p in plan.check] == [
        ("p1", frozenset({110}), ("test-01",))
    ]
    e.apply_one(VmUpsert(vm("web-01", "esx1")), now=1.0)  # an enforcing VM wants 110 too
    plan = e.plan(st, now=1.0)
    assert plan.ports[0].add == frozenset({110}) and not plan.check
    e.apply_one(VmRemoved("vc", "web-01"), now=2.0)  # back to check-only
    assert e.checked() == {("leaf1", "p1"): frozenset({110})} and e.desired() == {}

"""The overlay intent: flood lists from placement, incremental == recompute, and planning.

The property test drives random histories of source events (place, move, power, remove,
port group VLAN change, uplink relink, host removal, snapshots, session state) through the
shared inventory into the intent, and after every batch compares each VTEP's incremental
flood lists with a full recompute, and checks that every VTEP whose flood lists changed was
reported dirty.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmfabric.core.model import (
    Host,
    HostRemoved,
    HostUpsert,
    PortGroup,
    PortGroupUpsert,
    Power,
    SessionStatus,
    Snapshot,
    SourceEvent,
    Uplink,
    Vm,
    VmRemoved,
    VmUpsert,
)
from vmfabric.intents.overlay import Held, OverlayIntent, OverlayPolicy, Vtep
from vmfabric.intents.removals import Removals
from vmfabric.inventory.index import Delta, Inventory

VTEPS = (Vtep("leaf1", "10.0.0.1"), Vtep("leaf2", "10.0.0.2"), Vtep("leaf3", "10.0.0.3"))
VNI_OF = {110: 10110, 120: 10120, 130: 10130}  # VLAN 140 is not overlaid
POLICY = OverlayPolicy(VTEPS, VNI_OF, frozenset({"chk"}))
SESSIONS = ("a", "b", "chk")
HOSTS = ("h1", "h2", "h3")
SWITCHES = ("leaf1", "leaf2", "leaf3", "spine")  # spine has no VTEP
PGS = ("web", "db", "misc")
VMS = ("v1", "v2", "v3", "v4")

sessions = st.sampled_from(SESSIONS)
uplinks = st.lists(
    st.builds(
        lambda nic, sw: Uplink(nic, sw, "eth1", "static"),
        st.sampled_from(("n0", "n1")),
        st.sampled_from(SWITCHES),
    ),
    max_size=2,
).map(tuple)
vswitch = st.sampled_from(({}, {"pg:web": frozenset({"n0"})}, {"pg:db": frozenset()}))
hosts = st.builds(
    lambda s, n, up, vs: Host(s, n, (), vs, up), sessions, st.sampled_from(HOSTS), uplinks, vswitch
)
portgroups = st.builds(
    PortGroup,
    sessions,
    st.sampled_from(PGS),
    st.frozensets(st.sampled_from((110, 120, 130, 140)), max_size=2),
)
powers = st.sampled_from((Power.ON, Power.ON, Power.OFF))
vms = st.builds(
    lambda s, i, h, p, nets: Vm(s, i, i, h, p, tuple(nets)),
    sessions,
    st.sampled_from(VMS),
    st.sampled_from(HOSTS),
    powers,
    st.lists(st.sampled_from(PGS), min_size=1, max_size=2, unique=True),
)
snapshots = st.builds(
    lambda s, hs, ps, vs, unknown: Snapshot(
        s,
        tuple({h.name: h for h in hs if h.session == s}.values()),
        tuple({p.name: p for p in ps if p.session == s}.values()),
        tuple({v.id: v for v in vs if v.session == s}.values()),
        ("h9",) if unknown else (),
    ),
    sessions,
    st.lists(hosts, max_size=3),
    st.lists(portgroups, max_size=3),
    st.lists(vms, max_size=4),
    st.booleans(),
)
events: st.SearchStrategy[SourceEvent] = st.one_of(
    vms.map(VmUpsert),
    vms.map(VmUpsert),
    st.builds(VmRemoved, sessions, st.sampled_from(VMS)),
    hosts.map(HostUpsert),
    st.builds(HostRemoved, sessions, st.sampled_from(HOSTS)),
    portgroups.map(PortGroupUpsert),
    snapshots,
    st.builds(SessionStatus, sessions, st.sampled_from(("connected", "disconnected"))),
)


def _all(intent: OverlayIntent) -> dict[str, dict[str, frozenset[str]]]:
    return {t: d for t in intent.targets() if (d := intent.desired(t))}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(events, min_size=1, max_size=4), min_size=1, max_size=12))
def test_incremental_flood_lists_equal_a_full_recompute(batches: list[list[SourceEvent]]) -> None:
    inv = Inventory(SESSIONS)
    intent = OverlayIntent(POLICY, Removals(30.0))
    for step, batch in enumerate(batches):
        before = _all(intent)
        delta = inv.apply(batch, float(step))
        dirty = intent.update(inv, delta, float(step))
        after = _all(intent)
        assert after == intent.recompute(inv), f"after batch {step}: {batch}"
        changed = {t for t in set(before) | set(after) if before.get(t) != after.get(t)}
        assert changed <= dirty, f"changed but not dirty: {changed - dirty}"


# ---- small worlds, by hand ------------------------------------------------------------


def _world(placement: dict[str, tuple[str, str]], now: float = 0.0) -> tuple[Inventory, Delta]:
    """One session, hosts hN uplinked to leafN (h12: to leaf1 and leaf2), VMs name ->
    (host, port group); port groups web=110, db=120, local=140 (not overlaid)."""
    hosts = [
        Host("s", "h1", (), {}, (Uplink("n0", "leaf1", "eth1", "static"),)),
        Host("s", "h2", (), {}, (Uplink("n0", "leaf2", "eth1", "static"),)),
        Host("s", "h3", (), {}, (Uplink("n0", "leaf3", "eth1", "static"),)),
    ]
    pgs = [
        PortGroup("s", "web", frozenset({110})),
        PortGroup("s", "db", frozenset({120})),
        PortGroup("s", "local", frozenset({140})),
    ]
    vms = [Vm("s", n, n, h, Power.ON, (pg,)) for n, (h, pg) in placement.items()]
    inv = Inventory(["s"])
    delta = inv.apply([Snapshot("s", tuple(hosts), tuple(pgs), tuple(vms))], now)
    return inv, delta


def _intent(delay: float = 30.0) -> OverlayIntent:
    return OverlayIntent(POLICY, Removals(delay))


def test_each_vtep_floods_a_vni_only_to_the_leaves_with_a_vm_of_it() -> None:
    inv, delta = _world({"a": ("h1", "web"), "b": ("h2", "web"), "c": ("h1", "db")})
    intent = _intent()
    assert intent.update(inv, delta, 0.0) == {"leaf1:vtep", "leaf2:vtep", "leaf3:vtep"}
    assert intent.desired("leaf1:vtep") == {"10110": {"10.0.0.2"}, "10120": frozenset()}
    assert intent.desired("leaf2:vtep") == {"10110": {"10.0.0.1"}}
    assert intent.desired("leaf3:vtep") == {}, "no VM behind leaf3: no flood list at all"


def test_a_vlan_without_a_vni_and_a_powered_off_vm_flood_nowhere() -> None:
    inv, delta = _world({"a": ("h1", "local"), "b": ("h2", "local")})
    intent = _intent()
    intent.update(inv, delta, 0.0)
    assert _all(intent) == {}
    vm = inv.vms[("s", "a")]
    off = Vm(vm.session, vm.id, vm.name, "h2", Power.OFF, ("web",))
    intent.update(inv, inv.apply([VmUpsert(off)], 1.0), 1.0)
    assert _all(intent) == {}


def test_a_vmotion_adds_the_new_leaf_at_once_and_prunes_the_old_after_the_delay() -> None:
    inv, delta = _world({"a": ("h1", "web"), "b": ("h2", "web")})
    intent = _intent(delay=30.0)
    intent.update(inv, delta, 0.0)
    on_leaf1 = {"10110": Held(frozenset({"10.0.0.2"}), frozenset({"10.0.0.2"}))}
    assert intent.plan("leaf1:vtep", on_leaf1, inv, 1.0).changes == ()

    moved = Vm("s", "b", "b", "h3", Power.ON, ("web",))  # b: leaf2 -> leaf3
    dirty = intent.update(inv, inv.apply([VmUpsert(moved)], 10.0), 10.0)
    assert dirty == {"leaf1:vtep", "leaf2:vtep", "leaf3:vtep"}
    plan = intent.plan("leaf1:vtep", on_leaf1, inv, 10.0)
    assert [(c.member, c.action) for c in plan.changes] == [("10.0.0.3", "add")]
    assert "b" in plan.changes[0].reason and "leaf3" in plan.changes[0].reason
    assert [(c.member, c.reason) for c in plan.held] == [
        ("10.0.0.2", "prune delay: removal in 30.0s")
    ]
    both = {"10110": Held(frozenset({"10.0.0.2", "10.0.0.3"}), frozenset({"10.0.0.2", "10.0.0.3"}))}
    assert intent.plan("leaf1:vtep", both, inv, 39.9).changes == ()
    late = intent.plan("leaf1:vtep", both, inv, 40.0)
    assert [(c.member, c.action) for c in late.changes] == [("10.0.0.2", "remove")]
    assert "leaf2" in late.changes[0].reason


def test_a_vm_coming_back_cancels_the_pending_removal() -> None:
    inv, delta = _world({"a": ("h1", "web"), "b": ("h2", "web")})
    intent = _intent(delay=30.0)
    intent.update(inv, delta, 0.0)
    held = {"10110": Held(frozenset({"10.0.0.2"}), frozenset({"10.0.0.2"}))}
    intent.update(inv, inv.apply([VmRemoved("s", "b")], 5.0), 5.0)
    assert intent.plan("leaf1:vtep", held, inv, 20.0).held
    back = Vm("s", "b", "b", "h2", Power.ON, ("web",))
    intent.update(inv, inv.apply([VmUpsert(back)], 21.0), 21.0)
    plan = intent.plan("leaf1:vtep", held, inv, 100.0)
    assert plan.changes == () and plan.held == ()


def test_a_static_remote_vtep_is_never_removed() -> None:
    inv, delta = _world({"a": ("h1", "web")})
    intent = _intent(delay=0.0)
    intent.update(inv, delta, 0.0)
    static = {"10110": Held(frozenset({"192.0.2.9"}), frozenset())}
    assert intent.plan("leaf1:vtep", static, inv, 100.0).changes == ()


def test_removals_wait_while_any_session_is_out_of_sync() -> None:
    inv, delta = _world({"a": ("h1", "web")})
    intent = _intent(delay=0.0)
    intent.update(inv, delta, 0.0)
    stale = {"10110": Held(frozenset({"10.0.0.2"}), frozenset({"10.0.0.2"}))}
    intent.update(inv, inv.apply([SessionStatus("s", "disconnected")], 1.0), 1.0)
    plan = intent.plan("leaf1:vtep", stale, inv, 50.0)
    assert plan.changes == ()
    assert "session s not in sync" in plan.held[0].reason
    snap = Snapshot(
        "s", tuple(inv.hosts.values()), tuple(inv.portgroups.values()), (inv.vms[("s", "a")],)
    )
    intent.update(inv, inv.apply([snap], 60.0), 60.0)
    assert [c.action for c in intent.plan("leaf1:vtep", stale, inv, 60.0).changes] == ["remove"]


def test_a_leaf_that_lost_its_last_vm_of_a_vni_drops_the_whole_flood_list() -> None:
    inv, delta = _world({"a": ("h1", "web"), "b": ("h2", "web")})
    intent = _intent(delay=0.0)
    intent.update(inv, delta, 0.0)
    intent.update(inv, inv.apply([VmRemoved("s", "a")], 1.0), 1.0)
    held = {"10110": Held(frozenset({"10.0.0.2"}), frozenset({"10.0.0.2"}))}
    plan = intent.plan("leaf1:vtep", held, inv, 1.0)
    assert [(c.holder, c.member, c.action) for c in plan.changes] == [
        ("10110", "10.0.0.2", "remove")
    ]
    assert "behind leaf1" in plan.changes[0].reason


def test_a_new_configuration_recomputes_every_flood_list() -> None:
    inv, delta = _world({"a": ("h1", "web"), "b": ("h2", "web"), "c": ("h3", "db")})
    intent = _intent()
    intent.update(inv, delta, 0.0)
    moved = (Vtep("leaf1", "10.0.0.1"), Vtep("leaf2", "10.9.9.2"), Vtep("leaf3", "10.0.0.3"))
    dirty = intent.set_policy(OverlayPolicy(moved, {110: 10110}), inv, 1.0)
    assert dirty == {"leaf1:vtep", "leaf2:vtep", "leaf3:vtep"}
    assert (
        _all(intent)
        == intent.recompute(inv)
        == {
            "leaf1:vtep": {"10110": {"10.9.9.2"}},
            "leaf2:vtep": {"10110": {"10.0.0.1"}},
        }
    ), "VLAN 120 no longer overlaid; leaf2's new address"
    stale = {"10120": Held(frozenset(), frozenset())}
    old = {"10110": Held(frozenset({"10.0.0.2"}), frozenset({"10.0.0.2"}))}
    plan = intent.plan("leaf1:vtep", old, inv, 1.0)
    assert [(c.member, c.action) for c in plan.changes] == [("10.9.9.2", "add")]
    assert [c.member for c in plan.held] == ["10.0.0.2"], "the old address waits"
    assert intent.plan("leaf3:vtep", stale, inv, 1.0).changes == ()

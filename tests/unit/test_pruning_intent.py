"""Inter-switch VLAN pruning: which links carry a VLAN, incremental == recompute, planning.

``FabricGraph.carried`` is checked against brute force (every simple path between every
pair of switches needing the VLAN) on random small fabrics; the intent's incremental trunk
VLANs against a full recompute after every batch of random source events.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmfabric.core.model import (
    Host,
    HostUpsert,
    PortGroup,
    PortGroupUpsert,
    PortMode,
    PortState,
    Power,
    SessionStatus,
    Snapshot,
    SourceEvent,
    Uplink,
    Vm,
    VmRemoved,
    VmUpsert,
)
from vmfabric.intents.pruning import (
    CLOSE_MEMBER,
    FabricGraph,
    FabricLinkSpec,
    PruningIntent,
    PruningPolicy,
)
from vmfabric.intents.removals import Removals
from vmfabric.inventory.index import Inventory

SWITCHES = ("s0", "s1", "s2", "s3", "s4", "s5")


def _links(pairs: list[tuple[str, str]]) -> list[FabricLinkSpec]:
    return [FabricLinkSpec((a, f"p{i}a"), (b, f"p{i}b")) for i, (a, b) in enumerate(pairs)]


def _brute(links: list[FabricLinkSpec], terminals: set[str]) -> set[int]:
    """Links on some simple path between two distinct terminals, by enumeration."""
    adj: dict[str, list[tuple[str, int]]] = {}
    for i, link in enumerate(links):
        adj.setdefault(link.a[0], []).append((link.b[0], i))
        adj.setdefault(link.b[0], []).append((link.a[0], i))
    found: set[int] = set()

    def walk(node: str, goal: str, seen: set[str], used: list[int]) -> None:
        if node == goal:
            found.update(used)
            return
        for nxt, edge in adj.get(node, []):
            if nxt not in seen:
                walk(nxt, goal, seen | {nxt}, [*used, edge])

    for x, y in itertools.combinations(sorted(terminals), 2):
        walk(x, y, {x}, [])
    return found


pairs = st.lists(
    st.tuples(st.sampled_from(SWITCHES), st.sampled_from(SWITCHES)).filter(lambda p: p[0] != p[1]),
    max_size=8,
)


@settings(max_examples=400, deadline=None)
@given(pairs, st.sets(st.sampled_from(SWITCHES), max_size=4))
def test_a_vlan_is_kept_on_exactly_the_links_of_some_path_between_two_switches_needing_it(
    edges: list[tuple[str, str]], terminals: set[str]
) -> None:
    links = _links(edges)
    assert FabricGraph(links).carried(terminals) == _brute(links, terminals)


def test_leaf_spine_square_keeps_a_vlan_of_two_leaves_on_every_link() -> None:
    square = _links([("leaf1", "spine3"), ("leaf1", "spine4"), ("leaf2", "spine3"),
                     ("leaf2", "spine4")])  # fmt: skip
    graph = FabricGraph(square)
    assert graph.carried({"leaf1", "leaf2"}) == {0, 1, 2, 3}, "any of them after a failure"
    assert graph.carried({"leaf1"}) == set(), "needed behind one leaf: carried nowhere"
    assert graph.carried(set()) == set()


def test_pods_joined_by_single_links_carry_a_vlan_only_where_it_is_needed() -> None:
    pods = _links([
        ("a1", "a2"), ("a2", "a3"), ("a3", "a1"),  # pod a: a ring
        ("b1", "b2"), ("b2", "b3"), ("b3", "b1"),  # pod b: a ring
        ("a1", "core"), ("core", "b1"),            # single links to a core switch
        ("c1", "core"),                            # a lone switch c1
    ])  # fmt: skip
    graph = FabricGraph(pods)
    assert graph.carried({"a2", "a3"}) == {0, 1, 2}, "pod a only"
    assert graph.carried({"a2", "b3"}) == {0, 1, 2, 3, 4, 5, 6, 7}
    assert graph.carried({"c1", "b2"}) == {3, 4, 5, 7, 8}
    assert graph.carried({"a1", "core"}) == {6}


# ---- the intent ------------------------------------------------------------------------

SQUARE = tuple(
    _links([("leaf1", "spine3"), ("leaf1", "spine4"), ("leaf2", "spine3"), ("leaf2", "spine4")])
)
MANAGED = {
    "leaf1": frozenset({"p0a", "p1a"}),
    "leaf2": frozenset({"p2a", "p3a"}),
    "spine3": frozenset({"p0b", "p2b"}),  # spine4 is not managed: its ports are never written
}
POLICY = PruningPolicy(SQUARE, MANAGED, frozenset({1}), frozenset({"chk"}))
SESSIONS = ("a", "chk")
HOSTS = ("h1", "h2", "h3")

uplinks = st.lists(
    st.builds(
        lambda nic, sw: Uplink(nic, sw, "e1", "static"),
        st.sampled_from(("n0", "n1")),
        st.sampled_from(("leaf1", "leaf2", "spine3")),
    ),
    max_size=2,
).map(tuple)
hosts = st.builds(
    lambda s, n, up: Host(s, n, (), {}, up), st.sampled_from(SESSIONS), st.sampled_from(HOSTS),
    uplinks,
)  # fmt: skip
portgroups = st.builds(
    PortGroup, st.sampled_from(SESSIONS), st.sampled_from(("pg1", "pg2")),
    st.frozensets(st.sampled_from((10, 20, 30)), max_size=2),
)  # fmt: skip
vms = st.builds(
    lambda s, i, h, p, nets: Vm(s, i, i, h, p, tuple(nets)),
    st.sampled_from(SESSIONS),
    st.sampled_from(("v1", "v2", "v3", "v4")),
    st.sampled_from(HOSTS),
    st.sampled_from((Power.ON, Power.ON, Power.OFF)),
    st.lists(st.sampled_from(("pg1", "pg2")), min_size=1, max_size=2, unique=True),
)
events: st.SearchStrategy[SourceEvent] = st.one_of(
    vms.map(VmUpsert),
    vms.map(VmUpsert),
    st.builds(VmRemoved, st.sampled_from(SESSIONS), st.sampled_from(("v1", "v2", "v3", "v4"))),
    hosts.map(HostUpsert),
    portgroups.map(PortGroupUpsert),
    st.builds(SessionStatus, st.sampled_from(SESSIONS), st.sampled_from(("connected",))),
)


def _all(intent: PruningIntent) -> dict[str, dict[str, frozenset[str]]]:
    return {t: intent.desired(t) for t in intent.targets()}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(events, min_size=1, max_size=4), min_size=1, max_size=10))
def test_incremental_trunk_vlans_equal_a_full_recompute(batches: list[list[SourceEvent]]) -> None:
    inv = Inventory(SESSIONS)
    intent = PruningIntent(POLICY, Removals(30.0))
    for step, batch in enumerate(batches):
        before = _all(intent)
        dirty = intent.update(inv, inv.apply(batch, float(step)), float(step))
        after = _all(intent)
        full = intent.recompute(inv)
        assert after == {t: full.get(t, after[t]) for t in after}
        assert all(full[t] == after[t] for t in full)
        changed = {t for t in after if before.get(t) != after[t]}
        assert changed <= dirty


def _world(placement: dict[str, str]) -> tuple[Inventory, PruningIntent]:
    """Hosts h1 (leaf1), h2 (leaf2), h12 (both); VMs name -> host, VLAN from port group."""
    hosts = (
        Host("a", "h1", (), {}, (Uplink("n0", "leaf1", "e1", "static"),)),
        Host("a", "h2", (), {}, (Uplink("n0", "leaf2", "e1", "static"),)),
        Host("a", "h12", (), {}, (Uplink("n0", "leaf1", "e2", "static"),
                                  Uplink("n1", "leaf2", "e2", "static"))),
    )  # fmt: skip
    pgs = tuple(PortGroup("a", f"pg{v}", frozenset({v})) for v in (10, 20, 30))
    vm_list = tuple(
        Vm("a", n, n, h.split("/")[0], Power.ON, (f"pg{h.split('/')[1]}",))
        for n, h in placement.items()
    )
    inv = Inventory(["a"])
    intent = PruningIntent(PruningPolicy(SQUARE, MANAGED, frozenset({1})), Removals(30.0))
    intent.update(inv, inv.apply([Snapshot("a", hosts, pgs, vm_list)], 0.0), 0.0)
    return inv, intent


def _trunk(port: str, vlans: set[int], dynamic: set[int] | None = None) -> PortState:
    return PortState("leaf1:fabric", port, PortMode.TRUNK, frozenset(vlans),
                     frozenset(vlans if dynamic is None else dynamic))  # fmt: skip


def test_a_vlan_behind_one_leaf_is_pruned_and_one_behind_both_is_kept() -> None:
    _, intent = _world({"x": "h1/10", "y": "h2/10", "z": "h1/20", "w": "h12/30"})
    assert intent.desired("leaf1:fabric") == {"p0a": {"1", "10", "30"}, "p1a": {"1", "10", "30"}}
    assert intent.desired("spine3:fabric") == {"p0b": {"1", "10", "30"}, "p2b": {"1", "10", "30"}}
    assert intent.targets() == ["leaf1:fabric", "leaf2:fabric", "spine3:fabric"]
    assert intent.needs(20) == {"leaf1"}


def test_an_open_fabric_trunk_is_narrowed_only_after_the_delay_and_in_sync() -> None:
    inv, intent = _world({"x": "h1/10", "y": "h2/10"})
    states = {p: PortState("leaf1:fabric", p, PortMode.OPEN) for p in ("p0a", "p1a")}
    plan = intent.plan("leaf1:fabric", states, inv, 10.0)
    assert plan.changes == ()
    assert [(c.holder, c.member) for c in plan.held] == [("p0a", "all"), ("p1a", "all")]
    inv.apply([SessionStatus("a", "disconnected")], 50.0)
    assert intent.plan("leaf1:fabric", states, inv, 50.0).changes == (), "fail-static"
    snap = Snapshot("a", tuple(inv.hosts.values()), tuple(inv.portgroups.values()),
                    tuple(inv.vms.values()))  # fmt: skip
    inv.apply([snap], 60.0)
    assert intent.plan("leaf1:fabric", states, inv, 89.0).changes == ()
    plan = intent.plan("leaf1:fabric", states, inv, 90.0)
    assert [(c.holder, c.member, c.action) for c in plan.changes] == [
        ("p0a", CLOSE_MEMBER, "remove"), ("p0a", "1", "add"), ("p0a", "10", "add"),
        ("p1a", CLOSE_MEMBER, "remove"), ("p1a", "1", "add"), ("p1a", "10", "add"),
    ]  # fmt: skip


def test_static_vlans_stay_and_a_vmotion_adds_at_once_and_prunes_after_the_delay() -> None:
    inv, intent = _world({"x": "h1/10", "y": "h2/10", "z": "h1/20"})
    states = {"p0a": _trunk("p0a", {1, 10, 99}, {1, 10}), "p1a": _trunk("p1a", {1, 10})}
    assert intent.plan("leaf1:fabric", states, inv, 1.0).changes == (), "99 is static"
    moved = Vm("a", "z", "z", "h2", Power.ON, ("pg20",))  # VLAN 20 now behind leaf2 only
    other = Vm("a", "q", "q", "h1", Power.ON, ("pg20",))  # and a new one behind leaf1
    dirty = intent.update(inv, inv.apply([VmUpsert(moved), VmUpsert(other)], 5.0), 5.0)
    assert dirty == {"leaf1:fabric", "leaf2:fabric", "spine3:fabric"}
    plan = intent.plan("leaf1:fabric", states, inv, 5.0)
    assert {(c.holder, c.member, c.action) for c in plan.changes} == {
        ("p0a", "20", "add"),
        ("p1a", "20", "add"),
    }
    assert "leaf1, leaf2" in plan.changes[0].reason
    intent.update(inv, inv.apply([VmRemoved("a", "q")], 6.0), 6.0)
    states = {p: _trunk(p, {1, 10, 20}) for p in ("p0a", "p1a")}
    assert intent.plan("leaf1:fabric", states, inv, 35.9).changes == ()
    late = intent.plan("leaf1:fabric", states, inv, 36.0)
    assert [(c.holder, c.member, c.action) for c in late.changes] == [
        ("p0a", "20", "remove"), ("p1a", "20", "remove")
    ]  # fmt: skip
    assert "needed only behind leaf2" in late.changes[0].reason

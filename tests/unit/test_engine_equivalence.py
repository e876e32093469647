"""Incremental autovlan state equals a full recompute after every batch of random histories.

Hypothesis drives sequences of the changes sources emit (place, move, power, remove, port
group VLAN change or removal, uplink relink, host removal, full snapshots, session state),
cut into batches of random size as the runtime's intake cuts them, against a small universe
where collisions are frequent. After every batch it compares the shared inventory with a
reference kept here, and the autovlan intent's desired state, contributor sets and
check-mode set with ``full_desired`` over the reference (and with the intent's own
``recompute``).
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.autovlan import Autovlan
from vmfabric.core.model import (
    Host,
    HostRemoved,
    HostUpsert,
    Nic,
    PortGroup,
    PortGroupRemoved,
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
from vmfabric.intents import SessionPolicy, SwitchPolicy, full_desired
from vmfabric.intents.autovlan import vm_triples
from vmfabric.inventory.index import Inventory

SESSIONS = ("a", "b", "c")
HOSTS = ("h0", "h1", "h2")
NICS = ("n0", "n1")
PGS = ("pg0", "pg1", "pg2")
VMS = ("v0", "v1", "v2", "v3", "v4")
SWITCHES = (SwitchPolicy("s0", frozenset({"p0", "p1"})), SwitchPolicy("s1", frozenset({"p0"})))
PORTS = (("s0", "p0"), ("s0", "p1"), ("s0", "p2"), ("s1", "p0"), ("s1", "p1"))
POLICIES = (
    SessionPolicy("a", True, frozenset(range(1, 4095))),
    SessionPolicy("b", True, frozenset({10, 20})),
    SessionPolicy("c", True, frozenset({10, 30}), check=True),  # mode: check
)

sessions = st.sampled_from(SESSIONS)
vlan_sets = st.frozensets(st.sampled_from((10, 20, 30)), max_size=2)
dense_vlan_sets = st.frozensets(st.sampled_from((10, 20, 30)), min_size=1, max_size=2)
uplink = st.builds(
    lambda nic, port: Uplink(nic, port[0], port[1], "static"),
    st.sampled_from(NICS),
    st.sampled_from(PORTS),
)
uplinks = st.lists(uplink, max_size=3).map(tuple)
dense_uplinks = st.lists(uplink, min_size=1, max_size=3).map(tuple)
vswitch_maps = st.dictionaries(
    st.sampled_from(("pg:pg0", "pg:pg1", "dvs:d")), st.frozensets(st.sampled_from(NICS)), max_size=2
)


def _host(s: str, n: str, up: tuple[Uplink, ...], vs: dict[str, frozenset[str]]) -> Host:
    return Host(s, n, tuple(Nic(x) for x in NICS), vs, up)


hosts = st.builds(_host, sessions, st.sampled_from(HOSTS), uplinks, vswitch_maps)
carriage = st.sampled_from(("", "", "pg:pg0", "pg:pg1", "dvs:d"))
portgroups = st.builds(PortGroup, sessions, st.sampled_from(PGS), vlan_sets, carriage)
powers = st.sampled_from((Power.ON, Power.ON, Power.ON, Power.OFF, Power.SUSPENDED))
vms = st.builds(
    lambda s, i, h, p, nets: Vm(s, i, i.upper(), h, p, tuple(nets)),
    sessions,
    st.sampled_from(VMS),
    st.sampled_from(HOSTS),
    powers,
    st.lists(st.sampled_from(PGS), min_size=1, max_size=2, unique=True),
)


@st.composite
def dense_snapshot(draw: st.DrawFn, session: str) -> Snapshot:
    """Every host and port group present, every host with an uplink: a busy start."""
    return Snapshot(
        session,
        tuple(_host(session, n, draw(dense_uplinks), draw(vswitch_maps)) for n in HOSTS),
        tuple(PortGroup(session, n, draw(dense_vlan_sets), draw(carriage)) for n in PGS),
        tuple(
            Vm(
                session,
                i,
                i.upper(),
                draw(st.sampled_from(HOSTS)),
                draw(powers),
                tuple(draw(st.lists(st.sampled_from(PGS), min_size=1, max_size=2, unique=True))),
            )
            for i in VMS
        ),
    )


snapshots = st.builds(
    lambda s, hs, ps, vs: Snapshot(
        s,
        tuple({h.name: h for h in hs if h.session == s}.values()),
        tuple({p.name: p for p in ps if p.session == s}.values()),
        tuple({v.id: v for v in vs if v.session == s}.values()),
    ),
    sessions,
    st.lists(hosts, max_size=3),
    st.lists(portgroups, max_size=3),
    st.lists(vms, max_size=5),
)
events: st.SearchStrategy[SourceEvent] = st.one_of(
    vms.map(VmUpsert),
    st.builds(VmRemoved, sessions, st.sampled_from(VMS)),
    hosts.map(HostUpsert),
    st.builds(HostRemoved, sessions, st.sampled_from(HOSTS)),
    portgroups.map(PortGroupUpsert),
    st.builds(PortGroupRemoved, sessions, st.sampled_from(PGS)),
    snapshots,
    st.builds(
        SessionStatus, sessions, st.sampled_from(("connecting", "connected", "disconnected"))
    ),
)


class Reference:
    """The inventory as plain dicts: what a full recompute starts from."""

    def __init__(self) -> None:
        self.hosts: dict[tuple[str, str], Host] = {}
        self.pgs: dict[tuple[str, str], PortGroup] = {}
        self.vms: dict[tuple[str, str], Vm] = {}

    def apply(self, ev: SourceEvent) -> None:  # noqa: C901 - one case per event type
        match ev:
            case VmUpsert(vm=vm):
                self.vms[vm.key] = vm
            case VmRemoved(session=s, id=i):
                self.vms.pop((s, i), None)
            case HostUpsert(host=h):
                self.hosts[h.key] = h
            case HostRemoved(session=s, name=n):
                self.hosts.pop((s, n), None)
            case PortGroupUpsert(portgroup=p):
                self.pgs[p.key] = p
            case PortGroupRemoved(session=s, name=n):
                self.pgs.pop((s, n), None)
            case Snapshot(session=s):
                for table, items in (
                    (self.hosts, ev.hosts),
                    (self.pgs, ev.portgroups),
                    (self.vms, ev.vms),
                ):
                    tbl: dict[Any, Any] = table
                    for key in [k for k in tbl if k[0] == s]:
                        del tbl[key]
                    tbl.update({i.key: i for i in items})
            case SessionStatus():
                pass

    def checked(self) -> dict[tuple[str, str], frozenset[int]]:
        """Per port, the VLANs wanted only by sessions in check mode."""
        checking = {p.name for p in POLICIES if p.check}
        out: dict[tuple[str, str], set[int]] = {}
        for (sw, port, vlan), users in self.users().items():
            if all(s in checking for s, _ in users):
                out.setdefault((sw, port), set()).add(vlan)
        return {k: frozenset(v) for k, v in out.items()}

    def indexes(self) -> tuple[dict[Any, list[Any]], dict[Any, list[Any]]]:
        """Host -> VMs on it and port group -> VMs attached, built from the VMs."""
        hosts: dict[Any, list[Any]] = {}
        pgs: dict[Any, list[Any]] = {}
        for key, vm in sorted(self.vms.items()):
            hosts.setdefault((vm.session, vm.host), []).append(key)
            for name in sorted(set(vm.networks)):
                pgs.setdefault((vm.session, name), []).append(key)
        return hosts, pgs

    def users(self) -> dict[tuple[str, str, int], set[tuple[str, str]]]:
        pol = {p.name: p for p in POLICIES}
        edge = {s.name: s.edge_ports for s in SWITCHES}
        out: dict[tuple[str, str, int], set[tuple[str, str]]] = {}
        for vm in self.vms.values():
            host = self.hosts.get((vm.session, vm.host))
            for t in vm_triples(vm, host, self.pgs, pol.get(vm.session), edge):
                out.setdefault(t, set()).add(vm.key)
        return out


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dense_snapshot("a"),
    dense_snapshot("b"),
    dense_snapshot("c"),
    st.lists(events, min_size=1, max_size=30),
    st.lists(st.integers(1, 4), min_size=1, max_size=30),
)
def test_incremental_equals_full_recompute_after_every_batch(
    start_a: Snapshot,
    start_b: Snapshot,
    start_c: Snapshot,
    changes: list[SourceEvent],
    sizes: list[int],
) -> None:
    av = Autovlan(SWITCHES, POLICIES, prune_delay=30.0)
    ref = Reference()
    history: list[SourceEvent] = [start_a, start_b, start_c, *changes]
    nonempty = 0
    batches = _batches(history, sizes)
    for step, batch in enumerate(batches):
        av.apply(batch, now=float(step))
        for ev in batch:
            ref.apply(ev)
        where = f"batch {step}: {batch}"
        assert (av.inventory.hosts, av.inventory.portgroups, av.inventory.vms) == (
            ref.hosts, ref.pgs, ref.vms
        ), where  # fmt: skip
        full = full_desired(
            ref.hosts.values(), ref.pgs.values(), ref.vms.values(), POLICIES, SWITCHES
        )
        assert av.intent.desired_vlans() == full, where
        recomputed = av.intent.recompute(av.inventory)
        assert {sw: av.intent.desired(sw) for sw in recomputed} == recomputed, where
        for (sw, port, vlan), users in ref.users().items():
            assert av.intent.users(sw, port, vlan, av.inventory) == users, where
        assert av.intent.checked() == ref.checked(), where
        assert _indexes(av.inventory) == ref.indexes(), where
        nonempty += bool(full)
    DENSITY.append(nonempty / len(batches))


def _indexes(inventory: Inventory) -> tuple[dict[Any, list[Any]], dict[Any, list[Any]]]:
    """The inventory's host and port-group indexes over the whole universe (each entry
    sorted, so that a key indexed twice shows)."""
    hosts = {(s, h): sorted(inventory.vms_on_host((s, h))) for s in SESSIONS for h in HOSTS}
    pgs = {(s, p): sorted(inventory.vms_in_portgroup((s, p))) for s in SESSIONS for p in PGS}
    return {k: v for k, v in hosts.items() if v}, {k: v for k, v in pgs.items() if v}


def _batches(history: list[SourceEvent], sizes: list[int]) -> list[list[SourceEvent]]:
    out: list[list[SourceEvent]] = []
    i = 0
    while i < len(history):
        size = sizes[len(out) % len(sizes)]
        out.append(history[i : i + size])
        i += size
    return out


DENSITY: list[float] = []


def test_histories_were_not_trivial() -> None:
    """Guards the generator: most steps of the histories above must have desired VLANs."""
    assert DENSITY, "run together with the equivalence test"
    assert sum(DENSITY) / len(DENSITY) > 0.5

"""``vmfabric demo --overlay``: VXLAN flood lists that follow the VMs, on a routed fabric.

What runs (all real, all local): the built-in ``overlay`` lab with ``underlay: bgp`` (three
leaves, two spines, FRR, every leaf an OVS userspace VTEP), VMs as namespaces, and
vmfabric's overlay intent with one VTEP target per leaf writing tunnel ports over OVSDB.

The demo shows, checking each step (a failed expectation ends it with exit 1):

1. VMs of one VLAN behind two leaves ping each other over the routed underlay;
2. a VNI whose VMs are all behind one leaf floods to no one;
3. a vMotion: the new leaf joins the flood lists at once, the old one is pruned after
   the prune delay, and a broadcast proves it with counted copies;
4. ``show vxlan``: per VNI the VTEPs and the VMs behind each.

``OverlayFabric`` (the lab and vmfabric's overlay driven as one) is shared with the
end-to-end tests and the benchmark. Until the runtime's composition root runs overlay
targets, it feeds the inventory the events a source would emit for the lab's VMs and
runs the reconcile step in-process (``runtime.overlay.reconcile_once``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.rule import Rule

from vmfabric.config import Config, parse_config
from vmfabric.core.errors import PermanentError
from vmfabric.core.model import (
    Host,
    Nic,
    PortGroup,
    PortMode,
    Power,
    Snapshot,
    SourceEvent,
    Uplink,
    Vm,
    VmRemoved,
    VmUpsert,
)
from vmfabric.core.vlans import ALL_VLANS
from vmfabric.intents.base import TargetPlan
from vmfabric.intents.overlay import OverlayIntent
from vmfabric.intents.pruning import PruningIntent
from vmfabric.inventory.index import Inventory
from vmfabric.lab import builder, probe, vtep
from vmfabric.lab import netns as nsx
from vmfabric.lab import topology as tp
from vmfabric.lab.builder import LabState, NodeState
from vmfabric.runtime.overlay import (
    FabricTrunkTarget,
    VtepTarget,
    build,
    build_pruning,
    guard_limits,
    reconcile_once,
)
from vmfabric.runtime.target import Target
from vmfabric.store import Store

SESSION = "lab"
console = Console(highlight=False)


def _fabric_ports(lab: LabState, node: NodeState) -> list[str]:
    """Switch ports that lead to another switch over an L2 trunk (underlay none)."""
    switches = {n.name for n in lab.nodes.values() if n.kind == tp.Kind.SWITCH}
    return [
        p.name
        for p in node.ports
        if not p.edge and not p.address and p.peer.split(":", 1)[0] in switches
    ]


def lab_config(
    lab: LabState,
    prune_delay: float,
    vni_map: dict[int, int] | None = None,
    pruning: bool = False,
    keep_vlans: str = "",
) -> dict[str, Any]:
    """A vmfabric.yaml for a lab. With ``vni_map``: the overlay, each leaf with its VTEP (the
    VTEP namespace's OVSDB, bridge ``br-int``). With ``pruning``: every switch's L2 fabric
    ports opted in, and the lab's switch-to-switch links as ``fabric_links``."""
    switches = []
    for node in lab.nodes.values():
        if node.kind != tp.Kind.SWITCH:
            continue
        entry: dict[str, Any] = {
            "name": node.name,
            "driver": "ovs",
            "ovsdb": node.ovsdb,
            "bridge": node.bridge,
            "edge_ports": list(node.edge_ports),
        }
        if vni_map is not None and node.vtep_address:
            entry["vtep"] = {
                "address": node.vtep_address,
                "ovsdb": node.vtep_ovsdb,
                "bridge": vtep.INT_BRIDGE,
            }
        if pruning:
            entry["fabric_ports"] = _fabric_ports(lab, node)
        if node.edge_ports or entry.get("fabric_ports"):
            switches.append(entry)
    data: dict[str, Any] = {
        "engine": {"prune_delay": prune_delay},
        "sessions": [{"name": SESSION, "kind": "static", "path": "inventory.yaml"}],
        "switches": switches,
    }
    if vni_map is not None:
        data["overlay"] = {"vni_map": vni_map}
    if pruning:
        data["fabric_links"] = [
            {"a": link.a, "b": link.b} for link in lab.links if _is_fabric(lab, link.a, link.b)
        ]
        data["pruning"] = {"keep_vlans": keep_vlans}
    return data


def _is_fabric(lab: LabState, a: str, b: str) -> bool:
    kinds = [lab.nodes[end.split(":", 1)[0]].kind for end in (a, b)]
    return kinds == [tp.Kind.SWITCH, tp.Kind.SWITCH] and lab.underlay == tp.Underlay.NONE


def lab_hosts(lab: LabState) -> list[Host]:
    """The lab's hypervisors with their uplinks as the lab wired them."""
    found = []
    for node in lab.nodes.values():
        if node.kind != tp.Kind.HOST:
            continue
        uplinks = []
        for port in node.ports:
            switch, _, switch_port = port.peer.partition(":")
            uplinks.append(Uplink(port.name, switch, switch_port, "lldp"))
        nics = tuple(Nic(p.name) for p in node.ports)
        found.append(Host(SESSION, node.name, nics, {}, tuple(uplinks)))
    return found


class LabFabric:
    """A lab and vmfabric's overlay and/or fabric pruning over it, driven as one. Every VM
    action is done in the lab (namespaces, frames) and reported to the inventory as its
    source would report it; ``reconcile`` runs the targets' reconcile step."""

    def __init__(
        self, lab: LabState, config: dict[str, Any], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.lab = lab
        self.clock = clock  # intents and removal timers run on it (tests pass a manual one)
        self.data = config
        self.config: Config = parse_config(config)
        self.inventory = Inventory([SESSION])
        overlay = build(self.config, self.inventory)
        pruning = build_pruning(self.config, self.inventory)
        self.overlay: OverlayIntent | None = overlay[0] if overlay else None
        self.pruning: PruningIntent | None = pruning[0] if pruning else None
        self.vteps: dict[str, VtepTarget] = {t.switch: t for t in (overlay or (None, []))[1]}
        self.trunks: dict[str, FabricTrunkTarget] = {
            t.switch: t for t in (pruning or (None, []))[1]
        }
        self.portgroups = {vlan: f"vlan{vlan}" for vlan in range(1, 400)}
        self.vms: dict[str, Vm] = {}
        pgs = tuple(PortGroup(SESSION, n, frozenset({v})) for v, n in self.portgroups.items())
        self.report([Snapshot(SESSION, tuple(lab_hosts(lab)), pgs, ())])

    @property
    def intent(self) -> OverlayIntent:
        assert self.overlay is not None, "no overlay configured"
        return self.overlay

    def targets(self) -> list[Target]:
        return [*self.vteps.values(), *self.trunks.values()]

    def close(self) -> None:
        for target in self.targets():
            target.close()

    # -- what a source would report, and the reconcile step

    def report(self, events: Iterable[SourceEvent]) -> set[str]:
        """Apply source events to the inventory and the intents; the dirty targets."""
        now = self.clock()
        delta = self.inventory.apply(events, now)
        dirty: set[str] = set()
        for intent in (self.overlay, self.pruning):
            if intent is not None:
                dirty |= intent.update(self.inventory, delta, now)
        return dirty

    def reconcile(self) -> dict[str, TargetPlan]:
        """One reconcile step for every target; the plans by target name."""
        return reconcile_once(self.targets(), self.clock(), guard_limits(self.config))

    def flood(self, leaf: str) -> dict[int, frozenset[str]]:
        """Leaf ``leaf``'s flood lists as its VTEP holds them now (read back from OVSDB)."""
        target = self.vteps[leaf]
        target.driver.sync()
        target.read()
        return {vni: fl.remotes for vni, fl in target.state.items()}

    def trunk(self, switch: str) -> dict[str, frozenset[int] | None]:
        """Switch ``switch``'s fabric ports as they are now: VLANs (None: carries all)."""
        target = self.trunks[switch]
        target.read()
        return {
            port: (None if st.mode is PortMode.OPEN else st.vlans)
            for port, st in sorted(target.states.items())
        }

    def vtep_of(self, leaf: str) -> str:
        return self.intent.address(leaf)

    # -- the admin's actions

    def start_vm(self, name: str, host: str, vlan: int, ip: str, *, report: bool = True) -> None:
        """Start VM ``name`` in the lab; ``report=False`` keeps it unknown to vmfabric."""
        builder.add_vm(self.lab, name, host, vlan, ip)
        if report:
            vm = Vm(SESSION, name, name, host, Power.ON, (self.portgroups[vlan],))
            self.vms[name] = vm
            self.report([VmUpsert(vm)])

    def vmotion(self, name: str, host: str) -> float:
        """Move VM ``name`` to ``host`` in the lab, then report it; the time of the event."""
        builder.move_vm(self.lab, name, host)
        vm = self.vms[name]
        moved = Vm(vm.session, vm.id, vm.name, host, vm.power, vm.networks)
        self.vms[name] = moved
        when = self.clock()
        self.report([VmUpsert(moved)])
        return when

    def stop_vm(self, name: str) -> None:
        builder.remove_vm(self.lab, name)
        if self.vms.pop(name, None) is not None:
            self.report([VmRemoved(SESSION, name)])

    def ip(self, vm: str) -> str:
        return str(ipaddress.IPv4Interface(self.lab.vms[vm].ip).ip)

    def record(self, workdir: Path) -> Path:
        """Write vmfabric.yaml (with a store in ``workdir``) and record the inventory in that
        store as ``run`` would, so that ``vmfabric show vxlan -c FILE`` reads it."""
        path = workdir / "vmfabric.yaml"
        data = {**self.data, "store": f"sqlite:///{workdir / 'vmfabric.db'}"}
        path.write_text(yaml.safe_dump(data))
        (workdir / "inventory.yaml").write_text("hosts: []\nportgroups: []\nvms: []\n")
        inv = self.inventory
        with Store(data["store"]) as store:
            store.set_session(SESSION, "static", "inventory.yaml", True, ALL_VLANS, "enforce")
            store.replace_inventory(
                SESSION,
                list(inv.hosts.values()),
                list(inv.portgroups.values()),
                list(inv.vms.values()),
                time.time(),
            )
        return path


class ManualClock:
    """A clock tests move by hand, so that no removal depends on how fast the machine is."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def overlay_fabric(
    lab: LabState,
    vni_map: dict[int, int],
    prune_delay: float,
    clock: Callable[[], float] = time.monotonic,
) -> LabFabric:
    """The overlay lab with vmfabric's overlay (``vni_map``) over it."""
    fabric = LabFabric(lab, lab_config(lab, prune_delay, vni_map=vni_map), clock)
    if fabric.overlay is None:
        raise PermanentError(f"lab {lab.name} has no VTEP (is its underlay none?)")
    return fabric


def wait_for(check: Callable[[], bool], timeout: float, what: str, every: float = 0.05) -> float:
    """Wait until ``check()`` holds; its seconds. PermanentError naming ``what`` if not."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise PermanentError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - started


@contextlib.contextmanager
def overlay_lab(
    underlay: str = "bgp", root: Path | None = None, name: str | None = None
) -> Iterator[LabState]:
    """The built-in overlay lab, up for the block and removed after it (also on error)."""
    base = root or Path(tempfile.mkdtemp(prefix="vfl-overlay-", dir="/tmp"))
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    lab = name or f"ovl{uuid.uuid4().hex[:4]}"
    try:
        yield builder.up("overlay", name=lab, underlay=underlay, root=base, wait=90)
    finally:
        builder.down(lab, base)
        if root is None:
            import shutil

            shutil.rmtree(base, ignore_errors=True)


# ---- the demo ------------------------------------------------------------------------------

DEMO_PRUNE = 5.0
DEMO_VNIS = {110: 10110, 120: 10120}
DEMO_VMS = (  # name, host (leaf), VLAN, address
    ("web-01", "hv1", 110, "10.0.110.11/24"),  # leaf1
    ("web-02", "hv2", 110, "10.0.110.12/24"),  # leaf2
    ("db-01", "hv3", 120, "10.0.120.11/24"),  # leaf3
    ("db-02", "hv4", 120, "10.0.120.12/24"),  # leaf3
)


class OverlayDemo:
    """The narrated steps of ``vmfabric demo --overlay`` (see the module docstring)."""

    def __init__(self, fabric: LabFabric, workdir: Path) -> None:
        self.fab = fabric
        self.workdir = workdir
        self.timings: list[tuple[str, str]] = []

    def say(self, text: str) -> None:
        console.print(Rule(style="dim"))
        console.print(f"[bold]{text}[/bold]")

    def note(self, text: str) -> None:
        console.print(f"  {text}")

    def expect(self, ok: bool, what: str) -> None:
        if not ok:
            raise PermanentError(f"demo expectation failed: {what}")
        console.print(f"  [green]ok[/green] {what}")

    def lists(self) -> None:
        for leaf in self.fab.vteps:
            held = self.fab.flood(leaf)
            text = "; ".join(
                f"VNI {vni} -> {', '.join(self._names(r)) or 'no one'}"
                for vni, r in sorted(held.items())
            )
            self.note(f"{leaf} ({self.fab.vtep_of(leaf)}) floods: {text or 'nothing'}")

    def _names(self, addresses: Iterable[str]) -> list[str]:
        names = {self.fab.vtep_of(leaf): leaf for leaf in self.fab.vteps}
        return [f"{names.get(a, a)}" for a in sorted(addresses)]

    def run(self) -> None:
        self.step_underlay()
        self.step_vms()
        self.step_local_vni()
        self.step_vmotion()
        self.step_show()

    def step_underlay(self) -> None:
        lab = self.fab.lab
        self.say(
            f"1. A routed fabric ({lab.underlay}): three leaves, two spines, one VTEP per leaf"
        )
        for leaf in self.fab.vteps:
            other = "leaf3" if leaf != "leaf3" else "leaf1"
            prefix = tp.vtep_link(lab.topology, other)[0].network
            route = nsx.run(["ip", "-o", "route", "show", str(prefix)], lab.nodes[leaf].netns)
            hops = [w for w in route.stdout.split() if w.startswith("eth")]
            self.note(
                f"{leaf}: VTEP {self.fab.vtep_of(leaf)}; {other}'s VTEP is routed over "
                f"{' and '.join(hops) or '?'} ({'ECMP' if len(hops) > 1 else 'one path'})"
            )
        self.expect(vtep.unreachable(lab) == [], "every VTEP reaches every other over the underlay")

    def step_vms(self) -> None:
        self.say("2. VMs start; vmfabric computes flood lists from where they run")
        for name, host, vlan, ip in DEMO_VMS:
            self.fab.start_vm(name, host, vlan, ip)
            self.note(f"{name} on {host} (VLAN {vlan}, VNI {DEMO_VNIS[vlan]})")
        started = time.monotonic()
        self.fab.reconcile()
        self.timings.append(("first flood lists programmed", f"{time.monotonic() - started:.2f}s"))
        self.lists()
        self.expect(
            self.fab.flood("leaf1") == {10110: {self.fab.vtep_of("leaf2")}},
            "leaf1 floods VNI 10110 to leaf2 only",
        )
        self.expect(
            probe.ping(self.fab.lab, "web-01", self.fab.ip("web-02")),
            "web-01 (leaf1) pings web-02 (leaf2) over VXLAN on the routed underlay",
        )
        self.expect(
            probe.tcp_transfer(self.fab.lab, "web-01", "web-02") == 1_000_000,
            "1 MB over TCP, web-01 -> web-02",
        )

    def step_local_vni(self) -> None:
        self.say("3. VNI 10120 has VMs behind leaf3 only: it floods to no one")
        self.expect(self.fab.flood("leaf3") == {}, "leaf3 holds no tunnel for VNI 10120")
        self.expect(
            self.fab.intent.desired("leaf3:vtep") == {"10120": frozenset()},
            "desired: VNI 10120 with an empty flood list",
        )
        self.expect(
            probe.ping(self.fab.lab, "db-01", self.fab.ip("db-02")),
            "db-01 and db-02 talk, switched on leaf3",
        )

    def step_vmotion(self) -> None:
        self.say("4. vMotion: web-02 moves from hv2 (leaf2) to hv3 (leaf3)")
        self.fab.start_vm("listener", "hv2", 110, "10.0.110.99/24", report=False)
        self.note("listener: a VM in VLAN 110 behind leaf2 that vmfabric does not know of")
        counter = probe.Broadcasts(self.fab.lab, ["web-01", "web-02", "listener"])
        moved = self.fab.vmotion("web-02", "hv3")
        self.fab.reconcile()
        added = time.monotonic() - moved
        self.timings.append(
            ("vMotion -> new leaf in the flood lists (read back)", f"{added * 1000:.0f}ms")
        )
        self.lists()
        leaf2, leaf3 = self.fab.vtep_of("leaf2"), self.fab.vtep_of("leaf3")
        self.expect(
            self.fab.flood("leaf1")[10110] == {leaf2, leaf3},
            f"leaf3 added at once ({added * 1000:.0f} ms); leaf2 kept for the prune delay",
        )
        self.expect(
            probe.ping(self.fab.lab, "web-01", self.fab.ip("web-02"), within=5),
            "web-01 reaches web-02 behind leaf3",
        )
        copies = counter.send("web-01", expect={"web-02", "listener"})
        self.expect(copies["listener"] == 1, "during the delay, leaf2 still gets broadcasts")

        def pruned() -> bool:
            self.fab.reconcile()
            return self.fab.flood("leaf1").get(10110) == frozenset({leaf3})

        waited = wait_for(pruned, DEMO_PRUNE + 30, "leaf2 pruned", every=0.2)
        self.timings.append(("vMotion -> old leaf pruned", f"{time.monotonic() - moved:.1f}s"))
        self.lists()
        self.expect(
            waited > 0 and time.monotonic() - moved >= DEMO_PRUNE,
            f"leaf2 pruned after the {DEMO_PRUNE:g}s prune delay",
        )
        copies = counter.send("web-01", expect={"web-02"})
        self.expect(
            copies == {"web-01": 0, "web-02": 1, "listener": 0},
            "a broadcast from web-01: one copy to web-02, none to leaf2",
        )

    def step_show(self) -> None:
        from typer.testing import CliRunner

        from vmfabric.cli import app

        self.say("5. vmfabric show vxlan --live: per VNI the VTEPs, the VMs and the flood lists")
        path = self.fab.record(self.workdir)
        done = CliRunner().invoke(app, ["show", "vxlan", "--live", "-c", str(path)])
        console.print(done.output.rstrip())
        self.expect(
            done.exit_code == 0 and "differs" not in done.output,
            "the VTEPs hold exactly the computed flood lists",
        )

    def summary(self, wall: float) -> None:
        console.print(Rule(style="dim"))
        console.print("[bold]Timings[/bold]")
        for what, text in self.timings:
            self.note(f"{text:>8}  {what}")
        self.note(f"{wall:7.1f}s  demo wall time (lab included)")


def run_overlay_demo(underlay: str = "bgp") -> float:
    """``vmfabric demo --overlay``; returns its wall time. Removes everything it started,
    also on Ctrl-C and SIGTERM."""
    from vmfabric.demo import sigterm_as_interrupt

    started = time.monotonic()
    with sigterm_as_interrupt():
        workdir = Path(tempfile.mkdtemp(prefix="vmfabric-overlay-"))
        workdir.chmod(0o755)  # lldpd and FRR drop privileges: the lab below must be searchable
        try:
            console.print(f"[bold]vmfabric demo --overlay[/bold] in {workdir}: building the lab...")
            with overlay_lab(underlay, root=workdir / "lab") as lab:
                console.print(
                    f"lab {lab.name} up in {lab.up_seconds}s (namespaces vfl-{lab.name}-*)"
                )
                fabric = overlay_fabric(lab, DEMO_VNIS, DEMO_PRUNE)
                try:
                    demo = OverlayDemo(fabric, workdir)
                    demo.run()
                    demo.summary(time.monotonic() - started)
                finally:
                    fabric.close()
            console.print("[bold green]demo finished[/bold green]: lab removed")
        except KeyboardInterrupt:
            console.print("interrupted: lab removed")
            raise
        finally:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    return time.monotonic() - started

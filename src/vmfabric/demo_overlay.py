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
from vmfabric.lab import builder, vtep
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
            entry["vtep"] = {"address": node.vtep_address, "ovsdb": node.vtep_ovsdb,
                             "bridge": vtep.INT_BRIDGE}  # fmt: skip
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
        data["fabric_links"] = [{"a": link.a, "b": link.b} for link in lab.links
                                if _is_fabric(lab, link.a, link.b)]  # fmt: skip
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

    def __init__(self, lab: LabState, config: dict[str, Any]) -> None:
        self.lab = lab
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
        now = time.monotonic()
        delta = self.inventory.apply(events, now)
        dirty: set[str] = set()
        for intent in (self.overlay, self.pruning):
            if intent is not None:
                dirty |= intent.update(self.inventory, delta, now)
        return dirty

    def reconcile(self) -> dict[str, TargetPlan]:
        """One reconcile step for every target; the plans by target name."""
        return reconcile_once(self.targets(), time.monotonic(), guard_limits(self.config))

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
        when = time.monotonic()
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


def overlay_fabric(lab: LabState, vni_map: dict[int, int], prune_delay: float) -> LabFabric:
    """The overlay lab with vmfabric's overlay (``vni_map``) over it."""
    fabric = LabFabric(lab, lab_config(lab, prune_delay, vni_map=vni_map))
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
    base.chmod(0o755)
    lab = name or f"ovl{uuid.uuid4().hex[:4]}"
    try:
        yield builder.up("overlay", name=lab, underlay=underlay, root=base, wait=90)
    finally:
        builder.down(lab, base)
        if root is None:
            import shutil

            shutil.rmtree(base, ignore_errors=True)


def expect(ok: bool, what: str) -> None:
    if not ok:
        raise PermanentError(f"demo expectation failed: {what}")
    console.print(f"  [green]ok[/green] {what}")

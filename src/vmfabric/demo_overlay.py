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
from vmfabric.inventory.index import Inventory
from vmfabric.lab import builder, probe, vtep
from vmfabric.lab import topology as tp
from vmfabric.lab.builder import LabState
from vmfabric.runtime.overlay import VtepTarget, build, guard_limits, reconcile_once
from vmfabric.store import Store
from vmfabric.targets.vtep.base import FloodList

SESSION = "lab"
console = Console(highlight=False)


def lab_config(lab: LabState, vni_map: dict[int, int], prune_delay: float) -> dict[str, Any]:
    """A vmfabric.yaml for an overlay lab: each leaf with its VTEP (the VTEP namespace's
    OVSDB, bridge ``br-int``) and the VLAN -> VNI map."""
    switches = [
        {
            "name": node.name,
            "driver": "ovs",
            "ovsdb": node.ovsdb,
            "bridge": node.bridge,
            "edge_ports": list(node.edge_ports),
            "vtep": {
                "address": node.vtep_address,
                "ovsdb": node.vtep_ovsdb,
                "bridge": vtep.INT_BRIDGE,
            },
        }
        for node in lab.nodes.values()
        if node.vtep_address
    ]
    return {
        "engine": {"prune_delay": prune_delay},
        "sessions": [{"name": SESSION, "kind": "static", "path": "inventory.yaml"}],
        "switches": switches,
        "overlay": {"vni_map": vni_map},
    }


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


class OverlayFabric:
    """An overlay lab and vmfabric's overlay over it, driven as one. Every VM action is done
    in the lab (namespaces, frames) and reported to the inventory as its source would."""

    def __init__(self, lab: LabState, vni_map: dict[int, int], prune_delay: float) -> None:
        self.lab = lab
        self.vni_map = dict(vni_map)
        self.config: Config = parse_config(lab_config(lab, vni_map, prune_delay))
        self.inventory = Inventory([SESSION])
        built = build(self.config, self.inventory)
        if built is None:
            raise PermanentError(f"lab {lab.name} has no VTEP (is its underlay none?)")
        self.intent: OverlayIntent = built[0]
        self.targets: dict[str, VtepTarget] = {t.switch: t for t in built[1]}  # by switch
        self.portgroups = {vlan: f"vlan{vlan}" for vlan in (*vni_map, *range(100, 200))}
        self.vms: dict[str, Vm] = {}
        pgs = tuple(PortGroup(SESSION, n, frozenset({v})) for v, n in self.portgroups.items())
        self.report([Snapshot(SESSION, tuple(lab_hosts(lab)), pgs, ())])

    def close(self) -> None:
        for target in self.targets.values():
            target.close()

    # -- what a source would report, and the reconcile step

    def report(self, events: Iterable[SourceEvent]) -> set[str]:
        """Apply source events to the inventory and the intent; the dirty VTEPs."""
        now = time.monotonic()
        return self.intent.update(self.inventory, self.inventory.apply(events, now), now)

    def reconcile(self, names: Iterable[str] | None = None) -> dict[str, TargetPlan]:
        """One reconcile step for the VTEPs of the named switches (default: all); the plans
        by target name."""
        chosen = [self.targets[n] for n in (names if names is not None else self.targets)]
        return reconcile_once(chosen, time.monotonic(), guard_limits(self.config))

    def next_due(self) -> float | None:
        """Seconds until the next held removal is due (None: none is pending)."""
        now = time.monotonic()
        gate = self.intent.gate(self.inventory)
        due = self.intent.removals.next_deadline(now, lambda _target: gate)
        return None if due is None else max(due - now, 0.0)

    def flood(self, leaf: str) -> dict[int, frozenset[str]]:
        """Leaf ``leaf``'s flood lists as its VTEP holds them now (read back from OVSDB)."""
        target = self.targets[leaf]
        target.driver.sync()
        target.read()
        return {vni: fl.remotes for vni, fl in target.state.items()}

    def flood_state(self, leaf: str) -> dict[int, FloodList]:
        return dict(self.targets[leaf].state)

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
        data = {**lab_config(self.lab, self.vni_map, self.config.engine.prune_delay)}
        data["store"] = f"sqlite:///{workdir / 'vmfabric.db'}"
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


def _lists(fabric: OverlayFabric) -> str:
    parts = []
    for leaf in fabric.targets:
        lists = fabric.flood(leaf)
        text = "; ".join(
            f"{vni} -> {','.join(sorted(r)) or '-'}" for vni, r in sorted(lists.items())
        )
        parts.append(f"{leaf}: {text or 'nothing'}")
    return " | ".join(parts)


def probe_vms(fabric: OverlayFabric, names: Iterable[str]) -> probe.Broadcasts:
    return probe.Broadcasts(fabric.lab, names)

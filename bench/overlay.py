"""Overlay and fabric-pruning benchmarks: ``python -m bench.overlay [--quick] [--json FILE]``.

Prints, and writes as JSON with ``--json``:

1. **BUM copies per broadcast** on a simulated placement (64 leaves, many VNIs, each on a
   few leaves; see ``placement``): with placement-driven flood lists (the overlay intent's
   desired state) a VTEP copies a broadcast to the other leaves of its VNI only; flooding
   to all copies it to every other VTEP. Mean over one broadcast per VM, and the reduction.
2. **vMotion -> flood list on the new leaf**, on the overlay lab (BGP underlay, real OVS):
   from the source event (a VM reported on a leaf that had no VM of its VNI) until the new
   leaf's VTEP, read back through OVSDB, floods the VNI to the other leaf, and until every
   leaf agrees. The VTEP targets reconcile in parallel (as the runtime's per-target loops
   do). Target: <= 100 ms.
3. **VLAN-link memberships removed from inter-switch trunks**: on the L2 lab (leaf-spine
   square, RSTP; measured by reading the trunks back after pruning) and at a simulated
   64-leaf scale on three fabric shapes (an RSTP Clos, MLAG leaf pairs, pods), against
   trunks carrying every VLAN in use.

The simulated placement is a model, stated in the output: per VLAN the number of leaves
with a VM of it is drawn from {1: 35 %, 2: 25 %, 3-4: 20 %, 5-8: 12 %, 9-32: 6 %,
all: 2 %}, the leaves are neighbours (tenants fill nearby racks), 1-30 VMs per leaf.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.stats import summary
from vmfabric.core.model import Host, PortGroup, Power, Snapshot, Uplink, Vm, VmUpsert
from vmfabric.demo_overlay import LabFabric, lab_config, overlay_fabric, overlay_lab, wait_for
from vmfabric.intents.overlay import OverlayIntent, OverlayPolicy, Vtep, vtep_target
from vmfabric.intents.pruning import FabricLinkSpec, PruningIntent, PruningPolicy
from vmfabric.intents.removals import Removals
from vmfabric.inventory.index import Delta, Inventory
from vmfabric.lab import builder
from vmfabric.runtime.overlay import VtepTarget, reconcile_once

SPREAD = ((1, 0.35), (2, 0.25), ((3, 4), 0.20), ((5, 8), 0.12), ((9, 32), 0.06), ("all", 0.02))


def placement(leaves: int, vlans: int, seed: int = 7) -> dict[int, dict[int, int]]:
    """VLAN -> leaf index -> VMs there (see the module docstring)."""
    rng = random.Random(seed)
    out: dict[int, dict[int, int]] = {}
    for vlan in range(100, 100 + vlans):
        choice = rng.choices([s for s, _ in SPREAD], [w for _, w in SPREAD])[0]
        if choice == "all":
            k = leaves
        elif isinstance(choice, tuple):
            k = rng.randint(*choice)
        else:
            k = int(choice)
        start = rng.randrange(leaves)
        out[vlan] = {(start + i) % leaves: rng.randint(1, 30) for i in range(min(k, leaves))}
    return out


def inventory(leaves: Sequence[str], where: dict[int, dict[int, int]]) -> Inventory:
    """One session, one host per leaf, one port group per VLAN, the VMs of ``where``."""
    hosts = tuple(
        Host("s", f"h{i}", (), {}, (Uplink("n0", leaf, "e1", "static"),))
        for i, leaf in enumerate(leaves)
    )
    pgs = tuple(PortGroup("s", f"v{vlan}", frozenset({vlan})) for vlan in where)
    vms = tuple(
        Vm("s", f"vm{vlan}-{leaf}-{n}", f"vm{vlan}-{leaf}-{n}", f"h{leaf}", Power.ON, (f"v{vlan}",))
        for vlan, per_leaf in where.items()
        for leaf, count in per_leaf.items()
        for n in range(count)
    )
    inv = Inventory(["s"])
    inv.apply([Snapshot("s", hosts, pgs, vms)], 0.0)
    return inv


# ---- 1. BUM copies ---------------------------------------------------------------------------


def bum(leaves: int = 64, vlans: int = 1000) -> dict[str, Any]:
    names = [f"leaf{i + 1}" for i in range(leaves)]
    where = placement(leaves, vlans)
    inv = inventory(names, where)
    policy = OverlayPolicy(
        tuple(Vtep(n, f"10.253.{i // 250}.{i % 250 + 1}") for i, n in enumerate(names)),
        {vlan: 10000 + vlan for vlan in where},
    )
    intent = OverlayIntent(policy, Removals(30.0))
    started = time.perf_counter()
    intent.recompute(inv)
    full_s = time.perf_counter() - started
    started = time.perf_counter()
    intent.update(inv, Delta(vms=set(inv.vms)), 0.0)
    build_s = time.perf_counter() - started
    copies = flood_all = broadcasts = 0
    for vlan, per_leaf in where.items():
        for leaf, count in per_leaf.items():
            listed = intent.desired(vtep_target(names[leaf]))[str(10000 + vlan)]
            copies += count * len(listed)
            flood_all += count * (leaves - 1)
            broadcasts += count
    vm = next(iter(inv.vms.values()))
    moved = Vm(vm.session, vm.id, vm.name, "h33", vm.power, vm.networks)
    started = time.perf_counter()
    intent.update(inv, inv.apply([VmUpsert(moved)], 1.0), 1.0)
    move_s = time.perf_counter() - started
    return {
        "leaves": leaves, "vnis": vlans, "vms": len(inv.vms), "broadcasts": broadcasts,
        "copies_per_broadcast_placement": round(copies / broadcasts, 2),
        "copies_per_broadcast_flood_to_all": round(flood_all / broadcasts, 2),
        "reduction": round(1 - copies / flood_all, 4),
        "intent_build_s": round(build_s, 3), "intent_recompute_s": round(full_s, 3),
        "intent_vmotion_ms": round(move_s * 1000, 3),
    }  # fmt: skip


# ---- 2. vMotion on the lab -------------------------------------------------------------------


def vmotion(trials: int, prune: float = 0.5) -> dict[str, Any]:
    """Alternate one VM between leaf2 and leaf3 (a VM of its VNI stays on leaf1)."""
    own: list[float] = []
    everywhere: list[float] = []
    with overlay_lab("bgp") as lab:
        fab = overlay_fabric(lab, {110: 10110}, prune)
        try:
            fab.start_vm("anchor", "hv1", 110, "10.0.110.1/24")
            fab.start_vm("mover", "hv3", 110, "10.0.110.2/24")
            fab.reconcile()
            for trial in range(trials):
                host, leaf, old = (
                    ("hv2", "leaf2", "leaf3") if trial % 2 == 0 else ("hv3", "leaf3", "leaf2")
                )
                t_own, t_all = _one_move(fab, host, leaf)
                own.append(t_own)
                everywhere.append(t_all)
                _wait_pruned(fab, old, prune + 30)
        finally:
            fab.close()
    return {
        "trials": trials,
        "new_leaf_programmed_ms": summary(own, scale=1000, digits=1),
        "all_leaves_agree_ms": summary(everywhere, scale=1000, digits=1),
        "target_ms": 100,
        "met": max(own) <= 0.1 if own else False,
    }


def _wait_pruned(fab: LabFabric, old: str, timeout: float) -> None:
    def pruned() -> bool:
        fab.reconcile()
        return fab.flood(old) == {}

    wait_for(pruned, timeout, f"{old} pruned", every=0.05)


def _one_move(fab: LabFabric, host: str, leaf: str) -> tuple[float, float]:
    builder.move_vm(fab.lab, "mover", host)
    vm = fab.vms["mover"]
    moved = Vm(vm.session, vm.id, vm.name, host, vm.power, vm.networks)
    fab.vms["mover"] = moved
    anchor = fab.vtep_of("leaf1")
    started = time.monotonic()
    dirty = fab.report([VmUpsert(moved)])
    targets = [t for t in fab.vteps.values() if t.name in dirty]
    with ThreadPoolExecutor(len(targets) or 1) as pool:
        list(pool.map(_step, targets))
    own = all_ = None
    while own is None or all_ is None:
        now = time.monotonic() - started
        if own is None and fab.flood(leaf).get(10110) == frozenset({anchor}):
            own = now
        if own is not None and fab.vtep_of(leaf) in fab.flood("leaf1").get(10110, set()):
            all_ = time.monotonic() - started
        if now > 10:
            raise RuntimeError(f"{leaf} not programmed after 10 s")
    return own, all_


def _step(target: VtepTarget) -> None:
    reconcile_once([target], time.monotonic())


# ---- 3. pruning ------------------------------------------------------------------------------


def _links(pairs: Iterable[tuple[str, str]]) -> tuple[FabricLinkSpec, ...]:
    return tuple(FabricLinkSpec((a, f"to-{b}"), (b, f"to-{a}")) for a, b in pairs)


def clos(leaves: int, spines: int) -> tuple[list[str], tuple[FabricLinkSpec, ...]]:
    names = [f"leaf{i + 1}" for i in range(leaves)]
    return names, _links((leaf, f"spine{s + 1}") for leaf in names for s in range(spines))


def mlag(leaves: int) -> tuple[list[str], tuple[FabricLinkSpec, ...]]:
    """Leaf pairs and a spine pair, each an MLAG domain: spanning tree sees one logical
    switch per pair and one port-channel per pair (a tree)."""
    pairs = [f"pair{i + 1}" for i in range(leaves // 2)]
    names = [p for p in pairs for _ in (0, 1)]  # both leaves of a pair are the pair
    return names, _links((p, "spines") for p in pairs)


def pods(leaves: int, per_pod: int) -> tuple[list[str], tuple[FabricLinkSpec, ...]]:
    """Pods of ``per_pod`` leaves, each a Clos of two pod spines; each pod's spine pair
    (MLAG) reaches the core over one port-channel."""
    names = [f"leaf{i + 1}" for i in range(leaves)]
    pairs: list[tuple[str, str]] = []
    for p in range(leaves // per_pod):
        for leaf in names[p * per_pod : (p + 1) * per_pod]:
            pairs += [(leaf, f"pod{p}a"), (leaf, f"pod{p}b")]
        pairs += [(f"pod{p}a", f"pod{p}b"), (f"pod{p}a", "core")]
    return names, _links(pairs)


def prune_sim(shape: str, leaves: int = 64, vlans: int = 1000) -> dict[str, Any]:
    names, links = {"clos": lambda: clos(leaves, 2), "mlag": lambda: mlag(leaves),
                    "pods": lambda: pods(leaves, 8)}[shape]()  # fmt: skip
    where = placement(leaves, vlans)
    inv = inventory(names, where)
    managed: dict[str, set[str]] = {}
    for link in links:
        for sw, port in (link.a, link.b):
            managed.setdefault(sw, set()).add(port)
    policy = PruningPolicy(links, {k: frozenset(v) for k, v in managed.items()})
    intent = PruningIntent(policy, Removals(30.0))
    started = time.perf_counter()
    intent.update(inv, Delta(vms=set(inv.vms)), 0.0)
    build_s = time.perf_counter() - started
    in_use = {v for v, per in where.items() if per}
    baseline = len(links) * len(in_use)
    kept = sum(len(intent.link_vlans(i)) for i in range(len(links)))
    return {
        "shape": shape, "leaves": leaves, "links": len(links), "vlans_in_use": len(in_use),
        "memberships_all_vlans_in_use": baseline, "memberships_pruned": kept,
        "removed": baseline - kept, "removed_share": round(1 - kept / baseline, 4),
        "intent_build_s": round(build_s, 3),
    }  # fmt: skip


LAB_EDGE = {
    ("leaf1", "eth1"): "10,20", ("leaf1", "eth2"): "20", ("leaf2", "eth1"): "10,20",
    ("leaf2", "eth2"): "20,30", ("leaf1", "eth3"): "30", ("leaf2", "eth3"): "30",
}  # fmt: skip
LAB_VMS = {"a": ("hv1", 10), "b": ("hv3", 10), "c": ("hv1", 20), "d": ("hv2", 20),
           "e": ("hv5", 30), "f": ("hv4", 30)}  # fmt: skip


def prune_lab() -> dict[str, Any]:
    """The L2 leaf-spine lab: VLAN 10 on both leaves, 20 on leaf1 only, 30 on hv5 (both)."""
    root = Path(tempfile.mkdtemp(prefix="vfl-bench-", dir="/tmp"))
    root.chmod(0o755)
    name = f"b{uuid.uuid4().hex[:5]}"
    try:
        lab = builder.up("leaf-spine", name=name, root=root, wait=90)
        for (switch, port), vlans in LAB_EDGE.items():
            builder._vsctl(lab.nodes[switch], "set", "port", port, f"trunks={vlans}")
        fab = LabFabric(lab, lab_config(lab, 0.5, pruning=True))
        try:
            for i, (vm, (host, vlan)) in enumerate(LAB_VMS.items(), start=1):
                fab.start_vm(vm, host, vlan, f"10.{vlan}.0.{i}/24")
            wait_for(lambda: _all_trunks(fab), 30, "trunks pruned", every=0.1)
            ports = {(sw, p): v for sw in fab.trunks for p, v in fab.trunk(sw).items()}
        finally:
            fab.close()
    finally:
        builder.down(name, root)
        shutil.rmtree(root, ignore_errors=True)
    in_use = {vlan for _, vlan in LAB_VMS.values()}
    links = len(ports) // 2
    kept = sum(len(v or ()) for v in ports.values()) // 2
    return {
        "links": links, "vlans_in_use": len(in_use),
        "memberships_all_vlans_in_use": links * len(in_use), "memberships_pruned": kept,
        "removed": links * len(in_use) - kept,
        "before": "every fabric trunk open (all 4094 VLANs)",
        "trunks_after": {f"{sw}:{p}": sorted(v or ()) for (sw, p), v in sorted(ports.items())},
    }  # fmt: skip


def _all_trunks(fab: LabFabric) -> bool:
    fab.reconcile()
    return all(None not in fab.trunk(sw).values() for sw in fab.trunks)


# ---- main ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few trials")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    vlans, trials = (200, 6) if args.quick else (1000, 40)
    out: dict[str, Any] = {"placement_model": SPREAD}
    out["bum"] = bum(64, vlans)
    _print("1. BUM copies per broadcast (64 leaves)", out["bum"])
    out["pruning_sim"] = [prune_sim(shape, 64, vlans) for shape in ("clos", "mlag", "pods")]
    for row in out["pruning_sim"]:
        _print(f"3b. pruning, simulated {row['shape']}", row)
    out["pruning_lab"] = prune_lab()
    _print("3a. pruning, L2 lab (measured)", out["pruning_lab"])
    out["vmotion"] = vmotion(trials)
    _print("2. vMotion -> flood list on the new leaf (overlay lab, read back)", out["vmotion"])
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))
    return out


def _print(title: str, figures: dict[str, Any]) -> None:
    print(title, flush=True)
    for key, value in figures.items():
        print(f"  {key}: {value}", flush=True)


if __name__ == "__main__":
    main()

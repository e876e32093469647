"""Engine benchmarks (pure, no I/O): incremental throughput, full recompute, memory.

The synthetic inventory: one host per 40 VMs (at least 16), each host with one uplink on
its own edge port, 48 edge ports per switch, 200 port groups (VLANs 100-299), every VM
powered on in one random port group on a random host. The workload is vMotions: a
``VmUpsert`` of a VM on another random host, which moves up to two (switch, port, VLAN)
memberships.
"""

from __future__ import annotations

import dataclasses
import gc
import random
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.stats import summary
from vmfabric.core.model import (
    Host,
    Nic,
    PortGroup,
    Power,
    Snapshot,
    SourceEvent,
    Uplink,
    Vm,
    VmUpsert,
)
from vmfabric.intents import AutovlanIntent, Removals, SessionPolicy, SwitchPolicy
from vmfabric.intents.autovlan import full_desired
from vmfabric.intents.groups import (
    AddressTarget,
    AllOf,
    Glob,
    GroupDef,
    GroupsIntent,
    Ref,
    RuleDef,
    Tag,
)
from vmfabric.inventory.index import Inventory as SharedInventory

SESSION = "bench"
PORTS_PER_SWITCH = 48
PORTGROUPS = 200
FIRST_VLAN = 100
Progress = Callable[[str], None]


@dataclass
class Inventory:
    switches: list[SwitchPolicy]
    hosts: list[Host]
    portgroups: list[PortGroup]
    vms: list[Vm]

    def snapshot(self) -> Snapshot:
        return Snapshot(SESSION, tuple(self.hosts), tuple(self.portgroups), tuple(self.vms))


def host_count(n_vms: int) -> int:
    return max(16, n_vms // 40)


def port_of(index: int) -> tuple[str, str]:
    """(switch, port) of host ``index``: 48 edge ports per switch."""
    return f"leaf{index // PORTS_PER_SWITCH + 1}", f"e{index % PORTS_PER_SWITCH + 1}"


TIERS = ("tier:web", "tier:app", "tier:db")
ENVS = ("env:prod", "env:dev")


def make_inventory(n_vms: int, seed: int = 1, tagged: bool = False) -> Inventory:
    """``tagged``: every VM also has a tier and an env tag (``TIERS``, ``ENVS``) and one
    IPv4 address, for the security-groups intent (the rest is the same inventory)."""
    rng = random.Random(seed)
    n_hosts = host_count(n_vms)
    hosts = []
    edge: dict[str, set[str]] = {}
    for i in range(n_hosts):
        switch, port = port_of(i)
        edge.setdefault(switch, set()).add(port)
        uplink = Uplink("vmnic0", switch, port, "static")
        hosts.append(Host(SESSION, f"h{i}", (Nic("vmnic0"),), {}, (uplink,)))
    switches = [SwitchPolicy(name, frozenset(ports)) for name, ports in sorted(edge.items())]
    pgs = [PortGroup(SESSION, f"pg{k}", frozenset({FIRST_VLAN + k})) for k in range(PORTGROUPS)]
    vms = [
        Vm(SESSION, f"vm-{i}", f"vm{i}", f"h{rng.randrange(n_hosts)}", Power.ON,
           (f"pg{rng.randrange(PORTGROUPS)}",))
        for i in range(n_vms)
    ]  # fmt: skip
    if tagged:
        tags = random.Random(seed + 1)
        vms = [
            dataclasses.replace(
                vm,
                tags=tuple(sorted((tags.choice(ENVS), tags.choice(TIERS)))),
                ips=(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",),
            )
            for i, vm in enumerate(vms)
        ]
    return Inventory(switches, hosts, pgs, vms)


# a typical security-group configuration: a few tag and name groups, one nested, two rules
GROUPS = (
    GroupDef("web", Tag("tier:web")),
    GroupDef("db", Tag("tier:db")),
    GroupDef("prod-web", AllOf((Ref("web"), Tag("env:prod")))),
    GroupDef("vm1", Glob("name", "vm1*")),
    GroupDef("vm5", Glob("name", "vm*5")),
)
RULES = (RuleDef("web-to-db", ("web",), ("db",)), RuleDef("vm1-to-vm5", ("vm1",), ("vm5",)))


def groups_intent() -> GroupsIntent:
    """The groups intent of ``GROUPS`` with one nftables-like address target."""
    names = frozenset(g.name for g in GROUPS)
    target = AddressTarget("fw1", "nftables", names, tuple(r.name for r in RULES))
    return GroupsIntent(GROUPS, RULES, (target,), (), Removals(0.0))


class Engine:
    """What the runtime keeps per inventory: the shared index and the autovlan intent, and
    with ``groups`` the security-groups intent of ``GROUPS``."""

    def __init__(self, switches: list[SwitchPolicy], groups: bool = False) -> None:
        self.policies = [SessionPolicy(SESSION)]
        self.inventory = SharedInventory([SESSION])
        self.intent = AutovlanIntent(switches, self.policies, Removals(30.0))
        self.groups = groups_intent() if groups else None

    def apply_one(self, event: SourceEvent, now: float) -> None:
        delta = self.inventory.apply((event,), now)
        self.intent.update(self.inventory, delta, now)
        if self.groups is not None:
            self.groups.update(self.inventory, delta, now)


def new_engine(inv: Inventory, groups: bool = False) -> Engine:
    return Engine(inv.switches, groups)


def moves(inv: Inventory, count: int, seed: int = 2) -> list[VmUpsert]:
    """``count`` vMotions of random VMs to random other hosts, applied in sequence."""
    rng = random.Random(seed)
    current = {vm.id: vm for vm in inv.vms}
    ids = list(current)
    n_hosts = len(inv.hosts)
    out = []
    for _ in range(count):
        vm = current[ids[rng.randrange(len(ids))]]
        host = f"h{rng.randrange(n_hosts)}"
        if host == vm.host:
            host = f"h{(int(host[1:]) + 1) % n_hosts}"
        moved = dataclasses.replace(vm, host=host)
        current[vm.id] = moved
        out.append(VmUpsert(moved))
    return out


def throughput(inv: Inventory, events: int, rounds: int) -> dict[str, Any]:
    """Events per second per round (each round a fresh engine after the snapshot), and
    per-event latency from one timed pass."""
    workload = moves(inv, events)
    rates, per_event_us = [], []
    for _ in range(rounds):
        engine = new_engine(inv)
        engine.apply_one(inv.snapshot(), 0.0)
        started = time.perf_counter()
        for i, event in enumerate(workload):
            engine.apply_one(event, float(i))
        rates.append(events / (time.perf_counter() - started))
    engine = new_engine(inv)
    engine.apply_one(inv.snapshot(), 0.0)
    clock = time.perf_counter_ns
    for i, event in enumerate(workload):
        t0 = clock()
        engine.apply_one(event, float(i))
        per_event_us.append((clock() - t0) / 1000.0)
    check = full_desired(inv.hosts, inv.portgroups, engine.inventory.vms.values(),
                         engine.policies, inv.switches)  # fmt: skip
    return {
        "events_per_round": events,
        "events_per_second": summary(rates, digits=0),
        "us_per_event": summary(per_event_us, digits=2),
        "us_per_event_from_rate_p50": round(1e6 / sorted(rates)[len(rates) // 2], 2),
        "incremental_equals_full": check == engine.intent.desired_vlans(),
    }


def recompute(inv: Inventory, rounds: int) -> dict[str, Any]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        full_desired(inv.hosts, inv.portgroups, inv.vms, [SessionPolicy(SESSION)], inv.switches)
        times.append(time.perf_counter() - started)
    snaps = []
    for _ in range(rounds):
        engine = new_engine(inv)
        started = time.perf_counter()
        engine.apply_one(inv.snapshot(), 0.0)
        snaps.append(time.perf_counter() - started)
    return {
        "full_desired_ms": summary(times, 1000.0, 1),
        "snapshot_apply_ms": summary(snaps, 1000.0, 1),
    }


def memory(n_vms: int, groups: bool = False, tagged: bool = False) -> dict[str, Any]:
    """Bytes per VM held by an engine after a snapshot: everything it keeps (its Vm, Host
    and PortGroup objects included), and its indexes alone (inventory made beforehand,
    its names already shared: ``shared_names``).
    ``groups``: with the security-groups intent of ``GROUPS`` too; ``tagged``: every VM
    with two tags and an address (see ``make_inventory``)."""
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        inv = make_inventory(n_vms, tagged=tagged)
        engine = new_engine(inv, groups)
        engine.apply_one(inv.snapshot(), 0.0)
        del inv
        gc.collect()
        total = tracemalloc.get_traced_memory()[0] - base
        del engine
        gc.collect()
        inv = shared_names(make_inventory(n_vms, tagged=tagged))
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        engine = new_engine(inv, groups)
        engine.apply_one(inv.snapshot(), 0.0)
        gc.collect()
        indexes = tracemalloc.get_traced_memory()[0] - base
        del engine, inv
    finally:
        tracemalloc.stop()
    return {
        "bytes_per_vm_total": round(total / n_vms, 1),
        "bytes_per_vm_indexes": round(indexes / n_vms, 1),
    }


def shared_names(inv: Inventory) -> Inventory:
    """``inv`` with its VMs' host names interned and their network and tag tuples shared,
    as the shared inventory stores them (in place): the caller's objects are then kept
    as they are, and an "indexes alone" measurement counts neither a copy of them nor
    the strings and tuples that sharing would free."""
    shared: dict[tuple[str, ...], tuple[str, ...]] = {}
    inv.vms = [
        dataclasses.replace(
            vm,
            host=sys.intern(vm.host),
            networks=shared.setdefault(vm.networks, vm.networks),
            tags=shared.setdefault(vm.tags, vm.tags),
        )
        for vm in inv.vms
    ]
    return inv


def memory_groups(n_vms: int) -> dict[str, Any]:
    """``memory`` with the groups intent: on the same inventory, and on a tagged one."""
    return {
        "same_inventory": memory(n_vms, groups=True),
        "tagged": memory(n_vms, groups=True, tagged=True),
        "tagged_without_groups": memory(n_vms, tagged=True),
    }


def run(sizes: tuple[int, ...], events: int, rounds: int, progress: Progress) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in sizes:
        progress(f"engine: {n} VMs: throughput ({rounds} x {events} events)")
        inv = make_inventory(n)
        result: dict[str, Any] = {"vms": n, "hosts": len(inv.hosts), "switches": len(inv.switches)}
        result.update(throughput(inv, events, rounds))
        progress(f"engine: {n} VMs: full recompute, memory")
        result.update(recompute(inv, rounds))
        del inv
        result.update(memory(n))
        result["memory_with_groups"] = memory_groups(n)
        out[str(n)] = result
    return out

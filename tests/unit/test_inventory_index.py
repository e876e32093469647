"""The shared inventory's per-event path: what an upsert re-indexes, what it shares, and
when it is no change at all (tests/unit/test_engine_equivalence.py checks the indexes
against a reference after every batch of random histories)."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from vmfabric.core.model import Host, PortGroup, Power, Snapshot, Uplink, Vm, VmUpsert
from vmfabric.inventory import index as index_module
from vmfabric.inventory.index import Inventory

HOSTS = tuple(
    Host("vc", f"esx{i}", uplinks=(Uplink("vmnic0", "leaf1", f"p{i}", "static"),)) for i in (1, 2)
)
PGS = (PortGroup("vc", "web", frozenset({110})), PortGroup("vc", "db", frozenset({120})))


def vm(name: str, host: str, nets: tuple[str, ...] = ("web",), power: Power = Power.ON) -> Vm:
    return Vm("vc", name, name, host, power, nets)


def filled(*vms: Vm) -> Inventory:
    inv = Inventory(["vc"])
    inv.apply([Snapshot("vc", HOSTS, PGS, vms)], 0.0)
    return inv


def members(inv: Inventory) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    hosts = {h.name: sorted(k[1] for k in inv.vms_on_host(h.key)) for h in HOSTS}
    pgs = {p.name: sorted(k[1] for k in inv.vms_in_portgroup(p.key)) for p in PGS}
    return hosts, pgs


def test_a_vm_sent_again_unchanged_is_no_change() -> None:
    inv = filled(vm("a", "esx1"))
    delta = inv.apply([VmUpsert(vm("a", "esx1"))], 1.0)
    assert not delta and delta.before == {}
    # the same host and power but another field: a change
    tagged = dataclasses.replace(vm("a", "esx1"), tags=("env:prod",))
    assert inv.apply([VmUpsert(tagged)], 2.0).vms == {("vc", "a")}


def test_moves_power_and_network_changes_keep_both_indexes_exact() -> None:
    inv = filled(vm("a", "esx1"), vm("b", "esx1", ("web", "db")))
    inv.apply([VmUpsert(vm("a", "esx2"))], 1.0)  # vMotion: host only
    assert members(inv) == ({"esx1": ["b"], "esx2": ["a"]}, {"web": ["a", "b"], "db": ["b"]})
    inv.apply([VmUpsert(vm("b", "esx1", ("db",), Power.OFF))], 2.0)  # networks and power
    assert members(inv) == ({"esx1": ["b"], "esx2": ["a"]}, {"web": ["a"], "db": ["b"]})
    inv.apply([VmUpsert(vm("b", "esx2", ("db", "db", "web")))], 3.0)  # named twice: once
    assert members(inv) == ({"esx1": [], "esx2": ["a", "b"]}, {"web": ["a", "b"], "db": ["b"]})


def test_entries_stay_exact_across_the_list_to_set_switch(monkeypatch: Any) -> None:
    monkeypatch.setattr(index_module, "SMALL", 2)
    names = [f"v{i}" for i in range(5)]
    inv = filled(*(vm(n, "esx1") for n in names))  # 5 > SMALL: sets
    for step, name in enumerate(names, 1):
        inv.apply([VmUpsert(vm(name, "esx2", ("db",)))], float(step))
        moved = sorted(names[:step])
        stayed = sorted(names[step:])
        expected = {"esx1": stayed, "esx2": moved}, {"web": stayed, "db": moved}
        assert members(inv) == expected, name


def test_an_event_vm_is_stored_with_shared_names_and_keeps_its_value() -> None:
    inv = filled(vm("a", "esx1"))
    host = "".join(["esx", "2"])  # a fresh string, as a source's parser makes
    nets = tuple(["".join(["w", "eb"])])
    event = vm("b", host, nets)
    copy = dataclasses.replace(event)
    inv.apply([VmUpsert(event)], 1.0)
    stored = inv.vms[("vc", "b")]
    assert stored == copy and event == copy  # the same value
    assert stored.host is sys.intern("esx2")  # one host name for all its VMs
    assert stored.networks is inv.vms[("vc", "a")].networks  # one tuple for both VMs


def test_a_changed_vm_keeps_the_id_object_its_index_entries_hold() -> None:
    inv = filled(vm("vm-a", "esx1"))
    first = inv.vms[("vc", "vm-a")].id
    fresh = "-".join(["vm", "a"])  # an equal id in another string, as a parser makes
    assert fresh is not first
    inv.apply([VmUpsert(dataclasses.replace(vm("vm-a", "esx2"), id=fresh))], 1.0)
    assert inv.vms[("vc", "vm-a")].id is first
    assert members(inv)[0] == {"esx1": [], "esx2": ["vm-a"]}
    inv.apply([VmUpsert(vm("vm-a", "esx1", ("db",)))], 2.0)
    assert members(inv) == ({"esx1": ["vm-a"], "esx2": []}, {"web": [], "db": ["vm-a"]})

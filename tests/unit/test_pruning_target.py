"""The fabric-trunk target on the fake switch driver (OVS semantics, in memory): only the
fabric ports are written, an open trunk is narrowed only with its closing (never by an
addition alone while the guard holds the closing), a static VLAN is never removed."""

from __future__ import annotations

from typing import Any

from vmfabric.config import parse_config
from vmfabric.core.model import Host, PortGroup, PortMode, Power, Snapshot, Uplink, Vm
from vmfabric.intents.guard import GuardLimits
from vmfabric.inventory.index import Delta, Inventory
from vmfabric.runtime.overlay import build_pruning, reconcile_once


def _config(modes: dict[str, str]) -> dict[str, Any]:
    def switch(name: str) -> dict[str, Any]:
        return {"name": name, "driver": "fake", "edge_ports": ["e1"], "fabric_ports": ["up"],
                "port_modes": {"up": modes[name]}}  # fmt: skip

    return {
        "engine": {"prune_delay": 0},
        "sessions": [{"name": "s", "kind": "static", "path": "inv.yaml"}],
        "switches": [switch("leaf1"), switch("leaf2")],
        "fabric_links": [{"a": "leaf1:up", "b": "leaf2:up"}],
    }


def _inventory() -> Inventory:
    hosts = tuple(Host("s", f"h{i}", (), {}, (Uplink("n0", f"leaf{i}", "e1", "static"),))
                  for i in (1, 2))  # fmt: skip
    pgs = (PortGroup("s", "web", frozenset({10})),)
    vms = tuple(Vm("s", f"v{i}", f"v{i}", f"h{i}", Power.ON, ("web",)) for i in (1, 2))
    inv = Inventory(["s"])
    inv.apply([Snapshot("s", hosts, pgs, vms)], 0.0)
    return inv


def _built(modes: dict[str, str]) -> Any:
    inv = _inventory()
    built = build_pruning(parse_config(_config(modes)), inv)
    assert built is not None
    intent, targets = built
    intent.update(inv, Delta(vms=set(inv.vms)), 0.0)
    for target in targets:
        target.connect()
    return targets


def test_an_open_trunk_is_never_narrowed_by_additions_while_its_closing_is_held() -> None:
    targets = _built({"leaf1": "open", "leaf2": "open"})
    assert [t.name for t in targets] == ["leaf1:fabric", "leaf2:fabric"]
    plans = reconcile_once(targets, 10.0, GuardLimits(max_removals=0))
    assert {(c.member, c.action) for c in plans["leaf1:fabric"].changes} == {
        ("all", "remove"), ("10", "add")
    }  # fmt: skip
    for target in targets:
        target.read()
        assert target.states["up"].mode is PortMode.OPEN, "the guard held the closing"
    reconcile_once(targets, 11.0)
    for target in targets:
        target.read()
        state = target.states["up"]
        assert (state.mode, state.vlans, state.dynamic) == (PortMode.TRUNK, {10}, {10})
        assert set(target.states) == {"up"}, "only fabric ports are read and written"


def test_a_static_vlan_on_a_fabric_trunk_stays() -> None:
    targets = _built({"leaf1": "10,99", "leaf2": "99"})
    reconcile_once(targets, 10.0)
    for target in targets:
        target.read()
    assert targets[0].states["up"].vlans == {10, 99}
    assert targets[1].states["up"].vlans == {10, 99}
    assert targets[1].states["up"].dynamic == {10}

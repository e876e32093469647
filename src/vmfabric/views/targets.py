"""Views of the switch side: interfaces, VLANs and switches (``show interface|vlan|switch``).

``vlans`` decision: one row per (switch, VLAN); ``ports`` lists every port carrying the
VLAN and ``dynamic`` is true when vmfabric added it on at least one of them
(``dynamic_ports``/``static_ports`` say which). With ``dynamic`` only dynamic memberships
count: ``ports`` are the dynamic ports and VLANs only static are left out.

``interfaces`` gives each port its switch's state: a port of a switch that is not ``ok``
shows the VLANs last read, which may no longer be what the switch has.
"""

from __future__ import annotations

from collections.abc import Iterable

from vmfabric.core.model import PortState
from vmfabric.store import Store
from vmfabric.views.common import SwitchPort, iso_utc, natural, port_key
from vmfabric.views.models import InterfaceView, SwitchView, VlanView

# ---- show interface --------------------------------------------------------------------


def _interface(
    key: SwitchPort, state: PortState | None, landing: set[str], switch_state: str | None
) -> InterfaceView:
    vlans = state.vlans if state else frozenset()
    dynamic = vlans & state.dynamic if state else frozenset()
    return {
        "switch": key[0],
        "port": key[1],
        "hosts": sorted(landing, key=natural),
        "vlans": sorted(vlans),
        "dynamic_vlans": sorted(dynamic),
        "static_vlans": sorted(vlans - dynamic),
        "mode": str(state.mode) if state else None,
        "switch_state": switch_state,
    }


def _matches(key: SwitchPort, port: str | None) -> bool:
    """``port`` names a port on any switch ("e1") or on one ("leaf1:e1")."""
    if port is None or key[1] == port:
        return True
    return ":" in port and port == f"{key[0]}:{key[1]}"


def interfaces(store: Store, port: str | None = None) -> list[InterfaceView]:
    """Every switch port with a known state or a host uplink landing on it (or only
    ``port``: a port name, or SWITCH:PORT). ``mode`` is null for a port known only from
    uplinks (not an edge port, or not read yet); ``switch_state`` is null for a switch
    with no recorded state."""
    with store.reader() as read:
        states = {(s.switch, s.port): s for s in read.port_states()}
        switch_states = {s.name: s.state for s in read.switches()}
        landing: dict[SwitchPort, set[str]] = {}
        for host in read.hosts().values():
            for up in host.uplinks:
                landing.setdefault((up.switch, up.port), set()).add(host.name)
    keys = sorted((k for k in states.keys() | landing.keys() if _matches(k, port)), key=port_key)
    return [
        _interface(k, states.get(k), landing.get(k, set()), switch_states.get(k[0])) for k in keys
    ]


# ---- show vlan -------------------------------------------------------------------------


def _memberships(states: Iterable[PortState]) -> dict[tuple[str, int], tuple[set[str], set[str]]]:
    """(switch, VLAN) -> (ports carrying it, ports where it is dynamic)."""
    found: dict[tuple[str, int], tuple[set[str], set[str]]] = {}
    for state in states:
        for vlan in state.vlans:
            ports, dynamic = found.setdefault((state.switch, vlan), (set(), set()))
            ports.add(state.port)
            if vlan in state.dynamic:
                dynamic.add(state.port)
    return found


def _vlan(switch: str, vlan: int, ports: set[str], dynamic: set[str], only: bool) -> VlanView:
    return {
        "switch": switch,
        "vlan": vlan,
        "ports": sorted(dynamic if only else ports, key=natural),
        "dynamic": bool(dynamic),
        "dynamic_ports": sorted(dynamic, key=natural),
        "static_ports": sorted(ports - dynamic, key=natural),
    }


def vlans(store: Store, vlan: int | None = None, dynamic: bool = False) -> list[VlanView]:
    """One row per (switch, VLAN) carried on a port (only ``vlan`` when given); see the
    module docstring for ``dynamic``."""
    with store.reader() as read:
        found = _memberships(read.port_states())
    rows = [
        _vlan(sw, v, ports, dyn, dynamic)
        for (sw, v), (ports, dyn) in found.items()
        if (dyn or not dynamic) and (vlan is None or v == vlan)
    ]
    return sorted(rows, key=lambda r: (natural(r["switch"]), r["vlan"]))


# ---- show switch -----------------------------------------------------------------------


def switches(store: Store) -> list[SwitchView]:
    """Every switch with a recorded state, and its held plans."""
    with store.reader() as read:
        found = read.switches()
        held = read.plans("held")
    result: list[SwitchView] = [
        {
            "name": s.name,
            "driver": s.driver,
            "state": s.state,
            "last_error": s.error or None,
            "last_apply": iso_utc(s.last_apply),
            "pending": s.pending,
            "held_plans": [p.id for p in held if p.target == s.name],
            "updated": iso_utc(s.updated),
        }
        for s in found
    ]
    return sorted(result, key=lambda s: natural(s["name"]))

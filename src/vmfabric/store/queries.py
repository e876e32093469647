"""The read side behind ``vmfabric show``: rows in the JSON contract of DESIGN.md.

Each query loads the tables it needs once (a few statements in one read transaction, so
one consistent snapshot) and joins them in Python: no per-VM or per-host statements.
Lists are sorted deterministically, names and ports in natural order ("p2" before "p10").

``show_vlans`` decision: one row per (switch, VLAN); ``ports`` lists every port carrying
the VLAN and ``dynamic`` is true when vmfabric added it on at least one of them
(``dynamic_ports``/``static_ports`` say which). With ``dynamic_only`` only dynamic
memberships count: ``ports`` are the dynamic ports and VLANs only static are left out.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, func, select

from vmfabric.core.model import Host, PortGroup, PortState, Power, Uplink, Vm, carrying_uplinks
from vmfabric.core.vlans import format_vlans
from vmfabric.store import inventory, records
from vmfabric.store.rows import Key, Record, vlan_set
from vmfabric.store.schema import hosts, plans, sessions, vms

Json = dict[str, Any]
SwitchPort = tuple[str, str]
_DIGITS = re.compile(r"(\d+)")


@functools.lru_cache(maxsize=65536)
def natural(text: str) -> tuple[Any, ...]:
    """Sort key putting "p2" before "p10"; str and int parts alternate, so keys compare."""
    return tuple(int(part) if i % 2 else part for i, part in enumerate(_DIGITS.split(text)))


def _port_key(item: SwitchPort) -> tuple[Any, ...]:
    return (natural(item[0]), natural(item[1]))


def iso_utc(when: float | None) -> str | None:
    """Seconds since the epoch as ISO 8601 UTC ("2026-01-02T03:04:05Z"), None stays None."""
    if when is None:
        return None
    stamp = datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds")
    return stamp.replace("+00:00", "Z")


def vlan_value(pg: PortGroup | None) -> int | str | None:
    """A port group's VLANs as the contract shows them: an int, a range string, or null."""
    if pg is None or not pg.vlans:
        return None
    if len(pg.vlans) == 1:
        return next(iter(pg.vlans))
    return format_vlans(pg.vlans)


class Carriage:
    """Which switch ports carry a VM's port groups, memoised per (host, port group)."""

    def __init__(self, inv: inventory.Inventory) -> None:
        self._hosts = inv.hosts
        self._portgroups = inv.portgroups
        self._memo: dict[tuple[Key, Key], tuple[tuple[Uplink, ...], bool]] = {}

    def portgroup(self, vm: Vm, network: str) -> PortGroup | None:
        return self._portgroups.get((vm.session, network))

    def uplinks(self, vm: Vm, network: str) -> tuple[tuple[Uplink, ...], bool]:
        """Uplinks carrying ``network`` for ``vm``, and whether that is a guess."""
        host_key, pg_key = (vm.session, vm.host), (vm.session, network)
        if (host_key, pg_key) not in self._memo:
            self._memo[(host_key, pg_key)] = self._compute(host_key, pg_key)
        return self._memo[(host_key, pg_key)]

    def _compute(self, host_key: Key, pg_key: Key) -> tuple[tuple[Uplink, ...], bool]:
        host: Host | None = self._hosts.get(host_key)
        pg = self._portgroups.get(pg_key)
        if host is None or pg is None:
            return (), False
        return carrying_uplinks(host, pg)


# ---- show session ----------------------------------------------------------------------


def _counts(conn: Connection, table: Any) -> dict[str, int]:
    stmt = select(table.c.session, func.count()).group_by(table.c.session)
    return {session: int(n) for session, n in conn.execute(stmt)}


def _held_plans(conn: Connection) -> list[tuple[int, list[str]]]:
    stmt = select(plans.c.id, plans.c.sessions).where(plans.c.status == "held")
    return [(int(i), list(s)) for i, s in conn.execute(stmt.order_by(plans.c.id))]


def _session_json(
    row: Record, counts: tuple[dict[str, int], dict[str, int]], held: list[int]
) -> Json:
    name = row["name"]
    return {
        "name": name,
        "kind": row["kind"],
        "url": row["url"],
        "state": row["state"],
        "hosts": counts[0].get(name, 0),
        "vms": counts[1].get(name, 0),
        "autovlan": bool(row["autovlan"]),
        "allowed_vlans": row["allowed_vlans"],
        "last_update": iso_utc(row["last_update"]),
        "last_error": row["error"] or None,
        "in_sync": bool(row["in_sync"]),
        "version": row["version"],
        "mode": row["mode"],
        "warnings": list(row["warnings"]),
        "held_plans": held,
    }


def show_sessions(conn: Connection, name: str | None) -> list[Json]:
    """Sessions with their state and counts. ``held_plans`` lists the ids of held plans
    naming the session, or naming no session at all (they may concern any)."""
    stmt = select(sessions).order_by(sessions.c.name)
    if name is not None:
        stmt = stmt.where(sessions.c.name == name)
    found = list(conn.execute(stmt).mappings())
    counts = (_counts(conn, hosts), _counts(conn, vms))
    held = _held_plans(conn)
    result = [
        _session_json(r, counts, [i for i, names in held if not names or r["name"] in names])
        for r in found
    ]
    return sorted(result, key=lambda s: natural(s["name"]))


def session_row(conn: Connection, name: str) -> Record | None:
    return conn.execute(select(sessions).where(sessions.c.name == name)).mappings().first()


def session_autovlan(conn: Connection, row: Record) -> Json:
    """Dynamic VLANs on switch ports that the session's powered-on VMs account for.

    A session with autovlan off accounts for nothing."""
    allowed = vlan_set(row["allowed_vlans"])
    wanted: dict[SwitchPort, set[int]] = {}
    if row["autovlan"]:
        wanted = _wanted(inventory.load(conn, row["name"]), allowed)
    states = sorted(records.load_port_states(conn), key=lambda s: _port_key((s.switch, s.port)))
    provisioned = [
        {"switch": s.switch, "port": s.port, "vlans": sorted(s.dynamic & s.vlans & wanted[key])}
        for s in states
        if (key := (s.switch, s.port)) in wanted and s.dynamic & s.vlans & wanted[key]
    ]
    return {"name": row["name"], "allowed_vlans": row["allowed_vlans"], "provisioned": provisioned}


def _wanted(inv: inventory.Inventory, allowed: frozenset[int]) -> dict[SwitchPort, set[int]]:
    """Per switch port, the allowed VLANs that powered-on VMs need there."""
    carriage = Carriage(inv)
    wanted: dict[SwitchPort, set[int]] = {}
    for vm in inv.vms:
        if vm.power != Power.ON:
            continue
        for network in vm.networks:
            pg = carriage.portgroup(vm, network)
            vlans = (pg.vlans & allowed) if pg else frozenset()
            for up in carriage.uplinks(vm, network)[0] if vlans else ():
                wanted.setdefault((up.switch, up.port), set()).update(vlans)
    return wanted


# ---- show vm ---------------------------------------------------------------------------


def _vm_json(vm: Vm, carriage: Carriage) -> Json:
    ports: set[SwitchPort] = set()
    guessed = False
    for network in vm.networks:
        ups, guess = carriage.uplinks(vm, network)
        ports.update((u.switch, u.port) for u in ups)
        guessed = guessed or guess
    return {
        "name": vm.name,
        "session": vm.session,
        "host": vm.host,
        "power_state": str(vm.power),
        "networks": [
            {"portgroup": n, "vlan": vlan_value(carriage.portgroup(vm, n))} for n in vm.networks
        ],
        "attachments": [{"switch": s, "port": p} for s, p in sorted(ports, key=_port_key)],
        "id": vm.id,
        "carriage": "all-uplinks" if guessed else "vswitch",
    }


def show_vms(conn: Connection, name: str | None) -> list[Json]:
    """VMs (all, or those called ``name`` in any session) with networks and attachments."""
    found = inventory.load_vms(conn, name=name)
    if not found:
        return []
    inv = inventory.Inventory(inventory.load_hosts(conn), inventory.load_portgroups(conn), found)
    carriage = Carriage(inv)
    result = [_vm_json(vm, carriage) for vm in found]
    return sorted(result, key=lambda v: (natural(v["name"]), natural(v["session"]), v["id"]))


# ---- show host -------------------------------------------------------------------------


def _vm_counts(conn: Connection) -> dict[Key, int]:
    stmt = select(vms.c.session, vms.c.host, func.count()).group_by(vms.c.session, vms.c.host)
    return {(s, h): int(n) for s, h, n in conn.execute(stmt)}


def _neighbors(host: Host) -> list[Json]:
    matched = {u.nic for u in host.uplinks}
    return [
        {
            "nic": nic.name,
            "protocol": nic.neighbor.protocol,
            "system_name": nic.neighbor.system_name,
            "port_id": nic.neighbor.port_id,
            "mgmt_addr": nic.neighbor.mgmt_addr,
            "chassis_id": nic.neighbor.chassis_id,
            "port_descr": nic.neighbor.port_descr,
            "matched": nic.name in matched,
        }
        for nic in sorted(host.nics, key=lambda n: natural(n.name))
        if nic.neighbor is not None
    ]


def _host_json(host: Host, vm_count: int) -> Json:
    uplinks = sorted(host.uplinks, key=lambda u: (natural(u.nic), _port_key((u.switch, u.port))))
    return {
        "name": host.name,
        "session": host.session,
        "vms": vm_count,
        "uplinks": [
            {"nic": u.nic, "switch": u.switch, "port": u.port, "source": u.source} for u in uplinks
        ],
        "neighbors": _neighbors(host),
        "nics": sorted((n.name for n in host.nics), key=natural),
    }


def show_hosts(conn: Connection) -> list[Json]:
    """Hosts with VM counts, resolved uplinks and every neighbour heard (matched or not)."""
    counts = _vm_counts(conn)
    result = [_host_json(h, counts.get(k, 0)) for k, h in inventory.load_hosts(conn).items()]
    return sorted(result, key=lambda h: (natural(h["name"]), natural(h["session"])))


# ---- show interface / vlan -------------------------------------------------------------


def _hosts_by_port(conn: Connection) -> dict[SwitchPort, set[str]]:
    landing: dict[SwitchPort, set[str]] = {}
    for host in inventory.load_hosts(conn).values():
        for up in host.uplinks:
            landing.setdefault((up.switch, up.port), set()).add(host.name)
    return landing


def _interface_json(key: SwitchPort, state: PortState | None, landing: set[str]) -> Json:
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
    }


def show_interfaces(conn: Connection) -> list[Json]:
    """Every switch port with a known state or a host uplink landing on it; ``mode`` is
    null for a port only known from uplinks (not an edge port, or not read yet)."""
    states = {(s.switch, s.port): s for s in records.load_port_states(conn)}
    landing = _hosts_by_port(conn)
    keys = sorted(states.keys() | landing.keys(), key=_port_key)
    return [_interface_json(k, states.get(k), landing.get(k, set())) for k in keys]


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


def _vlan_json(switch: str, vlan: int, ports: set[str], dynamic: set[str], only: bool) -> Json:
    listed = dynamic if only else ports
    return {
        "switch": switch,
        "vlan": vlan,
        "ports": sorted(listed, key=natural),
        "dynamic": bool(dynamic),
        "dynamic_ports": sorted(dynamic, key=natural),
        "static_ports": sorted(ports - dynamic, key=natural),
    }


def show_vlans(conn: Connection, dynamic_only: bool) -> list[Json]:
    """One row per (switch, VLAN) carried on a port; see the module docstring."""
    found = _memberships(records.load_port_states(conn))
    rows = [
        _vlan_json(sw, vlan, ports, dynamic, dynamic_only)
        for (sw, vlan), (ports, dynamic) in found.items()
        if dynamic or not dynamic_only
    ]
    return sorted(rows, key=lambda r: (natural(r["switch"]), r["vlan"]))

"""Conversions between domain types (vmfabric.core.model) and table rows, both ways.

Writing flattens a Host into its host, NIC and uplink rows and a Vm into one row (lists
as JSON); reading rebuilds equal domain objects, so that what the store holds can be
fed back to the engine (and compared in tests).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from vmfabric.core.model import (
    Host,
    Neighbor,
    Nic,
    PortGroup,
    PortMode,
    PortState,
    Power,
    Uplink,
    Vm,
)
from vmfabric.core.vlans import format_vlans, parse_vlans

Row = dict[str, Any]
Record = Mapping[Any, Any]  # a row as read (SQLAlchemy RowMapping) or a Row
Key = tuple[str, str]


def vlan_set(text: str) -> frozenset[int]:
    """A stored range string back to a VLAN set ("" is the empty set)."""
    return parse_vlans(text) if text else frozenset()


# ---- model -> rows ---------------------------------------------------------------------


def host_row(host: Host) -> Row:
    nics = {vswitch: sorted(names) for vswitch, names in sorted(host.vswitch_nics.items())}
    return {"session": host.session, "name": host.name, "vswitch_nics": nics}


def nic_rows(host: Host) -> list[Row]:
    return [_nic_row(host, position, nic) for position, nic in enumerate(host.nics)]


def _nic_row(host: Host, position: int, nic: Nic) -> Row:
    heard = nic.neighbor
    return {
        "session": host.session,
        "host": host.name,
        "position": position,
        "nic": nic.name,
        "protocol": heard.protocol if heard else None,
        "system_name": heard.system_name if heard else "",
        "port_id": heard.port_id if heard else "",
        "chassis_id": heard.chassis_id if heard else "",
        "mgmt_addr": heard.mgmt_addr if heard else "",
        "port_descr": heard.port_descr if heard else "",
    }


def uplink_rows(host: Host) -> list[Row]:
    return [
        {
            "session": host.session,
            "host": host.name,
            "position": position,
            "nic": up.nic,
            "switch": up.switch,
            "port": up.port,
            "source": up.source,
        }
        for position, up in enumerate(host.uplinks)
    ]


def portgroup_row(pg: PortGroup) -> Row:
    return {
        "session": pg.session,
        "name": pg.name,
        "vlans": format_vlans(pg.vlans),
        "vswitch": pg.vswitch,
        "problem": pg.problem,
    }


def vm_row(vm: Vm) -> Row:
    return {
        "session": vm.session,
        "id": vm.id,
        "name": vm.name,
        "host": vm.host,
        "power": str(vm.power),
        "networks": list(vm.networks),
        "ips": list(vm.ips),
        "macs": list(vm.macs),
        "tags": list(vm.tags),
        "attributes": [list(pair) for pair in vm.attributes],
        "guest_os": vm.guest_os,
        "folder": vm.folder,
        "cluster": vm.cluster,
    }


def port_state_row(state: PortState, now: float) -> Row:
    return {
        "switch": state.switch,
        "port": state.port,
        "mode": str(state.mode),
        "vlans": format_vlans(state.vlans),
        "dynamic": format_vlans(state.dynamic),
        "updated": now,
    }


# ---- rows -> model ---------------------------------------------------------------------


def group_by_owner(rows: Iterable[Record], owner: str) -> dict[Key, list[Record]]:
    """Child rows grouped by (session, owner column); rows must come in position order."""
    groups: dict[Key, list[Record]] = {}
    for row in rows:
        groups.setdefault((row["session"], row[owner]), []).append(row)
    return groups


def nic_from_row(row: Record) -> Nic:
    if row["protocol"] is None:
        return Nic(name=row["nic"])
    heard = Neighbor(
        protocol=row["protocol"],
        system_name=row["system_name"],
        port_id=row["port_id"],
        chassis_id=row["chassis_id"],
        mgmt_addr=row["mgmt_addr"],
        port_descr=row["port_descr"],
    )
    return Nic(name=row["nic"], neighbor=heard)


def uplink_from_row(row: Record) -> Uplink:
    return Uplink(nic=row["nic"], switch=row["switch"], port=row["port"], source=row["source"])


def host_from_rows(row: Record, nics: Sequence[Record], uplinks: Sequence[Record]) -> Host:
    vswitch_nics = {vs: frozenset(names) for vs, names in dict(row["vswitch_nics"]).items()}
    return Host(
        session=row["session"],
        name=row["name"],
        nics=tuple(nic_from_row(n) for n in nics),
        vswitch_nics=vswitch_nics,
        uplinks=tuple(uplink_from_row(u) for u in uplinks),
    )


def portgroup_from_row(row: Record) -> PortGroup:
    return PortGroup(
        session=row["session"],
        name=row["name"],
        vlans=vlan_set(row["vlans"]),
        vswitch=row["vswitch"],
        problem=row["problem"],
    )


def vm_from_row(row: Record) -> Vm:
    return Vm(
        session=row["session"],
        id=row["id"],
        name=row["name"],
        host=row["host"],
        power=Power(row["power"]),
        networks=tuple(row["networks"]),
        ips=tuple(row["ips"]),
        macs=tuple(row["macs"]),
        tags=tuple(row["tags"]),
        attributes=tuple((str(k), str(v)) for k, v in row["attributes"]),
        guest_os=row["guest_os"],
        folder=row["folder"],
        cluster=row["cluster"],
    )


def port_state_from_row(row: Record) -> PortState:
    return PortState(
        switch=row["switch"],
        port=row["port"],
        mode=PortMode(row["mode"]),
        vlans=vlan_set(row["vlans"]),
        dynamic=vlan_set(row["dynamic"]),
    )

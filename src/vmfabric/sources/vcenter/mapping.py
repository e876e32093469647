"""Pure mapping of vSphere values to model values: VLAN specs, CDP/LLDP hints, carriage,
guest NICs and custom attributes. No server, no threads: the unit tests build pyVmomi data
objects locally."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pyVmomi import vim as _vim

from vmfabric.core.model import Neighbor, Power
from vmfabric.core.vlans import ALL_VLANS, VLAN_MAX, VLAN_MIN
from vmfabric.sources.addresses import guest_ips, normalize_attributes, normalize_macs
from vmfabric.sources.vcenter.wire import GuestNic

# pyVmomi's stubs leave its data-object constructors untyped: treat the binding as dynamic.
vim: Any = _vim

PVLAN_PROBLEM = "PVLAN is not supported"


def dvpg_vlans(vlan: Any) -> tuple[frozenset[int], str]:
    """VLANs of a distributed port group's VLAN spec, and a problem text if unsupported."""
    if isinstance(vlan, vim.dvs.VmwareDistributedVirtualSwitch.PvlanSpec):
        return frozenset(), PVLAN_PROBLEM
    if isinstance(vlan, vim.dvs.VmwareDistributedVirtualSwitch.TrunkVlanSpec):
        return trunk_vlans((int(r.start), int(r.end)) for r in vlan.vlanId or ()), ""
    if isinstance(vlan, vim.dvs.VmwareDistributedVirtualSwitch.VlanIdSpec):
        return single_vlan(int(vlan.vlanId or 0)), ""
    if vlan is None:
        return frozenset(), ""
    return frozenset(), f"VLAN type {type(vlan).__name__} is not supported"


def single_vlan(vlan_id: int) -> frozenset[int]:
    """One VLAN id; 0 means untagged (no VLAN)."""
    return frozenset({vlan_id}) if VLAN_MIN <= vlan_id <= VLAN_MAX else frozenset()


def trunk_vlans(ranges: Iterable[tuple[int, int]]) -> frozenset[int]:
    """The union of trunk ranges, clipped to 1-4094 (vSphere allows 0-4094)."""
    out: set[int] = set()
    for lo, hi in ranges:
        out.update(range(max(lo, VLAN_MIN), min(hi, VLAN_MAX) + 1))
    return frozenset(out)


def standard_vlans(vlan_id: int) -> frozenset[int]:
    """A standard port group's VLAN: 0 untagged, 4095 all VLANs (guest tagging)."""
    return ALL_VLANS if vlan_id == 4095 else single_vlan(vlan_id)


def neighbor_from_hint(hint: Any) -> Neighbor | None:
    """The LLDP (preferred) or CDP neighbour of one ``PhysicalNicHintInfo``."""
    lldp = getattr(hint, "lldpInfo", None)
    if lldp is not None and (lldp.chassisId or lldp.portId):
        params = {str(p.key): str(p.value) for p in lldp.parameter or ()}
        return Neighbor(
            protocol="lldp",
            system_name=params.get("System Name", ""),
            port_id=str(lldp.portId or ""),
            chassis_id=str(lldp.chassisId or ""),
            mgmt_addr=params.get("Management Address", ""),
            port_descr=params.get("Port Description", ""),
        )
    cdp = getattr(hint, "connectedSwitchPort", None)
    if cdp is not None and cdp.devId:
        return Neighbor(
            protocol="cdp",
            system_name=str(cdp.devId),
            port_id=str(cdp.portId or ""),
            mgmt_addr=str(cdp.address or cdp.mgmtAddr or ""),
        )
    return None


def neighbors_from_hints(hints: Iterable[Any]) -> dict[str, Neighbor]:
    """NIC device -> neighbour, for the NICs that heard one."""
    out: dict[str, Neighbor] = {}
    for hint in hints:
        neighbor = neighbor_from_hint(hint)
        if neighbor is not None:
            out[str(hint.device)] = neighbor
    return out


def vswitch_nics(
    pnics: Iterable[Any],
    vswitches: Iterable[Any],
    portgroups: Iterable[Any],
    proxies: Iterable[Any],
) -> dict[str, frozenset[str]]:
    """Carriage key -> pnic devices: ``pg:<name>`` via the port group's vSwitch,
    ``dvs:<uuid>`` via the host's proxy switch."""
    device = {str(p.key): str(p.device) for p in pnics}

    def devices(keys: Iterable[Any] | None) -> frozenset[str]:
        return frozenset(device.get(str(k), str(k)) for k in keys or ())

    by_vswitch = {str(vs.name): devices(vs.pnic) for vs in vswitches}
    out = {
        f"pg:{pg.spec.name}": by_vswitch.get(str(pg.spec.vswitchName), frozenset())
        for pg in portgroups
    }
    for proxy in proxies:
        out[f"dvs:{proxy.dvsUuid}"] = devices(proxy.pnic)
    return out


def guest_addresses(nics: Iterable[GuestNic]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(IP addresses, MACs) of a VM's ``guest.net``: what VMware Tools reports per NIC (the
    MAC is known without Tools; addresses only with them)."""
    nics = tuple(nics)
    return guest_ips(ip for nic in nics for ip in nic.ips), normalize_macs(n.mac for n in nics)


def custom_attributes(
    values: Iterable[tuple[int, str]], names: Mapping[int, str]
) -> tuple[tuple[str, str], ...]:
    """A VM's ``customValue`` as (attribute name, value): names from the CustomFieldsManager
    (a key it does not know is named by its number); the last value of a key wins."""
    return normalize_attributes({names.get(key, str(key)): value for key, value in values})


def unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


_POWER = {p.value: p for p in Power}


def power(value: Any) -> Power:
    """A power state; an unknown one is off."""
    return _POWER.get(str(value), Power.OFF)


def moref(value: Any) -> str:
    """The moref id of a reference: a fast feed's text, or a pyVmomi object's ``_moId``."""
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value._moId)

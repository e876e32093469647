"""vSphere data objects -> model values, without a server (pyVmomi data objects are local)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from vmfabric.config import VcenterSession
from vmfabric.core.model import HostRemoved, HostUpsert, Neighbor, Power, Vm, VmRemoved, VmUpsert
from vmfabric.core.vlans import ALL_VLANS
from vmfabric.sources.base import SOURCES
from vmfabric.sources.vcenter import (
    PVLAN_PROBLEM,
    Emitted,
    Inventory,
    VcenterSource,
    apply_update,
    dvpg_vlans,
    neighbor_from_hint,
    nic_backings,
    standard_vlans,
    vim,
    vmodl,
    vswitch_nics,
)

DVS = vim.dvs.VmwareDistributedVirtualSwitch
CARD = vim.vm.device.VirtualEthernetCard


def _config(**options: Any) -> VcenterSession:
    return VcenterSession(
        name="vc",
        kind="vcenter",
        url="https://vc.example.com/sdk",
        username="ro",
        password="env:VC_TEST_PASSWORD",
        **options,
    )


def test_dvpg_single_vlan_and_untagged() -> None:
    assert dvpg_vlans(DVS.VlanIdSpec(vlanId=120)) == (frozenset({120}), "")
    assert dvpg_vlans(DVS.VlanIdSpec(vlanId=0)) == (frozenset(), "")


def test_dvpg_trunk_ranges_are_clipped_to_usable_vlans() -> None:
    ranges = [vim.NumericRange(start=0, end=3), vim.NumericRange(start=100, end=102)]
    assert dvpg_vlans(DVS.TrunkVlanSpec(vlanId=ranges)) == (frozenset({1, 2, 3, 100, 101, 102}), "")
    whole = [vim.NumericRange(start=0, end=4094)]
    assert dvpg_vlans(DVS.TrunkVlanSpec(vlanId=whole)) == (ALL_VLANS, "")


def test_dvpg_pvlan_is_reported_as_a_problem() -> None:
    assert dvpg_vlans(DVS.PvlanSpec(pvlanId=501)) == (frozenset(), PVLAN_PROBLEM)


def test_standard_portgroup_vlans() -> None:
    assert standard_vlans(0) == set()
    assert standard_vlans(42) == {42}
    assert standard_vlans(4095) == ALL_VLANS


def test_cdp_hint_becomes_a_cdp_neighbour() -> None:
    cdp = vim.host.PhysicalNic.CdpInfo(devId="leaf1.lab", portId="Ethernet7", address="192.0.2.9")
    hint = vim.host.PhysicalNic.NetworkHint(device="vmnic0", connectedSwitchPort=cdp)
    assert neighbor_from_hint(hint) == Neighbor(
        protocol="cdp", system_name="leaf1.lab", port_id="Ethernet7", mgmt_addr="192.0.2.9"
    )


def test_lldp_hint_reads_chassis_port_and_named_parameters() -> None:
    params = [
        vmodl.KeyAnyValue(key="System Name", value="leaf2"),
        vmodl.KeyAnyValue(key="Port Description", value="to hv1"),
    ]
    lldp = vim.host.PhysicalNic.LldpInfo(chassisId="aa:bb", portId="Ethernet3", parameter=params)
    hint = vim.host.PhysicalNic.NetworkHint(device="vmnic1", lldpInfo=lldp)
    assert neighbor_from_hint(hint) == Neighbor(
        protocol="lldp",
        system_name="leaf2",
        port_id="Ethernet3",
        chassis_id="aa:bb",
        port_descr="to hv1",
    )


def test_hint_without_neighbour_is_none() -> None:
    assert neighbor_from_hint(vim.host.PhysicalNic.NetworkHint(device="vmnic2")) is None


def _pnic(device: str) -> Any:
    return vim.host.PhysicalNic(key=f"key-vim.host.PhysicalNic-{device}", device=device)


def test_vswitch_nics_maps_standard_portgroups_per_vswitch_and_dvs_by_uuid() -> None:
    pnics = [_pnic(d) for d in ("vmnic0", "vmnic1", "vmnic2", "vmnic3")]
    vswitches = [
        vim.host.VirtualSwitch(name="vSwitch0", pnic=[pnics[0].key]),
        vim.host.VirtualSwitch(name="vSwitch1", pnic=[pnics[1].key, pnics[2].key]),
    ]
    portgroups = [
        vim.host.PortGroup(
            spec=vim.host.PortGroup.Specification(name="mgmt", vlanId=0, vswitchName="vSwitch0")
        ),
        vim.host.PortGroup(
            spec=vim.host.PortGroup.Specification(name="db", vlanId=30, vswitchName="vSwitch1")
        ),
    ]
    proxies = [vim.host.HostProxySwitch(dvsUuid="u-1", pnic=[pnics[3].key])]
    assert vswitch_nics(pnics, vswitches, portgroups, proxies) == {
        "pg:mgmt": {"vmnic0"},
        "pg:db": {"vmnic1", "vmnic2"},
        "dvs:u-1": {"vmnic3"},
    }


def test_nic_backings_name_dvpg_keys_and_standard_networks_in_order() -> None:
    port = vim.dvs.PortConnection(portgroupKey="dvportgroup-7", switchUuid="u-1")
    devices = [
        vim.vm.device.VirtualDisk(key=2000),
        vim.vm.device.VirtualVmxnet3(backing=CARD.DistributedVirtualPortBackingInfo(port=port)),
        vim.vm.device.VirtualE1000(backing=CARD.NetworkBackingInfo(deviceName="VM Network")),
    ]
    assert list(nic_backings(devices)) == [("dvpg", "dvportgroup-7"), ("net", "VM Network")]


def _change(name: str, val: Any, op: str = "assign") -> Any:
    return vmodl.query.PropertyCollector.Change(name=name, op=op, val=val)


def _update(obj: Any, kind: str, *changes: Any) -> Any:
    return vmodl.query.PropertyCollector.ObjectUpdate(obj=obj, kind=kind, changeSet=list(changes))


def test_inventory_resolves_vm_host_name_and_dvpg_name_from_cached_properties() -> None:
    inv = Inventory("vc")
    host, vm = vim.HostSystem("host-1"), vim.VirtualMachine("vm-9")
    pg = vim.dvs.DistributedVirtualPortgroup("dvportgroup-7")
    apply_update(inv.hosts, _update(host, "enter", _change("name", "esx01")))
    apply_update(
        inv.networks, _update(pg, "enter", _change("name", "web"), _change("key", "dvportgroup-7"))
    )
    port = vim.dvs.PortConnection(portgroupKey="dvportgroup-7")
    nic = vim.vm.device.VirtualVmxnet3(backing=CARD.DistributedVirtualPortBackingInfo(port=port))
    devices = vim.vm.device.VirtualDevice.Array([nic])
    apply_update(
        inv.vms,
        _update(
            vm,
            "enter",
            _change("name", "web-01"),
            _change("runtime.host", host),
            _change("runtime.powerState", "poweredOn"),
            _change("config.hardware.device", devices),
        ),
    )
    assert inv.vm("vm-9") == Vm("vc", "vm-9", "web-01", "esx01", Power.ON, ("web",))
    apply_update(inv.vms, _update(vm, "leave"))
    assert inv.vms == {}


def test_emitted_sends_only_differences() -> None:
    emitted = Emitted()
    vm = Vm("vc", "vm-1", "a", "esx01", Power.ON)
    assert emitted.vm_changes({"vm-1": vm}, []) == [VmUpsert(vm)]
    assert emitted.vm_changes({"vm-1": vm}, []) == []
    assert emitted.vm_changes({}, ["vm-1"]) == [VmRemoved("vc", "vm-1")]
    inv = Inventory("vc")
    apply_update(inv.hosts, _update(vim.HostSystem("host-1"), "enter", _change("name", "esx01")))
    (upsert,) = emitted.host_changes(inv.hosts_by_name())
    assert isinstance(upsert, HostUpsert) and upsert.host.name == "esx01"
    assert emitted.host_changes(inv.hosts_by_name()) == []
    assert emitted.host_changes({}) == [HostRemoved("vc", "esx01")]


def test_registered_as_vcenter_kind(tmp_path: Path) -> None:
    source = SOURCES.get("vcenter")(_config(), tmp_path)
    assert isinstance(source, VcenterSource) and source.name == "vc"


def test_tls_is_verified_by_default(tmp_path: Path) -> None:
    context = VcenterSource(_config(), tmp_path)._ssl_context()
    assert context.verify_mode.name == "CERT_REQUIRED" and context.check_hostname


def test_unverified_tls_warns_at_every_connect(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = VcenterSource(_config(verify_tls=False), tmp_path)
    with caplog.at_level(logging.WARNING):
        source._ssl_context()
        source._ssl_context()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "verification is off" in warnings[0].getMessage()
    assert source._warnings() == ("TLS certificate verification is off (verify_tls: false)",)

"""vSphere data objects and answers -> model values, without a server (pyVmomi data objects
are local; the answers are written here as a vSphere server writes them)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from vmfabric.config import VcenterSession
from vmfabric.core.model import HostRemoved, HostUpsert, Neighbor, Power, Vm, VmRemoved, VmUpsert
from vmfabric.core.vlans import ALL_VLANS
from vmfabric.sources.base import SOURCES
from vmfabric.sources.vcenter import VcenterSource
from vmfabric.sources.vcenter.inventory import Emitted, Inventory, apply_update, in_order
from vmfabric.sources.vcenter.mapping import (
    PVLAN_PROBLEM,
    custom_attributes,
    dvpg_vlans,
    guest_addresses,
    neighbor_from_hint,
    standard_vlans,
    vim,
    vswitch_nics,
)
from vmfabric.sources.vcenter.session import vmodl
from vmfabric.sources.vcenter.wire import (
    Change,
    GuestNic,
    ObjectUpdate,
    Updates,
    parse_fast,
    parse_tree,
)

DVS = vim.dvs.VmwareDistributedVirtualSwitch


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


def _enter(moref: str, type_: str = "VirtualMachine", **props: Any) -> ObjectUpdate:
    changes = tuple(Change(k.replace("__", "."), "assign", v) for k, v in props.items())
    return ObjectUpdate("enter", type_, moref, changes)


def _vm_inventory() -> Inventory:
    inv = Inventory("vc")
    apply_update(inv.hosts, ObjectUpdate("enter", "HostSystem", "host-1", (
        Change("name", "assign", "esx01"), Change("parent", "assign", vim.ClusterComputeResource(
            "domain-c7")))))  # fmt: skip
    apply_update(inv.clusters, _enter("domain-c7", "ClusterComputeResource", name="prod"))
    apply_update(inv.networks, _enter("dvportgroup-7", "DistributedVirtualPortgroup", name="web"))
    apply_update(inv.folders, _enter("group-d1", "Folder", name="Datacenters"))
    apply_update(inv.folders, _enter("datacenter-2", "Datacenter", name="DC0", parent="group-d1"))
    apply_update(inv.folders, _enter("group-v3", "Folder", name="vm", parent="datacenter-2"))
    apply_update(inv.folders, _enter("group-v9", "Folder", name="apps", parent="group-v3"))
    field = vim.CustomFieldsManager.FieldDef(key=101, name="owner")
    inv.fields["cfm"] = {"field": [field]}
    return inv


def test_a_vm_is_built_once_all_three_of_its_feeds_have_reported_it() -> None:
    inv = _vm_inventory()
    apply_update(inv.vms, _enter("vm-9", runtime__host="host-1", runtime__powerState="poweredOn"))
    assert inv.vm("vm-9") is None  # pending: the other feeds have not reported it yet
    apply_update(
        inv.vm_more,
        _enter("vm-9", name="web-01", network=("dvportgroup-7",), config__guestId="ubuntu64Guest"),
    )
    assert inv.vm("vm-9") is None  # pending: vm-extra has not reported it yet
    apply_update(inv.vm_extra, _enter(
        "vm-9", parent="group-v9", customValue=((101, "team-a"), (102, "x")),
        guest__net=(GuestNic("00:50:56:AB:CD:EF", ("10.0.0.10", "fe80::1", "10.0.0.9")),),
    ))  # fmt: skip
    inv.tags["vm-9"] = ("env:prod", "tier:web")
    assert inv.vm("vm-9") == Vm(
        "vc", "vm-9", "web-01", "esx01", Power.ON, ("web",),
        ips=("10.0.0.9", "10.0.0.10"), macs=("00:50:56:ab:cd:ef",),
        tags=("env:prod", "tier:web"), attributes=(("102", "x"), ("owner", "team-a")),
        guest_os="ubuntu64Guest", folder="/DC0/vm/apps", cluster="prod",
    )  # fmt: skip
    apply_update(inv.vms, ObjectUpdate("leave", "VirtualMachine", "vm-9"))
    assert inv.vm("vm-9") is None and inv.vms == {}


def test_guest_addresses_drop_link_local_and_keep_each_address_once() -> None:
    nics = [
        GuestNic("00:50:56:00:00:01", ("2001:DB8::1", "169.254.3.4", "10.1.1.1")),
        GuestNic("00:50:56:00:00:02", ("10.1.1.1", "fe80::250:56ff:fe00:2", "::1", "junk")),
    ]
    assert guest_addresses(nics) == (
        ("10.1.1.1", "2001:db8::1"),
        ("00:50:56:00:00:01", "00:50:56:00:00:02"),
    )


def test_custom_attributes_take_the_last_value_and_name_unknown_keys_by_number() -> None:
    values = [(1, "a"), (2, "b"), (1, "c")]
    assert custom_attributes(values, {1: "owner"}) == (("2", "b"), ("owner", "c"))


def test_a_leave_and_enter_of_one_object_in_one_answer_mean_it_is_back() -> None:
    enter, leave = _enter("vm-1", name="a"), ObjectUpdate("leave", "VirtualMachine", "vm-1")
    modify = ObjectUpdate("modify", "VirtualMachine", "vm-2", (Change("name", "assign", "b"),))
    gone = ObjectUpdate("leave", "VirtualMachine", "vm-2")
    assert in_order([enter, modify, leave, gone]) == [leave, enter, modify, gone]
    table: dict[str, dict[str, Any]] = {}
    for update in in_order([enter, modify, leave, gone]):
        apply_update(table, update)
    assert table == {"vm-1": {"name": "a"}}


_XSI = ' xmlns:XMLSchema-instance="http://www.w3.org/2001/XMLSchema-instance" XMLSchema-instance'


def _answer(objects: str, version: str = "7", truncated: bool = False) -> bytes:
    tail = "<truncated>true</truncated>" if truncated else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
        '<soapenv:Body><WaitForUpdatesExResponse xmlns="urn:vim25"><returnval>'
        f'<version>{version}</version><filterSet><filter type="PropertyFilter">f-1</filter>'
        f"{objects}</filterSet>{tail}</returnval></WaitForUpdatesExResponse></soapenv:Body>"
        "</soapenv:Envelope>"
    ).encode()


def _change_xml(name: str, val: str, xsi: str = "xsd:string", attrs: str = "") -> str:
    return (f"<changeSet><name>{name}</name><op>assign</op>"
            f'<val{_XSI}:type="{xsi}"{attrs}>{val}</val></changeSet>')  # fmt: skip


NICS = (
    "<GuestNicInfo><network>web</network><ipAddress>10.0.0.5</ipAddress>"
    "<ipAddress>fe80::1</ipAddress><macAddress>00:50:56:01:02:03</macAddress>"
    "<connected>true</connected><deviceConfigId>4000</deviceConfigId>"
    "<dnsConfig><dhcp>false</dhcp><ipAddress>192.0.2.53</ipAddress></dnsConfig>"
    "<ipConfig><ipAddress><ipAddress>10.0.0.5</ipAddress><prefixLength>24</prefixLength>"
    "</ipAddress></ipConfig></GuestNicInfo>"
    "<GuestNicInfo><macAddress>00:50:56:01:02:04</macAddress></GuestNicInfo>"
)
VM_ANSWER = _answer(
    "<objectSet><kind>enter</kind><obj type=\"VirtualMachine\">vm-9</obj>"
    + _change_xml("name", "web &amp; db &lt;1&gt;")
    + _change_xml("runtime.host", "host-1", "ManagedObjectReference", ' type="HostSystem"')
    + _change_xml("network", '<ManagedObjectReference type="Network">network-7'
                  "</ManagedObjectReference><ManagedObjectReference type=\"Network\">"
                  "dvportgroup-9</ManagedObjectReference>", "ArrayOfManagedObjectReference")
    + _change_xml("customValue", "<CustomFieldValue XMLSchema-instance:type="
                  '"CustomFieldStringValue"><key>101</key><value>team-a</value></CustomFieldValue>',
                  "ArrayOfCustomFieldValue")
    + _change_xml("guest.net", NICS, "ArrayOfGuestNicInfo")
    + "<changeSet><name>config.guestId</name><op>remove</op></changeSet>"
    + f'<changeSet><name>summary</name><op>assign</op><val{_XSI}:type="VirtualMachineSummary">'
    "<vm>vm-9</vm></val></changeSet></objectSet>"
    "<objectSet><kind>leave</kind><obj type=\"VirtualMachine\">vm-3</obj></objectSet>"
)  # fmt: skip


def test_the_fast_reader_reads_what_a_vsphere_server_writes() -> None:
    updates = parse_fast(VM_ANSWER)
    assert updates == Updates("7", False, (
        ObjectUpdate("enter", "VirtualMachine", "vm-9", (
            Change("name", "assign", "web & db <1>"),
            Change("runtime.host", "assign", "host-1"),
            Change("network", "assign", ("network-7", "dvportgroup-9")),
            Change("customValue", "assign", ((101, "team-a"),)),
            Change("guest.net", "assign", (
                GuestNic("00:50:56:01:02:03", ("10.0.0.5", "fe80::1")),
                GuestNic("00:50:56:01:02:04"))),
            Change("config.guestId", "remove", None),
            Change("summary", "assign", None),  # a structure it does not read
        )),
        ObjectUpdate("leave", "VirtualMachine", "vm-3"),
    ))  # fmt: skip
    assert parse_tree(VM_ANSWER) == updates


def test_vcsims_namespace_declarations_and_vcenters_prefix_read_alike() -> None:
    """The fast reader rewrites vcsim's per-value namespace declaration; a value whose
    text spells that declaration (escaped, as XML requires) is left as it is."""
    vcenter = VM_ANSWER.replace(_XSI.encode(), b" xsi")
    assert vcenter != VM_ANSWER and parse_fast(vcenter) == parse_fast(VM_ANSWER)
    spelled = "&lt;val" + _XSI.replace('"', "&quot;") + ':type="x'
    answer = _answer(
        '<objectSet><kind>enter</kind><obj type="VirtualMachine">vm-1</obj>'
        + _change_xml("name", spelled) + "</objectSet>"
    )  # fmt: skip
    updates = parse_fast(answer)
    assert updates is not None and updates == parse_tree(answer)
    assert updates.objects[0].changes[0].val == "<val" + _XSI + ':type="x'


def test_an_answer_written_differently_is_read_by_the_tree_reader() -> None:
    spaced = VM_ANSWER.replace(b"<changeSet><name>name", b"<changeSet>\n <name>name")
    assert parse_fast(spaced) == parse_tree(VM_ANSWER)


def test_an_empty_answer_and_a_truncated_one() -> None:
    empty = b'<Envelope xmlns="http://schemas.xmlsoap.org/soap/envelope/"><Body>' + (
        b'<WaitForUpdatesExResponse xmlns="urn:vim25"/></Body></Envelope>')  # fmt: skip
    assert parse_fast(empty) is None
    page = parse_fast(_answer("", version="3", truncated=True))
    assert page == Updates("3", True, ())


def test_emitted_sends_only_differences() -> None:
    emitted = Emitted()
    vm = Vm("vc", "vm-1", "a", "esx01", Power.ON)
    assert emitted.vm_changes({"vm-1": vm}, []) == [VmUpsert(vm)]
    assert emitted.vm_changes({"vm-1": vm}, []) == []
    assert emitted.vm_changes({}, ["vm-1"]) == [VmRemoved("vc", "vm-1")]
    inv = Inventory("vc")
    apply_update(inv.hosts, _enter("host-1", "HostSystem", name="esx01"))
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


HOST_ANSWER = _answer(
    '<objectSet><kind>enter</kind><obj type="HostSystem">host-7</obj>'
    + _change_xml("name", "esx01")
    + _change_xml("config.network.pnic",
                  "<PhysicalNic><key>key-vim.host.PhysicalNic-vmnic0</key><device>vmnic0</device>"
                  "<linkSpeed><speedMb>10000</speedMb></linkSpeed><mac>00:50:56:00:00:00</mac>"
                  "</PhysicalNic><PhysicalNic><key>key-vim.host.PhysicalNic-vmnic1</key>"
                  "<device>vmnic1</device></PhysicalNic>", "ArrayOfPhysicalNic")
    + _change_xml("config.network.vswitch",
                  "<HostVirtualSwitch><name>vSwitch0</name><key>k</key><numPorts>1536</numPorts>"
                  "<pnic>key-vim.host.PhysicalNic-vmnic0</pnic><spec><bridge "
                  'XMLSchema-instance:type="HostVirtualSwitchBondBridge"><nicDevice>vmnic0'
                  "</nicDevice></bridge></spec></HostVirtualSwitch>", "ArrayOfHostVirtualSwitch")
    + _change_xml("config.network.portgroup",
                  "<HostPortGroup><key>k</key><vswitch>v</vswitch><spec><name>VM Network</name>"
                  "<vlanId>42</vlanId><vswitchName>vSwitch0</vswitchName><policy></policy></spec>"
                  "</HostPortGroup>", "ArrayOfHostPortGroup")
    + _change_xml("config.network.proxySwitch",
                  "<HostProxySwitch><dvsUuid>u-1</dvsUuid><key>u-1</key>"
                  "<pnic>key-vim.host.PhysicalNic-vmnic1</pnic><spec><backing><pnicSpec>"
                  "<pnicDevice>vmnic1</pnicDevice></pnicSpec></backing></spec></HostProxySwitch>",
                  "ArrayOfHostProxySwitch")
    + "</objectSet>"
)  # fmt: skip


def test_the_tree_reader_reads_a_hosts_network_configuration_as_the_mapping_needs() -> None:
    updates = parse_tree(HOST_ANSWER)
    assert updates is not None
    inv = Inventory("vc")
    apply_update(inv.hosts, updates.objects[0])
    host = inv.host("host-7")
    assert [n.name for n in host.nics] == ["vmnic0", "vmnic1"]
    assert host.vswitch_nics == {"pg:VM Network": {"vmnic0"}, "dvs:u-1": {"vmnic1"}}
    (pg,) = inv.portgroups().values()
    assert (pg.name, pg.vlans, pg.vswitch) == ("VM Network", frozenset({42}), "pg:VM Network")


def test_a_server_without_the_tagging_api_gives_no_tags_and_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An ESXi host (or a user without the tagging API) answers 404: the tag feed reports
    "unknown" (the session keeps its last tags) and logs it once, not at every refresh."""
    import http.server
    import queue
    import threading

    from pydantic import SecretStr

    from vmfabric.sources.vcenter.tags import TagClient, TagFeed

    class NoTags(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NoTags)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out: queue.Queue[Any] = queue.Queue()
    client = TagClient(f"http://127.0.0.1:{server.server_port}/sdk", "ro",
                       lambda: SecretStr("Secret-4711"), None, 5.0)  # fmt: skip
    feed = TagFeed(client, 0.05, out, "vc")
    try:
        with caplog.at_level(logging.WARNING, logger="vmfabric.sources.vcenter"):
            feed.start()
            items = [out.get(timeout=5) for _ in range(3)]
    finally:
        feed.close()
        server.shutdown()
    assert [i.payload for i in items] == [None, None, None]
    warnings = [r.getMessage() for r in caplog.records if "tags not read" in r.getMessage()]
    assert warnings == ["session vc: VM tags not read: tagging API login answered HTTP 404"]
    assert "Secret-4711" not in caplog.text

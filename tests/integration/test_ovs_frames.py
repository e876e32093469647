"""Real frames through a real Open vSwitch, switched by what OvsDriver.apply wrote.

Topology, all on one private OVS (userspace datapath) in its own namespace:

    vm1 (10.110.0.1, VLAN 110) -- hv1 bridge --u1p== u1 --+
                                                          sw bridge (edge ports u1, u2)
    vm2 (10.110.0.2, VLAN 110) -- hv2 bridge --u2p== u2 --+
    vm3 (10.110.0.3, VLAN 120) -- hv2 bridge

Each hypervisor bridge puts its VMs on access ports and its uplink carries every VLAN;
the switch's edge ports carry only what the driver puts on their trunks. The VMs are
namespaces of their own, all in one IP subnet, so only VLANs separate them.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vmfabric.config import parse_switch
from vmfabric.core.errors import ConfigError
from vmfabric.core.model import PortChange
from vmfabric.lab import netns as nsx
from vmfabric.lab.ovs import OvsInstance, unique_name
from vmfabric.targets.switchport.ovs import OvsDriver

pytestmark = pytest.mark.integration

VMS = {  # name: (hypervisor bridge, VLAN, address)
    "vm1": ("hv1", 110, "10.110.0.1"),
    "vm2": ("hv2", 110, "10.110.0.2"),
    "vm3": ("hv2", 120, "10.110.0.3"),
}


class Fabric:
    def __init__(self, ovs: OvsInstance) -> None:
        self.ovs = ovs
        self.vm_netns = {vm: f"{ovs.name}-{vm}" for vm in VMS}
        config = parse_switch(
            {
                "name": "leaf1",
                "driver": "ovs",
                "ovsdb": ovs.db_url,
                "bridge": "sw",
                "edge_ports": ["u1", "u2"],
            }
        )
        self.driver = OvsDriver(config)

    def build(self) -> None:
        for bridge in ("sw", "hv1", "hv2"):
            self.ovs.add_bridge(bridge)
        for i in (1, 2):  # switch edge port (closed trunk) wired to a hypervisor uplink
            self.ovs.add_edge_port("sw", f"u{i}", trunks={4095})
            self.ovs.vsctl("add-port", f"hv{i}", f"u{i}p")
        for i, (vm, (bridge, vlan, address)) in enumerate(VMS.items(), start=1):
            ns = nsx.add_netns(self.vm_netns[vm])
            self.ovs.add_edge_port(bridge, f"v{i}", tag=vlan, peer="eth0", peer_netns=ns)
            nsx.add_address("eth0", f"{address}/24", ns)

    def destroy(self) -> None:
        self.driver.close()
        for ns in self.vm_netns.values():
            nsx.delete_netns(ns)

    def ping(self, src: str, dst: str, tries: int = 1) -> bool:
        """True if ``src`` reaches ``dst``; retries cover ARP and MAC learning."""
        address = VMS[dst][2]
        netns = self.vm_netns[src]
        return any(nsx.ping(netns, address, count=1, wait=1) for _ in range(tries))

    def settle(self) -> None:
        """Let ovs-vswitchd revalidate its flows (the driver waited for it to reconfigure)."""
        self.ovs.settle()


@pytest.fixture
def fabric(ovs: OvsInstance) -> Iterator[Fabric]:
    made = Fabric(ovs)
    try:
        made.build()
        yield made
    finally:
        made.destroy()


def test_vlan_reaches_across_the_switch_only_when_on_both_edge_trunks(fabric: Fabric) -> None:
    fabric.driver.apply([PortChange("u1", add=frozenset({110}))])
    fabric.settle()
    assert not fabric.ping("vm1", "vm2"), "VLAN 110 is on u1 only: vm2 must be unreachable"

    fabric.driver.apply([PortChange("u2", add=frozenset({110}))])
    assert fabric.ping("vm1", "vm2", tries=5), "VLAN 110 is on u1 and u2: vm2 must answer"
    assert not fabric.ping("vm3", "vm2"), "vm3 is in VLAN 120: it must never reach VLAN 110"
    assert not fabric.ping("vm3", "vm1")


def test_removing_the_last_vlan_closes_the_link_and_empty_trunks_would_not(
    fabric: Fabric,
) -> None:
    fabric.driver.apply([PortChange(p, add=frozenset({110})) for p in ("u1", "u2")])
    assert fabric.ping("vm1", "vm2", tries=5)

    fabric.driver.apply([PortChange("u2", remove=frozenset({110}))])
    fabric.settle()
    assert fabric.ovs.vsctl("get", "port", "u2", "trunks") == "[4095]"
    assert not fabric.ping("vm1", "vm2"), "u2 lost its last VLAN: it must carry none"

    # The trap the driver avoids: an edge port with empty trunks carries every VLAN.
    fabric.ovs.vsctl("clear", "port", "u2", "trunks")
    assert fabric.ping("vm1", "vm2", tries=5), "control: empty trunks should carry VLAN 110"


def test_netns_helpers_wire_two_namespaces_and_clean_up() -> None:
    prefix = unique_name("vfn")
    a, b = f"{prefix}-a", f"{prefix}-b"
    try:
        nsx.add_netns(a)
        nsx.add_netns(b)
        assert nsx.list_netns(prefix) == [a, b]
        nsx.add_veth("x0", "x1", netns=a, peer_netns=b)
        for ns, link, address in ((a, "x0", "10.9.0.1/30"), (b, "x1", "10.9.0.2/30")):
            nsx.set_up(link, ns)
            nsx.add_address(link, address, ns)
        assert nsx.link_exists("x1", b)
        assert not nsx.link_exists("x1", a)
        assert nsx.ping(a, "10.9.0.2", count=1, wait=2)
        nsx.delete_link("x0", a)
        assert not nsx.link_exists("x1", b)  # the peer went with it
        nsx.delete_link("x0", a)  # idempotent
        assert not nsx.ping(a, "10.9.0.2", count=1, wait=0.5)
    finally:
        nsx.delete_netns(a)
        nsx.delete_netns(b)
    assert nsx.list_netns(prefix) == []
    with pytest.raises(ConfigError, match="interface name"):
        nsx.check_link_name("much-too-long-name0")

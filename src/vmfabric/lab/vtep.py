"""The lab's VXLAN tunnel endpoints: one Open vSwitch userspace VTEP per leaf (underlay labs).

Why a namespace of its own: OVS's userspace datapath routes tunnel packets with its own
copy of its namespace's routing table, and (in OVS 3.1) it ignores multipath routes and
can only send out of an OVS bridge. A leaf's kernel routes by ECMP over routed veths that
are not OVS bridges. So each leaf's VTEP runs in ``vfl-<lab>-vtep-<leaf>`` with one
default route towards the leaf's kernel, which then routes the VXLAN packets over the
underlay (BGP or OSPF, ECMP across the spines) like a hypervisor VTEP behind a ToR::

    leaf namespace                            VTEP namespace (own OVS)
    br0 (edge ports) -- vtepb ========== leaf -- br-int -- vxlan ports (flood lists)
    kernel + FRR ------ vtepu (/31) ==== uplink -- br-phy (VTEP address, MTU 1600)

The recipe and its pitfalls (LAB-NOTES "OVS userspace VXLAN between leaves"):

- the VTEP address lives on ``br-phy``; the underlay veth ``uplink`` has no address and
  ``arp_ignore=1``, else the kernel answers ARP for it with the veth's MAC and OVS caches
  that (the tunnel then loses everything);
- MTU 1600 on every underlay hop (VXLAN adds 50 bytes): this side and the fabric /31s;
- the first packet to a next hop is dropped while OVS resolves it: ``wait_reachable``
  pings every other VTEP from each VTEP once before the lab is reported up;
- the tunnel ports themselves (the flood lists) are vmfabric's job (``targets.vtep.ovs``);
  each carries ``options:local_ip`` and is protected (split horizon: what came from a
  tunnel is never flooded into another tunnel, else three leaves loop).

``br-int`` takes the leaf's whole trunk (``vtepb`` carries every VLAN); a VLAN without a
tunnel port of its VNI stays on the leaf.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from vmfabric.lab import netns as nsx
from vmfabric.lab import topology as tp
from vmfabric.lab.ovs import OvsInstance

if TYPE_CHECKING:
    from vmfabric.lab.builder import LabState, NodeState

UNDERLAY_MTU = 1600
INT_BRIDGE = "br-int"  # the VTEP's VLAN side: the leaf trunk and the tunnel ports
PHY_BRIDGE = "br-phy"  # the VTEP's underlay side: holds the VTEP address
UPLINK = "uplink"  # VTEP end of the routed /31 (in br-phy)
TRUNK = "leaf"  # VTEP end of the trunk from the leaf's br0 (in br-int)


def _veth(topo: tp.Topology, leaf: str, here: str, there: str, mtu: int | None) -> None:
    argv = ["ip", "link", "add", here, "address", tp.vtep_mac(topo, leaf, here)]
    if mtu:
        argv += ["mtu", str(mtu)]
    argv += ["type", "veth", "peer", "name", there, "address", tp.vtep_mac(topo, leaf, there)]
    if mtu:
        argv += ["mtu", str(mtu)]
    argv += ["netns", tp.vtep_netns(topo.name, leaf)]
    nsx.run(argv, tp.netns_name(topo.name, leaf))


def start(topo: tp.Topology, state: LabState, leaf: str) -> None:
    """Build leaf ``leaf``'s VTEP; record it in the leaf's ``NodeState``."""
    node = state.nodes[leaf]
    ns = tp.vtep_netns(topo.name, leaf)
    ovs = OvsInstance(name=ns, parent_dir=state.state_dir).start()
    node.vtep_netns, node.vtep_ovsdb = ns, ovs.db_url
    node.vtep_address = str(tp.vtep_address(topo, leaf))
    leaf_side, vtep_side = tp.vtep_link(topo, leaf)
    _veth(topo, leaf, tp.VTEP_UNDERLAY_PORT, UPLINK, UNDERLAY_MTU)
    _veth(topo, leaf, tp.VTEP_TRUNK_PORT, TRUNK, None)
    nsx.add_address(tp.VTEP_UNDERLAY_PORT, str(leaf_side), node.netns)
    for port in (tp.VTEP_UNDERLAY_PORT, tp.VTEP_TRUNK_PORT):
        nsx.set_up(port, node.netns)
    nsx.run(["sysctl", "-qw", f"net.ipv4.conf.{UPLINK}.arp_ignore=1"], ns)
    ovs.add_bridge(PHY_BRIDGE)
    hwaddr = f"02:76:67:{tp.node_index(topo, leaf):02x}:05:00"
    ovs.vsctl("set", "bridge", PHY_BRIDGE, f"other-config:hwaddr={hwaddr}")
    ovs.vsctl("add-port", PHY_BRIDGE, UPLINK)
    ovs.vsctl("set", "interface", PHY_BRIDGE, f"mtu_request={UNDERLAY_MTU}")
    ovs.add_bridge(INT_BRIDGE)
    ovs.vsctl("add-port", INT_BRIDGE, TRUNK)
    for port in (UPLINK, TRUNK, PHY_BRIDGE, INT_BRIDGE):
        nsx.set_up(port, ns)
    nsx.add_address(PHY_BRIDGE, str(vtep_side), ns)
    nsx.run(["ip", "route", "add", "default", "via", str(leaf_side.ip)], ns)
    _leaf_vsctl(node, "add-port", "br0", tp.VTEP_TRUNK_PORT)


def _leaf_vsctl(node: NodeState, *args: str) -> None:
    assert node.ovsdb is not None
    nsx.run(["ovs-vsctl", f"--db={node.ovsdb}", "--timeout=10", *args])


def start_all(topo: tp.Topology, state: LabState) -> None:
    """Build every leaf's VTEP (in parallel)."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda leaf: start(topo, state, leaf), tp.vtep_leaves(topo)))


def _ping(src: NodeState, address: str) -> bool:
    assert src.vtep_netns is not None and src.vtep_address is not None
    argv = ["ping", "-n", "-q", "-c", "1", "-W", "1", "-I", src.vtep_address, address]
    return nsx.run(argv, src.vtep_netns, check=False).returncode == 0


def unreachable(state: LabState) -> list[str]:
    """VTEP pairs that do not (yet) answer a ping over the underlay, as ``a->b``."""
    vteps = [node for node in state.nodes.values() if node.vtep_address]
    pairs = [(a, b) for a in vteps for b in vteps if a is not b]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda pair: _ping(pair[0], str(pair[1].vtep_address)), pairs))
    return [f"{a.name}->{b.name}" for (a, b), ok in zip(pairs, answers, strict=True) if not ok]

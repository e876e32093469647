"""Lab topology files: the typed model, its validation and the naming/addressing plan.

A topology file (YAML, containerlab-like) names the lab, its nodes, the links between
them, a management network and an optional L3 underlay::

    name: leaf-spine
    underlay: none                  # none | ospf | bgp
    mgmt: {subnet: 172.31.255.0/24}
    addressing: {loopbacks: 10.255.0.0/24, p2p: 10.254.0.0/24, asn_base: 65000}
    edge_vlans: ""                  # VLANs edge ports carry before any VM ("": closed)
    nodes:
      - {name: leaf1, kind: switch}
      - {name: hv1, kind: host}
    links:
      - {name: net1, endpoints: ["leaf1:eth51", "spine3:eth1"]}
      - {endpoints: ["leaf1:eth1", "hv1:vmnic0"]}

Kinds: ``switch`` (an Open vSwitch bridge in a namespace of its own; with an underlay it
also runs FRR) and ``host`` (a hypervisor: a namespace with its own OVS bridge standing
for the vSwitch; VMs attach to it). A switch port that links to a host is an *edge port*
(a trunk vmfabric manages); a link between two switches is a *fabric link*.

Names. Every global name the lab creates carries the lab prefix ``vfl-<lab>-``: the
namespaces (``vfl-<lab>-<node>``, ``vfl-<lab>-mgmt``, ``vfl-<lab>-vm-<vm>``), the FRR path
spaces and the state directory. Interfaces are created directly inside those
namespaces (never in the host's own namespace) and keep the topology's port names, so a
leaf's port ``eth1`` is ``eth1`` in OVS, in LLDP and in vmfabric's ``edge_ports``.
Node and port names must therefore be valid interface names (at most 15 characters).

MAC convention (locally administered, deterministic): ``02:76:66:NN:PP:00`` where ``NN``
is the node's 1-based position in ``nodes`` and ``PP`` the port's 1-based position in
that node's port list (order of first appearance in ``links``); ``PP = 00`` is the
node's bridge and ``PP = fe`` its management interface. The management bridge uses
``NN = 00``. VM vNICs get ``02:76:76:xx:xx:xx`` from a hash of the VM name, so a VM keeps
its MAC when it moves.

Addresses (only ever configured inside the lab's namespaces): management ``.1`` is the
management bridge, switch ``N`` gets host address ``N + 10`` of ``mgmt.subnet``; switch
``N``'s loopback (router id) is host address ``N`` of ``addressing.loopbacks``; the k-th
fabric link (0-based, file order) gets the /31 ``p2p + 2k`` (first endpoint) and
``p2p + 2k + 1`` (second endpoint); switch ``N``'s BGP AS is ``asn_base + N``.

VTEPs. With an underlay (``ospf``/``bgp``) every switch with an edge port (a leaf) is
also a VXLAN tunnel endpoint: a namespace ``vfl-<lab>-vtep-<leaf>`` with an Open vSwitch
of its own. Leaf ``N`` (1-based node index) reaches it over the /31
``addressing.vteps + 2(N - 1)`` (leaf side, port ``vtepu``, announced into the underlay);
the VTEP address is the other end, ``+ 1``. Port ``vtepb`` of the leaf's ``br0`` is the
trunk into the VTEP. Node names ``vtep-*`` and port names ``vtepu``/``vtepb`` are
reserved.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vmfabric.core.errors import ConfigError
from vmfabric.core.vlans import parse_vlans

IFNAMSIZ = 15
BUILTIN = ("leaf-spine", "overlay")
_LAB_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,23}$")
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]+$")
VTEP_UNDERLAY_PORT = "vtepu"  # leaf side of the VTEP's routed /31
VTEP_TRUNK_PORT = "vtepb"  # leaf br0 port: the trunk into the VTEP's br-int
_RESERVED_PORTS = frozenset({"lo", "mgmt0", "vs0", VTEP_UNDERLAY_PORT, VTEP_TRUNK_PORT})


class Kind(StrEnum):
    """What a node is."""

    SWITCH = "switch"
    HOST = "host"


class Underlay(StrEnum):
    """How the switches route between each other (``none``: one L2 fabric with RSTP)."""

    NONE = "none"
    OSPF = "ospf"
    BGP = "bgp"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Node(_Strict):
    """One namespace of the lab."""

    name: str = Field(description="Node name; also an interface name in the mgmt namespace.")
    kind: Kind = Field(description="switch or host (hypervisor).")
    asn: int | None = Field(default=None, ge=1, le=4294967295, description="BGP AS override.")


class Link(_Strict):
    """A veth pair between two ``node:port`` endpoints."""

    name: str | None = Field(default=None, description="Link name; default link<N>.")
    endpoints: tuple[str, str] = Field(description='Two "node:port" strings.')


class Mgmt(_Strict):
    """The management network: a Linux bridge in ``vfl-<lab>-mgmt``, one veth per switch."""

    subnet: ipaddress.IPv4Network = Field(default=ipaddress.IPv4Network("172.31.255.0/24"))


class Addressing(_Strict):
    """Underlay address plan."""

    loopbacks: ipaddress.IPv4Network = Field(default=ipaddress.IPv4Network("10.255.0.0/24"))
    p2p: ipaddress.IPv4Network = Field(default=ipaddress.IPv4Network("10.254.0.0/24"))
    vteps: ipaddress.IPv4Network = Field(
        default=ipaddress.IPv4Network("10.253.0.0/24"),
        description="One /31 per leaf: leaf side and VTEP address (underlay only).",
    )
    asn_base: int = Field(default=65000, ge=1, le=4294900000)


class Topology(_Strict):
    """A whole lab as written in a topology file."""

    name: str = Field(description="Lab name: 1-24 of a-z 0-9 -; prefix vfl-<name>-.")
    underlay: Underlay = Underlay.NONE
    mgmt: Mgmt = Mgmt()
    addressing: Addressing = Addressing()
    edge_vlans: str = Field(
        default="",
        description='VLANs edge ports carry at start ("": none; the port is closed with '
        "trunks=[4095], the ovs driver's placeholder).",
    )
    nodes: list[Node]
    links: list[Link]


@dataclass(frozen=True)
class Endpoint:
    """One end of a link."""

    node: str
    port: str

    def __str__(self) -> str:
        return f"{self.node}:{self.port}"


# ---- loading -------------------------------------------------------------------------------


def load_topology(source: str | Path | None = None) -> tuple[Topology, str]:
    """Load a topology: None or a built-in name (``leaf-spine``) or a file path.

    Returns the validated topology and the label used in error messages.
    """
    if source is None or str(source) in BUILTIN:
        name = str(source or BUILTIN[0])
        text = resources.files("vmfabric.lab").joinpath(f"{name}.yaml").read_text()
        return parse_topology(text, f"{name}.yaml"), f"{name}.yaml"
    path = Path(source)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read topology: {exc.strerror}", str(path)) from None
    return parse_topology(text, str(path)), str(path)


def parse_topology(text: str, where: str = "topology") -> Topology:
    """Parse and validate topology YAML; every problem is one ConfigError line."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML ({_first_line(str(exc))})", where) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top level", where)
    try:
        topo = Topology.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(err["msg"], f"{where}: {_loc(err['loc'])}") from None
    validate(topo, where)
    return topo


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top)"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "error"


# ---- validation ----------------------------------------------------------------------------


def validate(topo: Topology, where: str = "topology") -> None:
    """Check names, references and address room; raise ConfigError naming the key path."""
    if not _LAB_NAME.match(topo.name):
        raise ConfigError(f"lab name {topo.name!r} must be 1-24 of a-z 0-9 -", f"{where}: name")
    try:
        edge_vlans(topo)
    except ValueError as exc:
        raise ConfigError(str(exc), f"{where}: edge_vlans") from None
    _validate_nodes(topo, where)
    _validate_links(topo, where)
    _validate_room(topo, where)


def _check_ifname(name: str, what: str, where: str) -> None:
    if len(name) > IFNAMSIZ:
        raise ConfigError(f"{what} {name!r} is longer than {IFNAMSIZ} characters", where)
    if not name or not _IFNAME.match(name):
        raise ConfigError(f"{what} {name!r} must be of A-Z a-z 0-9 _ . -", where)


def _validate_nodes(topo: Topology, where: str) -> None:
    seen: set[str] = set()
    for i, node in enumerate(topo.nodes):
        key = f"{where}: nodes[{i}].name"
        _check_ifname(node.name, "node name", key)
        if node.name == "mgmt" or node.name.startswith(("vm-", "vtep-")):
            raise ConfigError(f"node name {node.name!r} is reserved", key)
        if node.name in seen:
            raise ConfigError(f"duplicate node name {node.name!r}", key)
        seen.add(node.name)
    if not topo.nodes:
        raise ConfigError("a lab needs at least one node", f"{where}: nodes")


def _validate_links(topo: Topology, where: str) -> None:
    kinds = {node.name: node.kind for node in topo.nodes}
    used: dict[tuple[str, str], str] = {}
    names: set[str] = set()
    for i, link in enumerate(topo.links):
        name = link_name(topo, i)
        if name in names:
            raise ConfigError(f"duplicate link name {name!r}", f"{where}: links[{i}].name")
        names.add(name)
        ends = [
            _parse_endpoint(text, kinds, f"{where}: links[{i}].endpoints[{j}]")
            for j, text in enumerate(link.endpoints)
        ]
        for j, end in enumerate(ends):
            key = f"{where}: links[{i}].endpoints[{j}]"
            if (end.node, end.port) in used:
                raise ConfigError(f"port {end} is already used by {used[end.node, end.port]}", key)
            used[end.node, end.port] = name
        if ends[0].node == ends[1].node:
            raise ConfigError("a link must join two different nodes", f"{where}: links[{i}]")
        if kinds[ends[0].node] == kinds[ends[1].node] == Kind.HOST:
            raise ConfigError("hosts connect to switches, not to hosts", f"{where}: links[{i}]")


def _parse_endpoint(text: str, kinds: dict[str, Kind], key: str) -> Endpoint:
    node, sep, port = text.partition(":")
    if not sep or not node or not port:
        raise ConfigError(f"endpoint {text!r} must be node:port", key)
    if node not in kinds:
        raise ConfigError(f"endpoint {text!r} names unknown node {node!r}", key)
    _check_ifname(port, "port name", key)
    if port in _RESERVED_PORTS or port.startswith("vm-"):
        raise ConfigError(f"port name {port!r} is reserved", key)
    return Endpoint(node, port)


def _validate_room(topo: Topology, where: str) -> None:
    if len(topo.nodes) > 200:
        raise ConfigError("at most 200 nodes", f"{where}: nodes")
    if topo.mgmt.subnet.num_addresses < len(topo.nodes) + 12:
        raise ConfigError("subnet too small for the switches", f"{where}: mgmt.subnet")
    if topo.addressing.loopbacks.num_addresses < len(topo.nodes) + 2:
        raise ConfigError("too small for one loopback per switch", f"{where}: addressing.loopbacks")
    if topo.addressing.p2p.num_addresses < 2 * len(topo.links):
        raise ConfigError("too small for one /31 per fabric link", f"{where}: addressing.p2p")
    if topo.addressing.vteps.num_addresses < 2 * len(topo.nodes):
        raise ConfigError("too small for one /31 per leaf", f"{where}: addressing.vteps")
    for node in topo.nodes:
        if len(ports_of(topo, node.name)) > 250:
            raise ConfigError(f"node {node.name!r} has more than 250 ports", f"{where}: links")


# ---- derived plan --------------------------------------------------------------------------


def edge_vlans(topo: Topology) -> frozenset[int]:
    """VLANs edge ports carry when the lab starts (empty: closed)."""
    return parse_vlans(topo.edge_vlans) if topo.edge_vlans.strip() else frozenset()


def link_name(topo: Topology, index: int) -> str:
    """The link's name, ``link<N>`` (1-based) when the file gives none."""
    return topo.links[index].name or f"link{index + 1}"


def endpoints(link: Link) -> tuple[Endpoint, Endpoint]:
    """Both ends of a (validated) link."""
    a, b = (Endpoint(*text.split(":", 1)) for text in link.endpoints)
    return a, b


def node(topo: Topology, name: str) -> Node:
    """The node called ``name`` (KeyError if there is none)."""
    for item in topo.nodes:
        if item.name == name:
            return item
    raise KeyError(name)


def node_index(topo: Topology, name: str) -> int:
    """1-based position of ``name`` in ``nodes``."""
    return [item.name for item in topo.nodes].index(name) + 1


def switches(topo: Topology) -> list[Node]:
    return [item for item in topo.nodes if item.kind == Kind.SWITCH]


def hosts(topo: Topology) -> list[Node]:
    return [item for item in topo.nodes if item.kind == Kind.HOST]


def ports_of(topo: Topology, name: str) -> list[str]:
    """Ports of node ``name`` in order of first appearance in ``links``."""
    found: list[str] = []
    for link in topo.links:
        for end in endpoints(link):
            if end.node == name and end.port not in found:
                found.append(end.port)
    return found


def peer_of(topo: Topology, name: str, port: str) -> Endpoint | None:
    """The endpoint linked to ``name:port``."""
    for link in topo.links:
        a, b = endpoints(link)
        if (a.node, a.port) == (name, port):
            return b
        if (b.node, b.port) == (name, port):
            return a
    return None


def _kind(topo: Topology, name: str) -> Kind:
    return node(topo, name).kind


def edge_ports(topo: Topology, switch: str) -> list[str]:
    """Ports of ``switch`` that lead to a host (the ports vmfabric manages)."""
    return [
        port
        for port in ports_of(topo, switch)
        if (peer := peer_of(topo, switch, port)) and _kind(topo, peer.node) == Kind.HOST
    ]


def fabric_links(topo: Topology) -> list[Link]:
    """Links whose both ends are switches, in file order."""
    return [
        link
        for link in topo.links
        if all(_kind(topo, end.node) == Kind.SWITCH for end in endpoints(link))
    ]


def mac(topo: Topology, name: str, port: str | None = None) -> str:
    """Deterministic MAC of node ``name``'s ``port`` (None: bridge; ``mgmt0``: management)."""
    nn = node_index(topo, name)
    if port is None:
        pp = 0
    elif port == "mgmt0":
        pp = 0xFE
    else:
        pp = ports_of(topo, name).index(port) + 1
    return f"02:76:66:{nn:02x}:{pp:02x}:00"


def mgmt_bridge_mac(switch_index: int = 0) -> str:
    """MAC of the management bridge (0) or of its port towards switch ``switch_index``."""
    return f"02:76:66:00:{switch_index:02x}:00"


def vm_mac(vm: str) -> str:
    """Deterministic MAC of a VM's vNIC, from its name."""
    digest = hashlib.sha256(vm.encode()).digest()
    return "02:76:76:" + ":".join(f"{byte:02x}" for byte in digest[:3])


def mgmt_gateway(topo: Topology) -> ipaddress.IPv4Interface:
    """Address of the management bridge (host address 1)."""
    net = topo.mgmt.subnet
    return ipaddress.IPv4Interface(f"{net.network_address + 1}/{net.prefixlen}")


def mgmt_address(topo: Topology, name: str) -> ipaddress.IPv4Interface:
    """Management address of switch ``name`` (host address index + 10)."""
    net = topo.mgmt.subnet
    host = net.network_address + node_index(topo, name) + 10
    return ipaddress.IPv4Interface(f"{host}/{net.prefixlen}")


def loopback(topo: Topology, name: str) -> ipaddress.IPv4Address:
    """Loopback address and router id of switch ``name``."""
    return topo.addressing.loopbacks.network_address + node_index(topo, name)


def asn(topo: Topology, name: str) -> int:
    """BGP AS of switch ``name``: its override, else ``asn_base + index``."""
    return node(topo, name).asn or topo.addressing.asn_base + node_index(topo, name)


def p2p_addresses(topo: Topology) -> dict[tuple[str, str], ipaddress.IPv4Interface]:
    """The /31 of every fabric-link endpoint, keyed by (node, port)."""
    out: dict[tuple[str, str], ipaddress.IPv4Interface] = {}
    base = topo.addressing.p2p.network_address
    for k, link in enumerate(fabric_links(topo)):
        a, b = endpoints(link)
        out[a.node, a.port] = ipaddress.IPv4Interface(f"{base + 2 * k}/31")
        out[b.node, b.port] = ipaddress.IPv4Interface(f"{base + 2 * k + 1}/31")
    return out


def prefix(lab: str) -> str:
    """Prefix of every namespace and daemon of lab ``lab``."""
    return f"vfl-{lab}-"


def netns_name(lab: str, name: str) -> str:
    """Namespace of node ``name`` (or ``mgmt``) in lab ``lab``."""
    return f"{prefix(lab)}{name}"


def vm_netns(lab: str, vm: str) -> str:
    return f"{prefix(lab)}vm-{vm}"


# ---- VTEPs (underlay labs) -----------------------------------------------------------------


def vtep_leaves(topo: Topology) -> list[str]:
    """Switches that are VTEPs: those with an edge port, when the lab has an underlay."""
    if topo.underlay == Underlay.NONE:
        return []
    return [item.name for item in switches(topo) if edge_ports(topo, item.name)]


def vtep_link(topo: Topology, leaf: str) -> tuple[ipaddress.IPv4Interface, ipaddress.IPv4Interface]:
    """The /31 between leaf ``leaf`` (first) and its VTEP (second: the VTEP address)."""
    base = topo.addressing.vteps.network_address + 2 * (node_index(topo, leaf) - 1)
    return ipaddress.IPv4Interface(f"{base}/31"), ipaddress.IPv4Interface(f"{base + 1}/31")


def vtep_address(topo: Topology, leaf: str) -> ipaddress.IPv4Address:
    """The VTEP address of leaf ``leaf`` (the tunnels' local and remote IP)."""
    return vtep_link(topo, leaf)[1].ip


def vtep_netns(lab: str, leaf: str) -> str:
    """Namespace of leaf ``leaf``'s VTEP."""
    return f"{prefix(lab)}vtep-{leaf}"


def vtep_mac(topo: Topology, leaf: str, port: str) -> str:
    """MACs of the VTEP veths: ``02:76:67:NN:PP:00``, PP 1 (uplink) 2 (trunk) 3/4 leaf side."""
    pp = {"uplink": 1, "leaf": 2, VTEP_UNDERLAY_PORT: 3, VTEP_TRUNK_PORT: 4}[port]
    return f"02:76:67:{node_index(topo, leaf):02x}:{pp:02x}:00"

"""Build, inspect and tear down a namespace lab from a topology (``vmfabric lab up|down|show``).

``up`` turns a validated ``Topology`` into running parts, each in a namespace named
``vfl-<lab>-<node>``:

- a switch is an Open vSwitch bridge ``br0`` (userspace datapath, an ``OvsInstance`` of its
  own). Edge ports (towards hosts) are trunks carrying ``edge_vlans`` (default none:
  ``trunks=[4095]``, the ovs driver's closed-port placeholder); with ``underlay:
  none`` fabric links are trunks of every VLAN and the bridges run RSTP (the first switch
  with no host attached is the root) so the leaf-spine square is loop-free. With an
  underlay, fabric links are routed /31s outside OVS (MTU 1600) and FRR runs in the
  namespace, and every leaf gets a VXLAN tunnel endpoint of its own (``lab.vtep``).
- a host (hypervisor) is a namespace with its own OVS bridge ``vs0`` standing for the
  vSwitch; two or more NICs form an active-backup bond ``uplink`` (a vSwitch never
  forwards between its uplinks), one NIC is a plain trunk port.
- links are veth pairs created directly between the two namespaces (never in the
  caller's namespace), with MACs and addresses from ``topology``'s conventions.
- a management network: Linux bridge ``br-mgmt`` in ``vfl-<lab>-mgmt``, a veth ``mgmt0``
  from every switch to it.
- lldpd runs in every switch and host namespace on the topology ports only (system name =
  node name, port id = interface name), so each hypervisor NIC hears its leaf and port.

Everything ``up`` learns (namespaces, OVSDB sockets, bridges, edge ports, PID files,
VMs) is written as JSON to ``<state_root>/<lab>/state.json`` (default state root
``/run/vmfabric-lab``, or ``$VMFABRIC_LAB_STATE``); ``load_state`` reads it back. The
state file is written before anything is created, so ``down`` can always find what a
crashed ``up`` left. ``down`` kills daemons by the PID files in the state directory
(checking each PID still belongs to this lab), deletes the lab's namespaces by name and
removes the directory; it is idempotent.

VMs (``add_vm``/``move_vm``/``remove_vm``) are namespaces ``vfl-<lab>-vm-<vm>`` whose
``eth0`` is a veth to port ``vm-<vm>`` (an access port in the VM's VLAN) on a host's
``vs0``. A VM keeps its MAC and address when it moves.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import BaseModel, Field

from vmfabric.core.errors import ConfigError, PermanentError, VmfabricError
from vmfabric.core.vlans import check_vlan
from vmfabric.inventory.topology.lldpd import read_neighbors
from vmfabric.lab import frr, vtep
from vmfabric.lab import netns as nsx
from vmfabric.lab import topology as tp
from vmfabric.lab.ovs import OvsInstance

DEFAULT_STATE_ROOT = "/run/vmfabric-lab"
SWITCH_BRIDGE = "br0"
HOST_BRIDGE = "vs0"
MGMT_BRIDGE = "br-mgmt"
MGMT_PORT = "mgmt0"
LLDP_TX_INTERVAL = 1
CLOSED_VLAN = 4095  # trunks=[4095]: a trunk carrying no VLAN (the ovs driver's placeholder)


class PortState(BaseModel):
    """One interface of a node."""

    name: str
    mac: str
    peer: str = Field(description="node:port at the other end")
    link: str
    edge: bool = False
    address: str | None = None


class NodeState(BaseModel):
    """One node as built."""

    name: str
    kind: tp.Kind
    netns: str
    ovs_dir: str | None = None
    ovsdb: str | None = Field(default=None, description="unix:/.../db.sock")
    bridge: str | None = None
    ports: list[PortState] = []
    edge_ports: list[str] = []
    mgmt_ip: str | None = None
    loopback: str | None = None
    asn: int | None = None
    lldpd_socket: str | None = None
    frr_dir: str | None = None
    vtep_address: str | None = Field(default=None, description="the leaf's VTEP (underlay)")
    vtep_netns: str | None = None
    vtep_ovsdb: str | None = Field(default=None, description="the VTEP's OVSDB (br-int)")


class VmState(BaseModel):
    """A VM attached to a host."""

    name: str
    host: str
    vlan: int
    ip: str
    mac: str
    netns: str
    port: str


class LinkState(BaseModel):
    name: str
    a: str
    b: str


class LabState(BaseModel):
    """Everything ``up`` created, as written to ``state.json``."""

    name: str
    status: str = "starting"
    source: str
    topology: tp.Topology
    underlay: tp.Underlay
    state_dir: str
    mgmt_netns: str
    mgmt_subnet: str
    namespaces: list[str]
    nodes: dict[str, NodeState] = {}
    links: list[LinkState] = []
    vms: dict[str, VmState] = {}
    up_seconds: float | None = None

    def node(self, name: str) -> NodeState:
        if name not in self.nodes:
            raise ConfigError(f"lab {self.name} has no node {name!r}")
        return self.nodes[name]


# ---- state files --------------------------------------------------------------------------


def state_root(root: str | Path | None = None) -> Path:
    """The directory holding every lab's state directory."""
    return Path(root or os.environ.get("VMFABRIC_LAB_STATE") or DEFAULT_STATE_ROOT)


def state_dir(name: str, root: str | Path | None = None) -> Path:
    return state_root(root) / name


def _state_file(name: str, root: str | Path | None) -> Path:
    return state_dir(name, root) / "state.json"


def save_state(state: LabState) -> None:
    """Write ``state`` atomically to its ``state.json``."""
    path = Path(state.state_dir) / "state.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(state.model_dump_json(indent=2))
    tmp.replace(path)


def load_state(name: str, root: str | Path | None = None) -> LabState:
    """The state of lab ``name``; ConfigError if it is not up."""
    path = _state_file(name, root)
    try:
        return LabState.model_validate_json(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"lab {name!r} is not up (no {path})") from None
    except ValueError as exc:
        raise ConfigError(f"unreadable lab state: {str(exc).splitlines()[0]}", str(path)) from None


def _resolve(lab: str | LabState, root: str | Path | None) -> LabState:
    return lab if isinstance(lab, LabState) else load_state(lab, root)


# ---- processes ----------------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def netns_inodes(namespaces: Iterable[str]) -> set[int]:
    """Inode numbers of the named network namespaces that exist."""
    found: set[int] = set()
    for ns in namespaces:
        with contextlib.suppress(OSError):
            found.add(os.stat(f"/run/netns/{ns}").st_ino)
    return found


def _owned(pid: int, marker: str, inodes: set[int]) -> bool:
    """True if live ``pid`` runs in one of the lab's namespaces or names ``marker``."""
    if not _alive(pid):
        return False
    try:
        if os.stat(f"/proc/{pid}/ns/net").st_ino in inodes:
            return True
    except OSError:
        return False
    return marker in _cmdline(pid)


def kill_pidfile(pidfile: Path, marker: str, inodes: set[int], wait: float = 3.0) -> int | None:
    """Stop the process in ``pidfile`` if it is ours (see ``_owned``); return its PID.

    lldpd rewrites its command line, so ownership is proven by the process's network
    namespace (one of the lab's) or, failing that, by ``marker`` in its command line.
    """
    pid = _read_pid(pidfile)
    if pid is None or not _owned(pid, marker, inodes):
        return None
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    return pid


def spawn(argv: list[str], netns: str, pidfile: Path, log: Path) -> int:
    """Start ``argv`` (a foreground daemon) in ``netns`` in a session of its own."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            nsx.in_netns(netns, argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def lab_pids(directory: Path, namespaces: Iterable[str]) -> dict[str, int]:
    """Live processes of the lab whose PID files are under ``directory``: pidfile -> PID."""
    found: dict[str, int] = {}
    inodes = netns_inodes(namespaces)
    for pidfile in sorted(directory.rglob("*.pid")) if directory.exists() else []:
        pid = _read_pid(pidfile)
        if pid is not None and _owned(pid, str(directory), inodes):
            found[str(pidfile.relative_to(directory))] = pid
    return found


# ---- up -----------------------------------------------------------------------------------


def _plan_state(topo: tp.Topology, source: str, root: str | Path | None) -> LabState:
    namespaces = [tp.netns_name(topo.name, "mgmt")]
    namespaces += [tp.netns_name(topo.name, item.name) for item in topo.nodes]
    namespaces += [tp.vtep_netns(topo.name, leaf) for leaf in tp.vtep_leaves(topo)]
    links = [
        LinkState(name=tp.link_name(topo, i), a=link.endpoints[0], b=link.endpoints[1])
        for i, link in enumerate(topo.links)
    ]
    return LabState(
        name=topo.name,
        source=source,
        topology=topo,
        underlay=topo.underlay,
        state_dir=str(state_dir(topo.name, root)),
        mgmt_netns=namespaces[0],
        mgmt_subnet=str(topo.mgmt.subnet),
        namespaces=namespaces,
        links=links,
    )


def is_up(name: str, root: str | Path | None = None) -> bool:
    """True if lab ``name`` has a state file or any namespace."""
    return _state_file(name, root).exists() or bool(_own_netns(name, root))


def check_tools(topo: tp.Topology) -> None:
    """Raise PermanentError naming the first missing program ``up`` needs."""
    tools = ["ip", "ovs-vsctl", "ovsdb-server", "ovs-vswitchd", "lldpd", "lldpcli"]
    if topo.underlay != tp.Underlay.NONE:
        tools += ["vtysh", str(frr.FRR_DIR / "zebra"), "ethtool"]
    for tool in tools:
        if shutil.which(tool) is None:
            raise PermanentError(f"lab up needs {tool!r}, which is not installed")


def up(
    source: str | Path | None = None,
    *,
    name: str | None = None,
    underlay: str | None = None,
    root: str | Path | None = None,
    reuse: bool = False,
    wait: float = 45.0,
) -> LabState:
    """Build the lab described by ``source`` (None: built-in ``leaf-spine``); return its state.

    ``name`` and ``underlay`` override the file's. A lab of that name already up is
    refused, unless ``reuse``: then its state is returned as it is. ``up`` then waits up
    to ``wait`` seconds (0: not at all) for LLDP on every link and, with an underlay, for
    every BGP/OSPF session and BFD peer and for loopback-to-loopback pings.
    """
    topo = override(tp.load_topology(source)[0], name, underlay)
    if is_up(topo.name, root):
        if reuse and _state_file(topo.name, root).exists():
            return load_state(topo.name, root)
        raise ConfigError(
            f"lab {topo.name!r} is already up; run 'vmfabric lab down "
            f"{topo.name}' first or pass --reuse"
        )
    check_tools(topo)
    started = time.monotonic()
    state = _plan_state(topo, str(source or tp.BUILTIN[0]), root)
    try:
        _build(topo, state)
        if wait > 0:
            _wait_ready(topo, state, wait)
    except BaseException:
        down(topo.name, root)
        raise
    state.status = "up"
    state.up_seconds = round(time.monotonic() - started, 2)
    save_state(state)
    return state


def _wait_ready(topo: tp.Topology, state: LabState, timeout: float) -> None:
    started = time.monotonic()
    if topo.underlay != tp.Underlay.NONE:
        dirs = {name: item.frr_dir for name, item in state.nodes.items() if item.frr_dir}
        frr.wait_converged(topo, dirs, timeout)
        while (failed := loopbacks_reachable(state)) and time.monotonic() - started < timeout:
            time.sleep(0.5)
        if failed:
            raise PermanentError(f"loopbacks not reachable: {_join(failed)}")
        while (failed := vtep.unreachable(state)) and time.monotonic() - started < timeout:
            time.sleep(0.5)
        if failed:
            raise PermanentError(f"VTEPs not reachable over the underlay: {_join(failed)}")
    else:
        while (pending := rstp_pending(state)) and time.monotonic() - started < timeout:
            time.sleep(0.2)
        if pending:
            raise PermanentError(f"RSTP has not settled on {_join(pending)}")
    if not wait_lldp(state, max(timeout - (time.monotonic() - started), 1.0)):
        raise PermanentError(f"no LLDP neighbour on {_join(missing_lldp(state))}")


def rstp_pending(state: LabState) -> list[str]:
    """Fabric ports that RSTP has neither put forwarding nor chosen as alternate/backup."""
    pending: list[str] = []
    for item in state.nodes.values():
        for port in item.ports if item.kind == tp.Kind.SWITCH else []:
            if port.edge or port.address:
                continue
            status = _vsctl(item, "get", "port", port.name, "rstp_status")
            if (
                "=Forwarding" not in status
                and "=Alternate" not in status
                and "=Backup" not in status
            ):
                pending.append(f"{item.name}:{port.name}")
    return pending


def override(topo: tp.Topology, name: str | None, underlay: str | None) -> tp.Topology:
    """``topo`` with another lab name and/or underlay, validated again."""
    changes: dict[str, object] = {}
    if name:
        changes["name"] = name
    if underlay:
        try:
            changes["underlay"] = tp.Underlay(underlay)
        except ValueError:
            raise ConfigError(f"underlay {underlay!r} is not one of none, ospf, bgp") from None
    if not changes:
        return topo
    new = tp.Topology.model_validate({**topo.model_dump(), **changes})
    tp.validate(new, "--name/--underlay")
    return new


def _check_traversable(directory: Path) -> None:
    """lldpd and FRR drop privileges: every folder above the state dir must be searchable."""
    for folder in [directory, *directory.parents]:
        if folder.exists() and not folder.stat().st_mode & 0o001:
            raise ConfigError(
                f"{folder} is not searchable by other users (lldpd and FRR "
                "drop privileges); use another --state-dir",
                str(directory),
            )


def _build(topo: tp.Topology, state: LabState) -> None:
    directory = Path(state.state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    _check_traversable(directory)
    save_state(state)
    _build_mgmt(topo, state)
    with ThreadPoolExecutor(max_workers=4) as pool:
        built = list(pool.map(lambda item: _start_node(topo, state, item), topo.nodes))
    for item in built:
        state.nodes[item.name] = item
    save_state(state)
    for index in range(len(topo.links)):
        _build_link(topo, state, index)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda item: _finish_node(topo, state, item), topo.nodes))
    save_state(state)
    vtep.start_all(topo, state)
    save_state(state)


def _build_mgmt(topo: tp.Topology, state: LabState) -> None:
    ns = nsx.add_netns(state.mgmt_netns)
    nsx.run(
        ["ip", "link", "add", MGMT_BRIDGE, "address", tp.mgmt_bridge_mac(), "type", "bridge"], ns
    )
    nsx.add_address(MGMT_BRIDGE, str(tp.mgmt_gateway(topo)), ns)
    nsx.set_up(MGMT_BRIDGE, ns)


def _start_node(topo: tp.Topology, state: LabState, item: tp.Node) -> NodeState:
    ns = tp.netns_name(topo.name, item.name)
    ovs = OvsInstance(name=ns, parent_dir=state.state_dir).start()
    assert ovs.dir is not None
    is_switch = item.kind == tp.Kind.SWITCH
    bridge = SWITCH_BRIDGE if is_switch else HOST_BRIDGE
    ovs.add_bridge(bridge)
    ovs.vsctl("set", "bridge", bridge, f"other-config:hwaddr={tp.mac(topo, item.name)}")
    node_state = NodeState(
        name=item.name,
        kind=item.kind,
        netns=ns,
        ovs_dir=str(ovs.dir),
        ovsdb=ovs.db_url,
        bridge=bridge,
        edge_ports=tp.edge_ports(topo, item.name) if is_switch else [],
    )
    if is_switch:
        _setup_switch(topo, state, node_state)
    return node_state


def _setup_switch(topo: tp.Topology, state: LabState, node_state: NodeState) -> None:
    ns, name = node_state.netns, node_state.name
    mgmt_ip = tp.mgmt_address(topo, name)
    nsx.run(
        [
            "ip",
            "link",
            "add",
            MGMT_PORT,
            "address",
            tp.mac(topo, name, MGMT_PORT),
            "type",
            "veth",
            "peer",
            "name",
            name,
            "address",
            tp.mgmt_bridge_mac(tp.node_index(topo, name)),
            "netns",
            state.mgmt_netns,
        ],
        ns,
    )
    nsx.add_address(MGMT_PORT, str(mgmt_ip), ns)
    nsx.set_up(MGMT_PORT, ns)
    nsx.run(["ip", "link", "set", name, "master", MGMT_BRIDGE], state.mgmt_netns)
    nsx.set_up(name, state.mgmt_netns)
    loopback = tp.loopback(topo, name)
    nsx.add_address("lo", f"{loopback}/32", ns)
    node_state.mgmt_ip, node_state.loopback = str(mgmt_ip), str(loopback)
    node_state.asn = tp.asn(topo, name) if topo.underlay == tp.Underlay.BGP else None
    if topo.underlay == tp.Underlay.NONE:
        _enable_rstp(topo, node_state)
    else:
        nsx.run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], ns)


def _rstp_root(topo: tp.Topology) -> str | None:
    """The switch that should be RSTP root: the first one with no edge port (a spine)."""
    plain = [item.name for item in tp.switches(topo) if not tp.edge_ports(topo, item.name)]
    return plain[0] if plain else None


def _enable_rstp(topo: tp.Topology, node_state: NodeState) -> None:
    priority = 4096 if node_state.name == _rstp_root(topo) else 32768
    _vsctl(
        node_state,
        "set",
        "bridge",
        SWITCH_BRIDGE,
        "rstp_enable=true",
        f"other-config:rstp-priority={priority}",
    )


def _vsctl(node_state: NodeState, *args: str) -> str:
    assert node_state.ovsdb is not None
    done = nsx.run(["ovs-vsctl", f"--db={node_state.ovsdb}", "--timeout=10", *args])
    return done.stdout.strip()


def _build_link(topo: tp.Topology, state: LabState, index: int) -> None:
    a, b = tp.endpoints(topo.links[index])
    ns_a, ns_b = tp.netns_name(topo.name, a.node), tp.netns_name(topo.name, b.node)
    nsx.run(
        [
            "ip",
            "link",
            "add",
            a.port,
            "address",
            tp.mac(topo, a.node, a.port),
            "type",
            "veth",
            "peer",
            "name",
            b.port,
            "address",
            tp.mac(topo, b.node, b.port),
            "netns",
            ns_b,
        ],
        ns_a,
    )
    link = tp.link_name(topo, index)
    for here, there, ns in ((a, b, ns_a), (b, a, ns_b)):
        nsx.set_up(here.port, ns)
        port = PortState(
            name=here.port,
            mac=tp.mac(topo, here.node, here.port),
            peer=str(there),
            link=link,
            edge=here.port in state.nodes[here.node].edge_ports,
        )
        state.nodes[here.node].ports.append(port)


def _finish_node(topo: tp.Topology, state: LabState, item: tp.Node) -> None:
    node_state = state.nodes[item.name]
    if item.kind == tp.Kind.SWITCH:
        _attach_switch_ports(topo, node_state)
    else:
        _attach_host_ports(node_state)
    _start_lldpd(state, node_state)
    if item.kind == tp.Kind.SWITCH and topo.underlay != tp.Underlay.NONE:
        node_state.frr_dir = str(frr.start(topo, item.name, Path(state.state_dir)))


def _attach_switch_ports(topo: tp.Topology, node_state: NodeState) -> None:
    p2p = tp.p2p_addresses(topo)
    trunks = ",".join(str(v) for v in sorted(tp.edge_vlans(topo) or {CLOSED_VLAN}))
    for port in node_state.ports:
        if port.edge:
            _vsctl(
                node_state,
                "add-port",
                SWITCH_BRIDGE,
                port.name,
                "vlan_mode=trunk",
                f"trunks={trunks}",
                "--",
                "set",
                "port",
                port.name,
                "other-config:rstp-port-admin-edge=true",
            )
        elif topo.underlay == tp.Underlay.NONE:
            _vsctl(node_state, "add-port", SWITCH_BRIDGE, port.name, "vlan_mode=trunk")
        else:
            address = p2p[node_state.name, port.name]
            nsx.add_address(port.name, str(address), node_state.netns)
            nsx.set_up(port.name, node_state.netns, mtu=vtep.UNDERLAY_MTU)
            port.address = str(address)


def _attach_host_ports(node_state: NodeState) -> None:
    nics = [port.name for port in node_state.ports]
    if len(nics) == 1:
        _vsctl(node_state, "add-port", HOST_BRIDGE, nics[0])
    elif nics:
        _vsctl(
            node_state,
            "add-bond",
            HOST_BRIDGE,
            "uplink",
            *nics,
            "bond_mode=active-backup",
            f"other-config:bond-primary={nics[0]}",
        )


def _lldpd_config(node_state: NodeState) -> str:
    lines = [
        f"configure system hostname {node_state.name}",
        "configure lldp portidsubtype ifname",
        f"configure lldp tx-interval {LLDP_TX_INTERVAL}",
    ]
    if node_state.kind == tp.Kind.SWITCH:
        lines.append("configure system capabilities enabled bridge,router")
    return "\n".join(lines) + "\n"


def _start_lldpd(state: LabState, node_state: NodeState) -> None:
    if not node_state.ports:
        return
    directory = Path(state.state_dir) / "lldpd" / node_state.name
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "lldpd.conf"
    conf.write_text(_lldpd_config(node_state))
    sock = directory / "lldpd.sock"
    argv = [
        "lldpd",
        "-d",
        "-u",
        str(sock),
        "-O",
        str(conf),
        "-I",
        ",".join(port.name for port in node_state.ports),
    ]
    if node_state.mgmt_ip:
        argv += ["-m", node_state.mgmt_ip.split("/")[0]]
    spawn(argv, node_state.netns, directory / "lldpd.pid", directory / "lldpd.log")
    node_state.lldpd_socket = str(sock)


# ---- down ---------------------------------------------------------------------------------

_KILL_ORDER = ("frr", "lldpd", "ovs-vswitchd", "ovsdb-server")


def _kill_rank(pidfile: Path, directory: Path) -> int:
    text = str(pidfile.relative_to(directory))
    return next((i for i, word in enumerate(_KILL_ORDER) if word in text), len(_KILL_ORDER))


def _other_labs(name: str, root: str | Path | None) -> list[str]:
    base = state_root(root)
    others = [item.name for item in base.iterdir() if item.is_dir()] if base.exists() else []
    return [other for other in others if other != name]


def _own_netns(name: str, root: str | Path | None) -> list[str]:
    """Namespaces of lab ``name``: its prefix, minus those of a lab whose prefix extends it."""
    longer = [
        tp.prefix(other)
        for other in _other_labs(name, root)
        if tp.prefix(other).startswith(tp.prefix(name))
    ]
    return [
        ns
        for ns in nsx.list_netns(tp.prefix(name))
        if not any(ns.startswith(pre) for pre in longer)
    ]


def down(name: str, root: str | Path | None = None) -> list[str]:
    """Remove lab ``name``: daemons by PID file, namespaces by name, the state directory.

    Idempotent; also clears what a crashed ``up`` left. Returns what it removed.
    """
    directory = state_dir(name, root)
    removed: list[str] = []
    found = directory.rglob("*.pid") if directory.exists() else []
    pidfiles = sorted(found, key=lambda path: _kill_rank(path, directory))
    namespaces = _own_netns(name, root)
    inodes = netns_inodes(namespaces)
    for pidfile in pidfiles:
        pid = kill_pidfile(pidfile, str(directory), inodes)
        if pid is not None and pidfile.parent.parent.name == "frr":
            frr.remove_crash_dir(pidfile, pid)
        if pid is not None:
            removed.append(f"process {pid} ({pidfile.relative_to(directory)})")
    for ns in namespaces:
        nsx.delete_netns(ns)
        removed.append(f"namespace {ns}")
    removed += frr.remove_pathspaces(tp.prefix(name))
    if directory.exists():
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(f"directory {directory}")
    return removed


# ---- show ---------------------------------------------------------------------------------


def neighbors(state: LabState, node: str) -> dict[str, tuple[str, str]]:
    """What node ``node`` hears over LLDP: local port -> (system name, port id)."""
    node_state = state.node(node)
    if node_state.lldpd_socket is None:
        return {}
    heard = read_neighbors(netns=node_state.netns, socket=node_state.lldpd_socket)
    return {port: (item.system_name, item.port_id) for port, item in sorted(heard.items())}


def wait_lldp(state: LabState, timeout: float = 20.0) -> bool:
    """Wait until every link end hears its peer over LLDP; True if it happened in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not missing_lldp(state):
            return True
        time.sleep(0.5)
    return False


def missing_lldp(state: LabState) -> list[str]:
    """Link ends that do not (yet) hear the neighbour the topology says they should."""
    missing: list[str] = []
    for node_state in state.nodes.values():
        try:
            heard = neighbors(state, node_state.name)
        except VmfabricError:
            heard = {}
        for port in node_state.ports:
            if heard.get(port.name) != tuple(port.peer.split(":", 1)):
                missing.append(f"{node_state.name}:{port.name}")
    return missing


# ---- VMs ----------------------------------------------------------------------------------


def _vm_port(vm: str) -> str:
    return nsx.check_link_name(f"vm-{vm}")


def _check_vm(state: LabState, name: str, host: str, vlan: int) -> None:
    if len(f"vm-{name}") > tp.IFNAMSIZ or not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"VM name {name!r} must be 1-12 of A-Z a-z 0-9 _ -")
    if state.node(host).kind != tp.Kind.HOST:
        raise ConfigError(f"{host!r} is not a host of lab {state.name}")
    try:
        check_vlan(vlan)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _plug_vm(state: LabState, vm: VmState) -> None:
    host = state.node(vm.host)
    nsx.run(
        [
            "ip",
            "link",
            "add",
            vm.port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "address",
            vm.mac,
            "netns",
            vm.netns,
        ],
        host.netns,
    )
    nsx.add_address("eth0", vm.ip, vm.netns)
    nsx.set_up("eth0", vm.netns)
    if shutil.which("ethtool"):  # TCP over OVS userspace tunnels needs real checksums
        nsx.run(["ethtool", "-K", "eth0", "tx", "off"], vm.netns)
    nsx.set_up(vm.port, host.netns)
    _vsctl(host, "add-port", HOST_BRIDGE, vm.port, f"tag={vm.vlan}")


def _unplug_vm(state: LabState, vm: VmState) -> None:
    host = state.node(vm.host)
    _vsctl(host, "--if-exists", "del-port", HOST_BRIDGE, vm.port)
    nsx.delete_link(vm.port, host.netns)


def add_vm(
    lab: str | LabState,
    name: str,
    host: str,
    vlan: int,
    ip: str,
    *,
    root: str | Path | None = None,
) -> VmState:
    """Start VM ``name`` on ``host`` in ``vlan`` with address ``ip`` (CIDR, e.g. 10.1.0.5/24)."""
    state = _resolve(lab, root)
    _check_vm(state, name, host, vlan)
    if name in state.vms:
        raise ConfigError(f"VM {name!r} already exists in lab {state.name}")
    try:
        address = ipaddress.IPv4Interface(ip)
    except ValueError:
        raise ConfigError(f"VM address {ip!r} is not an IPv4 CIDR") from None
    vm = VmState(
        name=name,
        host=host,
        vlan=vlan,
        ip=str(address),
        mac=tp.vm_mac(name),
        netns=tp.vm_netns(state.name, name),
        port=_vm_port(name),
    )
    state.vms[name] = vm
    save_state(state)
    nsx.add_netns(vm.netns)
    _plug_vm(state, vm)
    return vm


def move_vm(
    lab: str | LabState,
    name: str,
    host: str,
    vlan: int | None = None,
    *,
    root: str | Path | None = None,
) -> VmState:
    """Move VM ``name`` to ``host`` (optionally into another VLAN); MAC and IP stay."""
    state = _resolve(lab, root)
    vm = _get_vm(state, name)
    new_vlan = vm.vlan if vlan is None else vlan
    _check_vm(state, name, host, new_vlan)
    _unplug_vm(state, vm)
    vm.host, vm.vlan = host, new_vlan
    save_state(state)
    _plug_vm(state, vm)
    return vm


def remove_vm(lab: str | LabState, name: str, *, root: str | Path | None = None) -> None:
    """Stop VM ``name``: its port, its namespace and its state entry."""
    state = _resolve(lab, root)
    vm = _get_vm(state, name)
    _unplug_vm(state, vm)
    nsx.delete_netns(vm.netns)
    del state.vms[name]
    save_state(state)


def _get_vm(state: LabState, name: str) -> VmState:
    if name not in state.vms:
        raise ConfigError(f"lab {state.name} has no VM {name!r}")
    return state.vms[name]


def _join(items: Iterable[str]) -> str:
    return ", ".join(items)


def _ping_loopback(src: NodeState, dst: NodeState) -> bool:
    argv = ["ping", "-n", "-q", "-c", "1", "-W", "1", "-I", str(src.loopback), str(dst.loopback)]
    return nsx.run(argv, src.netns, check=False).returncode == 0


def loopbacks_reachable(state: LabState) -> list[str]:
    """Switch pairs whose loopbacks do not answer a ping sourced from a loopback."""
    switches = [item for item in state.nodes.values() if item.loopback]
    pairs = [(src, dst) for src in switches for dst in switches]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda pair: _ping_loopback(*pair), pairs))
    return [
        f"{src.name}->{dst.name}" for (src, dst), ok in zip(pairs, answers, strict=True) if not ok
    ]


# ---- description for `lab show` -----------------------------------------------------------


def lab_name(arg: str | None) -> str:
    """The lab name meant by a CLI argument: a topology file, a built-in name or a lab name."""
    if arg is None or arg in tp.BUILTIN or Path(arg).is_file():
        return tp.load_topology(arg)[0].name
    return arg


def _describe_node(state: LabState, node_state: NodeState) -> dict[str, object]:
    try:
        heard = neighbors(state, node_state.name)
    except VmfabricError:
        heard = {}
    ports = [
        {**port.model_dump(), "lldp": ":".join(heard[port.name]) if port.name in heard else None}
        for port in node_state.ports
    ]
    return {
        **node_state.model_dump(exclude={"ports"}),
        "ports": ports,
        "up": os.path.exists(f"/run/netns/{node_state.netns}"),
    }


def describe(state: LabState) -> dict[str, object]:
    """Everything ``lab show`` prints: nodes with ports and LLDP neighbours, links, VMs, PIDs."""
    return {
        "name": state.name,
        "status": state.status,
        "underlay": str(state.underlay),
        "state_dir": state.state_dir,
        "up_seconds": state.up_seconds,
        "nodes": [_describe_node(state, item) for item in state.nodes.values()],
        "links": [link.model_dump() for link in state.links],
        "vms": [vm.model_dump() for vm in state.vms.values()],
        "processes": lab_pids(Path(state.state_dir), state.namespaces),
    }

"""The overlay lab: leaves are OVS userspace VTEPs over a routed underlay (BGP and OSPF).

Real frames: VMs of one VLAN behind three different leaves ping and talk TCP over VXLAN,
full-size frames pass (MTU 1600 underlay), and a broadcast reaches each listed VTEP once
(split horizon: three leaves do not loop) and no VTEP left out of the flood list. Here the
flood lists are tunnel ports written by hand; ``test_vxlan_flood.py`` has vmfabric write
them. Each lab is removed by PID file and namespace name, also when a test fails.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmfabric.lab import builder, probe, vtep
from vmfabric.lab import netns as nsx
from vmfabric.lab import topology as tp
from vmfabric.lab.builder import LabState
from vmfabric.lab.ovs import ovs_installed

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(240)]
VLAN, VNI = 110, 10110


def _need() -> None:
    if not ovs_installed():
        pytest.skip("Open vSwitch is not installed")
    tools = ("lldpd", "vtysh", "ethtool", "nft")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


@pytest.fixture(scope="module", params=["bgp", "ospf"])
def lab(request: pytest.FixtureRequest) -> Iterator[LabState]:
    """The built-in overlay lab (3 leaves, 2 spines) under a random name."""
    _need()
    root = Path(tempfile.mkdtemp(prefix="vfl-ovl-", dir="/tmp"))
    root.chmod(0o755)
    name = f"o{uuid.uuid4().hex[:5]}"
    try:
        state = builder.up("overlay", name=name, underlay=request.param, root=root, wait=90)
        pids = builder.lab_pids(Path(state.state_dir), state.namespaces)
        yield state
        builder.down(name, root)
        assert nsx.list_netns(tp.prefix(name)) == [], "a namespace was left behind"
        assert not [pid for pid in pids.values() if builder._alive(pid)], "a daemon survived"
    finally:
        builder.down(name, root)
        shutil.rmtree(root, ignore_errors=True)


def _vsctl(db: str | None, *args: str) -> str:
    assert db is not None
    return nsx.run(["ovs-vsctl", f"--db={db}", "--timeout=10", *args]).stdout.strip()


def _tunnel(state: LabState, leaf: str, remote: str) -> None:
    """A flood-list entry by hand: one protected tunnel port, VLAN 110 <-> VNI 10110."""
    here, there = state.nodes[leaf], state.nodes[remote]
    port = f"vx{VNI}-{there.vtep_address}"
    _vsctl(
        here.vtep_ovsdb,
        "--may-exist", "add-port", vtep.INT_BRIDGE, port,
        "--", "set", "port", port, f"tag={VLAN}", "protected=true",
        "--", "set", "interface", port, "type=vxlan", f"options:key={VNI}",
        f"options:remote_ip={there.vtep_address}", f"options:local_ip={here.vtep_address}",
    )  # fmt: skip


@pytest.fixture
def vms(lab: LabState) -> Iterator[LabState]:
    """VMs a, b, c in VLAN 110 behind leaf1, leaf2 and leaf3; removed afterwards."""
    for leaf in ("leaf1", "leaf2", "leaf3"):
        builder._vsctl(lab.nodes[leaf], "set", "port", "eth1", f"trunks={VLAN}")
    placement = {"a": "hv1", "b": "hv2", "c": "hv3"}
    try:
        for i, (vm, host) in enumerate(placement.items(), start=1):
            builder.add_vm(lab, vm, host, VLAN, f"10.110.0.{i}/24")
        yield lab
    finally:
        for vm in list(lab.vms):
            builder.remove_vm(lab, vm)
        for leaf in ("leaf1", "leaf2", "leaf3"):
            for port in _vsctl(lab.nodes[leaf].vtep_ovsdb, "list-ports", vtep.INT_BRIDGE).split():
                if port.startswith("vx"):
                    _vsctl(lab.nodes[leaf].vtep_ovsdb, "del-port", vtep.INT_BRIDGE, port)


def test_every_leaf_is_a_vtep_reachable_over_the_routed_underlay(lab: LabState) -> None:
    leaves = [node for node in lab.nodes.values() if node.vtep_address]
    assert [node.name for node in leaves] == ["leaf1", "leaf2", "leaf3"]
    assert vtep.unreachable(lab) == []
    for spine in ("spine4", "spine5"):  # the spines route; no bridge carries VM frames there
        assert builder._vsctl(lab.nodes[spine], "list-ports", "br0") == ""
    route = nsx.run(["ip", "route", "get", "10.253.1.5"], lab.nodes["leaf1"].netns).stdout
    assert "10.254.1." in route, f"leaf3's VTEP is reached through a spine: {route}"


def test_vms_behind_three_leaves_talk_over_vxlan(vms: LabState) -> None:
    state = vms
    assert not probe.ping(state, "a", "10.110.0.2", within=2), "no flood list: no path yet"
    for leaf in ("leaf1", "leaf2", "leaf3"):
        for remote in ("leaf1", "leaf2", "leaf3"):
            if remote != leaf:
                _tunnel(state, leaf, remote)
    assert probe.ping(state, "a", "10.110.0.2")
    assert probe.ping(state, "a", "10.110.0.3")
    full = ["ping", "-n", "-q", "-c", "1", "-W", "2", "-M", "do", "-s", "1472", "10.110.0.3"]
    assert nsx.run(full, state.vms["a"].netns, check=False).returncode == 0, "1500-byte frames"
    assert probe.tcp_transfer(state, "a", "c") == 1_000_000

    counter = probe.Broadcasts(state, ["a", "b", "c"])
    assert counter.send("a", expect={"b", "c"}) == {"a": 0, "b": 1, "c": 1}, "one copy each"
    assert counter.send("c", expect={"a", "b"}) == {"a": 1, "b": 1, "c": 0}

    db = state.nodes["leaf1"].vtep_ovsdb
    _vsctl(db, "del-port", vtep.INT_BRIDGE, f"vx{VNI}-{state.nodes['leaf3'].vtep_address}")
    assert counter.send("a", expect={"b"}) == {"a": 0, "b": 1, "c": 0}, "leaf3 left out"

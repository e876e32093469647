"""The namespace lab for real: OVS bridges, lldpd, FRR, veths; up, traffic, show, down.

Each test builds a small lab under a random name in its own state directory and tears it
down in a ``finally`` (by PID file and namespace name), also when it fails.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vmfabric.core.errors import ConfigError
from vmfabric.lab import builder, frr, graph
from vmfabric.lab import netns as nsx
from vmfabric.lab import topology as tp
from vmfabric.lab.ovs import ovs_installed

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SQUARE = """
name: {name}
underlay: {underlay}
nodes:
  - {{name: leaf1, kind: switch}}
  - {{name: leaf2, kind: switch}}
  - {{name: spine1, kind: switch}}
  - {{name: spine2, kind: switch}}
{hosts}
links:
  - {{name: net1, endpoints: ["leaf1:eth51", "spine1:eth1"]}}
  - {{name: net2, endpoints: ["leaf1:eth52", "spine2:eth1"]}}
  - {{name: net3, endpoints: ["leaf2:eth51", "spine1:eth2"]}}
  - {{name: net4, endpoints: ["leaf2:eth52", "spine2:eth2"]}}
{host_links}
"""
HOSTS = "  - {name: hv1, kind: host}\n  - {name: hv2, kind: host}\n"
HOST_LINKS = """  - {name: hv1a, endpoints: ["leaf1:eth1", "hv1:vmnic0"]}
  - {name: hv2a, endpoints: ["leaf1:eth2", "hv2:vmnic0"]}
  - {name: hv2b, endpoints: ["leaf2:eth2", "hv2:vmnic1"]}
"""


def _need(*tools: str) -> None:
    if not ovs_installed():
        pytest.skip("Open vSwitch is not installed")
    missing = [tool for tool in ("lldpd", "lldpcli", *tools) if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


def _write(tmp_path: Path, underlay: str = "none", hosts: bool = True) -> tuple[Path, str]:
    name = f"t{uuid.uuid4().hex[:5]}"
    text = SQUARE.format(
        name=name,
        underlay=underlay,
        hosts=HOSTS if hosts else "",
        host_links=HOST_LINKS if hosts else "",
    )
    path = tmp_path / "lab.yaml"
    path.write_text(text)
    return path, name


@pytest.fixture
def state_root() -> Iterator[Path]:
    """A state root other users can search (pytest's tmp_path is 0700; lldpd/FRR drop root)."""
    root = Path(tempfile.mkdtemp(prefix="vfl-test-", dir="/tmp"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        for lab in list(root.iterdir()):
            builder.down(lab.name, root)
        shutil.rmtree(root, ignore_errors=True)


def _nothing_left(name: str, root: Path, pids: dict[str, int]) -> None:
    assert nsx.list_netns(tp.prefix(name)) == []
    assert not [pid for pid in pids.values() if builder._alive(pid)]
    assert not builder.state_dir(name, root).exists()


def _ping(state: builder.LabState, vm: str, address: str, within: float = 3.0) -> bool:
    """True once ``address`` answers from VM ``vm`` (a fresh port may lose the first ARP)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if nsx.ping(state.vms[vm].netns, address, count=1, wait=1):
            return True
    return False


def _open_vlan(state: builder.LabState, switch: str, port: str, vlan: int) -> None:
    builder._vsctl(state.nodes[switch], "set", "port", port, f"trunks={vlan}")


def test_lab_up_lldp_traffic_and_down_leaves_nothing(tmp_path: Path, state_root: Path) -> None:
    _need()
    path, name = _write(tmp_path)
    state = builder.up(path, root=state_root)
    pids = builder.lab_pids(Path(state.state_dir), state.namespaces)
    assert len(pids) == 6 * 2 + 6  # ovsdb-server + ovs-vswitchd per node, lldpd per node
    nodes = ("mgmt", "leaf1", "leaf2", "spine1", "spine2", "hv1", "hv2")
    assert set(nsx.list_netns(tp.prefix(name))) == {tp.netns_name(name, n) for n in nodes}
    assert builder.neighbors(state, "hv2") == {
        "vmnic0": ("leaf1", "eth2"),
        "vmnic1": ("leaf2", "eth2"),
    }
    assert builder.neighbors(state, "leaf1")["eth1"] == ("hv1", "vmnic0")
    assert builder.load_state(name, state_root).nodes["leaf1"].edge_ports == ["eth1", "eth2"]
    assert nsx.ping(state.nodes["leaf1"].netns, "172.31.255.13")  # mgmt: leaf1 -> spine1

    builder.add_vm(state, "a", "hv1", 10, "10.10.0.1/24")
    builder.add_vm(state, "b", "hv2", 10, "10.10.0.2/24")
    assert not _ping(state, "a", "10.10.0.2")  # edge ports start closed
    _open_vlan(state, "leaf1", "eth1", 10)
    _open_vlan(state, "leaf1", "eth2", 10)
    assert _ping(state, "a", "10.10.0.2", within=10)
    builder.move_vm(state, "b", "hv2", vlan=20)
    assert not _ping(state, "a", "10.10.0.2")  # another VLAN now
    _open_vlan(state, "leaf2", "eth2", 10)
    builder.move_vm(state, "b", "hv2", vlan=10)
    nsx.run(["ip", "link", "set", "vmnic0", "down"], state.nodes["hv2"].netns)  # bond fails over
    assert _ping(state, "a", "10.10.0.2", within=10)  # leaf1 -> spine -> leaf2: the square
    builder.remove_vm(state, "b")
    assert tp.vm_netns(name, "b") not in nsx.list_netns(tp.prefix(name))

    builder.down(name, state_root)
    _nothing_left(name, state_root, pids)
    assert builder.down(name, state_root) == []


def test_lab_up_refuses_a_running_lab_unless_reuse(tmp_path: Path, state_root: Path) -> None:
    _need()
    path, _name = _write(tmp_path, hosts=False)
    first = builder.up(path, root=state_root, wait=0)
    with pytest.raises(ConfigError, match="already up"):
        builder.up(path, root=state_root)
    assert builder.up(path, root=state_root, reuse=True).nodes == first.nodes


def test_lab_down_clears_what_a_crashed_run_left(tmp_path: Path, state_root: Path) -> None:
    _need()
    path, name = _write(tmp_path, hosts=False)
    state = builder.up(path, root=state_root, wait=0)
    pids = builder.lab_pids(Path(state.state_dir), state.namespaces)
    (Path(state.state_dir) / "state.json").unlink()  # the crash: no state file
    nsx.add_netns(tp.netns_name(name, "vm-stray"))
    removed = builder.down(name, state_root)
    assert any(item.startswith("process") for item in removed)
    _nothing_left(name, state_root, pids)


def test_bad_topology_creates_nothing(tmp_path: Path, state_root: Path) -> None:
    path, name = _write(tmp_path)
    path.write_text(path.read_text().replace("hv2:vmnic1", "hv9:vmnic1"))
    with pytest.raises(ConfigError, match=r"links\[6\]\.endpoints\[1\]"):
        builder.up(path, root=state_root)
    assert nsx.list_netns(tp.prefix(name)) == []
    assert not builder.state_dir(name, state_root).exists()


@pytest.mark.parametrize("underlay", ["bgp", "ospf"])
def test_underlay_sessions_bfd_and_loopbacks(
    tmp_path: Path, state_root: Path, underlay: str
) -> None:
    _need("vtysh", str(frr.FRR_DIR / "zebra"))
    path, name = _write(tmp_path, underlay=underlay, hosts=False)
    state = builder.up(path, root=state_root, wait=50)
    for switch in ("leaf1", "leaf2", "spine1", "spine2"):
        directory = state.nodes[switch].frr_dir
        assert directory is not None
        if underlay == "bgp":
            sessions = frr.bgp_sessions(name, switch, directory)
            assert set(sessions.values()) == {"Established"} and len(sessions) == 2
        else:
            adjacencies = frr.ospf_neighbors(name, switch, directory)
            assert len(adjacencies) == 2
            assert all(value.startswith("Full") for value in adjacencies.values())
        assert set(frr.bfd_peers(name, switch, directory).values()) == {"up"}
    assert builder.loopbacks_reachable(state) == []
    pids = builder.lab_pids(Path(state.state_dir), state.namespaces)
    assert len(pids) == 4 * (2 + 1 + 3)  # OVS pair, lldpd, zebra+bfdd+routing per switch
    builder.down(name, state_root)
    _nothing_left(name, state_root, pids)


def test_lab_show_prints_neighbours_and_draws_every_link(tmp_path: Path, state_root: Path) -> None:
    _need("dot")
    from vmfabric.cli.lab import app

    path, name = _write(tmp_path)
    runner = CliRunner()
    done = runner.invoke(app, ["up", str(path), "--state-dir", str(state_root)])
    assert done.exit_code == 0, done.output
    done = runner.invoke(app, ["show", name, "--state-dir", str(state_root)])
    assert done.exit_code == 0, done.output
    assert "lldp: leaf2:eth2" in done.output  # hv2's vmnic1 hears leaf2's eth2
    svg = Path(state_root) / name / "topology.svg"
    assert f"picture: {svg}" in done.output
    assert (Path(state_root) / name / "topology.png").stat().st_size > 0
    tree = ET.parse(svg)  # noqa: S314 - the SVG our own dot run just wrote
    texts = {el.text for el in tree.iter() if el.tag.endswith("text")}
    topo = tp.load_topology(path)[0]
    for index, link in enumerate(topo.links):
        assert tp.link_name(topo, index) in texts
        assert {end.port for end in tp.endpoints(link)} <= texts
    titles = [el.text for el in tree.iter() if el.tag.endswith("title")]
    assert sum("--" in (title or "") for title in titles) == len(topo.links)
    done = runner.invoke(app, ["down", name, "--state-dir", str(state_root)])
    assert done.exit_code == 0 and nsx.list_netns(tp.prefix(name)) == []


def test_dot_source_matches_state(tmp_path: Path) -> None:
    path, _name = _write(tmp_path)
    topo = tp.load_topology(path)[0]
    assert graph.dot_source(topo).count(" -- ") == len(topo.links)

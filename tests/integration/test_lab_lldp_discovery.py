"""Issue "KVM hypervisors", done-when: in the lab, with no static links in the config,
uplinks are discovered through real LLDP (lldpd on both ends of every link) and
`show host` shows them with source lldp; a domain started on the dual-homed hypervisor
gets its VLAN on both leaves' edge ports.

The hypervisors' inventory comes from the libvirt test driver (one node file per lab
hypervisor); their neighbours come from the lldpd running in each hypervisor's namespace,
read through the session's ``lldp_command``.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.controller import running_controller, trunks, wait_for
from vmfabric.config import LibvirtSession, parse_config
from vmfabric.lab import builder
from vmfabric.lab import topology as tp
from vmfabric.lab.builder import LabState
from vmfabric.sources.libvirt import LibvirtSource

pytestmark = pytest.mark.integration
HOSTS = ("hv1", "hv2", "hv3", "hv4", "hv5")
NODE = """<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads>
<active>2</active><mhz>2000</mhz><model>i686</model></cpu><memory>2097152</memory></node>"""


@pytest.fixture
def lab() -> Iterator[LabState]:
    root = Path(tempfile.mkdtemp(prefix="vfl-test-", dir="/tmp"))
    root.chmod(0o755)
    name = "k" + secrets.token_hex(2)
    try:
        yield builder.up(None, name=name, underlay="none", root=root)
    finally:
        builder.down(name, root)
        shutil.rmtree(root, ignore_errors=True)


def switch_entry(state: LabState, name: str) -> dict[str, object]:
    node = state.node(name)
    return {"name": name, "driver": "ovs", "ovsdb": node.ovsdb, "bridge": node.bridge,
            "edge_ports": node.edge_ports}  # fmt: skip


def test_lldp_discovered_uplinks_carry_a_kvm_vm_vlan(lab: LabState, tmp_path: Path) -> None:
    uris = {}
    for host in HOSTS:
        (tmp_path / f"{host}.xml").write_text(NODE)
        uris[host] = f"test://{tmp_path}/{host}.xml"
    netns = tp.prefix(lab.name)
    lldp = f"ip netns exec {netns}{{host}} lldpcli -u {lab.state_dir}/lldpd/{{host}}/lldpd.sock"
    config = parse_config(
        {
            "store": f"sqlite:///{tmp_path}/vf.db",
            "engine": {"prune_delay": "1s", "coalesce": "10ms"},
            "sessions": [{"name": "kvm", "kind": "libvirt", "uris": uris,
                          "lldp_command": f"{lldp} -f json show neighbors"}],
            "switches": [switch_entry(lab, "leaf1"), switch_entry(lab, "leaf2")],
        },  # no links: discovery only
        base_dir=tmp_path,
    )  # fmt: skip
    session = config.sessions[0]
    assert isinstance(session, LibvirtSession)
    source = LibvirtSource(session, tmp_path)
    with running_controller(config, sources=[source]) as ctl:
        wait_for(
            lambda: any(s["in_sync"] for s in ctl.store.show_sessions("kvm")), 20, "in sync"
        )  # the store is what `show host` reads
        hosts = {h["name"]: h for h in ctl.store.show_hosts()}
        got = {
            name: sorted((u["nic"], u["switch"], u["port"], u["source"]) for u in h["uplinks"])
            for name, h in hosts.items()
        }
        assert got["hv1"] == [("vmnic0", "leaf1", "eth1", "lldp")]
        assert got["hv3"] == [("vmnic0", "leaf2", "eth1", "lldp")]
        assert got["hv5"] == [
            ("vmnic0", "leaf1", "eth3", "lldp"),
            ("vmnic1", "leaf2", "eth3", "lldp"),
        ]
        nic = (
            "<interface type='bridge'><source bridge='vs0'/><virtualport type='openvswitch'/>"
            "<vlan><tag id='110'/></vlan></interface>"
        )
        dom = source.connection("hv5").defineXML(
            f"<domain type='test'><name>web-05</name><uuid>{uuid.uuid4()}</uuid>"
            f"<memory>1024</memory><os><type>hvm</type></os><devices>{nic}</devices></domain>"
        )
        dom.create()
        leaf1, leaf2 = str(lab.node("leaf1").ovsdb), str(lab.node("leaf2").ovsdb)
        wait_for(lambda: 110 in trunks(leaf1, "eth3") and 110 in trunks(leaf2, "eth3"), 10,
                 "VLAN 110 on both of the dual-homed hv5's leaf ports")  # fmt: skip
        assert 110 not in trunks(leaf1, "eth1"), "hv1 runs no VM in VLAN 110"

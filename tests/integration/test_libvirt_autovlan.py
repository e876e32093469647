"""Issue "KVM hypervisors", done-when: libvirt test-driver domains move VLANs on a real
Open vSwitch edge port through events alone, and one controller serves a vCenter session
(vcsim) and a libvirt session on the same switch.

The libvirt test driver keeps its state inside the connection, so domains are driven
through the session's own connections (``LibvirtSource.connection``).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from support.controller import running_controller, trunks, wait_for
from support.vcsim_fixtures import VcsimFactory
from vmfabric.config import Config, LibvirtSession, VcenterSession, parse_config
from vmfabric.lab.ovs import OvsInstance
from vmfabric.lab.vcsim import VcsimControl, write_hints
from vmfabric.sources.base import Source
from vmfabric.sources.libvirt import LibvirtSource
from vmfabric.sources.vcenter import VcenterSource

pytestmark = pytest.mark.integration
PORTS = ("Et1", "Et2")
NODE = """<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads>
<active>2</active><mhz>2000</mhz><model>i686</model></cpu><memory>2097152</memory></node>"""


def domain_xml(name: str, uid: str, vlan: int) -> str:
    nic = (
        "<interface type='bridge'><source bridge='br-int'/><virtualport type='openvswitch'/>"
        f"<vlan><tag id='{vlan}'/></vlan></interface>"
    )
    return (
        f"<domain type='test'><name>{name}</name><uuid>{uid}</uuid><memory>1024</memory>"
        f"<os><type>hvm</type></os><devices>{nic}</devices></domain>"
    )


@pytest.fixture
def leaf1(ovs: OvsInstance) -> OvsInstance:
    ovs.add_bridge("leaf1")
    for port in PORTS:
        ovs.add_edge_port("leaf1", port, trunks={4095})
    return ovs


def kvm_session(tmp: Path) -> dict[str, Any]:
    uris = {}
    for host in ("kvm1", "kvm2"):
        (tmp / f"{host}.xml").write_text(NODE)
        uris[host] = f"test://{tmp}/{host}.xml"
    return {"name": "kvm", "kind": "libvirt", "uris": uris}


def make_config(tmp: Path, ovs: OvsInstance, sessions: list[dict[str, Any]]) -> Config:
    return parse_config(
        {
            "store": f"sqlite:///{tmp}/vf.db",
            "engine": {"prune_delay": "1500ms", "coalesce": "10ms"},
            "sessions": sessions,
            "switches": [
                {
                    "name": "leaf1",
                    "driver": "ovs",
                    "ovsdb": ovs.db_url,
                    "bridge": "leaf1",
                    "edge_ports": list(PORTS),
                }
            ],
            "links": [
                {"host": "kvm1", "nic": "eth0", "switch": "leaf1", "port": "Et1"},
                {"host": "kvm2", "nic": "eth0", "switch": "leaf1", "port": "Et2"},
            ],
        },
        base_dir=tmp,
    )


def libvirt_source(config: Config) -> LibvirtSource:
    session = next(s for s in config.sessions if isinstance(s, LibvirtSession))
    return LibvirtSource(session, config.base_dir)


def test_domain_start_migrate_stop_move_vlans_through_events(
    leaf1: OvsInstance, tmp_path: Path
) -> None:
    config = make_config(tmp_path, leaf1, [kvm_session(tmp_path)])
    source = libvirt_source(config)
    uid = str(uuid.uuid4())
    with running_controller(config, sources=[source]) as ctl:
        wait_for(lambda: ctl.inventory.in_sync("kvm"), 10, "the libvirt session in sync")
        kvm1, kvm2 = source.connection("kvm1"), source.connection("kvm2")
        dom = kvm1.defineXML(domain_xml("web-01", uid, 110))
        dom.create()
        wait_for(lambda: 110 in trunks(leaf1, "Et1"), 5, "VLAN 110 on Et1 after start")
        # Live migration: the domain starts on kvm2, then leaves kvm1.
        moved = kvm2.defineXML(domain_xml("web-01", uid, 110))
        moved.create()
        dom.destroy()
        dom.undefine()
        wait_for(lambda: 110 in trunks(leaf1, "Et2"), 5, "VLAN 110 on Et2 after migration")
        assert 110 in trunks(leaf1, "Et1"), "the old port is held for the prune delay"
        wait_for(lambda: trunks(leaf1, "Et1") == {4095}, 6, "Et1 pruned after the delay")
        vm = ctl.store.show_vms("web-01")[0]
        assert vm["host"] == "kvm2" and vm["session"] == "kvm"
        assert vm["networks"] == [{"portgroup": "vlan110", "vlan": 110}]
        moved.destroy()
        wait_for(lambda: trunks(leaf1, "Et2") == {4095}, 6, "Et2 pruned after stop")


def test_one_controller_serves_vcenter_and_libvirt_on_the_same_switch(
    leaf1: OvsInstance, tmp_path: Path, vcsim_factory: VcsimFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    hints = tmp_path / "hints.json"
    lldp = {"chassisId": "52:54:00:00:00:01", "portId": "Et2", "systemName": "leaf1"}
    write_hints(hints, {"hv1": {"vmnic1": {"lldp": lldp}}})  # vmnic1 carries the DVS
    sim = vcsim_factory(host_names=("hv1",), vms=0, hints_file=hints)
    control = VcsimControl.of(sim)
    control.add_dvportgroup("web", vlan=110)
    monkeypatch.setenv("VF_PW", sim.password)
    vc = {"name": "vc", "kind": "vcenter", "url": sim.url, "username": sim.username,
          "password": "env:VF_PW"}  # fmt: skip
    config = make_config(tmp_path, leaf1, [vc, kvm_session(tmp_path)])
    kvm = libvirt_source(config)
    vc_cfg = next(s for s in config.sessions if isinstance(s, VcenterSession))
    sources: list[Source] = [VcenterSource(vc_cfg, config.base_dir), kvm]
    with running_controller(config, sources=sources) as ctl:
        wait_for(lambda: ctl.inventory.in_sync("kvm") and ctl.inventory.in_sync("vc"), 20, "sync")
        control.create_vm("web-vc", "hv1", "web")  # VLAN 110 on Et2, from vCenter
        dom = kvm.connection("kvm2").defineXML(domain_xml("web-kvm", str(uuid.uuid4()), 110))
        dom.create()  # VLAN 110 on Et2 too, from libvirt
        other = kvm.connection("kvm1").defineXML(domain_xml("db-kvm", str(uuid.uuid4()), 120))
        other.create()  # VLAN 120 on Et1
        wait_for(lambda: {110} <= trunks(leaf1, "Et2") and 120 in trunks(leaf1, "Et1"), 10,
                 "both sessions' VLANs")  # fmt: skip

        def users() -> set[str]:
            return {s for s, _ in ctl.autovlan.users("leaf1", "Et2", 110, ctl.inventory)}

        wait_for(lambda: users() == {"vc", "kvm"}, 5, "both sessions needing 110 on Et2")
        control.power_off("web-vc")  # one of the two VMs needing 110 on Et2 goes
        time.sleep(config.engine.prune_delay + 1.0)
        assert 110 in trunks(leaf1, "Et2"), "the libvirt VM still needs VLAN 110 on Et2"
        dom.destroy()  # now nobody does
        wait_for(lambda: 110 not in trunks(leaf1, "Et2"), 6, "VLAN 110 pruned from Et2")
        assert 120 in trunks(leaf1, "Et1")

        def counts() -> dict[str, int]:
            return {s["name"]: s["vms"] for s in ctl.store.show_sessions()}

        # the store's copy of the inventory follows the switches' plans (the writer's lanes)
        wait_for(lambda: counts() == {"vc": 1, "kvm": 2}, 30, "show session's VM counts")
    control.close()

"""ovs-dfw on the lab's hypervisor vSwitches, with real TCP between VM namespaces: the
policy holds across hosts and on one host, after a vMotion, and after a tag change; a
rule costs N + M flows (conjunctive matches), installed only where its VMs run."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from support.groups_net import kill, listen, probe
from vmfabric.config import parse_config
from vmfabric.core.model import Power, Snapshot, Vm, VmUpsert
from vmfabric.inventory.index import Inventory
from vmfabric.lab import builder
from vmfabric.lab import netns as nsx
from vmfabric.lab.builder import LabState
from vmfabric.lab.ovs import ovs_installed
from vmfabric.runtime.groups import GroupTarget, build, step

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not ovs_installed(), reason="Open vSwitch is not installed"),
]

TOPOLOGY = """
name: {name}
underlay: none
mgmt: {{subnet: 172.30.254.0/24}}
edge_vlans: "10"
nodes:
  - {{name: leaf1, kind: switch}}
  - {{name: hv1, kind: host}}
  - {{name: hv2, kind: host}}
links:
  - {{name: hv1a, endpoints: ["leaf1:eth1", "hv1:vmnic0"]}}
  - {{name: hv2a, endpoints: ["leaf1:eth2", "hv2:vmnic0"]}}
"""
CONFIG = """
sessions: [{{name: s1, kind: static, path: x.yaml}}]
groups:
  - {{name: web, match: {{tag: "tier:web"}}}}
  - {{name: app, match: {{tag: "tier:app"}}}}
  - {{name: db, match: {{tag: "tier:db"}}}}
policies:
  - {{name: web-to-app, source: web, destination: app, service: tcp/8080, action: allow}}
  - {{name: app-to-db, source: app, destination: db, service: tcp/5432, action: allow}}
  - {{name: default, source: any, destination: [web, app, db], action: drop}}
firewalls:
  - {{name: dfw, kind: ovs-dfw, hosts: {{hv1: "{hv1}", hv2: "{hv2}"}}}}
"""
ADDR = {"web1": "10.60.0.11", "app1": "10.60.0.12", "db1": "10.60.0.13"}


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabState]:
    name = f"vfgd{uuid.uuid4().hex[:4]}"
    topo = tmp_path / "topo.yaml"
    topo.write_text(TOPOLOGY.format(name=name))
    root = Path(tempfile.mkdtemp(prefix="vfgd-"))  # lldpd drops privileges: not tmp_path
    root.chmod(0o755)
    state = builder.up(topo, root=root, wait=0)
    procs: list[subprocess.Popen[str]] = []
    try:
        for vm, host in (("web1", "hv1"), ("app1", "hv2"), ("db1", "hv2")):
            builder.add_vm(state, vm, host, 10, f"{ADDR[vm]}/24")
            no_offload(state, vm)
            procs.append(listen(state.vms[vm].netns, 8080, 5432))
        wait_reachable(state)
        yield state
    finally:
        for p in procs:
            kill(p)
        builder.down(name, root)
        shutil.rmtree(root, ignore_errors=True)


def wait_reachable(state: LabState, src: str = "web1", dst: str = "app1") -> None:
    """Wait until ``src`` reaches ``dst`` across the leaf (RSTP ports start learning; a
    moved VM's MAC is learnt again from its first frame, as vMotion's RARP does)."""
    deadline = time.monotonic() + 90.0
    while not nsx.ping(state.vms[src].netns, ADDR[dst]):
        assert time.monotonic() < deadline, "the lab's VMs never reached each other"


def announce(state: LabState, vm: str) -> None:
    """What vMotion's RARP does: a broadcast from the moved VM, so the leaf learns its MAC
    on the new port (here an ARP request: the ICMP itself may be dropped by the policy)."""
    nsx.run(["ip", "neigh", "flush", "all"], state.vms[vm].netns)
    nsx.ping(state.vms[vm].netns, ADDR["app1"])


def no_offload(state: LabState, vm: str) -> None:
    """TCP through OVS's userspace datapath needs tx checksum offload off on the veth."""
    nsx.run(["ethtool", "-K", "eth0", "tx", "off"], state.vms[vm].netns)


def mgmt(state: LabState, host: str) -> str:
    return f"unix:{state.node(host).ovs_dir}/vs0.mgmt"


def vm(name: str, host: str, tier: str) -> Vm:
    return Vm("s1", name, name, host, Power.ON, ips=(ADDR[name],), tags=(f"tier:{tier}",))


def converge(targets: list[GroupTarget], now: float) -> None:
    for t in targets:
        step(t, now)


def flows(state: LabState, host: str) -> list[str]:
    out = subprocess.run(
        ["ovs-ofctl", "--no-names", "dump-flows", mgmt(state, host),
         "cookie=0x766d660000000000/0xffffffff00000000"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [line for line in out.splitlines() if "cookie=" in line]


def test_policy_follows_vms_across_hosts_vmotion_and_tag_changes(lab: LabState) -> None:
    cfg = parse_config(
        yaml.safe_load(CONFIG.format(hv1=mgmt(lab, "hv1"), hv2=mgmt(lab, "hv2"))), "test"
    )
    inv = Inventory(["s1"])
    built = build(cfg, inv)
    assert built is not None
    intent, targets = built
    vms = (vm("web1", "hv1", "web"), vm("app1", "hv2", "app"), vm("db1", "hv2", "db"))
    intent.update(inv, inv.apply([Snapshot("s1", (), (), vms)], 1.0), 1.0)
    for t in targets:
        t.connect()
    ns = {v: lab.vms[v].netns for v in ADDR}
    assert probe(ns["web1"], ADDR["db1"], 5432) == "open", "no policy yet"
    converge(targets, 2.0)
    assert probe(ns["web1"], ADDR["app1"], 8080) == "open", "allowed across hosts; replies pass"
    assert probe(ns["app1"], ADDR["db1"], 5432) == "open", "allowed on one host"
    assert probe(ns["web1"], ADDR["db1"], 5432) == "timeout", "the scope's default: drop"
    assert probe(ns["web1"], ADDR["app1"], 5432) == "timeout"
    assert not any("10.60.0.13" in f and "nw_dst" in f and "reg6" in f for f in flows(lab, "hv1"))

    builder.move_vm(lab, "db1", "hv1")  # vMotion: db1 now runs on hv1
    no_offload(lab, "db1")
    announce(lab, "db1")
    delta = inv.apply([VmUpsert(vm("db1", "hv1", "db"))], 3.0)
    assert intent.update(inv, delta, 3.0) >= {"dfw@hv1", "dfw@hv2"}
    converge(targets, 3.0)
    assert probe(ns["app1"], ADDR["db1"], 5432) == "open", "now across hosts"
    assert probe(ns["web1"], ADDR["db1"], 5432) == "timeout", "same host, still dropped"
    assert not any("vm-db1" in m for m in targets[1].state.get("egress", ())), "left hv2"
    stale = [f for f in flows(lab, "hv2") if "nw_dst=10.60.0.13 " in f and "REG6" in f]
    assert stale == [], "db1's port left hv2: its classification flows must go with it"
    assert not any("#" in m for ms in targets[1].state.values() for m in ms)
    assert "vm-db1" in targets[0].state["egress"]

    delta = inv.apply([VmUpsert(vm("web1", "hv1", "app"))], 4.0)  # web1 becomes an app VM
    intent.update(inv, delta, 4.0)
    converge(targets, 4.0)
    assert probe(ns["web1"], ADDR["db1"], 5432) == "open", "its access changed at once"


def test_a_rule_costs_n_plus_m_flows(lab: LabState) -> None:
    data = yaml.safe_load(CONFIG.format(hv1=mgmt(lab, "hv1"), hv2=mgmt(lab, "hv2")))
    srcs = [f"10.70.{i // 200}.{i % 200 + 1}" for i in range(100)]
    dsts = [f"10.80.{i // 200}.{i % 200 + 1}" for i in range(50)]
    data["groups"] += [{"name": "src", "addresses": srcs}, {"name": "dst", "addresses": dsts}]
    data["policies"].append(
        {"name": "r4", "source": "src", "destination": "dst", "action": "allow",
         "service": "tcp/9000", "applied_to": ["web"]}
    )  # fmt: skip
    cfg = parse_config(data, "test")
    inv = Inventory(["s1"])
    built = build(cfg, inv)
    assert built is not None
    intent, targets = built
    vms = (vm("web1", "hv1", "web"), vm("app1", "hv2", "app"), vm("db1", "hv2", "db"))
    intent.update(inv, inv.apply([Snapshot("s1", (), (), vms)], 1.0), 1.0)
    for t in targets:
        t.connect()
        step(t, 2.0)
    r4 = [f for f in flows(lab, "hv1") if re.search(r"cookie=0x766d6600000004", f)]
    # 100 sources + 50 destinations + 1 local scope port, in each of the two stages
    assert len(r4) == 2 * (100 + 50 + 1)
    assert not [f for f in flows(lab, "hv2") if "cookie=0x766d6600000004" in f], "no web VM there"

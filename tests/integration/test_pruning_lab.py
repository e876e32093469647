"""Inter-switch VLAN pruning on the L2 lab (leaf-spine square, RSTP), with real frames.

The fabric trunks start open (every VLAN). vmfabric narrows them to the VLANs some VM
beyond needs, only after the prune delay; no ping breaks, before, during or after; a
VLAN needed behind one leaf only stops flooding across the fabric (a VM vmfabric does not
know of behind the other leaf stops hearing its broadcasts); a vMotion that makes a VLAN
span both leaves puts it on every fabric link at once; and a fabric link failing (RSTP
moves traffic to another path) black-holes nothing, because every link a path between
two leaves could use carries the VLAN.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vmfabric.cli import app
from vmfabric.demo_overlay import LabFabric, ManualClock, lab_config
from vmfabric.lab import builder, probe
from vmfabric.lab import netns as nsx
from vmfabric.lab import topology as tp
from vmfabric.lab.builder import LabState
from vmfabric.lab.ovs import ovs_installed
from vmfabric.runtime.approvals import Approvals
from vmfabric.runtime.bus import EventBus
from vmfabric.runtime.reconciler import LoopContext, LoopSettings, Reconciler
from vmfabric.runtime.recorder import Recorder
from vmfabric.store import Store

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(300)]
PRUNE = 3.0
EDGE = {  # static edge VLANs (what autovlan would add): switch, port -> VLANs
    ("leaf1", "eth1"): "10,20", ("leaf1", "eth2"): "20", ("leaf2", "eth1"): "10,20",
    ("leaf2", "eth2"): "20,30", ("leaf1", "eth3"): "30", ("leaf2", "eth3"): "30",
}  # fmt: skip
VMS = {  # name: host, VLAN (hv1, hv2 on leaf1; hv3, hv4 on leaf2; hv5 on both)
    "a": ("hv1", 10), "b": ("hv3", 10), "c": ("hv1", 20), "d": ("hv2", 20),
    "e": ("hv5", 30), "f": ("hv4", 30),
}  # fmt: skip
PAIRS = (("a", "b"), ("c", "d"), ("e", "f"))
FABRIC = {"leaf1": ("eth51", "eth52"), "leaf2": ("eth51", "eth52"),
          "spine3": ("eth1", "eth2"), "spine4": ("eth1", "eth2")}  # fmt: skip


@pytest.fixture(scope="module")
def lab() -> Iterator[LabState]:
    if not ovs_installed():
        pytest.skip("Open vSwitch is not installed")
    missing = [t for t in ("lldpd", "nft") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    root = Path(tempfile.mkdtemp(prefix="vfl-prune-", dir="/tmp"))
    root.chmod(0o755)
    name = f"p{uuid.uuid4().hex[:5]}"
    try:
        yield builder.up("leaf-spine", name=name, root=root, wait=90)
    finally:
        builder.down(name, root)
        shutil.rmtree(root, ignore_errors=True)
    assert nsx.list_netns(tp.prefix(name)) == []


def _ip(vm: str) -> str:
    return f"10.{VMS[vm][1]}.0.{ord(vm) - 96}"


def _all_ping(state: LabState, within: float = 15.0) -> list[str]:
    failed = []
    for x, y in PAIRS:
        if not probe.ping(state, x, _ip(y), within=within):
            failed.append(f"{x}->{y}")
    return failed


def _runtime_step(fabric: LabFabric, tmp_path: Path) -> None:
    """One step of the runtime's ``Reconciler`` per fabric target (record, apply, audit)."""
    store = Store(f"sqlite:///{tmp_path / 'loop.db'}")
    recorder = Recorder(store)
    ctx = LoopContext(LoopSettings(), recorder, Approvals(), EventBus(), fabric.clock)
    try:
        for target in fabric.trunks.values():
            result = asyncio.run(Reconciler(target, ctx).reconcile())
            assert result.sent and result.applied == result.sent, target.name
    finally:
        recorder.close()
    audit = store.audit(switch="spine3:fabric")
    assert sorted((e["port"], e["vlan"], e["action"]) for e in audit) == [
        ("eth1", 20, "add"), ("eth2", 20, "add")
    ]  # fmt: skip
    store.close()


def test_pruning_fabric_trunks_breaks_no_ping_and_stops_needless_flooding(
    lab: LabState, tmp_path: Path
) -> None:
    for (switch, port), vlans in EDGE.items():
        builder._vsctl(lab.nodes[switch], "set", "port", port, f"trunks={vlans}")
    clock = ManualClock()  # removal timers: moved by hand, never by the machine's speed
    fabric = LabFabric(lab, lab_config(lab, PRUNE, pruning=True), clock)
    try:
        for vm, (host, vlan) in VMS.items():
            fabric.start_vm(vm, host, vlan, f"{_ip(vm)}/24")
        fabric.start_vm("stray", "hv3", 20, "10.20.0.9/24", report=False)  # unknown to vmfabric
        assert _all_ping(lab) == []
        counter = probe.Broadcasts(lab, ["c", "d", "stray"])
        assert counter.send("c", expect={"d", "stray"})["stray"] == 1, "open trunks flood"

        plans = fabric.reconcile()
        held = plans["leaf1:fabric"].held
        assert [c.member for c in held] == ["all", "all"] and "prune delay" in held[0].reason
        assert fabric.trunk("leaf1") == {"eth51": None, "eth52": None}, "not before the delay"

        clock.advance(PRUNE - 0.01)
        fabric.reconcile()
        assert fabric.trunk("spine3") == {"eth1": None, "eth2": None}, "not before the delay"
        clock.advance(0.01)
        fabric.reconcile()
        for switch, ports in FABRIC.items():
            assert fabric.trunk(switch) == dict.fromkeys(ports, frozenset({10, 30})), switch
        assert _all_ping(lab) == [], "pruning broke a ping"
        copies = counter.send("c", expect={"d"})
        assert copies == {"c": 0, "d": 1, "stray": 0}, "VLAN 20 no longer crosses the fabric"

        fabric.vmotion("d", "hv4")  # VLAN 20 now behind leaf1 (c) and leaf2 (d)
        _runtime_step(fabric, tmp_path)  # this time through the runtime's own loop
        for switch, ports in FABRIC.items():
            assert fabric.trunk(switch) == dict.fromkeys(ports, frozenset({10, 20, 30}))
        assert probe.ping(lab, "c", _ip("d"), within=10), "added at once, across the fabric"

        path = fabric.record(tmp_path)
        done = CliRunner().invoke(
            app, ["show", "fabric-trunk", "--json", "--live", "-c", str(path)]
        )
        assert done.exit_code == 0, done.output
        rows = {row["link"]: row for row in json.loads(done.output)}
        net1 = rows["leaf1:eth51 -- spine3:eth1"]
        assert net1["vlans"] == [10, 20, 30]
        assert net1["why"]["20"] == ["leaf1", "leaf2"]
        assert [e["carries"] for e in net1["ends"]] == [[10, 20, 30], [10, 20, 30]]

        nsx.run(["ip", "link", "set", "eth51", "down"], lab.nodes["leaf1"].netns)
        try:
            assert _all_ping(lab, within=30) == [], "a fabric link failed: no VLAN black-holed"
        finally:
            nsx.run(["ip", "link", "set", "eth51", "up"], lab.nodes["leaf1"].netns)
    finally:
        fabric.close()
        for vm in list(lab.vms):
            builder.remove_vm(lab, vm)

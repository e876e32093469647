"""Flood lists from placement on the overlay lab (BGP underlay), with real frames.

vmfabric's overlay intent and its VTEP targets program each leaf's OVS: VMs of one VLAN
behind different leaves talk over VXLAN; a VNI local to one leaf floods to no one; after a
vMotion the new leaf is in the flood lists at once and the old one is pruned only after the
prune delay, which a broadcast counted in every VM proves (a VM vmfabric does not know of,
behind the old leaf, hears it until the prune and not after). The intents and removal
timers run on a clock the test moves by hand: no outcome depends on the machine's speed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vmfabric.cli import app
from vmfabric.demo_overlay import LabFabric, ManualClock, overlay_fabric, overlay_lab
from vmfabric.lab import probe
from vmfabric.lab.ovs import ovs_installed
from vmfabric.runtime.approvals import Approvals
from vmfabric.runtime.bus import EventBus
from vmfabric.runtime.reconciler import LoopContext, LoopSettings, Reconciler
from vmfabric.runtime.recorder import Recorder
from vmfabric.store import Store

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(240)]
PRUNE = 3.0
VNI_MAP = {110: 10110, 130: 10130}


@pytest.fixture(scope="module")
def fabric() -> Iterator[LabFabric]:
    if not ovs_installed():
        pytest.skip("Open vSwitch is not installed")
    missing = [t for t in ("lldpd", "vtysh", "ethtool", "nft") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")
    with overlay_lab("bgp") as lab:
        fab = overlay_fabric(lab, VNI_MAP, PRUNE, ManualClock())
        try:
            yield fab
        finally:
            fab.close()


def test_flood_lists_follow_placement_and_a_vmotion(fabric: LabFabric) -> None:
    fab = fabric
    leaf1, leaf2, leaf3 = (fab.vtep_of(n) for n in ("leaf1", "leaf2", "leaf3"))
    fab.start_vm("a", "hv1", 110, "10.110.0.1/24")
    fab.start_vm("b", "hv2", 110, "10.110.0.2/24")
    fab.start_vm("stray", "hv2", 110, "10.110.0.9/24", report=False)  # unknown to vmfabric
    fab.start_vm("c", "hv3", 130, "10.130.0.3/24")
    fab.start_vm("d", "hv4", 130, "10.130.0.4/24")
    fab.reconcile()
    assert fab.flood("leaf1") == {10110: {leaf2}}
    assert fab.flood("leaf2") == {10110: {leaf1}}
    assert fab.flood("leaf3") == {}, "VNI 10130 is behind leaf3 only: it floods to no one"
    assert fab.intent.desired("leaf3:vtep") == {"10130": frozenset()}
    assert probe.ping(fab.lab, "a", fab.ip("b")), "over the routed underlay"
    assert probe.ping(fab.lab, "c", fab.ip("d")), "switched on leaf3"
    counter = probe.Broadcasts(fab.lab, ["a", "b", "stray", "c", "d"])
    assert counter.send("a", expect={"b", "stray"}) == {"a": 0, "b": 1, "stray": 1, "c": 0, "d": 0}

    clock = fab.clock
    assert isinstance(clock, ManualClock)
    fab.vmotion("b", "hv3")  # leaf2 -> leaf3
    plans = fab.reconcile()
    assert fab.flood("leaf1") == {10110: {leaf2, leaf3}}, "new leaf at once, old one held"
    assert fab.flood("leaf3") == {10110: {leaf1}}
    assert fab.flood("leaf2") == {10110: {leaf1}}, "leaf2's own list waits too"
    held = {(c.holder, c.member): c.reason for c in plans["leaf1:vtep"].held}
    assert held[("10110", leaf2)] == f"prune delay: removal in {PRUNE:.1f}s"
    assert probe.ping(fab.lab, "a", fab.ip("b"), within=5)
    assert counter.send("a", expect={"b", "stray"})["stray"] == 1, "not pruned before the delay"

    clock.advance(PRUNE - 0.01)
    fab.reconcile()
    assert fab.flood("leaf1") == {10110: {leaf2, leaf3}}, "not a moment before the delay"
    clock.advance(0.01)
    plans = fab.reconcile()
    assert fab.flood("leaf1") == {10110: {leaf3}}, "pruned once the delay has passed"
    assert [(c.member, c.action) for c in plans["leaf1:vtep"].changes] == [(leaf2, "remove")]
    assert fab.flood("leaf2") == {}, "leaf2 no longer has a VM of VNI 10110"
    assert fab.flood("leaf3") == {10110: {leaf1}}
    copies = counter.send("a", expect={"b"})
    assert copies["b"] == 1 and copies["stray"] == 0, "no copy to the pruned leaf"
    assert probe.ping(fab.lab, "b", fab.ip("a"))


def test_show_vxlan_live_reads_the_flood_lists_back_from_the_vteps(
    fabric: LabFabric, tmp_path: Path
) -> None:
    fab = fabric
    fab.reconcile()
    path = fab.record(tmp_path)
    done = CliRunner().invoke(app, ["show", "vxlan", "--json", "--live", "-c", str(path)])
    assert done.exit_code == 0, done.output
    rows = {row["vni"]: row for row in json.loads(done.output)}
    assert set(rows) == {10110, 10130}
    leaf1, leaf3 = fab.vtep_of("leaf1"), fab.vtep_of("leaf3")
    assert rows[10110]["vlan"] == 110
    assert [(v["switch"], v["vms"], v["flood"], v["programmed"], v["in_sync"])
            for v in rows[10110]["vteps"]] == [
        ("leaf1", ["a"], [leaf3], [leaf3], True),
        ("leaf3", ["b"], [leaf1], [leaf1], True),
    ]  # fmt: skip
    assert rows[10130]["vteps"] == [
        {"switch": "leaf3", "address": leaf3, "vms": ["c", "d"], "flood": [],
         "programmed": [], "in_sync": True}
    ]  # fmt: skip
    table = CliRunner().invoke(app, ["show", "vxlan", "-c", str(path)])
    assert table.exit_code == 0 and "- (no other VTEP)" in table.output


def test_the_runtime_reconcile_loop_drives_the_vtep_targets(
    fabric: LabFabric, tmp_path: Path
) -> None:
    """The VTEP targets through the runtime's own ``Reconciler`` (record, apply, confirm,
    audit), as the composition root will run them."""
    fab = fabric
    fab.start_vm("y", "hv2", 110, "10.110.0.7/24")  # leaf2 joins VNI 10110 again
    store = Store(f"sqlite:///{tmp_path / 'vmfabric.db'}")
    recorder = Recorder(store)
    ctx = LoopContext(LoopSettings(), recorder, Approvals(), EventBus(), fab.clock)
    try:
        for target in fab.vteps.values():
            result = asyncio.run(Reconciler(target, ctx).reconcile())
            assert result.applied == result.sent, f"{target.name}: every change confirmed"
    finally:
        recorder.close()
    leaf1, leaf2, leaf3 = (fab.vtep_of(n) for n in ("leaf1", "leaf2", "leaf3"))
    assert fab.flood("leaf2") == {10110: {leaf1, leaf3}}
    assert leaf2 in fab.flood("leaf1")[10110] and leaf2 in fab.flood("leaf3")[10110]
    audit = store.audit(switch="leaf1:vtep")
    assert [(e["holder"], e["action"]) for e in audit] == [("10110", "add")]
    assert "y" in audit[0]["reason"]
    store.close()
    assert probe.ping(fab.lab, "y", fab.ip("a"))

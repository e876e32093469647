"""Issue "vCenter sessions", done-when: vcsim + real Open vSwitch + the controller.

Power on, relocate (vMotion) and power off reach the switch ports through
WaitForUpdatesEx alone (the source's full-read counter does not move between events);
uplinks are discovered over CDP and LLDP (QueryNetworkHint answers from the hints file);
a stopped simulator holds every VLAN (fail-static) and a restarted one converges with no
spurious removal; two sessions, one failing, work independently.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.controller import running_controller, trunks, wait_for
from support.vcsim_fixtures import Lab, VcsimFactory
from vmfabric.config import Config, parse_config
from vmfabric.lab.ovs import OvsInstance
from vmfabric.lab.vcsim import Hints, VcsimControl, write_hints
from vmfabric.sources.vcenter import VcenterSource
from vmfabric.store import Store

pytestmark = pytest.mark.integration
PORTS = ("Et1", "Et2", "Et3")  # the hints say "Ethernet1": matched by interface-name rules
# The harness puts vmnic0 on the standard vSwitch0 and vmnic1 on the DVS (its proxy
# switch), so distributed port groups ride vmnic1: that NIC lands on leaf1 here, over CDP
# for hv1 and LLDP for hv2; vmnic0 hears a switch vmfabric does not manage.
HINTS: Hints = {
    "hv1": {
        "vmnic0": {"cdp": {"devId": "oob-sw", "portId": "Gi0/1"}},
        "vmnic1": {"cdp": {"devId": "LEAF1.example.com", "portId": "Ethernet1"}},
    },
    "hv2": {
        "vmnic1": {"lldp": {"chassisId": "52:54:00:00:00:01", "portId": "Ethernet2",
                            "systemName": "leaf1"}},
    },
}  # fmt: skip


@pytest.fixture
def leaf1(ovs: OvsInstance) -> OvsInstance:
    ovs.add_bridge("leaf1")
    for port in PORTS:
        ovs.add_edge_port("leaf1", port, trunks={4095})
    return ovs


def make_config(
    tmp: Path, ovs: OvsInstance, sessions: list[dict[str, Any]], prune: str = "1500ms"
) -> Config:
    return parse_config(
        {
            "store": f"sqlite:///{tmp}/vf.db",
            "engine": {"prune_delay": prune, "coalesce": "10ms"},
            "sessions": sessions,
            "switches": [
                {
                    "name": "leaf1",
                    "driver": "ovs",
                    "ovsdb": ovs.db_url,
                    "bridge": "leaf1",
                    "edge_ports": list(PORTS),
                    "aliases": ["leaf1.example.com"],
                }
            ],
        },
        base_dir=tmp,
    )


def vc_session(name: str, url: str, user: str, env: str) -> dict[str, Any]:
    return {"name": name, "kind": "vcenter", "url": url, "username": user,
            "password": f"env:{env}", "allowed_vlans": "2-1000"}  # fmt: skip


@pytest.fixture
def lab_config(
    vcsim_lab: Lab, leaf1: OvsInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Config:
    vcsim_lab.set_hints(HINTS)
    monkeypatch.setenv("VF_VC_PW", vcsim_lab.sim.password)
    session = vc_session("vc1", vcsim_lab.sim.url, vcsim_lab.sim.username, "VF_VC_PW")
    return make_config(tmp_path, leaf1, [session])


def test_power_on_relocate_power_off_move_vlans_through_events_alone(
    vcsim_lab: Lab, leaf1: OvsInstance, lab_config: Config
) -> None:
    ctl_sim = vcsim_lab.control
    source = VcenterSource(lab_config.sessions[0], lab_config.base_dir)  # type: ignore[arg-type]
    with running_controller(lab_config, sources=[source]) as ctl:
        wait_for(lambda: 110 in trunks(leaf1, "Et1"), 15, "web-01 (hv1, CDP) VLAN 110 on Et1")
        reads = source.full_reads
        asked = time.time()
        ctl_sim.relocate("web-01", "hv2")  # vMotion to the LLDP-discovered host
        wait_for(lambda: 110 in trunks(leaf1, "Et2"), 30, "VLAN 110 on Et2 after vMotion")
        wait_for(lambda: trunks(leaf1, "Et1") == {4095}, 30, "Et1 pruned and closed")
        # the old port was held for the prune delay, counted from no earlier than the move

        def audited() -> dict[tuple[str, int, str], float]:  # the writer records after the switch
            return {(e["port"], e["vlan"], e["action"]): e["time"] for e in ctl.store.audit(50)}

        moved = {("Et1", 110, "remove"), ("Et2", 110, "add")}
        wait_for(lambda: moved <= audited().keys(), 30, "the move in the audit log")
        entries = audited()
        removed, added = entries[("Et1", 110, "remove")], entries[("Et2", 110, "add")]
        assert removed >= added and removed >= asked + lab_config.engine.prune_delay
        ctl_sim.power_off("web-01")
        wait_for(lambda: trunks(leaf1, "Et2") == {4095}, 30, "Et2 pruned after power off")
        ctl_sim.power_on("web-01")
        wait_for(lambda: 110 in trunks(leaf1, "Et2"), 30, "VLAN 110 back on power on")
        assert source.full_reads == reads, "changes must arrive as events, not full reads"
        assert source.updates > 0
        assert trunks(leaf1, "Et3") == {4095}, "hv3 heard no neighbour: nothing on Et3"

        def web01() -> dict[str, Any]:
            return {v["name"]: v for v in ctl.store.show_vms()}["web-01"]

        # the store's copy of the inventory follows the switches' plans (the writer's lanes)
        wait_for(lambda: web01()["power_state"] == "poweredOn", 30, "show vm powered on")
        vm = web01()
        assert vm["host"] == "hv2" and vm["power_state"] == "poweredOn"
        assert {"portgroup": "web", "vlan": 110} in vm["networks"]
        assert {"switch": "leaf1", "port": "Et2"} in vm["attachments"]
        hosts = {h["name"]: h for h in ctl.store.show_hosts()}
        up1 = [(u["nic"], u["port"], u["source"]) for u in hosts["hv1"]["uplinks"]]
        up2 = [(u["nic"], u["port"], u["source"]) for u in hosts["hv2"]["uplinks"]]
        assert up1 == [("vmnic1", "Et1", "cdp")] and up2 == [("vmnic1", "Et2", "lldp")]
        unmatched = [n["system_name"] for n in hosts["hv1"]["neighbors"] if not n["matched"]]
        assert unmatched == ["oob-sw"], "a neighbour that is no configured switch is shown"


def watch_min(
    ovs: OvsInstance, port: str, vlan: int, stop: threading.Event, out: list[bool]
) -> None:
    """Record whether ``vlan`` ever left ``port`` while ``stop`` is unset."""
    while not stop.is_set():
        if vlan not in trunks(ovs, port):
            out.append(False)
            return
        time.sleep(0.05)
    out.append(True)


def test_lost_vcenter_holds_vlans_and_a_restart_converges_without_removals(
    vcsim_lab: Lab, leaf1: OvsInstance, lab_config: Config, vcsim_factory: VcsimFactory
) -> None:
    sim = vcsim_lab.sim
    with running_controller(lab_config) as ctl:
        wait_for(lambda: 110 in trunks(leaf1, "Et1"), 15, "VLAN 110 on Et1")
        stop, kept = threading.Event(), list[bool]()
        watcher = threading.Thread(target=watch_min, args=(leaf1, "Et1", 110, stop, kept))
        watcher.start()
        try:
            vcsim_lab.control.close()
            sim.kill()  # the simulator dies mid-stream
            wait_for(
                lambda: ctl.store.show_sessions("vc1")[0]["state"] == "disconnected",
                10, "show session: disconnected",
            )  # fmt: skip
            assert ctl.store.show_sessions("vc1")[0]["last_error"]
            time.sleep(lab_config.engine.prune_delay + 1.0)  # longer than the prune delay
            assert 110 in trunks(leaf1, "Et1"), "a lost session must not prune (fail-static)"
            # The simulator comes back empty (its state was in memory) on the same port,
            # with web-01 re-created on hv1: the session must reconnect and converge.
            back = vcsim_factory(
                host_names=("hv1", "hv2", "hv3"), vms=0, hints_file=vcsim_lab.hints_file,
                port=sim.port, username=sim.username, password=sim.password,
            )  # fmt: skip
            control = VcsimControl.of(back)
            control.add_dvportgroup("web", vlan=110)
            control.create_vm("web-01", "hv1", "web")
            control.close()
            wait_for(
                lambda: ctl.store.show_sessions("vc1")[0]["in_sync"], 60, "session back in sync"
            )
            time.sleep(lab_config.engine.prune_delay + 1.0)
        finally:
            stop.set()
            watcher.join(10)
        assert kept == [True], "VLAN 110 left Et1 during the outage or the reconnect"


def test_two_sessions_one_failing_work_independently(
    vcsim_factory: VcsimFactory, leaf1: OvsInstance, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    hints = tmp_path / "hints.json"
    write_hints(hints, HINTS)
    good = vcsim_factory(host_names=("hv1", "hv2", "hv3"), vms=0, hints_file=hints)
    bad = vcsim_factory(host_names=("hv7",), vms=0)
    monkeypatch.setenv("VF_GOOD", good.password)
    monkeypatch.setenv("VF_BAD", "wrong-password")
    config = make_config(tmp_path, leaf1, [
        vc_session("good", good.url, good.username, "VF_GOOD"),
        vc_session("bad", bad.url, bad.username, "VF_BAD"),
    ])  # fmt: skip
    control = VcsimControl.of(good)
    control.add_dvportgroup("web", vlan=110)
    with running_controller(config) as ctl:
        control.create_vm("web-01", "hv2", "web")
        wait_for(lambda: 110 in trunks(leaf1, "Et2"), 15, "the good session's VLAN")
        wait_for(lambda: ctl.store.show_sessions("good")[0]["in_sync"], 30, "the session row")
        sessions = {s["name"]: s for s in ctl.store.show_sessions()}
        assert sessions["good"]["state"] == "connected" and sessions["good"]["in_sync"]
        assert sessions["bad"]["state"] != "connected"
        assert "wrong-password" not in str(sessions["bad"]["last_error"])
        assert "login" in str(sessions["bad"]["last_error"]).lower()
    control.close()


@pytest.fixture
def store_of(lab_config: Config) -> Iterator[Store]:
    store = Store(lab_config.store_url())
    yield store
    store.close()


def test_show_session_reports_version_counts_and_autovlan(
    vcsim_lab: Lab, leaf1: OvsInstance, lab_config: Config
) -> None:
    with running_controller(lab_config) as ctl:
        wait_for(lambda: 110 in trunks(leaf1, "Et1"), 15, "VLAN 110 on Et1")
        # the store's copy of the inventory follows the switches' plans (the writer's lanes)
        wait_for(lambda: ctl.store.show_sessions("vc1")[0]["in_sync"], 30, "the session row")
        (session,) = ctl.store.show_sessions("vc1")
        assert session["state"] == "connected" and session["in_sync"]
        assert session["version"], "the vCenter version must survive the snapshot"
        assert (session["hosts"], session["vms"]) == (3, 2)
        assert session["allowed_vlans"] == "2-1000" and session["last_update"]
        assert "port group pv: PVLAN is not supported" in session["warnings"]
        provisioned = [{"switch": "leaf1", "port": "Et1", "vlans": [110]}]
        wait_for(lambda: ctl.store.session_autovlan("vc1")["provisioned"] == provisioned, 10,
                 "the port state recorded")  # fmt: skip

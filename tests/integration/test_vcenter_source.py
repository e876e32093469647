"""The vcenter source against the real vSphere API of vcsim (no mocks)."""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Callable

import pytest

from support.vcsim_fixtures import LAB_HINTS, LAB_HOSTS, Lab, SourceRun, SourceRunner, VcsimFactory
from vmfabric.core.model import (
    HostRemoved,
    HostUpsert,
    Neighbor,
    Power,
    SessionStatus,
    Snapshot,
    Vm,
    VmRemoved,
    VmUpsert,
)

pytestmark = pytest.mark.integration


def _vm(vm_id: str, ok: Callable[[Vm], bool]) -> Callable[[VmUpsert], bool]:
    return lambda e: e.vm.id == vm_id and ok(e.vm)


def _on(host: str) -> Callable[[Vm], bool]:
    return lambda v: v.host == host


def _first_snapshot(run: SourceRun) -> Snapshot:
    return run.events.wait(Snapshot, timeout=15)[1]


def test_first_events_are_connecting_connected_then_one_snapshot(
    vcsim_lab: Lab, source_run: SourceRunner
) -> None:
    run = source_run(vcsim_lab.sim)
    _first_snapshot(run)
    kinds = [(type(e).__name__, getattr(e, "state", "")) for _, e in run.events.items[:3]]
    assert kinds == [
        ("SessionStatus", "connecting"),
        ("SessionStatus", "connected"),
        ("Snapshot", ""),
    ]
    connected = run.events.of(SessionStatus)[1]
    assert "vCenter" in connected.version
    assert connected.warnings  # plain http is reported


def test_snapshot_maps_hosts_neighbours_and_carriage(
    vcsim_lab: Lab, source_run: SourceRunner
) -> None:
    snap = _first_snapshot(source_run(vcsim_lab.sim))
    hosts = {h.name: h for h in snap.hosts}
    assert sorted(hosts) == sorted(LAB_HOSTS)
    hv1, hv2, hv3 = hosts["hv1"], hosts["hv2"], hosts["hv3"]
    assert [n.name for n in hv1.nics] == ["vmnic0", "vmnic1"]
    assert hv1.nics[0].neighbor == Neighbor(
        protocol="cdp", system_name="leaf1", port_id="Ethernet1", mgmt_addr="192.0.2.1"
    )
    assert hv2.nics[1].neighbor == Neighbor(
        protocol="lldp",
        system_name="leaf2",
        port_id="Ethernet2",
        chassis_id="52:54:00:00:00:02",
        mgmt_addr="192.0.2.2",
    )
    assert all(n.neighbor is None for n in hv3.nics)
    dvs = f"dvs:{vcsim_lab.control.dvs_uuid()}"
    assert hv1.vswitch_nics[dvs] == frozenset({"vmnic1"})
    assert hv1.vswitch_nics["pg:VM Network"] == frozenset({"vmnic0"})
    assert hv1.uplinks == ()


def test_snapshot_maps_portgroups_and_vms(vcsim_lab: Lab, source_run: SourceRunner) -> None:
    snap = _first_snapshot(source_run(vcsim_lab.sim))
    pgs = {p.name: p for p in snap.portgroups}
    dvs = f"dvs:{vcsim_lab.control.dvs_uuid()}"
    assert pgs["web"].vlans == {110} and pgs["web"].vswitch == dvs
    assert pgs["trunk"].vlans == set(range(200, 211)) | {300}
    assert pgs["pv"].vlans == set() and pgs["pv"].problem == "PVLAN is not supported"
    assert pgs["VM Network"].vlans == set() and pgs["VM Network"].vswitch == "pg:VM Network"
    assert not [p for p in pgs if "DVUplinks" in p]  # the uplink port group is not a VM network
    vms = {v.name: v for v in snap.vms}
    assert vms["web-01"].host == "hv1" and vms["web-01"].networks == ("web",)
    assert vms["web-01"].power is Power.ON
    assert vms["web-01"].id == vcsim_lab.control.vm_id("web-01")
    assert vms["std-01"].host == "hv2" and vms["std-01"].networks == ("VM Network",)


def test_hints_are_queried_once_per_host(vcsim_lab: Lab, source_run: SourceRunner) -> None:
    run = source_run(vcsim_lab.sim)
    _first_snapshot(run)
    assert run.source.hint_queries == len(LAB_HOSTS)
    assert vcsim_lab.sim.hint_queries() == dict.fromkeys(LAB_HOSTS, 1)


def test_power_and_vmotion_arrive_from_wait_for_updates_without_rereading(
    vcsim_lab: Lab, source_run: SourceRunner
) -> None:
    run = source_run(vcsim_lab.sim)
    _first_snapshot(run)
    ctl, vm_id = vcsim_lab.control, vcsim_lab.control.vm_id("web-01")
    steps: list[tuple[Callable[[], None], Callable[[Vm], bool]]] = [
        (lambda: ctl.power_off("web-01"), lambda v: v.power is Power.OFF),
        (lambda: ctl.power_on("web-01"), lambda v: v.power is Power.ON),
        (lambda: ctl.relocate("web-01", "hv3"), lambda v: v.host == "hv3"),
    ]
    for act, expected in steps:
        start = len(run.events)
        act()
        done = time.monotonic()
        at, _ = run.events.wait(VmUpsert, _vm(vm_id, expected), start=start)
        assert at - done < 1.0
    assert run.source.full_reads == 1
    assert run.source.updates >= 3
    assert len(run.events.of(Snapshot)) == 1


def test_new_and_destroyed_vms(vcsim_lab: Lab, source_run: SourceRunner) -> None:
    run = source_run(vcsim_lab.sim)
    _first_snapshot(run)
    new_id = vcsim_lab.control.create_vm("trunk-01", "hv2", "trunk")
    _, added = run.events.wait(VmUpsert, lambda e: e.vm.id == new_id and e.vm.power is Power.ON)
    assert added.vm.networks == ("trunk",) and added.vm.host == "hv2"
    old_id = vcsim_lab.control.vm_id("std-01")
    vcsim_lab.control.destroy("std-01")
    _, removed = run.events.wait(VmRemoved, lambda e: e.id == old_id)
    assert removed.session == "lab"
    assert run.source.full_reads == 1


def test_host_rename_emits_host_and_its_vms(vcsim_lab: Lab, source_run: SourceRunner) -> None:
    run = source_run(vcsim_lab.sim)
    _first_snapshot(run)
    vcsim_lab.control.rename_host("hv1", "esx-a")
    _, up = run.events.wait(HostUpsert, lambda e: e.host.name == "esx-a")
    assert up.host.nics[0].neighbor is not None  # neighbours follow the host moref
    run.events.wait(HostRemoved, lambda e: e.name == "hv1")
    run.events.wait(VmUpsert, lambda e: e.vm.name == "web-01" and e.vm.host == "esx-a")


def test_hint_refresh_queries_each_host_once_and_emits_only_changes(
    vcsim_lab: Lab, source_run: SourceRunner
) -> None:
    run = source_run(vcsim_lab.sim, hint_refresh=1)
    _first_snapshot(run)
    time.sleep(1.6)  # at least one refresh with nothing changed
    assert run.events.of(HostUpsert) == []
    start = len(run.events)
    vcsim_lab.set_hints(
        {
            **LAB_HINTS,
            "hv3": {
                "vmnic0": {
                    "lldp": {
                        "chassisId": "52:54:00:00:00:03",
                        "portId": "Ethernet3",
                        "systemName": "leaf3",
                    }
                }
            },
        }
    )
    _, up = run.events.wait(HostUpsert, lambda e: e.host.name == "hv3", start=start, timeout=4)
    assert up.host.nics[0].neighbor is not None
    assert up.host.nics[0].neighbor.system_name == "leaf3"
    run.stop.set()
    run.thread.join(timeout=5)
    counts = vcsim_lab.sim.hint_queries()
    assert set(counts.values()) == {counts["hv1"]} and counts["hv1"] >= 2  # same rounds per host
    assert run.source.hint_queries == sum(counts.values())
    assert {e.host.name for e in run.events.of(HostUpsert)} == {"hv3"}


def test_a_host_disconnected_at_connect_is_not_asked_for_hints(
    vcsim_lab: Lab, source_run: SourceRunner
) -> None:
    """Only connected hosts are asked at connect; the others keep no neighbours."""
    vcsim_lab.control.set_host_connection("hv3", "notResponding")
    run = source_run(vcsim_lab.sim)
    snap = _first_snapshot(run)
    assert vcsim_lab.sim.hint_queries() == {"hv1": 1, "hv2": 1}
    assert run.source.hint_queries == 2
    hv3 = next(h for h in snap.hosts if h.name == "hv3")
    assert all(nic.neighbor is None for nic in hv3.nics)
    hv1 = next(h for h in snap.hosts if h.name == "hv1")
    assert any(nic.neighbor is not None for nic in hv1.nics)


def test_host_reconnect_requeries_only_that_hosts_hints(
    vcsim_lab: Lab, source_run: SourceRunner
) -> None:
    run = source_run(vcsim_lab.sim)
    _first_snapshot(run)
    start = len(run.events)
    vcsim_lab.control.set_host_connection("hv2", "disconnected")
    vcsim_lab.set_hints(
        {**LAB_HINTS, "hv2": {"vmnic0": {"cdp": {"devId": "leaf9", "portId": "Ethernet9"}}}}
    )
    vcsim_lab.control.set_host_connection("hv2", "connected")
    _, up = run.events.wait(HostUpsert, start=start)
    assert up.host.name == "hv2"
    assert up.host.nics[0].neighbor is not None
    assert up.host.nics[0].neighbor.system_name == "leaf9"
    assert up.host.nics[1].neighbor is None
    assert vcsim_lab.sim.hint_queries() == {"hv1": 1, "hv2": 2, "hv3": 1}
    assert run.source.hint_queries == 4 and run.source.full_reads == 1


def test_audit_rereads_everything_and_finds_nothing_new(
    vcsim_lab: Lab, source_run: SourceRunner
) -> None:
    run = source_run(vcsim_lab.sim, audit_interval=1)
    first = _first_snapshot(run)
    _, second = run.events.wait(Snapshot, lambda s: s is not first, timeout=5)
    assert run.source.full_reads >= 2
    assert set(second.vms) == set(first.vms)
    by_name = lambda h: h.name  # noqa: E731 (Host holds a dict: not hashable)
    assert sorted(second.hosts, key=by_name) == sorted(first.hosts, key=by_name)
    assert set(second.portgroups) == set(first.portgroups)
    assert run.source.hint_queries == len(LAB_HOSTS)  # audits reuse the hints


def test_killed_simulator_disconnects_and_restart_reconnects(
    vcsim_lab: Lab, vcsim_factory: VcsimFactory, source_run: SourceRunner
) -> None:
    sim = vcsim_lab.sim
    run = source_run(sim)
    _first_snapshot(run)
    start = len(run.events)
    killed = time.monotonic()
    sim.kill()
    at, down = run.events.wait(
        SessionStatus, lambda e: e.state == "disconnected", start=start, timeout=5
    )
    assert at - killed < 3.0 and down.error
    again = vcsim_factory(
        host_names=LAB_HOSTS, vms=1, port=sim.port, username=sim.username, password=sim.password
    )
    assert again.port == sim.port
    start = len(run.events)
    run.events.wait(SessionStatus, lambda e: e.state == "connected", start=start, timeout=20)
    _, snap = run.events.wait(Snapshot, start=start, timeout=20)
    assert len(snap.vms) == 1  # the new simulator's inventory, not the old one
    assert run.source.full_reads == 2


def test_wrong_password_reports_login_failure_without_the_password(
    vcsim_lab: Lab, source_run: SourceRunner, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "Wr0ng-Secret-4711"
    run = source_run(vcsim_lab.sim, password=wrong)
    _, down = run.events.wait(SessionStatus, lambda e: e.state == "disconnected", timeout=10)
    assert down.error == f"login failed for user {vcsim_lab.sim.username} at {vcsim_lab.sim.url}"
    assert wrong not in repr(run.events.items)
    assert wrong not in caplog.text
    assert run.events.of(Snapshot) == []


def test_vmotion_latency_figure(vcsim_lab: Lab, source_run: SourceRunner) -> None:
    """Median time from RelocateVM_Task completion to the VmUpsert (reported figure)."""
    run = source_run(vcsim_lab.sim)
    _first_snapshot(run)
    vm_id = vcsim_lab.control.vm_id("web-01")
    delays = []
    for i in range(20):
        target = ("hv2", "hv3")[i % 2]
        start = len(run.events)
        vcsim_lab.control.relocate("web-01", target)
        done = time.monotonic()
        at, _ = run.events.wait(VmUpsert, _vm(vm_id, _on(target)), start=start)
        delays.append(at - done)
    median = statistics.median(delays)
    print(f"vMotion -> VmUpsert: median {median * 1000:.1f} ms, max {max(delays) * 1000:.1f} ms")
    assert median < 1.0
    assert run.source.full_reads == 1


def test_tls_is_verified_by_default_and_an_unknown_certificate_is_refused(
    vcsim_factory: VcsimFactory, source_run: SourceRunner
) -> None:
    sim = vcsim_factory(vms=0, hosts=1, tls=True)
    assert sim.url.startswith("https://")
    run = source_run(sim)
    _, down = run.events.wait(SessionStatus, lambda e: e.state == "disconnected", timeout=10)
    assert down.error.startswith(f"{sim.url}: TLS certificate verify failed")
    assert run.events.of(Snapshot) == []


def test_tls_with_the_servers_ca_file_connects(
    vcsim_factory: VcsimFactory, source_run: SourceRunner
) -> None:
    sim = vcsim_factory(vms=0, hosts=1, tls=True)
    run = source_run(sim, ca_file=sim.ca_file)
    snap = _first_snapshot(run)
    assert len(snap.hosts) == 1
    connected = run.events.of(SessionStatus)[1]
    assert connected.state == "connected" and connected.warnings == ()


def test_unverified_tls_connects_with_a_warning(
    vcsim_factory: VcsimFactory, source_run: SourceRunner, caplog: pytest.LogCaptureFixture
) -> None:
    sim = vcsim_factory(vms=0, hosts=1, tls=True)
    with caplog.at_level(logging.WARNING, logger="vmfabric.sources.vcenter"):
        run = source_run(sim, verify_tls=False)
        _first_snapshot(run)
    assert "TLS certificate verification is off" in caplog.text
    assert run.events.of(SessionStatus)[1].warnings == (
        "TLS certificate verification is off (verify_tls: false)",
    )


@pytest.mark.skipif(not os.environ.get("VMFABRIC_BENCH"), reason="set VMFABRIC_BENCH=1")
def test_full_read_figure_64_hosts_2000_vms(
    vcsim_factory: VcsimFactory, source_run: SourceRunner
) -> None:
    """Full inventory read time at 64 hosts / 2000 VMs (reported figure; ~15 s to run)."""
    sim = vcsim_factory(hosts=64, vms=2000)
    run = source_run(sim, audit_interval=0.5)
    first = _first_snapshot(run)
    assert len(first.hosts) == 64 and len(first.vms) == 2000
    assert run.source.hint_queries == 64
    reads = [run.source.last_full_read_seconds]
    for _ in range(3):
        count = run.source.full_reads
        run.events.wait(Snapshot, start=len(run.events), timeout=30)
        assert run.source.full_reads > count
        reads.append(run.source.last_full_read_seconds)
    print(
        f"full read 64 hosts/2000 VMs: first (with hints) {reads[0]:.2f} s, "
        f"audits {', '.join(f'{r:.2f}' for r in reads[1:])} s"
    )
    assert max(reads) < 30


# ---- what the intents beyond autovlan read -------------------------------------------------


def test_snapshot_carries_mac_guest_os_folder_and_cluster(
    vcsim_lab: Lab, source_run: SourceRunner
) -> None:
    snap = _first_snapshot(source_run(vcsim_lab.sim))
    vm = next(v for v in snap.vms if v.name == "web-01")
    assert vm.guest_os == "otherGuest"
    assert vm.folder == "/DC0/vm"
    assert vm.cluster == "DC0_C0"
    assert len(vm.macs) == 1 and vm.macs[0].count(":") == 5 and vm.macs[0] == vm.macs[0].lower()
    assert vm.ips == () and vm.tags == () and vm.attributes == ()


def test_guest_address_and_folder_move_arrive_as_changes(
    vcsim_lab: Lab, source_run: SourceRunner
) -> None:
    run = source_run(vcsim_lab.sim)
    _first_snapshot(run)
    ctl, vm_id = vcsim_lab.control, vcsim_lab.control.vm_id("web-01")
    start = len(run.events)
    ctl.set_guest_ip("web-01", "10.0.110.11")
    run.events.wait(VmUpsert, _vm(vm_id, lambda v: v.ips == ("10.0.110.11",)), start=start)
    start = len(run.events)
    ctl.move_to_folder("web-01", "prod")
    _, moved = run.events.wait(VmUpsert, _vm(vm_id, lambda v: v.folder == "/DC0/vm/prod"),
                               start=start)  # fmt: skip
    assert moved.vm.host == "hv1" and moved.vm.ips == ("10.0.110.11",)
    assert run.source.full_reads == 1


def test_custom_attributes_are_named_through_the_custom_fields_manager(
    vcsim_lab: Lab, source_run: SourceRunner
) -> None:
    """vcsim sends no update for SetField: the audit's full read sees it."""
    vcsim_lab.control.set_custom_value("web-01", "owner", "team-a")
    run = source_run(vcsim_lab.sim, audit_interval=1)
    first = _first_snapshot(run)
    vm = next(v for v in first.vms if v.name == "web-01")
    assert vm.attributes == (("owner", "team-a"),)
    vcsim_lab.control.set_custom_value("web-01", "owner", "team-b")
    _, later = run.events.wait(Snapshot, lambda s: s is not first, timeout=10)
    assert next(v for v in later.vms if v.name == "web-01").attribute("owner") == "team-b"


def test_tags_are_read_before_the_snapshot_and_refreshed(
    vcsim_lab: Lab, source_run: SourceRunner
) -> None:
    ctl = vcsim_lab.control
    ctl.tag("web-01", "tier", "web")
    run = source_run(vcsim_lab.sim, tag_refresh=0.5)
    vm_id = ctl.vm_id("web-01")
    snap = _first_snapshot(run)
    assert next(v for v in snap.vms if v.id == vm_id).tags == ("tier:web",)
    start = len(run.events)
    ctl.tag("web-01", "env", "prod")
    run.events.wait(VmUpsert, _vm(vm_id, lambda v: v.tags == ("env:prod", "tier:web")),
                    start=start)  # fmt: skip
    start = len(run.events)
    ctl.untag("web-01", "tier", "web")
    run.events.wait(VmUpsert, _vm(vm_id, lambda v: v.tags == ("env:prod",)), start=start)
    assert not [e for e in run.events.of(VmUpsert) if e.vm.name == "std-01"]  # untouched VMs

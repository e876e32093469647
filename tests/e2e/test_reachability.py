"""Issue "Lab builder and demo", point 5: reachability on the lab follows the VMs.

One leaf-spine lab, one vcsim and one controller for the module (``e2e`` in conftest.py).
The switches learn nothing but what vmfabric writes: edge ports start closed, so a ping
between VMs on different hosts crosses a leaf edge port only when vmfabric has put the
VLAN there. A VM is created in vcsim (the controller sees it through WaitForUpdatesEx and
its host's uplinks through CDP/LLDP hints) and, for the frames, as a namespace on its
host's vSwitch in its VLAN.

The last two tests run ``vmfabric demo`` itself (point 4): it must check its own story,
exit 0 within two minutes, and leave no namespace, process or file behind, also when
Ctrl-C interrupts it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from e2e.conftest import ALLOWED, E2e
from support.controller import wait_for
from vmfabric.demo import Fabric, Watch
from vmfabric.lab import netns as nsx
from vmfabric.lab import topology as tp

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

REACH = 5.0  # seconds a VM may take to answer after its VLAN reached its new port


def until(e2e: E2e, check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``check()``; on timeout, an AssertionError that shows what the leaf
    ports carry and what the controller's store holds, for the diagnosis."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            ports = {f"{s} {p}": sorted(v) for (s, p), v in e2e.fabric.edge_vlans().items() if v}
            vms = [(v["name"], v["host"], v["power_state"], [n["vlan"] for n in v["networks"]])
                   for v in e2e.controller.store.show_vms()]  # fmt: skip
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; "
                                 f"ports: {ports}; store VMs: {vms}")  # fmt: skip
        time.sleep(0.05)
    return time.monotonic() - start


def has(fab: Fabric, vlan: int, host: str) -> bool:
    """True when every leaf port ``host`` is wired to carries ``vlan``."""
    return all(vlan in fab.trunks(*port) for port in fab.ports_of(host))


def answers(fab: Fabric, src: str, dst: str, timeout: float = REACH) -> float:
    """Seconds until ``dst`` answers a ping from ``src``; AssertionError after ``timeout``."""
    return wait_for(lambda: fab.ping(src, dst, count=1, wait=0.5), timeout,
                    f"{dst} to answer a ping from {src}")  # fmt: skip


def lacks(fab: Fabric, vlan: int, port: tuple[str, str]) -> bool:
    return vlan not in fab.trunks(*port)


def carriers(fab: Fabric, vlan: int) -> list[tuple[str, str]]:
    """Every leaf edge port carrying ``vlan``."""
    return [port for port, vlans in fab.edge_vlans().items() if vlan in vlans]


def move(e2e: E2e, vm: str, host: str, peer: str) -> None:
    """vMotion ``vm`` to ``host``: its VLAN reaches the new ports, the ping to ``peer``
    works again, and the old ports (if no other VM needs them) keep the VLAN for the prune
    delay and lose it after."""
    fab = e2e.fabric
    vlan = fab.lab.vms[vm].vlan
    old = set(fab.ports_of(fab.lab.vms[vm].host)) - set(fab.ports_of(fab.lab.vms[peer].host))
    moved = fab.relocate(vm, host)
    until(e2e, lambda: has(fab, vlan, host), 10, f"VLAN {vlan} on {host}'s ports after the move")
    added = time.monotonic()
    answers(fab, vm, peer)
    if added - moved < e2e.prune / 2:  # the check below is only sound well inside the delay
        assert all(vlan in fab.trunks(*port) for port in old), "old port held for the delay"
    for port in old:
        until(e2e, partial(lacks, fab, vlan, port), e2e.prune + 10, f"{port} pruned")
    assert time.monotonic() - moved >= e2e.prune - 0.1, "pruned before the prune delay"
    assert fab.ping(vm, peer, count=2, wait=1.0), "the pruned old port must not matter"


def test_reachability_follows_vms_through_moves(e2e: E2e, vm_cleanup: None) -> None:
    fab = e2e.fabric
    fab.add_portgroup("e2e-move", 110)
    fab.create_vm("mv-a", "hv1", "e2e-move", "10.1.110.1/24")  # leaf1 eth1
    fab.create_vm("mv-b", "hv3", "e2e-move", "10.1.110.2/24")  # leaf2 eth1
    until(e2e, lambda: has(fab, 110, "hv1") and has(fab, 110, "hv3"), 60, "VLAN 110 on both")
    answers(fab, "mv-a", "mv-b", timeout=10)  # leaf1 -> spine -> leaf2
    move(e2e, "mv-a", "hv4", peer="mv-b")  # across leaves: now both behind leaf2
    move(e2e, "mv-b", "hv5", peer="mv-a")  # to the dual-homed host: leaf1 eth3 + leaf2 eth3
    move(e2e, "mv-a", "hv1", peer="mv-b")  # back where it started
    assert sorted(carriers(fab, 110)) == [("leaf1", "eth1"), ("leaf1", "eth3"), ("leaf2", "eth3")]

    def mv_b() -> dict[str, Any]:
        return {v["name"]: v for v in e2e.controller.store.show_vms()}["mv-b"]

    # the store's copy of the inventory follows the switches' plans (the writer's lanes)
    until(e2e, lambda: mv_b()["host"] == "hv5", 30, "show vm: mv-b on hv5")
    vm = mv_b()
    assert vm["host"] == "hv5"
    assert {(a["switch"], a["port"]) for a in vm["attachments"]} == {
        ("leaf1", "eth3"), ("leaf2", "eth3"),
    }  # fmt: skip


def test_power_off_prunes_and_cuts_the_path(e2e: E2e, vm_cleanup: None) -> None:
    """Powered off in vCenter, p-b keeps its lab namespace plugged in (as a VM frozen with
    its vNIC connected would): after the prune delay only the pruned leaf port separates it
    from p-a, so a failing ping proves the prune reached the data path. Powering both on
    again restores the ping: the VLAN, nothing else, made the difference."""
    fab = e2e.fabric
    fab.add_portgroup("e2e-power", 130)
    fab.create_vm("pw-a", "hv2", "e2e-power", "10.1.130.1/24")  # leaf1 eth2
    fab.create_vm("pw-b", "hv4", "e2e-power", "10.1.130.2/24")  # leaf2 eth2
    port_a, port_b = fab.port_of("hv2"), fab.port_of("hv4")
    until(e2e, lambda: has(fab, 130, "hv2") and has(fab, 130, "hv4"), 60, "VLAN 130 on both")
    answers(fab, "pw-a", "pw-b", timeout=10)

    off = fab.power_off("pw-b")
    until(e2e, lambda: e2e.power_state("pw-b") == "poweredOff", 10, "the controller sees pw-b off")
    if time.monotonic() - off < e2e.prune / 2:
        assert 130 in fab.trunks(*port_b), "the VLAN is held for the prune delay"
    until(e2e, lambda: 130 not in fab.trunks(*port_b), e2e.prune + 10, "VLAN 130 pruned (pw-b)")
    assert time.monotonic() - off >= e2e.prune - 0.1, "pruned before the prune delay"
    assert 130 in fab.trunks(*port_a), "pw-a is still on: its port keeps VLAN 130"
    assert not fab.ping("pw-a", "pw-b", count=3, wait=1.0), "VLAN 130 is gone from pw-b's port"

    fab.power_off("pw-a")
    until(e2e, lambda: 130 not in fab.trunks(*port_a), e2e.prune + 10, "VLAN 130 pruned (pw-a)")
    assert carriers(fab, 130) == [], "no VM on: VLAN 130 on no edge port"
    assert not fab.ping("pw-a", "pw-b", count=2, wait=1.0)

    fab.power_on("pw-a")
    fab.power_on("pw-b")
    until(e2e, lambda: has(fab, 130, "hv2") and has(fab, 130, "hv4"), 10, "VLAN 130 back")
    answers(fab, "pw-a", "pw-b", timeout=10)


def test_protected_vlan_stays_off_every_port(e2e: E2e, vm_cleanup: None) -> None:
    """VLAN 1001 is outside the session's allowed 2-1000. Its VMs are placed, seen and
    attached by the controller, yet the VLAN reaches no edge port, before or after a move,
    and the VMs cannot reach each other. A control pair in VLAN 140 on the same hosts (the
    same leaf ports) does reach: only the VLAN's protection differs."""
    fab = e2e.fabric
    assert ALLOWED == "2-1000"
    seen_1001 = Watch(lambda: bool(carriers(fab, 1001)), every=0.05)
    try:
        fab.add_portgroup("e2e-protected", 1001)
        fab.add_portgroup("e2e-control", 140)
        fab.create_vm("pr-a", "hv1", "e2e-protected", "10.1.201.1/24")
        fab.create_vm("pr-b", "hv3", "e2e-protected", "10.1.201.2/24")
        fab.create_vm("ct-a", "hv1", "e2e-control", "10.1.140.1/24")
        fab.create_vm("ct-b", "hv3", "e2e-control", "10.1.140.2/24")
        until(e2e, lambda: e2e.known("pr-a", 1001) and e2e.known("pr-b", 1001), 10,
                 "the controller knows pr-a and pr-b in VLAN 1001")  # fmt: skip
        until(e2e, lambda: has(fab, 140, "hv1") and has(fab, 140, "hv3"), 60, "control VLAN 140")
        answers(fab, "ct-a", "ct-b", timeout=10)
        assert not fab.ping("pr-a", "pr-b", count=3, wait=1.0), "VLAN 1001 must not carry"

        fab.relocate("pr-a", "hv2")  # a move must not add it either
        until(e2e, lambda: e2e.known("pr-a", 1001), 10, "the controller sees pr-a on hv2")
        time.sleep(1.0)  # a wrong add would come within the coalesce window and one tick
        assert not fab.ping("pr-a", "pr-b", count=2, wait=1.0)
        vm = e2e.controller.store.show_vms("pr-b")[0]
        assert {(a["switch"], a["port"]) for a in vm["attachments"]} == {("leaf2", "eth1")}
        assert not [v for v in e2e.controller.store.show_vlans() if v["vlan"] == 1001]
    finally:
        first = seen_1001.stop()
    assert first is None, "VLAN 1001 appeared on an edge port"
    assert carriers(fab, 1001) == []


# ---- `vmfabric demo` itself --------------------------------------------------------------


def _leftovers(lab: str, session: int, workdir: str) -> list[str]:
    """What a demo (process session ``session``) left behind: namespaces, processes, files."""
    found = [ns for ns in nsx.list_netns(tp.prefix(lab))]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            with contextlib.suppress(OSError):
                if os.getsid(int(entry.name)) == session:
                    found.append(f"process {entry.name}")
                elif workdir in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(f"process {entry.name} naming {workdir}")
    return found + ([workdir] if Path(workdir).exists() else [])


def _start_demo() -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "vmfabric", "demo"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip


def _finish(proc: subprocess.Popen[str], lines: list[str], timeout: float) -> str:
    """Read the demo's output to the end (SIGINT to its group after ``timeout``)."""
    killer = threading.Timer(timeout, lambda: os.killpg(proc.pid, signal.SIGINT))
    killer.start()
    try:
        assert proc.stdout is not None
        lines += proc.stdout.readlines()
        proc.wait(30)
    finally:
        killer.cancel()
    return "".join(lines)


def _names(out: str) -> tuple[str, str]:
    workdir = re.search(r"vmfabric demo in (\S+):", out)
    lab = re.search(r"The lab (\S+) is up", out)
    assert workdir and lab, out[-3000:]
    return lab[1], workdir[1]


@pytest.mark.timeout(420)
def test_demo_checks_its_story_and_leaves_nothing_behind() -> None:
    proc = _start_demo()
    out = _finish(proc, [], timeout=360)  # a hang guard, not a speed test (the demo prints
    assert proc.returncode == 0, out[-3000:]  # its own timings; a loaded CI is slower)
    assert "UNEXPECTED" not in out and "demo finished" in out
    assert "web-01 -> web-02 (10.0.110.12): answers, as expected" in out
    assert "pay-01 -> pay-02 (10.0.201.12): no answer, as expected" in out
    assert "VLAN added after the relocate task completed" in out
    assert re.search(r"web UI and REST API: http://127\.0\.0\.1:\d+/ \(up\)", out), out[-3000:]
    lab, workdir = _names(out)
    assert _leftovers(lab, proc.pid, workdir) == []


@pytest.mark.timeout(120)
def test_demo_cleans_up_on_ctrl_c() -> None:
    """Ctrl-C in a terminal sends SIGINT to the whole foreground group: the demo, vcsim and
    the controller. Sent once the controller runs (step 3), it must still remove it all."""
    proc = _start_demo()
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("3. "):
            break
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)
    out = _finish(proc, lines, timeout=60)
    assert proc.returncode == 130, out[-3000:]
    assert "interrupted: cleaning up" in out
    lab, workdir = _names(out)
    assert _leftovers(lab, proc.pid, workdir) == []

"""``vmfabric demo``: vmfabric at work on a real Open vSwitch, narrated for a person.

A private OVS (userspace datapath, its own namespace) stands for leaf switch ``leaf1``
with three hypervisor-facing edge ports; a static inventory file stands for the VM
manager. The demo starts ``vmfabric run`` as a separate process, prints what the ``show``
commands say, moves a VM by editing the inventory (a vMotion), and shows the VLAN
following it and the old port pruned after the prune delay. Everything it starts is
stopped by PID and removed, also on Ctrl-C.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from rich.console import Console
from rich.rule import Rule

from vmfabric.errors import TransientError
from vmfabric.lab.ovs import OvsInstance, unique_name

PRUNE = 3.0
console = Console(highlight=False)
INVENTORY = {
    "hosts": [
        {"name": "esx1", "nics": ["vmnic0"]},
        {"name": "esx2", "nics": ["vmnic0"]},
        {"name": "esx3", "nics": ["vmnic0"]},
    ],
    "portgroups": [
        {"name": "web", "vlan": 110},
        {"name": "app", "vlan": 120},
        {"name": "payments", "vlan": 1001},
    ],
    "vms": [
        {"name": "web-01", "host": "esx1", "power": "on", "portgroups": ["web"]},
        {"name": "app-01", "host": "esx2", "power": "on", "portgroups": ["app"]},
        {"name": "pay-01", "host": "esx3", "power": "on", "portgroups": ["payments"]},
    ],
}


def _config(ovs: OvsInstance) -> dict[str, object]:
    return {
        "store": "sqlite:///vmfabric.db",
        "engine": {"prune_delay": f"{PRUNE:g}s"},
        "sessions": [
            {"name": "dc1", "kind": "static", "path": "inventory.yaml",
             "allowed_vlans": "2-1000"},
        ],
        "switches": [
            {"name": "leaf1", "driver": "ovs", "ovsdb": ovs.db_url, "bridge": "leaf1",
             "edge_ports": ["e1", "e2", "e3"]},
        ],
        "links": [
            {"host": f"esx{i}", "nic": "vmnic0", "switch": "leaf1", "port": f"e{i}"}
            for i in (1, 2, 3)
        ],
    }  # fmt: skip


class Demo:
    def __init__(self, workdir: Path, ovs: OvsInstance, pause: bool) -> None:
        self.dir = workdir
        self.ovs = ovs
        self.pause = pause
        self.cli = [sys.executable, "-m", "vmfabric"]
        self.proc: subprocess.Popen[bytes] | None = None

    def say(self, text: str) -> None:
        console.print(Rule(style="dim"))
        console.print(f"[bold]{text}[/bold]")
        if self.pause:
            input("  (Enter to continue) ")

    def show(self, *args: str) -> None:
        argv = [*self.cli, "show", *args, "-c", str(self.dir / "vmfabric.yaml")]
        console.print(f"[dim]$ vmfabric show {' '.join(args)}[/dim]")
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
        console.print(done.stdout.rstrip() or done.stderr.rstrip(), markup=False)

    def trunks(self, port: str) -> set[int]:
        text = self.ovs.vsctl("get", "Port", port, "trunks").strip("[] \n")
        return {int(v) for v in text.split(",") if v.strip()} - {4095}

    def wait(self, check: Callable[[], bool], timeout: float, what: str) -> float:
        start = time.monotonic()
        while not check():
            if time.monotonic() - start > timeout:
                raise TransientError(f"demo: timed out waiting for {what}")
            time.sleep(0.02)
        return time.monotonic() - start

    def start_controller(self) -> None:
        log = (self.dir / "controller.log").open("wb")
        argv = [*self.cli, "run", "-v", "-c", str(self.dir / "vmfabric.yaml")]
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def stop_controller(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def run(self) -> None:
        self.ovs.add_bridge("leaf1")
        for port in ("e1", "e2", "e3"):
            self.ovs.add_edge_port("leaf1", port, trunks={4095})
        self.ovs.vsctl("set", "Port", "e1", "trunks=[50]")  # configured by a person
        inv = self.dir / "inventory.yaml"
        inv.write_text(yaml.safe_dump(INVENTORY, sort_keys=False))
        (self.dir / "vmfabric.yaml").write_text(yaml.safe_dump(_config(self.ovs), sort_keys=False))
        self.say(
            "1. A leaf switch (a real Open vSwitch) with three hypervisor ports. e1 already "
            "carries VLAN 50, set by a person: vmfabric will never remove it. The others "
            "carry nothing yet."
        )
        for port in ("e1", "e2", "e3"):
            console.print(f"  leaf1 {port}: VLANs {sorted(self.trunks(port)) or 'none'}")
        self.say(
            "2. Start the controller. The inventory has web-01 (VLAN 110) on esx1, app-01 "
            "(VLAN 120) on esx2 and pay-01 (VLAN 1001) on esx3. Allowed VLANs are 2-1000, "
            "so payments' VLAN 1001 is protected: it must never reach a port."
        )
        self.start_controller()
        took = self.wait(lambda: 110 in self.trunks("e1") and 120 in self.trunks("e2"), 30,
                         "the first VLANs")  # fmt: skip
        console.print(f"  converged {took:.2f}s after start")
        self.show("vm")
        self.show("interface")
        self.show("vlan")
        self.say("3. vMotion: web-01 moves from esx1 to esx2 (the inventory file changes).")
        moved = yaml.safe_load(inv.read_text())
        moved["vms"][0]["host"] = "esx2"
        inv.write_text(yaml.safe_dump(moved, sort_keys=False))
        took = self.wait(lambda: 110 in self.trunks("e2"), 10, "VLAN 110 on e2")
        console.print(f"  VLAN 110 is on e2 {took * 1000:.0f} ms after the move.")
        console.print(f"  e1 keeps it for the prune delay ({PRUNE:g}s), in case the VM returns:")
        self.show("interface")
        took = self.wait(lambda: 110 not in self.trunks("e1"), PRUNE + 10, "e1 pruned")
        self.say(f"4. {took:.1f}s later the prune delay has run out: e1 is pruned. VLAN 50 stays.")
        self.show("interface")
        self.show("vm", "web-01", "--detail")
        self.say("5. The audit log says what changed, when and why.")
        self.show("audit")
        pay = "e3" if 1001 in self.trunks("e3") else None
        console.print(
            f"  protected VLAN 1001 on any port: {'YES (bug!)' if pay else 'no, as it must be'}"
        )


def run_demo(pause: bool = False) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="vmfabric-demo-"))
    ovs = OvsInstance(unique_name("vfd"))
    demo = Demo(workdir, ovs, pause)
    try:
        ovs.start()
        demo.run()
        console.print(Rule(style="dim"))
        console.print("[bold green]demo finished[/bold green]: cleaning up")
    except KeyboardInterrupt:
        console.print("interrupted: cleaning up")
        raise
    finally:
        demo.stop_controller()
        ovs.stop()
        shutil.rmtree(workdir, ignore_errors=True)

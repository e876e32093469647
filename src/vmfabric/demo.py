"""``vmfabric demo``: vmfabric at work on a namespace lab and a vCenter simulator, narrated.

What runs (all real, all local):

- the built-in ``leaf-spine`` lab (``underlay: none``): two leaves and two spines (Open
  vSwitch bridges, RSTP), five hypervisors (hv5 dual-homed), lldpd everywhere;
- vcsim with hosts named like the lab's hypervisors. Its ``QueryNetworkHint`` answers
  (CDP for some hosts, LLDP for the others) are read from the lab's real LLDP neighbours,
  so vmfabric learns the uplinks from the simulator exactly as the wiring is;
- ``vmfabric run`` as a separate process, so ``vmfabric show`` works from outside.

VMs are created in vcsim and, for the frames, as namespaces plugged into their host's
vSwitch in their port group's VLAN. The demo pings between VMs, moves one (vcsim
relocate + lab move), shows the VLAN following it and the old port pruned, and shows a
VM whose VLAN is outside ``allowed_vlans`` getting nothing. It checks every expectation
(a failed one ends the demo with exit 1) and removes everything it started, by PID and
by name, also on Ctrl-C and SIGTERM.

``Fabric`` (lab + simulator driven as one) is shared with the end-to-end tests.
``run_static_demo`` is the older single-switch demo with a static inventory file
(``vmfabric demo --static``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import yaml
from rich.console import Console
from rich.rule import Rule

from vmfabric.core.errors import ConfigError, PermanentError, TransientError
from vmfabric.demo_groups import GroupsAct
from vmfabric.lab import builder
from vmfabric.lab import netns as nsx
from vmfabric.lab import topology as tp
from vmfabric.lab.builder import CLOSED_VLAN, LabState
from vmfabric.lab.ovs import OvsInstance, unique_name
from vmfabric.lab.vcsim import Vcsim, VcsimControl, build_vcsim, write_hints

console = Console(highlight=False)

PRUNE = 5.0
ALLOWED = "2-1000"
PASSWORD_ENV = "VMFABRIC_DEMO_PASSWORD"  # noqa: S105 (a variable name)
SESSION = "vc1"
PROTECTED = 1001
DEMO_VMS = (  # name, host, port group, address
    ("pay-01", "hv4", "payments", "10.0.201.11/24"),
    ("pay-02", "hv1", "payments", "10.0.201.12/24"),
    ("web-01", "hv1", "web", "10.0.110.11/24"),
    ("web-02", "hv3", "web", "10.0.110.12/24"),
    ("app-01", "hv2", "app", "10.0.120.11/24"),
)

HintsDict = dict[str, dict[str, dict[str, dict[str, str]]]]


# ---- the lab and the simulator as one --------------------------------------------------


def lab_hosts(lab: LabState) -> list[str]:
    """The lab's hypervisors, in topology order."""
    return [node.name for node in lab.nodes.values() if node.kind == tp.Kind.HOST]


def lab_hints(lab: LabState) -> HintsDict:
    """CDP/LLDP answers for the simulator, read from the lab's real LLDP neighbours.

    The simulator's hosts carry the distributed switch on vmnic1 and up (vmnic0 sits on
    the standard vSwitch0), so a hypervisor's i-th lab NIC answers as ``vmnic<i+1>``.
    Hosts take turns answering CDP and LLDP, as in a data center with mixed switches.
    """
    hints: HintsDict = {}
    for index, host in enumerate(lab_hosts(lab)):
        heard = builder.neighbors(lab, host)
        nics: dict[str, dict[str, dict[str, str]]] = {}
        for position, port in enumerate(lab.node(host).ports):
            if port.name not in heard:
                raise PermanentError(f"lab {lab.name}: {host} {port.name} hears no LLDP neighbour")
            system, port_id = heard[port.name]
            mgmt = (lab.node(system).mgmt_ip or "").split("/")[0]
            if index % 2 == 0:
                answer = {"cdp": {"devId": system, "portId": port_id, "address": mgmt}}
            else:
                answer = {"lldp": {"chassisId": tp.mac(lab.topology, system), "portId": port_id,
                                   "systemName": system, "mgmtAddress": mgmt}}  # fmt: skip
            nics[f"vmnic{position + 1}"] = answer
        hints[host] = nics
    return hints


def sim_nics(lab: LabState) -> int:
    """pnics per simulated host: vmnic0 for vSwitch0 plus one per lab NIC (at least 2)."""
    return max(2, 1 + max((len(lab.node(host).ports) for host in lab_hosts(lab)), default=1))


@dataclass
class Fabric:
    """The namespace lab and vcsim, driven together: each VM action is done in both.

    Build it with ``Fabric.build(stack, ...)``: everything it starts is registered on the
    ``ExitStack`` (lab down, simulator stopped) before it starts, so closing the stack
    removes it whatever happened.
    """

    lab: LabState
    sim: Vcsim
    control: VcsimControl
    hints: HintsDict
    portgroups: dict[str, int] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        stack: contextlib.ExitStack,
        *,
        name: str,
        root: Path,
        workdir: Path,
        binary: Path | None = None,
    ) -> Fabric:
        if builder.is_up(name, root):
            raise ConfigError(f"lab {name!r} is already up under {root}: not touching it")
        stack.callback(builder.down, name, root)
        lab = builder.up(None, name=name, underlay="none", root=root)
        hints = lab_hints(lab)
        hints_file = workdir / "hints.json"
        write_hints(hints_file, hints)
        sim = Vcsim(host_names=lab_hosts(lab), vms=0, nics=sim_nics(lab), hints_file=hints_file,
                    binary=binary)  # fmt: skip
        stack.callback(sim.cleanup)
        sim.start()
        control = VcsimControl.of(sim)
        stack.callback(control.close)
        return cls(lab, sim, control, hints)

    # -- configuration

    def switch_configs(self) -> list[dict[str, Any]]:
        """One ``switches`` entry per leaf: its lab OVSDB socket, bridge and edge ports."""
        return [
            {"name": node.name, "driver": "ovs", "ovsdb": node.ovsdb, "bridge": node.bridge,
             "edge_ports": list(node.edge_ports),
             "mgmt_address": (node.mgmt_ip or "").split("/")[0]}
            for node in self.lab.nodes.values() if node.edge_ports
        ]  # fmt: skip

    def config(
        self, store: Path, *, prune: float = PRUNE, allowed: str = ALLOWED,
        password_env: str = PASSWORD_ENV, coalesce: str = "20ms",
    ) -> dict[str, Any]:  # fmt: skip
        """A vmfabric.yaml for this fabric. No static links: uplinks come from CDP/LLDP."""
        session = {"name": SESSION, "kind": "vcenter", "url": self.sim.url,
                   "username": self.sim.username, "password": f"env:{password_env}",
                   "allowed_vlans": allowed}  # fmt: skip
        return {
            "store": f"sqlite:///{store}",
            "engine": {"prune_delay": f"{prune * 1000:.0f}ms", "coalesce": coalesce},
            "sessions": [session],
            "switches": self.switch_configs(),
        }

    # -- the admin's actions, in vCenter and in the lab

    def add_portgroup(self, name: str, vlan: int) -> None:
        self.control.add_dvportgroup(name, vlan=vlan)
        self.portgroups[name] = vlan

    def create_vm(self, name: str, host: str, portgroup: str, ip: str) -> float:
        """Plug VM ``name`` into ``host`` in its port group's VLAN, then create and power it
        on in vcsim; returns the monotonic time the power-on task completed."""
        builder.add_vm(self.lab, name, host, self.portgroups[portgroup], ip)
        self.control.create_vm(name, host, portgroup, power_on=False)
        # vcsim (govmomi 0.24) may announce a new VM before it has set runtime.host and then
        # never report the host (seen in about one VM in four created back to back): a
        # relocate to the same host makes it send runtime.host.
        self.control.relocate(name, host)
        return self.power_on(name)

    def relocate(self, name: str, host: str) -> float:
        """vMotion: the relocate task in vcsim, then the VM's namespace moves in the lab.
        Returns the monotonic time the relocate task completed."""
        self.control.relocate(name, host)
        done = time.monotonic()
        builder.move_vm(self.lab, name, host)
        return done

    def power_off(self, name: str) -> float:
        """Power the VM off in vcsim (its lab namespace stays); returns when it completed."""
        self.control.power_off(name)
        return time.monotonic()

    def power_on(self, name: str) -> float:
        self.control.power_on(name)
        return time.monotonic()

    def destroy(self, name: str) -> None:
        """Delete the VM in vcsim and its namespace in the lab."""
        try:
            self.control.destroy(name)
        finally:
            builder.remove_vm(self.lab, name)

    # -- what the network does

    def ip(self, vm: str) -> str:
        return self.lab.vms[vm].ip.split("/")[0]

    def ping(self, src: str, dst: str, count: int = 1, wait: float = 1.0) -> bool:
        """True if ``dst`` answers at least one of ``count`` pings from ``src``'s namespace."""
        return nsx.ping(self.lab.vms[src].netns, self.ip(dst), count=count, wait=wait)

    def ports_of(self, host: str) -> list[tuple[str, str]]:
        """The (switch, port) pairs ``host``'s NICs are wired to."""
        pairs = [port.peer.split(":", 1) for port in self.lab.node(host).ports]
        return [(switch, port) for switch, port in pairs]

    def port_of(self, host: str) -> tuple[str, str]:
        """The single (switch, port) of a single-homed host."""
        ports = self.ports_of(host)
        if len(ports) != 1:
            raise ConfigError(f"{host} has {len(ports)} uplinks, not one")
        return ports[0]

    def trunks(self, switch: str, port: str) -> set[int]:
        """VLANs a leaf port carries now (read from OVSDB; the closed placeholder dropped)."""
        node = self.lab.node(switch)
        out = nsx.run(["ovs-vsctl", f"--db={node.ovsdb}", "--timeout=10", "get", "port", port,
                       "trunks"]).stdout  # fmt: skip
        return {int(v) for v in re.findall(r"\d+", out)} - {CLOSED_VLAN}

    def edge_vlans(self) -> dict[tuple[str, str], set[int]]:
        """Every leaf edge port and the VLANs it carries."""
        return {(node.name, port): self.trunks(node.name, port)
                for node in self.lab.nodes.values() for port in node.edge_ports}  # fmt: skip


def poll(check: Callable[[], bool], timeout: float, what: str, every: float = 0.02) -> float:
    """Wait until ``check()``; return the monotonic time it was first seen true."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TransientError(f"demo: timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)
    return time.monotonic()


class Watch:
    """Polls ``check`` in a thread from now on and records when it first held, so that a
    timing is measured from an earlier event even while the caller does something else."""

    def __init__(self, check: Callable[[], bool], every: float = 0.02) -> None:
        self._check = check
        self._every = every
        self._stop = threading.Event()
        self.seen: float | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                if self._check():
                    self.seen = time.monotonic()
                    return
                time.sleep(self._every)
        except Exception as exc:  # surfaced by wait()
            self.error = exc

    def stop(self) -> float | None:
        """Stop watching; the time ``check`` first held, or None if it never did."""
        self._stop.set()
        self._thread.join(5)
        if self.error is not None:
            raise self.error
        return self.seen

    def wait(self, timeout: float, what: str) -> float:
        """The time ``check`` first held; TransientError if not within ``timeout``."""
        self._thread.join(timeout)
        self._stop.set()
        self._thread.join(5)
        if self.error is not None:
            raise self.error
        if self.seen is None:
            raise TransientError(f"demo: timed out after {timeout:g}s waiting for {what}")
        return self.seen


API_TOKEN_ENV = "VMFABRIC_DEMO_API_TOKEN"  # noqa: S105 (the variable's name, not a token)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ---- narration --------------------------------------------------------------------------


class Narrator:
    """Prints steps and ``vmfabric show`` output; runs ``vmfabric run`` as a child process."""

    def __init__(self, workdir: Path, pause: bool, env: dict[str, str] | None = None) -> None:
        self.dir = workdir
        self.pause = pause
        self.cli = [sys.executable, "-m", "vmfabric"]
        self.env = dict(os.environ, **(env or {}))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.dir / "vmfabric.yaml"

    def say(self, text: str) -> None:
        console.print(Rule(style="dim"))
        console.print(f"[bold]{text}[/bold]")
        if self.pause:
            input("  (Enter to continue) ")

    def note(self, text: str) -> None:
        console.print(f"  {text}")

    def vmfabric(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [*self.cli, *args, "-c", str(self.config_path)]
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60,
                              env=self.env)  # fmt: skip

    def show(self, *args: str) -> None:
        console.print(f"[dim]$ vmfabric show {' '.join(args)}[/dim]")
        done = self.vmfabric("show", *args)
        console.print(done.stdout.rstrip() or done.stderr.rstrip(), markup=False, soft_wrap=True)

    def show_json(self, *args: str) -> Any:
        done = self.vmfabric("show", *args, "--json")
        if done.returncode != 0:
            raise PermanentError(f"vmfabric show {' '.join(args)}: {done.stderr.strip()}")
        return json.loads(done.stdout)

    def start_controller(self) -> None:
        with (self.dir / "controller.log").open("wb") as log:
            argv = [*self.cli, "run", "-v", "-c", str(self.config_path)]
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env)

    def stop_controller(self) -> None:
        """SIGTERM the controller by its PID (SIGKILL after 15 s)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def check_controller(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            tail = (self.dir / "controller.log").read_text(errors="replace").splitlines()[-3:]
            raise PermanentError(f"vmfabric run exited ({self.proc.returncode}): {tail}")


def _vlans(vlans: set[int]) -> str:
    return ",".join(str(v) for v in sorted(vlans)) if vlans else "none (closed)"


class FabricDemo(Narrator):
    """The steps of ``vmfabric demo`` on a ``Fabric``."""

    def __init__(self, workdir: Path, fabric: Fabric, pause: bool, password: str) -> None:
        self.api_token = secrets.token_urlsafe(24)
        super().__init__(
            workdir, pause, env={PASSWORD_ENV: password, API_TOKEN_ENV: self.api_token}
        )
        self.fab = fabric
        self.timings: list[tuple[str, str]] = []
        self.api_url = ""

    def timing(self, what: str, seconds: float) -> str:
        text = f"{max(seconds, 0.0) * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"
        self.timings.append((what, text))
        return text

    def has(self, vlan: int, host: str) -> Callable[[], bool]:
        """True when every port ``host`` is wired to carries ``vlan``."""
        return lambda: all(vlan in self.fab.trunks(*sp) for sp in self.fab.ports_of(host))

    def lacks(self, vlan: int, switch: str, port: str) -> Callable[[], bool]:
        return lambda: vlan not in self.fab.trunks(switch, port)

    def ping_until(self, src: str, dst: str, timeout: float) -> float:
        return poll(lambda: self.fab.ping(src, dst, count=1, wait=0.2), timeout,
                    f"{dst} to answer a ping from {src}", every=0.0)  # fmt: skip

    def run(self) -> None:
        self.step_lab()
        self.step_simulator()
        self.step_controller()
        self.step_vms()
        self.say(
            "5. web-01 (hv1, behind leaf1) pings web-02 (hv3, behind leaf2): VLAN 110 "
            "crosses the spines."
        )
        self.expect_ping("web-01", "web-02", ok=True)
        moved, old = self.step_vmotion()
        self.step_prune(moved, old)
        self.step_protected()
        GroupsAct(self).run()
        self.check_controller()

    def step_controller(self) -> None:
        config = self.fab.config(self.dir / "vmfabric.db")
        port = _free_port()
        config["api"] = {"listen": f"127.0.0.1:{port}", "token": f"env:{API_TOKEN_ENV}"}
        self.api_url = f"http://127.0.0.1:{port}/"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        self.say(
            f"3. Start the controller (vmfabric run, a separate process). Its config names "
            f"vcsim as session {SESSION} (password from ${PASSWORD_ENV}, allowed VLANs "
            f"{ALLOWED}, prune delay {PRUNE:g}s) and leaf1/leaf2 with their lab OVSDB sockets "
            "and edge ports. No static links: the uplinks come from CDP/LLDP."
        )
        started = time.monotonic()
        self.start_controller()
        synced = poll(self._in_sync, 60, "the vCenter session in sync", every=0.3)
        took = self.timing("controller start to session in sync", synced - started)
        self.note(f"session {SESSION} in sync {took} after the start; uplinks learned:")
        poll(self._api_up, 30, "the REST API", every=0.2)
        self.note(f"web UI and REST API: {self.api_url} (up)")
        self.note(f"API token: {self.api_token}")
        self.show("session")
        self.show("host")

    def step_vms(self) -> None:
        fab = self.fab
        self.say(
            "4. The admin creates distributed port groups web (VLAN 110), app (VLAN 120) and "
            "payments (VLAN 1001, outside the allowed 2-1000: protected), then powers on VMs. "
            "Each VM is also a namespace in the lab, plugged into its host's vSwitch in its "
            "VLAN."
        )
        for name, vlan in (("web", 110), ("app", 120), ("payments", 1001)):
            fab.add_portgroup(name, vlan)
        for name, host, portgroup, ip in DEMO_VMS:
            vlan = fab.portgroups[portgroup]
            where = ", ".join(f"{s} {p}" for s, p in fab.ports_of(host))
            label = f"{name} on {host} ({portgroup}, VLAN {vlan}, {ip})"
            if vlan == PROTECTED:
                fab.create_vm(name, host, portgroup, ip)
                self.note(f"{label}: VLAN {vlan} is outside {ALLOWED}, {where} must not get it")
                continue
            watch = Watch(self.has(vlan, host))
            done = fab.create_vm(name, host, portgroup, ip)
            seen = watch.wait(15, f"VLAN {vlan} on {where}")
            took = self.timing(f"VLAN {vlan} on {where} after {name}'s power-on task", seen - done)
            self.note(f"{label}: VLAN {vlan} on {where} {took} after the power-on task")
        self.check_controller()
        self.show("vm")
        self.show("interface")
        self.show("vlan")

    def step_vmotion(self) -> tuple[float, tuple[str, str]]:
        fab = self.fab
        old, new = fab.port_of("hv1"), fab.port_of("hv2")
        self.say(
            f"6. vMotion: web-01 moves from hv1 ({old[0]} {old[1]}) to hv2 ({new[0]} "
            f"{new[1]}): a relocate task in vCenter, and its namespace moves to hv2's vSwitch "
            "in the lab."
        )
        watch = Watch(self.has(110, "hv2"))
        moved = fab.relocate("web-01", "hv2")
        seen = watch.wait(10, f"VLAN 110 on {new[0]} {new[1]}")
        took = self.timing("VLAN added after the relocate task completed", seen - moved)
        self.note(f"VLAN 110 on {new[0]} {new[1]} {took} after the relocate task completed")
        answered = self.ping_until("web-01", "web-02", 10)
        took = self.timing("ping answered after the relocate task completed", answered - moved)
        self.note(f"web-01 answers pings again {took} after the relocate task completed")
        self.expect_ping("web-01", "web-02", ok=True)
        held = "yes" if 110 in fab.trunks(*old) else "NO"
        self.note(
            f"{old[0]} {old[1]} still carries VLAN 110 during the prune delay ({PRUNE:g}s), "
            f"in case web-01 comes back: {held}"
        )
        self.show("interface")
        return moved, old

    def step_prune(self, moved: float, old: tuple[str, str]) -> None:
        gone = poll(self.lacks(110, *old), PRUNE + 15, f"VLAN 110 off {old[0]} {old[1]}", 0.05)
        took = self.timing(f"old port pruned after the relocate (delay {PRUNE:g}s)", gone - moved)
        self.say(
            f"7. {took} after the move the prune delay has run out: {old[0]} {old[1]} no "
            "longer carries VLAN 110 (it is closed again)."
        )
        self.show("interface")
        self.show("vlan", "--dynamic")
        self.show("vm", "web-01", "--detail")

    def step_protected(self) -> None:
        self.say(
            "8. pay-01 (hv4, leaf2) and pay-02 (hv1, leaf1) are in port group payments, VLAN "
            f"1001, outside allowed_vlans {ALLOWED}. vmfabric knows where they are but never "
            "puts VLAN 1001 on a port, so they cannot reach each other: a failing ping is the "
            "expected outcome."
        )
        self.show("vm", "pay-01", "--detail")
        self.expect_ping("pay-01", "pay-02", ok=False)
        carriers = [f"{s} {p}" for (s, p), vlans in self.fab.edge_vlans().items()
                    if PROTECTED in vlans]  # fmt: skip
        if carriers:
            raise PermanentError(f"protected VLAN {PROTECTED} is on {', '.join(carriers)}")
        self.note(f"VLAN {PROTECTED} on any leaf edge port: none, as it must be")

    def step_lab(self) -> None:
        fab = self.fab
        self.say(
            f"1. The lab {fab.lab.name} is up ({fab.lab.up_seconds:g}s): leaf1, leaf2, spine3, "
            "spine4 are Open vSwitch bridges with RSTP; hv1-hv5 are hypervisors (hv5 "
            "dual-homed, active-backup bond). What each hypervisor NIC hears over LLDP:"
        )
        for host in lab_hosts(fab.lab):
            for nic, (system, port) in builder.neighbors(fab.lab, host).items():
                self.note(f"{host} {nic} -> {system} {port}")
        for (switch, port), vlans in fab.edge_vlans().items():
            self.note(f"{switch} {port}: VLANs {_vlans(vlans)}")

    def step_simulator(self) -> None:
        fab = self.fab
        self.say(
            f"2. vCenter simulator (vcsim) at {fab.sim.url} with hosts "
            f"{', '.join(lab_hosts(fab.lab))}. Its hosts carry the distributed switch on "
            "vmnic1 and up; their CDP/LLDP answers (QueryNetworkHint) are the lab's real wiring:"
        )
        for host, nics in fab.hints.items():
            for nic, answer in nics.items():
                kind, data = next(iter(answer.items()))
                switch = data.get("devId") or data.get("systemName")
                self.note(f"{host} {nic} -> {switch} {data['portId']} (over {kind.upper()})")

    def _in_sync(self) -> bool:
        self.check_controller()
        if not self.config_path.exists():
            return False
        done = self.vmfabric("show", "session", "--json")
        if done.returncode == 1:  # no store yet: the controller is still starting
            return False
        if done.returncode != 0:
            raise PermanentError(f"vmfabric show session: {done.stderr.strip()}")
        sessions = json.loads(done.stdout)
        return bool(sessions) and bool(
            sessions[0].get("in_sync", sessions[0]["state"] == "connected")
        )

    def expect_ping(self, src: str, dst: str, ok: bool) -> None:
        """Ping ``dst`` from ``src`` (3 echoes) and raise if the outcome is not ``ok``."""
        fab = self.fab
        netns = fab.lab.vms[src].netns
        console.print(f"[dim]$ ip netns exec {netns} ping -c 3 -W 1 {fab.ip(dst)}[/dim]")
        got = fab.ping(src, dst, count=3, wait=1.0)
        if ok and not got:
            got = fab.ping(src, dst, count=3, wait=1.0)  # one more go on a loaded machine
        verdict = "answers" if got else "no answer"
        expected = "as expected" if got == ok else "UNEXPECTED"
        self.note(f"{src} -> {dst} ({fab.ip(dst)}): {verdict}, {expected}")
        if got != ok:
            raise PermanentError(f"demo: ping {src} -> {dst} {'failed' if ok else 'succeeded'}")

    def _api_up(self) -> bool:
        try:
            with urllib.request.urlopen(self.api_url + "healthz", timeout=2) as answer:  # noqa: S310 (loopback)
                return bool(answer.status == 200)
        except OSError:
            return False

    def keep_ui_open(self) -> None:
        """In a terminal, the fabric stays up for the web UI until Enter or Ctrl-C."""
        if not sys.stdin.isatty() or not self.api_url:
            return
        console.print(Rule(style="dim"))
        console.print(f"[bold]The web UI is at {self.api_url}[/bold] (token {self.api_token}).")
        with contextlib.suppress(EOFError):
            input("  Enter (or Ctrl-C) ends the demo and removes the lab: ")

    def summary(self, wall: float) -> None:
        console.print(Rule(style="dim"))
        console.print("[bold]Timings[/bold]")
        for what, text in self.timings:
            self.note(f"{text:>8}  {what}")
        self.note(f"{wall:7.1f}s  demo wall time (lab, simulator and controller included)")


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """Cleanup must not be cut short by a second Ctrl-C or a SIGTERM."""
    old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt, so it cleans up as Ctrl-C does;
    so does SIGINT even when it was ignored (a background job of a non-interactive shell
    starts with SIGINT ignored, and its children, the controller, would still stop)."""
    previous = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, _interrupt),
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_demo(pause: bool = False) -> float:
    """``vmfabric demo``: the lab + vcsim + controller demo. Returns its wall time (s)."""
    with sigterm_as_interrupt():
        return _run_demo(pause)


def _run_demo(pause: bool) -> float:
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="vmfabric-demo-"))
    workdir.chmod(0o755)  # lldpd drops privileges: the lab's state dir below must be searchable
    stack = contextlib.ExitStack()
    stack.callback(shutil.rmtree, workdir, ignore_errors=True)
    try:
        console.print(f"[bold]vmfabric demo[/bold] in {workdir}: building the lab and the vCenter "
                      "simulator...")  # fmt: skip
        binary = build_vcsim()  # no-op when build/vcsim is newer than its source
        fabric = Fabric.build(stack, name=f"demo{uuid.uuid4().hex[:5]}", root=workdir / "lab",
                              workdir=workdir, binary=binary)  # fmt: skip
        demo = FabricDemo(workdir, fabric, pause, fabric.sim.password)
        stack.callback(demo.stop_controller)
        demo.run()
        demo.summary(time.monotonic() - started)
        demo.keep_ui_open()
        console.print(Rule(style="dim"))
        console.print("[bold green]demo finished[/bold green]: cleaning up")
    except KeyboardInterrupt:
        console.print("interrupted: cleaning up")
        raise
    finally:
        with _signals_ignored():
            stack.close()
    return time.monotonic() - started


# ---- the static-inventory demo (vmfabric demo --static) --------------------------------

STATIC_PRUNE = 3.0
console = Console(highlight=False)
STATIC_INVENTORY = {
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


def _static_config(ovs: OvsInstance) -> dict[str, object]:
    return {
        "store": "sqlite:///vmfabric.db",
        "engine": {"prune_delay": f"{STATIC_PRUNE:g}s"},
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


class StaticDemo:
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
        console.print(done.stdout.rstrip() or done.stderr.rstrip(), markup=False, soft_wrap=True)

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
        inv.write_text(yaml.safe_dump(STATIC_INVENTORY, sort_keys=False))
        (self.dir / "vmfabric.yaml").write_text(
            yaml.safe_dump(_static_config(self.ovs), sort_keys=False)
        )
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
        console.print(
            f"  e1 keeps it for the prune delay ({STATIC_PRUNE:g}s), in case the VM returns:"
        )
        self.show("interface")
        took = self.wait(lambda: 110 not in self.trunks("e1"), STATIC_PRUNE + 10, "e1 pruned")
        self.say(f"4. {took:.1f}s later the prune delay has run out: e1 is pruned. VLAN 50 stays.")
        self.show("interface")
        self.show("vm", "web-01", "--detail")
        self.say("5. The audit log says what changed, when and why.")
        self.show("audit")
        pay = "e3" if 1001 in self.trunks("e3") else None
        console.print(
            f"  protected VLAN 1001 on any port: {'YES (bug!)' if pay else 'no, as it must be'}"
        )


def run_static_demo(pause: bool = False) -> None:
    """The static-inventory demo: one OVS leaf, an inventory file as the VM manager."""
    with sigterm_as_interrupt():
        _run_static_demo(pause)


def _run_static_demo(pause: bool) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="vmfabric-demo-"))
    ovs = OvsInstance(unique_name("vfd"))
    demo = StaticDemo(workdir, ovs, pause)
    try:
        ovs.start()
        demo.run()
        console.print(Rule(style="dim"))
        console.print("[bold green]demo finished[/bold green]: cleaning up")
    except KeyboardInterrupt:
        console.print("interrupted: cleaning up")
        raise
    finally:
        with _signals_ignored():
            demo.stop_controller()
            ovs.stop()
            shutil.rmtree(workdir, ignore_errors=True)

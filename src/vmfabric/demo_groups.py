"""The demo's security-group act: a 3-tier app whose policy follows its VMs.

Played on the running ``vmfabric demo`` (``demo.FabricDemo``): its lab, its leaves and its
controller process. A shop app (``shop-web``, ``shop-app``, ``shop-db``) shares one VLAN
(130) on the lab's hypervisors. Its VMs come from a second session, a static inventory
file with addresses and tags (what a small KVM cluster without a manager looks like).
The running controller takes the new session, the groups, the policy and an ``ovs-dfw``
firewall on every hypervisor's vSwitch from its configuration file on SIGHUP, so the same
process then provisions VLAN 130 on the leaves and enforces the policy at the VMs' ports.

Then, with real TCP connections between the VMs' namespaces (a listener on 8080 and 5432
in each):

- web->app tcp/8080 and app->db tcp/5432 connect, web->db is dropped;
- a vMotion (db moves next to web, behind the other leaf) keeps the policy;
- a tag change makes the web VM an app VM: its access changes at once (measured).

Every expectation is checked (an unexpected outcome ends the demo with exit 1). The
listeners are stopped by PID when the act ends, whatever happened; the VMs go with the lab.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from vmfabric.core.errors import PermanentError, TransientError
from vmfabric.lab import builder
from vmfabric.lab import netns as nsx
from vmfabric.lab import topology as tp

if TYPE_CHECKING:
    from vmfabric.demo import FabricDemo

VLAN = 130
SESSION = "apps"
PORTGROUP = "shop"
SHOP = (  # VM, host, tier, address (one VLAN, hosts behind both leaves)
    ("shop-web", "hv1", "web", "10.0.130.11"),
    ("shop-app", "hv3", "app", "10.0.130.12"),
    ("shop-db", "hv3", "db", "10.0.130.13"),
)
PORTS = (8080, 5432)
COOKIE = 0x766D66 << 40  # ovs-dfw's flow cookies: 0x766d66.. ("vmf")
INGRESS = 9  # the low byte of the cookie of a VM address's ingress classification flow
DROP_WAIT = 1.0  # seconds a probe waits before calling a connection dropped
GROUPS = [{"name": t, "match": {"tag": f"tier:{t}"}} for t in ("web", "app", "db")]
POLICIES = [
    {"name": "web-to-app", "source": "web", "destination": "app", "service": "tcp/8080",
     "action": "allow"},
    {"name": "app-to-db", "source": "app", "destination": "db", "service": "tcp/5432",
     "action": "allow"},
    {"name": "shop-default", "source": "any", "destination": ["web", "app", "db"],
     "action": "drop"},
]  # fmt: skip

_LISTENER = """
import selectors, socket, sys
sel = selectors.DefaultSelector()
for port in map(int, sys.argv[1:]):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(16); sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        conn, _ = key.fileobj.accept(); conn.sendall(b"ok"); conn.close()
"""
_PROBE = """
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    print("open" if c.recv(2) == b"ok" else "closed")
except ConnectionRefusedError:
    print("refused")
except OSError:
    print("dropped")
"""


def probe(netns: str, address: str, port: int, wait: float = DROP_WAIT) -> str:
    """open | refused | dropped: one TCP connection from inside ``netns``."""
    argv = [sys.executable, "-c", _PROBE, address, str(port), str(wait)]
    return nsx.run(argv, netns, timeout=wait + 15, check=False).stdout.strip() or "error"


def _wait(check: Callable[[], bool], timeout: float, what: str) -> float:
    """The monotonic time ``check()`` first held; TransientError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TransientError(f"demo: timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic()


def shop_config(config: dict[str, Any], lab: builder.LabState, inventory: Path) -> dict[str, Any]:
    """The demo's configuration plus the shop's session, its static links (the apps
    session's hosts are the lab's hypervisors), the groups, the policy and ovs-dfw."""
    hosts = sorted({host for _, host, _, _ in SHOP} | {"hv1"})
    links = [
        {"host": h, "nic": p.name, "switch": p.peer.split(":")[0], "port": p.peer.split(":")[1],
         "session": SESSION}
        for h in hosts for p in lab.node(h).ports
    ]  # fmt: skip
    dfw = {
        node.name: f"unix:{node.ovs_dir}/{builder.HOST_BRIDGE}.mgmt"
        for node in lab.nodes.values()
        if node.kind == tp.Kind.HOST
    }
    return {
        **config,
        "sessions": [*config["sessions"],
                     {"name": SESSION, "kind": "static", "path": str(inventory)}],
        "links": [*config.get("links", []), *links],
        "groups": GROUPS,
        "policies": POLICIES,
        "firewalls": [{"name": "dfw", "kind": "ovs-dfw", "hosts": dfw}],
    }  # fmt: skip


class GroupsAct:
    """The act's steps on a running ``FabricDemo`` (see the module docstring)."""

    def __init__(self, demo: FabricDemo, first_step: int = 9) -> None:
        self.demo = demo
        self.lab = demo.fab.lab
        self.step = first_step
        self.inventory = demo.dir / "apps.yaml"
        self.hosts = {vm: host for vm, host, _, _ in SHOP}
        self.tiers = {vm: tier for vm, _, tier, _ in SHOP}
        self.ips = {vm: ip for vm, _, _, ip in SHOP}
        self._listeners: list[subprocess.Popen[str]] = []

    def run(self) -> None:
        try:
            self.step_setup()
            self.step_policy()
            self.step_vmotion()
            self.step_tag_change()
        finally:
            self.stop_listeners()

    # ---- narration -----------------------------------------------------------------------

    def say(self, text: str) -> None:
        self.demo.say(f"{self.step}. {text}")
        self.step += 1

    def netns(self, vm: str) -> str:
        return self.lab.vms[vm].netns

    def expect(self, src: str, dst: str, port: int, want: str) -> None:
        """One connection ``src`` -> ``dst``:``port``; PermanentError unless ``want``."""
        got = probe(self.netns(src), self.ips[dst], port)
        verdict = "as expected" if got == want else "UNEXPECTED"
        self.demo.note(f"{src} -> {dst} tcp/{port}: {got}, {verdict}")
        if got != want:
            raise PermanentError(f"demo: {src} -> {dst} tcp/{port} was {got}, not {want}")

    # ---- the app and its inventory -------------------------------------------------------

    def write_inventory(self) -> float:
        """Write the apps session's file atomically; returns the monotonic time it was."""
        hosts = sorted(set(self.hosts.values()) | {"hv1"})
        doc = {
            "hosts": [{"name": h, "nics": [p.name for p in self.lab.node(h).ports]}
                      for h in hosts],
            "portgroups": [{"name": PORTGROUP, "vlan": VLAN}],
            "vms": [{"name": vm, "host": self.hosts[vm], "power": "on",
                     "portgroups": [PORTGROUP], "ips": [self.ips[vm]],
                     "tags": [f"tier:{self.tiers[vm]}", "app:shop"]}
                    for vm in self.hosts],
        }  # fmt: skip
        tmp = self.inventory.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(doc, sort_keys=False))
        tmp.replace(self.inventory)
        return time.monotonic()

    def plug(self, vm: str) -> None:
        """TCP through OVS's userspace datapath needs tx checksum offload off on the veth."""
        nsx.run(["ethtool", "-K", "eth0", "tx", "off"], self.netns(vm))

    def start_listeners(self) -> None:
        for vm in self.hosts:
            argv = nsx.in_netns(self.netns(vm), [sys.executable, "-c", _LISTENER,
                                                 *map(str, PORTS)])  # fmt: skip
            proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
            self._listeners.append(proc)
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise PermanentError(f"demo: the listener in {vm} did not start")

    def stop_listeners(self) -> None:
        for proc in self._listeners:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
        self._listeners.clear()

    def reachable(self, src: str, dst: str, port: int) -> Callable[[], bool]:
        return lambda: probe(self.netns(src), self.ips[dst], port, 0.3) == "open"

    def dropped(self, src: str, dst: str, port: int) -> Callable[[], bool]:
        return lambda: probe(self.netns(src), self.ips[dst], port, 0.3) == "dropped"

    # ---- the steps -----------------------------------------------------------------------

    def step_setup(self) -> None:
        demo = self.demo
        self.say(
            f"Security groups. A 3-tier shop app (web, app, db) shares VLAN {VLAN} on hv1 "
            f"and hv3. Its VMs come from a second session, {SESSION}: an inventory file with "
            "their addresses and tags (tier:web, tier:app, tier:db). The policy: web->app "
            "tcp/8080 and app->db tcp/5432 allowed, anything else to the shop dropped; "
            "enforced by ovs-dfw at each VM's port on its hypervisor's vSwitch. The running "
            "controller takes it all from its file on SIGHUP."
        )
        for vm, host, tier, ip in SHOP:
            builder.add_vm(self.lab, vm, host, VLAN, f"{ip}/24")
            self.plug(vm)
            demo.note(f"{vm} on {host}: {ip}, tag tier:{tier}, listening on tcp/8080 and 5432")
        self.start_listeners()
        self.write_inventory()
        config = yaml.safe_load(demo.config_path.read_text())
        new = shop_config(config, self.lab, self.inventory)
        demo.config_path.write_text(yaml.safe_dump(new, sort_keys=False))
        demo.check_controller()
        assert demo.proc is not None
        sent = time.monotonic()
        os.kill(demo.proc.pid, signal.SIGHUP)
        _wait(self.reachable("shop-app", "shop-db", 5432), 30, "app -> db through VLAN 130")
        _wait(self.reachable("shop-web", "shop-app", 8080), 15, "web -> app through VLAN 130")
        seen = _wait(self.dropped("shop-web", "shop-db", 5432), 15, "web -> db dropped")
        took = demo.timing("SIGHUP to the shop's VLAN and policy in force", seen - sent)
        demo.note(f"VLAN {VLAN} and the policy in force {took} after the SIGHUP")

    def step_policy(self) -> None:
        self.say(
            "Real TCP connections between the VMs' namespaces: web->app and app->db connect "
            "(replies pass: the firewall is stateful), web->db is dropped at db's port."
        )
        self.demo.show("group")
        self.demo.show("policy")
        self.expect("shop-web", "shop-app", 8080, "open")
        self.expect("shop-app", "shop-db", 5432, "open")
        self.expect("shop-web", "shop-db", 5432, "dropped")
        self.expect("shop-web", "shop-app", 5432, "dropped")
        for host in ("hv1", "hv3"):
            self.demo.note(f"{host}: {self.flow_count(host)} vmfabric flows on its vSwitch")

    def step_vmotion(self) -> None:
        self.say(
            "vMotion: shop-db moves from hv3 to hv1, next to shop-web and behind the other "
            "leaf. Its rules leave hv3's vSwitch and are installed on hv1's."
        )
        db = self.ips["shop-db"]
        builder.move_vm(self.lab, "shop-db", "hv1")
        self.plug("shop-db")
        nsx.ping(self.netns("shop-db"), self.ips["shop-app"], wait=0.2)  # RARP-like hello
        self.hosts["shop-db"] = "hv1"
        moved = self.write_inventory()
        seen = _wait(
            lambda: db in self.guarded("hv1") and db not in self.guarded("hv3"), 15,
            "shop-db's rules on hv1's vSwitch",
        )  # fmt: skip
        took = self.demo.timing("shop-db's rules moved to hv1 after the vMotion", seen - moved)
        self.demo.note(f"shop-db's rules moved from hv3 to hv1 {took} after the inventory said so")
        _wait(self.reachable("shop-app", "shop-db", 5432), 15, "app -> db after the move")
        self.expect("shop-app", "shop-db", 5432, "open")
        self.expect("shop-web", "shop-db", 5432, "dropped")

    def step_tag_change(self) -> None:
        self.say(
            "A tag change: shop-web is re-tagged tier:app. It leaves group web for group app, "
            "and its access changes at once: it now reaches db, and no longer app's tcp/8080."
        )
        self.tiers["shop-web"] = "app"
        changed = self.write_inventory()
        seen = _wait(self.reachable("shop-web", "shop-db", 5432), 15, "web -> db after the tag")
        took = self.demo.timing("re-tagged VM reaches db after the tag change", seen - changed)
        self.demo.note(f"shop-web reaches db {took} after the tag change")
        self.expect("shop-web", "shop-db", 5432, "open")
        self.expect("shop-web", "shop-app", 8080, "dropped")
        self.demo.show("group", "app")

    def flows(self, host: str, cookie: str) -> list[str]:
        """The flows of ``host``'s vSwitch whose cookie matches ``cookie`` (value/mask)."""
        target = f"unix:{self.lab.node(host).ovs_dir}/{builder.HOST_BRIDGE}.mgmt"
        argv = ["ovs-ofctl", "--no-names", "dump-flows", target, f"cookie={cookie}"]
        return [line for line in nsx.run(argv).stdout.splitlines() if "cookie=" in line]

    def flow_count(self, host: str) -> int:
        """Every flow of vmfabric's (cookies 0x766d66..) on ``host``'s vSwitch."""
        return len(self.flows(host, f"{COOKIE:#x}/0xffffff0000000000"))

    def guarded(self, host: str) -> set[str]:
        """Addresses whose ingress is classified by ``host``'s vSwitch (read back)."""
        flows = self.flows(host, f"{COOKIE | INGRESS:#x}/{2**64 - 1:#x}")
        return {m.group(1) for f in flows if (m := re.search(r"nw_dst=([\d.]+)", f))}

"""Bounded chaos soak: ``python -m bench.soak [--minutes N] [--seed S]`` (``make soak``).

A real Open vSwitch (private namespace), the vCenter simulator and the controller run for
N minutes (default 10). A chaos loop creates, moves, powers, re-VLANs and deletes VMs and
port groups through the vSphere API, and every 15-30 s injects a fault: an ovsdb-server
restart (with changes made while it is down) or a simulator restart (its inventory
rebuilt). A watcher reads the switch every 250 ms and checks README's invariants:

- (a) no VLAN outside ``allowed_vlans`` on an edge port (beyond the preset static ones);
- (b) the static VLANs people configured are always there;
- (c) the non-edge port that a host's uplink lands on is never written;
- (d) no VLAN is removed while the session is out of sync;
- (e) after every change, and after every fault clears, each powered-on VM's VLAN reaches
  its port within ``BOUND`` seconds, and the port is exact again after the prune delay.

It prints events, faults, invariant violations (must be 0) and convergence times after
faults (p50/p99); exit status 1 when any invariant was violated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vmfabric.config import Config, load_config
from vmfabric.core.errors import VmfabricError
from vmfabric.lab.ovs import OvsInstance, unique_name
from vmfabric.lab.vcsim import Vcsim, VcsimControl, build_vcsim
from vmfabric.runtime import Controller
from vmfabric.store import Store

ALLOWED = frozenset(range(2, 1001))
HOSTS = {"hv1": "e1", "hv2": "e2", "hv3": "e3", "hv4": "x1"}  # hv4 lands on a non-edge port
EDGE = ("e1", "e2", "e3")
STATIC = {"e1": {50}, "e2": {1500}}  # configured by people before vmfabric starts
VLAN_POOL = [*range(100, 120), 999, 1000, 1001, 1005, 4094]  # some outside ALLOWED
PRUNE = 3.0
BOUND = 30.0  # seconds within which a change must reach the switch
MAX_VMS = 24
AUDIT = 5.0  # vcsim sends no update for a port group's new VLAN: the audit finds it
CLOSED = 4095
log = logging.getLogger("soak")


@dataclass
class Model:
    """What the simulator holds: port group -> VLAN, VM -> (host, port group, powered)."""

    pgs: dict[str, int] = field(default_factory=dict)
    vms: dict[str, tuple[str, str, bool]] = field(default_factory=dict)

    def expected(self) -> dict[str, set[int]]:
        out: dict[str, set[int]] = {p: set() for p in EDGE}
        for host, pg, on in self.vms.values():
            port, vlan = HOSTS[host], self.pgs[pg]
            if on and port in out and vlan in ALLOWED:
                out[port].add(vlan)
        return out


@dataclass
class Stats:
    events: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)
    fault_convergence: list[float] = field(default_factory=list)
    event_latency: list[float] = field(default_factory=list)

    def violate(self, message: str) -> None:
        if len(self.violations) < 1000:
            self.violations.append(message)
        log.error("VIOLATION %s", message)


# ---- the switch as it is -----------------------------------------------------------------


def _ovs_set(value: Any) -> set[int]:
    if isinstance(value, list) and value and value[0] == "set":
        return {int(v) for v in value[1]}
    return {int(value)} if isinstance(value, int) else set()


def read_ports(ovs: OvsInstance) -> dict[str, tuple[set[int], str]] | None:
    """port -> (trunks, origin record), or None while the database cannot be read."""
    argv = ["ovs-vsctl", f"--db={ovs.db_url}", "--timeout=1", "-f", "json",
            "--columns=name,trunks,external_ids", "list", "Port"]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False)
    if done.returncode != 0:
        return None
    out = {}
    for name, trunks, ids in json.loads(done.stdout)["data"]:
        record = dict(ids[1]).get("vmfabric-dynamic", "")
        out[str(name)] = (_ovs_set(trunks), str(record))
    return out


# ---- the lab -----------------------------------------------------------------------------


class Lab:
    """OVS + vcsim + a controller in a thread; everything stopped by ``close``."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ovs = OvsInstance(unique_name("vfsk"), parent_dir=str(workdir))
        self.sim: Vcsim | None = None
        self.control: VcsimControl | None = None
        self.ctl: Controller | None = None
        self._stop: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        self._thread: threading.Thread | None = None
        self._store: Store | None = None

    def start(self, model: Model) -> None:
        self.ovs.start()
        self.ovs.add_bridge("sw")
        for port in (*EDGE, "x1"):
            self.ovs.add_edge_port("sw", port, trunks=STATIC.get(port, set()) | {CLOSED})
        for port, vlans in STATIC.items():
            self.ovs.vsctl("set", "Port", port, f"trunks={sorted(vlans)}".replace(" ", ""))
        self.start_vcsim(model, port=0)
        self._start_controller(self._write_config())

    def start_vcsim(self, model: Model, port: int) -> None:
        password = self.sim.password if self.sim is not None else None
        self.sim = Vcsim(host_names=tuple(HOSTS), vms=0, port=port, password=password,
                         binary=build_vcsim()).start()  # fmt: skip
        self.control = VcsimControl.of(self.sim)
        for pg, vlan in model.pgs.items():
            self.control.add_dvportgroup(pg, vlan=vlan)
        for vm, (host, pg, on) in model.vms.items():
            self.control.create_vm(vm, host, pg, power_on=on)

    def kill_vcsim(self) -> int:
        assert self.sim is not None and self.control is not None
        port = self.sim.port
        self.control.close()
        self.sim.kill()
        self.sim.cleanup()
        return port

    def _write_config(self) -> Config:
        assert self.sim is not None
        secret = self.workdir / "vc.secret"
        secret.write_text(self.sim.password)
        secret.chmod(0o600)
        cfg = {
            "store": "sqlite:///soak.db",
            "engine": {"prune_delay": PRUNE, "coalesce": "20ms", "retry_max": "5s",
                       "max_removals": 1000, "max_removal_share": 1.0},
            "sessions": [{"name": "vc", "kind": "vcenter", "url": self.sim.url,
                          "username": self.sim.username, "password": f"file:{secret}",
                          "allowed_vlans": "2-1000", "verify_tls": False,
                          "audit_interval": AUDIT}],
            "switches": [{"name": "leaf1", "driver": "ovs", "ovsdb": self.ovs.db_url,
                          "bridge": "sw", "edge_ports": list(EDGE), "timeout": 2}],
            "links": [{"host": h, "nic": "vmnic1", "switch": "leaf1", "port": p}
                      for h, p in HOSTS.items()],
        }  # fmt: skip
        path = self.workdir / "vmfabric.yaml"
        path.write_text(yaml.safe_dump(cfg))
        return load_config(path)

    def _start_controller(self, config: Config) -> None:
        self._store = Store(config.store_url())
        ctl = self.ctl = Controller(config, self._store)
        loop, stop = asyncio.new_event_loop(), asyncio.Event()
        self._stop = (loop, stop)
        self._thread = threading.Thread(
            target=lambda: loop.run_until_complete(ctl.run(stop)), name="controller", daemon=True
        )
        self._thread.start()

    def in_sync(self) -> bool:
        return self.ctl is not None and self.ctl.inventory.in_sync("vc")

    def close(self) -> None:
        if self._stop is not None and self._thread is not None:
            loop, stop = self._stop
            loop.call_soon_threadsafe(stop.set)
            self._thread.join(30)
        if self._store is not None:
            self._store.close()
        if self.control is not None:
            self.control.close()
        if self.sim is not None:
            self.sim.cleanup()
        self.ovs.stop()


# ---- invariants, checked continuously ----------------------------------------------------


class Watcher(threading.Thread):
    """Reads the switch every 250 ms and checks invariants (a)-(d)."""

    def __init__(self, lab: Lab, stats: Stats) -> None:
        super().__init__(name="watcher", daemon=True)
        self.lab, self.stats = lab, stats
        self.done = threading.Event()
        self.ports: dict[str, tuple[set[int], str]] = {}
        self.samples = 0

    def run(self) -> None:
        while not self.done.wait(0.25):
            out_of_sync = not self.lab.in_sync()
            now = read_ports(self.lab.ovs)
            if now is None:
                continue
            self._check(now, out_of_sync and not self.lab.in_sync())
            self.ports = now
            self.samples += 1

    def _check(self, now: dict[str, tuple[set[int], str]], out_of_sync: bool) -> None:
        for port in EDGE:
            vlans, _record = now[port]
            extra = vlans - ALLOWED - STATIC.get(port, set()) - {CLOSED}
            if extra:
                self.stats.violate(f"(a) {port} carries {sorted(extra)} outside allowed_vlans")
            if not STATIC.get(port, set()) <= vlans:
                self.stats.violate(f"(b) {port} lost static VLANs: {sorted(vlans)}")
            gone = (self.ports.get(port, (set(), ""))[0] - vlans) if self.ports else set()
            if out_of_sync and gone:
                self.stats.violate(f"(d) {port} lost {sorted(gone)} while the session was down")
        if now["x1"] != ({CLOSED}, ""):
            self.stats.violate(f"(c) non-edge x1 was written: {now['x1']}")


# ---- chaos -------------------------------------------------------------------------------


class Chaos:
    """Random vSphere changes, each followed by a convergence check (e)."""

    def __init__(self, lab: Lab, model: Model, stats: Stats, watcher: Watcher, seed: int):
        self.lab, self.model, self.stats, self.watcher = lab, model, stats, watcher
        self.rng = random.Random(seed)
        self.serial = 0

    def control(self) -> VcsimControl:
        assert self.lab.control is not None
        return self.lab.control

    def event(self) -> None:
        actions: list[tuple[Callable[[], None], int]] = [
            (self.create, 4 if len(self.model.vms) < MAX_VMS else 0),
            (self.move, 3), (self.power, 3), (self.revlan, 1), (self.delete, 2),
        ]  # fmt: skip
        choices = [a for a, w in actions for _ in range(w)]
        if not self.model.vms:
            choices = [self.create]
        action = self.rng.choice(choices)
        action()
        self.stats.events += 1
        log.info("event %d %s", self.stats.events, action.__name__)

    def create(self, needs_write: bool = False) -> None:
        """A new VM; with ``needs_write``, a powered-on one whose VLAN its port lacks."""
        self.serial += 1
        name, host = f"vm{self.serial}", self.rng.choice(list(HOSTS))
        pg = self.rng.choice(list(self.model.pgs))
        on = needs_write or self.rng.random() < 0.8
        if needs_write:
            host, pg = self._missing()
        self.control().create_vm(name, host, pg, power_on=on)
        self.model.vms[name] = (host, pg, on)

    def _missing(self) -> tuple[str, str]:
        """A (host, port group) pair whose allowed VLAN the host's edge port does not carry
        (a random pair when there is none), so that the switch must be written."""
        ports = read_ports(self.lab.ovs) or self.watcher.ports
        have = {p: ports[p][0] if p in ports else set() for p in EDGE}
        pairs = [(h, pg) for h in HOSTS if HOSTS[h] in EDGE for pg, v in self.model.pgs.items()
                 if v in ALLOWED and v not in have[HOSTS[h]]]  # fmt: skip
        return self.rng.choice(pairs) if pairs else ("hv1", self.rng.choice(list(self.model.pgs)))

    def move(self) -> None:
        name = self.rng.choice(list(self.model.vms))
        host, pg, on = self.model.vms[name]
        target = self.rng.choice([h for h in HOSTS if h != host])
        self.control().relocate(name, target)
        self.model.vms[name] = (target, pg, on)

    def power(self) -> None:
        name = self.rng.choice(list(self.model.vms))
        host, pg, on = self.model.vms[name]
        (self.control().power_off if on else self.control().power_on)(name)
        self.model.vms[name] = (host, pg, not on)

    def delete(self) -> None:
        name = self.rng.choice(list(self.model.vms))
        self.control().destroy(name)
        del self.model.vms[name]

    def revlan(self) -> None:
        pg = self.rng.choice(list(self.model.pgs))
        vlan = self.rng.choice(VLAN_POOL)
        self.control().set_portgroup_vlan(pg, vlan)
        self.model.pgs[pg] = vlan

    def converged(self, exact: bool) -> bool:
        ports = read_ports(self.lab.ovs)  # fresh: the watcher's copy may predate a fault
        if ports is None:
            return False
        for port, want in self.model.expected().items():
            have = ports[port][0] - STATIC.get(port, set()) - {CLOSED}
            if not (want == have if exact else want <= have):
                return False
        return True

    def wait_converged(self, what: str, exact: bool = False, bound: float = BOUND) -> float:
        start = time.monotonic()
        while not self.converged(exact):
            if time.monotonic() - start > bound:
                self.stats.violate(f"(e) not converged {bound:g}s after {what}: {self._diff()}")
                return bound
            time.sleep(0.1)
        return time.monotonic() - start

    def _diff(self) -> str:
        ports = self.watcher.ports
        text = "; ".join(
            f"{p} want {sorted(w)} have {sorted(ports[p][0]) if ports else '?'}"
            for p, w in self.model.expected().items()
        )
        if self.lab.ctl is not None:
            inv, intent = self.lab.ctl.inventory, self.lab.ctl.autovlan
            log.info("engine desired %s pgs %s", intent.desired_vlans(),
                     {k[1]: sorted(v.vlans) for k, v in inv.portgroups.items()})  # fmt: skip
            log.info(
                "engine vms %s",
                {k[1]: (v.name, v.host, v.power, v.networks) for k, v in inv.vms.items()},
            )
            log.info("model %s", self.model)
        return text


# ---- faults ------------------------------------------------------------------------------


def ovsdb_restart(chaos: Chaos) -> float:
    """Kill ovsdb-server, change things while it is down, start it; convergence time."""
    lab = chaos.lab
    lab.ovs.kill_daemon("ovsdb-server")
    for _ in range(chaos.rng.randint(1, 3)):
        chaos.event()
    chaos.create(needs_write=True)
    time.sleep(chaos.rng.uniform(0.5, 3.0))
    lab.ovs.start_ovsdb()
    return chaos.wait_converged("ovsdb-server restart")


def vcsim_restart(chaos: Chaos) -> float:
    """Kill the simulator (fail-static must hold), restart it with the same inventory."""
    lab = chaos.lab
    port = lab.kill_vcsim()
    down = time.monotonic()
    while lab.in_sync() and time.monotonic() - down < 10:
        time.sleep(0.05)
    time.sleep(chaos.rng.uniform(PRUNE, PRUNE + 2))  # past the prune delay while down
    lab.start_vcsim(chaos.model, port)
    restarted = time.monotonic()
    chaos.create(needs_write=True)  # seen only once the session is back
    chaos.wait_converged("simulator restart")
    return time.monotonic() - restarted


def inject(chaos: Chaos) -> None:
    kind = chaos.rng.choice(["ovsdb", "vcsim"])
    chaos.stats.faults[kind] = chaos.stats.faults.get(kind, 0) + 1
    took = ovsdb_restart(chaos) if kind == "ovsdb" else vcsim_restart(chaos)
    chaos.stats.fault_convergence.append(took)
    chaos.wait_converged(f"{kind} restart (exact)", exact=True, bound=PRUNE + BOUND)
    log.info("fault %s: converged in %.2fs", kind, took)


# ---- main --------------------------------------------------------------------------------


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def soak(minutes: float, seed: int, workdir: Path) -> Stats:
    stats, model = Stats(), Model(pgs={f"pg{i}": 100 + i for i in range(1, 7)})
    lab = Lab(workdir)
    try:
        lab.start(model)
        watcher = Watcher(lab, stats)
        watcher.start()
        chaos = Chaos(lab, model, stats, watcher, seed)
        end = time.monotonic() + minutes * 60
        next_fault = time.monotonic() + chaos.rng.uniform(15, 30)
        while time.monotonic() < end:
            if time.monotonic() >= next_fault:
                inject(chaos)
                next_fault = time.monotonic() + chaos.rng.uniform(15, 30)
                continue
            before = chaos.model.expected()
            chaos.event()
            took = chaos.wait_converged(f"event {stats.events}")
            if any(w - before[p] for p, w in chaos.model.expected().items()):
                stats.event_latency.append(took)  # only changes that add a VLAN somewhere
        chaos.wait_converged("the end (exact)", exact=True, bound=PRUNE + BOUND)
        watcher.done.set()
        watcher.join(5)
    finally:
        lab.close()
    return stats


def report(stats: Stats, minutes: float) -> str:
    conv, lat = stats.fault_convergence, stats.event_latency
    faults = ", ".join(f"{k} {v}" for k, v in sorted(stats.faults.items())) or "none"
    lines = [
        f"soak: {minutes:g} min",
        f"events: {stats.events}",
        f"faults injected: {sum(stats.faults.values())} ({faults})",
        f"invariant violations: {len(stats.violations)}",
        f"convergence after a fault: p50 {percentile(conv, 0.5):.2f}s "
        f"p99 {percentile(conv, 0.99):.2f}s (n={len(conv)})",
        f"event to switch: p50 {percentile(lat, 0.5):.2f}s p99 {percentile(lat, 0.99):.2f}s",
    ]
    lines += [f"  {v}" for v in stats.violations[:10]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: time)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time())
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("soak").setLevel(logging.INFO)
    print(f"soak: seed {seed}", flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="vmfabric-soak-") as tmp:
            stats = soak(args.minutes, seed, Path(tmp))
    except VmfabricError as exc:
        print(f"soak: error: {exc}", file=sys.stderr)
        return 2
    print(report(stats, args.minutes), flush=True)
    return 1 if stats.violations else 0


if __name__ == "__main__":
    sys.exit(main())

"""The benchmark lab: vcsim (H hosts, N VMs; or S simulators of H hosts and N VMs each, one
vCenter session per simulator), a real Open vSwitch with one edge port per host, a pyVmomi
admin client per simulator, and the controller running in-process in a thread.

Wiring: host ``hvNNN`` (``vcShvNNN`` with several simulators)'s ``vmnic1`` (its
distributed-switch uplink) reports by CDP that it lands on its own port ``pNNN`` of switch
``leaf1``; bridge ``sw`` of a private OVS (own namespace) has the veth ports ``p001``..
(all edge ports, starting closed: trunks=[4095]) and a ``spare`` port that vmfabric never
writes (floor (b) transactions go there). Each simulator's N model VMs sit on
``DC0_DVPG0``, given VLAN 100; ``movers`` more VMs (spread over the simulators) each have
a port group of their own (VLAN 1000 + i), so every vMotion of a mover to a host it has
not visited needs a VLAN added on the destination port.

Everything started here is stopped by ``Lab.close`` (by PID and name), also on errors and
Ctrl-C: the controller thread, the listener process, the OVSDB monitor, vcsim, OVS and its
namespace.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyVim import connect as _connect

from bench.listener import connect, vim, vmodl
from bench.ovsmon import OvsMonitor
from vmfabric.config import Config, parse_config
from vmfabric.core.model import PortChange, PortState
from vmfabric.lab import netns as nsx
from vmfabric.lab.ovs import OvsInstance, unique_name
from vmfabric.lab.vcsim import Vcsim, write_hints
from vmfabric.runtime import Controller
from vmfabric.store import Store
from vmfabric.targets.switchport.ovs import OvsDriver

SWITCH = "leaf1"
BRIDGE = "sw"
SPARE = "spare"
BASE_VLAN = 100
MOVER_VLAN = 1000
PASSWORD_ENV = "BENCH_VC_PASSWORD"  # noqa: S105 (a variable name, not a password)
Progress = Callable[[str], None]
Disconnect: Any = _connect.Disconnect


def host_name(i: int, site: int = 0, sites: int = 1) -> str:
    return f"hv{i:03d}" if sites == 1 else f"vc{site + 1}hv{i:03d}"


def port_name(i: int) -> str:
    return f"p{i:03d}"


# ---- the vSphere admin ------------------------------------------------------------------


class Admin:
    """A pyVmomi client with every host and VM reference cached (vcsim answers a lookup
    by name only by listing every object, far too slow for 10,000 VMs)."""

    def __init__(self, url: str, user: str, password: str) -> None:
        self.si = connect(url, user, password)
        self.content = self.si.RetrieveContent()
        self.hosts: dict[str, Any] = {}
        self.vms: dict[str, Any] = {}
        self.networks: dict[str, Any] = {}
        self.refresh()

    def _view(self, kind: Any, paths: Sequence[str]) -> list[Any]:
        pc = vmodl.query.PropertyCollector
        view = self.content.viewManager.CreateContainerView(self.content.rootFolder, [kind], True)
        try:
            spec = pc.FilterSpec(
                objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[pc.TraversalSpec(
                    name="v", path="view", skip=False, type=vim.view.ContainerView)])],
                propSet=[pc.PropertySpec(type=kind, pathSet=list(paths))],
            )  # fmt: skip
            out: list[Any] = []
            collector = self.content.propertyCollector
            result = collector.RetrievePropertiesEx([spec], pc.RetrieveOptions())
            while result is not None:
                out.extend(result.objects or ())
                if not result.token:
                    break
                result = collector.ContinueRetrievePropertiesEx(result.token)
            return out
        finally:
            view.DestroyView()

    @staticmethod
    def _props(obj: Any) -> dict[str, Any]:
        return {p.name: p.val for p in obj.propSet or ()}

    def refresh(self) -> None:
        self.hosts = {self._props(o)["name"]: o.obj for o in self._view(vim.HostSystem, ["name"])}
        self.vms = {self._props(o)["name"]: o.obj for o in self._view(vim.VirtualMachine, ["name"])}
        self.networks = {self._props(o)["name"]: o.obj for o in self._view(vim.Network, ["name"])}

    def placement(self) -> list[tuple[str, str, str, tuple[str, ...]]]:
        """(vm moref, host moref, power state, network names) of every VM."""
        names = {ref._moId: name for name, ref in self.networks.items()}
        out = []
        paths = ["runtime.host", "runtime.powerState", "network"]
        for o in self._view(vim.VirtualMachine, paths):
            p = self._props(o)
            nets = tuple(names.get(n._moId, n._moId) for n in p.get("network") or ())
            host = p.get("runtime.host")
            out.append((o.obj._moId, host._moId if host is not None else "",
                        str(p.get("runtime.powerState")), nets))  # fmt: skip
        return out

    def _dvs(self) -> Any:
        view = self.content.viewManager.CreateContainerView(
            self.content.rootFolder, [vim.DistributedVirtualSwitch], True
        )
        try:
            return view.view[0]
        finally:
            view.DestroyView()

    def set_vlan(self, portgroup: str, vlan: int) -> None:
        pg = self.networks[portgroup]
        dvs = vim.dvs.VmwareDistributedVirtualSwitch
        spec = vim.dvs.DistributedVirtualPortgroup.ConfigSpec(
            configVersion=pg.config.configVersion,
            defaultPortConfig=dvs.VmwarePortConfigPolicy(
                vlan=dvs.VlanIdSpec(vlanId=vlan, inherited=False)
            ),
        )
        wait_task(pg.ReconfigureDVPortgroup_Task(spec))

    def add_portgroups(self, vlans: dict[str, int]) -> None:
        dvs = vim.dvs.VmwareDistributedVirtualSwitch
        specs = [
            vim.dvs.DistributedVirtualPortgroup.ConfigSpec(
                name=name, type="earlyBinding", numPorts=8,
                defaultPortConfig=dvs.VmwarePortConfigPolicy(
                    vlan=dvs.VlanIdSpec(vlanId=vlan, inherited=False)),
            )
            for name, vlan in vlans.items()
        ]  # fmt: skip
        wait_task(self._dvs().AddDVPortgroup_Task(specs))
        self.refresh()

    def create_vm(self, name: str, host: str, portgroup: str) -> Any:
        target = self.hosts[host]
        pg = self.networks[portgroup]
        card = vim.vm.device.VirtualEthernetCard
        port = vim.dvs.PortConnection(
            portgroupKey=pg.key, switchUuid=pg.config.distributedVirtualSwitch.uuid
        )
        nic = vim.vm.device.VirtualVmxnet3(
            key=-1, backing=card.DistributedVirtualPortBackingInfo(port=port)
        )
        config = vim.vm.ConfigSpec(
            name=name, guestId="otherGuest", numCPUs=1, memoryMB=64,
            files=vim.vm.FileInfo(vmPathName="[LocalDS_0]"),
            deviceChange=[vim.vm.device.VirtualDeviceSpec(operation="add", device=nic)],
        )  # fmt: skip
        datacenter = self.content.rootFolder.childEntity[0]
        pool = target.parent.resourcePool
        vm = wait_task(datacenter.vmFolder.CreateVM_Task(config, pool, target))
        wait_task(vm.PowerOnVM_Task())
        self.vms[name] = vm
        return vm

    def start_relocate(self, vm: str, host: str) -> Any:
        target = self.hosts[host]
        spec = vim.vm.RelocateSpec(host=target, pool=target.parent.resourcePool)
        return self.vms[vm].RelocateVM_Task(spec)

    def relocate(self, vm: str, host: str) -> float:
        """vMotion; returns the wall-clock time at which this client saw the task done."""
        wait_task(self.start_relocate(vm, host), poll=0.002)
        return time.time()

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the simulator may be gone already
            Disconnect(self.si)


def wait_task(task: Any, timeout: float = 60.0, poll: float = 0.005) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        info = task.info
        if info.state == "success":
            return info.result
        if info.state == "error":
            raise RuntimeError(f"task {info.descriptionId} failed: {info.error}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"task {info.descriptionId} not done in {timeout:g}s")
        time.sleep(poll)


# ---- the driver, timed from the outside -------------------------------------------------


@dataclass
class Apply:
    start: float
    end: float
    ports: int
    transactions: int  # committed by this call (0 or 1)
    writes: int  # (port, VLAN) memberships it changed


class TimedDriver:
    """Wraps a driver (OvsDriver, FakeDriver: both count ``transactions`` and ``writes``)
    and records every ``apply`` and ``read_ports``."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.capabilities = inner.capabilities
        self.applies: list[Apply] = []
        self.reads: list[tuple[float, float]] = []

    def connect(self) -> None:
        self.inner.connect()

    def read_ports(self) -> dict[str, PortState]:
        t0 = time.time()
        out: dict[str, PortState] = self.inner.read_ports()
        self.reads.append((t0, time.time()))
        return out

    def apply(self, changes: Sequence[PortChange]) -> dict[str, PortState]:
        t0 = time.time()
        txns, writes = self.inner.transactions, self.inner.writes
        out: dict[str, PortState] = self.inner.apply(changes)
        self.applies.append(
            Apply(
                t0,
                time.time(),
                len(changes),
                self.inner.transactions - txns,
                self.inner.writes - writes,
            )
        )
        return out

    def close(self) -> None:
        self.inner.close()


# ---- the controller in a thread -----------------------------------------------------------


class ControllerThread:
    """``Controller.run`` on an event loop of its own, in a thread, until ``stop``."""

    def __init__(self, ctl: Controller) -> None:
        self.ctl = ctl
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="controller", daemon=True)
        self.error: BaseException | None = None

    def start(self) -> ControllerThread:
        self._thread.start()
        self._started.wait(10)
        return self

    def _main(self) -> None:
        async def body() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._started.set()
            await self.ctl.run(self._stop)

        try:
            asyncio.run(body())
        except BaseException as exc:  # reported by stop()
            self.error = exc
            self._started.set()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
        if self.error is not None:
            raise RuntimeError(f"controller failed: {self.error!r}") from self.error


# ---- the listener (floor a) ---------------------------------------------------------------


class Listener:
    """Runs ``python -m bench.listener`` and collects its (time, vm, host) lines."""

    def __init__(self, url: str, user: str, password: str) -> None:
        env = dict(os.environ, **{PASSWORD_ENV: password})
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.listener", url, user],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, bufsize=1,
        )  # fmt: skip
        self.lines: list[tuple[float, str, str]] = []
        self._cond = threading.Condition()
        self._ready = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        with self._cond:
            if not self._cond.wait_for(lambda: self._ready, 300):
                self.close()
                raise RuntimeError("the listener did not get ready")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            parts = line.split()
            with self._cond:
                if parts == ["ready"]:
                    self._ready = True
                elif len(parts) == 3:
                    self.lines.append((float(parts[0]), parts[1], parts[2]))
                self._cond.notify_all()

    def mark(self) -> int:
        with self._cond:
            return len(self.lines)

    def wait(self, vm: str, host: str, since: int, timeout: float) -> float | None:
        def hit() -> float | None:
            for at, v, h in self.lines[since:]:
                if v == vm and h == host:
                    return at
            return None

        with self._cond:
            self._cond.wait_for(lambda: hit() is not None, timeout)
            return hit()

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# ---- the lab ------------------------------------------------------------------------------


@dataclass
class Site:
    """One simulator of the lab: its process, its admin client and its hosts' names."""

    sim: Vcsim
    admin: Admin
    hosts: list[str]
    session: str


@dataclass
class Lab:
    """vcsim(s) + OVS + admin client(s) + OVSDB monitor. See the module docstring."""

    hosts: int  # per simulator
    vms: int  # per simulator
    movers: int
    progress: Progress
    seed: int = 7
    sims: int = 1
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="vmfabric-bench-")))
    ovs: OvsInstance | None = None
    sites: list[Site] = field(default_factory=list)
    monitor: OvsMonitor | None = None
    setup_seconds: dict[str, float] = field(default_factory=dict)
    itinerary: dict[str, list[str]] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)  # mover -> host now

    @property
    def sim(self) -> Vcsim | None:
        return self.sites[0].sim if self.sites else None

    @property
    def admin(self) -> Admin | None:
        return self.sites[0].admin if self.sites else None

    @property
    def ports(self) -> list[str]:
        return [port_name(i) for i in range(1, self.hosts * self.sims + 1)]

    def host_names(self, site: int) -> list[str]:
        return [host_name(i, site, self.sims) for i in range(1, self.hosts + 1)]

    def port_of_host(self, host: str) -> str:
        site, index = (0, int(host[2:])) if self.sims == 1 else (int(host[2]) - 1, int(host[5:]))
        return port_name(site * self.hosts + index)

    def mover(self, j: int) -> str:
        return f"mover{j:03d}"

    def site_of(self, mover: str) -> Site:
        return self.sites[int(mover[5:]) % self.sims]

    def start(self) -> Lab:
        try:
            t = time.monotonic()
            self._start_ovs()
            self.setup_seconds["ovs"] = round(time.monotonic() - t, 1)
            t = time.monotonic()
            self._start_vcsim()
            self.setup_seconds["vcsim"] = round(time.monotonic() - t, 1)
            t = time.monotonic()
            self._populate()
            self.setup_seconds["populate"] = round(time.monotonic() - t, 1)
            assert self.ovs is not None
            self.monitor = OvsMonitor(self.ovs.db_url).start()
        except BaseException:
            self.close()
            raise
        return self

    def _start_ovs(self) -> None:
        self.ovs = OvsInstance(unique_name("vfb"))
        self.ovs.start()
        self.ovs.add_bridge(BRIDGE)
        batch = []
        for port in [*self.ports, SPARE]:
            peer = "q" + port[1:] if port != SPARE else "sparex"
            batch += [f"link add {port} type veth peer name {peer}",
                      f"link set {port} up", f"link set {peer} up"]  # fmt: skip
        subprocess.run(
            nsx.in_netns(self.ovs.netns, ["ip", "-batch", "-"]), input="\n".join(batch) + "\n",
            text=True, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        args: list[str] = []
        for port in [*self.ports, SPARE]:
            args += ["--", "add-port", BRIDGE, port, "trunks=4095"]
        self.ovs.vsctl(*args[1:])

    def _start_vcsim(self) -> None:
        for site in range(self.sims):
            names = self.host_names(site)
            hints = {
                name: {"vmnic1": {"cdp": {"devId": SWITCH, "portId": self.port_of_host(name)}}}
                for name in names
            }
            hints_file = self.workdir / f"hints{site}.json"
            write_hints(hints_file, hints)
            movers = len([j for j in range(self.movers) if j % self.sims == site])
            sim = Vcsim(hosts=self.hosts, vms=max(self.vms - movers, 0), host_names=names,
                        hints_file=hints_file)  # fmt: skip
            try:
                sim.start(timeout=600)
                admin = Admin(sim.url, sim.username, sim.password)
            except BaseException:
                sim.cleanup()
                raise
            session = "vc" if self.sims == 1 else f"vc{site + 1}"
            self.sites.append(Site(sim, admin, names, session))

    def _populate(self) -> None:
        rng = random.Random(self.seed)
        for index, site in enumerate(self.sites):
            site.admin.set_vlan("DC0_DVPG0", BASE_VLAN)
            mine = [j for j in range(self.movers) if j % self.sims == index]
            site.admin.add_portgroups({f"mv{j:03d}": MOVER_VLAN + j for j in mine})
            for j in mine:
                order = site.hosts[:]
                rng.shuffle(order)
                start, self.itinerary[self.mover(j)] = order[0], order[1:]
                site.admin.create_vm(self.mover(j), start, f"mv{j:03d}")
                self.where[self.mover(j)] = start

    def next_host(self, mover: str) -> str:
        """A host ``mover`` has never been on (so its VLAN is not on that port yet)."""
        host = self.itinerary[mover].pop(0)
        self.where[mover] = host
        return host

    def mover_vlan(self, mover: str) -> int:
        return MOVER_VLAN + int(mover[5:])

    def relocate(self, mover: str, host: str) -> float:
        return self.site_of(mover).admin.relocate(mover, host)

    def start_relocate(self, mover: str, host: str) -> Any:
        return self.site_of(mover).admin.start_relocate(mover, host)

    def morefs(self, mover: str, host: str) -> tuple[str, str]:
        """(VM moref, host moref) of a mover and a host of its simulator."""
        admin = self.site_of(mover).admin
        return admin.vms[mover]._moId, admin.hosts[host]._moId

    def expected(self) -> dict[str, frozenset[int]]:
        """Every edge port's VLANs, computed here from the simulators' placement."""
        vlan_of = {"DC0_DVPG0": BASE_VLAN}
        vlan_of.update({f"mv{j:03d}": MOVER_VLAN + j for j in range(self.movers)})
        out: dict[str, set[int]] = {p: set() for p in self.ports}
        for site in self.sites:
            host_port = {ref._moId: self.port_of_host(n) for n, ref in site.admin.hosts.items()}
            for _, host, power, nets in site.admin.placement():
                if power != "poweredOn" or host not in host_port:
                    continue
                for net in nets:
                    if net in vlan_of:
                        out[host_port[host]].add(vlan_of[net])
        return {p: frozenset(v) for p, v in out.items()}

    def reset_ports(self) -> None:
        """Every edge port closed again, without vmfabric's origin record (a fresh fabric)."""
        assert self.ovs is not None and self.monitor is not None
        args: list[str] = []
        for port in self.ports:
            args += ["--", "set", "Port", port, "trunks=4095",
                     "--", "remove", "Port", port, "external_ids", "vmfabric-dynamic"]  # fmt: skip
        self.ovs.vsctl(*args[1:])
        ports = self.ports
        ok = self.monitor.wait(lambda t: all(t.get(p) == frozenset({4095}) for p in ports), 30)
        if not ok:
            raise RuntimeError("ports did not reset")

    def config(self, store: Path, **engine: Any) -> Config:
        assert self.sites and self.ovs is not None
        sessions = []
        for site in self.sites:
            env = f"{PASSWORD_ENV}_{site.session.upper()}"
            os.environ[env] = site.sim.password
            sessions.append({
                "name": site.session, "kind": "vcenter", "url": site.sim.url,
                "username": site.sim.username, "password": f"env:{env}",
                "audit_interval": 3600, "hint_refresh": 3600,
            })  # fmt: skip
        data = {
            "store": f"sqlite:///{store}",
            "engine": {"prune_delay": 3600, "coalesce": 0.02, **engine},
            "sessions": sessions,
            "switches": [{
                "name": SWITCH, "driver": "ovs", "ovsdb": self.ovs.db_url, "bridge": BRIDGE,
                "edge_ports": self.ports,
            }],
        }  # fmt: skip
        return parse_config(data, base_dir=self.workdir)

    def controller(self, tag: str) -> tuple[Controller, TimedDriver, Store]:
        store_path = self.workdir / f"{tag}.db"
        config = self.config(store_path)
        driver = TimedDriver(OvsDriver(config.switches[0]))
        store = Store(config.store_url())
        ctl = Controller(config, store, drivers={SWITCH: driver})
        return ctl, driver, store

    def listener(self, site: int = 0) -> Listener:
        sim = self.sites[site].sim
        return Listener(sim.url, sim.username, sim.password)

    def listeners(self) -> list[Listener]:
        """A bare listener per simulator (each its own process)."""
        started: list[Listener] = []
        try:
            for site in range(len(self.sites)):
                started.append(self.listener(site))
        except BaseException:
            for listener in started:
                listener.close()
            raise
        return started

    def close(self) -> None:
        errors = []
        for step in (self._close_monitor, self._close_sites, self._close_ovs):
            try:
                step()
            except Exception as exc:
                errors.append(repr(exc))
        shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            self.progress(f"cleanup problems: {errors}")

    def _close_monitor(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()
            self.monitor = None

    def _close_sites(self) -> None:
        sites, self.sites = self.sites, []
        for site in sites:
            site.admin.close()
            site.sim.cleanup()

    def _close_ovs(self) -> None:
        if self.ovs is not None:
            self.ovs.stop()
            self.ovs = None

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Security-group figures (print only): ``python -m bench.groups [--quick]``.

- **membership engine**: VM events/s at 10,000 VMs x 1,000 groups (700 tag groups, 200
  nested ``group + tag`` groups, 100 name globs), the intent alone (pure). Each event is
  applied to the inventory first (not timed), then ``GroupsIntent.update`` is timed, so
  the intent sees each VM as the event left it. Two event mixes: *every event a re-tag*
  (a VM's app tag replaced, and it moves and is re-addressed: every event re-evaluates
  its groups), and *mixed* (thirds: re-tag, vMotion, address change).
- **event -> enforced** through the real runtime (``Controller``: intake, groups intent,
  the target's reconcile loop with the default 20 ms coalescing, the driver), from the
  moment a source emits a VM change to the change seen by an independent monitor of the
  target: ``nft monitor`` for nftables (a set element), ``ovs-ofctl monitor`` for ovs-dfw
  (the flow table), the peer's own registry for panos. Each has a **floor** measured in the
  same run the same way: one bare ``nft add element``, one bare ``ovs-ofctl add-flow``,
  one bare uid-message POST; the ratio is vmfabric p50 / floor p50.
- **OVS flows of a rule** between two groups of 500 addresses each (1,000 members), read
  back from the flow table: conjunctive matches cost N + M, not N x M.
"""

from __future__ import annotations

import argparse
import os
import queue
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from vmfabric.core.model import Power, SessionStatus, Snapshot, SourceEvent, Vm, VmUpsert
from vmfabric.intents.groups import (
    AddressTarget,
    AllOf,
    Glob,
    GroupDef,
    GroupsIntent,
    Ref,
    Tag,
)
from vmfabric.intents.removals import Removals
from vmfabric.inventory.index import Inventory
from vmfabric.sources.base import Emit

COOKIE = 0x766D660000000000  # ovs-dfw's member flows (high word 0x766d6600)

# ---- the membership engine -----------------------------------------------------------------


def engine_defs(groups: int) -> list[GroupDef]:
    defs: list[GroupDef] = []
    for i in range(groups):
        kind = i % 10
        if kind < 7:
            defs.append(GroupDef(f"g{i}", Tag(f"app:a{i}")))
        elif kind < 9:
            defs.append(GroupDef(f"g{i}", AllOf((Ref(f"g{i - 7}"), Tag("env:prod")))))
        else:
            defs.append(GroupDef(f"g{i}", Glob("name", f"vm-{i % 97}*")))
    return defs


RETAG, VMOTION, READDRESS, EVERYTHING = range(4)
MIXED = (RETAG, VMOTION, READDRESS)
ENGINE_CASES = (
    ("mixed: re-tag, vMotion, new address", MIXED),
    ("re-tag only", (RETAG,)),
    ("vMotion only", (VMOTION,)),
    ("new address only", (READDRESS,)),
    ("every event re-tags, moves and re-addresses", (EVERYTHING,)),
)


def _vm(n: int, tag: int, host: int, ip: int) -> Vm:
    tags = (f"app:a{tag}", "env:prod" if n % 2 else "env:test")
    addr = f"10.{ip // 65536 % 256}.{ip // 256 % 256}.{ip % 256}"
    return Vm("s", str(n), f"vm-{n}", f"hv{host}", Power.ON, ips=(addr,), tags=tuple(sorted(tags)))


def _events(
    first: tuple[Vm, ...], groups: int, events: int, kinds: tuple[int, ...], rnd: random.Random
) -> list[VmUpsert]:
    """``events`` changes of random VMs, each one of ``kinds``, each from the state the
    previous change of that VM left."""
    now = {vm.key: vm for vm in first}
    out = []
    for _ in range(events):
        n = rnd.randrange(len(first))
        old = now[("s", str(n))]
        kind = rnd.choice(kinds)
        tag = int(old.tags[0].split(":a")[1])
        host = int(old.host[2:])
        ip = int.from_bytes(bytes(map(int, old.ips[0].split("."))))
        if kind in (RETAG, EVERYTHING):
            tag = rnd.randrange(groups)
        if kind in (VMOTION, EVERYTHING):
            host = rnd.randrange(50)
        if kind in (READDRESS, EVERYTHING):
            ip = rnd.randrange(len(first), 16 * len(first))
        new = now[old.key] = _vm(n, tag, host, ip)
        out.append(VmUpsert(new))
    return out


def engine(
    vms: int = 10_000, groups: int = 1_000, events: int = 50_000, kinds: tuple[int, ...] = MIXED
) -> tuple[float, float]:
    """VM events per second of the groups intent, per wall second and per CPU second of
    its thread (the machine is shared: the CPU figure is the steadier one). Each event is
    one of ``kinds``, drawn at random: a re-tag, a vMotion, a new address, or all three."""
    rnd = random.Random(7)
    defs = engine_defs(groups)
    targets = [AddressTarget("fw", "nftables", frozenset(d.name for d in defs))]
    intent = GroupsIntent(defs, [], targets, [], Removals(0.0))
    inv = Inventory(["s"])
    first = tuple(_vm(n, rnd.randrange(groups), rnd.randrange(50), n) for n in range(vms))
    intent.update(inv, inv.apply([Snapshot("s", (), (), first)], 0.0), 0.0)
    wall = cpu = 0.0
    clock, cpu_clock = time.perf_counter, time.thread_time
    for ev in _events(first, groups, events, kinds, rnd):
        delta = inv.apply([ev], 1.0)  # the inventory's cost is not the engine's
        t0, c0 = clock(), cpu_clock()
        intent.update(inv, delta, 1.0)
        cpu += cpu_clock() - c0
        wall += clock() - t0
    return events / wall, events / cpu


# ---- a source the benchmark drives, and monitors of the targets ----------------------------


class BenchSource:
    """A session whose events the benchmark sends (emitted by its thread at once)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._queue: queue.Queue[list[SourceEvent]] = queue.Queue()

    def send(self, *events: SourceEvent) -> None:
        self._queue.put(list(events))

    def run(self, emit: Emit, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                batch = self._queue.get(timeout=0.05)
            except queue.Empty:
                continue
            for ev in batch:
                emit(ev)


class Monitor:
    """A monitor process whose lines are timestamped (``time.perf_counter``) as they come.
    (``ovs-ofctl monitor`` stops reporting when its stderr is /dev/null: it goes along.)"""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: queue.Queue[tuple[float, str]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put((time.perf_counter(), line))

    def seen(self, match: Callable[[str], bool], after: float, timeout: float = 10.0) -> float:
        """The time of the first line matching ``match`` stamped after ``after``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the monitor saw no matching change")
            stamp, line = self.lines.get(timeout=left)
            if stamp >= after and match(line):
                return stamp

    def drain(self) -> None:
        while not self.lines.empty():
            self.lines.get_nowait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)


@contextmanager
def controller(doc: dict[str, Any], source: BenchSource, workdir: Path) -> Iterator[Any]:
    """The real Controller on ``doc`` (store in ``workdir``), fed by ``source``; the
    session is in sync (empty) and the targets connected when this yields."""
    import yaml

    from support.controller import running_controller, wait_for
    from vmfabric.config import load_config

    path = workdir / "vmfabric.yaml"
    path.write_text(yaml.safe_dump({"store": "sqlite:///vf.db", **doc}))
    with running_controller(load_config(path), sources=[source]) as ctl:
        source.send(SessionStatus("s", "connected"), Snapshot("s", (), (), ()))
        loops = ctl.reconcilers.values
        wait_for(lambda: bool(loops()) and all(r.state == "ok" for r in loops()), 30, "ready")
        yield ctl


def web_vm(tagged: bool, host: str = "hv1", ip: str = "10.1.0.2") -> VmUpsert:
    tags = ("tier:web",) if tagged else ()
    return VmUpsert(Vm("s", "v", "v", host, Power.ON, ips=(ip,), tags=tags))


def toggle(source: BenchSource, mon: Monitor, match: Callable[[str], bool], n: int) -> list[float]:
    """Seconds from each emitted event (alternately tagging and untagging VM v) to the
    monitor's first matching change."""
    out = []
    for i in range(n):
        mon.drain()
        t0 = time.perf_counter()
        source.send(web_vm(i % 2 == 0))
        out.append(mon.seen(match, t0) - t0)
    return out


def floor(
    mon: Monitor, run: Callable[[int], object], match: Callable[[str], bool], n: int
) -> list[float]:
    """Seconds from starting one bare command (``run(i)``) to the monitor seeing it."""
    out = []
    for i in range(n):
        mon.drain()
        t0 = time.perf_counter()
        run(i)
        out.append(mon.seen(match, t0) - t0)
    return out


GROUPS = [{"name": "web", "match": {"tag": "tier:web"}}]
POLICY = [
    {"name": "p", "source": "web", "destination": "any", "service": "tcp/8080", "action": "allow"}
]
SESSION = [{"name": "s", "kind": "static", "path": "unused.yaml"}]


def _doc(firewall: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"sessions": SESSION, "switches": [], "groups": GROUPS, "policies": POLICY,
            "firewalls": [firewall], **extra}  # fmt: skip


# ---- nftables ------------------------------------------------------------------------------


def nftables(samples: int = 40) -> tuple[list[float], list[float]]:
    """(vmfabric, floor) seconds: event -> element in the set, per ``nft monitor``. The
    floor is one bare ``nft add element`` into an interval set, started in the namespace
    the way vmfabric starts nft there (``targets.addrset.netns.run_in``)."""
    from support.groups_net import RoutedNet
    from vmfabric.targets.addrset.netns import run_in

    with RoutedNet("b") as net, tempfile.TemporaryDirectory() as d:
        script = "add table inet floor\nadd set inet floor s { type ipv4_addr; flags interval; }\n"
        run_in(net.router, ["nft", "-f", "-"], script, 10)
        mon = Monitor(["ip", "netns", "exec", net.router, "nft", "monitor", "elements"])
        source = BenchSource("s")
        fw = {"name": "fw", "kind": "nftables", "netns": net.router}
        try:
            with controller(_doc(fw), source, Path(d)):
                ours = toggle(source, mon, lambda line: "vmfabric web_v4" in line, samples)

            def bare(i: int) -> object:
                element = f"{{ 10.9.{i // 250}.{i % 250 + 1} }}"
                argv = ["nft", "add", "element", "inet", "floor", "s", element]
                return run_in(net.router, argv, None, 10)

            base = floor(mon, bare, lambda line: "inet floor s" in line, samples)
        finally:
            mon.stop()
    return ours, base


# ---- ovs-dfw -------------------------------------------------------------------------------


@contextmanager
def _bridge() -> Iterator[str]:
    """A private Open vSwitch with bridge br0 and a VM port vm-v; yields its OpenFlow
    connection."""
    from vmfabric.lab.ovs import OvsInstance, unique_name

    with OvsInstance(unique_name("vfb")) as sw:
        sw.add_bridge("br0")
        sw.vsctl("add-port", "br0", "vm-v", "--", "set", "Interface", "vm-v", "type=internal")
        yield f"unix:{sw.dir}/br0.mgmt"


def ovs(samples: int = 40) -> tuple[list[float], list[float]]:
    """(vmfabric, floor) seconds: event -> flows in the table, per ``ovs-ofctl monitor``.
    The floor is one bare ``ovs-ofctl add-flow``."""
    with _bridge() as mgmt, tempfile.TemporaryDirectory() as d:
        unixctl = f"--unixctl={d}/monitor.ctl"
        mon = Monitor(["ovs-ofctl", unixctl, "monitor", mgmt, "watch:!initial"])
        source = BenchSource("s")
        fw = {"name": "dfw", "kind": "ovs-dfw", "hosts": {"hv1": mgmt}}
        try:
            with controller(_doc(fw), source, Path(d)):
                ours = toggle(source, mon, lambda line: "cookie=0x766d6600" in line, samples)

            def bare(i: int) -> object:
                flow = f"table=200,priority=1,cookie=0x1,reg9={i},actions=drop"
                argv = ["ovs-ofctl", "-O", "OpenFlow14", "add-flow", mgmt, flow]
                return subprocess.run(argv, check=True, capture_output=True)

            base = floor(mon, bare, lambda line: "table=200" in line, samples)
        finally:
            mon.stop()
    return ours, base


def ovs_flows(n: int = 500, m: int = 500) -> tuple[int, int, int]:
    """(flows of one rule from an N-address group to an M-address group at one local VM
    port, read back from the table; N + M + 1; N x M)."""
    import yaml

    from vmfabric.config import parse_config
    from vmfabric.runtime.groups import build, step

    src = [f"10.70.{i // 250}.{i % 250 + 1}" for i in range(n)]
    dst = [f"10.80.{i // 250}.{i % 250 + 1}" for i in range(m)]
    with _bridge() as mgmt:
        doc = _doc({"name": "dfw", "kind": "ovs-dfw", "hosts": {"hv1": mgmt}})
        doc["groups"] = [*GROUPS, {"name": "src", "addresses": src},
                         {"name": "dst", "addresses": dst}]  # fmt: skip
        rule = {"name": "r", "source": "src", "destination": "dst", "action": "allow",
                "service": "tcp/9000", "applied_to": ["web"]}  # fmt: skip
        doc["policies"] = [rule]
        cfg = parse_config(yaml.safe_load(yaml.safe_dump(doc)), "bench")
        inv = Inventory(["s"])
        built = build(cfg, inv)
        assert built is not None
        intent, (target,) = built
        intent.update(inv, inv.apply([Snapshot("s", (), (), (web_vm(True).vm,))], 1.0), 1.0)
        target.connect()
        step(target, 2.0)
        first = f"cookie={COOKIE | 0x100:#x}/0xffffffffffffff00"  # the member flows of rule 1
        argv = ["ovs-ofctl", "-O", "OpenFlow14", "dump-flows", mgmt, first]
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
        return sum(1 for line in out.splitlines() if "cookie=" in line), n + m + 1, n * m


# ---- panos ---------------------------------------------------------------------------------


def panos(samples: int = 40) -> tuple[list[float], list[float]]:
    """(vmfabric, floor) seconds: event -> the address registered with its tag on the
    peer (polled in-process every 0.5 ms). The floor is one bare uid-message POST."""
    from support.peers.panos import PanosPeer

    with tempfile.TemporaryDirectory() as d:
        peer = PanosPeer(Path(d), "benchkey")
        os.environ["VMFABRIC_BENCH_PANOS_KEY"] = "benchkey"
        source = BenchSource("s")
        fw = {"name": "pa", "kind": "panos", "host": "127.0.0.1", "port": peer.port,
              "api_key": "env:VMFABRIC_BENCH_PANOS_KEY", "ca_file": str(peer.cert)}  # fmt: skip
        ours: list[float] = []
        try:
            with controller(_doc(fw, policies=[]), source, Path(d)):
                for i in range(samples):
                    t0 = time.perf_counter()
                    source.send(web_vm(i % 2 == 0))
                    while ("10.1.0.2" in peer.tagged("vmf-web")) != (i % 2 == 0):
                        time.sleep(0.0005)
                    ours.append(time.perf_counter() - t0)
            base = [_uid_post(peer.port, peer.cert, i) for i in range(samples)]
        finally:
            peer.stop()
    return ours, base


def _uid_post(port: int, cert: Path, i: int) -> float:
    """Seconds for one bare uid-message registering one address (a new TLS connection,
    as pan-os-python makes per request)."""
    import ssl
    import urllib.parse
    import urllib.request

    entry = f'<entry ip="10.9.0.{i + 1}"><tag><member>floor</member></tag></entry>'
    cmd = f"<uid-message><type>update</type><payload><register>{entry}</register></payload>"
    cmd += "</uid-message>"
    body = urllib.parse.urlencode({"type": "user-id", "key": "benchkey", "cmd": cmd}).encode()
    ctx = ssl.create_default_context(cafile=str(cert))
    t0 = time.perf_counter()
    request = urllib.request.Request(f"https://127.0.0.1:{port}/api/", body)
    with urllib.request.urlopen(request, context=ctx, timeout=10) as answer:  # noqa: S310
        answer.read()
    return time.perf_counter() - t0


# ---- report --------------------------------------------------------------------------------


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p50, p90 = statistics.median(values), ordered[int(len(values) * 0.9)]
    return f"p50 {p50 * 1000:.1f} ms, p90 {p90 * 1000:.1f} ms"


def _latency(name: str, target: str, ours: list[float], bare: list[float], what: str) -> None:
    ratio = statistics.median(ours) / statistics.median(bare)
    print(f"{name} event -> {what}: {_ms(ours)} over {len(ours)} events (target {target}); "
          f"floor {_ms(bare)}; ratio {ratio:.1f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    args = parser.parse_args()
    events, samples, rounds = (5_000, 10, 1) if args.quick else (50_000, 40, 3)
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(
        "membership engine at 10,000 VMs x 1,000 groups (target 100,000 VM events/s), best of "
        f"{rounds} rounds of {events:,} events, per CPU second (per wall second):"
    )
    for name, kinds in ENGINE_CASES:
        wall, cpu = max(engine(events=events, kinds=kinds) for _ in range(rounds))
        print(f"  {name}: {cpu:,.0f}/s ({wall:,.0f}/s)")
    print("event -> enforced through the Controller (default coalesce 20 ms included):")
    _latency("  nftables", "50 ms", *nftables(samples), "set element seen by nft monitor")
    _latency("  ovs-dfw", "50 ms", *ovs(samples), "flows seen by ovs-ofctl monitor")
    _latency("  panos", "1 s", *panos(samples), "registered on the PAN-OS peer")
    flows, n_plus_m, n_times_m = ovs_flows()
    print(f"ovs-dfw flows of one rule from 500 to 500 addresses (1,000 group members) at one "
          f"VM port, read back: {flows} = 2 stages x (N + M + 1 = {n_plus_m}); without "
          f"conjunctions: 2 x N x M = {2 * n_times_m:,}")  # fmt: skip


if __name__ == "__main__":
    main()

"""Cold start of the whole controller without a simulator, and a one-line edit: a static
inventory file and fake switches (in-memory, the OVS driver's semantics), at 100,000 VMs.

The inventory is the engine benchmark's (``bench.engine.make_inventory``), written as the
README shows it, one flow mapping per line (``- {name: vm1, host: h7, power: on,
portgroups: [pg12]}``), with static links host -> (switch, port). Phases are timed from the
outside: the source's file read and validation, the controller's snapshot handling (link
resolution, engine, store) and the drivers' applies.

The edit: with the controller running and at rest after its cold start (its store
caught up), one VM line is rewritten to
a port group whose VLAN its host's port does not carry yet; timed from the file's write to
the source's emitting the change (``edit_to_source_s``: polling, re-read, diff) and to the
fake switch carrying the VLAN (``edit_to_switch_s``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.engine import make_inventory, port_of
from bench.stats import summary
from bench.vclab import ControllerThread, TimedDriver
from vmfabric.config import parse_config
from vmfabric.core.model import Host, Snapshot, SourceEvent
from vmfabric.runtime import Controller
from vmfabric.sources import static
from vmfabric.store import Store
from vmfabric.targets.switchport.fake import FakeDriver

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Edit:
    """A one-line edit: ``old`` becomes ``new``, which needs ``vlan`` on ``port``."""

    old: str
    new: str
    switch: str
    port: str
    vlan: int


def write_lab(
    n_vms: int, folder: Path
) -> tuple[dict[str, Any], dict[tuple[str, str], set[int]], Edit]:
    """The inventory file and config data; returns the config, each port's VLANs and a
    one-line edit that needs a VLAN a port does not carry yet."""
    inv = make_inventory(n_vms)
    pg_vlan = {p.name: next(iter(p.vlans)) for p in inv.portgroups}
    lines = ["hosts:", *(f"  - {{name: {h.name}, nics: [vmnic0]}}" for h in inv.hosts),
             "portgroups:", *(f"  - {{name: {p.name}, vlan: {pg_vlan[p.name]}}}"
                              for p in inv.portgroups),
             "vms:", *(vm_line(v.name, v.host, v.networks) for v in inv.vms)]  # fmt: skip
    (folder / "inventory.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected: dict[tuple[str, str], set[int]] = {}
    for v in inv.vms:
        key = port_of(int(v.host[1:]))
        expected.setdefault(key, set()).update(pg_vlan[n] for n in v.networks)
    vm = inv.vms[len(inv.vms) // 2]
    switch, port = port_of(int(vm.host[1:]))
    pg = next(p for p in inv.portgroups if pg_vlan[p.name] not in expected[(switch, port)])
    edit = Edit(vm_line(vm.name, vm.host, vm.networks), vm_line(vm.name, vm.host, (pg.name,)),
                switch, port, pg_vlan[pg.name])  # fmt: skip
    switches = [
        {"name": s.name, "driver": "fake", "edge_ports": sorted(s.edge_ports)} for s in inv.switches
    ]
    links = [
        {"host": h.name, "nic": "vmnic0", "switch": port_of(i)[0], "port": port_of(i)[1]}
        for i, h in enumerate(inv.hosts)
    ]
    config = {
        "store": f"sqlite:///{folder / 'vmfabric.db'}",
        "engine": {"prune_delay": 3600, "coalesce": 0.02},
        "sessions": [{"name": "inv", "kind": "static", "path": "inventory.yaml"}],
        "switches": switches,
        "links": links,
    }
    return config, expected, edit


def one_line_edit(folder: Path, edit: Edit, driver: Any) -> float:
    """Rewrite the file with ``edit`` applied (atomically, as an editor saving it does);
    return when the switch carries the VLAN, with the write's time."""
    path = folder / "inventory.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.count(edit.old + "\n") == 1, "the edit must change exactly one line"
    tmp = folder / ".inventory.yaml.tmp"
    tmp.write_text(text.replace(edit.old + "\n", edit.new + "\n"), encoding="utf-8")
    written = time.time()
    os.replace(tmp, path)
    driver.inner.wait_for(lambda states: edit.vlan in states[edit.port].vlans, 60)
    return written


def vm_line(name: str, host: str, portgroups: tuple[str, ...]) -> str:
    return f"  - {{name: {name}, host: {host}, power: on, portgroups: [{', '.join(portgroups)}]}}"


class _Hooks:
    def __init__(self, ctl: Controller) -> None:
        self.marks: dict[str, float] = {}
        self.resolve = 0.0
        self.engine = 0.0
        handle, resolve, apply = ctl.intake.handle, ctl.resolver.resolve, ctl.inventory.apply

        def timed_handle(batch: list[SourceEvent], now: float) -> Any:
            snap = any(isinstance(e, Snapshot) for e in batch)
            if snap:
                self.marks.setdefault("handle_start", time.time())
            delta = handle(batch, now)
            if snap:
                self.marks.setdefault("handle_end", time.time())
            return delta

        def timed_resolve(host: Host) -> Host:  # discovery: one host's uplinks
            started = time.time()
            out = resolve(host)
            self.resolve += time.time() - started
            return out

        def timed_apply(events: Any, now: float) -> Any:
            events = list(events)
            started = time.time()
            delta = apply(events, now)
            if any(isinstance(e, Snapshot) for e in events) and not self.engine:
                self.engine = time.time() - started
            return delta

        setattr(ctl.intake, "handle", timed_handle)  # noqa: B010
        setattr(ctl.resolver, "resolve", timed_resolve)  # noqa: B010
        setattr(ctl.inventory, "apply", timed_apply)  # noqa: B010


def once(n_vms: int, folder: Path, config_data: dict[str, Any],
         expected: dict[tuple[str, str], set[int]], edit: Edit) -> dict[str, Any]:  # fmt: skip
    for leftover in folder.glob("vmfabric.db*"):
        leftover.unlink()
    config = parse_config(config_data, base_dir=folder)
    drivers = {s.name: TimedDriver(FakeDriver(s)) for s in config.switches}
    store = Store(config.store_url())
    ctl = Controller(config, store, drivers=drivers)  # type: ignore[arg-type]
    hooks = _Hooks(ctl)
    read = static.StaticSource.read
    reads: list[tuple[float, float]] = []

    def timed_read(src: Any) -> Any:
        started = time.time()
        parsed = read(src)
        reads.append((started, time.time()))
        return parsed

    setattr(static.StaticSource, "read", timed_read)  # noqa: B010
    t0 = time.time()
    runner = ControllerThread(ctl).start()
    try:
        for name, driver in drivers.items():
            want = {port: vlans for (sw, port), vlans in expected.items() if sw == name}
            driver.inner.wait_for(
                lambda states, want=want: all(want[p] <= states[p].vlans for p in want), 600
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(not d.applies for d in drivers.values()):
            time.sleep(0.01)
        cold_applies = [a for d in drivers.values() for a in d.applies]
        # the edit lands on a controller at rest: its store has caught up with the cold
        # start (the audit log, then the copy of the inventory for show)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not ctl.recorder.idle():
            time.sleep(0.01)
        written = one_line_edit(folder, edit, drivers[edit.switch])
        switched = time.time()
    finally:
        setattr(static.StaticSource, "read", read)  # noqa: B010
        runner.stop()
        store.close()
    applies = cold_applies
    done = max(a.end for a in applies)
    m = hooks.marks
    edit_read = next(((a, b) for a, b in reads if a >= written), (written, switched))
    return {
        "total_s": done - t0,
        "inventory_read_s": reads[0][1] - reads[0][0] if reads else 0.0,
        "edit_to_source_s": edit_read[1] - written,
        "edit_reread_s": edit_read[1] - edit_read[0],
        "edit_to_switch_s": switched - written,
        "discovery_s": hooks.resolve,
        "compute_s": hooks.engine,
        "store_s": m["handle_end"] - m["handle_start"] - hooks.engine - hooks.resolve,
        "apply_s": done - min(a.start for a in applies),
        "transactions": sum(a.transactions for a in applies),
        "writes": sum(a.writes for a in applies),
        "memberships": sum(len(v) for v in expected.values()),
        "ports": sum(len(s.edge_ports) for s in config.switches),
        "switches": len(config.switches),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def run(n_vms: int, reps: int, progress: Progress) -> dict[str, Any]:
    """``reps`` cold starts, each in a process of its own (``python -m bench.coldstatic``):
    a controller starts in a fresh process, not in one whose heap the benchmarks before
    it filled (the engine benchmark leaves a million objects for the cyclic collector)."""
    progress(f"engine-only cold start: {n_vms} VMs, {reps} runs, one process each")
    runs = []
    for r in range(reps):
        done = subprocess.run(
            [sys.executable, "-m", "bench.coldstatic", str(n_vms)],
            capture_output=True, text=True, check=False, timeout=900,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"bench.coldstatic {n_vms} failed: {done.stderr.strip()[-2000:]}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        runs.append(figures)
        progress(f"  cold start {r + 1}/{reps} ({n_vms} VMs, static + fake): "
                 f"{figures['total_s']:.2f} s (read {figures['inventory_read_s']:.2f}, "
                 f"compute {figures['compute_s']:.2f}, store {figures['store_s']:.2f}, "
                 f"apply {figures['apply_s']:.2f}); one-line edit to the source "
                 f"{figures['edit_to_source_s']:.2f} s, to the switch "
                 f"{figures['edit_to_switch_s']:.2f} s")  # fmt: skip
    keys = [k for k in runs[0] if k.endswith("_s")]
    out: dict[str, Any] = {k: summary([r[k] for r in runs]) for k in keys}
    out.update({k: runs[0][k] for k in ("transactions", "memberships", "ports", "switches")})
    out["vms"] = n_vms
    out["runs"] = runs
    out["loadavg_1min"] = summary([r["loadavg"][0] for r in runs], 1.0, 2)
    return out


def once_in_folder(n_vms: int) -> dict[str, Any]:
    """One cold start and edit in this process, on a lab written to a new folder."""
    folder = Path(tempfile.mkdtemp(prefix="vmfabric-bench-static-"))
    try:
        config_data, expected, edit = write_lab(n_vms, folder)
        return once(n_vms, folder, config_data, expected, edit)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":  # one run, its figures as one JSON line (``run`` calls this)
    print(json.dumps(once_in_folder(int(sys.argv[1]))))

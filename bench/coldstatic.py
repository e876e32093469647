"""Cold start of the whole controller without a simulator: a static inventory file and
fake switches (in-memory, the OVS driver's semantics), at 100,000 VMs.

The inventory is the engine benchmark's (``bench.engine.make_inventory``), written as a
JSON document (JSON is YAML, so the static source reads it as it is), with static links
host -> (switch, port). Phases are timed from the outside: the source's file read and
validation, the controller's snapshot handling (link resolution, engine, store) and the
drivers' applies.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
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


def write_lab(n_vms: int, folder: Path) -> tuple[dict[str, Any], dict[tuple[str, str], set[int]]]:
    """The inventory file and config data; returns the config and each port's VLANs."""
    inv = make_inventory(n_vms)
    pg_vlan = {p.name: next(iter(p.vlans)) for p in inv.portgroups}
    data = {
        "hosts": [{"name": h.name, "nics": ["vmnic0"]} for h in inv.hosts],
        "portgroups": [{"name": p.name, "vlan": pg_vlan[p.name]} for p in inv.portgroups],
        "vms": [{"name": v.name, "host": v.host, "power": "on", "portgroups": list(v.networks)}
                for v in inv.vms],
    }  # fmt: skip
    (folder / "inventory.yaml").write_text(json.dumps(data), encoding="utf-8")
    expected: dict[tuple[str, str], set[int]] = {}
    for v in inv.vms:
        key = port_of(int(v.host[1:]))
        expected.setdefault(key, set()).update(pg_vlan[n] for n in v.networks)
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
    return config, expected


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
         expected: dict[tuple[str, str], set[int]]) -> dict[str, Any]:  # fmt: skip
    for leftover in folder.glob("vmfabric.db*"):
        leftover.unlink()
    config = parse_config(config_data, base_dir=folder)
    drivers = {s.name: TimedDriver(FakeDriver(s)) for s in config.switches}
    store = Store(config.store_url())
    ctl = Controller(config, store, drivers=drivers)  # type: ignore[arg-type]
    hooks = _Hooks(ctl)
    read = static.StaticSource.read
    reads: list[float] = []

    def timed_read(src: Any) -> Snapshot:
        started = time.time()
        snap = read(src)
        reads.append(time.time() - started)
        return snap

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
    finally:
        setattr(static.StaticSource, "read", read)  # noqa: B010
        runner.stop()
        store.close()
    applies = [a for d in drivers.values() for a in d.applies]
    done = max(a.end for a in applies)
    m = hooks.marks
    return {
        "total_s": done - t0,
        "inventory_read_s": reads[0] if reads else 0.0,
        "discovery_s": hooks.resolve,
        "compute_s": hooks.engine,
        "store_s": m["handle_end"] - m["handle_start"] - hooks.engine - hooks.resolve,
        "apply_s": done - min(a.start for a in applies),
        "transactions": sum(a.transactions for a in applies),
        "writes": sum(a.writes for a in applies),
        "memberships": sum(len(v) for v in expected.values()),
        "ports": sum(len(s.edge_ports) for s in config.switches),
        "switches": len(config.switches),
    }


def run(n_vms: int, reps: int, progress: Progress) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="vmfabric-bench-static-"))
    try:
        progress(f"engine-only cold start: writing a {n_vms}-VM inventory")
        config_data, expected = write_lab(n_vms, folder)
        runs = []
        for r in range(reps):
            figures = once(n_vms, folder, config_data, expected)
            runs.append(figures)
            progress(f"  cold start {r + 1}/{reps} ({n_vms} VMs, static + fake): "
                     f"{figures['total_s']:.2f} s (read {figures['inventory_read_s']:.2f}, "
                     f"compute {figures['compute_s']:.2f}, store {figures['store_s']:.2f}, "
                     f"apply {figures['apply_s']:.2f})")  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    keys = [k for k in runs[0] if k.endswith("_s")]
    out: dict[str, Any] = {k: summary([r[k] for r in runs]) for k in keys}
    out.update({k: runs[0][k] for k in ("transactions", "memberships", "ports", "switches")})
    out["vms"] = n_vms
    out["runs"] = runs
    return out

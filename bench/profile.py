"""Profiles behind the missed targets: ``python -m bench.profile [engine|inventory|filters|all]``.

- ``engine``: cProfile of the incremental engine on the vMotion workload at 1,000 and
  100,000 VMs (the functions are the same; each call gets slower as the working set
  outgrows the CPU caches).
- ``inventory``: the vcenter source's full read against vcsim (250 hosts, 10,000 VMs by
  default): cProfile of ``_Watch.full_read``, split into time waiting for the server and
  time in pyVmomi's SOAP parsing, and the same read with and without
  ``config.hardware.device`` (the VM property that dominates the answer's size).

- ``filters``: the vMotion delay seen by bare listeners with one filter vs. the vcenter
  source's five filters (64 hosts, 2,000 VMs).

Writes bench/results/profile.json and prints the top functions.
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path
from typing import Any

from bench import engine as eng
from bench.listener import vim, vmodl
from vmfabric.config import VcenterSession
from vmfabric.lab.vcsim import Vcsim
from vmfabric.sources import vcenter

PASSWORD_ENV = "BENCH_PROFILE_PASSWORD"  # noqa: S105 (a variable name, not a password)
OUT = Path(__file__).resolve().parent / "results" / "profile.json"


def _top(prof: cProfile.Profile, n: int = 12) -> list[dict[str, Any]]:
    stats = pstats.Stats(prof, stream=io.StringIO())
    rows = []
    for (file, line, func), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{Path(file).name}:{line}:{func}", "calls": calls,
                     "tottime_s": round(tottime, 3), "cumtime_s": round(cumtime, 3)})  # fmt: skip
    rows.sort(key=lambda r: -r["tottime_s"])
    return rows[:n]


def profile_engine(sizes: tuple[int, ...] = (1_000, 100_000), events: int = 20_000) -> Any:
    out = {}
    for n in sizes:
        inv = eng.make_inventory(n)
        work = eng.moves(inv, events)
        engine = eng.new_engine(inv)
        engine.apply_one(inv.snapshot(), 0.0)
        prof = cProfile.Profile()
        started = time.perf_counter()
        prof.enable()
        for i, event in enumerate(work):
            engine.apply_one(event, float(i))
        prof.disable()
        out[str(n)] = {"seconds_profiled": round(time.perf_counter() - started, 3),
                       "top": _top(prof)}  # fmt: skip
    return out


def _read(content: Any, paths: tuple[str, ...]) -> float:
    pc = vmodl.query.PropertyCollector
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    spec = pc.FilterSpec(
        objectSet=[pc.ObjectSpec(obj=view, skip=True, selectSet=[pc.TraversalSpec(
            name="v", path="view", skip=False, type=vim.view.ContainerView)])],
        propSet=[pc.PropertySpec(type=vim.VirtualMachine, pathSet=list(paths))],
    )  # fmt: skip
    started = time.perf_counter()
    result = content.propertyCollector.RetrievePropertiesEx([spec], pc.RetrieveOptions())
    while result is not None and result.token:
        result = content.propertyCollector.ContinueRetrievePropertiesEx(result.token)
    view.DestroyView()
    return time.perf_counter() - started


def profile_inventory(hosts: int = 250, vms: int = 10_000) -> Any:
    sim = Vcsim(hosts=hosts, vms=vms)
    try:
        sim.start(timeout=600)
        os.environ[PASSWORD_ENV] = sim.password
        config = VcenterSession(name="p", kind="vcenter", url=sim.url, username=sim.username,
                                password=f"env:{PASSWORD_ENV}")  # fmt: skip
        source = vcenter.VcenterSource(config, Path("."))
        si = source._connect()
        content = si.RetrieveContent()
        events: list[Any] = []
        watch = vcenter._Watch(source, content, events.append)
        prof = cProfile.Profile()
        started = time.perf_counter()
        prof.enable()
        watch.full_read(query_hints=False)
        prof.disable()
        total = time.perf_counter() - started
        stats = pstats.Stats(prof, stream=io.StringIO()).stats  # type: ignore[attr-defined]
        waiting = sum(v[2] for k, v in stats.items() if k[2] in ("recv_into", "readinto"))
        paths = vcenter.VM_PATHS
        without = tuple(p for p in paths if p != "config.hardware.device")
        return {
            "hosts": hosts, "vms": vms,
            "full_read_s": round(total, 2),
            "socket_wait_s": round(waiting, 2),
            "top": _top(prof, 15),
            "retrieve_vm_paths_s": round(_read(content, paths), 2),
            "retrieve_without_devices_s": round(_read(content, without), 2),
            "retrieve_host_and_network_only_s": round(
                _read(content, ("runtime.host", "network")), 2),
        }  # fmt: skip
    finally:
        sim.cleanup()


def filters_experiment(hosts: int = 64, vms: int = 2_000, moves: int = 30) -> Any:
    """The same vMotions seen by three bare listeners (own processes, own collectors): one
    filter on ``runtime.host``, one filter with all of the source's VM paths, and the
    vcenter source's five filters. Shows where vcsim's update delay comes from."""
    import random

    from bench.stats import summary
    from bench.vclab import Lab

    variants = {
        "one filter, runtime.host": {},
        "one filter, the source's VM paths": {"BENCH_LISTENER_PATHS": ",".join(vcenter.VM_PATHS)},
        "the source's five filters": {"BENCH_LISTENER_FILTERS": "source"},
    }
    out: dict[str, Any] = {"hosts": hosts, "vms": vms, "moves": moves}
    with Lab(hosts, vms, 10, lambda text: None) as lab:
        assert lab.admin is not None
        listeners = {}
        for name, env in variants.items():
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)
            try:
                listeners[name] = lab.listener()
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
        seen: dict[str, list[float]] = {name: [] for name in variants}
        rng = random.Random(3)
        try:
            for i in range(moves):
                mover = lab.mover(i % 10)
                dest = lab.next_host(mover)
                time.sleep(rng.uniform(0, 0.25))
                marks = {name: li.mark() for name, li in listeners.items()}
                done = lab.admin.relocate(mover, dest)
                vm, host = lab.admin.vms[mover]._moId, lab.admin.hosts[dest]._moId
                for name, li in listeners.items():
                    at = li.wait(vm, host, marks[name], 10)
                    if at is not None:
                        seen[name].append(at - done)
        finally:
            for li in listeners.values():
                li.close()
    out["ms"] = {name: summary(v, 1000.0, 1) for name, v in seen.items()}
    return out


def main(argv: list[str]) -> int:
    what = argv[0] if argv else "all"
    out: dict[str, Any] = {}
    if what in ("engine", "all"):
        out["engine"] = profile_engine()
    if what in ("inventory", "all"):
        out["inventory"] = profile_inventory()
    if what in ("filters", "all"):
        out["filters"] = filters_experiment()
    if OUT.exists() and what != "all":
        out = {**json.loads(OUT.read_text(encoding="utf-8")), **out}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Profiles behind the missed targets: ``python -m bench.profile [engine|inventory|filters|all]``.

- ``engine``: cProfile of the incremental engine on the vMotion workload at 1,000 and
  100,000 VMs (the functions are the same; each call gets slower as the working set
  outgrows the CPU caches).
- ``inventory``: the vcenter source's full read against vcsim (250 hosts, 10,000 VMs by
  default): when each feed's initial read arrived, and each VM feed's answer read by the
  source's fast reader and by pyVmomi.

- ``filters``: the vMotion delay seen by a bare listener through different filters (250
  hosts, 10,000 VMs): the cost of property paths per VM and of filters per collector, which
  is why the source has one collector per kind and splits the VMs in two feeds.

Writes bench/results/profile.json and prints the top functions.
"""

from __future__ import annotations

import cProfile
import io
import json
import math
import os
import pstats
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench import engine as eng
from bench.listener import vim
from vmfabric.config import VcenterSession
from vmfabric.lab.vcsim import Vcsim
from vmfabric.sources.vcenter import VcenterSource
from vmfabric.sources.vcenter import session as vc_session
from vmfabric.sources.vcenter.feeds import (
    FEEDS,
    VM_EXTRA_PATHS,
    VM_MORE_PATHS,
    VM_PATHS,
    filter_spec,
)
from vmfabric.sources.vcenter.wire import WaitCall, parse_fast

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


def _best(fn: Any, reps: int = 3) -> float:
    best = math.inf
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def _parse_costs(si: Any, content: Any) -> dict[str, Any]:
    """Each VM feed's initial answer, read by the fast reader and by pyVmomi."""
    out: dict[str, Any] = {}
    view = content.viewManager.CreateContainerView(content.rootFolder, [vim.VirtualMachine], True)
    try:
        for spec in FEEDS[:3]:
            collector = content.propertyCollector.CreatePropertyCollector()
            spec_ = filter_spec(view, vim.VirtualMachine, spec.paths)
            collector.CreateFilter(spec_, partialUpdates=False)
            call = WaitCall(si._stub, collector, "fast")
            started = time.perf_counter()
            body = call.fetch("", 0, 100_000)
            out[spec.name] = {
                "paths": list(spec.paths), "bytes": len(body),
                "server_and_transfer_s": round(time.perf_counter() - started, 3),
                "fast_reader_s": round(_best(lambda body=body: parse_fast(body)), 3),
                "pyvmomi_s": round(_best(lambda body=body, c=call: c.parse_pyvmomi(body), 1), 3),
            }  # fmt: skip
            call.close()
            collector.DestroyPropertyCollector()
    finally:
        view.DestroyView()
    return out


def profile_inventory(hosts: int = 250, vms: int = 10_000) -> Any:
    """The vcenter source's full read (every feed in parallel, hints included) with the
    time each feed's initial read arrived, then each VM feed's answer parsed both ways."""
    sim = Vcsim(hosts=hosts, vms=vms)
    try:
        sim.start(timeout=600)
        os.environ[PASSWORD_ENV] = sim.password
        config = VcenterSession(name="p", kind="vcenter", url=sim.url, username=sim.username,
                                password=f"env:{PASSWORD_ENV}", tag_refresh=0)  # fmt: skip
        source = VcenterSource(config, Path("."))
        si = source._connect(None)
        content = si.RetrieveContent()
        events: list[Any] = []
        watch: Any = vc_session._Watch(source, si, content, events.append, None)
        arrived: dict[str, float] = {}
        absorb = watch._absorb
        started = time.perf_counter()

        def timed_absorb(item: Any, touched: Any) -> None:
            if item.initial:
                arrived[item.feed] = round(time.perf_counter() - started, 3)
            absorb(item, touched)

        watch._absorb = timed_absorb
        cpu = time.process_time()
        watch.full_read(threading.Event(), query_hints=True)
        total = time.perf_counter() - started
        cpu = time.process_time() - cpu
        watch.close(polite=True)
        return {
            "hosts": hosts, "vms": vms, "loadavg": os.getloadavg(),
            "full_read_s": round(total, 3),
            "full_read_cpu_s": round(cpu, 3),  # this process's, all threads
            "hint_queries": source.hint_queries,
            "initial_read_arrived_s": arrived,
            "vm_feeds": _parse_costs(si, content),
        }  # fmt: skip
    finally:
        sim.cleanup()


LISTENERS: dict[str, dict[str, str]] = {
    "one filter, runtime.host (floor a)": {},
    "one filter, the vm feed's paths": {"BENCH_LISTENER_PATHS": ",".join(VM_PATHS)},
    "one filter, wave 1's VM paths": {
        "BENCH_LISTENER_PATHS": "name,runtime.host,runtime.powerState,network"},
    "one filter, every VM path the source reads": {
        "BENCH_LISTENER_PATHS": ",".join((*VM_PATHS, *VM_MORE_PATHS, *VM_EXTRA_PATHS))},
    "wave 1's five filters on one collector": {"BENCH_LISTENER_FILTERS": "source"},
}  # fmt: skip


def _listen(lab: Any, env: dict[str, str]) -> Any:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return lab.listener()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def filters_experiment(hosts: int = 250, vms: int = 10_000, moves: int = 10,
                       rounds: int = 2) -> Any:  # fmt: skip
    """The vMotion delay seen by a bare listener (its own process and collector) watching
    through different filters, one listener at a time, in ``rounds`` alternating rounds of
    ``moves`` vMotions each: what vcsim's cost per update depends on (property paths per
    VM, filters per collector)."""
    import random

    from bench.stats import summary
    from bench.vclab import Lab

    out: dict[str, Any] = {"hosts": hosts, "vms": vms, "moves": moves * rounds}
    seen: dict[str, list[float]] = {name: [] for name in LISTENERS}
    loads: list[float] = []
    rng = random.Random(3)
    with Lab(hosts, vms, 10, lambda text: None) as lab:
        assert lab.admin is not None
        for _ in range(rounds):
            for name, env in LISTENERS.items():
                listener = _listen(lab, env)
                loads.append(os.getloadavg()[0])
                try:
                    for i in range(moves):
                        mover = lab.mover(i % 10)
                        dest = lab.next_host(mover)
                        time.sleep(rng.uniform(0, 0.25))
                        mark = listener.mark()
                        done = lab.relocate(mover, dest)
                        at = listener.wait(*lab.morefs(mover, dest), mark, 10)
                        if at is not None:
                            seen[name].append(at - done)
                finally:
                    listener.close()
    out["ms"] = {name: summary(v, 1000.0, 1) for name, v in seen.items()}
    out["loadavg_1min"] = summary(loads, 1.0, 2)
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

"""Benchmarks on the lab (``bench.vclab``): cold start, convergence latency with its two
floors, the vMotion storm, and the periodic full-sync baseline.

Latency end points: a relocation's start is the moment the admin client sees its
``RelocateVM_Task`` complete (``time.time()`` right after the task reads ``success``); its
end is the OVSDB update that put the VLAN on the destination port, as timestamped by an
independent ``ovsdb-client monitor`` process (``bench.ovsmon``). Floor (a) is the same
relocation seen by a bare pyVmomi ``WaitForUpdatesEx`` listener in its own process; floor
(b) is a bare one-port ovsdbapp transaction (call to commit reply).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from bench.stats import summary
from bench.vclab import SPARE, SWITCH, ControllerThread, Lab, TimedDriver
from vmfabric.core.model import Host, PortGroup, Power, Snapshot, SourceEvent, Uplink, Vm
from vmfabric.intents.autovlan import SessionPolicy, SwitchPolicy, full_desired
from vmfabric.runtime import Controller
from vmfabric.sources.vcenter import inventory as vc_inventory
from vmfabric.sources.vcenter import session as vc_session
from vmfabric.store import Store

Progress = Callable[[str], None]
CLOSED = 4095


# ---- timing hooks, installed from the outside (nothing in src is changed) ----------------


@dataclass
class Hooks:
    """Times the vcenter source's full read and hint queries and the controller's handling
    of the snapshot batch (engine apply vs. the rest: resolve + store)."""

    marks: dict[str, float] = field(default_factory=dict)
    hints: float = 0.0
    engine: float = 0.0
    _saved: dict[str, Any] = field(default_factory=dict)

    @contextlib.contextmanager
    def installed(self, ctl: Controller) -> Iterator[Hooks]:
        watch: Any = vc_session._Watch
        inventory: Any = vc_inventory.Inventory
        full_read, query_hints = watch.full_read, watch.query_hints
        snapshot = inventory.snapshot
        handle, apply = ctl.intake.handle, ctl.inventory.apply
        marks = self.marks

        def timed_full_read(w: Any, stop: Any, query_hints: bool) -> bool:
            marks.setdefault("read_start", time.time())
            return bool(full_read(w, stop, query_hints))

        def timed_snapshot(inv: Any) -> Snapshot:
            snap = snapshot(inv)
            marks.setdefault("read_end", time.time())
            return snap  # type: ignore[no-any-return]

        def timed_hints(w: Any, hosts: list[str]) -> None:
            started = time.time()
            query_hints(w, hosts)
            if "hints_end" not in marks:
                self.hints += time.time() - started
                marks["hints_end"] = time.time()

        def timed_handle(batch: list[SourceEvent], now: float) -> Any:
            snap = any(isinstance(e, Snapshot) for e in batch)
            if snap:
                marks.setdefault("handle_start", time.time())
            delta = handle(batch, now)
            if snap:
                marks.setdefault("handle_end", time.time())
            return delta

        def timed_apply(events: Any, now: float) -> Any:
            events = list(events)
            started = time.time()
            delta = apply(events, now)
            if any(isinstance(e, Snapshot) for e in events) and not self.engine:
                self.engine = time.time() - started
            return delta

        watch.full_read, watch.query_hints = timed_full_read, timed_hints
        inventory.snapshot = timed_snapshot
        setattr(ctl.intake, "handle", timed_handle)  # noqa: B010 (instance attribute over the method)
        setattr(ctl.inventory, "apply", timed_apply)  # noqa: B010
        try:
            yield self
        finally:
            watch.full_read, watch.query_hints = full_read, query_hints
            inventory.snapshot = snapshot


class Warnings(logging.Handler):
    """Counts and keeps the controller's warnings (a session dropped, a switch retried)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.name}: {record.getMessage()}"[:300])

    @contextlib.contextmanager
    def watching(self) -> Iterator[Warnings]:
        root = logging.getLogger()
        root.addHandler(self)
        try:
            yield self
        finally:
            root.removeHandler(self)


# ---- cold start ---------------------------------------------------------------------------


def _converged(expected: dict[str, frozenset[int]]) -> Callable[[Any], bool]:
    def check(trunks: Any) -> bool:
        return all(want <= trunks.get(p, frozenset()) for p, want in expected.items())

    return check


def cold_start_once(lab: Lab, tag: str) -> tuple[dict[str, Any], ControllerThread, TimedDriver,
                                                  Store]:  # fmt: skip
    """Start a controller on a fresh fabric (closed ports, new store); time each phase until
    every edge port carries its VLANs. Returns the figures and the still-running controller."""
    assert lab.monitor is not None
    lab.reset_ports()
    expected = lab.expected()
    ctl, driver, store = lab.controller(tag)
    hooks = Hooks()
    mark = lab.monitor.mark()
    with hooks.installed(ctl):
        t0 = time.time()
        runner = ControllerThread(ctl).start()
        ok = lab.monitor.wait(_converged(expected), 600)
    ups = lab.monitor.since(mark)
    done = max((u.at for u in ups), default=time.time())
    deadline = time.monotonic() + 30  # the apply is recorded once ovs-vswitchd caught up
    while not any(a.start <= done for a in driver.applies) and time.monotonic() < deadline:
        time.sleep(0.01)
    m = hooks.marks
    applies = [a for a in driver.applies if a.start <= done]
    exact = all(lab.monitor.vlans(p) == want for p, want in expected.items())
    read = m.get("read_end", done) - m.get("read_start", t0)
    figures = {
        "converged": ok,
        "exact": exact,
        "total_s": done - t0,
        "connect_s": m.get("read_start", t0) - t0,
        "inventory_read_s": read,  # the hints run beside the VM reads: within the read
        "discovery_s": hooks.hints,
        "queue_s": m.get("handle_start", 0) - m.get("read_end", 0),
        "compute_s": hooks.engine,
        "store_s": m.get("handle_end", 0) - m.get("handle_start", 0) - hooks.engine,
        "apply_s": sum(a.end - a.start for a in applies),
        "first_apply_to_converged_s": done - min((a.start for a in applies), default=done),
        "transactions": sum(a.transactions for a in applies),
        "writes": sum(a.writes for a in applies),
        "vms": lab.vms,
        "ports": len(expected),
        "memberships": sum(len(v) for v in expected.values()),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    return figures, runner, driver, store


def cold_start(lab: Lab, reps: int, progress: Progress) -> tuple[dict[str, Any], Any]:
    """``reps`` cold starts; the last controller is left running (returned) for the next
    benchmark."""
    runs: list[dict[str, Any]] = []
    kept: Any = None
    for r in range(reps):
        figures, runner, driver, store = cold_start_once(lab, f"cold{r}")
        runs.append(figures)
        progress(f"  cold start {r + 1}/{reps}: {figures['total_s']:.2f} s "
                 f"(read {figures['inventory_read_s']:.2f}, hints {figures['discovery_s']:.2f}, "
                 f"compute {figures['compute_s']:.3f}, store {figures['store_s']:.2f}, "
                 f"apply {figures['apply_s']:.2f})")  # fmt: skip
        if r < reps - 1:
            runner.stop()
            store.close()
        else:
            kept = (runner, driver, store)
    keys = [k for k, v in runs[0].items() if k.endswith("_s")]
    out: dict[str, Any] = {k: summary([run[k] for run in runs]) for k in keys}
    out["runs"] = runs
    out["loadavg_1min"] = summary([run["loadavg"][0] for run in runs], 1.0, 2)
    out["all_converged_exactly"] = all(r["converged"] and r["exact"] for r in runs)
    return out, kept


# ---- convergence latency and its floors --------------------------------------------------


def fresh_api(base: Any) -> Any:
    """A subclass of ovsdbapp's API class with a connection slot of its own: ovsdbapp keeps
    the connection in a class attribute that only the first instance in a process sets, so
    a second lab's API would talk to the first lab's (gone) OVSDB."""
    return type(f"Bench{base.__name__}", (base,), {"_ovsdb_connection": None})


def bare_transactions(db_url: str, count: int) -> list[float]:
    """Floor (b): one-port OVSDB transactions through ovsdbapp's own Open_vSwitch API (add or
    remove one trunk VLAN on the spare port), call to commit reply."""
    from ovsdbapp.backend.ovs_idl import connection
    from ovsdbapp.schema.open_vswitch import impl_idl

    idl = connection.OvsdbIdl.from_server(db_url, "Open_vSwitch")
    conn = connection.Connection(idl=idl, timeout=10)
    api = fresh_api(impl_idl.OvsdbIdl)(conn)
    times = []
    try:
        for i in range(count):
            cmd = (api.db_add if i % 2 == 0 else api.db_remove)("Port", SPARE, "trunks", 42)
            started = time.perf_counter()
            cmd.execute(check_error=True)
            times.append(time.perf_counter() - started)
    finally:
        conn.stop()
    return times


@dataclass
class Trace:
    """Where one vMotion's latency goes inside vmfabric, from hooks installed from the
    outside: when the source thread had the update parsed (``_Watch._emit_changes``), when
    the controller's event loop handled it (engine + store), when the switch worker began
    the transaction."""

    emits: list[float] = field(default_factory=list)
    handles: list[tuple[float, float]] = field(default_factory=list)

    @contextlib.contextmanager
    def installed(self, ctl: Controller) -> Iterator[Trace]:
        watch: Any = vc_session._Watch
        emit_changes, handle = watch._emit_changes, ctl.intake.handle

        def timed_emit(w: Any, touched: Any) -> None:
            self.emits.append(time.time())
            emit_changes(w, touched)

        def timed_handle(batch: list[SourceEvent], now: float) -> Any:
            started = time.time()
            delta = handle(batch, now)
            self.handles.append((started, time.time()))
            return delta

        watch._emit_changes = timed_emit
        setattr(ctl.intake, "handle", timed_handle)  # noqa: B010
        try:
            yield self
        finally:
            watch._emit_changes = emit_changes
            setattr(ctl.intake, "handle", handle)  # noqa: B010

    def segments(self, done: float, marks: tuple[int, int], applies: list[Any],
                 committed: float) -> dict[str, float] | None:  # fmt: skip
        emit = next((t for t in self.emits[marks[0] :] if t >= done - 0.3), None)
        if emit is None:
            return None
        handled = next(((a, b) for a, b in self.handles[marks[1] :] if a >= emit), None)
        apply = next((a.start for a in applies if handled and a.start >= handled[1]), None)
        if handled is None or apply is None:
            return None
        return {
            "vcsim_to_source": emit - done,
            "source_to_loop": handled[0] - emit,
            "engine_and_store": handled[1] - handled[0],
            "coalesce_read_plan": apply - handled[1],
            "transaction_to_monitor": committed - apply,
        }


def convergence(
    lab: Lab, ctl: Controller, driver: TimedDriver, k: int, progress: Progress
) -> dict[str, Any]:
    """``k`` vMotions one at a time, each needing a VLAN added on the destination port."""
    with Trace().installed(ctl) as trace, Warnings().watching() as warned:
        out = _convergence(lab, driver, k, trace, progress)
    out["warnings"] = warned.records[:20]
    return out


def _convergence(
    lab: Lab, driver: TimedDriver, k: int, trace: Trace, progress: Progress
) -> dict[str, Any]:
    assert lab.monitor is not None and lab.sites
    rng = random.Random(11)
    latencies: list[float] = []
    floor_a: list[float] = []
    misses = 0
    parts: dict[str, list[float]] = {}
    writes0, txns0 = driver.inner.writes, driver.inner.transactions
    listeners = lab.listeners()  # floor (a): one bare listener per simulator
    started = time.time()
    try:
        for i in range(k):
            mover = lab.mover(i % lab.movers)
            dest = lab.next_host(mover)
            port, vlan = lab.port_of_host(dest), lab.mover_vlan(mover)
            if vlan in lab.monitor.vlans(port):
                raise RuntimeError(f"VLAN {vlan} already on {port}: the benchmark is wrong")
            listener = listeners[lab.sites.index(lab.site_of(mover))]
            time.sleep(rng.uniform(0, 0.25))  # sample every phase of vcsim's 250 ms tick
            mark, lmark = lab.monitor.mark(), listener.mark()
            tmarks, amark = (len(trace.emits), len(trace.handles)), len(driver.applies)
            done = lab.relocate(mover, dest)
            up = lab.monitor.wait_vlan(port, vlan, mark, 10)
            seen = listener.wait(*lab.morefs(mover, dest), lmark, 10)
            if up is None or seen is None:
                misses += 1
                continue
            latencies.append(up.at - done)
            floor_a.append(seen - done)
            seg = trace.segments(done, tmarks, driver.applies[amark:], up.at)
            for name, value in (seg or {}).items():
                parts.setdefault(name, []).append(value)
            if (i + 1) % 50 == 0:
                progress(f"  vMotion {i + 1}/{k}: p50 so far {_ms(latencies)} ms")
    finally:
        for listener in listeners:
            listener.close()
    elapsed = time.time() - started
    assert lab.ovs is not None
    floor_b = bare_transactions(lab.ovs.db_url, k)
    a50 = summary(floor_a, 1000.0, 1).get("p50", 0.0)
    b50 = summary(floor_b, 1000.0, 2).get("p50", 0.0)
    v = summary(latencies, 1000.0, 1)
    a = summary(floor_a, 1000.0, 1)
    return {
        "k": k,
        "misses": misses,
        "vmfabric_ms": v,
        "floor_a_waitforupdates_ms": a,
        "floor_b_ovsdb_txn_ms": summary(floor_b, 1000.0, 2),
        "ratio_p50": round(v.get("p50", 0.0) / (a50 + b50), 2) if a50 + b50 > 0 else None,
        "ratio_p99_to_floor_a_p99": (
            round(v["p99"] / a["p99"], 2) if a.get("p99") and v.get("p99") else None
        ),
        "vmfabric_minus_floor_a_ms": summary(
            [x - y for x, y in zip(latencies, floor_a, strict=True)], 1000.0, 1
        ),
        "writes": driver.inner.writes - writes0,
        "transactions": driver.inner.transactions - txns0,
        "workload_seconds": round(elapsed, 1),
        "inside_vmfabric_ms": {name: summary(v, 1000.0, 1) for name, v in parts.items()},
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def _ms(values: list[float]) -> str:
    return f"{summary(values, 1000.0, 1).get('p50', float('nan')):.1f}"


# ---- the storm ----------------------------------------------------------------------------


def _quiet(lab: Lab, driver: TimedDriver, seconds: float, timeout: float) -> None:
    assert lab.monitor is not None
    deadline = time.monotonic() + timeout
    last = (-1, -1)
    while time.monotonic() < deadline:
        now = (len(driver.applies), lab.monitor.mark())
        if now == last:
            return
        last = now
        time.sleep(seconds)


def storm(
    lab: Lab, ctl: Controller, driver: TimedDriver, n: int, progress: Progress
) -> dict[str, Any]:
    """``n`` vMotions issued back to back (no wait between them); count what reached OVSDB."""
    assert lab.monitor is not None and lab.sites
    coalesce = ctl.config.engine.coalesce
    plan = []
    for i in range(n):
        mover = lab.mover(i % lab.movers)
        plan.append((mover, lab.next_host(mover)))
    final = {m: lab.port_of_host(lab.where[m]) for m, _ in plan}
    mark, applies0 = lab.monitor.mark(), len(driver.applies)
    txns0, writes0, events0 = driver.inner.transactions, driver.inner.writes, ctl.events_handled
    with Warnings().watching() as warned:
        t0 = time.time()
        for mover, host in plan:
            lab.start_relocate(mover, host)
        issued = time.time() - t0
        progress(f"  {n} relocations issued in {issued:.1f} s; waiting for the fabric")
        want = {p: frozenset(lab.mover_vlan(m) for m, q in final.items() if q == p)
                for p in set(final.values())}  # fmt: skip
        ok = lab.monitor.wait(_converged(want), 180)
        _quiet(lab, driver, 1.0, 60)
    ups = lab.monitor.since(mark)
    applies = driver.applies[applies0:]
    commits = sorted(a.end for a in applies if a.transactions)
    blocks = sorted({(u.block, u.at) for u in ups}, key=lambda b: b[0])
    observed = sum(len((u.new ^ u.old) - {CLOSED}) for u in ups)
    writes = driver.inner.writes - writes0
    done = max((u.at for u in ups), default=t0)
    return {
        "vmotions": n,
        "issue_seconds": round(issued, 2),
        "converged": ok,
        "seconds_to_quiet": round(done - t0, 2),
        "events_handled": ctl.events_handled - events0,
        "transactions": driver.inner.transactions - txns0,
        "ovsdb_updates_seen": len(blocks),
        "writes": writes,
        "memberships_changed_seen": observed,
        "redundant_writes": writes - observed,
        "redundant_transactions": sum(1 for a in applies if a.transactions and not a.writes),
        "coalesce_ms": coalesce * 1000,
        "max_transactions_per_window": _max_in_window([b[1] for b in blocks], coalesce),
        "min_gap_between_commits_ms": round(
            min((b - a for a, b in itertools.pairwise(commits)), default=0) * 1000, 1
        ),
        "window_budget": int((done - t0) / coalesce) + 1,
        "warnings": warned.records[:20],
    }


def _max_in_window(times: list[float], window: float) -> int:
    """Most transactions whose monitor timestamps fall within any half-open window."""
    best, lo = 0, 0
    ordered = sorted(times)
    for hi, t in enumerate(ordered):
        while t - ordered[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


# ---- the baseline: periodic full sync ----------------------------------------------------


def full_sync(lab: Lab, api: Any) -> dict[str, Any]:
    """Read the whole inventory, compute every port's VLANs, push every port's full list
    in one transaction (what a periodic reconcile without events does)."""
    assert lab.admin is not None
    admin = lab.admin
    t0 = time.perf_counter()
    hosts = {o.obj._moId: admin._props(o)["name"] for o in admin._view(
        vim_host(), ["name"])}  # fmt: skip
    pgs = admin._view(vim_dvpg(), ["name", "config.defaultPortConfig"])
    placement = admin.placement()
    t1 = time.perf_counter()
    session = "vc"
    portgroups = []
    for o in pgs:
        p = admin._props(o)
        vlan = getattr(p.get("config.defaultPortConfig"), "vlan", None)
        vid = getattr(vlan, "vlanId", None)
        if isinstance(vid, int) and 1 <= vid <= 4094:
            portgroups.append(PortGroup(session, str(p["name"]), frozenset({vid})))
    model_hosts = [
        Host(session, name, uplinks=(Uplink("vmnic1", SWITCH, lab.port_of_host(name), "static"),))
        for name in hosts.values()
    ]
    vms = [
        Vm(session, moref, moref, hosts.get(host, ""), Power(power), nets)
        for moref, host, power, nets in placement
    ]
    desired = full_desired(model_hosts, portgroups, vms, [SessionPolicy(session)],
                           [SwitchPolicy(SWITCH, frozenset(lab.ports))])  # fmt: skip
    t2 = time.perf_counter()
    pushed = 0
    with api.transaction(check_error=True) as txn:
        for port in lab.ports:
            vlans = sorted(desired.get((SWITCH, port), ())) or [CLOSED]
            pushed += len(vlans)
            txn.add(api.db_set("Port", port, ("trunks", vlans)))
    t3 = time.perf_counter()
    return {"read_s": t1 - t0, "compute_s": t2 - t1, "push_s": t3 - t2, "sync_s": t3 - t0,
            "pushed": pushed}  # fmt: skip


def vim_host() -> Any:
    from bench.listener import vim

    return vim.HostSystem


def vim_dvpg() -> Any:
    from bench.listener import vim

    return vim.dvs.DistributedVirtualPortgroup


def baseline(
    lab: Lab, reps: int, intervals: tuple[int, ...], workloads: dict[str, tuple[float, int]],
    progress: Progress,
) -> dict[str, Any]:  # fmt: skip
    """Full syncs on the same lab (controller stopped), each after one vMotion that needs a
    VLAN; expected latency interval/2 + sync time, and writes for the same workloads
    (``workloads``: name -> (duration in seconds, vmfabric's writes for it))."""
    from ovsdbapp.backend.ovs_idl import connection
    from ovsdbapp.schema.open_vswitch import impl_idl

    assert lab.ovs is not None and lab.monitor is not None and lab.admin is not None
    idl = connection.OvsdbIdl.from_server(lab.ovs.db_url, "Open_vSwitch")
    conn = connection.Connection(idl=idl, timeout=30)
    api = fresh_api(impl_idl.OvsdbIdl)(conn)
    runs = []
    try:
        for r in range(reps):
            mover = lab.mover(r % lab.movers)
            dest = lab.next_host(mover)
            lab.admin.relocate(mover, dest)
            mark = lab.monitor.mark()
            figures = full_sync(lab, api)
            up = lab.monitor.wait_vlan(lab.port_of_host(dest), lab.mover_vlan(mover), mark, 10)
            ups = lab.monitor.since(mark)
            figures["delivered"] = up is not None
            figures["changed"] = sum(len((u.new ^ u.old) - {CLOSED}) for u in ups)
            runs.append(figures)
            progress(
                f"  full sync {r + 1}/{reps}: {figures['sync_s']:.2f} s, "
                f"{figures['pushed']} memberships pushed, {figures['changed']} changed"
            )
    finally:
        conn.stop()
    sync = summary([r["sync_s"] for r in runs])
    pushed = int(sorted(r["pushed"] for r in runs)[len(runs) // 2])
    out: dict[str, Any] = {
        "sync_s": sync,
        "read_s": summary([r["read_s"] for r in runs]),
        "compute_s": summary([r["compute_s"] for r in runs]),
        "push_s": summary([r["push_s"] for r in runs]),
        "pushed_per_sync": pushed,
        "changed_per_sync": summary([r["changed"] for r in runs], digits=0),
        "all_delivered": all(r["delivered"] for r in runs),
        "intervals": {},
    }
    for interval in intervals:
        entry: dict[str, Any] = {
            "expected_latency_s": round(interval / 2 + sync["p50"], 2),
            "worst_latency_s": round(interval + sync["p50"], 2),
            "writes_per_hour": int(3600 / interval * pushed),
            "workloads": {},
        }
        for name, (seconds, ours) in workloads.items():
            syncs = max(1, int(-(-seconds // interval)))
            entry["workloads"][name] = {"syncs": syncs, "writes": syncs * pushed,
                                        "vmfabric_writes": ours}  # fmt: skip
        out["intervals"][str(interval)] = entry
    return out

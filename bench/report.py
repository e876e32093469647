"""BENCHMARKS.md from the results of ``python -m bench``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

P = ("p50", "p95", "p99")


def _pcts(s: dict[str, Any], unit: str = "", keys: tuple[str, ...] = P) -> str:
    if not s or "p50" not in s:
        return "n/a"
    return " / ".join(f"{s[k]:g}" for k in keys) + (f" {unit}" if unit else "")


def _row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    return [_row(*head), _row(*["---"] * len(head)), *(_row(*r) for r in rows)]


def _ok(flag: bool) -> str:
    return "met" if flag else "**missed**"


def targets(r: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for name, lab in r["labs"].items():
        rows += _lab_targets(name, lab)
    return rows + _other_targets(r)


def _lab_targets(name: str, lab: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    conv = lab.get("convergence")
    if conv:
        ratio = conv.get("ratio_p50") or 0
        rows.append([f"convergence ratio p50, {name}", "<= 1.5", ratio, _ok(ratio <= 1.5)])
        p99, floor = conv["vmfabric_ms"].get("p99", 0), conv["floor_a_waitforupdates_ms"]
        tail = round(p99 / floor["p99"], 2) if floor.get("p99") else 0
        rows.append(
            [
                f"convergence p99 / floor (a) p99, {name}",
                "<= 1.5",
                f"{tail:g} ({p99:g} / {floor.get('p99', 0):g} ms)",
                _ok(tail <= 1.5),
            ]
        )
    st = lab.get("storm")
    if st:
        rows.append([f"storm redundant writes, {name}", "0", st["redundant_writes"],
                     _ok(st["redundant_writes"] == 0)])  # fmt: skip
        rows.append([f"storm transactions per {st['coalesce_ms']:g} ms window, {name}",
                     "<= 1", st["max_transactions_per_window"],
                     _ok(st["max_transactions_per_window"] <= 1)])  # fmt: skip
    return rows


def _other_targets(r: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    big = r["labs"].get("250x10000", {}).get("cold_start")
    if big:
        t = big["total_s"]["p50"]
        rows.append(["cold start 10,000 VMs (vcsim, p50)", "<= 1.5 s", f"{t:.2f} s",
                     _ok(t <= 1.5)])  # fmt: skip
    static = r.get("cold_start_engine_only", {}).get("100000")
    if static:
        t = static["total_s"]["p50"]
        rows.append(["cold start 100,000 VMs (static + fake, p50)", "<= 3 s", f"{t:.2f} s",
                     _ok(t <= 3)])  # fmt: skip
        edit = static.get("edit_to_switch_s", {}).get("p50")
        if edit is not None:
            rows.append(["one-line edit of the 100,000-VM file to the switch (p50)", "<= 1 s",
                         f"{edit:.2f} s", _ok(edit <= 1)])  # fmt: skip
    for n, e in r["engine"].items():
        eps = e["events_per_second"]["p50"]
        rows.append([f"engine events/s, {int(n):,} VMs (p50)", ">= 100,000", f"{eps:,.0f}",
                     _ok(eps >= 100_000)])  # fmt: skip
    e100 = r["engine"].get("100000")
    if e100:
        ms = e100["full_desired_ms"]["p50"]
        rows.append(["full recompute, 100,000 VMs (p50)", "<= 1 s", f"{ms:g} ms", _ok(ms <= 1000)])
    show = r.get("show_vm")
    if show:
        for what in ("table", "json"):
            t = show[f"{what}_s"]["p50"]
            rows.append([f"show vm {'--json' if what == 'json' else '(table)'}, "
                         f"{show['vms']:,} VMs (p50)", "<= 2 s",
                         f"{t:.2f} s ({show[f'ratio_{what}_p50']}x a bare SQL read)",
                         _ok(t <= 2)])  # fmt: skip
    for n, e in r["engine"].items():
        b = _with_groups(e)
        rows.append([f"bytes per VM, {int(n):,} VMs (inventory, autovlan and groups intents)",
                     "<= 600", b, _ok(b <= 600)])  # fmt: skip
    for n, m in r.get("rss", {}).items():
        rows.append([f"peak RSS of `vmfabric run`, {int(n):,} VMs (static + fake)", "<= 250 MB",
                     f"{m['peak_rss_mb']:g} MB", _ok(m["peak_rss_mb"] <= 250)])  # fmt: skip
    return rows


def _with_groups(e: dict[str, Any]) -> float:
    """Bytes per VM with every intent (the groups intent's typical config included); a run
    from before the groups figure gives its autovlan-only figure."""
    found = e.get("memory_with_groups", {}).get("same_inventory", {})
    return float(found.get("bytes_per_vm_total", e["bytes_per_vm_total"]))


def _rss(r: dict[str, Any]) -> list[str]:
    found = r.get("rss", {})
    if not found:
        return ["(not measured in this run)"]
    rows = [[f"{int(n):,}", f"{m['peak_rss_mb']:g}", f"{m['rss_at_convergence_mb']:g}",
             f"{m['rss_settled_mb']:g}", f"{m['converged_s']:g}", f"{m['stored_s']:g}",
             _load(m.get("loadavg"))] for n, m in found.items()]  # fmt: skip
    head = ["VMs", "peak RSS MB (VmHWM)", "RSS at switch convergence MB",
            "RSS once the store has every VM MB", "converged s", "store complete s",
            "load (1, 5, 15 min)"]  # fmt: skip
    return _table(head, rows)


def _machine(r: dict[str, Any]) -> list[str]:
    m = r["machine"]
    return _table(["", ""], [[k, v] for k, v in m.items()])


def _engine(r: dict[str, Any]) -> list[str]:
    rows = []
    for n, e in r["engine"].items():
        rows.append([
            f"{int(n):,}", e["hosts"], f"{e['events_per_second']['p50']:,.0f}",
            _pcts(e["us_per_event"], "us"), _pcts(e["full_desired_ms"], "ms"),
            _pcts(e["snapshot_apply_ms"], "ms"), e["bytes_per_vm_total"],
            e["bytes_per_vm_indexes"], _with_groups(e),
            e.get("memory_with_groups", {}).get("tagged", {}).get("bytes_per_vm_total", "-"),
            e["incremental_equals_full"],
        ])  # fmt: skip
    head = ["VMs", "hosts", "events/s (p50 of rounds)", "us/event p50/p95/p99",
            "full_desired p50/p95/p99", "snapshot apply p50/p95/p99",
            "bytes/VM (inventory + autovlan)", "bytes/VM (indexes alone)",
            "bytes/VM (+ groups intent)", "bytes/VM (+ groups, tagged VMs)",
            "incremental == full"]  # fmt: skip
    return _table(head, rows)


PHASES = ("connect_s", "inventory_read_s", "discovery_s", "queue_s", "compute_s", "store_s",
          "apply_s", "total_s")  # fmt: skip


def _cold(r: dict[str, Any]) -> list[str]:
    rows = []
    for name, lab in r["labs"].items():
        c = lab["cold_start"]
        rows.append([f"vcsim {name} ({len(c['runs'])} runs)",
                     *(_s(c.get(k)) for k in PHASES),
                     c["runs"][0]["memberships"], c["all_converged_exactly"],
                     c.get("loadavg_1min", {}).get("p50", "-")])  # fmt: skip
    for n, c in r["cold_start_engine_only"].items():
        rows.append([f"static + fake, {int(n):,} VMs ({len(c['runs'])} runs)", "-",
                     _s(c["inventory_read_s"]), _s(c["discovery_s"]), "-", _s(c["compute_s"]),
                     _s(c["store_s"]), _s(c["apply_s"]), _s(c["total_s"]), c["memberships"],
                     "yes", c.get("loadavg_1min", {}).get("p50", "-")])  # fmt: skip
    head = ["setup", "connect", "inventory read", "discovery", "queue", "compute", "store",
            "apply", "total", "(port, VLAN)s", "exact", "load (1 min)"]  # fmt: skip
    lines = _table(head, rows)
    edits = [
        [f"{int(n):,} VMs", _s(c.get("edit_to_source_s")), _s(c.get("edit_reread_s")),
         _s(c.get("edit_to_switch_s"))]
        for n, c in r["cold_start_engine_only"].items()
        if "edit_to_switch_s" in c
    ]  # fmt: skip
    if edits:
        lines += ["", "A one-line edit of the static inventory (one VM moved to a port group its "
                  "port lacks), with the controller running (s, p50 (max)):", "",
                  *_table(["file", "write to source's change", "of which the re-read",
                           "write to switch"], edits)]  # fmt: skip
    return lines


def _s(s: dict[str, Any] | None) -> str:
    if not s or "p50" not in s:
        return "-"
    return f"{s['p50']:.3f} ({s['max']:.3f})"


def _convergence(r: dict[str, Any]) -> list[str]:
    rows = []
    for name, lab in r["labs"].items():
        c = lab.get("convergence")
        if not c:
            continue
        rows.append([name, c["k"] - c["misses"], _pcts(c["vmfabric_ms"]),
                     _pcts(c["floor_a_waitforupdates_ms"]), _pcts(c["floor_b_ovsdb_txn_ms"]),
                     c["ratio_p50"], c.get("ratio_p99_to_floor_a_p99", "-"),
                     _pcts(c["vmfabric_minus_floor_a_ms"]),
                     f"{c['transactions']} / {c['writes']}", _load(c.get("loadavg"))])  # fmt: skip
    lines = _table(_CONV_HEAD, rows)
    inside = []
    for name, lab in r["labs"].items():
        parts = lab.get("convergence", {}).get("inside_vmfabric_ms")
        if parts:
            inside.append([name, *(_pcts(parts.get(k, {})) for k in SEGMENTS)])
    if inside:
        lines += ["", "Where a vMotion's latency goes (ms, p50 / p95 / p99; hooks from the bench):",
                  "", *_table(["lab", *SEGMENTS], inside)]  # fmt: skip
    return lines


SEGMENTS = ("vcsim_to_source", "source_to_loop", "engine_and_store", "coalesce_read_plan",
            "transaction_to_monitor")  # fmt: skip
_CONV_HEAD = ["lab ([vCenters x] hosts x VMs)", "vMotions", "vmfabric ms p50/p95/p99",
            "floor (a) WaitForUpdatesEx ms", "floor (b) OVSDB txn ms", "ratio p50",
            "p99 / floor (a) p99", "vmfabric - floor (a), same move, ms",
            "transactions / writes", "load (1, 5, 15 min) after"]  # fmt: skip


def _load(load: Any) -> str:
    return ", ".join(f"{round(x, 2):g}" for x in load) if load else "-"


def _storm(r: dict[str, Any]) -> list[str]:
    rows = []
    for name, lab in r["labs"].items():
        s = lab.get("storm")
        if not s:
            continue
        rows.append([name, s["vmotions"], s["issue_seconds"], s["seconds_to_quiet"],
                     s["events_handled"], s["transactions"], s["writes"],
                     s["memberships_changed_seen"], s["redundant_writes"],
                     s["redundant_transactions"], s["max_transactions_per_window"],
                     s["min_gap_between_commits_ms"]])  # fmt: skip
    head = [
        "lab",
        "vMotions",
        "issued in s",
        "quiet after s",
        "events",
        "OVSDB transactions",
        "(port, VLAN) writes",
        "changes seen by monitor",
        "redundant writes",
        "no-op transactions",
        "max transactions per 20 ms",
        "min gap between commits ms",
    ]
    return _table(head, rows)


def _baseline(r: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for name, lab in r["labs"].items():
        b = lab.get("baseline")
        if not b:
            continue
        lines.append(
            f"**{name}**: one full sync takes {_pcts(b['sync_s'], 's')} "
            f"(p50/p95/p99; read {b['read_s']['p50']:g} s, compute "
            f"{b['compute_s']['p50']:g} s, push {b['push_s']['p50']:g} s) and pushes "
            f"{b['pushed_per_sync']} (port, VLAN) memberships in one transaction."
        )
        lines.append("")
        rows = []
        conv = lab.get("convergence", {}).get("vmfabric_ms", {})
        for interval, e in b["intervals"].items():
            work = "; ".join(
                f"{w}: {v['syncs']} sync(s), {v['writes']} writes (vmfabric {v['vmfabric_writes']})"
                for w, v in e["workloads"].items()
            )
            ours = f"{conv.get('p50', 0) / 1000:.3f} s"
            expected, worst = f"{e['expected_latency_s']} s", f"{e['worst_latency_s']} s"
            rows.append([f"{interval} s", expected, worst, ours, e["writes_per_hour"], work])
        lines += _table(["interval", "expected latency (interval/2 + sync)", "worst",
                         "vmfabric p50", "writes per hour", "same workloads"], rows)  # fmt: skip
        lines.append("")
    return lines


METHOD = """\
## Method

- **Lab.** vcsim (govmomi's simulator, built from Debian's sources by
  `python -m vmfabric.lab.vcsim build`) with H hosts in one cluster and N VMs (the
  `4x64x2500` lab: four simulators of 64 hosts and 2,500 VMs each, one vCenter session per
  simulator in one controller, the movers spread over them, floor (a) measured by a bare
  listener on the mover's own simulator); a real
  Open vSwitch (ovsdb-server + ovs-vswitchd, userspace datapath, in a network namespace of
  its own) with bridge `sw` and one veth edge port per host (`p001`...), plus a `spare`
  port. Each host's `vmnic1` (its distributed-switch uplink) reports by CDP that it lands
  on its port (the hints file the harness answers `QueryNetworkHint` from), so discovery
  is real. The simulator's model VMs sit on `DC0_DVPG0`, set to VLAN 100; 50 "mover" VMs
  have a port group each (VLAN 1000 + i), so every vMotion of a mover to a host it has
  never visited needs one VLAN added on the destination port.
- **Controller.** `vmfabric.runtime.controller.Controller` in-process (its own event loop in a
  thread), a vcenter session, the ovs driver, a SQLite store in a temporary folder, the
  default `coalesce` of 20 ms. `prune_delay`, `audit_interval` and `hint_refresh` are set
  to 1 h so that no prune, audit or hint refresh lands inside a measurement.
- **Convergence latency** (one vMotion at a time, after a random 0-250 ms pause so that
  every phase of vcsim's update tick is sampled): from the moment the admin client sees
  its `RelocateVM_Task` in state success to the OVSDB update that puts the VLAN on the
  destination port, timestamped by an independent `ovsdb-client monitor --timestamp`
  process (server notification time, millisecond resolution, wall clock). Nothing polls.
  Floor (a): the same relocations seen by a bare pyVmomi `WaitForUpdatesEx` listener (a
  separate process, a property collector of its own, the same 1 s long poll). Floor (b):
  bare one-port ovsdbapp transactions on the spare port (call to commit), as many as
  vMotions. Ratio = vmfabric p50 / (floor a p50 + floor b p50).
- **Cold start**: ports reset to closed and the origin records removed, a new store, then
  from `Controller.run` to the monitor's last update that makes every edge port carry its
  expected VLANs (computed independently from the simulator's placement; "exact" checks
  that nothing else is there). Phases are timed by hooks installed from the bench (nothing
  in `src` changes): connect (login and filters), inventory read (the source's full read
  until its snapshot is built, vCenter's hints included: they run beside the VM reads),
  discovery (the time the `QueryNetworkHint` calls took, a part of the read), queue (snapshot
  emitted to handled), compute (the engine's snapshot apply), store (the rest of the
  snapshot's handling: resolve + SQLite), apply (the driver's transaction(s), including the
  wait for ovs-vswitchd's `cur_cfg`). The engine-only rows use a static inventory file
  written one flow mapping per line (the README's format) and `fake` switches (48 edge
  ports each), with static links; after each cold start one VM line is rewritten (the file
  replaced at once, as editors save) to a port group its port lacks, timed from the write
  to the source's change and to the switch carrying the VLAN.
- **Load.** Every lab and static figure records the machine's load average
  (`os.getloadavg`) beside it; `python -m bench --part vcenter --lab 250x10000` (or
  `--part static`) re-measures one part, `--merge` puts it into figures.json and this page.
- **Engine**: synthetic inventories (one host per 40 VMs, 200 port groups), a workload of
  vMotions (`VmUpsert` to another host). Events/s per round over 5 rounds of 20,000 events
  (fresh engine each); us/event from a separately timed pass; `full_desired` and the
  snapshot apply 5 times each; memory with tracemalloc after `gc`: "all" is everything
  the engine holds (its Vm, Host and PortGroup objects included), "indexes" excludes the
  inventory objects the caller made.
- **Storm**: 1,000 `RelocateVM_Task` calls back to back (round robin over the movers,
  each to a new host), then until the fabric is quiet for 1 s. Writes are the driver's
  count of (port, VLAN) memberships changed; "changes seen by monitor" counts the
  memberships OVSDB actually reports changed; redundant = writes - seen; a no-op
  transaction is a committed one that changed no membership. "max transactions per
  20 ms" counts OVSDB updates (monitor timestamps) in any 20 ms window.
- **Baseline**: a periodic full sync without events, run on the same lab after the
  controller stopped: read the whole inventory (VMs, hosts, port groups), compute every
  port's VLANs (`full_desired`, static wiring), push every port's full VLAN list in one
  OVSDB transaction. Each of its runs follows one vMotion that needs a VLAN, which the
  sync delivers. Its expected latency is interval/2 + sync time; its writes for a workload
  are (syncs in the workload's duration, at least one) x memberships pushed per sync.
- **Noise.** The machine has 2 cores shared with other engineers' test runs, and vcsim,
  OVS and the controller share them. Absolute times are this machine's figures; compare
  the ratios measured in the same run. Every figure is a median (p50) with percentiles
  over repeated runs; "(max)" follows p50 in the cold-start table.
"""


def _profile(r: dict[str, Any]) -> list[str]:
    prof = r.get("profile")
    if not prof:
        return ["(Run `python -m bench.profile` for the profiles behind the missed targets.)"]
    out: list[str] = []
    inv = prof.get("inventory")
    if inv and "vm_feeds" in inv:
        arrived = ", ".join(f"{k} {v:g} s" for k, v in inv["initial_read_arrived_s"].items())
        rows = [[name, ", ".join(f["paths"]), f"{f['bytes'] / 1e6:.1f} MB",
                 f["server_and_transfer_s"], f["fast_reader_s"], f["pyvmomi_s"]]
                for name, f in inv["vm_feeds"].items()]  # fmt: skip
        out += [
            f"**Inventory read** (vcsim, {inv['hosts']} hosts, {inv['vms']:,} VMs, load "
            f"{_load(inv.get('loadavg'))}): the source's full read, every feed in parallel and "
            f"the {inv['hint_queries']} hint queries included, took {inv['full_read_s']} s; "
            f"each feed's initial read arrived after: {arrived}. The VM feeds' answers, read "
            "by the source's reader and by pyVmomi's (s, best of 3):",
            "",
            *_table(
                ["feed", "paths", "answer", "server and transfer s", "fast reader s", "pyVmomi s"],
                rows,
            ),
            "",
        ]
    eng = prof.get("engine")
    if eng:
        rows = []
        for n, e in eng.items():
            for t in e["top"][:6]:
                rows.append([f"{int(n):,}", t["function"], t["calls"], t["tottime_s"]])
        out += [
            "**Engine** (cProfile of 20,000 vMotion events): the same functions with the same "
            "call counts at every size; the time per call grows (dict lookups most) as the "
            "working set outgrows the CPU caches:",
            "",
            *_table(["VMs", "function", "calls", "tottime s"], rows),
            "",
        ]
    return out


def _filters(r: dict[str, Any]) -> list[str]:
    f = r.get("profile", {}).get("filters")
    if not f:
        return []
    rows = [[name, _pcts(v)] for name, v in f["ms"].items()]
    load = f.get("loadavg_1min", {}).get("p50", "-")
    return [
        f"**What vcsim's delay depends on** ({f['hosts']} hosts, {f['vms']:,} VMs, "
        f"{f['moves']} vMotions per listener, one bare listener at a time in its own process "
        f"with its own collector, load {load}; ms from task completion, p50 / p95 / p99):",
        "",
        *_table(["listener", "ms"], rows),
        "",
    ]


FINDINGS = """## What the figures say

- **Convergence.** vcsim answers a collector's `WaitForUpdatesEx` by re-collecting every
  filter of that collector once per filter and per queued object change, so its cost per
  change grows with the square of the filters on a collector and with every property path
  of every object they cover. Wave 1's source had five filters on one collector: about 25
  collections of everything per change, 6x floor (a) at 10,000 VMs. The source now keeps
  one PropertyCollector, filter and long-poll thread per object kind and reads the VMs
  through three feeds: `vm` (`runtime.host`, `runtime.powerState`: what a vMotion or a
  power change needs), `vm-more` (name, networks, guest OS) and `vm-extra` (folder, custom
  attributes, guest NICs), so the feed a vMotion travels on costs two paths per VM, next
  to floor (a)'s one (`python -m bench.profile filters` shows the cost of paths per VM and
  of filters per collector: at 10,000 VMs a bare listener with the vm feed's two paths is
  as fast as one with `runtime.host` alone, one with every VM path the source reads takes
  three times as long, and wave 1's five filters seven times). The ratio and the p99 are
  in the tables; what remains above floor (a) is vmfabric's own 30-50 ms (the 20 ms
  `coalesce` window most) and vcsim's cost of the source's other feeds on the shared CPU.
  On a busy machine the heavy feeds (three paths of every VM per change) sometimes took
  vcsim more than the 30 s socket timeout to answer, and the session's reconnect made the
  10,000-VM p99 2.6-2.8x floor (a)'s in A/B runs; those two feeds alone may take 180 s (a
  dead server is still noticed within 30 s by every other call).
- **Cold start of 10,000 VMs.** Every feed sets itself up and reads its kind in parallel;
  VM answers are read by a regular-expression reader (every plain value, no object per XML
  element, in pieces of 256k characters so that no other thread waits long for the GIL:
  the 5 MB `vm` answer in about 0.055 s, `vm-more` and `vm-extra` together in about 0.25 s,
  where pyVmomi takes 0.9 s and 3 s), hosts by the same reader, and the two heavy VM feeds
  are built by vcsim on its two cores at once. The 250 `QueryNetworkHint` calls (CDP/LLDP
  per host) used to wait for the VM reads and then for the GIL: they now start as soon as
  the hosts are in (the host feed carries name, parent, state and network system; the
  network configuration comes on a `host-net` feed of its own), run on a worker thread
  beside the VM reads, and their answers are read with ElementTree instead of pyVmomi's
  deserializer; the snapshot waits for them. The cyclic collector is paused during the
  read and what it built is frozen until the runtime's targets are at rest (a full
  collection of the new inventory cost 0.17-0.19 s before the snapshot reached the
  runtime). The longest step left is vcsim building the 8 MB `vm-extra` answer, which
  ends about 0.9 s into the read; vcsim 0.24 builds each answer whole before writing a
  byte and ignores `maxObjects` (no paging), so an answer cannot be read as it streams in.
- **Static inventory at 100,000 VMs.** The file is written as the README shows it, one flow
  mapping per line. A line of the README's VM shape (`name`, `host`, `power`, `portgroups`,
  plain values) is captured by the line classifier itself and the VMs of a section are
  built in one pass (each distinct host and port-group list checked once): 0.48 s for
  100,000 VMs where libyaml took 10.8 s. Other flow lines go through regular-expression
  passes to JSON (a value JSON cannot tell apart from YAML's reading goes to the YAML
  loader; equality with libyaml is a property test). A one-line edit re-reads the changed
  line only and the source emits only the changed `VmUpsert`; the edit is timed on a
  controller at rest and reaches the switch in about 0.3 s, most of it the source's 0.1 s
  polling and one interval of stability (a half-written file is not read). The cold start
  is one core's worth of Python (the GIL serialises the source, the event loop and the
  store's writer thread), each run in a process of its own. What took it from 5.5 s to
  2.25 s: the read (1.9 s to 0.48 s); the cyclic collector paused while a whole inventory
  is read and handled, and the heap frozen (`gc.freeze`) from then until the targets are
  at rest (before, full collections rescanned the growing inventory again and again:
  0.8 s); a first inventory counted in bulk per port; an applying plan stores its audit
  entries once, its document being built from them when read (it was written three
  times: 0.6 s); the audit log written by one `executemany` on the driver's cursor
  (SQLAlchemy's per-row parameters cost 0.5 s for the 90,651 entries); and the 90,651
  `member` events published under one lock. Left, in order: the plans (each add names the
  VMs that need it, 0.6 s), the intake (inventory and intents take the 100,000 VMs:
  0.5 s) and the fake switches' applies.
- **Engine.** Events/s fall with the inventory size (same calls, slower dict lookups: a
  memory-bound working set). Wave 1's engine on this same machine (its last commit,
  90d7e2a, the same `bench.engine.throughput`, 20,000 events, 5 rounds) gave 142,270 /
  101,320 / 65,429 events/s at 1k / 10k / 100k; the start of this wave's performance work
  68,301 / 53,850 / 41,606. The shared inventory now re-indexes only what changed (a
  vMotion its host entry, a VM's port-group entries only when its networks change), keeps
  index entries as VM ids (a removal stops at its own id by identity), and shares host
  names and network tuples by setting equal values on the incoming record instead of
  rebuilding it; the autovlan intent recounts the changed VMs directly and skips a VM
  whose needs did not change. The target is missed at 100,000 VMs only: what is left is
  spread thin over dict lookups into a large working set, the two needs computations per
  moved VM and the removal-delay bookkeeping (profile below). Index entries are lists up
  to 64 VMs (memory) and sets above: with lists up to 512, a removal scanned a 500-VM port
  group's list. Memory: the autovlan intent keeps nothing per VM (per port a sorted array
  of VLANs and one of counts; what a VM counted before comes from the inventory's record
  of it before the batch), the groups intent reads the shared inventory instead of a copy
  of every VM and VMs in the same groups share one membership set, and the inventory
  shares host names, port-group and tag tuples. The table gives bytes per VM for the
  inventory with autovlan, with the groups intent on a typical configuration (five groups
  by tag, by tag AND tag, by name glob; two rules: `bench.engine.GROUPS`), and with VMs
  that carry two tags and an address each (bigger Vm objects, so above 600). "Indexes
  alone" is measured on an inventory whose names are already shared (the method changed
  with this run; the totals did not).
- **Peak memory of a real `run`.** `python -m bench.rss` starts `vmfabric run` on the cold
  start's 100,000-VM lab and reads VmHWM once the store holds every VM: 467 MB before this
  wave's work on it, 247.6 MB now, just under the 250 MB target (232 MB when the switches
  have converged; the peak comes after, while the store copies the 100,000 VMs in
  2,000-row chunks). What it took off: the inventory copy's rows and parameters built at
  once, every plan's audit entries and document built at once while the plans queued for
  the store, one live event per VM of a session's first inventory (its `session` event
  says it), the source's own copies of VMs the inventory then copied again, its last text
  kept as 100,000 line strings and its 100,000-entry map of line text to object (objects
  now come from its last state), and Alembic imported to stamp a new store (30 MB). About
  80 MB is the interpreter and the imports. Next if needed: copy the inventory from the
  inventory's own objects in smaller chunks.
- **Storm.** 1,000 vMotions cost one or two OVSDB transactions and only the (port, VLAN)
  memberships the final placement needs, with no redundant write. vcsim still takes more
  than the source's 30 s socket timeout to answer some long polls during the storm (every
  queued change re-collects every VM of every VM collector, the bare listener's included),
  so the session drops (fail-static: nothing removed), reconnects and re-reads.
- **Baseline.** A periodic full sync's expected latency is half its interval (15 s at 30 s,
  90 s at 180 s) against vmfabric's p50 of 0.4-1.7 s here (vcsim-bound); it writes every
  port's list every time (the table counts pushed memberships), while vmfabric writes one
  membership per vMotion that needs one.
"""


def _partial(r: dict[str, Any]) -> list[str]:
    """A note naming the rows that later partial runs (``--part ... --merge``) replaced."""
    runs = r.get("partial_runs") or []
    if not runs:
        return []
    lines = ["", "Rows replaced since by partial runs (`python -m bench --part PART [--lab LAB] "
             "--merge`; the machine's load is in each table):", ""]  # fmt: skip
    for run in runs:
        what = ", ".join(run.get("labs") or []) or ", ".join(run.get("parts") or [])
        load = run.get("machine", {}).get("loadavg_at_start")
        lines.append(f"- {run['started']}: {what} (load at start {_load(load)})")
    return lines


def render(r: dict[str, Any]) -> str:
    out = [
        "# vmfabric benchmarks",
        "",
        f"Generated by `make bench` (`.venv/bin/python -m bench`) on {r['started']}, "
        f"{r['seconds'] / 60:.1f} minutes. Raw figures: `bench/results/latest.json` "
        "(this run: `bench/figures.json`).",
        "",
        "**Absolute times are this machine's** (2 shared cores, see below); the ratios and "
        "counts are the portable figures.",
        "",
        "Reproduce: `make bench` on a fresh Debian 12 machine as root (it installs Open "
        "vSwitch, Go and govmomi's sources, builds vcsim and the venv), or "
        "`.venv/bin/python -m bench` once they are there; `--quick` is a two-minute smoke "
        "test of the harness.",
        *_partial(r),
        "",
        "## Targets",
        "",
        *_table(["target", "goal", "measured", ""], targets(r)),
        "",
        "## Machine and versions",
        "",
        *_machine(r),
        "",
        "## 1. Convergence latency, end to end (ms, p50 / p95 / p99)",
        "",
        *_convergence(r),
        "",
        "## 2. Cold start (s, p50 (max) over the runs)",
        "",
        *_cold(r),
        "",
        "## 3. Engine: throughput, recompute, memory",
        "",
        *_engine(r),
        "",
        "## 3b. Peak memory of a real `vmfabric run` (`python -m bench.rss`)",
        "",
        *_rss(r),
        "",
        "## 4. Storm economy",
        "",
        *_storm(r),
        "",
        "## 5. Baseline: periodic full sync",
        "",
        *_baseline(r),
        FINDINGS,
        "## Profiles behind the missed targets",
        "",
        "`python -m bench.profile` (also run by `make bench`):",
        "",
        *_filters(r),
        *_profile(r),
        METHOD,
        *_components(),
    ]
    return "\n".join(out) + "\n"


COMPONENTS = Path(__file__).with_name("components.md")


def _components() -> list[str]:
    """The wave-2 component benchmarks (drivers, groups, API, overlay, show), each run by its
    own ``python -m bench.X``: their figures and commands, kept in bench/components.md."""
    if not COMPONENTS.exists():
        return []
    return ["", COMPONENTS.read_text(encoding="utf-8").rstrip()]

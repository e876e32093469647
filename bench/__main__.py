"""``python -m bench`` (``make bench``): run every benchmark, write the figures and
BENCHMARKS.md. ``--quick`` runs tiny sizes (a smoke test of the harness, minutes not
tens of minutes); its figures are not the published ones.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import coldstatic, engine, fabric, profile, report, rss, showvm
from bench.stats import machine
from bench.vclab import Lab

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "latest.json"
FIGURES = ROOT / "bench" / "figures.json"
MARKDOWN = ROOT / "BENCHMARKS.md"


@dataclass(frozen=True)
class LabPlan:
    hosts: int
    vms: int
    cold_reps: int
    k: int = 0  # vMotions one at a time (0: cold start only)
    storm: int = 0
    baseline_reps: int = 0
    movers: int = 50
    sims: int = 1  # vCenter simulators (one session each); hosts and VMs are per simulator

    @property
    def name(self) -> str:
        return (
            f"{self.hosts}x{self.vms}" if self.sims == 1 else f"{self.sims}x{self.hosts}x{self.vms}"
        )


@dataclass(frozen=True)
class Plan:
    engine_sizes: tuple[int, ...]
    engine_events: int
    engine_rounds: int
    static_vms: tuple[int, ...]
    static_reps: int
    labs: tuple[LabPlan, ...]
    intervals: tuple[int, ...] = (30, 180)


FULL = Plan(
    engine_sizes=(1_000, 10_000, 100_000),
    engine_events=20_000,
    engine_rounds=5,
    static_vms=(10_000, 100_000),
    static_reps=3,
    labs=(
        LabPlan(hosts=64, vms=2_000, cold_reps=5, k=200, storm=1_000, baseline_reps=5),
        LabPlan(hosts=64, vms=1_000, cold_reps=5),
        LabPlan(hosts=250, vms=10_000, cold_reps=5, k=200, storm=1_000, baseline_reps=5),
        LabPlan(hosts=64, vms=2_500, cold_reps=3, k=200, sims=4),
    ),
)
QUICK = Plan(
    engine_sizes=(1_000, 10_000),
    engine_events=5_000,
    engine_rounds=3,
    static_vms=(10_000,),
    static_reps=2,
    labs=(LabPlan(hosts=8, vms=200, cold_reps=2, k=8, storm=12, baseline_reps=2, movers=4),
          LabPlan(hosts=4, vms=100, cold_reps=1, k=4, movers=4, sims=2)),
)  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self, text: str) -> None:
        elapsed = time.monotonic() - self.start
        print(f"[{int(elapsed // 60):02d}:{elapsed % 60:04.1f}] {text}", flush=True)


def run_lab(spec: LabPlan, intervals: tuple[int, ...], say: Clock) -> dict[str, Any]:
    name = f"{spec.hosts} hosts, {spec.vms} VMs"
    if spec.sims > 1:
        name = f"{spec.sims} vCenters x ({name})"
    say(f"lab {name}: starting vcsim and Open vSwitch")
    out: dict[str, Any] = {"hosts": spec.hosts, "vms": spec.vms, "movers": spec.movers,
                           "sims": spec.sims}  # fmt: skip
    with Lab(spec.hosts, spec.vms, spec.movers, say, sims=spec.sims) as lab:
        out["setup_seconds"] = lab.setup_seconds
        say(f"lab {name}: ready {lab.setup_seconds}; cold start x{spec.cold_reps}")
        out["cold_start"], (runner, driver, store) = fabric.cold_start(lab, spec.cold_reps, say)
        try:
            if spec.k:
                say(f"lab {name}: {spec.k} vMotions one at a time")
                out["convergence"] = fabric.convergence(lab, runner.ctl, driver, spec.k, say)
            if spec.storm:
                say(f"lab {name}: storm of {spec.storm} vMotions")
                out["storm"] = fabric.storm(lab, runner.ctl, driver, spec.storm, say)
        finally:
            runner.stop()
            store.close()
        if spec.baseline_reps:
            say(f"lab {name}: periodic full-sync baseline x{spec.baseline_reps}")
            workloads: dict[str, tuple[float, int]] = {}
            if "convergence" in out:
                conv = out["convergence"]
                workloads[f"{spec.k} vMotions one at a time"] = (
                    conv["workload_seconds"], conv["writes"])  # fmt: skip
            if "storm" in out:
                st = out["storm"]
                workloads[f"storm of {spec.storm} vMotions"] = (
                    st["seconds_to_quiet"], st["writes"])  # fmt: skip
            out["baseline"] = fabric.baseline(lab, spec.baseline_reps, intervals, workloads, say)
    return out


def run_parts(plan: Plan, parts: set[str], labs: set[str], say: Clock) -> dict[str, Any]:
    """Only the named parts (``vcenter``, ``static``, ``profile``) and labs: what a change
    to one part needs re-measured, on a shared machine, without the whole run."""
    results: dict[str, Any] = {"machine": machine(), "started": time.strftime(
        "%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "parts": sorted(parts)}  # fmt: skip
    if "static" in parts:
        results["cold_start_engine_only"] = {
            str(n): coldstatic.run(n, plan.static_reps, say) for n in plan.static_vms
        }
    if "vcenter" in parts:
        results["labs"] = {
            spec.name: run_lab(spec, plan.intervals, say)
            for spec in plan.labs
            if not labs or spec.name in labs
        }
    if "profile" in parts:
        results["profile"] = {"inventory": profile.profile_inventory(),
                              "filters": profile.filters_experiment()}  # fmt: skip
    results["seconds"] = round(time.monotonic() - say.start, 1)
    return results


def run(plan: Plan, say: Clock) -> dict[str, Any]:
    results: dict[str, Any] = {"machine": machine(), "started": time.strftime(
        "%Y-%m-%d %H:%M:%S UTC", time.gmtime())}  # fmt: skip
    results["plan"] = {
        "engine_sizes": plan.engine_sizes, "engine_events": plan.engine_events,
        "engine_rounds": plan.engine_rounds, "static_vms": plan.static_vms,
        "static_reps": plan.static_reps, "labs": [vars(lab) for lab in plan.labs],
    }  # fmt: skip
    say("engine: throughput, recompute, memory")
    results["engine"] = engine.run(plan.engine_sizes, plan.engine_events, plan.engine_rounds, say)
    results["cold_start_engine_only"] = {
        str(n): coldstatic.run(n, plan.static_reps, say) for n in plan.static_vms
    }
    results["show_vm"] = showvm.run(max(plan.static_vms), plan.static_reps, say)
    results["rss"] = {str(n): rss.run(n, say) for n in plan.static_vms}
    results["labs"] = {}
    for spec in plan.labs:
        results["labs"][spec.name] = run_lab(spec, plan.intervals, say)
    if plan is FULL:
        say("profiles behind the targets (python -m bench.profile)")
        results["profile"] = {"engine": profile.profile_engine(),
                              "inventory": profile.profile_inventory(),
                              "filters": profile.filters_experiment()}  # fmt: skip
    results["seconds"] = round(time.monotonic() - say.start, 1)
    return results


def _stop(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--no-write", action="store_true", help="print, write no files")
    parser.add_argument("--render", action="store_true",
                        help="only re-render BENCHMARKS.md from bench/figures.json")  # fmt: skip
    parser.add_argument("--part", action="append", choices=["vcenter", "static", "profile"],
                        help="run only this part (repeatable); results go to "
                        "bench/results/parts.json and are merged into figures.json with "
                        "--merge")  # fmt: skip
    parser.add_argument(
        "--lab",
        action="append",
        default=[],
        help="with --part vcenter: only this lab (64x2000, 250x10000, 4x64x2500)",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="merge --part results into bench/figures.json and re-render",
    )
    args = parser.parse_args(argv)
    if args.part:
        return _parts(args)
    if args.render:
        results = json.loads(FIGURES.read_text(encoding="utf-8"))
        if profile.OUT.exists():
            extra = json.loads(profile.OUT.read_text(encoding="utf-8"))
            results["profile"] = {**extra, **results.get("profile", {})}  # this run's win
            FIGURES.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        MARKDOWN.write_text(report.render(results), encoding="utf-8")
        return 0
    signal.signal(signal.SIGTERM, _stop)
    say = Clock()
    results = run(QUICK if args.quick else FULL, say)
    results["quick"] = args.quick
    text = json.dumps(results, indent=1, sort_keys=False, default=str)
    if args.no_write:
        print(text)
        return 0
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text + "\n", encoding="utf-8")
    if not args.quick:
        FIGURES.write_text(text + "\n", encoding="utf-8")
        MARKDOWN.write_text(report.render(results), encoding="utf-8")
    else:
        (RESULTS.parent / "BENCHMARKS-quick.md").write_text(report.render(results), "utf-8")
    say(f"done: {RESULTS}" + ("" if args.quick else f", {FIGURES}, {MARKDOWN}"))
    return 0


def _parts(args: argparse.Namespace) -> int:
    signal.signal(signal.SIGTERM, _stop)
    say = Clock()
    results = run_parts(QUICK if args.quick else FULL, set(args.part), set(args.lab), say)
    text = json.dumps(results, indent=1, default=str)
    out = RESULTS.parent / "parts.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n", encoding="utf-8")
    if args.merge and not args.quick:
        figures = json.loads(FIGURES.read_text(encoding="utf-8"))
        figures.setdefault("labs", {}).update(results.get("labs", {}))
        for key in ("cold_start_engine_only", "profile"):
            if key in results:
                figures[key] = {**figures.get(key, {}), **results[key]}
        figures.setdefault("partial_runs", []).append(
            {"started": results["started"], "parts": results["parts"],
             "labs": sorted(results.get("labs", {})), "machine": results["machine"]})  # fmt: skip
        FIGURES.write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
        MARKDOWN.write_text(report.render(figures), encoding="utf-8")
    say(f"done: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

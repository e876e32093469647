"""``vmfabric show vm`` at scale: the whole command (table and ``--json``) against a floor.

The store holds the engine benchmark's synthetic inventory (``bench.engine``) with an
address and two tags per VM. Each command is a fresh ``vmfabric show vm`` process, timed
from start to exit with its output going to a file, so the figure is what a person waits
for, Python's start included. The floor is the bare SQL read of the same rows (VMs with
their networks, addresses and tags; hosts with uplinks; port groups) with sqlite3, in
this process: the ratio says what building, sorting and printing the view costs on top of
reading it. Target (issue 10): at most 2 s for 100,000 VMs, table and JSON.

    .venv/bin/python -m bench.showvm [--vms 100000] [--reps 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.engine import SESSION, make_inventory
from bench.stats import summary
from vmfabric.core.model import Vm
from vmfabric.store import Store

Progress = Callable[[str], None]
VMFABRIC = str(Path(sys.executable).parent / "vmfabric")
TARGET_S = 2.0
FLOOR_SQL = (
    "SELECT session, id, name, host, power, networks, ips, tags FROM vms",
    "SELECT session, host, nic, switch, port FROM host_uplinks",
    "SELECT session, name, vswitch_nics FROM hosts",
    "SELECT session, name, vlans, vswitch FROM portgroups",
)


def _decorated(vm: Vm, i: int) -> Vm:
    address = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
    tags = ("env:prod", f"tier:t{i % 7}")
    return dataclasses.replace(vm, ips=(address,), tags=tags)


def fill_store(path: Path, n_vms: int) -> float:
    """Write the inventory of ``n_vms`` VMs into a new store; seconds it took."""
    inv = make_inventory(n_vms)
    vms = [_decorated(vm, i) for i, vm in enumerate(inv.vms)]
    with Store(f"sqlite:///{path}") as store:
        store.set_session(SESSION, "static", "bench", True, frozenset(range(1, 4095)), "enforce")
        started = time.perf_counter()
        store.replace_inventory(SESSION, inv.hosts, inv.portgroups, vms, 0.0)
        return time.perf_counter() - started


def floor_read(path: Path) -> float:
    """Seconds for the bare SQL read of the rows ``show vm`` needs."""
    started = time.perf_counter()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = sum(len(conn.execute(sql).fetchall()) for sql in FLOOR_SQL)
    finally:
        conn.close()
    assert rows > 0
    return time.perf_counter() - started


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def timed_show(config: Path, out: Path, *args: str) -> tuple[float, float]:
    """Wall and CPU seconds of one ``vmfabric show vm ARGS`` process, output to ``out``
    (CPU seconds say less about a busy shared machine's other load)."""
    argv = [VMFABRIC, "show", "vm", *args, "-c", str(config)]
    with out.open("w") as sink:
        cpu, started = _children_cpu(), time.perf_counter()
        subprocess.run(argv, stdout=sink, check=True, timeout=600)
        return time.perf_counter() - started, _children_cpu() - cpu


def run(n_vms: int, reps: int, say: Progress) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="vmfabric-showvm-"))
    try:
        db, config = folder / "vmfabric.db", folder / "vmfabric.yaml"
        say(f"show vm: writing a store of {n_vms:,} VMs")
        fill = fill_store(db, n_vms)
        config.write_text(json.dumps({"store": f"sqlite:///{db}"}), encoding="utf-8")
        floor: list[float] = []
        runs: dict[str, list[tuple[float, float]]] = {"table": [], "json": []}
        for rep in range(reps):
            say(f"show vm: {n_vms:,} VMs, run {rep + 1}/{reps}")
            floor.append(floor_read(db))
            runs["table"].append(timed_show(config, folder / "table.txt"))
            runs["json"].append(timed_show(config, folder / "vm.json", "--json"))
        lines = sum(1 for _ in (folder / "table.txt").open()) - 1
        assert lines == n_vms, f"the table has {lines} rows"
        assert len(json.loads((folder / "vm.json").read_text())) == n_vms
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    result: dict[str, Any] = {
        "vms": n_vms,
        "replace_inventory_s": round(fill, 3),
        "floor_sql_s": summary(floor),
        "table_s": summary([wall for wall, _ in runs["table"]]),
        "json_s": summary([wall for wall, _ in runs["json"]]),
        "table_cpu_s": summary([cpu for _, cpu in runs["table"]]),
        "json_cpu_s": summary([cpu for _, cpu in runs["json"]]),
    }
    base = result["floor_sql_s"]["p50"]
    result["ratio_table_p50"] = round(result["table_s"]["p50"] / base, 1)
    result["ratio_json_p50"] = round(result["json_s"]["p50"] / base, 1)
    return result


def _line(r: dict[str, Any], what: str) -> str:
    wall, cpu = r[f"{what}_s"]["p50"], r[f"{what}_cpu_s"]["p50"]
    verdict = "met" if wall <= TARGET_S else "MISSED"
    name = "table" if what == "table" else "--json"
    return (
        f"  {name:6}: {wall:.3f} s wall, {cpu:.3f} s CPU ({r[f'ratio_{what}_p50']}x the floor)"
        f"  target <= {TARGET_S:g} s: {verdict}"
    )


def report(r: dict[str, Any]) -> str:
    floor = r["floor_sql_s"]["p50"]
    return "\n".join(
        [
            f"show vm, {r['vms']:,} VMs (p50 of {r['table_s']['n']} runs, whole process):",
            f"  floor (bare SQL read of the same rows): {floor:.3f} s",
            _line(r, "table"),
            _line(r, "json"),
            f"  (writing the store: replace_inventory {r['replace_inventory_s']:.2f} s)",
        ]
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.showvm", description=__doc__)
    parser.add_argument("--vms", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args(argv)
    result = run(args.vms, args.reps, lambda text: print(text, file=sys.stderr, flush=True))
    print(report(result))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

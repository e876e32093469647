"""Peak RSS of a real ``vmfabric run`` process on a large static inventory (issue 15).

The lab is the cold-start benchmark's (``bench.coldstatic.write_lab``: the engine
benchmark's inventory as a static file, static links, fake switches, a SQLite store in a
temporary folder), with each fake switch keeping its state in a JSON file so that this
process can watch it. The controller runs as its own process (``python -m vmfabric run``);
once every fake switch carries the VLANs its ports need (a condition, read through the
fake driver from its state file), the process's ``VmHWM`` and ``VmRSS`` are read from
``/proc/PID/status`` and it is stopped with SIGTERM (its PID), as an operator stops it.

``python -m bench.rss [N ...]`` prints the figures as JSON; ``run(n_vms)`` returns them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bench.coldstatic import write_lab
from vmfabric.config import parse_config
from vmfabric.core.model import PortState
from vmfabric.targets.switchport.fake import FakeDriver

Progress = Callable[[str], None]
DEADLINE_S = 900.0  # generous: a 100k cold start on a busy 2-core machine
STOP_S = 120.0
SETTLE_S = 3.0  # RSS is sampled this long after the store counts every VM
TARGET_MB = 250.0  # issue 15


def proc_status(pid: int) -> dict[str, int]:
    """The ``kB`` figures of /proc/PID/status (VmHWM, VmRSS, ...), in kB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        name, _, value = line.partition(":")
        parts = value.split()
        if len(parts) == 2 and parts[1] == "kB":
            out[name] = int(parts[0])
    return out


def _converged(drivers: list[FakeDriver], expected: dict[tuple[str, str], set[int]]) -> bool:
    for driver in drivers:
        if not driver.state_file or not driver.state_file.exists():
            return False
        states = driver.read_ports()
        for (switch, port), vlans in expected.items():
            if switch == driver.name and not vlans <= states[port].vlans:
                return False
    return True


def _wait(
    proc: subprocess.Popen[bytes], done: Callable[[], bool], log: Path, rss: list[list[float]]
) -> None:
    """Until ``done()``; appends (seconds, VmRSS MB) samples to ``rss`` on the way."""
    started = time.monotonic()
    deadline = started + DEADLINE_S
    while not done():
        if proc.poll() is not None:
            tail = log.read_text(encoding="utf-8", errors="replace")[-2000:]
            raise RuntimeError(f"vmfabric run exited with {proc.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"switches not converged after {DEADLINE_S:.0f}s")
        _sample(proc.pid, started, rss)
        time.sleep(0.5)


def _sample(pid: int, started: float, rss: list[list[float]]) -> None:
    try:
        kb = proc_status(pid).get("VmRSS", 0)
    except OSError:  # gone between the poll and the read: the caller sees its exit
        return
    rss.append([round(time.monotonic() - started, 1), round(kb / 1024, 1)])


def _settle(proc: subprocess.Popen[bytes], config: Path, n_vms: int, started: float,
            rss: list[list[float]]) -> float:  # fmt: skip
    """Samples until ``show session --json`` counts every VM (the store has caught up with
    the cold start: its inventory written), then ``SETTLE_S`` more; returns when the store
    had them (seconds since start)."""
    deadline = time.monotonic() + DEADLINE_S
    while _stored_vms(config) < n_vms:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the store never counted every VM")
        _sample(proc.pid, started, rss)
        time.sleep(0.5)
    stored = time.monotonic() - started
    end = time.monotonic() + SETTLE_S
    while time.monotonic() < end:
        _sample(proc.pid, started, rss)
        time.sleep(0.5)
    return stored


def _stored_vms(config: Path) -> int:
    cmd = [sys.executable, "-m", "vmfabric", "show", "session", "--json", "-c", str(config)]
    out = subprocess.run(cmd, capture_output=True, check=False, cwd=config.parent)
    if out.returncode != 0:
        return 0
    return sum(int(s.get("vms") or 0) for s in json.loads(out.stdout))


def _lab(n_vms: int, folder: Path) -> tuple[Path, list[FakeDriver], dict[Any, set[int]]]:
    data, expected, _ = write_lab(n_vms, folder)
    for sw in data["switches"]:
        sw["state_file"] = str(folder / f"{sw['name']}.json")
    path = folder / "vmfabric.yaml"
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")  # JSON is YAML
    config = parse_config(data, base_dir=folder)
    return path, [FakeDriver(s) for s in config.switches], expected


def run(n_vms: int, progress: Progress = lambda _: None) -> dict[str, Any]:
    """Start ``vmfabric run`` on an ``n_vms`` static lab, wait until the switches carry
    every VLAN needed and the store counts every VM, read its peak RSS, stop it with
    SIGTERM. Figures in MB (2**20); ``met`` compares the peak with ``TARGET_MB``."""
    with tempfile.TemporaryDirectory(prefix="vmfabric-rss-") as tmp:
        folder = Path(tmp)
        progress(f"rss: {n_vms} VMs: writing the lab")
        config, drivers, expected = _lab(n_vms, folder)
        log = folder / "run.log"
        cmd = [sys.executable, "-m", "vmfabric", "run", "-c", str(config)]
        progress(f"rss: {n_vms} VMs: vmfabric run")
        with open(log, "wb") as out:
            started = time.monotonic()
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=folder)
        samples: list[list[float]] = []
        try:
            _wait(proc, lambda: _converged(drivers, expected), log, samples)
            converged = time.monotonic() - started
            status = proc_status(proc.pid)
            stored = _settle(proc, config, n_vms, started, samples)
            after = proc_status(proc.pid)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(STOP_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
        hwm = after["VmHWM"] / 1024
        return {
            "vms": n_vms,
            "peak_rss_mb": round(hwm, 1),  # VmHWM once settled
            "peak_rss_at_convergence_mb": round(status["VmHWM"] / 1024, 1),
            "rss_at_convergence_mb": round(status["VmRSS"] / 1024, 1),
            "rss_settled_mb": round(after["VmRSS"] / 1024, 1),  # once stored, SETTLE_S on
            "rss_samples": samples,  # [seconds since start, VmRSS MB]
            "bytes_per_vm_peak": round(hwm * 2**20 / n_vms, 1),
            "target_mb": TARGET_MB,
            "met": hwm <= TARGET_MB,
            "converged_s": round(converged, 2),
            "stored_s": round(stored, 2),  # when the store counted every VM
            "exit_code": rc,
            "loadavg": [round(x, 2) for x in os.getloadavg()],
        }


def _carries(want: dict[str, set[int]]) -> Callable[[Mapping[str, PortState]], bool]:
    def carries(states: Mapping[str, PortState]) -> bool:
        return all(want[p] <= states[p].vlans for p in want)

    return carries


def where(n_vms: int, top: int = 25, frames: int = 1) -> dict[str, Any]:
    """Where the memory goes: the same lab run in this process (controller in a thread,
    in-memory fake switches) under tracemalloc; the traced peak, and the top ``top``
    allocation sites (by file and line) once the switches carry every VLAN needed."""
    from bench.vclab import ControllerThread
    from vmfabric.runtime import Controller
    from vmfabric.store import Store

    with tempfile.TemporaryDirectory(prefix="vmfabric-rss-") as tmp:
        folder = Path(tmp)
        data, expected, _ = write_lab(n_vms, folder)
        config = parse_config(data, base_dir=folder)
        drivers = {s.name: FakeDriver(s) for s in config.switches}
        tracemalloc.start(frames)
        store = Store(config.store_url())
        runner = ControllerThread(Controller(config, store, drivers=drivers)).start()  # type: ignore[arg-type]
        try:
            at_peak = _watch(drivers, expected)
            current, peak = tracemalloc.get_traced_memory()
            snap = tracemalloc.take_snapshot()
        finally:
            runner.stop()
            store.close()
            tracemalloc.stop()
    stats = snap.statistics("lineno")
    deep = snap.statistics("traceback")[:top] if frames > 1 else []
    near_peak = at_peak.statistics("traceback")[:top] if at_peak is not None else []
    return {
        "vms": n_vms,
        "traced_mb": round(current / 2**20, 1),
        "traced_peak_mb": round(peak / 2**20, 1),
        "top": [f"{s.size / 2**20:8.1f} MB {s.count:9d}  {s.traceback[0]}" for s in stats[:top]],
        "top_tracebacks": [
            [f"{s.size / 2**20:.1f} MB", *(str(f) for f in s.traceback)] for s in deep
        ],
        "near_peak_mb": round(sum(s.size for s in at_peak.statistics("filename")) / 2**20, 1)
        if at_peak is not None
        else 0.0,
        "near_peak_tracebacks": [
            [f"{s.size / 2**20:.1f} MB", *(str(f) for f in s.traceback)] for s in near_peak
        ],
    }


def _watch(
    drivers: Mapping[str, FakeDriver], expected: Mapping[tuple[str, str], set[int]]
) -> tracemalloc.Snapshot | None:
    """Until every switch carries what it must; meanwhile a snapshot whenever the traced
    memory reaches a new high (by 20 MB): the last one is the composition near the peak."""
    wants = {
        name: {port: vlans for (sw, port), vlans in expected.items() if sw == name}
        for name in drivers
    }
    best, snap = 0, None
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        current = tracemalloc.get_traced_memory()[0]
        if current > best + 20 * 2**20:
            best, snap = current, tracemalloc.take_snapshot()
        if all(_carries(wants[n])(d.read_ports()) for n, d in drivers.items()):
            return snap
        time.sleep(0.05)
    raise TimeoutError(f"switches not converged after {DEADLINE_S:.0f}s")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--where"]:
        sizes = [int(a) for a in argv[1:]] or [100_000]
        print(json.dumps([where(n, frames=8) for n in sizes], indent=1))
        return 0
    sizes = [int(a) for a in argv] or [10_000, 100_000]
    out = {str(n): run(n, lambda text: print(text, file=sys.stderr)) for n in sizes}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Summaries of repeated measurements and a description of the machine they ran on."""

from __future__ import annotations

import math
import os
import platform
import subprocess
from collections.abc import Sequence
from importlib import metadata
from typing import Any

PERCENTILES = (50, 90, 95, 99)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: Sequence[float], scale: float = 1.0, digits: int = 3) -> dict[str, Any]:
    """n, min, p50, p90, p95, p99, max and mean of ``values`` times ``scale``."""
    out: dict[str, Any] = {"n": len(values)}
    if not values:
        return out
    scaled = [v * scale for v in values]
    out["min"] = round(min(scaled), digits)
    for q in PERCENTILES:
        out[f"p{q}"] = round(percentile(scaled, q), digits)
    out["max"] = round(max(scaled), digits)
    out["mean"] = round(sum(scaled) / len(scaled), digits)
    return out


def _first_line(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0] if lines else "unknown"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return math.nan


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _dpkg(package: str) -> str:
    return _first_line(["dpkg-query", "-W", "-f=${Version}", package])


def machine() -> dict[str, Any]:
    """Hardware, OS and the versions of every component the benchmarks run."""
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "kernel": platform.release(),
        "os": _first_line(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"]),
        "python": platform.python_version(),
        "vmfabric": _version("vmfabric"),
        "pyvmomi": _version("pyvmomi"),
        "ovsdbapp": _version("ovsdbapp"),
        "openvswitch": _first_line(["ovs-vswitchd", "--version"]),
        "govmomi (vcsim)": _dpkg("golang-github-vmware-govmomi-dev"),
        "go": _first_line(["go", "version"]),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }

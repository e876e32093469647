"""``vmfabric demo --overlay`` runs to the end with every expectation met, and removes
everything it started: also when it is stopped with SIGTERM halfway."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vmfabric.lab import netns as nsx
from vmfabric.lab.ovs import ovs_installed

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.timeout(300)]
VMFABRIC = str(Path(sys.executable).parent / "vmfabric")


def _need() -> None:
    if not ovs_installed():
        pytest.skip("Open vSwitch is not installed")
    missing = [t for t in ("lldpd", "vtysh", "ethtool", "nft") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


def _left_behind(output: str) -> list[str]:
    """Namespaces and live processes of the demo's lab still there."""
    lab = re.search(r"lab (\S+) up in", output)
    workdir = re.search(r"in (/tmp/vmfabric-overlay-\S+):", output)
    assert lab and workdir, output
    left = nsx.list_netns(f"vfl-{lab.group(1)}-")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if workdir.group(1) in cmdline and state not in ("Z", "X"):
            left.append(f"process {proc.name}")
    if Path(workdir.group(1)).exists():
        left.append(workdir.group(1))
    return left


def test_the_overlay_demo_meets_every_expectation_and_leaves_nothing() -> None:
    _need()
    done = subprocess.run([VMFABRIC, "demo", "--overlay"], capture_output=True, text=True,
                          timeout=280, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "demo finished" in done.stdout
    assert done.stdout.count(" ok ") >= 12
    assert _left_behind(done.stdout) == []


def test_sigterm_halfway_removes_the_lab() -> None:
    _need()
    proc = subprocess.Popen([VMFABRIC, "demo", "--overlay"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip
    seen = ""
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 200
        while "2. VMs start" not in seen and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
        assert "2. VMs start" in seen, seen
        os.kill(proc.pid, signal.SIGTERM)
        rest, _ = proc.communicate(timeout=120)
        seen += rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert proc.returncode != 0
    assert "interrupted" in seen
    assert _left_behind(seen) == []

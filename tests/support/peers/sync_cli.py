"""Running the real ``vmfabric`` command against a vendor peer: a static inventory with two
hypervisors wired to two edge ports, ``sync``, ``show interface --json``, and the one-line
error check. Shared by the junos, cumulus and cli drivers' end-to-end tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

VMFABRIC = str(Path(sys.executable).parent / "vmfabric")


def inventory(web_host: str = "esx1") -> dict[str, Any]:
    """VM web-01 (port group web, VLAN 110) on ``web_host``; db-01 (VLAN 120) on esx1."""
    return {
        "hosts": [{"name": "esx1", "nics": ["vmnic0"]}, {"name": "esx2", "nics": ["vmnic0"]}],
        "portgroups": [{"name": "web", "vlan": 110}, {"name": "db", "vlan": 120}],
        "vms": [
            {"name": "web-01", "host": web_host, "portgroups": ["web"]},
            {"name": "db-01", "host": "esx1", "portgroups": ["db"]},
        ],
    }


def write_config(
    tmp: Path,
    switch: Mapping[str, Any],
    ports: tuple[str, str],
    inv: Mapping[str, Any] | None = None,
) -> Path:
    """vmfabric.yaml (store, a static session, ``switch``, esx1 -> ports[0], esx2 -> ports[1])."""
    write_inventory(tmp, inv or inventory())
    cfg = {
        "store": "sqlite:///vf.db",
        "sessions": [{"name": "inv", "kind": "static", "path": "inv.yaml"}],
        "switches": [dict(switch)],
        "links": [
            {"host": "esx1", "nic": "vmnic0", "switch": switch["name"], "port": ports[0]},
            {"host": "esx2", "nic": "vmnic0", "switch": switch["name"], "port": ports[1]},
        ],
    }
    path = tmp / "vmfabric.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def write_inventory(tmp: Path, inv: Mapping[str, Any]) -> None:
    (tmp / "inv.yaml").write_text(yaml.safe_dump(dict(inv)))


def vmfabric(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VMFABRIC, *args], capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def sync(path: Path, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return vmfabric("sync", "-c", str(path), env=env)


def interfaces(path: Path) -> dict[str, dict[str, Any]]:
    """``show interface --json`` by port."""
    done = vmfabric("show", "interface", "--json", "-c", str(path))
    assert done.returncode == 0, done.stderr
    return {row["port"]: row for row in json.loads(done.stdout)}


def assert_one_line_error(
    done: subprocess.CompletedProcess[str], code: int, text: str, secret: str = ""
) -> str:
    """The command failed with ``code`` and one ``vmfabric: error:`` line containing
    ``text``; ``secret`` appears nowhere in its output. Returns the line."""
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmfabric: error: "), done.stderr
    assert text in lines[0], lines[0]
    assert "Traceback" not in done.stderr
    if secret:
        assert secret not in done.stderr + done.stdout
    return lines[0]

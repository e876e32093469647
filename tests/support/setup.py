"""Controller tests on a static inventory: write the config and inventory files, rewrite
the inventory atomically, run the CLI, read a port's origin record."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from support.ovs_fixtures import OvsSwitch
from vmfabric.config import Config, load_config

Inventory = dict[str, list[dict[str, Any]]]


def record(sw: OvsSwitch, port: str) -> str:
    ids = sw.ovs.vsctl("get", "Port", port, "external_ids")
    found = re.search(r'vmfabric-dynamic="([^"]*)"', ids)
    return found.group(1) if found else ""


def write_setup(
    tmp: Path,
    inv: Inventory,
    switches: list[dict[str, Any]],
    links: list[tuple[str, str, str]],
    *,
    engine: dict[str, Any] | None = None,
    sessions: list[dict[str, Any]] | None = None,
) -> Config:
    """Write inv.yaml and vmfabric.yaml (links: host, switch, port via vmnic0); load it."""
    (tmp / "inv.yaml").write_text(yaml.safe_dump(inv))
    cfg = {
        "store": "sqlite:///vmfabric.db",
        "engine": {"prune_delay": "1s", "coalesce": "10ms", **(engine or {})},
        "sessions": sessions
        or [{"name": "inv", "kind": "static", "path": "inv.yaml", "allowed_vlans": "2-1000"}],
        "switches": switches,
        "links": [{"host": h, "nic": "vmnic0", "switch": s, "port": p} for h, s, p in links],
    }
    (tmp / "vmfabric.yaml").write_text(yaml.safe_dump(cfg))
    return load_config(tmp / "vmfabric.yaml")


def ovs_cfg(sw: OvsSwitch, **extra: Any) -> dict[str, Any]:
    return {**sw.config.model_dump(mode="json", exclude_none=True), **extra}


def inventory(vms: list[tuple[str, str, str]], pgs: dict[str, Any], hosts: int = 3) -> Inventory:
    """hosts esx1..N; port groups name -> vlan; vms (name, host, portgroup), powered on."""
    return {
        "hosts": [{"name": f"esx{i}", "nics": ["vmnic0"]} for i in range(1, hosts + 1)],
        "portgroups": [{"name": n, "vlan": v} for n, v in pgs.items()],
        "vms": [{"name": n, "host": h, "power": "on", "portgroups": [p]} for n, h, p in vms],
    }


def rewrite(path: Path, inv: Inventory) -> None:
    """Replace the inventory file atomically (the source never sees half a file)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(inv))
    tmp.replace(path)


def cli(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "vmfabric", *args, "-c", str(config)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)

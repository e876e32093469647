"""A running controller (the real composition root, a static inventory, two ``fake``
switches) with the API server on its event bus: what `vmfabric run` with ``api:`` serves,
for the end-to-end SSE and web UI tests.

Hosts esx1 and esx2 land on leaf1 p1 and p2, esx3 on leaf2 p1 (static links). Port groups
web (VLAN 110) and db (120); every edge port starts with static VLAN 1. Removals wait 1 s
and any removal is held for approval (``max_removals: 0``), so a VM move leaves a held
plan on its old port.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from support.controller import running_controller
from support.setup import Inventory, inventory, rewrite, write_setup
from vmfabric.api.server import ApiHandle, start
from vmfabric.config import Config, load_config
from vmfabric.runtime import Controller
from vmfabric.targets.switchport.base import Driver

PGS = {"web": 110, "db": 120}
VMS = [("web-01", "esx1", "web"), ("db-01", "esx1", "db"), ("web-02", "esx3", "web")]
LINKS = [("esx1", "leaf1", "p1"), ("esx2", "leaf1", "p2"), ("esx3", "leaf2", "p1")]


def fake_switch(name: str) -> dict[str, object]:
    return {"name": name, "driver": "fake", "edge_ports": ["p1", "p2"],
            "port_modes": {"p1": "1", "p2": "1"}}  # fmt: skip


@dataclass
class LiveFabric:
    config: Config
    controller: Controller
    api: ApiHandle
    token: str
    inventory_path: Path
    vms: list[tuple[str, str, str]]
    pgs: dict[str, int]

    def move(self, vm: str, to_host: str) -> None:
        """vMotion in the static inventory: rewrite the file with ``vm`` on ``to_host``."""
        self.vms = [(n, to_host if n == vm else h, pg) for n, h, pg in self.vms]
        rewrite(self.inventory_path, self.inventory())

    def inventory(self) -> Inventory:
        return inventory(self.vms, self.pgs, hosts=3)


def _with_api(config_path: Path, token_env: str) -> Config:
    data = yaml.safe_load(config_path.read_text())
    data["api"] = {"listen": "127.0.0.1:0", "token": f"env:{token_env}"}
    config_path.write_text(yaml.safe_dump(data))
    return load_config(config_path)


@contextlib.contextmanager
def live_fabric(
    tmp: Path,
    token_env: str,
    *,
    vms: list[tuple[str, str, str]] | None = None,
    pgs: dict[str, int] | None = None,
    engine: dict[str, object] | None = None,
    drivers: Callable[[Config], dict[str, Driver]] | None = None,
) -> Iterator[LiveFabric]:
    """The fabric of the module docstring, running; the token is read from ``token_env``.
    ``vms``, ``pgs`` and ``engine`` replace the defaults; ``drivers(config)`` gives the
    switches' drivers (a benchmark's instrumented ones)."""
    vms, pgs = list(vms or VMS), pgs or PGS
    engine = engine or {"prune_delay": "1s", "max_removals": 0}
    write_setup(tmp, inventory(vms, pgs, hosts=3),
                [fake_switch("leaf1"), fake_switch("leaf2")], LINKS, engine=engine)  # fmt: skip
    config = _with_api(tmp / "vmfabric.yaml", token_env)
    made = drivers(config) if drivers is not None else None
    with running_controller(config, drivers=made, port_reread=1.0) as ctl:
        handle = start(config, config.store_url(), ctl.bus)
        try:
            yield LiveFabric(config, ctl, handle, os.environ[token_env], tmp / "inv.yaml",
                             vms, pgs)  # fmt: skip
        finally:
            handle.stop()

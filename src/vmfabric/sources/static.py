"""``kind: static`` sessions: an inventory file of hosts, port groups and VMs.

The file is read whole (it is small and local) and re-read when its modification time,
size or inode changes; each reading is emitted as a ``Snapshot`` so the engine applies only
the difference. A file that fails to parse keeps the last good inventory and takes the
session out of sync (fail-static) until it is fixed: a typo never prunes the fabric.

Format (YAML)::

    hosts:
      - {name: esx01, nics: [vmnic0, vmnic1]}
    portgroups:
      - {name: web, vlan: 110}              # or vlan: "200-210" (a trunk), vswitch: vSwitch1
    vms:
      - {name: web-01, host: esx01, power: on, portgroups: [web]}
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from vmfabric.config import (
    StaticSession,
    VlanRange,
    format_validation_error,
    load_yaml,
)
from vmfabric.core.errors import ConfigError
from vmfabric.core.model import Host, Nic, PortGroup, Power, SessionStatus, Snapshot, Vm
from vmfabric.sources.base import SOURCES, Emit

POLL_INTERVAL = 0.25  # seconds between stat() calls; the file is only re-read on change
_POWER = {
    True: Power.ON, "on": Power.ON, "poweredon": Power.ON,
    False: Power.OFF, "off": Power.OFF, "poweredoff": Power.OFF,
    "suspended": Power.SUSPENDED,
}  # fmt: skip


def _power(value: Any) -> Power:
    key = value.lower() if isinstance(value, str) else value
    if not isinstance(key, str | bool) or key not in _POWER:  # lists, dicts: unhashable
        raise ValueError(f"power {value!r} is not one of on, off, suspended")
    return _POWER[key]


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HostEntry(_Item):
    name: str = Field(min_length=1)
    nics: list[str] = Field(default_factory=list)


class PortGroupEntry(_Item):
    name: str = Field(min_length=1)
    vlan: VlanRange
    vswitch: str = ""


class VmEntry(_Item):
    name: str = Field(min_length=1)
    host: str
    power: Annotated[Power, BeforeValidator(_power)] = Power.ON
    portgroups: list[str] = Field(default_factory=list)


class Inventory(_Item):
    hosts: list[HostEntry] = Field(default_factory=list)
    portgroups: list[PortGroupEntry] = Field(default_factory=list)
    vms: list[VmEntry] = Field(default_factory=list)


def _check_references(inv: Inventory) -> str:
    """The first dangling or duplicate reference, as "key.path: message", or ""."""
    for kind, names in (
        ("hosts", [h.name for h in inv.hosts]),
        ("portgroups", [p.name for p in inv.portgroups]),
        ("vms", [v.name for v in inv.vms]),
    ):
        seen: set[str] = set()
        for i, name in enumerate(names):
            if name in seen:
                return f"{kind}[{i}].name: {name!r} is used twice"
            seen.add(name)
    hosts = {h.name for h in inv.hosts}
    pgs = {p.name for p in inv.portgroups}
    for i, vm in enumerate(inv.vms):
        if vm.host not in hosts:
            return f"vms[{i}].host: host {vm.host!r} is not in hosts"
        for pg in vm.portgroups:
            if pg not in pgs:
                return f"vms[{i}].portgroups: port group {pg!r} is not in portgroups"
    return ""


def load_inventory(path: Path, session: str) -> Snapshot:
    """Read and validate an inventory file into a Snapshot. Raises ConfigError (one line)."""
    data = load_yaml(path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping", str(path))
    try:
        inv = Inventory.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(exc, str(path)) from None
    problem = _check_references(inv)
    if problem:
        raise ConfigError(problem, str(path))
    return Snapshot(
        session,
        tuple(Host(session, h.name, tuple(Nic(n) for n in h.nics)) for h in inv.hosts),
        tuple(PortGroup(session, p.name, p.vlan, p.vswitch) for p in inv.portgroups),
        tuple(Vm(session, v.name, v.name, v.host, v.power, tuple(v.portgroups)) for v in inv.vms),
    )


def _file_id(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class StaticSource:
    """Emits the file's inventory, then a new snapshot whenever the file changes."""

    def __init__(self, config: StaticSession, base_dir: Path) -> None:
        self.name = config.name
        self.path = config.path if config.path.is_absolute() else base_dir / config.path
        self.reads = 0

    def read(self) -> Snapshot:
        self.reads += 1
        return load_inventory(self.path, self.name)

    def run(self, emit: Emit, stop: threading.Event) -> None:
        emit(SessionStatus(self.name, "connecting"))
        seen: tuple[int, int, int] | Literal["start"] | None = "start"
        while not stop.is_set():
            current = _file_id(self.path)
            if current != seen:
                seen = current
                self._reload(emit)
            stop.wait(POLL_INTERVAL)

    def _reload(self, emit: Emit) -> None:
        try:
            snap = self.read()
        except ConfigError as exc:
            emit(SessionStatus(self.name, "disconnected", error=str(exc), bad_input=True))
            return
        emit(SessionStatus(self.name, "connected", version=f"file {self.path}"))
        emit(snap)


@SOURCES.register("static")
def _create(config: Any, base_dir: Path) -> StaticSource:
    if not isinstance(config, StaticSession):
        raise ConfigError(f"session {config.name}: not a static session")
    return StaticSource(config, base_dir)

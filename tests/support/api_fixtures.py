"""A small fabric in a real store, and a real API server (uvicorn on loopback) over it,
for the API, SSE, metrics and web UI tests.

The fabric: session ``lab`` (static) with three hypervisors. esx01 lands on leaf1 p1, esx02
on leaf1 p2, esx03 on leaf2 p1 (LLDP, esx03 also on leaf2 p2 by static wiring). Port group
web is VLAN 110, db VLAN 120. leaf1 p1 carries 110 and 120 (added by vmfabric) and VLAN 1
(static). One plan held by the guard, a few audit entries, leaf2 unreachable.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from vmfabric.api.server import ApiHandle, start
from vmfabric.config import Config, parse_config
from vmfabric.core.model import (
    Host,
    Neighbor,
    Nic,
    PortGroup,
    PortMode,
    PortState,
    Power,
    Uplink,
    Vm,
    VmUpsert,
)
from vmfabric.core.vlans import parse_vlans
from vmfabric.runtime.bus import EventBus
from vmfabric.store import AuditEntry, Store

NOW = 1_780_000_000.0
SESSION = "lab"
TOKEN_ENV = "VMFABRIC_TEST_API_TOKEN"


def lldp(switch: str, port: str) -> Neighbor:
    return Neighbor(protocol="lldp", system_name=switch, port_id=port)


def host(name: str, *links: tuple[str, str, str, str]) -> Host:
    """A host with (nic, switch, port, source) uplinks."""
    return Host(
        session=SESSION,
        name=name,
        nics=tuple(
            Nic(nic, lldp(sw, port) if src == "lldp" else None) for nic, sw, port, src in links
        ),
        uplinks=tuple(Uplink(nic, sw, port, src) for nic, sw, port, src in links),  # type: ignore[arg-type]
    )


def fabric_hosts() -> list[Host]:
    return [
        host("esx01", ("vmnic0", "leaf1", "p1", "lldp")),
        host("esx02", ("vmnic0", "leaf1", "p2", "lldp")),
        host("esx03", ("vmnic0", "leaf2", "p1", "lldp"), ("vmnic1", "leaf2", "p2", "static")),
    ]


def vm(name: str, host_name: str, ip: str, *networks: str, power: Power = Power.ON) -> Vm:
    return Vm(SESSION, name, name, host_name, power, networks, ips=(ip,), tags=("env:prod",))


def fabric_vms() -> list[Vm]:
    return [
        vm("web-01", "esx01", "10.0.110.11", "web"),
        vm("db-01", "esx01", "10.0.120.11", "db"),
        vm("web-02", "esx03", "10.0.110.12", "web"),
        vm("idle-01", "esx02", "10.0.110.13", "web", power=Power.OFF),
    ]


def port(switch: str, name: str, vlans: str, dynamic: str = "") -> PortState:
    dyn = parse_vlans(dynamic) if dynamic else frozenset()
    return PortState(switch, name, PortMode.TRUNK, parse_vlans(vlans), dyn)


def fabric_ports() -> list[PortState]:
    return [
        port("leaf1", "p1", "1,110,120", "110,120"),
        port("leaf1", "p2", "1"),
        port("leaf2", "p1", "110", "110"),
        port("leaf2", "p2", "110,300", "110"),
    ]


def held_plan() -> dict[str, object]:
    reasons = [{"action": "remove", "vlan": 120, "vms": [], "portgroups": [], "note": "unused"}]
    return {
        "ports": [{"switch": "leaf1", "port": "p1", "add": [], "remove": [120], "reasons": reasons}]
    }


def populate(store: Store) -> int:
    """Write the fabric of the module docstring; returns the held plan's id."""
    store.set_session(
        SESSION, "static", "file:inventory.yaml", True, frozenset(range(1, 4095)), "enforce"
    )
    store.set_session_status(SESSION, "connected", in_sync=True, now=NOW)
    store.replace_inventory(SESSION, fabric_hosts(), [
        PortGroup(SESSION, "web", frozenset({110})),
        PortGroup(SESSION, "db", frozenset({120})),
    ], fabric_vms(), NOW)  # fmt: skip
    store.set_port_states(fabric_ports(), NOW)
    store.set_switch_status("leaf1", "ok", now=NOW)
    store.set_switch_status("leaf2", "unreachable", "connection refused", now=NOW)
    entry = AuditEntry.switchport
    store.record_audit([
        entry(NOW - 20, "leaf1", "p1", 110, "add", "VMs web-01 (port group web)", SESSION),
        entry(NOW - 10, "leaf1", "p1", 120, "add", "VMs db-01 (port group db)", SESSION),
        entry(NOW - 5, "leaf2", "p1", 110, "add", "VMs web-02 (port group web)", SESSION),
    ])  # fmt: skip
    return store.save_plan("leaf1", "held", held_plan(), "removes 1 of 2 dynamic VLANs",
                           NOW, sessions=[SESSION])  # fmt: skip


def move_vm(store: Store, bus: EventBus, name: str, to_host: str, to_port: PortState) -> None:
    """What the controller does when a VM moves: record the inventory and the port's new
    VLANs, then publish the change (``vm``, ``member``) on the bus."""
    found = next(v for v in store.snapshot(SESSION).vms if v.name == name)
    moved = Vm(found.session, found.id, found.name, to_host, found.power, found.networks, found.ips)
    store.apply_changes([VmUpsert(moved)], NOW + 60)
    store.set_port_states([to_port], NOW + 60)
    bus.publish("vm", {"session": SESSION, "vm": name, "host": to_host, "power": str(found.power),
                       "change": "moved"})  # fmt: skip
    for vlan in sorted(to_port.dynamic):
        bus.publish("member", {"kind": "switchport", "target": to_port.switch,
                               "holder": to_port.port, "member": str(vlan), "action": "add",
                               "plan": None, "switch": to_port.switch, "port": to_port.port,
                               "vlan": vlan})  # fmt: skip


def config_data(tmp_path: Path, listen: str = "127.0.0.1:0") -> dict[str, Any]:
    """vmfabric.yaml of the fabric: its session, two security groups and a policy."""
    return {
        "store": f"sqlite:///{tmp_path / 'vmfabric.db'}",
        "sessions": [{"name": SESSION, "kind": "static", "path": "inventory.yaml"}],
        "groups": [{"name": "web", "match": {"name": "web-*"}},
                   {"name": "db", "match": {"name": "db-*"}}],
        "policies": [{"name": "web-to-db", "source": "web", "destination": "db",
                      "service": "tcp/5432", "action": "allow"}],
        "api": {"listen": listen, "token": f"env:{TOKEN_ENV}"},
    }  # fmt: skip


def api_config(tmp_path: Path, listen: str = "127.0.0.1:0") -> Config:
    return parse_config(config_data(tmp_path, listen), "vmfabric.yaml", tmp_path)


@dataclass
class Api:
    """A running API server over a populated store."""

    handle: ApiHandle
    store: Store
    bus: EventBus
    config: Config
    token: str
    held: int

    @property
    def url(self) -> str:
        return self.handle.url

    def client(self, token: str | None = "") -> httpx.Client:
        """A client sending the right token (or ``token`` when given; None: none)."""
        given = self.token if token == "" else token
        headers = {} if given is None else {"Authorization": f"Bearer {given}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0)


@pytest.fixture
def api_token(monkeypatch: pytest.MonkeyPatch) -> str:
    token = secrets.token_urlsafe(24)
    monkeypatch.setenv(TOKEN_ENV, token)
    return token


@pytest.fixture
def api(tmp_path: Path, api_token: str) -> Iterator[Api]:
    config = api_config(tmp_path)
    store = Store(config.store_url())
    held = populate(store)
    bus = EventBus()
    handle = start(config, config.store_url(), bus)
    try:
        yield Api(handle, store, bus, config, api_token, held)
    finally:
        handle.stop()
        store.close()


def environment_with_token(token: str) -> dict[str, str]:
    return {**os.environ, TOKEN_ENV: token}

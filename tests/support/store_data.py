"""Store test data and a throwaway PostgreSQL: the inventory every store and view test
fills, and the ``postgres_url`` fixture (import it into a test module to use it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support import postgres
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
)
from vmfabric.store import Store

NOW = 1_700_000_000.0
ALL = frozenset(range(1, 4095))
DATA = Path(__file__).resolve().parents[1] / "data" / "store"


def lldp(switch: str, port: str) -> Neighbor:
    return Neighbor(protocol="lldp", system_name=switch, port_id=port, mgmt_addr="192.0.2.1")


def esx01(session: str = "lab") -> Host:
    """Two NICs on leaf1 p1/p2 carrying dvs; vmnic2 heard an unknown switch (unmatched)."""
    return Host(
        session=session,
        name="esx01",
        nics=(
            Nic("vmnic0", lldp("leaf1", "p1")),
            Nic("vmnic1", lldp("leaf1", "p2")),
            Nic("vmnic2", Neighbor(protocol="cdp", system_name="mystery", port_id="Gi0/9")),
            Nic("vmnic3"),
        ),
        vswitch_nics={"dvs": frozenset({"vmnic0"}), "vSwitch0": frozenset({"vmnic1"})},
        uplinks=(
            Uplink("vmnic0", "leaf1", "p1", "lldp"),
            Uplink("vmnic1", "leaf1", "p2", "static"),
        ),
    )


def esx02(session: str = "lab") -> Host:
    return Host(
        session=session,
        name="esx02",
        nics=(Nic("eth0", lldp("leaf2", "p10")),),
        uplinks=(Uplink("eth0", "leaf2", "p10", "lldp"),),
    )


def portgroups(session: str = "lab") -> list[PortGroup]:
    return [
        PortGroup(session, "web", frozenset({110}), vswitch="dvs"),
        PortGroup(session, "db", frozenset({120}), vswitch="vSwitch0"),
        PortGroup(session, "trunk", frozenset(range(200, 206)), vswitch="dvs"),
        PortGroup(session, "untagged", frozenset(), problem="untagged"),
        PortGroup(session, "loose", frozenset({130})),  # no vswitch: carried by all uplinks
    ]


def vms(session: str = "lab") -> list[Vm]:
    """Four VMs; web-01 carries every field a source may fill."""
    return [
        Vm(
            session,
            "vm-1",
            "web-01",
            "esx01",
            Power.ON,
            ("web", "db"),
            ips=("10.0.110.11", "2001:db8::11"),
            macs=("00:50:56:aa:bb:01",),
            tags=("env:prod", "tier:web"),
            attributes=(("owner", "team-a"), ("ticket", "CHG-1")),
            guest_os="ubuntu64Guest",
            folder="/dc1/vm/web",
            cluster="prod",
        ),
        Vm(session, "vm-2", "web-02", "esx02", Power.OFF, ("web", "untagged")),
        Vm(session, "vm-3", "trunker", "esx01", Power.ON, ("trunk", "ghost")),
        Vm(session, "vm-4", "loose-01", "esx01", Power.ON, ("loose",)),
    ]


def fill(store: Store, session: str = "lab") -> None:
    store.set_session(session, "static", f"file:{session}.yaml", True, ALL, "enforce")
    store.replace_inventory(
        session, [esx01(session), esx02(session)], portgroups(session), vms(session), NOW
    )


def port_states() -> list[PortState]:
    return [
        PortState("leaf1", "p1", PortMode.TRUNK, frozenset({1, 110, 200}), frozenset({110})),
        PortState("leaf1", "p2", PortMode.TRUNK, frozenset({1, 120}), frozenset({120})),
        PortState("leaf1", "p11", PortMode.TRUNK, frozenset({110}), frozenset()),
        PortState("leaf2", "p10", PortMode.ACCESS, frozenset({5})),
    ]


def url_of(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server on a unix socket (skipped where none is installed)."""
    pytest.importorskip("psycopg")
    why = postgres.missing()
    if why:
        pytest.skip(why)
    with postgres.postgres_server() as url:
        yield url

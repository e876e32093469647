"""What only the ``nxos`` driver must prove, against the NX-API peer written here from
Cisco's published shapes (``support/peers/nxapi.py``; not a real NX-OS): the kept
connection and requests per plan, rollback to the checkpoint when a command is refused
and when the switch stops answering mid-apply, short interface names, and the VLAN
database bookkeeping it shares with eos."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from support.peers.nxos import PASSWORD, PASSWORD_ENV, NxosPeer
from vmfabric.config import parse_switch
from vmfabric.core.errors import PermanentError, TransientError
from vmfabric.core.model import PortChange, PortMode
from vmfabric.targets.switchport.base import create_driver
from vmfabric.targets.switchport.nxos import NxosBatchDriver, NxosDriver

pytestmark = pytest.mark.integration
EDGE = ["Ethernet1/1", "Ethernet1/2", "port-channel10"]


@pytest.fixture(autouse=True)
def password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)


@pytest.fixture
def peer() -> Iterator[NxosPeer]:
    running = NxosPeer().start()
    try:
        for port in EDGE:
            running.set_trunk(port, ())
        yield running
    finally:
        running.stop()


def driver_for(peer: NxosPeer, edge: list[str] = EDGE, **options: Any) -> NxosDriver:
    config = parse_switch({"name": "leaf1", "driver": "nxos", "edge_ports": edge,
                           **peer.options(**options)})  # fmt: skip
    made = create_driver(config)
    assert isinstance(made, NxosDriver)
    return made


def add(port: str, *vlans: int) -> PortChange:
    return PortChange(port, add=frozenset(vlans))


def allowed(peer: NxosPeer, port: str) -> list[int] | None:
    vlans: list[int] | None = peer.state()["ifaces"][port]["allowed"]
    return vlans


def test_checkpoint_false_makes_the_non_atomic_driver(peer: NxosPeer) -> None:
    assert type(driver_for(peer)) is NxosDriver
    batch = driver_for(peer, checkpoint=False)
    assert isinstance(batch, NxosBatchDriver) and not batch.capabilities.atomic
    assert "checkpoint" in NxosDriver.capabilities.notes


def test_one_kept_connection_and_two_requests_per_writing_plan(peer: NxosPeer) -> None:
    driver = driver_for(peer)
    try:
        driver.apply([add("Ethernet1/1", 110), add("port-channel10", 110, 120)])
        assert driver.requests == 2
        driver.apply([add("Ethernet1/1", 110)])
        assert driver.requests == 3
        for vlan in range(200, 204):
            driver.apply([add("Ethernet1/2", vlan)])
        assert driver._http is not None and driver._http.connects == 1
        assert allowed(peer, "port-channel10") == [110, 120]
        desc = peer.state()["ifaces"]["port-channel10"]["desc"]
        assert desc == "[vmfabric:110,120]"
    finally:
        driver.close()


def test_a_refused_command_rolls_back_to_the_checkpoint(peer: NxosPeer) -> None:
    driver = driver_for(peer)
    try:
        before = peer.state()
        peer.fail_at_interface(2)
        with pytest.raises(PermanentError) as raised:
            driver.apply([add("Ethernet1/1", 110), add("Ethernet1/2", 120)])
        assert str(raised.value) == (
            "switch leaf1: NX-OS refused 'interface Ethernet1/2': "
            "% Invalid command at '^' marker. (NX-API error -32602)"
        )
        assert peer.state() == before, "VLAN 110 and Ethernet1/1's change were rolled back"
    finally:
        driver.close()


def test_a_switch_that_stops_answering_mid_apply_is_never_half_applied(peer: NxosPeer) -> None:
    driver = driver_for(peer, timeout=1)
    try:
        driver.read_ports()
        peer.process.pause()
        try:
            with pytest.raises(TransientError, match=r"no answer within 1s"):
                driver.apply([add("Ethernet1/1", 130), add("port-channel10", 130)])
        finally:
            peer.process.resume()
        states = driver.read_ports()
        both = {states["Ethernet1/1"].vlans, states["port-channel10"].vlans}
        assert both in ({frozenset()}, {frozenset({130})}), "all or nothing"
        assert peer.state()["checkpoints"] == []
    finally:
        driver.close()


def test_short_names_and_routed_ports(peer: NxosPeer) -> None:
    peer.interface("Ethernet1/3", "no switchport", "description core uplink")
    driver = driver_for(peer, edge=["Eth1/1", "Po10", "Ethernet1/3"])
    try:
        states = driver.apply([add("Eth1/1", 110), add("Ethernet1/3", 110)])
        assert states["Eth1/1"].vlans == {110}
        assert states["Ethernet1/3"].mode is PortMode.ACCESS, "routed: never edited"
        assert driver.read_ports()["Po10"].mode is PortMode.TRUNK
        assert peer.state()["ifaces"]["Ethernet1/3"]["desc"] == "core uplink"
    finally:
        driver.close()

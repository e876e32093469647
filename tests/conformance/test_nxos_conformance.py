"""The shipped conformance suite against the ``nxos`` driver and an NX-API peer written
here from Cisco's published NX-API shapes (``support/peers/nxapi.py``; no stateful NX-OS
simulator exists, and this is not one either: it keeps VLAN, trunk, description and
checkpoint state the way the published shapes describe).

Twice: with a checkpoint per plan (atomic: a refused command is rolled back) and with
``checkpoint: false`` (not atomic: the suite checks what ``NOTES`` promise). Breaking the
switch mid-apply makes the peer refuse the plan's second ``interface`` command."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest

from support.peers.nxos import PASSWORD, PASSWORD_ENV, NxosPeer
from vmfabric.config import parse_switch
from vmfabric.core.model import PortMode
from vmfabric.targets.switchport.base import create_driver
from vmfabric.targets.switchport.trunkcli import split_description
from vmfabric.testing.conformance import (
    CountingDriver,
    PeerPort,
    SwitchHarness,
    SwitchPortConformance,
    edit_after_first_read,
)

pytestmark = pytest.mark.integration

EDGE = ("Ethernet1/1", "Ethernet1/2", "Ethernet1/3", "Ethernet1/4", "port-channel10")


@pytest.fixture(scope="module")
def nxos_peer() -> Iterator[NxosPeer]:
    previous = os.environ.get(PASSWORD_ENV)
    os.environ[PASSWORD_ENV] = PASSWORD
    peer = NxosPeer().start()
    try:
        yield peer
    finally:
        peer.stop()
        if previous is None:
            os.environ.pop(PASSWORD_ENV, None)
        else:
            os.environ[PASSWORD_ENV] = previous


class NxosHarness(SwitchHarness):
    edge_ports = EDGE
    non_edge_port = "Ethernet1/5"

    def __init__(self, peer: NxosPeer, checkpoint: bool) -> None:
        self.peer = peer
        self.checkpoint = checkpoint
        peer.reset()

    def make_driver(self, open_ports: str = "keep") -> CountingDriver:
        config = parse_switch({
            "name": "leaf1", "driver": "nxos", "edge_ports": list(EDGE), "open_ports": open_ports,
            "checkpoint": self.checkpoint, **self.peer.options()})  # fmt: skip
        driver: CountingDriver = create_driver(config)  # type: ignore[assignment]
        return driver

    def set_trunk(self, port: str, vlans: Iterable[int]) -> None:
        self.peer.set_trunk(port, vlans)

    def set_access(self, port: str, vlan: int) -> None:
        self.peer.interface(port, "switchport mode access", f"switchport access vlan {vlan}")

    def set_open(self, port: str) -> None:
        self.peer.interface(port, "switchport mode trunk", "switchport trunk allowed vlan all")

    def _port(self, port: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.peer.state()["ifaces"].get(port)
        return found

    def read(self, port: str) -> PeerPort:
        raw = self._port(port)
        if raw is None:
            return PeerPort(PortMode.MISSING)
        if raw["mode"] != "trunk":
            return PeerPort(PortMode.ACCESS, frozenset({raw["access"]}))
        if raw["allowed"] is None:
            return PeerPort(PortMode.OPEN)
        return PeerPort(PortMode.TRUNK, frozenset(raw["allowed"]))

    def manual_edit(self, port: str, add: Iterable[int] = (), remove: Iterable[int] = ()) -> None:
        self.peer.edit(port, add, remove)

    def set_unrelated(self, port: str) -> None:
        self.peer.interface(port, "description esx01 vmnic0 uplink", "mtu 9216")

    def unrelated(self, port: str) -> object:
        raw = self._port(port)
        assert raw is not None
        person, _ = split_description(raw["desc"])
        return (raw["mode"], raw["access"], raw["native"], raw["mtu"], person)

    def snapshot(self) -> object:
        return self.peer.state()

    def peer_writes(self) -> int:
        return int(self.peer.stats()["config_requests"])

    def concurrent_edit(
        self, driver: CountingDriver, port: str, add: Iterable[int] = (), remove: Iterable[int] = ()
    ) -> AbstractContextManager[None]:
        """The person's edit lands after the driver's read request, before its write."""
        return edit_after_first_read(driver, lambda: self.manual_edit(port, add, remove))

    @contextmanager
    def broken_mid_apply(self) -> Iterator[None]:
        self.peer.fail_at_interface(2)
        yield


class TestNxosCheckpointConformance(SwitchPortConformance):
    @pytest.fixture
    def harness(self, nxos_peer: NxosPeer) -> Iterator[SwitchHarness]:
        yield NxosHarness(nxos_peer, checkpoint=True)


class TestNxosBatchConformance(SwitchPortConformance):
    """``checkpoint: false``: not atomic; the suite checks the partial-but-safe promise."""

    @pytest.fixture
    def harness(self, nxos_peer: NxosPeer) -> Iterator[SwitchHarness]:
        yield NxosHarness(nxos_peer, checkpoint=False)

"""The shipped conformance suite against the ``eos`` driver and a simulated Arista switch:
fake-switches' arista_generic over eAPI, extended in ``support/peers/fakeswitches_eos.py``
(configuration sessions, descriptions, access/native VLANs, strict command errors: what
it lacks). Not a real EOS: the shapes come from fake-switches and EOS's eAPI as published.

Twice: with configuration sessions (atomic) and with ``config_session: false`` (one
batched request in configure mode, not atomic: the suite checks what ``NOTES`` promise).
The harness configures the peer as a person would (pyeapi as user ``admin``) and reads it
through the peer's own state dump; breaking it mid-apply makes it refuse the plan's second
``interface`` command with ``Invalid input``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

import pytest

from support.peers.eos import PASSWORD, PASSWORD_ENV, EosPeer, require_fakeswitches
from vmfabric.config import parse_switch
from vmfabric.core.model import PortMode
from vmfabric.targets.switchport.eos import EosDriver
from vmfabric.targets.switchport.trunkcli import split_description
from vmfabric.testing.conformance import (
    CountingDriver,
    PeerPort,
    SwitchHarness,
    SwitchPortConformance,
    edit_after_first_read,
)

pytestmark = pytest.mark.integration

EDGE = ("Ethernet1", "Ethernet2", "Ethernet3", "Ethernet4", "Port-Channel10")


@pytest.fixture(scope="module")
def eos_peer() -> Iterator[EosPeer]:
    require_fakeswitches()
    previous = os.environ.get(PASSWORD_ENV)
    os.environ[PASSWORD_ENV] = PASSWORD
    peer = EosPeer().start()
    try:
        yield peer
    finally:
        peer.stop()
        if previous is None:
            os.environ.pop(PASSWORD_ENV, None)
        else:
            os.environ[PASSWORD_ENV] = previous


class EosHarness(SwitchHarness):
    edge_ports = EDGE
    non_edge_port = "Ethernet5"

    def __init__(self, peer: EosPeer, config_session: bool) -> None:
        self.peer = peer
        self.config_session = config_session
        peer.reset()

    def make_driver(self, open_ports: str = "keep") -> CountingDriver:
        config = parse_switch({
            "name": "leaf1", "driver": "eos", "edge_ports": list(EDGE), "open_ports": open_ports,
            "config_session": self.config_session, **self.peer.options()})  # fmt: skip
        return EosDriver(config)

    def set_trunk(self, port: str, vlans: Iterable[int]) -> None:
        self.peer.set_trunk(port, vlans)

    def set_access(self, port: str, vlan: int) -> None:
        self.peer.interface(port, "switchport mode access", f"switchport access vlan {vlan}")

    def set_open(self, port: str) -> None:
        self.peer.interface(port, "switchport mode trunk", "switchport trunk allowed vlan all")

    def _port(self, port: str) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.peer.state()["ports"].get(port)
        return found

    def read(self, port: str) -> PeerPort:
        raw = self._port(port)
        if raw is None:
            return PeerPort(PortMode.MISSING)
        if raw["mode"] != "trunk":
            return PeerPort(PortMode.ACCESS, frozenset({raw["access_vlan"] or 1}))
        if raw["trunk_vlans"] is None:
            return PeerPort(PortMode.OPEN)
        return PeerPort(PortMode.TRUNK, frozenset(raw["trunk_vlans"]))

    def manual_edit(self, port: str, add: Iterable[int] = (), remove: Iterable[int] = ()) -> None:
        self.peer.edit(port, add, remove)

    def set_unrelated(self, port: str) -> None:
        self.peer.interface(port, "description esx01 vmnic0 uplink", "load-interval 30")

    def unrelated(self, port: str) -> object:
        raw = self._port(port)
        assert raw is not None
        person, _ = split_description(raw["description"] or "")
        return (raw["mode"], raw["access_vlan"], raw["native_vlan"], raw["load_interval"], person)

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


class TestEosSessionConformance(SwitchPortConformance):
    @pytest.fixture
    def harness(self, eos_peer: EosPeer) -> Iterator[SwitchHarness]:
        yield EosHarness(eos_peer, config_session=True)


class TestEosBatchConformance(SwitchPortConformance):
    """``config_session: false``: not atomic; the suite checks the partial-but-safe promise."""

    @pytest.fixture
    def harness(self, eos_peer: EosPeer) -> Iterator[SwitchHarness]:
        yield EosHarness(eos_peer, config_session=False)

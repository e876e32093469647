"""The generic SSH driver (``driver: cli``, platform file ``cisco_ios``) against fake-switches'
``cisco_generic`` IOS model over real SSH (extended where IOS does more: support.peers says
what): the shipped conformance suite, then what the CLI adds (a refused command undone, the
VLAN database, one login for many changes, host keys, a saved configuration)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.peers.cisco import CiscoHarness
from support.peers.fakeswitches import FakeSwitchesPeer
from vmfabric.testing.conformance import SwitchHarness, SwitchPortConformance

pytestmark = pytest.mark.integration


@pytest.fixture
def ios_peer(tmp_path: Path) -> Iterator[FakeSwitchesPeer]:
    peer = FakeSwitchesPeer("cisco", tmp_path, ports=6).start()
    try:
        yield peer
    finally:
        peer.stop()


class TestCliIosConformance(SwitchPortConformance):
    @pytest.fixture
    def harness(self, ios_peer: FakeSwitchesPeer) -> Iterator[SwitchHarness]:
        harness = CiscoHarness(ios_peer)
        try:
            yield harness
        finally:
            harness.person.close()

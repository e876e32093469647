"""The shipped conformance suite against the generic SSH driver (``cli``, platform file
``cisco_ios``) and fake-switches' ``cisco_generic`` IOS model over real SSH, extended in
``support/peers/fakeswitches_server.py`` with IOS's ``end`` and its error text. Not a real
IOS. The harness is a person's own SSH session; breaking it mid-apply makes the peer refuse
``switchport trunk allowed vlan add 130`` (injected) after the plan's earlier commands: the
driver is not atomic and must undo them (its ``capabilities.notes``)."""

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

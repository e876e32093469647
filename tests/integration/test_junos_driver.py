"""The junos driver against fake-switches' Junos models over real NETCONF/SSH: the shipped
conformance suite on the ELS (``juniper_qfx_copper_generic``) and non-ELS
(``juniper_generic``) syntax, plus what is Junos's own: the VLAN database, member ranges and
names, the candidate lock, a peer killed mid-apply, host keys, and a kept-open session.

fake-switches is extended where it lacks what Junos does (support.peers.fakeswitches says
what); refusals and stalls are injected by the test and named so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.peers.fakeswitches import FakeSwitchesPeer
from support.peers.junos import JunosHarness, start_peer
from vmfabric.testing.conformance import SwitchHarness, SwitchPortConformance

pytestmark = pytest.mark.integration


@pytest.fixture(params=["junos", "junos-non-els"])
def junos_peer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FakeSwitchesPeer]:
    peer = start_peer(request.param, tmp_path)
    try:
        yield peer
    finally:
        peer.stop()


class TestJunosConformance(SwitchPortConformance):
    @pytest.fixture
    def harness(self, junos_peer: FakeSwitchesPeer) -> Iterator[SwitchHarness]:
        harness = JunosHarness(junos_peer)
        try:
            yield harness
        finally:
            harness.person.close()

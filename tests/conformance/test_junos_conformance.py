"""The shipped conformance suite against the ``junos`` driver and a simulated Junos switch:
fake-switches' ``juniper_qfx_copper_generic`` (ELS) and ``juniper_generic`` (non-ELS) over
real NETCONF/SSH, extended in ``support/peers/fakeswitches_server.py`` where Junos does more
(member names, ranges and ``all``, ``apply-macro``, a session's end discarding its change).
Not a real Junos. The harness edits the peer over its own NETCONF session, as an operator's
tool would; breaking it mid-apply makes the peer refuse the commit (VLAN 130, injected)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.peers.junos import JunosHarness, start_peer
from vmfabric.testing.conformance import SwitchHarness, SwitchPortConformance

pytestmark = pytest.mark.integration


@pytest.fixture(params=["junos", "junos-non-els"])
def harness_peer(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JunosHarness]:
    peer = start_peer(request.param, tmp_path)
    harness = JunosHarness(peer)
    try:
        yield harness
    finally:
        harness.person.close()
        peer.stop()


class TestJunosConformance(SwitchPortConformance):
    @pytest.fixture
    def harness(self, harness_peer: JunosHarness) -> Iterator[SwitchHarness]:
        yield harness_peer

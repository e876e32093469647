"""The shipped conformance suite against the ``cumulus`` driver and an NVUE REST API peer
written in this repository from NVIDIA's published API shapes (``support/peers/nvue.py``; no
NVUE simulator exists to run), over HTTPS with a certificate the test makes. Not a real
Cumulus switch. The harness edits the peer through its own NVUE revisions; breaking it
mid-apply makes the peer end the apply ``invalid`` (VLAN 130, injected)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.peers.cumulus import CumulusHarness, make_tls
from support.peers.nvue import NvuePeer
from vmfabric.testing.conformance import SwitchHarness, SwitchPortConformance

pytestmark = pytest.mark.integration


@pytest.fixture
def nvue(tmp_path: Path) -> Iterator[NvuePeer]:
    peer = NvuePeer(tmp_path, tls=make_tls(tmp_path)).start()
    try:
        yield peer
    finally:
        peer.stop()


class TestCumulusConformanceOnNvuePeer(SwitchPortConformance):
    @pytest.fixture
    def harness(self, nvue: NvuePeer) -> Iterator[SwitchHarness]:
        yield CumulusHarness(nvue)

"""The cumulus driver against a stateful NVUE peer written here from NVIDIA's published API
shapes (support.peers.nvue: no NVUE simulator exists to run), over HTTPS with a certificate
the test made: the shipped conformance suite, then what is NVUE's own (revisions, the bridge's
VLAN list, the placeholder, a peer killed mid-apply, TLS, a kept-alive connection)."""

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

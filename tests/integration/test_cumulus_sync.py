"""``vmfabric sync`` (the real command, a static inventory) with ``driver: cumulus`` pointed at
the NVUE peer written here from NVIDIA's published API shapes (support.peers.nvue), over
HTTPS: the wanted VLANs, a moved VM followed, static VLANs and non-edge ports untouched,
``show interface`` static vs dynamic, and one line per fault, nothing half applied."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.peers.cumulus import NON_EDGE, PASSWORD_ENV, CumulusPerson, cumulus_config, make_tls
from support.peers.nvue import NvuePeer
from support.peers.sync_cli import (
    assert_one_line_error,
    interfaces,
    inventory,
    sync,
    write_config,
    write_inventory,
)
from vmfabric.testing.conformance import trunk

pytestmark = pytest.mark.integration
P1, P2, P3 = "swp1", "swp2", "swp3"


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[NvuePeer]:
    started = NvuePeer(tmp_path, tls=make_tls(tmp_path)).start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def person(peer: NvuePeer) -> CumulusPerson:
    """swp1 a trunk with static VLAN 10, swp2 and swp3 closed, a non-edge trunk of 10."""
    at_switch = CumulusPerson(peer)
    at_switch.set_trunk(P1, {10})
    at_switch.set_trunk(P2, ())
    at_switch.set_trunk(P3, ())
    at_switch.set_trunk(NON_EDGE, {10})
    return at_switch


def entry(peer: NvuePeer, **over: Any) -> dict[str, Any]:
    config = cumulus_config(peer, **{"edge_ports": [P1, P2, P3], **over})
    return dict(config.model_dump(mode="json", exclude_none=True))


def env(peer: NvuePeer) -> dict[str, str]:
    return {PASSWORD_ENV: peer.password}


def test_sync_puts_the_wanted_vlans_and_a_moved_vm_follows(
    peer: NvuePeer, person: CumulusPerson, tmp_path: Path
) -> None:
    path = write_config(tmp_path, entry(peer), (P1, P2))
    done = sync(path, env(peer))
    assert done.returncode == 0, done.stderr
    assert person.read(P1) == trunk(10, 110, 120)
    assert person.read(P2) == trunk()
    shown = interfaces(path)
    assert shown[P1]["static_vlans"] == [10] and sorted(shown[P1]["dynamic_vlans"]) == [110, 120]

    write_inventory(tmp_path, inventory(web_host="esx2"))
    done = sync(path, env(peer))
    assert done.returncode == 0, done.stderr
    assert person.read(P1) == trunk(10, 120)
    assert person.read(P2) == trunk(110)
    assert person.read(P3) == trunk()
    assert person.read(NON_EDGE) == trunk(10)
    shown = interfaces(path)
    assert shown[P2]["dynamic_vlans"] == [110] and shown[P2]["static_vlans"] == []


def test_unreachable_switch_is_one_line_exit_1(tmp_path: Path, peer: NvuePeer) -> None:
    path = write_config(tmp_path, entry(peer, port=1, timeout=5), (P1, P2))
    assert_one_line_error(
        sync(path, env(peer)), 1, "switch leaf1: NVUE https://127.0.0.1:1: cannot connect"
    )


def test_untrusted_certificate_is_one_line_exit_1(
    tmp_path: Path, peer: NvuePeer, person: CumulusPerson
) -> None:
    config = entry(peer)
    del config["ca_file"]
    path = write_config(tmp_path, config, (P1, P2))
    assert_one_line_error(sync(path, env(peer)), 1, "TLS certificate not trusted")


def test_wrong_password_is_one_line_exit_1_without_the_password(
    tmp_path: Path, peer: NvuePeer, person: CumulusPerson
) -> None:
    before = peer.applied()
    path = write_config(tmp_path, entry(peer), (P1, P2))
    done = sync(path, {PASSWORD_ENV: "Wr0ng-pass-4711"})
    assert_one_line_error(done, 1, "login as 'cumulus' refused", secret="Wr0ng-pass-4711")
    assert peer.applied() == before


def test_an_edge_port_the_switch_lacks_is_bad_input_and_nothing_is_applied(
    tmp_path: Path, peer: NvuePeer, person: CumulusPerson
) -> None:
    before = peer.applied()
    path = write_config(tmp_path, entry(peer, edge_ports=[P1, P2, "swp9"]), (P1, P2))
    assert_one_line_error(sync(path, env(peer)), 2, "edge port swp9 does not exist (NVUE https://")
    assert peer.applied() == before


def test_a_refused_apply_is_one_line_with_nvues_message_and_nothing_applied(
    tmp_path: Path, peer: NvuePeer, person: CumulusPerson
) -> None:
    peer.refuse(120)  # injected by the test peer
    before = peer.applied()
    path = write_config(tmp_path, entry(peer), (P1, P2))
    done = sync(path, env(peer))
    assert_one_line_error(done, 1, "apply refused (invalid): interface swp1: VLAN 120 is reserved")
    assert peer.applied() == before

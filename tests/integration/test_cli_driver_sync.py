"""``vmfabric sync`` (the real command, a static inventory) with ``driver: cli`` (platform
``cisco_ios``) pointed at fake-switches' IOS model over SSH: the wanted VLANs, a moved VM
followed, static VLANs and non-edge ports untouched, ``show interface`` static vs dynamic,
and one line per fault with the right exit code and nothing left half applied."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.peers.cisco import NON_EDGE, PASSWORD_ENV, CiscoPerson, cli_config
from support.peers.fakeswitches import FakeSwitchesPeer
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
P1, P2, P3 = "GigabitEthernet0/1", "GigabitEthernet0/2", "GigabitEthernet0/3"


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[FakeSwitchesPeer]:
    started = FakeSwitchesPeer("cisco", tmp_path, ports=6).start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def person(peer: FakeSwitchesPeer) -> Iterator[CiscoPerson]:
    at_switch = CiscoPerson(peer)
    at_switch.set_trunk(P1, {10})
    at_switch.set_trunk(P2, ())
    at_switch.set_trunk(P3, ())
    at_switch.set_trunk(NON_EDGE, {10})
    try:
        yield at_switch
    finally:
        at_switch.close()


def entry(peer: FakeSwitchesPeer, **over: Any) -> dict[str, Any]:
    config = cli_config(peer, **{"edge_ports": [P1, P2, P3], **over})
    return dict(config.model_dump(mode="json", exclude_none=True))


def env(peer: FakeSwitchesPeer) -> dict[str, str]:
    return {PASSWORD_ENV: peer.password}


def test_sync_puts_the_wanted_vlans_and_a_moved_vm_follows(
    peer: FakeSwitchesPeer, person: CiscoPerson, tmp_path: Path
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


def test_unreachable_switch_is_one_line_exit_1(tmp_path: Path, peer: FakeSwitchesPeer) -> None:
    path = write_config(tmp_path, entry(peer, port=1, timeout=5), (P1, P2))
    assert_one_line_error(sync(path, env(peer)), 1, "switch leaf1: SSH 127.0.0.1:1: cannot log in")


def test_wrong_password_is_one_line_exit_1_without_the_password(
    tmp_path: Path, peer: FakeSwitchesPeer, person: CiscoPerson
) -> None:
    before = person.running()
    path = write_config(tmp_path, entry(peer), (P1, P2))
    done = sync(path, {PASSWORD_ENV: "Wr0ng-pass-4711"})
    assert_one_line_error(done, 1, "login as 'admin' refused", secret="Wr0ng-pass-4711")
    assert person.running() == before


def test_an_edge_port_the_switch_lacks_is_bad_input_and_nothing_is_applied(
    tmp_path: Path, peer: FakeSwitchesPeer, person: CiscoPerson
) -> None:
    before = person.running()
    path = write_config(tmp_path, entry(peer, edge_ports=[P1, P2, "GigabitEthernet0/9"]), (P1, P2))
    done = sync(path, env(peer))
    assert_one_line_error(done, 2, "edge port GigabitEthernet0/9 does not exist (SSH 127.0.0.1:")
    assert person.running() == before


def test_a_refused_command_is_one_line_and_what_went_before_is_undone(
    tmp_path: Path, peer: FakeSwitchesPeer, person: CiscoPerson
) -> None:
    peer.refuse(120)  # injected by the test peer
    before = person.running()
    path = write_config(tmp_path, entry(peer), (P1, P2))
    done = sync(path, env(peer))
    assert_one_line_error(done, 1, "refused: % Invalid input detected: VLAN 120 is reserved")
    assert person.running() == before


def test_an_unknown_platform_is_bad_input(tmp_path: Path, peer: FakeSwitchesPeer) -> None:
    path = write_config(tmp_path, {**entry(peer), "platform": "hp_comware"}, (P1, P2))
    assert_one_line_error(sync(path, env(peer)), 2, "platform 'hp_comware' has no file")

"""``vmfabric sync`` (the real command, a static inventory) with ``driver: junos`` pointed at
fake-switches' ELS Junos model over NETCONF: exactly the wanted VLANs, created in the VLAN
database; a moved VM's VLAN follows it; static VLANs and non-edge ports stay; ``show
interface`` tells static from dynamic; and each fault is one line with the right exit code,
nothing half applied and the password never printed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from support.peers.fakeswitches import FakeSwitchesPeer
from support.peers.junos import NON_EDGE, PASSWORD_ENV, JunosPeer, junos_config, start_peer
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
P1, P2, P3 = "ge-0/0/1", "ge-0/0/2", "ge-0/0/3"


@pytest.fixture
def peer(tmp_path: Path) -> Iterator[FakeSwitchesPeer]:
    started = start_peer("junos", tmp_path)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def person(peer: FakeSwitchesPeer) -> Iterator[JunosPeer]:
    """p1 a trunk with static VLAN 10, p2 and p3 closed trunks, a non-edge trunk of 10."""
    at_switch = JunosPeer(peer)
    at_switch.set_trunk(P1, {10})
    at_switch.set_trunk(P2, ())
    at_switch.set_trunk(P3, ())
    at_switch.set_trunk(NON_EDGE, {10})
    try:
        yield at_switch
    finally:
        at_switch.close()


def entry(peer: FakeSwitchesPeer, **over: Any) -> dict[str, Any]:
    config = junos_config(peer, **{"edge_ports": [P1, P2, P3], **over})
    return dict(config.model_dump(mode="json", exclude_none=True))


def env(peer: FakeSwitchesPeer) -> dict[str, str]:
    return {PASSWORD_ENV: peer.password}


def test_sync_puts_the_wanted_vlans_and_a_moved_vm_follows(
    peer: FakeSwitchesPeer, person: JunosPeer, tmp_path: Path
) -> None:
    path = write_config(tmp_path, entry(peer), (P1, P2))
    done = sync(path, env(peer))
    assert done.returncode == 0, done.stderr
    assert person.read(P1) == trunk(10, 110, 120)
    assert person.read(P2) == trunk()
    assert person.vlan_ids()["vmfabric-110"] == 110, "a VLAN missing from the database is created"
    shown = interfaces(path)
    assert shown[P1]["static_vlans"] == [10]
    assert sorted(shown[P1]["dynamic_vlans"]) == [110, 120]

    write_inventory(tmp_path, inventory(web_host="esx2"))  # web-01 moves to esx2
    done = sync(path, env(peer))
    assert done.returncode == 0, done.stderr
    assert person.read(P1) == trunk(10, 120)
    assert person.read(P2) == trunk(110)
    assert person.read(P3) == trunk(), "an edge port no VM needs is not written"
    assert person.read(NON_EDGE) == trunk(10), "a non-edge port is never written"
    shown = interfaces(path)
    assert shown[P2]["dynamic_vlans"] == [110] and shown[P2]["static_vlans"] == []
    assert shown[P1]["static_vlans"] == [10]

    write_inventory(tmp_path, {**inventory(), "vms": []})  # every VM gone
    assert sync(path, env(peer)).returncode == 0
    assert person.read(P1) == trunk(10), "static VLANs stay"
    assert person.read(P2) == trunk()
    assert not {"vmfabric-110", "vmfabric-120"} & set(person.vlan_ids()), "unused own VLANs go"


def test_unreachable_switch_is_one_line_exit_1(tmp_path: Path, peer: FakeSwitchesPeer) -> None:
    path = write_config(tmp_path, entry(peer, port=1, timeout=5), (P1, P2))
    assert_one_line_error(sync(path, env(peer)), 1, "switch leaf1: NETCONF 127.0.0.1:1: cannot")


def test_wrong_password_is_one_line_exit_1_without_the_password(
    tmp_path: Path, peer: FakeSwitchesPeer, person: JunosPeer
) -> None:
    before = etree.tostring(person.configuration())
    path = write_config(tmp_path, entry(peer), (P1, P2))
    wrong = "Wr0ng-pass-4711"
    done = sync(path, {PASSWORD_ENV: wrong})
    assert_one_line_error(done, 1, "login as 'admin' refused", secret=wrong)
    assert etree.tostring(person.configuration()) == before


def test_missing_password_variable_is_bad_input(tmp_path: Path, peer: FakeSwitchesPeer) -> None:
    path = write_config(tmp_path, {**entry(peer), "password": "env:VMF_NOT_SET_X"}, (P1, P2))
    assert_one_line_error(sync(path), 2, "VMF_NOT_SET_X")


def test_an_edge_port_the_switch_lacks_is_bad_input_and_nothing_is_applied(
    tmp_path: Path, peer: FakeSwitchesPeer, person: JunosPeer
) -> None:
    path = write_config(tmp_path, entry(peer, edge_ports=[P1, P2, "ge-0/0/9"]), (P1, P2))
    done = sync(path, env(peer))
    assert_one_line_error(done, 2, "edge port ge-0/0/9 does not exist (NETCONF 127.0.0.1:")
    assert person.read(P1) == trunk(10)


def test_a_refused_commit_is_one_line_with_the_switch_message_and_nothing_applied(
    tmp_path: Path, peer: FakeSwitchesPeer, person: JunosPeer
) -> None:
    peer.refuse(120)  # injected by the test peer: VLAN 120 is "reserved"
    path = write_config(tmp_path, entry(peer), (P1, P2))
    done = sync(path, env(peer))
    assert_one_line_error(done, 1, "commit refused: vlan-id 120 is reserved", secret=peer.password)
    assert person.read(P1) == trunk(10), "110 was in the same commit: nothing is half applied"
    assert "vmfabric-110" not in person.vlan_ids()


def test_a_literal_password_is_refused_without_echoing_it(
    tmp_path: Path, peer: FakeSwitchesPeer
) -> None:
    path = write_config(tmp_path, {**entry(peer), "password": "plain-Secret-77"}, (P1, P2))
    done = sync(path)
    assert_one_line_error(done, 2, "literal passwords are refused", secret="plain-Secret-77")

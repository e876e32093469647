"""The generic SSH driver (``driver: cli``, platform file ``cisco_ios``) against fake-switches'
``cisco_generic`` IOS model over real SSH (extended where IOS does more: support.peers says
what), on what the CLI adds (the shipped conformance suite runs in tests/conformance/): a
refused command undone, the VLAN database, one login for many changes, host keys, saving."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.peers.cisco import CiscoPerson, cli_config
from support.peers.fakeswitches import FakeSwitchesPeer, host_key_line
from vmfabric.core.errors import PermanentError, TransientError
from vmfabric.targets.switchport.cli import CliDriver
from vmfabric.testing.conformance import change

pytestmark = pytest.mark.integration


@pytest.fixture
def ios_peer(tmp_path: Path) -> Iterator[FakeSwitchesPeer]:
    peer = FakeSwitchesPeer("cisco", tmp_path, ports=6).start()
    try:
        yield peer
    finally:
        peer.stop()


# ---- what the CLI adds ---------------------------------------------------------------------


@pytest.fixture
def ios(ios_peer: FakeSwitchesPeer) -> Iterator[CiscoPerson]:
    person = CiscoPerson(ios_peer)
    for port in ("GigabitEthernet0/1", "GigabitEthernet0/2"):
        person.set_trunk(port, [10])
    try:
        yield person
    finally:
        person.close()


def driver_for(peer: FakeSwitchesPeer, **over: Any) -> CliDriver:
    return CliDriver(cli_config(peer, **over))


def test_one_ssh_login_serves_many_changes(ios_peer: FakeSwitchesPeer, ios: CiscoPerson) -> None:
    logins = ios_peer.logins()
    driver = driver_for(ios_peer)
    for vlan in range(110, 116):
        driver.apply(
            [change("GigabitEthernet0/1", add={vlan}), change("GigabitEthernet0/2", add={vlan})]
        )
        driver.read_ports()
    assert driver.transactions == 6
    assert driver.logins == 1
    assert ios_peer.logins() - logins == 1, "the switch saw one login for six changes"
    assert ios.read("GigabitEthernet0/1").vlans == {10, *range(110, 116)}


def test_missing_vlans_are_created_named_for_vmfabric_and_present_ones_left_alone(
    ios_peer: FakeSwitchesPeer, ios: CiscoPerson
) -> None:
    ios.configure("vlan 120", "name web", "exit")
    driver_for(ios_peer).apply([change("GigabitEthernet0/1", add={110, 120})])
    running = ios.running()
    assert "vlan 110\n name vmfabric-110" in running
    assert "vlan 120\n name web" in running, "an existing VLAN keeps its name"


def test_the_record_is_a_suffix_of_the_persons_description(
    ios_peer: FakeSwitchesPeer, ios: CiscoPerson
) -> None:
    ios.configure("interface GigabitEthernet0/1", "description esx01 vmnic1", "exit")
    driver = driver_for(ios_peer)
    driver.apply([change("GigabitEthernet0/1", add={110, 111})])
    assert ios.description("GigabitEthernet0/1") == "esx01 vmnic1 [vmfabric:110-111]"
    fresh = driver_for(ios_peer)  # a lost store: the record is on the switch
    assert fresh.read_ports()["GigabitEthernet0/1"].dynamic == {110, 111}
    fresh.apply([change("GigabitEthernet0/1", remove={110, 111})])
    assert ios.description("GigabitEthernet0/1") == "esx01 vmnic1"


def test_a_refused_command_is_undone_and_reported_with_the_switch_message(
    ios_peer: FakeSwitchesPeer, ios: CiscoPerson
) -> None:
    before = ios.running()
    ios_peer.refuse(130)  # injected by the test peer
    driver = driver_for(ios_peer)
    with pytest.raises(
        PermanentError, match="'switchport trunk allowed vlan add 130' refused: % Inv"
    ):
        driver.apply(
            [change("GigabitEthernet0/1", add={120}), change("GigabitEthernet0/2", add={130})]
        )
    assert ios.running() == before, "what was applied before the refusal was undone"


def test_host_keys_are_verified_against_known_hosts(
    ios_peer: FakeSwitchesPeer, ios: CiscoPerson, tmp_path: Path
) -> None:
    known = tmp_path / "known_hosts"
    line = host_key_line("127.0.0.1", ios_peer.port).split(" ", 1)[1]
    known.write_text(f"127.0.0.1 {line}")
    trusted = driver_for(ios_peer, hostkey_verify=True, known_hosts=str(known))
    assert trusted.read_ports()["GigabitEthernet0/1"].vlans == {10}
    other = tmp_path / "other"
    other.write_text(f"192.0.2.1 {line}")
    with pytest.raises(PermanentError, match="host key not trusted"):
        driver_for(ios_peer, hostkey_verify=True, known_hosts=str(other)).read_ports()


def test_wrong_password_and_unreachable_are_one_line_errors(
    ios_peer: FakeSwitchesPeer, ios: CiscoPerson, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMF_TEST_WRONG_PW", "Wr0ng-4711")
    with pytest.raises(PermanentError, match="login as 'admin' refused") as raised:
        driver_for(ios_peer, password="env:VMF_TEST_WRONG_PW").read_ports()
    assert "Wr0ng-4711" not in str(raised.value)
    with pytest.raises(TransientError, match=r"SSH 127\.0\.0\.1:1: cannot log in") as gone:
        driver_for(ios_peer, port=1, timeout=3).read_ports()
    assert "\n" not in str(gone.value)


def test_save_writes_the_configuration_after_an_apply(
    ios_peer: FakeSwitchesPeer, ios: CiscoPerson
) -> None:
    driver = driver_for(ios_peer, save=True)
    trips = driver.round_trips
    driver.apply([change("GigabitEthernet0/1", add={110})])
    unsaved = driver_for(ios_peer)
    unsaved.apply([change("GigabitEthernet0/1", add={111})])
    assert driver.round_trips - trips == unsaved.round_trips + 1, "one more command: the save"

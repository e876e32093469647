"""The junos driver against fake-switches' ELS Junos model over real NETCONF/SSH, on what is
Junos's own (the shipped conformance suite runs in tests/conformance/): the VLAN database,
member ranges and names, the placeholder VLAN, the candidate lock, a peer killed mid-apply,
a session lost mid-apply, host keys, and a kept-open session.

fake-switches is extended where it lacks what Junos does (support.peers.fakeswitches says
what); refusals and stalls are injected by the test and named so."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from support.peers.fakeswitches import FakeSwitchesPeer, host_key_line
from support.peers.junos import NON_EDGE, JunosPeer, junos_config, start_peer
from vmfabric.core.errors import PermanentError, TransientError
from vmfabric.core.model import PortMode
from vmfabric.targets.switchport.junos import JunosDriver
from vmfabric.testing.conformance import (
    change,
    trunk,
)

pytestmark = pytest.mark.integration


# ---- what is Junos's own ---------------------------------------------------------------


@pytest.fixture
def els(tmp_path: Path) -> Iterator[tuple[FakeSwitchesPeer, JunosPeer]]:
    """An ELS peer with ge-0/0/1 and ge-0/0/2 trunks carrying no VLAN."""
    peer = start_peer("junos", tmp_path)
    person = JunosPeer(peer)
    person.set_trunk("ge-0/0/1", ())
    person.set_trunk("ge-0/0/2", ())
    try:
        yield peer, person
    finally:
        person.close()
        peer.stop()


def driver_for(peer: FakeSwitchesPeer, **over: Any) -> JunosDriver:
    return JunosDriver(junos_config(peer, **over))


def test_vlans_missing_from_the_database_are_created_and_deleted_once_unused(
    els: tuple[FakeSwitchesPeer, JunosPeer],
) -> None:
    peer, person = els
    person.set_trunk("ge-0/0/1", {10})
    person.set_trunk(NON_EDGE, ())
    driver = driver_for(peer)
    driver.apply([change("ge-0/0/1", add={110, 10}), change("ge-0/0/2", add={110})])
    vlans = person.vlan_ids()
    assert vlans["vmfabric-110"] == 110 and "vmfabric-10" not in vlans, "10 existed as v10"
    person.manual_edit(NON_EDGE, add=[110])  # a person now uses vmfabric's VLAN elsewhere
    driver.apply([change("ge-0/0/1", remove={110}), change("ge-0/0/2", remove={110})])
    assert person.vlan_ids()["vmfabric-110"] == 110, "still used by a non-edge port"
    person.manual_edit(NON_EDGE, remove=[110])
    driver.apply([change("ge-0/0/1", add={120})])
    driver.apply([change("ge-0/0/1", remove={120})])
    assert not {"vmfabric-110", "vmfabric-120"} & set(person.vlan_ids())
    assert person.read("ge-0/0/1") == trunk(10)


def test_ranges_are_split_and_named_members_removed_exactly(
    els: tuple[FakeSwitchesPeer, JunosPeer],
) -> None:
    peer, person = els
    person.commit("<vlans>" + "".join(
        f"<vlan><name>v{v}</name><vlan-id>{v}</vlan-id></vlan>" for v in range(100, 106)
    ) + "<vlan><name>web</name><vlan-id>120</vlan-id></vlan></vlans>")  # fmt: skip
    person.set_port("ge-0/0/1", "trunk", ["100-105", "web"])
    driver = driver_for(peer)
    assert driver.read_ports()["ge-0/0/1"].vlans == {100, 101, 102, 103, 104, 105, 120}
    driver.apply([change("ge-0/0/1", remove={102, 120})])
    assert person.members("ge-0/0/1") == ["100-101", "103-105"]
    assert person.read("ge-0/0/1") == trunk(100, 101, 103, 104, 105)


def test_closed_vlan_used_by_a_person_is_refused_and_nothing_changes(
    els: tuple[FakeSwitchesPeer, JunosPeer],
) -> None:
    peer, person = els
    person.set_trunk("ge-0/0/1", {10})
    person.set_trunk("ge-0/0/2", {10})
    person.commit('<vlans><vlan operation="delete"><name>vmfabric-closed</name></vlan></vlans>')
    person.commit("<vlans><vlan><name>voice</name><vlan-id>4094</vlan-id></vlan></vlans>")
    driver = driver_for(peer)
    driver.apply([change("ge-0/0/1", add={110})])
    before = etree.tostring(person.configuration())
    with pytest.raises(PermanentError, match="closed_vlan 4094 is VLAN 'voice'"):
        driver.apply([change("ge-0/0/1", remove={110, 10})])
    assert etree.tostring(person.configuration()) == before
    moved = driver_for(peer, closed_vlan=3999)
    moved.apply([change("ge-0/0/1", remove={110, 10})])
    assert person.read("ge-0/0/1") == trunk()
    assert person.vlan_ids()["vmfabric-closed"] == 3999


def test_a_candidate_locked_by_a_person_is_transient_and_nothing_is_written(
    els: tuple[FakeSwitchesPeer, JunosPeer],
) -> None:
    peer, person = els
    driver = driver_for(peer)
    person.session().lock("candidate")
    with pytest.raises(TransientError, match="lock the candidate refused"):
        driver.apply([change("ge-0/0/1", add={110})])
    person.session().unlock("candidate")
    assert person.read("ge-0/0/1") == trunk()
    driver.apply([change("ge-0/0/1", add={110})])
    assert person.read("ge-0/0/1") == trunk(110)


def test_a_peer_killed_before_the_commit_leaves_nothing_half_applied(
    els: tuple[FakeSwitchesPeer, JunosPeer],
) -> None:
    """The peer stops answering at ``commit`` (injected), is SIGKILLed there, and restarts
    from its committed configuration: the edit-config it had received is not in it."""
    peer, person = els
    person.set_trunk("ge-0/0/1", {10})
    before = etree.tostring(person.configuration())
    # the kill ends the commit RPC (the connection drops); were the drop not seen, its
    # timeout would end it: 20 s, and close-session's 5 s, well within the join below
    driver = driver_for(peer, timeout=20)
    driver.read_ports()
    peer.stall_at("commit")
    failure: list[BaseException] = []

    def apply() -> None:
        try:
            driver.apply([change("ge-0/0/1", add={110}), change("ge-0/0/2", add={120})])
        except BaseException as exc:  # examined below
            failure.append(exc)

    worker = threading.Thread(target=apply)
    worker.start()
    peer.wait_stalled()
    assert peer.writes() >= 1, "the edit-config reached the peer before the commit"
    person.close()
    peer.stop()  # SIGKILL mid-apply
    worker.join(120)
    assert not worker.is_alive()
    assert len(failure) == 1 and isinstance(failure[0], TransientError), failure
    peer.stall_at("")
    peer.start()
    assert etree.tostring(person.configuration()) == before
    again = driver_for(peer)
    again.apply([change("ge-0/0/1", add={110}), change("ge-0/0/2", add={120})])
    assert person.read("ge-0/0/1") == trunk(10, 110)


def test_a_session_lost_mid_apply_discards_its_change_and_frees_the_lock(
    els: tuple[FakeSwitchesPeer, JunosPeer],
) -> None:
    """The peer stops answering at ``commit`` (injected); the driver's RPC times out and it
    drops the session: Junos then discards the uncommitted change and its lock."""
    peer, person = els
    driver = driver_for(peer, timeout=2)
    peer.stall_at("commit")
    with pytest.raises(TransientError, match="no answer to commit within 2s"):
        driver.apply([change("ge-0/0/1", add={110})])
    peer.stall_at("")
    assert person.read("ge-0/0/1") == trunk()
    driver.apply([change("ge-0/0/1", add={110})])  # the lock is free again
    assert person.read("ge-0/0/1") == trunk(110)


def test_one_login_serves_every_read_and_apply(els: tuple[FakeSwitchesPeer, JunosPeer]) -> None:
    peer, _ = els
    driver = driver_for(peer)
    for vlan in range(110, 115):
        driver.apply([change("ge-0/0/1", add={vlan})])
        driver.read_ports()
    assert driver.logins == 1
    assert driver.transactions == 5


def test_host_keys_are_verified_against_known_hosts(
    els: tuple[FakeSwitchesPeer, JunosPeer], tmp_path: Path
) -> None:
    peer, _ = els
    known = tmp_path / "known_hosts"
    known.write_text(host_key_line("127.0.0.1", peer.port))
    trusted = driver_for(peer, hostkey_verify=True, known_hosts=str(known))
    assert trusted.read_ports()["ge-0/0/1"].mode is PortMode.TRUNK
    other = tmp_path / "other_known_hosts"
    other.write_text(host_key_line("127.0.0.1", peer.port + 1))  # the key, for another port
    with pytest.raises(PermanentError, match="is not in known_hosts; refusing to connect"):
        driver_for(peer, hostkey_verify=True, known_hosts=str(other)).read_ports()


def test_wrong_password_is_permanent_and_never_printed(
    els: tuple[FakeSwitchesPeer, JunosPeer], monkeypatch: pytest.MonkeyPatch
) -> None:
    peer, _ = els
    monkeypatch.setenv("VMF_TEST_WRONG_PW", "Wr0ng-4711")
    driver = driver_for(peer, password="env:VMF_TEST_WRONG_PW")
    with pytest.raises(PermanentError) as raised:
        driver.connect()
    assert "Wr0ng-4711" not in str(raised.value) and "\n" not in str(raised.value)
    assert "login as 'admin' refused" in str(raised.value)

"""The cumulus driver against a stateful NVUE peer written here from NVIDIA's published API
shapes (support.peers.nvue: no NVUE simulator exists to run), over HTTPS with a certificate
the test made, on what is NVUE's own (the shipped conformance suite runs in
tests/conformance/): revisions, the bridge's VLAN list, the placeholder, a peer killed
mid-apply, TLS, a kept-alive connection."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.peers.cumulus import CumulusPerson, cumulus_config, make_tls
from support.peers.nvue import NvuePeer
from vmfabric.core.errors import PermanentError, TransientError
from vmfabric.targets.switchport.cumulus import CumulusDriver
from vmfabric.testing.conformance import (
    change,
    trunk,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def nvue(tmp_path: Path) -> Iterator[NvuePeer]:
    peer = NvuePeer(tmp_path, tls=make_tls(tmp_path)).start()
    try:
        yield peer
    finally:
        peer.stop()


# ---- what is NVUE's own -------------------------------------------------------------------


@pytest.fixture
def person(nvue: NvuePeer) -> CumulusPerson:
    at_switch = CumulusPerson(nvue)
    at_switch.set_trunk("swp1", ())
    at_switch.set_trunk("swp2", ())
    return at_switch


def driver_for(peer: NvuePeer, **over: Any) -> CumulusDriver:
    return CumulusDriver(cumulus_config(peer, **over))


def port_keys(peer: NvuePeer, port: str) -> set[str]:
    return set(peer.applied()["interface"][port]["bridge"]["domain"]["br_default"]["vlan"])


def test_vlans_missing_from_the_bridge_are_added_and_the_placeholder_keeps_ports_closed(
    nvue: NvuePeer, person: CumulusPerson
) -> None:
    driver = driver_for(nvue)
    driver.apply([change("swp1", add={110, 120})])
    assert {"110", "120"} <= set(nvue.applied()["bridge"]["domain"]["br_default"]["vlan"])
    assert port_keys(nvue, "swp1") == {"110", "120"}, "the placeholder goes when a VLAN comes"
    driver.apply([change("swp1", remove={110, 120})])
    assert port_keys(nvue, "swp1") == {"4094"}, "an emptied trunk never falls back to all"
    assert person.read("swp1") == trunk()


def test_the_record_is_a_suffix_of_the_persons_description(
    nvue: NvuePeer, person: CumulusPerson
) -> None:
    person.client.change({"interface": {"swp1": {"description": "esx01 vmnic1"}}})
    driver = driver_for(nvue)
    driver.apply([change("swp1", add={110, 111, 112})])
    assert nvue.applied()["interface"]["swp1"]["description"] == "esx01 vmnic1 [vmfabric:110-112]"
    driver.apply([change("swp1", remove={110, 111, 112})])
    assert nvue.applied()["interface"]["swp1"]["description"] == "esx01 vmnic1"


def test_ranges_are_split_not_replaced(nvue: NvuePeer, person: CumulusPerson) -> None:
    vlans: dict[str, object] = {"4094": None, "100-105": {}}
    person.client.change(
        {"interface": {"swp1": {"bridge": {"domain": {"br_default": {"vlan": vlans}}}}},
         "bridge": {"domain": {"br_default": {"vlan": {"100-105": {}}}}}},
    )  # fmt: skip
    driver_for(nvue).apply([change("swp1", remove={102})])
    assert port_keys(nvue, "swp1") == {"100-101", "103-105"}


def test_a_refused_apply_changes_nothing_and_leaves_no_revision(
    nvue: NvuePeer, person: CumulusPerson
) -> None:
    nvue.refuse(120)
    before = nvue.applied()
    with pytest.raises(
        PermanentError, match=r"apply refused \(invalid\): interface swp2: VLAN 120"
    ):
        driver_for(nvue).apply([change("swp1", add={110}), change("swp2", add={120})])
    assert nvue.applied() == before
    left = [r["state"] for r in person.client.call("GET", "/revision").values()]
    assert set(left) == {"applied"}, "the refused revision was deleted"


def test_a_peer_killed_mid_apply_leaves_nothing_half_applied(
    nvue: NvuePeer, person: CumulusPerson
) -> None:
    """The peer stops answering the apply request (injected) and is SIGKILLed there; it
    restarts from its applied configuration, which has none of the revision."""
    before = nvue.applied()
    # the kill ends the request (the connection drops); were the drop not seen, the 20 s
    # timeout would end it, well within the join below
    driver = driver_for(nvue, timeout=20)
    driver.read_ports()
    nvue.stall_at("apply")
    failure: list[BaseException] = []

    def apply() -> None:
        try:
            driver.apply([change("swp1", add={110}), change("swp2", add={120})])
        except BaseException as exc:  # examined below
            failure.append(exc)

    worker = threading.Thread(target=apply)
    worker.start()
    nvue.wait_stalled()
    nvue.stop()  # SIGKILL mid-apply
    worker.join(120)
    assert not worker.is_alive()
    assert len(failure) == 1 and isinstance(failure[0], TransientError), failure
    nvue.stall_at("")
    nvue.start()
    assert nvue.applied() == before
    again = driver_for(nvue)
    again.apply([change("swp1", add={110}), change("swp2", add={120})])
    assert person.read("swp1") == trunk(110) and person.read("swp2") == trunk(120)


def test_an_untrusted_certificate_is_refused_in_one_line(
    nvue: NvuePeer, person: CumulusPerson
) -> None:
    with pytest.raises(PermanentError, match="TLS certificate not trusted") as raised:
        driver_for(nvue, ca_file=None).read_ports()
    assert "\n" not in str(raised.value)


def test_wrong_password_is_refused_and_never_printed(
    nvue: NvuePeer, person: CumulusPerson, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMF_TEST_WRONG_PW", "Wr0ng-4711")
    with pytest.raises(PermanentError, match="login as 'cumulus' refused") as raised:
        driver_for(nvue, password="env:VMF_TEST_WRONG_PW").read_ports()
    assert "Wr0ng-4711" not in str(raised.value)


def test_one_kept_alive_connection_serves_every_apply(
    nvue: NvuePeer, person: CumulusPerson
) -> None:
    before = nvue.connections()
    driver = driver_for(nvue)
    for vlan in range(110, 115):
        driver.apply([change("swp1", add={vlan})])
    assert driver.logins == 1
    assert nvue.connections() - before == 1
    assert driver.transactions == 5


def test_plain_http_works_for_a_lab(tmp_path: Path) -> None:
    peer = NvuePeer(tmp_path).start()
    try:
        CumulusPerson(peer).set_trunk("swp1", ())
        driver = driver_for(peer, transport="http")
        assert driver.apply([change("swp1", add={110})])["swp1"].vlans == {110}
    finally:
        peer.stop()

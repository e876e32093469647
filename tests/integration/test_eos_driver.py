"""What only the ``eos`` driver must prove, against a simulated Arista switch (fake-switches'
arista_generic over eAPI, extended in ``support/peers/fakeswitches_eos.py``; not a real
EOS): the kept connection and its re-opening, requests per plan, a switch that stops
answering mid-apply, VLAN-database bookkeeping, the description record next to a
person's text, TLS options, and that a slow switch delays only itself in ``run``."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.controller import running_controller, wait_for
from support.peers.eos import PASSWORD, PASSWORD_ENV, EosPeer, make_tls, require_fakeswitches
from vmfabric.config import load_config, parse_switch
from vmfabric.core.errors import ConfigError, PermanentError, TransientError
from vmfabric.core.model import PortChange, PortMode
from vmfabric.targets.switchport.base import create_driver
from vmfabric.targets.switchport.eos import EosBatchDriver, EosDriver

pytestmark = pytest.mark.integration
EDGE = ["Ethernet1", "Ethernet2", "Port-Channel10"]


@pytest.fixture(autouse=True)
def password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)


@pytest.fixture
def peer() -> Iterator[EosPeer]:
    require_fakeswitches()
    running = EosPeer().start()
    try:
        for port in EDGE:
            running.set_trunk(port, ())
        yield running
    finally:
        running.stop()


def driver_for(peer: EosPeer, **options: Any) -> EosDriver:
    config = parse_switch({"name": "leaf1", "driver": "eos", "edge_ports": EDGE,
                           **peer.options(**options)})  # fmt: skip
    made = create_driver(config)
    assert isinstance(made, EosDriver)
    return made


def add(port: str, *vlans: int) -> PortChange:
    return PortChange(port, add=frozenset(vlans))


def remove(port: str, *vlans: int) -> PortChange:
    return PortChange(port, remove=frozenset(vlans))


def trunk(peer: EosPeer, port: str) -> list[int] | None:
    vlans: list[int] | None = peer.state()["ports"][port]["trunk_vlans"]
    return vlans


def test_registry_makes_the_batch_driver_when_sessions_are_off(peer: EosPeer) -> None:
    sessions, batch = driver_for(peer), driver_for(peer, config_session=False)
    assert type(sessions) is EosDriver and sessions.capabilities.atomic
    assert isinstance(batch, EosBatchDriver) and not batch.capabilities.atomic
    assert "first refused command" in batch.capabilities.notes


def test_one_kept_connection_two_requests_per_writing_plan_one_for_a_no_op(peer: EosPeer) -> None:
    driver = driver_for(peer)
    try:
        driver.connect()
        driver.apply([add("Ethernet1", 110), add("Ethernet2", 110, 120)])
        assert driver.requests == 2, "one read, one write whose answer is the new state"
        driver.apply([add("Ethernet1", 110)])
        assert driver.requests == 3, "a plan with nothing to write is one read"
        for vlan in range(200, 205):
            driver.apply([add("Port-Channel10", vlan)])
        assert driver._http is not None and driver._http.connects == 1
        assert peer.stats()["requests"] >= driver.requests
    finally:
        driver.close()


def test_the_connection_is_opened_again_after_the_switch_restarts() -> None:
    require_fakeswitches()
    first = EosPeer().start()
    second = EosPeer(port=first.port)
    driver = driver_for(first)
    try:
        first.set_trunk("Ethernet1", ())
        driver.apply([add("Ethernet1", 110)])
        first.stop()  # the kept connection is now closed by the other end
        second.start()
        second.set_trunk("Ethernet1", {10})
        assert driver.read_ports()["Ethernet1"].vlans == {10}, "re-opened transparently"
        driver.apply([add("Ethernet1", 120)])
        assert trunk(second, "Ethernet1") == [10, 120]
        assert driver._http is not None and driver._http.connects == 2
        second.stop()
        with pytest.raises(TransientError, match="cannot reach the switch"):
            driver.read_ports()
    finally:
        driver.close()
        first.stop()
        second.stop()


def test_a_switch_that_stops_answering_mid_apply_is_transient_and_never_half_applied(
    peer: EosPeer,
) -> None:
    driver = driver_for(peer, timeout=1)
    try:
        driver.read_ports()
        peer.process.pause()
        try:
            with pytest.raises(TransientError, match=r"no answer within 1s"):
                driver.apply([add("Ethernet1", 130), add("Port-Channel10", 130)])
        finally:
            peer.process.resume()
        states = driver.read_ports()
        both = {states["Ethernet1"].vlans, states["Port-Channel10"].vlans}
        assert both in ({frozenset()}, {frozenset({130})}), "all or nothing"
        assert peer.state()["sessions"] == []
    finally:
        driver.close()


def test_a_refused_plan_is_aborted_with_the_switchs_words(peer: EosPeer) -> None:
    driver = driver_for(peer)
    try:
        before = peer.state()
        peer.fail_at_interface(2)
        with pytest.raises(PermanentError) as raised:
            driver.apply([add("Ethernet1", 110), add("Ethernet2", 120)])
        assert str(raised.value) == (
            "switch leaf1: EOS refused 'interface Ethernet2': Invalid input (eAPI error 1002)"
        )
        assert peer.state() == before
    finally:
        driver.close()


def test_existing_vlans_are_used_as_they_are_and_only_unused_vlans_of_vmfabric_go(
    peer: EosPeer,
) -> None:
    peer.configure(["vlan 120", "name prod-120"])
    driver = driver_for(peer)
    try:
        driver.apply([add("Ethernet1", 110, 111, 112, 120)])
        vlans = peer.state()["vlans"]
        assert vlans["120"] == "prod-120", "a person's VLAN is neither renamed nor owned"
        assert vlans["110"] == "vmfabric-110"
        peer.interface("Ethernet5", "switchport mode access", "switchport access vlan 110")
        peer.configure(["vlan 111", "name web"])  # a person took VLAN 111 over
        peer.configure(["interface Vlan112", "description gateway"])  # an SVI uses 112
        driver.apply([remove("Ethernet1", 110, 111, 112, 120)])
        assert trunk(peer, "Ethernet1") == []
        assert {"110", "111", "112", "120"} <= set(peer.state()["vlans"])
        driver.apply([add("Ethernet2", 113)])
        driver.apply([remove("Ethernet2", 113)])
        assert "113" not in peer.state()["vlans"], "made by vmfabric, used by nothing: gone"
    finally:
        driver.close()


def test_the_origin_record_sits_after_the_persons_description(peer: EosPeer) -> None:
    peer.interface("Ethernet1", "description esx01 vmnic0 rack 7")
    driver = driver_for(peer)
    try:
        driver.apply([add("Ethernet1", 110, 111, 113)])
        desc = peer.state()["ports"]["Ethernet1"]["description"]
        assert desc == "esx01 vmnic0 rack 7 [vmfabric:110-111,113]"
        driver.apply([remove("Ethernet1", 110, 111, 113)])
        assert peer.state()["ports"]["Ethernet1"]["description"] == "esx01 vmnic0 rack 7"
        peer.interface("Ethernet2", "description " + "x" * 236)
        before = peer.state()
        with pytest.raises(PermanentError, match="would exceed 240 characters"):
            driver.apply([add("Ethernet2", 110)])
        assert peer.state() == before
    finally:
        driver.close()


def test_short_interface_names_in_the_config_find_the_switchs_long_names(peer: EosPeer) -> None:
    config = parse_switch({"name": "leaf1", "driver": "eos", "edge_ports": ["Et1", "Po10"],
                           **peer.options()})  # fmt: skip
    driver = create_driver(config)
    try:
        states = driver.apply([add("Et1", 110)])
        assert states["Et1"].vlans == {110} and states["Et1"].port == "Et1"
        assert driver.read_ports()["Po10"].mode is PortMode.TRUNK
        assert trunk(peer, "Ethernet1") == [110]
    finally:
        driver.close()


def test_verify_tls_false_connects_to_an_untrusted_switch_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    require_fakeswitches()
    tls = make_tls(tmp_path)
    peer = EosPeer(tls=tls).start()
    try:
        peer.set_trunk("Ethernet1", ())
        strict = driver_for(peer, ca_file=None)
        with pytest.raises(PermanentError, match="TLS certificate not trusted"):
            strict.connect()
        lax = driver_for(peer, ca_file=None, verify_tls=False)
        with caplog.at_level(logging.WARNING):
            lax.apply([add("Ethernet1", 110)])
        assert "TLS certificate verification is off" in caplog.text
        assert trunk(peer, "Ethernet1") == [110]
        lax.close()
        missing = driver_for(peer, ca_file=str(tmp_path / "nope.pem"))
        with pytest.raises(ConfigError, match=r"ca_file .*nope\.pem: cannot use it"):
            missing.connect()
    finally:
        peer.stop()


def test_a_slow_switch_delays_only_itself_in_run(tmp_path: Path) -> None:
    require_fakeswitches()
    fast, slow = EosPeer(name="leaf1").start(), EosPeer(name="leaf2").start()
    try:
        for peer in (fast, slow):
            peer.set_trunk("Ethernet1", ())
        slow.delay(120)  # every eAPI request of leaf2 is answered two minutes late
        inventory = {
            "hosts": [{"name": "esx1", "nics": ["vmnic0", "vmnic1"]}],
            "portgroups": [{"name": "web", "vlan": 110}],
            "vms": [{"name": "web-01", "host": "esx1", "power": "on", "portgroups": ["web"]}],
        }
        (tmp_path / "inv.yaml").write_text(yaml.safe_dump(inventory))
        switches = [
            {"name": name, "driver": "eos", "edge_ports": ["Ethernet1"],
             **peer.options(timeout=300)} for name, peer in (("leaf1", fast), ("leaf2", slow))
        ]  # fmt: skip
        cfg = {
            "store": "sqlite:///vf.db",
            "engine": {"coalesce": "10ms"},
            "sessions": [{"name": "inv", "kind": "static", "path": "inv.yaml"}],
            "switches": switches,
            "links": [
                {"host": "esx1", "nic": "vmnic0", "switch": "leaf1", "port": "Ethernet1"},
                {"host": "esx1", "nic": "vmnic1", "switch": "leaf2", "port": "Ethernet1"},
            ],
        }
        (tmp_path / "vmfabric.yaml").write_text(yaml.safe_dump(cfg))
        with running_controller(load_config(tmp_path / "vmfabric.yaml")):
            wait_for(lambda: trunk(fast, "Ethernet1") == [110], 60, "VLAN 110 on leaf1")
            assert trunk(slow, "Ethernet1") == [], "leaf2 cannot have answered yet"
            slow.stop()  # its worker's request fails now, so the controller can stop
    finally:
        fast.stop()
        slow.stop()

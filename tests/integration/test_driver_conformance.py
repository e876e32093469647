"""The Driver contract, proven once for every driver: ``ovs`` (a real Open vSwitch in its own
namespace) and ``fake`` (in memory). Each test sets a switch up through a small harness
that writes the switch directly (ovs-vsctl, or the fake's port table), applies changes
through the driver, and checks both the driver's answer and the switch's raw columns."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from support.ovs_fixtures import require_ovs
from vmfabric.config import SwitchConfig, parse_switch
from vmfabric.core.errors import ConfigError, PermanentError, TransientError
from vmfabric.core.model import PortChange, PortMode
from vmfabric.lab.ovs import OvsInstance, unique_name
from vmfabric.targets.switchport.base import create_driver
from vmfabric.targets.switchport.fake import FakeDriver, FakePort
from vmfabric.targets.switchport.ovs import OvsDriver

pytestmark = pytest.mark.integration

EDGE = ["p1", "p2", "p3", "p4", "p5"]
BRIDGE = "sw"


class Harness(Protocol):
    """Direct access to a switch, bypassing the driver under test."""

    @property
    def driver(self) -> OvsDriver | FakeDriver: ...

    def set_port(self, name: str, trunks: set[int] | None = None, tag: int | None = None) -> None:
        """Create or reset a port: a trunk of ``trunks``, an access port, or open."""

    def drop_port(self, name: str) -> None: ...
    def trunks(self, name: str) -> set[int]: ...
    def tag(self, name: str) -> int | None: ...
    def map_column(self, name: str, column: str) -> dict[str, str]: ...
    def set_key(self, name: str, column: str, key: str, value: str) -> None: ...


class OvsHarness:
    """Edits go through ovs-vsctl; the driver's replica is then synced, as a real edit made
    long before the next reconcile would be."""

    def __init__(self, ovs: OvsInstance, config: SwitchConfig) -> None:
        self.ovs = ovs
        self.driver = OvsDriver(config)

    def vsctl(self, *args: str) -> None:
        self.ovs.vsctl(*args)
        self.driver.sync()

    def set_port(self, name: str, trunks: set[int] | None = None, tag: int | None = None) -> None:
        self.vsctl(
            "--may-exist", "add-port", BRIDGE, name, "--", "set", "interface", name, "type=internal"
        )
        self.vsctl("clear", "port", name, "trunks", "tag")
        if trunks:
            self.vsctl("set", "port", name, "trunks=" + ",".join(map(str, sorted(trunks))))
        if tag is not None:
            self.vsctl("set", "port", name, f"tag={tag}")

    def drop_port(self, name: str) -> None:
        self.vsctl("--if-exists", "del-port", BRIDGE, name)

    def _get(self, name: str, column: str) -> Any:
        return self.ovs.vsctl("--format=json", "--columns=" + column, "list", "port", name)

    def _cell(self, name: str, column: str) -> Any:
        return json.loads(self._get(name, column))["data"][0][0]

    def trunks(self, name: str) -> set[int]:
        cell = self._cell(name, "trunks")
        return {cell} if isinstance(cell, int) else set(cell[1])

    def tag(self, name: str) -> int | None:
        cell = self._cell(name, "tag")
        return cell if isinstance(cell, int) else None

    def map_column(self, name: str, column: str) -> dict[str, str]:
        return dict(self._cell(name, column)[1])

    def set_key(self, name: str, column: str, key: str, value: str) -> None:
        self.vsctl("set", "port", name, f"{column}:{key}={value}")


class FakeHarness:
    def __init__(self, config: SwitchConfig) -> None:
        self.driver = FakeDriver(config)

    def _port(self, name: str) -> FakePort:
        port = self.driver.port(name)
        assert port is not None, f"fake port {name} is missing"
        return port

    def set_port(self, name: str, trunks: set[int] | None = None, tag: int | None = None) -> None:
        self.driver.set_port(name, FakePort(tag=tag, trunks=set(trunks or ())))

    def drop_port(self, name: str) -> None:
        self.driver.set_port(name, None)

    def trunks(self, name: str) -> set[int]:
        return set(self._port(name).trunks)

    def tag(self, name: str) -> int | None:
        return self._port(name).tag

    def map_column(self, name: str, column: str) -> dict[str, str]:
        return dict(getattr(self._port(name), column))

    def set_key(self, name: str, column: str, key: str, value: str) -> None:
        port = self._port(name)
        getattr(port, column)[key] = value
        self.driver.set_port(name, port)


MakeHarness = Callable[..., Harness]


@pytest.fixture(params=["ovs", "fake"])
def switch(request: pytest.FixtureRequest) -> Iterator[MakeHarness]:
    """Factory ``switch(open_ports="keep")``: p1/p2/p5 closed trunks, p3 open, p4 missing."""
    made: list[Harness] = []
    ovs: OvsInstance | None = None
    if request.param == "ovs":
        require_ovs()
        ovs = OvsInstance(unique_name("vfc")).start()

    def make(open_ports: str = "keep") -> Harness:
        config = parse_switch(
            {
                "name": "leaf1",
                "driver": request.param,
                "edge_ports": EDGE,
                "open_ports": open_ports,
                **({"ovsdb": ovs.db_url, "bridge": BRIDGE} if ovs else {}),
            }
        )
        harness: Harness
        if ovs is not None:
            ovs.vsctl(
                "--may-exist",
                "add-br",
                BRIDGE,
                "--",
                "set",
                "bridge",
                BRIDGE,
                "datapath_type=netdev",
            )
            harness = OvsHarness(ovs, config)
        else:
            harness = FakeHarness(config)
        for port in ("p1", "p2", "p5"):
            harness.set_port(port, trunks={4095})
        harness.set_port("p3")
        harness.drop_port("p4")
        made.append(harness)
        return harness

    try:
        yield make
    finally:
        for harness in made:
            harness.driver.close()
        if ovs is not None:
            ovs.stop()


def change(port: str, add: set[int] | None = None, remove: set[int] | None = None) -> PortChange:
    return PortChange(port, frozenset(add or ()), frozenset(remove or ()))


def test_read_ports_reports_every_mode(switch: MakeHarness) -> None:
    sw = switch()
    sw.set_port("p1", trunks={10, 20})
    sw.set_port("p2", tag=5)
    states = sw.driver.read_ports()
    assert sorted(states) == sorted(EDGE)
    assert states["p1"].mode is PortMode.TRUNK
    assert states["p1"].vlans == {10, 20}
    assert states["p1"].static == {10, 20}
    assert states["p2"].mode is PortMode.ACCESS
    assert states["p2"].vlans == {5}  # the access VLAN, reported as static
    assert states["p2"].dynamic == frozenset()
    assert states["p3"].mode is PortMode.OPEN
    assert states["p4"].mode is PortMode.MISSING
    assert states["p5"].mode is PortMode.TRUNK
    assert states["p5"].vlans == frozenset()  # closed: 4095 is not reported


def test_apply_adds_and_removes_on_several_ports_in_one_transaction(switch: MakeHarness) -> None:
    sw = switch()
    sw.set_port("p1", trunks={10, 20})
    result = sw.driver.apply([change("p1", add={110}, remove={10}), change("p2", add={110, 120})])
    assert sw.driver.transactions == 1
    assert sw.driver.writes == 4
    assert result["p1"].vlans == {20, 110}
    assert result["p2"].vlans == {110, 120}
    assert sw.trunks("p1") == {20, 110}
    assert sw.trunks("p2") == {110, 120}


def test_origin_record_marks_only_vlans_vmfabric_added(switch: MakeHarness) -> None:
    sw = switch()
    sw.set_port("p1", trunks={10, 20})
    sw.driver.apply([change("p1", add={110, 111, 20})])
    state = sw.driver.read_ports()["p1"]
    assert state.dynamic == {110, 111}
    assert state.static == {10, 20}
    assert sw.map_column("p1", "external_ids")["vmfabric-dynamic"] == "110-111"
    sw.driver.apply([change("p1", remove={110, 111})])
    assert "vmfabric-dynamic" not in sw.map_column("p1", "external_ids")
    assert sw.driver.read_ports()["p1"].vlans == {10, 20}


def test_second_identical_apply_sends_no_transaction(switch: MakeHarness) -> None:
    sw = switch()
    sw.set_port("p1", trunks={10})
    changes = [change("p1", add={110}, remove={10}), change("p2", add={120})]
    first = sw.driver.apply(changes)
    second = sw.driver.apply(changes)
    sw.driver.apply([change("p1", remove={999}), change("p2", add={120})])
    assert sw.driver.transactions == 1
    assert sw.driver.writes == 3
    assert first == second
    assert sw.trunks("p1") == {110}


def test_removing_the_last_vlan_closes_the_port_instead_of_opening_it(
    switch: MakeHarness,
) -> None:
    sw = switch()
    sw.driver.apply([change("p1", add={110})])
    assert sw.trunks("p1") == {110}  # the placeholder went away with the first VLAN
    state = sw.driver.apply([change("p1", remove={110})])["p1"]
    assert sw.trunks("p1") == {4095}
    assert state.mode is PortMode.TRUNK
    assert state.vlans == frozenset()
    sw.driver.apply([change("p1", add={120})])
    assert sw.trunks("p1") == {120}


def test_open_port_is_left_alone_with_open_ports_keep(switch: MakeHarness) -> None:
    sw = switch(open_ports="keep")
    state = sw.driver.apply([change("p3", add={110})])["p3"]
    assert state.mode is PortMode.OPEN
    assert sw.trunks("p3") == set()
    assert sw.driver.transactions == 0


def test_open_port_is_closed_to_the_added_vlans_with_open_ports_close(
    switch: MakeHarness,
) -> None:
    sw = switch(open_ports="close")
    state = sw.driver.apply([change("p3", add={110})])["p3"]
    assert state.mode is PortMode.TRUNK
    assert state.dynamic == {110}
    assert sw.trunks("p3") == {110}
    sw.set_port("p3")
    sw.driver.apply([change("p3")])
    assert sw.trunks("p3") == {4095}


def test_apply_touches_only_trunks_and_the_record_of_edge_ports(switch: MakeHarness) -> None:
    sw = switch()
    sw.set_port("x1", trunks={10})
    sw.set_port("p2", tag=7)
    sw.set_key("p1", "other_config", "priority-tags", "true")
    sw.set_key("p1", "external_ids", "owner", "ops")
    sw.driver.apply([change("p1", add={110}), change("p2", add={110})])
    assert sw.map_column("p1", "other_config") == {"priority-tags": "true"}
    assert sw.map_column("p1", "external_ids")["owner"] == "ops"
    assert sw.tag("p1") is None
    assert sw.tag("p2") == 7
    assert sw.trunks("p2") == set()
    assert sw.trunks("x1") == {10}


def test_missing_port_is_reported_and_never_created(switch: MakeHarness) -> None:
    sw = switch()
    state = sw.driver.apply([change("p4", add={110})])["p4"]
    assert state.mode is PortMode.MISSING
    assert sw.driver.transactions == 0
    assert sw.driver.read_ports()["p4"].mode is PortMode.MISSING


def test_change_for_a_non_edge_port_is_refused_before_anything_is_written(
    switch: MakeHarness,
) -> None:
    sw = switch()
    sw.set_port("x1", trunks={10})
    with pytest.raises(PermanentError, match="x1 is not an edge port"):
        sw.driver.apply([change("p1", add={110}), change("x1", add={110})])
    assert sw.trunks("p1") == {4095}
    assert sw.trunks("x1") == {10}
    assert sw.driver.transactions == 0


# ---- the fake driver's own options (failure and latency injection, shared state) ----------


def fake_config(tmp_path: Path | None = None, **options: object) -> SwitchConfig:
    if tmp_path is not None:
        options["state_file"] = str(tmp_path / "leaf1.json")
    return parse_switch({"name": "leaf1", "driver": "fake", "edge_ports": EDGE, **options})


def test_fake_fail_next_fails_that_many_applies_without_writing() -> None:
    driver = create_driver(fake_config(fail_next=2))
    assert isinstance(driver, FakeDriver)
    for _ in range(2):
        with pytest.raises(TransientError, match="switch leaf1: injected failure"):
            driver.apply([change("p1", add={110})])
    assert driver.read_ports()["p1"].vlans == frozenset()
    assert driver.apply([change("p1", add={110})])["p1"].vlans == {110}
    assert driver.transactions == 1


def test_fake_latency_and_unreachable_options() -> None:
    slow = FakeDriver(fake_config(latency=0.05))
    started = time.monotonic()
    slow.apply([change("p1", add={110})])
    assert time.monotonic() - started >= 0.05
    down = FakeDriver(fake_config(unreachable=True))
    with pytest.raises(TransientError, match="cannot reach"):
        down.read_ports()


def test_fake_initial_ports_and_state_shared_through_a_file(tmp_path: Path) -> None:
    modes = {"p1": "10,20", "p2": "open", "p3": "access:5"}
    options = {"ports": ["p1", "p2", "p3", "p5"], "port_modes": modes}
    first = FakeDriver(fake_config(tmp_path, **options))
    states = first.read_ports()
    assert states["p1"].mode is PortMode.TRUNK
    assert states["p1"].vlans == {10, 20}
    assert states["p2"].mode is PortMode.OPEN
    assert states["p3"].mode is PortMode.ACCESS
    assert states["p4"].mode is PortMode.MISSING
    first.apply([change("p1", add={110})])
    second = FakeDriver(fake_config(tmp_path, **options))  # another process would do the same
    assert second.read_ports()["p1"].dynamic == {110}
    second.apply([change("p1", remove={110, 10, 20})])
    assert first.read_ports()["p1"].vlans == frozenset()
    assert first.port("p1") == FakePort(trunks={4095})


def test_fake_refuses_a_bad_port_option() -> None:
    with pytest.raises(ConfigError, match=r"port_modes\.p1: 'sideways' is not open"):
        fake_config(None, port_modes={"p1": "sideways"})


def test_wait_for_wakes_when_another_thread_applies(switch: MakeHarness) -> None:
    sw = switch()
    sw.driver.read_ports()
    timer = threading.Timer(0.2, sw.driver.apply, ([change("p1", add={130})],))
    timer.start()
    try:
        states = sw.driver.wait_for(lambda s: 130 in s["p1"].vlans, timeout=5)
        assert states["p1"].dynamic == {130}
        with pytest.raises(TransientError, match="not seen"):
            sw.driver.wait_for(lambda s: 131 in s["p1"].vlans, timeout=0.2)
    finally:
        timer.cancel()
        timer.join()

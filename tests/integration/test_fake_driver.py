"""What only the ``fake`` driver offers (its options: failure and latency injection, initial
port modes, state shared through a file) and its ``wait_for``. The contract every driver
shares is proven by the conformance suite (tests/conformance/test_fake_conformance.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from vmfabric.config import SwitchConfig, parse_switch
from vmfabric.core.errors import ConfigError, TransientError
from vmfabric.core.model import PortChange, PortMode
from vmfabric.targets.switchport.base import create_driver
from vmfabric.targets.switchport.fake import FakeDriver, FakePort

EDGE = ["p1", "p2", "p3", "p4", "p5"]


def change(port: str, add: set[int] | None = None, remove: set[int] | None = None) -> PortChange:
    return PortChange(port, frozenset(add or ()), frozenset(remove or ()))


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


def test_fake_wait_for_wakes_when_another_thread_applies() -> None:
    driver = FakeDriver(fake_config())
    driver.read_ports()
    timer = threading.Timer(0.2, driver.apply, ([change("p1", add={130})],))
    timer.start()
    try:
        states = driver.wait_for(lambda s: 130 in s["p1"].vlans, timeout=5)
        assert states["p1"].dynamic == {130}
        with pytest.raises(TransientError, match="not seen"):
            driver.wait_for(lambda s: 131 in s["p1"].vlans, timeout=0.2)
    finally:
        timer.cancel()
        timer.join()

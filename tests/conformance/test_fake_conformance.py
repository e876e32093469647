"""The shipped conformance suite against the ``fake`` driver (an in-memory switch with the
OVS driver's semantics). Driver objects share one switch through the fake's ``state_file``,
so a new driver object sees what an earlier one wrote, as after a restart."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from vmfabric.config import parse_switch
from vmfabric.core.model import PortChange, PortMode
from vmfabric.targets.switchport.base import CLOSED_VLAN, PortWrite
from vmfabric.targets.switchport.fake import FakeDriver, FakePort
from vmfabric.testing.conformance import (
    CountingDriver,
    PeerPort,
    SwitchHarness,
    SwitchPortConformance,
)

EDGE = ["p1", "p2", "p3", "p4", "p5"]


class FakeHarness(SwitchHarness):
    edge_ports = tuple(EDGE)
    non_edge_port = "x1"

    def __init__(self, state_file: Path) -> None:
        self.state_file = state_file
        self.drivers: list[FakeDriver] = []
        self.admin = self._new("keep")  # the harness's own hands on the switch
        self.admin.set_port("p4", None)

    def _new(self, open_ports: str) -> FakeDriver:
        config = parse_switch(
            {
                "name": "leaf1",
                "driver": "fake",
                "edge_ports": EDGE,
                "open_ports": open_ports,
                "ports": ["p1", "p2", "p3", "p5", "x1"],
                "state_file": str(self.state_file),
            }
        )
        return FakeDriver(config)

    def make_driver(self, open_ports: str = "keep") -> CountingDriver:
        driver = self._new(open_ports)
        self.drivers.append(driver)
        return driver

    def _port(self, name: str) -> FakePort:
        port = self.admin.port(name)
        assert port is not None, f"fake port {name} is missing"
        return port

    def set_trunk(self, port: str, vlans: Iterable[int]) -> None:
        self.admin.set_port(port, FakePort(trunks=set(vlans) or {CLOSED_VLAN}))

    def set_access(self, port: str, vlan: int) -> None:
        self.admin.set_port(port, FakePort(tag=vlan))

    def set_open(self, port: str) -> None:
        self.admin.set_port(port, FakePort())

    def read(self, port: str) -> PeerPort:
        raw = self.admin.port(port)
        if raw is None:
            return PeerPort(PortMode.MISSING)
        if raw.tag is not None:
            return PeerPort(PortMode.ACCESS, frozenset({raw.tag}))
        if raw.trunks:
            return PeerPort(PortMode.TRUNK, frozenset(raw.trunks) - {CLOSED_VLAN})
        return PeerPort(PortMode.OPEN)

    def manual_edit(self, port: str, add: Iterable[int] = (), remove: Iterable[int] = ()) -> None:
        raw = self._port(port)
        raw.trunks = (raw.trunks | set(add)) - set(remove)
        self.admin.set_port(port, raw)

    def set_unrelated(self, port: str) -> None:
        raw = self._port(port)
        raw.other_config["priority-tags"] = "true"
        raw.external_ids["owner"] = "ops"
        self.admin.set_port(port, raw)

    def unrelated(self, port: str) -> object:
        raw = self._port(port)
        ids = {k: v for k, v in raw.external_ids.items() if k != "vmfabric-dynamic"}
        return (raw.tag, raw.vlan_mode, raw.other_config, ids)

    def snapshot(self) -> object:
        return self.state_file.read_text(encoding="utf-8")

    def peer_writes(self) -> int:
        return sum(d.transactions for d in self.drivers)

    @contextmanager
    def concurrent_edit(
        self, driver: CountingDriver, port: str, add: Iterable[int] = (), remove: Iterable[int] = ()
    ) -> Iterator[None]:
        """The fake plans and writes under one lock, so an edit can only land just before
        the plan: it is made on the port table the apply holds."""
        assert isinstance(driver, FakeDriver)
        original = driver._plan

        def plan(ports: dict[str, FakePort], changes: Sequence[PortChange]) -> list[PortWrite]:
            ports[port].trunks = (ports[port].trunks | set(add)) - set(remove)
            return original(ports, changes)

        driver._plan = plan  # type: ignore[method-assign]
        try:
            yield
        finally:
            del driver._plan

    @contextmanager
    def broken_mid_apply(self) -> Iterator[None]:
        """The fake fails a whole apply (``fail_next``) before it writes anything."""
        for driver in self.drivers:
            driver.fail_next = 1
        try:
            yield
        finally:
            for driver in self.drivers:
                driver.fail_next = 0


class TestFakeConformance(SwitchPortConformance):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> Iterator[SwitchHarness]:
        yield FakeHarness(tmp_path / "leaf1.json")

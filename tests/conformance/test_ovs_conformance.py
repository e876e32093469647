"""The shipped conformance suite against the ``ovs`` driver and a real Open vSwitch
(ovsdb-server and ovs-vswitchd, userspace datapath, in a namespace of their own).

The harness edits the switch with ovs-vsctl and reads it back as OVS's own columns say
(tag, trunks, vlan_mode): the driver under test is never used to look. A "write the switch
received" is a step of ``Open_vSwitch.next_cfg``. Breaking the switch mid-apply is a
SIGSTOP of ovsdb-server (the driver's transaction times out), then a SIGKILL and restart
from its database file: the transaction must not have landed."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

from support.ovs_fixtures import require_ovs
from vmfabric.config import parse_switch
from vmfabric.core.errors import TransientError
from vmfabric.core.model import PortChange, PortMode
from vmfabric.lab.ovs import OvsInstance, unique_name
from vmfabric.targets.switchport.ovs import DYNAMIC_KEY, OvsDriver
from vmfabric.testing.conformance import (
    CountingDriver,
    PeerPort,
    SwitchHarness,
    SwitchPortConformance,
)

pytestmark = pytest.mark.integration

BRIDGE = "sw"
CLOSED = 4095
PORT_COLUMNS = "name,tag,trunks,vlan_mode,external_ids,other_config"


def _cell(value: Any) -> Any:
    """An OVSDB JSON cell as Python: sets to sorted lists, maps to dicts."""
    if isinstance(value, list) and value and value[0] == "set":
        return sorted(value[1])
    if isinstance(value, list) and value and value[0] == "map":
        return dict(value[1])
    return value


class OvsHarness(SwitchHarness):
    edge_ports = ("p1", "p2", "p3", "p4", "p5")
    non_edge_port = "x1"

    def __init__(self, ovs: OvsInstance) -> None:
        self.ovs = ovs
        self.drivers: list[OvsDriver] = []
        ovs.vsctl("--may-exist", "add-br", BRIDGE, "--", "set", "bridge", BRIDGE,
                  "datapath_type=netdev")  # fmt: skip

    def make_driver(self, open_ports: str = "keep") -> CountingDriver:
        config = parse_switch(
            {
                "name": "leaf1",
                "driver": "ovs",
                "ovsdb": self.ovs.db_url,
                "bridge": BRIDGE,
                "edge_ports": list(self.edge_ports),
                "open_ports": open_ports,
                "timeout": 3,
            }
        )
        driver = OvsDriver(config)
        self.drivers.append(driver)
        return driver

    def vsctl(self, *args: str) -> None:
        """Edit the switch, then let every driver's replica catch up (as an edit made long
        before the next reconcile would be)."""
        self.ovs.vsctl(*args)
        for driver in self.drivers:
            if driver._conn is not None:
                driver.sync()

    def _ensure(self, port: str) -> None:
        self.vsctl("--may-exist", "add-port", BRIDGE, port, "--", "set", "interface", port,
                   "type=internal")  # fmt: skip

    def set_trunk(self, port: str, vlans: Iterable[int]) -> None:
        self._ensure(port)
        listed = ",".join(map(str, sorted(set(vlans) or {CLOSED})))
        self.vsctl("clear", "port", port, "tag", "vlan_mode", "--", "set", "port", port,
                   f"trunks={listed}")  # fmt: skip

    def set_access(self, port: str, vlan: int) -> None:
        self._ensure(port)
        self.vsctl("clear", "port", port, "trunks", "vlan_mode", "--", "set", "port", port,
                   f"tag={vlan}")  # fmt: skip

    def set_open(self, port: str) -> None:
        self._ensure(port)
        self.vsctl("clear", "port", port, "trunks", "tag", "vlan_mode")

    def _ports(self) -> dict[str, dict[str, Any]]:
        out = json.loads(self.ovs.vsctl("--format=json", f"--columns={PORT_COLUMNS}", "list",
                                        "port"))  # fmt: skip
        names = out["headings"]
        return {row[0]: {k: _cell(v) for k, v in zip(names, row, strict=True)}
                for row in out["data"]}  # fmt: skip

    def read(self, port: str) -> PeerPort:
        row = self._ports().get(port)
        if row is None:
            return PeerPort(PortMode.MISSING)
        tag = row["tag"] if isinstance(row["tag"], int) else None
        mode = row["vlan_mode"] if isinstance(row["vlan_mode"], str) else ""
        if mode in ("access", "dot1q-tunnel") or (not mode and tag is not None):
            return PeerPort(PortMode.ACCESS, frozenset({tag} if tag is not None else ()))
        trunks = row["trunks"] if isinstance(row["trunks"], list) else [row["trunks"]]
        if trunks:
            return PeerPort(PortMode.TRUNK, frozenset(trunks) - {CLOSED})
        return PeerPort(PortMode.OPEN)

    def manual_edit(self, port: str, add: Iterable[int] = (), remove: Iterable[int] = ()) -> None:
        args: list[str] = []
        for vlan in add:
            args += ["--", "add", "port", port, "trunks", str(vlan)]
        for vlan in remove:
            args += ["--", "remove", "port", port, "trunks", str(vlan)]
        self.ovs.vsctl(*args[1:])

    def set_unrelated(self, port: str) -> None:
        self.vsctl("set", "port", port, "other_config:priority-tags=true",
                   "external_ids:owner=ops")  # fmt: skip

    def unrelated(self, port: str) -> object:
        row = self._ports()[port]
        ids = {k: v for k, v in row["external_ids"].items() if k != DYNAMIC_KEY}
        return (row["tag"], row["vlan_mode"], row["other_config"], ids)

    def snapshot(self) -> object:
        return self._ports()

    def peer_writes(self) -> int:
        return int(self.ovs.vsctl("get", "Open_vSwitch", ".", "next_cfg"))

    @contextmanager
    def concurrent_edit(
        self, driver: CountingDriver, port: str, add: Iterable[int] = (), remove: Iterable[int] = ()
    ) -> Iterator[None]:
        """The edit lands after the driver found (in its replica) that the plan writes
        something, before its transaction commits; the transaction's ``verify`` of the
        columns it decided from then makes OVSDB refuse it, and the driver decides again."""
        assert isinstance(driver, OvsDriver)
        original = driver._pending
        done: list[bool] = []

        def pending(idl: Any, changes: Sequence[PortChange]) -> bool:
            result = original(idl, changes)
            if not done:
                done.append(True)
                self.manual_edit(port, add, remove)
            return result

        driver._pending = pending  # type: ignore[method-assign]
        try:
            yield
        finally:
            del driver._pending
        assert done, "the driver never planned during the block"

    @contextmanager
    def broken_mid_apply(self) -> Iterator[None]:
        pid = self.ovs.pid("ovsdb-server")
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(pid, signal.SIGKILL)
            self.ovs.kill_daemon("ovsdb-server")
            self.ovs.start_ovsdb()
            self._wait_reconnected()

    def _wait_reconnected(self) -> None:
        self.ovs.vsctl("set", "Open_vSwitch", ".", "external_ids:probe=1")  # waits for vswitchd
        deadline = time.monotonic() + 30
        for driver in self.drivers:
            while True:
                try:
                    driver.sync()
                    break
                except TransientError:
                    if time.monotonic() > deadline:
                        raise


class TestOvsConformance(SwitchPortConformance):
    @pytest.fixture
    def harness(self) -> Iterator[SwitchHarness]:
        require_ovs()
        ovs = OvsInstance(unique_name("vfc")).start()
        try:
            yield OvsHarness(ovs)
        finally:
            ovs.stop()

    def test_the_origin_record_is_an_external_ids_range(self, harness: OvsHarness) -> None:
        """OVS's own form of the record (the suite checks it only through the driver)."""
        harness.set_trunk("p1", {10, 20})
        driver = harness.make_driver()
        try:
            driver.apply([PortChange("p1", add=frozenset({110, 111, 20}))])
            assert harness._ports()["p1"]["external_ids"][DYNAMIC_KEY] == "110-111"
            driver.apply([PortChange("p1", remove=frozenset({110, 111}))])
            assert DYNAMIC_KEY not in harness._ports()["p1"]["external_ids"]
            assert harness._ports()["p1"]["trunks"] == [10, 20]
        finally:
            driver.close()

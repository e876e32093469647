"""What only the Open vSwitch driver must prove, against a real ovsdb-server/ovs-vswitchd:
its origin record survives the driver, an unreachable or restarted OVSDB gives
TransientError (quickly, never a hang) and recovery, a missing bridge is a ConfigError."""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from pathlib import Path

import pytest

from support.ovs_fixtures import MakeSwitch, require_ovs
from vmfabric.config import parse_switch
from vmfabric.core.errors import ConfigError, PermanentError, TransientError
from vmfabric.core.model import PortChange, PortMode, PortState
from vmfabric.lab.netns import add_netns, delete_netns, list_netns, netns_exists
from vmfabric.lab.ovs import OvsInstance, unique_name
from vmfabric.targets.switchport.base import create_driver
from vmfabric.targets.switchport.ovs import OvsDriver

pytestmark = pytest.mark.integration


def add(port: str, *vlans: int) -> PortChange:
    return PortChange(port, add=frozenset(vlans))


def test_registry_creates_the_ovs_driver(ovs_switch: MakeSwitch) -> None:
    sw = ovs_switch(n=1)
    driver = create_driver(sw.config)
    try:
        assert isinstance(driver, OvsDriver)
        assert driver.read_ports()["e1"].mode is PortMode.TRUNK
    finally:
        driver.close()


def test_origin_record_survives_a_new_driver_object(ovs_switch: MakeSwitch) -> None:
    sw = ovs_switch(n=2, trunks=frozenset({10}))
    first = OvsDriver(sw.config)
    first.apply([add("e1", 110, 111), add("e2", 120)])
    first.close()
    second = OvsDriver(sw.config)
    try:
        states = second.read_ports()
        assert states["e1"].dynamic == {110, 111}
        assert states["e1"].static == {10}
        assert states["e2"].dynamic == {120}
    finally:
        second.close()


def test_unreachable_ovsdb_raises_transient_error_within_the_timeout(tmp_path: object) -> None:
    url = f"unix:{tmp_path}/nothing-here.sock"
    config = parse_switch(
        {
            "name": "leaf1",
            "driver": "ovs",
            "ovsdb": url,
            "bridge": "sw",
            "edge_ports": ["e1"],
            "timeout": 0.5,
        }
    )
    driver = OvsDriver(config)
    started = time.monotonic()
    with pytest.raises(TransientError, match=f"switch leaf1: cannot reach OVSDB {url}"):
        driver.read_ports()
    assert time.monotonic() - started < 2.0
    with pytest.raises(TransientError):
        driver.apply([add("e1", 110)])
    driver.close()


def test_missing_bridge_is_a_config_error_naming_switch_and_bridge(
    ovs_switch: MakeSwitch,
) -> None:
    sw = ovs_switch(n=1)
    config = sw.config.model_copy(update={"bridge": "nosuchbr"})
    driver = OvsDriver(config)
    try:
        with pytest.raises(ConfigError, match="switch leaf1: bridge nosuchbr does not exist"):
            driver.read_ports()
        with pytest.raises(ConfigError, match="nosuchbr"):
            driver.apply([add("e1", 110)])
    finally:
        driver.close()


def test_bad_endpoint_or_timeout_is_a_config_error() -> None:
    base = {"name": "leaf1", "driver": "ovs", "bridge": "sw", "edge_ports": ["e1"]}
    with pytest.raises(ConfigError, match=r"switch: ovsdb: 'http://x' is not unix:PATH"):
        parse_switch({**base, "ovsdb": "http://x"})
    with pytest.raises(ConfigError, match="switch: timeout: Input should be greater than 0"):
        parse_switch({**base, "ovsdb": "unix:/x.sock", "timeout": 0})


def _retry_until_ok(driver: OvsDriver, change: PortChange, within: float) -> dict[str, PortState]:
    deadline = time.monotonic() + within
    while True:
        try:
            return driver.apply([change])
        except TransientError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_driver_recovers_after_ovsdb_server_restart(ovs_switch: MakeSwitch) -> None:
    sw = ovs_switch(n=1, timeout=1)
    driver = OvsDriver(sw.config)
    try:
        driver.apply([add("e1", 110)])
        sw.ovs.kill_daemon("ovsdb-server", signal.SIGKILL)
        started = time.monotonic()
        with pytest.raises(TransientError, match="cannot reach OVSDB"):
            for _ in range(3):  # the first call may still see the replica of a moment ago
                driver.apply([add("e1", 111)])
                time.sleep(0.3)
        assert time.monotonic() - started < 5.0  # each call gave up within its timeout
        sw.ovs.start_ovsdb()
        state = _retry_until_ok(driver, add("e1", 120), within=15)["e1"]
        assert {110, 120} <= state.vlans
        assert "120" in sw.ovs.vsctl("get", "port", "e1", "trunks")
    finally:
        driver.close()


def test_apply_keeps_a_vlan_added_by_hand_meanwhile(ovs_switch: MakeSwitch) -> None:
    sw = ovs_switch(n=1, trunks=frozenset({10}))
    driver = OvsDriver(sw.config)
    try:
        driver.read_ports()
        sw.ovs.vsctl("add", "port", "e1", "trunks", "30")
        state = driver.apply([add("e1", 110)])["e1"]
        assert state.vlans == {10, 30, 110}
        assert state.dynamic == {110}
    finally:
        driver.close()


def test_wait_for_wakes_on_a_change_made_elsewhere(ovs_switch: MakeSwitch) -> None:
    sw = ovs_switch(n=1)
    driver = OvsDriver(sw.config)
    timer = threading.Timer(0.2, sw.ovs.vsctl, ("set", "port", "e1", "trunks=130"))
    try:
        driver.read_ports()
        timer.start()
        states = driver.wait_for(lambda s: 130 in s["e1"].vlans, timeout=5)
        assert states["e1"].vlans == {130}
        with pytest.raises(TransientError, match="not seen"):
            driver.wait_for(lambda s: 131 in s["e1"].vlans, timeout=0.2)
    finally:
        timer.cancel()
        driver.close()


def test_one_port_apply_latency(ovs_switch: MakeSwitch, capsys: pytest.CaptureFixture[str]) -> None:
    sw = ovs_switch(n=1)
    driver = OvsDriver(sw.config)
    samples = []
    try:
        driver.read_ports()
        for vlan in range(100, 150):
            started = time.perf_counter()
            driver.apply([add("e1", vlan)])
            samples.append(time.perf_counter() - started)
    finally:
        driver.close()
    median_ms = statistics.median(samples) * 1000
    with capsys.disabled():
        print(f"\none-port apply through OvsDriver: median {median_ms:.2f} ms of {len(samples)}")
    assert driver.transactions == 50
    assert median_ms < 100


def test_instance_leaves_no_namespace_or_directory_behind() -> None:
    require_ovs()
    with OvsInstance() as ovs:
        netns, directory = ovs.netns, ovs.dir
        pids = [ovs.pid(d) for d in ("ovsdb-server", "ovs-vswitchd")]
        assert all(pids)
        assert directory is not None and directory.exists()
    assert netns not in list_netns(netns)
    assert not directory.exists()
    assert not any(_running(pid) for pid in pids if pid is not None)


def _running(pid: int) -> bool:
    """Alive and not a zombie (this machine's PID 1 does not reap orphans)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return False
    return "State:\tZ" not in status


def test_a_hung_ovsdb_server_gives_transient_errors_not_a_hang(ovs_switch: MakeSwitch) -> None:
    sw = ovs_switch(n=1, timeout=1)
    driver = OvsDriver(sw.config)
    pid = sw.ovs.pid("ovsdb-server")
    assert pid is not None
    try:
        driver.read_ports()
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(TransientError, match="switch leaf1"):
                driver.apply([add("e1", 110)])
            with pytest.raises(TransientError, match="switch leaf1"):
                driver.read_ports()
            assert time.monotonic() - started < 4.0  # two calls, each bounded by its timeout
        finally:
            os.kill(pid, signal.SIGCONT)
        state = _retry_until_ok(driver, add("e1", 120), within=15)["e1"]
        assert 120 in state.vlans
    finally:
        driver.close()


def test_a_start_failing_halfway_leaves_nothing_behind(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    require_ovs()
    monkeypatch.setattr("vmfabric.lab.ovs.SCHEMA", tmp_path / "no-such.ovsschema")
    broken = OvsInstance(unique_name("vfx"), parent_dir=str(tmp_path))
    with pytest.raises(PermanentError, match="ovsdb-tool"):
        broken.start()
    assert not netns_exists(broken.netns)
    assert list(tmp_path.iterdir()) == []


def test_a_start_never_deletes_a_namespace_it_did_not_create(tmp_path: Path) -> None:
    require_ovs()
    name = add_netns(unique_name("vfx"))
    try:
        with pytest.raises(PermanentError, match="netns add"):
            OvsInstance(name, parent_dir=str(tmp_path)).start()
        assert netns_exists(name)
        assert list(tmp_path.iterdir()) == []
    finally:
        delete_netns(name)
    delete_netns(name)  # idempotent
    assert not netns_exists(name)

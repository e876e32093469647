"""README "Safety", Restart: with nothing changed a restart writes nothing, and with the
store deleted the origin records on the switch are enough to rebuild the view.

Writes are counted twice, independently: by an ``ovsdb-client monitor`` of the Port table
(any write by anyone shows up; a probe write proves the monitor is listening) and by the
OvsDriver's own ``transactions`` counter.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.controller import running_controller, wait_for
from support.controller import trunks as ovs_trunks
from support.ovs_fixtures import MakeSwitch, OvsSwitch, port_updates
from vmfabric.config import Config, load_config
from vmfabric.runtime import Controller
from vmfabric.store import Store
from vmfabric.targets.switchport.ovs import OvsDriver

pytestmark = pytest.mark.integration

INVENTORY: dict[str, Any] = {
    "hosts": [{"name": "esx1", "nics": ["vmnic0"]}, {"name": "esx2", "nics": ["vmnic0"]}],
    "portgroups": [{"name": "web", "vlan": 110}, {"name": "app", "vlan": "120-121"}],
    "vms": [
        {"name": "web-01", "host": "esx1", "power": "on", "portgroups": ["web"]},
        {"name": "app-01", "host": "esx2", "power": "on", "portgroups": ["app"]},
        {"name": "app-02", "host": "esx1", "power": "on", "portgroups": ["app"]},
    ],
}
WANTED = {"e1": {50, 110, 120, 121}, "e2": {120, 121}}


def write_config(tmp: Path, sw: OvsSwitch) -> Config:
    (tmp / "inv.yaml").write_text(yaml.safe_dump(INVENTORY))
    cfg = {
        "store": "sqlite:///vmfabric.db",
        "engine": {"prune_delay": "1s", "coalesce": "10ms"},
        "sessions": [{"name": "inv", "kind": "static", "path": "inv.yaml"}],
        "switches": [sw.config.model_dump(mode="json", exclude_none=True)],
        "links": [
            {"host": "esx1", "nic": "vmnic0", "switch": "leaf1", "port": "e1"},
            {"host": "esx2", "nic": "vmnic0", "switch": "leaf1", "port": "e2"},
        ],
    }
    (tmp / "vmfabric.yaml").write_text(yaml.safe_dump(cfg))
    return load_config(tmp / "vmfabric.yaml")


def trunks(sw: OvsSwitch, port: str) -> set[int]:
    return ovs_trunks(sw.ovs, port)


@contextmanager
def controller(config: Config) -> Iterator[tuple[Controller, OvsDriver]]:
    """Run a Controller (own thread and event loop) with an OvsDriver the test can inspect."""
    driver = OvsDriver(config.switches[0])
    with running_controller(config, drivers={"leaf1": driver}) as ctl:
        yield ctl, driver


def settled(ctl: Controller) -> bool:
    """The session's snapshot is in and the switch was read after it."""
    return ctl.inventory.in_sync("inv") and [s["state"] for s in ctl.store.show_switches()] == [
        "ok"
    ]


@pytest.fixture
def converged(ovs_switch: MakeSwitch, tmp_path: Path) -> tuple[OvsSwitch, Config]:
    """Three edge ports, VLAN 50 configured by hand on e1, and one controller run that
    converged them."""
    sw = ovs_switch(n=3)
    sw.ovs.vsctl("set", "Port", "e1", "trunks=[50]")  # static
    config = write_config(tmp_path, sw)
    converge_once(sw, config)
    return sw, config


def lose_store(folder: Path) -> None:
    for leftover in folder.glob("vmfabric.db*"):
        leftover.unlink()


def converge_once(sw: OvsSwitch, config: Config) -> None:
    with controller(config) as (ctl, _):
        wait_for(lambda: all(trunks(sw, p) == v for p, v in WANTED.items()), 10, "first run")
        wait_for(lambda: settled(ctl), 5, "first run settled")


def quiet_rerun(sw: OvsSwitch, config: Config) -> tuple[list[str], int]:
    """Run the controller again for longer than the prune delay; OVSDB writes and driver
    transactions seen meanwhile."""
    with port_updates(sw.ovs) as writes, controller(config) as (ctl, driver):
        wait_for(lambda: settled(ctl), 10, "second run settled")
        time.sleep(2.0)  # past the prune delay: a spurious removal would happen now
        sw.ovs.vsctl("set", "Port", "e3", "external_ids:probe=1")
        count = driver.transactions
    return writes, count


def test_restart_with_the_same_inventory_writes_nothing(
    converged: tuple[OvsSwitch, Config],
) -> None:
    sw, config = converged

    writes, transactions = quiet_rerun(sw, config)

    assert writes == ["e3"], f"the restart wrote ports {writes} (only the probe on e3 expected)"
    assert transactions == 0
    assert all(trunks(sw, p) == v for p, v in WANTED.items())


def test_restart_with_the_store_deleted_writes_nothing_and_show_is_right_again(
    converged: tuple[OvsSwitch, Config], tmp_path: Path
) -> None:
    sw, config = converged
    lose_store(tmp_path)

    writes, transactions = quiet_rerun(sw, config)

    assert writes == ["e3"], f"the restart wrote ports {writes} (only the probe on e3 expected)"
    assert transactions == 0
    with Store(config.store_url()) as store:
        iface = {d["port"]: d for d in store.show_interfaces()}
        vms = {d["name"]: d for d in store.show_vms()}
        session = store.show_sessions("inv")[0]
    assert iface["e1"]["static_vlans"] == [50]
    assert iface["e1"]["dynamic_vlans"] == [110, 120, 121]
    assert iface["e2"]["dynamic_vlans"] == [120, 121]
    assert sorted(vms) == ["app-01", "app-02", "web-01"]
    assert vms["web-01"]["attachments"] == [{"switch": "leaf1", "port": "e1"}]
    assert session["vms"] == 3


def test_after_a_lost_store_the_origin_record_still_prunes_what_vmfabric_added(
    converged: tuple[OvsSwitch, Config], tmp_path: Path
) -> None:
    sw, config = converged
    lose_store(tmp_path)
    fewer = dict(INVENTORY, vms=INVENTORY["vms"][1:])  # web-01 deleted while vmfabric was down
    (tmp_path / "inv.yaml").write_text(yaml.safe_dump(fewer))

    with controller(config) as (ctl, _):
        wait_for(lambda: settled(ctl), 10, "settled")
        wait_for(lambda: 110 not in trunks(sw, "e1"), 10, "VLAN 110 pruned from e1")

    assert trunks(sw, "e1") == {50, 120, 121}, "the static VLAN stays, only 110 goes"


def test_restart_before_the_first_snapshot_removes_nothing(
    converged: tuple[OvsSwitch, Config], tmp_path: Path
) -> None:
    sw, config = converged
    (tmp_path / "inv.yaml").write_text("vms: [unclosed\n")  # no snapshot on the next start

    with port_updates(sw.ovs) as writes, controller(config) as (ctl, driver):
        wait_for(lambda: ctl.store.show_sessions("inv")[0]["state"] == "disconnected", 10, "down")
        time.sleep(2.5)  # past the prune delay: the dynamic VLANs on the switch must stay
        sw.ovs.vsctl("set", "Port", "e3", "external_ids:probe=1")
        count = driver.transactions

    assert writes == ["e3"] and count == 0, f"wrote {writes} before the first snapshot"
    assert all(trunks(sw, p) == v for p, v in WANTED.items())

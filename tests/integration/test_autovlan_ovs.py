"""Issue "core", done-when: static inventory + real Open vSwitch, end to end.

sync puts exactly the desired VLANs on the edge ports and keeps static ones; a second sync
writes nothing (checked on OVSDB itself: the Port rows' _version does not move); the
running controller adds a moved VM's VLAN at once and prunes the old port after the prune
delay; a VLAN outside allowed_vlans never appears.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from support.controller import running_controller, wait_for
from support.controller import trunks as ovs_trunks
from support.ovs_fixtures import MakeSwitch, OvsSwitch, port_updates
from vmfabric.config import load_config
from vmfabric.runtime import sync_once
from vmfabric.store import Store

pytestmark = pytest.mark.integration

INVENTORY = {
    "hosts": [{"name": "esx1", "nics": ["vmnic0"]}, {"name": "esx2", "nics": ["vmnic0"]}],
    "portgroups": [
        {"name": "web", "vlan": 110},
        {"name": "app", "vlan": "120-121"},
        {"name": "prot", "vlan": 1001},
    ],
    "vms": [
        {"name": "web-01", "host": "esx1", "power": "on", "portgroups": ["web"]},
        {"name": "app-01", "host": "esx2", "power": "on", "portgroups": ["app"]},
        {"name": "db-01", "host": "esx2", "power": "on", "portgroups": ["prot"]},
        {"name": "off-01", "host": "esx1", "power": "off", "portgroups": ["app"]},
    ],
}


def write_config(tmp: Path, sw: OvsSwitch, prune: str = "1s") -> Path:
    (tmp / "inv.yaml").write_text(yaml.safe_dump(INVENTORY))
    cfg = {
        "store": "sqlite:///vmfabric.db",
        "engine": {"prune_delay": prune, "coalesce": "10ms"},
        "sessions": [
            {"name": "inv", "kind": "static", "path": "inv.yaml", "allowed_vlans": "2-1000"}
        ],
        "switches": [sw.config.model_dump(mode="json", exclude_none=True)],
        "links": [
            {"host": "esx1", "nic": "vmnic0", "switch": "leaf1", "port": "e1"},
            {"host": "esx2", "nic": "vmnic0", "switch": "leaf1", "port": "e2"},
        ],
    }
    path = tmp / "vmfabric.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def trunks(sw: OvsSwitch, port: str) -> set[int]:
    return ovs_trunks(sw.ovs, port)


def test_sync_puts_exactly_the_desired_vlans_and_a_second_sync_writes_nothing(
    ovs_switch: MakeSwitch, tmp_path: Path
) -> None:
    sw = ovs_switch(n=3, trunks=frozenset({4095}))
    sw.ovs.vsctl("set", "Port", "e1", "trunks=[50,4095]")  # a VLAN people configured
    config = load_config(write_config(tmp_path, sw))
    store = Store(config.store_url())

    first = sync_once(config, store, dry_run=False)

    assert first.transactions == 1
    assert trunks(sw, "e1") == {50, 110}, "web on esx1; static 50 kept; placeholder gone"
    assert trunks(sw, "e2") == {120, 121}, "app trunk range on esx2; prot 1001 not allowed"
    assert trunks(sw, "e3") == {4095}, "no host behind e3: stays closed, not open"
    with port_updates(sw.ovs) as updates:
        second = sync_once(config, store, dry_run=False)
        sw.ovs.vsctl("set", "Port", "e3", "external_ids:probe=1")  # proves the monitor sees
    assert second.planned() == [] and second.transactions == 0 and not second.applied
    assert updates == ["e3"], "a no-op sync must not write OVSDB (only the probe on e3)"
    iface = {(d["switch"], d["port"]): d for d in store.show_interfaces()}
    assert iface[("leaf1", "e1")]["static_vlans"] == [50]
    assert iface[("leaf1", "e1")]["dynamic_vlans"] == [110]


def test_dry_run_applies_nothing(ovs_switch: MakeSwitch, tmp_path: Path) -> None:
    sw = ovs_switch(n=2, trunks=frozenset({4095}))
    config = load_config(write_config(tmp_path, sw))
    result = sync_once(config, None, dry_run=True)
    assert {(c.holder, c.member) for _, c in result.planned() if c.action == "add"} == {
        ("e1", "110"), ("e2", "120"), ("e2", "121")
    }  # fmt: skip
    assert not result.applied
    assert trunks(sw, "e1") == {4095} and trunks(sw, "e2") == {4095}


def test_moved_vm_vlan_is_added_at_once_and_pruned_after_the_delay(
    ovs_switch: MakeSwitch, tmp_path: Path
) -> None:
    sw = ovs_switch(n=2, trunks=frozenset({4095}))
    sw.ovs.vsctl("set", "Port", "e2", "trunks=[60]")  # static on the destination
    path = write_config(tmp_path, sw, prune="1500ms")
    config = load_config(path)
    inv = tmp_path / "inv.yaml"

    with running_controller(config):
        wait_for(lambda: 110 in trunks(sw, "e1"), 10, "web-01's VLAN on e1")
        moved = yaml.safe_load(inv.read_text())
        moved["vms"][0]["host"] = "esx2"  # vMotion web-01 esx1 -> esx2
        inv.write_text(yaml.safe_dump(moved))
        moved_at = time.monotonic()
        wait_for(lambda: 110 in trunks(sw, "e2"), 3, "VLAN 110 added on e2")
        assert 110 in trunks(sw, "e1"), "the old port keeps it during the prune delay"
        wait_for(lambda: 110 not in trunks(sw, "e1"), 6, "VLAN 110 pruned from e1")
        assert time.monotonic() - moved_at >= 1.4, "pruned before the prune delay"
        assert 60 in trunks(sw, "e2") and 1001 not in trunks(sw, "e2")
        assert trunks(sw, "e1") == {4095}, "emptied port is closed, not open to all"


def test_a_one_shot_sync_removes_what_a_moved_vm_left_at_once(
    ovs_switch: MakeSwitch, tmp_path: Path
) -> None:
    sw = ovs_switch(n=2, trunks=frozenset({4095}))
    config = load_config(write_config(tmp_path, sw))
    sync_once(config, None, dry_run=False)
    assert 110 in trunks(sw, "e1")
    moved = yaml.safe_load((tmp_path / "inv.yaml").read_text())
    moved["vms"][0]["host"] = "esx2"  # web-01 esx1 -> esx2
    (tmp_path / "inv.yaml").write_text(yaml.safe_dump(moved))
    result = sync_once(config, None, dry_run=False)
    assert sorted((c.holder, c.action, c.member) for _, c in result.planned()) == [
        ("e1", "remove", "110"),
        ("e2", "add", "110"),
    ], "sync has no prune delay: the old port is cleared in the same run"
    assert trunks(sw, "e1") == {4095} and 110 in trunks(sw, "e2")

"""Sessions in ``mode: check`` beside an enforcing one, on a real Open vSwitch: the check
session's VLANs are recorded as a check plan, once, and never applied."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from support.controller import running_controller, trunks, wait_for
from support.ovs_fixtures import MakeSwitch
from vmfabric.config import parse_config

pytestmark = pytest.mark.integration


def inventory(path: Path, host: str, vlan: int) -> str:
    path.write_text(
        yaml.safe_dump({
            "hosts": [{"name": host, "nics": ["vmnic0"]}],
            "portgroups": [{"name": "pg", "vlan": vlan}],
            "vms": [{"name": f"vm-{vlan}", "host": host, "portgroups": ["pg"]}],
        })
    )  # fmt: skip
    return path.name


def test_check_session_is_recorded_once_and_never_applied(
    ovs_switch: MakeSwitch, tmp_path: Path
) -> None:
    sw = ovs_switch(n=2)
    config = parse_config(
        {
            "store": f"sqlite:///{tmp_path}/vf.db",
            "engine": {"prune_delay": "1s", "coalesce": "10ms"},
            "sessions": [
                {"name": "prod", "kind": "static",
                 "path": inventory(tmp_path / "prod.yaml", "esx2", 110)},
                {"name": "trial", "kind": "static", "mode": "check",
                 "path": inventory(tmp_path / "trial.yaml", "esx1", 130)},
            ],
            "switches": [sw.config.model_dump(mode="json", exclude_none=True)],
            "links": [
                {"host": "esx1", "nic": "vmnic0", "switch": "leaf1", "port": "e1"},
                {"host": "esx2", "nic": "vmnic0", "switch": "leaf1", "port": "e2"},
            ],
        },
        base_dir=tmp_path,
    )  # fmt: skip
    with running_controller(config) as ctl:
        ctl.port_reread = 0.1  # reconcile often: a repeated check plan would show
        wait_for(lambda: 110 in trunks(sw.ovs, "e2"), 10, "the enforcing session's VLAN")
        wait_for(lambda: bool(ctl.store.plans("check")), 10, "the check plan")
        time.sleep(1.0)
        plans = ctl.store.plans("check")
    assert trunks(sw.ovs, "e1") == {4095}, "a check-mode session's VLAN was applied"
    assert len(plans) == 1, "a check plan is recorded once per change, not per reconcile"
    (port,) = plans[0]["plan"]["ports"]
    assert (port["port"], port["add"]) == ("e1", [130])
    assert "check mode" in plans[0]["reason"]

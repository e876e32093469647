"""`vmfabric sync` is run's reconcile step, once: it says "applied" only for what a switch
confirmed, counts guard-held removals as held, honours approvals, and refuses to apply in
check mode. Through the real CLI against a real OVS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from support.controller import trunks as ovs_trunks
from support.ovs_fixtures import MakeSwitch, OvsSwitch
from support.setup import cli, inventory, ovs_cfg, record, rewrite, write_setup
from vmfabric.store import Store

pytestmark = pytest.mark.integration

PGS = {f"pg{v}": v for v in range(110, 116)}
LINKS = [("esx1", "leaf1", "e1")]


def trunks(sw: OvsSwitch, port: str) -> set[int]:
    return ovs_trunks(sw.ovs, port)


def sync_json(cfg: Path, *extra: str) -> dict[str, Any]:
    done = cli("sync", "--json", *extra, config=cfg)
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def test_sync_on_a_check_mode_switch_reports_nothing_applied(
    ovs_switch: MakeSwitch, tmp_path: Path
) -> None:
    sw = ovs_switch(n=1)
    config = write_setup(tmp_path, inventory([("vm110", "esx1", "pg110")], PGS),
                         [ovs_cfg(sw, mode="check")], LINKS)  # fmt: skip
    cfg = tmp_path / "vmfabric.yaml"
    out = sync_json(cfg)
    assert out["applied"] is False and out["applied_ports"] == []
    assert out["check_mode"] == ["leaf1"]
    assert [(p["port"], p["add"]) for p in out["ports"]] == [("e1", [110])]
    text = cli("sync", config=cfg)
    assert "leaf1 is in check mode: nothing applied" in text.stdout
    assert "applied: +" not in text.stdout
    assert trunks(sw, "e1") == {4095} and record(sw, "e1") == ""
    with Store(config.store_url()) as store:
        assert store.audit(10) == []
        assert [p["status"] for p in store.plans()] == ["check"]


def test_sync_holds_a_guarded_removal_and_applies_it_once_approved(
    ovs_switch: MakeSwitch, tmp_path: Path
) -> None:
    sw = ovs_switch(n=1)
    many = [(f"vm{v}", "esx1", f"pg{v}") for v in range(110, 116)]
    config = write_setup(tmp_path, inventory(many, PGS), [ovs_cfg(sw)], LINKS,
                         engine={"max_removals": 3})  # fmt: skip
    cfg = tmp_path / "vmfabric.yaml"
    first = sync_json(cfg)
    assert first["applied"] is True and trunks(sw, "e1") == set(range(110, 116))
    rewrite(tmp_path / "inv.yaml", inventory([], PGS))
    held = sync_json(cfg)
    assert held["applied"] is False, "guard-held removals must not count as applied"
    assert "max_removals=3" in held["guarded"]["leaf1"]
    assert [(p["port"], p["remove"]) for p in held["held"]] == [("e1", list(range(110, 116)))]
    assert trunks(sw, "e1") == set(range(110, 116))
    with Store(config.store_url()) as store:
        (plan,) = store.plans("held")
    again = sync_json(cfg)
    with Store(config.store_url()) as store:
        assert len(store.plans("held")) == 1, "an unchanged held plan is not saved twice"
    assert again["applied"] is False
    approved = cli("approve", str(plan["id"]), config=cfg)
    assert approved.returncode == 0, approved.stderr
    assert "no controller runs; `vmfabric sync` applies it" in approved.stdout
    done = sync_json(cfg)
    assert done["applied"] is True and trunks(sw, "e1") == {4095}
    with Store(config.store_url()) as store:
        assert store.plan(plan["id"])["status"] == "applied"  # type: ignore[index]
        removed = sorted(e["vlan"] for e in store.audit(100) if e["action"] == "remove")
    assert removed == list(range(110, 116))


def test_sync_dry_run_writes_nothing_and_says_so(ovs_switch: MakeSwitch, tmp_path: Path) -> None:
    sw = ovs_switch(n=1)
    write_setup(tmp_path, inventory([("vm110", "esx1", "pg110")], PGS), [ovs_cfg(sw)], LINKS)
    out = sync_json(tmp_path / "vmfabric.yaml", "--dry-run")
    assert out["applied"] is False and out["dry_run"] is True
    assert [(p["port"], p["add"]) for p in out["ports"]] == [("e1", [110])]
    assert trunks(sw, "e1") == {4095}

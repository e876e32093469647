"""The store's runtime-facing records: plans applied only once confirmed (begin_apply,
finish_apply, unconfirmed), expiry, approvals in the audit log, origins, switch status,
and audit entries of any target kind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.store_data import NOW, url_of
from vmfabric import views
from vmfabric.core.errors import ConfigError
from vmfabric.intents.base import Change
from vmfabric.runtime.recorder import audit_entries, plan_doc
from vmfabric.store import AuditEntry, Store

DOC = {"ports": [{"port": "p1", "add": [110, 120], "remove": [130]}]}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(url_of(tmp_path / "vmfabric.db")) as opened:
        yield opened


def vlan_entries(*vlans: int, action: str = "add") -> list[AuditEntry]:
    return [AuditEntry.switchport(NOW, "leaf1", "p1", v, action, f"why {v}", "lab") for v in vlans]


# ---- applying plans: audited only once the target confirms -------------------------------


def test_begin_apply_records_an_applying_plan_and_audits_nothing_yet(store: Store) -> None:
    plan_id = store.begin_apply("leaf1", DOC, vlan_entries(110, 120), NOW, sessions=["lab"])
    plan = store.plan_record(plan_id)
    assert plan is not None
    assert (plan.status, plan.target, plan.sessions, plan.doc) == (
        "applying", "leaf1", ("lab",), DOC,
    )  # fmt: skip
    assert list(plan.entries) == vlan_entries(110, 120)
    assert store.audit() == []
    assert store.unconfirmed("leaf1") == [(plan_id, vlan_entries(110, 120))]
    assert store.unconfirmed("leaf2") == []


def test_a_plan_stored_without_its_document_reads_as_the_document_of_its_changes(
    store: Store,
) -> None:
    """The runtime stores an applying plan's entries only (the document would write every
    reason twice more): read back, its document is what ``plan_doc`` makes of its changes,
    for every kind of member, and the entries are unchanged."""
    changes = [
        Change("p1", "all", "remove", "closed to those needed", ()),
        Change("p1", "120", "add", "VMs web-01 (port group web)", ("lab", "lab2")),
        Change("p2", "110", "add", "VMs db-01 (port group db)", ("lab",)),
        Change("p1", "130", "remove", "no powered-on VM needs it", ("lab",)),
        Change("p2", "10.0.0.1", "add", "group web", ("lab",)),  # not a VLAN: no port entry
    ]
    entries = audit_entries("switchport", "leaf1", changes, NOW)
    plan_id = store.begin_apply("leaf1", None, entries, NOW, sessions=["lab"])
    plan = store.plan_record(plan_id)
    assert plan is not None
    assert plan.doc == plan_doc("leaf1", changes)
    assert plan.doc["ports"][0]["remove"] == [0, 130]  # "all" (closing) reads as VLAN 0
    assert list(plan.entries) == entries
    assert views.plans(store, plan_id)[0]["plan"] == plan_doc("leaf1", changes)
    store.finish_apply(plan_id, entries[1:3], NOW + 1)
    assert store.plan_record(plan_id).doc == plan_doc("leaf1", changes)  # type: ignore[union-attr]
    assert [(e["member"], e["plan"]) for e in store.audit()] == [("110", plan_id), ("120", plan_id)]


def test_finish_apply_audits_what_was_confirmed_with_the_plan_id(store: Store) -> None:
    store.set_switch_status("leaf1", "ok", now=NOW, driver="ovs")
    plan_id = store.begin_apply("leaf1", DOC, vlan_entries(110, 120), NOW)
    store.finish_apply(plan_id, vlan_entries(110), NOW + 2)
    [entry] = views.audit(store)
    assert (entry["vlan"], entry["plan"], entry["action"], entry["session"]) == (
        110, plan_id, "add", "lab",
    )  # fmt: skip
    assert views.plans(store, plan_id)[0]["status"] == "applied"
    assert store.unconfirmed("leaf1") == []
    assert views.switches(store)[0]["last_apply"] == "2023-11-14T22:13:22Z"


def test_a_plan_nothing_of_which_was_confirmed_failed(store: Store) -> None:
    plan_id = store.begin_apply("leaf1", DOC, vlan_entries(110), NOW)
    store.finish_apply(plan_id, [], NOW + 1)
    assert views.plans(store, plan_id)[0]["status"] == "failed"
    assert store.audit() == []
    with pytest.raises(ValueError, match=f"plan {plan_id} is not applying"):
        store.finish_apply(plan_id, vlan_entries(110), NOW + 2)
    assert store.audit() == [], "a finished plan is not finished twice"
    with pytest.raises(ValueError, match="no such plan"):
        store.finish_apply(999, [], NOW)


def test_finish_apply_writes_origins_in_the_same_transaction(store: Store) -> None:
    store.set_origins("fw1", "db_v4", ["10.0.0.9"])
    entries = [AuditEntry(NOW, "addrset", "fw1", "web_v4", "10.0.0.1", "add", "group web")]
    plan_id = store.begin_apply("fw1", {"holders": ["web_v4"]}, entries, NOW)
    store.finish_apply(plan_id, entries, NOW, origins={"web_v4": {"10.0.0.1", "10.0.0.2"}})
    assert store.origins("fw1") == {
        "db_v4": frozenset({"10.0.0.9"}),
        "web_v4": frozenset({"10.0.0.1", "10.0.0.2"}),
    }
    [entry] = views.audit(store)
    keys = ("kind", "target", "holder", "member", "plan")
    assert {k: v for k, v in entry.items() if k in keys} == {
        "kind": "addrset", "target": "fw1", "holder": "web_v4", "member": "10.0.0.1",
        "plan": plan_id,
    }  # fmt: skip
    assert "vlan" not in entry and "switch" not in entry


def test_a_failing_finish_apply_changes_nothing(store: Store) -> None:
    """Audit entries, plan status and origins commit together or not at all."""
    plan_id = store.begin_apply("leaf1", DOC, vlan_entries(110), NOW)
    bad_origins: Any = {None: {"110"}}  # a holder must be named: the insert fails
    with pytest.raises(Exception, match="NOT NULL"):
        store.finish_apply(plan_id, vlan_entries(110), NOW, origins=bad_origins)
    assert store.audit() == []
    assert store.unconfirmed("leaf1") == [(plan_id, vlan_entries(110))]


def test_unconfirmed_lists_only_applying_plans_oldest_first(store: Store) -> None:
    first = store.begin_apply("leaf1", DOC, vlan_entries(110), NOW)
    second = store.begin_apply("leaf1", DOC, vlan_entries(120), NOW + 1)
    done = store.begin_apply("leaf1", DOC, vlan_entries(130), NOW + 2)
    store.finish_apply(done, vlan_entries(130), NOW + 3)
    store.save_plan("leaf1", "held", DOC, "guard", NOW)
    assert [i for i, _ in store.unconfirmed("leaf1")] == [first, second]


# ---- held plans: expiry and approval -----------------------------------------------------


def test_held_plans_no_longer_planned_expire(store: Store) -> None:
    old = store.save_plan("leaf1", "held", DOC, "guard", NOW)
    kept = store.save_plan("leaf1", "held", DOC, "guard", NOW + 1)
    other = store.save_plan("leaf2", "held", DOC, "guard", NOW)
    check = store.save_plan("leaf1", "check", DOC, "check mode", NOW)
    assert store.expire_plans("leaf1", [kept], NOW + 5) == [old]
    status = {p["id"]: p["status"] for p in views.plans(store)}
    assert status == {old: "expired", kept: "held", other: "held", check: "check"}
    assert views.plans(store, old)[0]["updated"] == "2023-11-14T22:13:25Z"
    assert store.expire_plans("leaf1", [kept], NOW + 6) == []


def test_an_approval_is_audited(store: Store) -> None:
    plan_id = store.save_plan("leaf1", "held", DOC, "removes 60%", NOW, sessions=["lab"])
    store.approve_plan(plan_id, NOW + 4)
    [entry] = views.audit(store)
    assert {k: v for k, v in entry.items() if k != "id"} == {
        "time": "2023-11-14T22:13:24.000Z", "kind": "approval", "target": "leaf1",
        "holder": "", "member": str(plan_id), "action": "approve",
        "reason": "approved: removes 60%", "session": "lab", "plan": plan_id,
    }  # fmt: skip
    with pytest.raises(ConfigError, match=f"plan {plan_id} is approved, not held"):
        store.approve_plan(plan_id, NOW + 5)
    assert len(store.audit()) == 1


def test_held_plans_are_listed_under_their_own_sessions(store: Store) -> None:
    for name in ("lab", "dev"):
        store.set_session(name, "static", "", True, frozenset({1}), "enforce")
    mine = store.save_plan("leaf1", "held", {}, "guard", NOW, sessions=["lab"])
    anyone = store.save_plan("leaf2", "held", {}, "guard", NOW)
    store.save_plan("leaf3", "check", {}, "check", NOW, sessions=["lab"])
    held = {s["name"]: s["held_plans"] for s in views.sessions(store)}
    assert held == {"dev": [anyone], "lab": [mine, anyone]}
    assert {s["name"]: s["held_plans"] for s in views.switches(store)} == {}


# ---- origins and switch status -----------------------------------------------------------


def test_set_origins_replaces_one_holders_record(store: Store) -> None:
    store.set_origins("leaf9", "p1", ["110", "120"])
    store.set_origins("leaf9", "p2", ["130"])
    store.set_origins("leaf9", "p1", {"120", "140"})
    store.set_origins("leaf9", "p2", [])
    assert store.origins("leaf9") == {"p1": frozenset({"120", "140"})}
    assert store.origins("other") == {}


def test_switch_status_keeps_what_is_not_given(store: Store) -> None:
    store.set_switch_status("leaf1", "ok", now=NOW, driver="ovs", last_apply=NOW, pending=3)
    store.set_switch_status("leaf1", "unreachable", "timed out\nafter 5s", now=NOW + 1)
    store.set_switch_status("leaf0", "error", "bridge br0 is gone", now=NOW)
    store.save_plan("leaf1", "held", DOC, "guard", NOW)
    assert views.switches(store) == [
        {"name": "leaf0", "driver": "", "state": "error", "last_error": "bridge br0 is gone",
         "last_apply": None, "pending": None, "held_plans": [],
         "updated": "2023-11-14T22:13:20Z"},
        {"name": "leaf1", "driver": "ovs", "state": "unreachable",
         "last_error": "timed out after 5s", "last_apply": "2023-11-14T22:13:20Z",
         "pending": 3, "held_plans": [1], "updated": "2023-11-14T22:13:21Z"},
    ]  # fmt: skip
    store.set_switch_status("leaf1", "ok", now=NOW + 2, pending=0)
    assert (views.switches(store)[1]["pending"], views.switches(store)[1]["last_error"]) == (
        0,
        None,
    )
    with pytest.raises(ValueError, match="switch state"):
        store.set_switch_status("leaf1", "fine", now=NOW)


# ---- audit entries of any kind -----------------------------------------------------------


def test_audit_entries_round_trip_newest_first(store: Store) -> None:
    entries = [
        AuditEntry.switchport(NOW + i, f"leaf{i % 2}", "p1", 100 + i, "add", "vm web-01", "lab")
        for i in range(5)
    ]
    vtep = AuditEntry(NOW + 9, "vtep", "leaf1", "vni-5000", "192.0.2.7", "add", plan=None)
    store.record_audit([*entries, vtep])
    store.record_audit([])
    latest = views.audit(store, 3)
    assert [e["member"] for e in latest] == ["192.0.2.7", "104", "103"]
    assert set(latest[0]) == {"id", "time", "kind", "target", "holder", "member", "action",
                              "reason", "session", "plan"}  # fmt: skip
    assert latest[1]["vlan"] == 104 and latest[1]["switch"] == "leaf0"
    assert [e["member"] for e in views.audit(store, switch="leaf1")] == ["192.0.2.7", "103", "101"]
    raw = store.audit(2)
    assert raw[1] == {"id": 5, "time": NOW + 4, "kind": "switchport", "target": "leaf0",
                      "holder": "p1", "member": "104", "action": "add", "reason": "vm web-01",
                      "session": "lab", "plan": None, "switch": "leaf0", "port": "p1",
                      "vlan": 104}  # fmt: skip
    assert entries[0].vlan == 100 and vtep.vlan is None

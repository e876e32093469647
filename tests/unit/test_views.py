"""The typed read views: every document has exactly its model's keys (the JSON contract
of docs/json.md), times are ISO 8601 everywhere, and each view answers what ``show`` asks
(filters, switch state, plans' ports and VLANs, VM addresses and tags)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.store_data import ALL, NOW, fill, port_states, url_of
from vmfabric import views
from vmfabric.core.errors import ConfigError
from vmfabric.core.model import PortMode, PortState
from vmfabric.store import AuditEntry, Store
from vmfabric.views import common, doc
from vmfabric.views.common import natural

ROOT = Path(__file__).resolve().parents[2]
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$")
TIME_KEYS = {"time", "created", "updated", "last_update", "last_apply"}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(url_of(tmp_path / "vmfabric.db")) as opened:
        yield opened


def full(store: Store) -> None:
    """Every table has rows: inventory, ports, a switch, plans and audit entries."""
    fill(store)
    store.set_port_states(port_states(), NOW)
    store.set_switch_status("leaf1", "unreachable", "timed out", now=NOW, driver="ovs")
    held = store.save_plan(
        "leaf1",
        "held",
        {"ports": [{"port": "p1", "add": [130], "remove": [110, 120]}]},
        "guard",
        NOW,
        sessions=["lab"],
    )
    store.approve_plan(held, NOW + 1)
    plan_id = store.begin_apply("leaf1", {"ports": []}, [], NOW + 2)
    entries = [AuditEntry.switchport(NOW + 2, "leaf1", "p1", 110, "add", "web-01", "lab")]
    store.finish_apply(plan_id, entries, NOW + 3)


def every_view(store: Store) -> dict[str, list[Any]]:
    return {
        "SessionView": views.sessions(store),
        "SessionAutovlanView": [views.session_autovlan(store, "lab")],
        "VmView": views.vms(store) + views.vms(store, detail=True),
        "HostView": views.hosts(store),
        "InterfaceView": views.interfaces(store),
        "VlanView": views.vlans(store),
        "SwitchView": views.switches(store),
        "PlanView": views.plans(store),
        "AuditView": views.audit(store),
    }


def check_keys(document: Mapping[str, Any], model: type[Any]) -> None:
    """``document`` has every required key of ``model``, no other key, recursively."""
    found = {key: (hint, optional) for key, hint, _, optional in doc.fields(model)}
    required = {key for key, (_, optional) in found.items() if not optional}
    assert required <= set(document) <= set(found), (model.__name__, sorted(document))
    for key, value in document.items():
        check_value(value, found[key][0])


def check_value(value: Any, hint: Any) -> None:
    if isinstance(value, dict) and doc.type_name(hint).startswith("["):
        check_keys(value, next(t for t in [hint, *get_args(hint)] if isinstance(t, type)))
    elif isinstance(value, list) and get_origin(hint) is list:
        for item in value:
            check_value(item, get_args(hint)[0])


def test_every_view_document_has_exactly_its_models_keys(store: Store) -> None:
    full(store)
    for name, documents in every_view(store).items():
        assert documents, f"{name}: nothing to check"
        for document in documents:
            check_keys(document, getattr(views, name))


def test_times_are_iso_8601_utc_in_every_view(store: Store) -> None:
    full(store)
    seen = 0

    def walk(value: Any) -> None:
        nonlocal seen
        if isinstance(value, dict):
            for key, inner in value.items():
                if key in TIME_KEYS and inner is not None:
                    assert isinstance(inner, str) and ISO.match(inner), (key, inner)
                    seen += 1
                walk(inner)
        elif isinstance(value, list):
            for inner in value:
                walk(inner)

    walk(every_view(store))
    assert seen >= 8


def test_every_model_example_has_its_models_keys() -> None:
    for view in doc.VIEWS:
        check_keys(doc.example(view.model), view.model)


def test_docs_json_md_is_what_the_views_generate() -> None:
    """Fails when a model changes without `python -m vmfabric.views.doc > docs/json.md`."""
    written = (ROOT / "docs" / "json.md").read_text(encoding="utf-8")
    assert written == doc.render()


def test_the_readme_points_to_the_json_contract() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(docs/json.md)" in readme
    assert "keys listed in DESIGN.md" not in readme  # DESIGN.md is not in the repository


def test_doc_names_types_in_words() -> None:
    hints = get_type_hints(views.VmView, include_extras=True)
    assert doc.type_name(doc.fields(views.VmView).__next__()[1]) == "string"
    assert doc.type_name(doc._unwrap(hints["networks"])[0]) == "list of [NetworkRef](#networkref)"
    assert doc.type_name(str | None) == "string or null"
    assert doc.type_name(dict[str, str]) == "object (string to string)"


# ---- show session / vm / host ------------------------------------------------------------


def test_session_view_round_trip(store: Store) -> None:
    fill(store)
    store.set_session_status(
        "lab", "disconnected", in_sync=False, error="connection\nrefused", version="8.0",
        warnings=["no DVS members"], now=NOW + 5,
    )  # fmt: skip
    assert views.sessions(store, "lab") == [
        {"name": "lab", "kind": "static", "url": "file:lab.yaml", "state": "disconnected",
         "hosts": 2, "vms": 4, "autovlan": True, "allowed_vlans": "1-4094",
         "last_update": "2023-11-14T22:13:25Z", "last_error": "connection refused",
         "in_sync": False, "version": "8.0", "mode": "enforce", "warnings": ["no DVS members"],
         "held_plans": []}
    ]  # fmt: skip


def test_vm_view_networks_attachments_and_carriage(store: Store) -> None:
    fill(store)
    rows = {v["name"]: v for v in views.vms(store)}
    web = rows["web-01"]
    assert web["networks"] == [{"portgroup": "web", "vlan": 110}, {"portgroup": "db", "vlan": 120}]
    assert web["attachments"] == [
        {"switch": "leaf1", "port": "p1"},
        {"switch": "leaf1", "port": "p2"},
    ]
    assert (web["carriage"], web["power_state"], web["id"]) == ("vswitch", "poweredOn", "vm-1")
    trunker = rows["trunker"]
    assert [n["vlan"] for n in trunker["networks"]] == ["200-205", None]  # "ghost" is unknown
    assert trunker["attachments"] == [{"switch": "leaf1", "port": "p1"}]
    assert rows["loose-01"]["carriage"] == "all-uplinks"  # its port group names no vswitch
    assert len(rows["loose-01"]["attachments"]) == 2
    web2 = rows["web-02"]
    assert web2["networks"][1] == {"portgroup": "untagged", "vlan": None}
    assert (web2["attachments"], web2["carriage"]) == (
        [{"switch": "leaf2", "port": "p10"}],
        "all-uplinks",
    )  # esx02 lists no vswitch NICs


def test_vm_view_shows_addresses_and_tags_and_detail_everything(store: Store) -> None:
    fill(store)
    [web] = views.vms(store, "web-01")
    assert (web["ips"], web["tags"]) == (["10.0.110.11", "2001:db8::11"], ["env:prod", "tier:web"])
    assert "macs" not in web
    [detail] = views.vms(store, "web-01", detail=True)
    keys = ("macs", "attributes", "guest_os", "folder", "cluster")
    assert {k: v for k, v in detail.items() if k in keys} == {
        "macs": ["00:50:56:aa:bb:01"], "attributes": {"owner": "team-a", "ticket": "CHG-1"},
        "guest_os": "ubuntu64Guest", "folder": "/dc1/vm/web", "cluster": "prod",
    }  # fmt: skip
    assert views.vms(store, "web-02")[0]["ips"] == []


def test_vm_view_by_name_and_in_natural_order(store: Store) -> None:
    fill(store, "b")
    fill(store, "a")
    assert [(v["name"], v["session"]) for v in views.vms(store, "web-01")] == [
        ("web-01", "a"),
        ("web-01", "b"),
    ]
    assert views.vms(store, "absent") == []
    assert [v["name"] for v in views.vms(store)][::2] == ["loose-01", "trunker", "web-01", "web-02"]


def test_host_view_uplinks_and_unmatched_neighbours(store: Store) -> None:
    fill(store)
    hosts = views.hosts(store)
    assert [h["name"] for h in hosts] == ["esx01", "esx02"]
    esx = hosts[0]
    assert esx["vms"] == 3
    assert [(n["nic"], n["system_name"], n["matched"]) for n in esx["neighbors"]] == [
        ("vmnic0", "leaf1", True),
        ("vmnic1", "leaf1", True),
        ("vmnic2", "mystery", False),
    ]
    assert esx["uplinks"][1] == {
        "nic": "vmnic1",
        "switch": "leaf1",
        "port": "p2",
        "source": "static",
    }


def test_session_autovlan_lists_what_powered_on_vms_account_for(store: Store) -> None:
    fill(store)
    store.set_session("lab", "static", "", True, frozenset(range(1, 200)), "enforce")
    every = frozenset({110, 130, 200, 300})
    store.set_port_states(
        [
            PortState("leaf1", "p1", PortMode.TRUNK, every, every),
            PortState("leaf1", "p2", PortMode.TRUNK, frozenset({120, 130}), frozenset({130})),
            PortState("leaf2", "p10", PortMode.TRUNK, frozenset({110}), frozenset({110})),
        ],
        NOW,
    )
    # 200 is outside allowed_vlans, 300 no VM's, leaf2 p10 only a powered-off VM's,
    # 120 on p2 is static
    assert views.session_autovlan(store, "lab") == {
        "name": "lab",
        "allowed_vlans": "1-199",
        "provisioned": [
            {"switch": "leaf1", "port": "p1", "vlans": [110, 130]},
            {"switch": "leaf1", "port": "p2", "vlans": [130]},
        ],
    }
    store.set_session("lab", "static", "", False, ALL, "enforce")
    assert views.session_autovlan(store, "lab")["provisioned"] == []
    with pytest.raises(ConfigError, match="no session named 'nope'"):
        views.session_autovlan(store, "nope")


# ---- show interface / vlan / switch ------------------------------------------------------


def test_interface_view_hosts_vlans_and_switch_state(store: Store) -> None:
    fill(store)
    store.set_port_states(port_states()[:3], NOW)
    store.set_switch_status("leaf1", "unreachable", "timed out", now=NOW)
    rows = views.interfaces(store)
    assert [(r["switch"], r["port"]) for r in rows] == [
        ("leaf1", "p1"), ("leaf1", "p2"), ("leaf1", "p11"), ("leaf2", "p10"),
    ]  # fmt: skip
    assert rows[0] == {
        "switch": "leaf1", "port": "p1", "hosts": ["esx01"], "vlans": [1, 110, 200],
        "dynamic_vlans": [110], "static_vlans": [1, 200], "mode": "trunk",
        "switch_state": "unreachable",
    }  # fmt: skip
    assert (rows[2]["hosts"], rows[3]["hosts"], rows[3]["mode"]) == ([], ["esx02"], None)
    assert rows[3]["switch_state"] is None  # leaf2 has no recorded state


def test_interface_view_of_one_port(store: Store) -> None:
    fill(store)
    store.set_port_states(port_states(), NOW)
    assert [(r["switch"], r["port"]) for r in views.interfaces(store, "p1")] == [("leaf1", "p1")]
    assert [r["port"] for r in views.interfaces(store, "leaf2:p10")] == ["p10"]
    assert views.interfaces(store, "leaf1:p10") == []
    assert views.interfaces(store, "nope") == []


def test_vlan_view_rows_one_vlan_and_dynamic_only(store: Store) -> None:
    store.set_port_states(port_states(), NOW)
    rows = {(r["switch"], r["vlan"]): r for r in views.vlans(store)}
    assert rows[("leaf1", 110)]["ports"] == ["p1", "p11"]
    assert rows[("leaf1", 110)]["dynamic"] is True
    assert rows[("leaf1", 1)]["dynamic"] is False
    assert list(rows) == sorted(rows)
    assert [(r["switch"], r["vlan"], r["ports"]) for r in views.vlans(store, dynamic=True)] == [
        ("leaf1", 110, ["p1"]),
        ("leaf1", 120, ["p2"]),
    ]
    assert [r["ports"] for r in views.vlans(store, 110)] == [["p1", "p11"]]
    assert views.vlans(store, 999) == []


# ---- show plan / audit -------------------------------------------------------------------


def test_plan_view_lifts_ports_and_vlans_out_of_the_plan(store: Store) -> None:
    full(store)
    [held] = views.plans(store, 1)
    assert (held["switch"], held["status"], held["sessions"]) == ("leaf1", "approved", ["lab"])
    assert held["ports"] == [{"port": "p1", "add": [130], "remove": [110, 120]}]
    assert held["vlans"] == [110, 120, 130]
    assert (held["created"], held["updated"]) == ("2023-11-14T22:13:20Z", "2023-11-14T22:13:21Z")
    assert [p["id"] for p in views.plans(store, status="applied")] == [2]
    assert views.plans(store, 1, status="held") == []
    assert views.plans(store, 42) == []


def test_plan_view_of_a_document_without_ports(store: Store) -> None:
    store.save_plan("fw1", "check", {"holders": {"web_v4": ["10.0.0.1"]}}, "check", NOW)
    [plan] = views.plans(store)
    assert (plan["ports"], plan["vlans"], plan["plan"]) == (
        [], [], {"holders": {"web_v4": ["10.0.0.1"]}},
    )  # fmt: skip


def test_audit_view_of_switch_ports_keeps_switch_port_vlan(store: Store) -> None:
    full(store)
    entries = views.audit(store, 10)
    assert [e["kind"] for e in entries] == ["switchport", "approval"]
    port = entries[0]
    keys = ("switch", "port", "vlan", "action", "plan")
    assert {k: v for k, v in port.items() if k in keys} == {
        "switch": "leaf1", "port": "p1", "vlan": 110, "action": "add", "plan": 2,
    }  # fmt: skip
    assert port["time"] == "2023-11-14T22:13:22.000Z"
    assert "vlan" not in entries[1]
    assert json.loads(json.dumps(entries)) == entries


@given(st.text(alphabet="ab-.0123456789٣", max_size=12))
def test_natural_order_keys_equal_the_digit_run_rule(text: str) -> None:
    """The fast path (digits only at the end) gives the key every digit run gets."""
    assert natural(text) == re.sub(r"\d+", common._pad, text)


def test_natural_order_puts_numbers_in_numeric_order() -> None:
    names = ["vm10", "vm2", "vm1a", "web-01", "web-1", "a10b2", "a9b3", "p"]
    assert sorted(names, key=natural) == [
        "a9b3", "a10b2", "p", "vm1a", "vm2", "vm10", "web-01", "web-1",
    ]  # fmt: skip

"""``show group`` and ``show policy`` read the config and the store's inventory, with the
controller's own engine; ``--json`` keys are the contract of DESIGN.md."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

import vmfabric.cli.groups  # noqa: F401 (registers show group|policy)
from vmfabric.cli.show import app
from vmfabric.core.model import Host, Power, Vm
from vmfabric.store import Store

CONFIG = """\
store: sqlite:///vmfabric.db
sessions: [{name: inv, kind: static, path: inventory.yaml}]
groups:
  - {name: web, match: {name: "web-*"}}
  - {name: db, match: {name: "db-*"}, addresses: [10.9.0.0/24]}
policies:
  - {name: web-to-db, source: web, destination: db, service: tcp/5432, action: allow}
  - {name: default, source: any, destination: [web, db], action: drop}
firewalls: [{name: fw1, kind: nftables}]
"""


def setup(tmp_path: Path) -> Path:
    path = tmp_path / "vmfabric.yaml"
    path.write_text(CONFIG)
    store = Store(f"sqlite:///{tmp_path}/vmfabric.db")
    vms = [
        Vm("inv", "web-01", "web-01", "esx1", Power.ON),
        Vm("inv", "web-02", "web-02", "esx1", Power.OFF),
        Vm("inv", "db-01", "db-01", "esx2", Power.ON),
    ]
    store.set_session("inv", "static", "inventory.yaml", True, frozenset({10}), "enforce")
    store.replace_inventory("inv", [Host("inv", "esx1"), Host("inv", "esx2")], [], vms, 1.0)
    store.close()
    return path


def test_show_group_json_lists_members_addresses_and_why(tmp_path: Path) -> None:
    path = setup(tmp_path)
    result = CliRunner().invoke(app, ["group", "--json", "-c", str(path)])
    assert result.exit_code == 0, result.output
    data = {d["name"]: d for d in json.loads(result.output)}
    assert [m["vm"] for m in data["web"]["members"]] == ["web-01", "web-02"]
    assert data["web"]["members"][0]["why"] == "name web-*"
    assert data["db"]["addresses"] == ["10.9.0.0/24"]
    assert set(data["db"]) >= {"name", "members", "addresses"}
    assert data["web"]["warnings"][0].startswith("VM web-01 has no known address")


def test_show_group_names_one_group_and_refuses_unknown_ones(tmp_path: Path) -> None:
    path = setup(tmp_path)
    result = CliRunner().invoke(app, ["group", "db", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert "Group db: 1 VMs" in result.output
    assert "Group web" not in result.output
    bad = CliRunner().invoke(app, ["group", "nope", "-c", str(path)])
    assert bad.exit_code == 2


def test_show_policy_json_has_rules_in_order_with_member_counts(tmp_path: Path) -> None:
    path = setup(tmp_path)
    result = CliRunner().invoke(app, ["policy", "--json", "-c", str(path)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [d["name"] for d in data] == ["web-to-db", "default"]
    assert data[0]["source"] == [{"group": "web", "members": 2, "addresses": 0}]
    assert data[1]["source"] == [{"group": "any", "members": None, "addresses": None}]
    assert data[0]["service"] == ["tcp/5432"]
    assert data[0]["firewalls"] == ["fw1"]

"""The NX-OS driver's parsers against recorded output of real Nexus switches (public
captures, sources in tests/data/recorded/SOURCES.md): ``show vlan brief`` as NX-API JSON
(napalm), and the text of ``show interface switchport`` and ``show interface
description`` (ntc-templates), whose values NX-API's JSON carries in the fields the
driver reads. No switch and no peer: replays only."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from vmfabric.core.errors import PermanentError
from vmfabric.core.model import PortMode
from vmfabric.targets.switchport.nxos import canonical, parse_view, results, rows
from vmfabric.targets.switchport.trunkcli import join_description, split_description

pytestmark = pytest.mark.recorded
DATA = Path(__file__).resolve().parents[1] / "data" / "recorded" / "nxos"


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("name", "count", "vlan", "vlan_name"),
    [
        ("show_vlan_brief.json", 32, 161, "Vlan161"),
        ("show_vlan_brief_6000.json", 2, 230, "database"),  # ids as numbers, not strings
        ("show_vlan_brief_no_ports.json", 32, 1, "default"),
    ],
)
def test_recorded_show_vlan_brief_gives_the_vlan_database(
    name: str, count: int, vlan: int, vlan_name: str
) -> None:
    view = parse_view(None, None, load(name))
    assert len(view.vlans) == count
    assert view.vlans[vlan] == vlan_name


def _switchport_rows(text: str) -> list[dict[str, str]]:
    """The recorded text's values under the NX-API field names the driver reads."""
    out = []
    for block in re.split(r"^Name: ", text, flags=re.M)[1:]:
        name = block.split()[0]
        mode = re.search(r"Operational Mode: (\S+)", block)
        access = re.search(r"Access Mode VLAN: (\d+)", block)
        trunk = re.search(r"Trunking VLANs Allowed: (\S+)", block)
        assert mode and access and trunk, block
        out.append({"interface": name, "switchport": "Enabled", "oper_mode": mode.group(1),
                    "access_vlan": access.group(1), "trunk_vlans": trunk.group(1)})  # fmt: skip
    return out


def test_recorded_switchport_values_read_as_access_and_trunk_ports() -> None:
    found = _switchport_rows((DATA / "show_interface_switchport.raw").read_text())
    body = {"TABLE_interface": {"ROW_interface": found}}
    view = parse_view(body, {"TABLE_interface": {"ROW_interface": []}}, None)
    e1, e2, e3 = (view.state("s", f"Ethernet1/{i}") for i in (1, 2, 3))
    assert (e1.mode, e1.vlans) == (PortMode.ACCESS, frozenset({1}))
    assert e2.mode is PortMode.TRUNK
    assert e2.vlans == {30, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 67, 220, 270}
    assert (e3.mode, e3.vlans) == (PortMode.ACCESS, frozenset({20}))
    found[0]["oper_mode"] = "trunk"  # a trunk allowing 1-4094 carries every VLAN: open
    assert parse_view({"TABLE_interface": {"ROW_interface": found[0]}}, None, None).state(
        "s", "Ethernet1/1").mode is PortMode.OPEN  # fmt: skip


def test_recorded_descriptions_and_interface_names() -> None:
    parsed = yaml.safe_load((DATA / "show_interface_description.yml").read_text())
    entries = [{"interface": r["port"], "desc": r["description"]} for r in parsed["parsed_sample"]]
    raw = (DATA / "show_interface_description.raw").read_text()
    assert all(e["interface"] in raw for e in entries)
    view = parse_view(None, {"TABLE_interface": {"ROW_interface": entries}}, None)
    assert "Ethernet4/1" in view.descriptions and view.descriptions["Ethernet4/1"] == ""
    assert view.descriptions["Ethernet4/3"] == "This is a test description"
    for entry in entries:
        text = "" if entry["desc"] == "--" else entry["desc"]
        assert split_description(text) == (text, frozenset())
        assert split_description(join_description(text, {110}))[1] == {110}
    assert canonical("Eth4/1") == "Ethernet4/1" and canonical("mgmt0") == "mgmt0"
    assert canonical("Po10") == "port-channel10" and canonical("Port-Channel10") == "port-channel10"


def test_single_rows_come_as_objects_and_errors_name_the_command() -> None:
    assert rows({"TABLE_x": {"ROW_x": {"a": 1}}}, "TABLE_x", "ROW_x") == [{"a": 1}]
    assert rows({}, "TABLE_x", "ROW_x") == []
    error = {"code": -32602, "message": "Invalid params",
             "data": {"msg": "% Invalid command at '^' marker.\n"}}  # fmt: skip
    answer = [
        {"jsonrpc": "2.0", "result": None, "id": 1},
        {"jsonrpc": "2.0", "id": 2, "error": error},
    ]
    with pytest.raises(PermanentError, match=r"refused 'bogus': % Invalid command at '\^' marker"):
        results("s", ["interface Ethernet1/1", "bogus"], answer)
    assert results("s", ["show x"], {"jsonrpc": "2.0", "result": {"body": {"k": 1}}, "id": 1}) == [
        {"k": 1}
    ]

"""The cli driver's platform files: every shipped one validates and reads its own kind of
output; a platform file of one's own works; a bad one is one line of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmfabric.core.errors import ConfigError
from vmfabric.core.model import PortMode
from vmfabric.targets.switchport.base import PortWrite
from vmfabric.targets.switchport.cli import (
    ALL,
    CliPort,
    load_platform,
    parse_port,
    parse_vlan_list,
    render,
    shipped_platforms,
    undo_lines,
)

TRUNK = "switchport mode trunk"
ALLOWED = "switchport trunk allowed vlan 10,20"
DESCR = "description esx01 [vmfabric:20]"
RUNNING = {  # each platform's own way of showing a trunk with two VLANs and a description
    "cisco_ios": ["interface Gi0/1", f" {DESCR}", f" {ALLOWED}", f" {TRUNK}", "end"],
    "cisco_nxos": ["interface Ethernet1/1", f"  {DESCR}", "  switchport", f"  {TRUNK}",
                   f"  {ALLOWED}"],
    "arista_eos": ["interface Ethernet1", f"   {DESCR}", f"   {ALLOWED}", f"   {TRUNK}"],
    "dell_os10": [
        "interface ethernet1/1/1", ' description "esx01 [vmfabric:20]"', " no shutdown",
        f" {TRUNK}", f" {ALLOWED}",
    ],
}  # fmt: skip


def test_the_four_platforms_ship() -> None:
    assert set(shipped_platforms()) >= {"cisco_ios", "cisco_nxos", "arista_eos", "dell_os10"}


@pytest.mark.parametrize("name", sorted(RUNNING))
def test_each_platform_reads_a_trunk_and_its_record(name: str) -> None:
    port = parse_port("\n".join(RUNNING[name]), load_platform(name))
    assert port.mode is PortMode.TRUNK
    assert port.vlans == {10, 20}
    assert port.description == "esx01 [vmfabric:20]"


def test_long_ios_lists_continue_with_add_lines_and_all_is_open() -> None:
    ios = load_platform("cisco_ios")
    text = f" {TRUNK}\n {ALLOWED[:-5]}1-5,7\n {ALLOWED[:-5]}add 900-902\n"
    assert parse_port(text, ios).vlans == {1, 2, 3, 4, 5, 7, 900, 901, 902}
    assert parse_port(" switchport mode trunk\n", ios).mode is PortMode.OPEN
    assert (
        parse_port(" switchport mode trunk\n switchport trunk allowed vlan none\n", ios).vlans
        == frozenset()
    )
    assert parse_vlan_list("ALL", ios) == ALL and parse_vlan_list("1-4094", ios) == ALL


def test_os10_trunk_without_a_list_carries_none_and_access_is_never_a_trunk() -> None:
    os10 = load_platform("dell_os10")
    assert parse_port(" switchport mode trunk\n", os10) == CliPort(PortMode.TRUNK, frozenset())
    access = parse_port(" switchport access vlan 30\n", os10)
    assert access.mode is PortMode.ACCESS and access.vlans == {30}


def test_os10_adds_with_the_plain_command_and_removes_with_no() -> None:
    os10 = load_platform("dell_os10")
    block = render(
        [PortWrite("ethernet1/1/1", add=frozenset({110}), remove=frozenset({20}))],
        {"ethernet1/1/1": CliPort(PortMode.TRUNK, frozenset({10, 20}))}, {110: "x"}, os10,
    )  # fmt: skip
    assert block.texts() == [
        "interface ethernet1/1/1", "switchport trunk allowed vlan 110",
        "no switchport trunk allowed vlan 20", "exit",
    ]  # fmt: skip


def test_every_line_carries_its_undo_in_its_interface() -> None:
    ios = load_platform("cisco_ios")
    block = render(
        [PortWrite("Gi0/1", add=frozenset({110}), record=frozenset({110}))],
        {"Gi0/1": CliPort(PortMode.TRUNK, frozenset({10}), "esx01")}, {}, ios,
    )  # fmt: skip
    assert block.texts() == [
        "vlan 110", "name vmfabric-110", "exit", "interface Gi0/1",
        "switchport trunk allowed vlan add 110", "description esx01 [vmfabric:110]", "exit",
    ]  # fmt: skip
    assert undo_lines(block.lines, ios) == [
        "interface Gi0/1", "description esx01", "switchport trunk allowed vlan remove 110",
        "exit", "no vlan 110",
    ]  # fmt: skip


def test_a_platform_file_of_ones_own_and_a_bad_one(tmp_path: Path) -> None:
    own = tmp_path / "mine.yaml"
    own.write_text(load_platform("cisco_ios").model_dump_json())
    assert load_platform("mine", own).name == "cisco_ios"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nprompts: {}\n")
    with pytest.raises(ConfigError, match=r"platform file .*bad\.yaml") as raised:
        load_platform("bad", bad)
    assert "\n" not in str(raised.value)

"""The EOS driver's parsers against recorded output of real Arista switches (public
captures, sources in tests/data/recorded/SOURCES.md), plus the pure rules they feed: the
allowed-VLAN grammar, the description record, VLAN-database bookkeeping and the commands
of a plan. No switch and no peer: replays and pure functions only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from vmfabric.core.model import PortChange, PortMode, PortState
from vmfabric.targets.switchport.base import plan_write
from vmfabric.targets.switchport.eos import canonical, parse_view
from vmfabric.targets.switchport.trunkcli import (
    RawSwitchport,
    SwitchView,
    join_description,
    parse_allowed,
    plan_commands,
    split_description,
)

pytestmark = pytest.mark.recorded
DATA = Path(__file__).resolve().parents[1] / "data" / "recorded" / "eos"


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


def test_recorded_show_vlan_gives_the_vlan_database_with_its_names() -> None:
    view = parse_view({}, {}, load("show_vlan.json"))
    assert len(view.vlans) == 20
    assert view.vlans[1] == "default"
    assert view.vlans[10] == "VLAN0010" and view.vlans[1000] == "VLAN1000"
    assert not any(name.startswith("vmfabric-") for name in view.vlans.values())


def test_recorded_interface_names_are_already_in_canonical_form() -> None:
    names = list(load("show_interfaces.json")["interfaces"])
    assert "Management1" in names and any(n.startswith("Ethernet") for n in names)
    assert all(canonical(n) == n for n in names)
    assert canonical("Et49/1") == "Ethernet49/1" and canonical("Po1") == "Port-Channel1"
    assert canonical("port-channel10") == "Port-Channel10"


def test_recorded_descriptions_carry_no_record_and_keep_their_text_with_one() -> None:
    rows = yaml.safe_load((DATA / "show_interfaces_description.yml").read_text())
    texts = [row["description"] for row in rows["parsed_sample"]]
    raw = (DATA / "show_interfaces_description.raw").read_text()
    assert texts and all(t in raw for t in texts if t)
    for text in texts:
        assert split_description(text) == (text, frozenset())
        tagged = join_description(text, {110, 111, 120})
        assert split_description(tagged) == (text.rstrip(), frozenset({110, 111, 120}))
        assert join_description(split_description(tagged)[0], ()) == text.rstrip()


@pytest.mark.parametrize(
    ("text", "vlans"),
    [
        ("ALL", None),
        ("1-4094", None),
        ("NONE", frozenset()),
        ("none", frozenset()),
        ("", frozenset()),
        ("30,40-42,67,270,220", frozenset({30, 40, 41, 42, 67, 220, 270})),
        ("110", frozenset({110})),
    ],
)
def test_allowed_vlan_lists_as_switches_print_them(text: str, vlans: frozenset[int] | None) -> None:
    assert parse_allowed(text) == vlans


def test_unreadable_records_count_as_none_and_bad_lists_are_refused() -> None:
    assert split_description("esx1 [vmfabric:99999]") == ("esx1", frozenset())
    assert split_description("[vmfabric:] x") == ("[vmfabric:] x", frozenset())
    with pytest.raises(ValueError):
        parse_allowed("10-x")


def _view(**ports: RawSwitchport) -> SwitchView:
    return SwitchView(switchports=ports, descriptions={p: "" for p in ports},
                      vlans={1: "default", 10: "prod", 120: "vmfabric-120"})  # fmt: skip


def test_a_plan_renders_add_remove_vlan_creation_record_and_cleanup_in_order() -> None:
    view = _view(
        Ethernet1=RawSwitchport("trunk", frozenset({10, 120})),
        Ethernet2=RawSwitchport("trunk", frozenset()),
    )
    view = SwitchView(view.switchports, {"Ethernet1": "esx1 [vmfabric:120]", "Ethernet2": ""},
                      view.vlans)  # fmt: skip
    before = view.state("leaf1", "Ethernet1")
    assert before == PortState("leaf1", "Ethernet1", PortMode.TRUNK, frozenset({10, 120}),
                               frozenset({120}))  # fmt: skip
    writes = [
        plan_write(before, PortChange("Ethernet1", frozenset({110}), frozenset({120})), "keep"),
        plan_write(
            view.state("leaf1", "Ethernet2"), PortChange("Ethernet2", frozenset({110})), "keep"
        ),
    ]
    assert plan_commands(view, writes, "vmfabric-{vlan}", 240) == [
        "vlan 110",
        "name vmfabric-110",
        "interface Ethernet1",
        "switchport trunk allowed vlan add 110",
        "switchport trunk allowed vlan remove 120",
        "description esx1 [vmfabric:110]",
        "interface Ethernet2",
        "switchport trunk allowed vlan add 110",
        "description [vmfabric:110]",
        "no vlan 120",
    ]


def test_an_open_port_is_narrowed_with_none_first_and_open_trunks_use_no_vlan() -> None:
    view = _view(
        Ethernet1=RawSwitchport("trunk", None),
        Ethernet2=RawSwitchport("trunk", None),
    )
    write = plan_write(view.state("s", "Ethernet1"), PortChange("Ethernet1", frozenset({120})),
                       "close")  # fmt: skip
    assert plan_commands(view, [write], "vmfabric-{vlan}", 240) == [
        "interface Ethernet1",
        "switchport trunk allowed vlan none",
        "switchport trunk allowed vlan add 120",
        "description [vmfabric:120]",
    ]
    removal = plan_write(
        PortState("s", "Ethernet1", PortMode.TRUNK, frozenset({120}), frozenset({120})),
        PortChange("Ethernet1", remove=frozenset({120})), "keep",
    )  # fmt: skip
    commands = plan_commands(view, [removal], "vmfabric-{vlan}", 240)
    assert "no vlan 120" in commands, "an open trunk (ALL) does not keep a VLAN alive"


def test_native_and_access_vlans_keep_a_vlan_vmfabric_created() -> None:
    for other in (RawSwitchport("access", frozenset(), access_vlan=120),
                  RawSwitchport("trunk", frozenset(), native_vlan=120)):  # fmt: skip
        view = _view(Ethernet1=RawSwitchport("trunk", frozenset({120})), Ethernet9=other)
        removal = plan_write(view.state("s", "Ethernet1"),
                             PortChange("Ethernet1", remove=frozenset({120})), "keep")  # fmt: skip
        assert "no vlan 120" not in plan_commands(view, [removal], "vmfabric-{vlan}", 240)


def test_routed_and_tunnel_ports_read_as_never_edited_access_ports() -> None:
    view = parse_view(
        {"switchports": {
            "Ethernet1": {"enabled": True, "switchportInfo": {"mode": "dot1qTunnel",
                                                              "trunkAllowedVlans": "ALL"}},
            "Ethernet2": {"enabled": False, "switchportInfo": {"mode": "routed"}}}},
        {"interfaceDescriptions": {"Ethernet1": {"description": ""},
                                   "Ethernet2": {"description": "uplink"}}},
        {"vlans": {}},
    )  # fmt: skip
    assert view.state("s", "Ethernet1").mode is PortMode.ACCESS
    assert view.state("s", "Ethernet2").mode is PortMode.ACCESS
    assert view.state("s", "Ethernet3").mode is PortMode.MISSING

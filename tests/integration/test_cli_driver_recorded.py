"""Recorded output of real Cisco switches (ntc-templates' captures, see
tests/data/recorded/ntc-templates/SOURCE.md) through the cli driver's platform data: the
allowed-VLAN list grammar (ranges, ``ALL``, ``1-4094``, ``none``, lists wrapped over lines)
must give the same VLANs as ntc-templates' own parse of the same text. Replays, not a
device: named ``recorded``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from vmfabric.core.model import PortMode
from vmfabric.targets.switchport.cli import ALL, load_platform, parse_port, parse_vlan_list

pytestmark = pytest.mark.recorded
DATA = Path(__file__).parents[1] / "data" / "recorded" / "ntc-templates"
# The field as the switches print it; a long list continues on indented lines (IOS).
FIELD = re.compile(
    r"^\s*(?:Name: (?P<name>\S+)"
    r"|Trunking VLANs (?:Enabled|Allowed): (?P<vlans>\S*(?:\n\s+[\d,\-]+)*))",
    re.MULTILINE,
)
CAPTURES = sorted(p.stem for p in DATA.glob("*switchport*.raw"))


def captured(stem: str) -> dict[str, str | None]:
    """Allowed-list text per interface of a capture (None: the port prints none)."""
    text = (DATA / f"{stem}.raw").read_text(encoding="utf-8")
    found: dict[str, str | None] = {}
    name = ""
    for match in FIELD.finditer(text):
        if match.group("name"):
            name = match.group("name")
            found[name] = None
        else:
            found[name] = "".join(match.group("vlans").split())
    return found


def expand(text: str) -> frozenset[int]:
    if text.upper() == "ALL" or text == "1-4094":
        return ALL
    vlans: set[int] = set()
    for item in filter(None, text.split(",")):
        lo, _, hi = item.partition("-")
        vlans.update(range(int(lo), int(hi or lo) + 1))
    return frozenset(vlans)


def expected(stem: str) -> dict[str, frozenset[int] | None]:
    """ntc-templates' parse of the same capture, expanded to VLAN ids."""
    parsed: list[dict[str, Any]] = yaml.safe_load((DATA / f"{stem}.yml").read_text())[
        "parsed_sample"
    ]
    out: dict[str, frozenset[int] | None] = {}
    for row in parsed:
        items = row["trunking_vlans"]
        text = ",".join(items) if isinstance(items, list) else items
        out[row["interface"]] = expand(text) if text else None
    return out


@pytest.mark.parametrize("stem", CAPTURES)
def test_allowed_vlan_lists_of_real_switches_parse_as_ntc_templates_does(stem: str) -> None:
    platform = load_platform("cisco_nxos" if "nxos" in stem else "cisco_ios")
    lists = captured(stem)
    assert any(lists.values()), f"{stem}: no allowed-VLAN field found"
    got = {
        name: None if text is None else parse_vlan_list(text, platform)
        for name, text in lists.items()
    }
    assert got == expected(stem)


def test_a_wrapped_ios_list_and_all_forms_are_covered_by_the_captures() -> None:
    texts = {text for stem in CAPTURES for text in captured(stem).values() if text}
    assert "ALL" in texts and "1-4094" in texts
    assert any(len(parse_vlan_list(t, load_platform("cisco_ios"))) > 15 and "-" in t for t in texts)


def test_routed_ios_subinterfaces_read_as_never_edited_ports_with_their_description() -> None:
    platform = load_platform("cisco_ios")
    raw = (DATA / "cisco_ios_show_running-config_interface.raw").read_text(encoding="utf-8")
    parsed = yaml.safe_load((DATA / "cisco_ios_show_running-config_interface.yml").read_text())
    blocks = re.split(r"^!\s*$", raw, flags=re.MULTILINE)
    ports = [parse_port(b, platform) for b in blocks if "interface " in b]
    assert len(ports) == len(parsed["parsed_sample"])
    assert all(p.mode is PortMode.ACCESS for p in ports), "no switchport mode trunk: not a trunk"
    assert [p.description for p in ports] == [r["description"] for r in parsed["parsed_sample"]]

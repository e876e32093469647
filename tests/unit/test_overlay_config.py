"""Overlay and fabric configuration: the VNI rules, VTEP addresses, fabric ports and links.

Each bad input is a ``ConfigError`` (exit 2 in every command) whose text is one line naming
the file and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from vmfabric.config import load_config, parse_config
from vmfabric.config.overlay import VNI_MAX
from vmfabric.core.errors import ConfigError


def _switch(name: str = "leaf1", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "driver": "ovs",
        "ovsdb": f"unix:/run/{name}.sock",
        "bridge": "br0",
        "edge_ports": ["eth1", "eth2"],
        **extra,
    }


GOOD: dict[str, Any] = {
    "overlay": {"vni_map": {110: 10110, 120: 10120}},
    "switches": [
        _switch("leaf1", vtep="10.253.0.1", fabric_ports=["eth51", "eth52"]),
        _switch(
            "leaf2",
            vtep={"address": "10.253.0.3", "ovsdb": "unix:/run/vtep2.sock", "bridge": "br-int"},
            fabric_ports=["eth51"],
        ),
    ],
    "fabric_links": [
        {"a": "leaf1:eth51", "b": "spine3:eth1"},
        {"a": "leaf1:eth52", "b": "leaf2:eth51"},
    ],
}


def test_a_vni_map_maps_only_its_vlans_and_a_base_maps_every_vlan() -> None:
    cfg = parse_config(GOOD)
    assert cfg.overlay is not None and cfg.overlay.mapping() == {110: 10110, 120: 10120}
    vtep = cfg.switches[0].vtep
    assert vtep is not None and vtep.address == "10.253.0.1" and vtep.ovsdb is None
    assert cfg.switches[1].fabric_ports == ["eth51"]
    assert cfg.fabric_links[0].ends() == (("leaf1", "eth51"), ("spine3", "eth1"))
    base = parse_config({"overlay": {"vni_base": 10000}}).overlay
    assert base is not None
    assert base.mapping()[110] == 10110 and len(base.mapping()) == 4094
    assert parse_config({}).overlay is None, "no overlay unless configured"


def _with(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


BAD = [
    (
        _with(overlay={"vni_map": {110: VNI_MAX + 1}}),
        "overlay.vni_map[110]: VNI 16777215 is outside 1..16,777,214",
    ),
    (_with(overlay={"vni_map": {110: 0}}), "overlay.vni_map[110]: VNI 0 is outside"),
    (
        _with(overlay={"vni_map": {110: 5000, 120: 5000}}),
        "overlay.vni_map: VLANs 110 and 120 both map to VNI 5000",
    ),
    (_with(overlay={"vni_map": {4095: 5000}}), "overlay.vni_map: VLAN 4095 is outside 1-4094"),
    (
        _with(overlay={"vni_base": VNI_MAX}),
        "overlay.vni_base: VLAN 1 would get VNI 16777215, outside 1..16,777,214",
    ),
    (_with(overlay={"vni_base": 1, "vni_map": {1: 2}}), "overlay: give vni_map or vni_base"),
    (_with(switches=[_switch(vtep="10.0.0.300")]), "switches[0].vtep: '10.0.0.300' is not an IP"),
    (_with(switches=[_switch(vtep="leaf1-lo")]), "switches[0].vtep: 'leaf1-lo' is not an IP"),
    (
        _with(switches=[_switch(vtep={"address": "1.2.3.4", "ovsdb": "/run/db.sock"})]),
        "switches[0].vtep.ovsdb: '/run/db.sock' is not unix:PATH or tcp:HOST:PORT",
    ),
    (
        _with(switches=[_switch(vtep={"address": "fe80::1", "driver": "vyos"})]),
        "switches[0].vtep.driver: Input should be 'ovs'",
    ),
    (
        _with(switches=[_switch(fabric_ports=["eth51", "eth2"])]),
        "switches[0].fabric_ports: fabric port 'eth2' is also an edge port",
    ),
    (
        _with(switches=[_switch("leaf1", vtep="10.0.0.1"), _switch("leaf2", vtep="10.0.0.1")]),
        "VTEP address 10.0.0.1 is used by leaf1 and leaf2",
    ),
    (
        _with(fabric_links=[{"a": "leaf1:eth9", "b": "spine3:eth1"}]),
        "fabric_links[0]: eth9 is not in the fabric_ports of leaf1",
    ),
    (
        _with(fabric_links=[{"a": "core1:eth1", "b": "core2:eth1"}]),
        "fabric_links[0]: neither core1:eth1 nor core2:eth1 is a configured switch",
    ),
    (_with(fabric_links=[{"a": "leaf1", "b": "spine3:eth1"}]), "fabric_links[0].a: 'leaf1' is not"),
]


@pytest.mark.parametrize(("data", "expected"), BAD, ids=[b[1][:40] for b in BAD])
def test_bad_overlay_input_is_one_line_naming_file_and_key(
    tmp_path: Path, data: dict[str, Any], expected: str
) -> None:
    path = tmp_path / "vmfabric.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    text = str(caught.value)
    assert "\n" not in text
    assert expected in text and text.startswith(f"{path}: ")


def test_config_check_refuses_bad_overlay_input_with_exit_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vmfabric.cli import app

    path = tmp_path / "vmfabric.yaml"
    path.write_text(yaml.safe_dump(_with(overlay={"vni_map": {110: 7, 120: 7}})))
    done = CliRunner().invoke(app, ["config", "check", "-c", str(path)])
    assert done.exit_code == 2
    assert done.output.strip().splitlines() == [
        f"vmfabric: error: {path}: overlay.vni_map: VLANs 110 and 120 both map to VNI 7"
    ]
    path.write_text(yaml.safe_dump(GOOD))
    assert CliRunner().invoke(app, ["config", "check", "-c", str(path)]).exit_code == 0

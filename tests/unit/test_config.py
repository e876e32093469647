"""Config loading: the schema of DESIGN.md, secrets by reference, one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vmfabric.config import load_config, parse_duration, resolve_secret
from vmfabric.core.errors import ConfigError
from vmfabric.core.vlans import format_vlans, parse_vlans

GOOD = """\
store: sqlite:///vmfabric.db
engine: {prune_delay: 30s}
sessions:
  - name: lab
    kind: vcenter
    url: https://vc.example.com/sdk
    username: vmfabric-ro
    password: env:VMFABRIC_LAB_PASSWORD
    allowed_vlans: 2-1000,1002-4094
  - {name: inv, kind: static, path: inventory.yaml}
switches:
  - {name: leaf1, driver: ovs, ovsdb: "unix:/run/openvswitch/db.sock", bridge: br0,
     edge_ports: [p1, p2]}
links:
  - {host: esx01, nic: vmnic0, switch: leaf1, port: p1}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "vmfabric.yaml"
    path.write_text(text)
    return path


def test_design_example_loads_with_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.engine.prune_delay == 30.0
    assert format_vlans(cfg.sessions[0].allowed_vlans) == "2-1000,1002-4094"
    assert cfg.sessions[1].allowed_vlans == frozenset(range(1, 4095))
    assert cfg.store_url() == f"sqlite:///{tmp_path}/vmfabric.db", "relative to the file"


def test_config_is_found_through_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VMFABRIC_CONFIG", str(write(tmp_path, GOOD)))
    assert load_config().switches[0].name == "leaf1"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("2-1000,1002-4094", "0-10"), "sessions[0].allowed_vlans: VLAN 0 is outside 1-4094"),
        (("2-1000,1002-4094", "4095"), "sessions[0].allowed_vlans: VLAN 4095 is outside 1-4094"),
        (
            ("2-1000,1002-4094", "abc"),
            "sessions[0].allowed_vlans: 'abc' in 'abc' is not a VLAN number",
        ),
        (("2-1000,1002-4094", "100-10"), "sessions[0].allowed_vlans: reversed range '100-10'"),
        (("2-1000,1002-4094", "1-10,5-20"), "sessions[0].allowed_vlans: overlapping item '5-20'"),
        (("name: inv", "name: lab"), "session name 'lab' is used twice"),
        (
            ("edge_ports: [p1, p2]", "edge_ports: [p1, p1]"),
            "switches[0].edge_ports: edge port 'p1' is listed twice",
        ),
        (
            ("env:VMFABRIC_LAB_PASSWORD", "hunter2"),
            "sessions[0].password: literal passwords are refused",
        ),
        (("prune_delay: 30s", "prune_delay: soon"), "engine.prune_delay: 'soon' is not a duration"),
        (
            ("switch: leaf1, port", "switch: leaf9, port"),
            "links[0]: switch 'leaf9' is not configured",
        ),
        (("kind: static", "kind: hyperv"), "sessions[1]: Input tag 'hyperv'"),
        (("bridge: br0", "bridge: br0, colour: red"), "switches[0].colour: unknown key"),
    ],
)
def test_bad_config_is_one_line_naming_file_and_key(
    tmp_path: Path, change: tuple[str, str], expected: str
) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: "), message
    assert expected in message, message
    assert "hunter2" not in message, "a secret must never be echoed"


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "sessions:\n  - name: [unclosed\n")
    with pytest.raises(ConfigError, match=rf"^{path}:3:1: invalid YAML"):
        load_config(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


def test_secrets_resolve_from_env_and_from_private_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VF_PW", "s3cret")
    assert resolve_secret("env:VF_PW").get_secret_value() == "s3cret"
    secret = tmp_path / "pw"
    secret.write_text("fromfile\n")
    os.chmod(secret, 0o600)
    assert resolve_secret("file:pw", tmp_path).get_secret_value() == "fromfile"
    assert "fromfile" not in repr(resolve_secret("file:pw", tmp_path))
    os.chmod(secret, 0o644)
    with pytest.raises(ConfigError, match="mode 0644; make it 0600"):
        resolve_secret(f"file:{secret}")
    with pytest.raises(ConfigError, match="VF_NOPE"):
        resolve_secret("env:VF_NOPE")


def test_vlan_ranges_round_trip() -> None:
    assert parse_vlans("2-5,7,10-11") == frozenset({2, 3, 4, 5, 7, 10, 11})
    assert format_vlans(parse_vlans("2-5,7,10-11")) == "2-5,7,10-11"
    assert parse_duration("500ms") == 0.5 and parse_duration("5m") == 300 and parse_duration(2) == 2

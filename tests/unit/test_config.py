"""Config loading: the schema of DESIGN.md, secrets by reference, one-line errors."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from vmfabric.config import (
    EngineConfig,
    format_duration,
    json_schema,
    load_config,
    load_yaml,
    parse_config,
    parse_duration,
    resolve_secret,
)
from vmfabric.config.yamlfile import StrictLoader
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
            "links[0].switch: switch 'leaf9' is not configured",
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


# ---- duplicate keys ----------------------------------------------------------------------


def test_a_duplicate_key_is_refused_with_its_line_and_key_path(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        GOOD.replace(
            "engine: {prune_delay: 30s}", "engine:\n  prune_delay: 30s\n  prune_delay: 1s"
        ),
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (
        f"{path}:4:3: engine.prune_delay: duplicate key 'prune_delay' (first on line 3): "
        "one of the two would be ignored"
    )


def test_keys_a_merge_brings_in_may_be_overridden_but_not_repeated(tmp_path: Path) -> None:
    base = (
        "switches:\n  - &l {name: leaf1, driver: fake, edge_ports: [e1]}\n"
        "  - <<: *l\n    name: leaf2\n"
    )
    assert [s.name for s in load_config(write(tmp_path, base)).switches] == ["leaf1", "leaf2"]
    with pytest.raises(ConfigError, match=r":5:5: switches\[1\]\.name: duplicate key 'name'"):
        load_config(write(tmp_path, base + "    name: leaf3\n"))


def test_the_strict_loader_keeps_libyamls_speed() -> None:
    if not hasattr(yaml, "CSafeLoader"):
        pytest.skip("PyYAML was built without libyaml")
    assert issubclass(StrictLoader, yaml.CSafeLoader)


def test_equal_keys_spelt_differently_are_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("a: {1: x, 0x1: y}\n")
    with pytest.raises(ConfigError, match=r"a\.0x1: duplicate key 1"):
        load_yaml(path)


def test_aliases_that_expand_enormously_are_refused_before_anything_walks_them(
    tmp_path: Path,
) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match="aliases expand"):
        load_yaml(path)
    path.write_text("a: &a {b: 1}\nc: [*a, *a]\n")
    assert load_yaml(path) == {"a": {"b": 1}, "c": [{"b": 1}, {"b": 1}]}


# ---- values --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("engine", "expected"),
    [
        ("prune_delay: .nan", "engine.prune_delay: duration nan is not a finite number"),
        ("prune_delay: .inf", "engine.prune_delay: duration inf is not a finite number"),
        ("prune_delay: 169h", "engine.prune_delay: 169h is outside 0s to 7d"),
        ("retry_max: 0", "engine.retry_max: 0s is outside 1s to 1h"),
        ("retry_max: 2h", "engine.retry_max: 2h is outside 1s to 1h"),
        ("coalesce: 6s", "engine.coalesce: 6s is outside 0s to 5s"),
        ("max_removals: true", "engine.max_removals: True is not a number"),
        ("max_removal_share: .nan", "engine.max_removal_share: Input should be a finite number"),
    ],
)
def test_engine_values_outside_their_bounds_are_refused(
    tmp_path: Path, engine: str, expected: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_config(write(tmp_path, GOOD.replace("prune_delay: 30s", engine)))


def test_engine_bounds_are_in_the_schema_descriptions() -> None:
    fields = EngineConfig.model_fields
    assert "0 to 7d" in str(fields["prune_delay"].description)
    assert "1s to 1h" in str(fields["retry_max"].description)
    assert "0 to 5s" in str(fields["coalesce"].description)


def test_durations_format_in_their_largest_whole_unit() -> None:
    assert [format_duration(s) for s in (0, 0.02, 1.5, 30, 90, 3600, 7 * 86400)] == [
        "0s", "20ms", "1.5s", "30s", "90s", "1h", "7d",
    ]  # fmt: skip


@pytest.mark.parametrize(
    "store",
    [
        "sqlite:///vmfabric.db",
        "sqlite://",
        "sqlite:///:memory:",
        "postgresql://vmfabric@db.example.com/vmfabric",
        "postgresql+psycopg://vmfabric@/postgres?host=/run/postgresql",
    ],
)
def test_store_urls_vmfabric_can_use_are_accepted(tmp_path: Path, store: str) -> None:
    assert load_config(write(tmp_path, f"store: '{store}'\n")).store == store


def test_a_store_url_password_is_refused_and_never_shown(tmp_path: Path) -> None:
    path = write(tmp_path, "store: postgresql://vmf:Pg-S3cret@db/vmfabric\n")
    with pytest.raises(ConfigError, match="a password in the store URL is refused") as err:
        load_config(path)
    assert "Pg-S3cret" not in str(err.value)


# ---- cross-references --------------------------------------------------------------------


def ovs(name: str, bridge: str = "br0", sock: str = "unix:/run/db.sock") -> str:
    return (
        f"  - {{name: {name}, driver: ovs, ovsdb: '{sock}', bridge: {bridge}, edge_ports: [e1]}}\n"
    )


def test_two_switch_entries_on_one_ovs_bridge_are_refused(tmp_path: Path) -> None:
    good = (
        "switches:\n"
        + ovs("leaf1")
        + ovs("leaf2", bridge="br1")
        + ovs("leaf3", sock="tcp:127.0.0.1:6640")
    )
    assert len(load_config(write(tmp_path, good)).switches) == 3
    bad = "switches:\n" + ovs("leaf1") + ovs("leaf2")
    with pytest.raises(ConfigError, match=r"switches\[1\]: leaf2 writes the same device as leaf1"):
        load_config(write(tmp_path, bad))


def test_switches_a_neighbour_could_not_tell_apart_are_refused(tmp_path: Path) -> None:
    two = (
        "switches:\n  - {name: leaf1, driver: fake, edge_ports: [e1]}\n"
        "  - {name: X, driver: fake, edge_ports: [e1]}\n"
    )
    for other, expected in (
        ("leaf1.dc2.example.com", r"switches\[1\]\.name: 'leaf1.dc2.example.com' also names"),
        ("LEAF1", r"switches\[1\]\.name: 'LEAF1' also names switch leaf1"),
    ):
        with pytest.raises(ConfigError, match=expected):
            load_config(write(tmp_path, two.replace("name: X", f"name: {other}")))


def links_config(*links: str) -> str:
    sw = "switches:\n  - {name: leaf1, driver: fake, edge_ports: [e1, e2, Po10]}\n"
    sessions = (
        "sessions:\n  - {name: a, kind: static, path: a.yaml}\n"
        "  - {name: b, kind: static, path: b.yaml}\n"
    )
    return sessions + sw + "links:\n" + "".join(f"  - {{{link}}}\n" for link in links)


def test_one_host_nic_per_session_may_have_one_link(tmp_path: Path) -> None:
    ok = links_config(
        "host: h1, nic: n0, switch: leaf1, port: e1, session: a",
        "host: h1, nic: n0, switch: leaf1, port: e2, session: b",
        "host: h2, nic: n0, switch: leaf1, port: Po10",
        "host: h2, nic: n1, switch: leaf1, port: Po10",  # a bond on a port-channel
    )
    assert len(load_config(write(tmp_path, ok)).links) == 4
    for first, second, expected in (
        ("session: a", "session: a", "links[1]: host h1 NIC n0 (session a) is already wired"),
        ("session: a", "session: null", "links[1]: host h1 NIC n0 is already wired by links[0]"),
    ):
        bad = links_config(
            f"host: h1, nic: n0, switch: leaf1, port: e1, {first}",
            f"host: h1, nic: n0, switch: leaf1, port: e2, {second}",
        )
        with pytest.raises(ConfigError, match=re.escape(expected)):
            load_config(write(tmp_path, bad))


def test_a_link_must_land_on_an_edge_port_reaching_one_host(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("links[0].port: 'e9' is not an edge port")):
        load_config(write(tmp_path, links_config("host: h1, nic: n0, switch: leaf1, port: e9")))
    two_hosts = links_config(
        "host: h1, nic: n0, switch: leaf1, port: e1", "host: h2, nic: n0, switch: leaf1, port: e1"
    )
    with pytest.raises(ConfigError, match=re.escape("links[1].port: leaf1 e1 is already wired")):
        load_config(write(tmp_path, two_hosts))


# ---- this machine: store folder, secrets, CA files ----------------------------------------


VC = (
    "sessions:\n"
    "  - {name: vc, kind: vcenter, url: 'https://vc/sdk', username: ro, password: '%s'}\n"
)


def test_empty_secrets_are_refused_wherever_they_are_resolved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VF_EMPTY", "")
    with pytest.raises(ConfigError, match=r"VF_EMPTY .* is empty"):
        resolve_secret("env:VF_EMPTY")
    secret = tmp_path / "pw"
    secret.write_text("\n")
    secret.chmod(0o600)
    with pytest.raises(ConfigError, match=r"secret file .*pw is empty"):
        resolve_secret("file:pw", tmp_path)


def test_every_command_refuses_an_empty_secret_but_only_connecting_ones_need_it_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, VC % "env:VF_PW")
    monkeypatch.delenv("VF_PW", raising=False)
    assert load_config(path).sessions[0].name == "vc", "show does not need the password"
    with pytest.raises(ConfigError, match=r"sessions\[0\]\.password: environment .* not set"):
        load_config(path, connect=True)
    monkeypatch.setenv("VF_PW", " ")
    with pytest.raises(ConfigError, match=r"sessions\[0\]\.password: environment .* is empty"):
        load_config(path)
    monkeypatch.setenv("VF_PW", "s3cret")
    assert load_config(path, connect=True, write=True).sessions[0].name == "vc"


def test_a_missing_ca_file_is_refused_by_every_command(tmp_path: Path) -> None:
    path = write(tmp_path, (VC % "env:VF_PW").replace("}", ", ca_file: ca.pem}"))
    with pytest.raises(ConfigError, match=r"sessions\[0\]\.ca_file: file .*ca.pem does not exist"):
        load_config(path)


def test_the_store_folder_must_exist_and_writers_must_be_able_to_create_files_in_it(
    tmp_path: Path,
) -> None:
    with pytest.raises(ConfigError, match=r"store: folder .*nowhere of the SQLite store"):
        load_config(write(tmp_path, "store: sqlite:///nowhere/v.db\n"))
    path = write(tmp_path, "store: sqlite:////proc/v.db\n")
    assert load_config(path).store_url() == "sqlite:////proc/v.db", "readers may read there"
    with pytest.raises(ConfigError, match="store: cannot create files in folder /proc"):
        load_config(path, write=True)
    assert not list(tmp_path.glob(".vmfabric-probe-*")), "the probe file must be removed"
    assert load_config(write(tmp_path, "{}\n"), write=True).store_url().endswith("vmfabric.db")


def readme_yaml(after: str) -> str:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    return text[text.index(after) :].split("```yaml\n", 1)[1].split("```", 1)[0]


def test_the_readme_configuration_example_is_a_valid_config() -> None:
    config = parse_config(yaml.safe_load(readme_yaml("## Configuration")), "README.md")
    assert [s.kind for s in config.sessions] == ["vcenter", "libvirt", "static"]
    assert config.switches[0].endpoint() == "OVSDB unix:/run/openvswitch/db.sock bridge br0"
    assert config.engine.retry_max == 60.0


def test_one_vcenter_may_be_watched_as_two_users_but_not_twice_as_one(tmp_path: Path) -> None:
    two = (VC % "env:PW") + (VC % "env:PW").replace("sessions:\n", "").replace(
        "name: vc", "name: vc2"
    )
    with pytest.raises(ConfigError, match=r"sessions\[1\]\.url: session vc already watches"):
        load_config(write(tmp_path, two.replace("username: ro", "username: RO", 1)))
    assert (
        len(
            load_config(write(tmp_path, two.replace("username: ro", "username: admin", 1))).sessions
        )
        == 2
    )


def test_the_schema_offers_no_key_the_loader_refuses() -> None:
    assert "base_dir" not in json_schema()["properties"]

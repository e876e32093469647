"""Fuzzing of everything vmfabric reads from outside: config files, static inventory files,
lldpd JSON and CDP/LLDP neighbour names (QueryNetworkHint answers) with odd unicode.

The property everywhere: a result, or a ConfigError / ValueError with a one-line message.
Never another exception, never a traceback for the user. Inputs are generated from the
schema (plausible keys with wrong, odd or right values) and by mutating valid texts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmfabric.config import Config, LinkConfig, SwitchConfig, load_config, parse_config
from vmfabric.core.errors import ConfigError
from vmfabric.core.model import Host, Neighbor, Nic
from vmfabric.inventory.topology.lldpd import parse_neighbors, parse_switch_side
from vmfabric.inventory.topology.resolve import Resolver, canonical_name, canonical_port
from vmfabric.sources.static import load_inventory

DATA = Path(__file__).resolve().parents[1] / "data" / "lldpd"
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# ---- strategies --------------------------------------------------------------------------

ODD_TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20
) | st.sampled_from([
    "", " ", "\u200b", "leaf1\u200b", "\uff2c\uff25\uff21\uff26\uff11", "Ⅸ", "İstanbul",
    "ß", "leaf1\u202e", "\x00",
    "leaf1.dc1.example.com", "LEAF1(FOC1234)", "Et1", "Ethernet1", "gi1/0/1", "e\u0301",
    "2-1000,1002-4094", "100-10", "0", "4095", "1e3", "-1", "NaN", "env:X", "file:",
])  # fmt: skip
KEY = ODD_TEXT
SCALAR = st.none() | st.booleans() | st.integers(-5, 5000) | st.floats(allow_nan=True) | ODD_TEXT
JSONISH = st.recursive(
    SCALAR,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEY, inner, max_size=4),
    max_leaves=12,
)


def maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A plausible value, or anything at all."""
    return value | JSONISH


VLANS = st.sampled_from(["2-1000", "110", "1-4094", "100-10", "0", "5000", "1,,2", " 7 "])
DURATION = st.sampled_from(
    ["30s", "500ms", "5m", "-1s", "1h", "forever", "1.5", "", 0, 1e308, -0.0,
     float("nan"), float("inf"), float("-inf"), True]
)  # fmt: skip
SESSION = st.fixed_dictionaries(
    {"name": maybe(st.sampled_from(["lab", "inv", "bad name", ""])),
     "kind": maybe(st.sampled_from(["vcenter", "libvirt", "static", "esx"]))},
    optional={
        "url": maybe(st.sampled_from(
            ["https://vc/sdk", "ftp://x", "vc", "https://vc:99999/sdk", "https://u:p@vc/",
             "https://[::1/sdk", "http://"])),
        "username": maybe(ODD_TEXT),
        "password": maybe(st.sampled_from(
            ["env:PW", "env:VMF_FUZZ_EMPTY", "env:", "env:1x", "file:/nonexistent",
             "file:pw.secret", "file:", "hunter2"])),
        "path": maybe(st.sampled_from(["inv.yaml", "/etc/passwd", "", "."])),
        "ca_file": maybe(st.sampled_from(["ca.pem", "/nonexistent/ca.pem", "pw.secret"])),
        "verify_tls": maybe(st.booleans()),
        "lldp_command": maybe(st.sampled_from(["lldpcli {host}", "'unclosed", "", "cat x"])),
        "hint_refresh": maybe(DURATION),
        "uris": maybe(st.dictionaries(KEY, ODD_TEXT, max_size=2)),
        "allowed_vlans": maybe(VLANS),
        "audit_interval": maybe(DURATION),
        "mode": maybe(st.sampled_from(["enforce", "check", "yolo"])),
    },
)  # fmt: skip
SWITCH = st.fixed_dictionaries(
    {"name": maybe(st.sampled_from(["leaf1", "leaf2", "LEAF1", "bad name"])),
     "driver": maybe(st.sampled_from(["ovs", "fake", "nope"])),
     "edge_ports": maybe(st.lists(ODD_TEXT, max_size=3))},
    optional={
        "ovsdb": maybe(st.sampled_from(["unix:/x.sock", "tcp:1.2.3.4:6640", "ssl:x"])),
        "bridge": maybe(st.sampled_from(["br0", "br1", ""])),
        "timeout": maybe(st.sampled_from([1, -1, 0, 1e9, float("nan"), float("inf"), "5"])),
        "latency": maybe(st.floats(allow_nan=True)),
        "state_file": maybe(st.sampled_from(["fake.json", "/nonexistent/x.json"])),
        "open_ports": maybe(st.sampled_from(["keep", "close", "open"])),
        "options": maybe(st.dictionaries(KEY, SCALAR, max_size=3)),
        "aliases": maybe(st.lists(ODD_TEXT, max_size=2)),
        "mgmt_address": maybe(st.sampled_from(["192.0.2.1", "2001:db8::1", "leaf1", ""])),
    },
)  # fmt: skip
STORES = st.sampled_from([
    "sqlite:///v.db", "sqlite://", "sqlite:///", "nonsense", "sqlite:////proc/v.db",
    "sqlite:///missing/v.db", "postgresql://u@h/db", "postgresql://u:pw@h/db",
    "postgresql://u@h:x/db", "postgresql://u@h:99999/db", "mysql://u@h/db", "postgresql+x://h/d",
])  # fmt: skip
CONFIG = st.fixed_dictionaries(
    {},
    optional={
        "store": maybe(STORES),
        "engine": maybe(st.fixed_dictionaries({}, optional={
            "prune_delay": maybe(DURATION), "coalesce": maybe(DURATION),
            "retry_max": maybe(DURATION),
            "max_removals": maybe(st.integers(-3, 100)),
            "max_removal_share": maybe(st.floats(-1, 2) | st.floats(allow_nan=True)),
        })),
        "sessions": maybe(st.lists(SESSION, max_size=3)),
        "switches": maybe(st.lists(SWITCH, max_size=3)),
        "links": maybe(st.lists(st.fixed_dictionaries({
            "host": maybe(ODD_TEXT), "nic": maybe(ODD_TEXT),
            "switch": maybe(st.sampled_from(["leaf1", "leaf9"])), "port": maybe(ODD_TEXT),
        }, optional={"session": maybe(st.sampled_from(["lab", "inv", None]))}), max_size=3)),
        "unknown_key": JSONISH,
    },
) | st.dictionaries(KEY, JSONISH, max_size=3)  # fmt: skip

VALID_CONFIG = """\
store: sqlite:///vmfabric.db
engine: {prune_delay: 30s, coalesce: 20ms, max_removals: 50}
sessions:
  - {name: lab, kind: vcenter, url: "https://vc/sdk", username: ro, password: "env:PW"}
  - {name: inv, kind: static, path: inv.yaml, allowed_vlans: "2-1000,1002-4094"}
switches:
  - {name: leaf1, driver: ovs, ovsdb: "unix:/run/db.sock", bridge: br0, edge_ports: [p1, p2]}
links:
  - {host: esx01, nic: vmnic0, switch: leaf1, port: p1}
"""
VALID_INVENTORY = """\
hosts:
  - {name: esx01, nics: [vmnic0, vmnic1]}
portgroups:
  - {name: web, vlan: 110}
  - {name: trunk, vlan: "200-210", vswitch: vSwitch1}
vms:
  - {name: web-01, host: esx01, power: on, portgroups: [web, trunk]}
"""
INVENTORY = st.fixed_dictionaries(
    {},
    optional={
        "hosts": maybe(st.lists(st.fixed_dictionaries(
            {"name": maybe(ODD_TEXT)}, optional={"nics": maybe(st.lists(ODD_TEXT, max_size=2))}
        ), max_size=3)),
        "portgroups": maybe(st.lists(st.fixed_dictionaries(
            {"name": maybe(ODD_TEXT), "vlan": maybe(VLANS | st.integers(-2, 5000))},
            optional={"vswitch": maybe(ODD_TEXT)},
        ), max_size=3)),
        "vms": maybe(st.lists(st.fixed_dictionaries(
            {"name": maybe(ODD_TEXT), "host": maybe(ODD_TEXT)},
            optional={"power": maybe(st.sampled_from(["on", "off", "suspended", "maybe"])),
                      "portgroups": maybe(st.lists(ODD_TEXT, max_size=2))},
        ), max_size=3)),
    },
) | JSONISH  # fmt: skip


MUTANTS = [":", "-", "{", "}", "[", "]", ",", "'", '"', "\n", " ", "\t", "#", "&", "*", "!",
           "|", ">", "%", "\u00e9", "\x00", "9"]  # fmt: skip


@st.composite
def mutated(draw: st.DrawFn, text: str) -> str:
    """``text`` with a few characters deleted, replaced or inserted."""
    chars = list(text)
    for _ in range(draw(st.integers(1, 6))):
        where = draw(st.integers(0, len(chars)))
        action = draw(st.sampled_from(["delete", "replace", "insert"]))
        new = draw(st.sampled_from(MUTANTS))
        if action == "delete" and where < len(chars):
            del chars[where]
        elif action == "replace" and where < len(chars):
            chars[where] = new
        else:
            chars.insert(where, new)
    return "".join(chars)


# ---- the property ------------------------------------------------------------------------


def assert_clean(exc: BaseException) -> None:
    """A refusal vmfabric may show the user: typed and one line."""
    assert isinstance(exc, ConfigError | ValueError), f"{type(exc).__name__}: {exc}"
    message = str(exc)
    assert message and "\n" not in message and "Traceback" not in message, repr(message)


def outcome(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:  # the property under test: only clean refusals
        assert_clean(exc)
        return None


def config_outcome(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Config loading refuses with ConfigError alone (one line), never anything else."""
    try:
        return fn(*args, **kwargs)
    except Exception as exc:  # the property under test
        assert isinstance(exc, ConfigError), f"{type(exc).__name__}: {exc}"
        assert_clean(exc)
        return None


# ---- config files ------------------------------------------------------------------------


@FUZZ
@given(CONFIG)
def test_config_from_the_schema_loads_or_is_refused_in_one_line(data: Any) -> None:
    result = config_outcome(parse_config, data, "vmfabric.yaml")
    assert result is None or isinstance(result, Config)
    if result is not None:
        assert_sane(result)


def assert_sane(config: Config) -> None:
    """What any accepted config guarantees: bounded finite durations, links on configured
    edge ports, one entry per device, a store vmfabric can open."""
    e = config.engine
    assert 0 <= e.prune_delay <= 7 * 86400 and 0 <= e.coalesce <= 5 and 1 <= e.retry_max <= 3600
    assert 0 <= e.max_removal_share <= 1
    for session in config.sessions:
        for key in ("audit_interval", "hint_refresh", "lldp_refresh"):
            value = getattr(session, key, 1.0)
            assert 0.1 <= value <= 7 * 86400, f"{session.name}.{key} = {value}"
    edge = {s.name: s.edge_ports for s in config.switches}
    assert all(link.port in edge[link.switch] for link in config.links)
    devices = [s.endpoint() for s in config.switches if s.endpoint()]
    assert len(devices) == len(set(devices))
    nics = [(k.host, k.nic, k.session) for k in config.links]
    assert len(nics) == len(set(nics))
    assert config.store.split(":", 1)[0].split("+")[0] in ("sqlite", "postgresql")


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder with the files the generated configs may name: a private secret, a CA
    file that is not one, an inventory; and an environment with an empty secret."""
    (tmp_path / "pw.secret").write_text("s3cret\n")
    (tmp_path / "pw.secret").chmod(0o600)
    (tmp_path / "ca.pem").write_text("not a certificate\n")
    (tmp_path / "inv.yaml").write_text(VALID_INVENTORY)
    monkeypatch.setenv("VMF_FUZZ_EMPTY", "")
    monkeypatch.setenv("PW", "s3cret")
    return tmp_path


@FUZZ
@given(CONFIG, st.booleans())
def test_config_files_load_or_are_refused_with_one_config_error(
    config_dir: Path, data: Any, runs: bool
) -> None:
    path = config_dir / "vmfabric.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    result = config_outcome(load_config, path, connect=runs, write=runs)
    assert result is None or isinstance(result, Config)
    if result is not None:
        assert_sane(result)


@FUZZ
@given(mutated(VALID_CONFIG))
def test_mutated_config_yaml_loads_or_is_refused_in_one_line(config_dir: Path, text: str) -> None:
    path = config_dir / "vmfabric.yaml"
    path.write_text(text, encoding="utf-8")
    result = config_outcome(load_config, path, connect=True, write=True)
    assert result is None or isinstance(result, Config)


def test_a_key_with_a_line_break_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(yaml.safe_dump({"engine": {"sto\nre": 1}}))
    for load in (
        lambda: parse_config({"engine": {"sto\nre": 1}}),
        lambda: load_inventory(path, "i"),
    ):
        with pytest.raises(ConfigError) as caught:
            load()
        assert_clean(caught.value)


def test_the_unmutated_config_loads() -> None:
    config = parse_config(yaml.safe_load(VALID_CONFIG))
    assert [s.name for s in config.sessions] == ["lab", "inv"]


# ---- static inventory files --------------------------------------------------------------


@FUZZ
@given(INVENTORY)
def test_inventory_from_the_schema_loads_or_is_refused_in_one_line(
    tmp_path: Path, data: Any
) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    snap = outcome(load_inventory, path, "inv")
    if snap is not None:
        names = {h.name for h in snap.hosts}
        assert all(vm.host in names for vm in snap.vms), "a VM on an unknown host was accepted"


@FUZZ
@given(mutated(VALID_INVENTORY))
def test_mutated_inventory_yaml_loads_or_is_refused_in_one_line(tmp_path: Path, text: str) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(text, encoding="utf-8")
    outcome(load_inventory, path, "inv")


@pytest.mark.parametrize("power", [[], {}, [1], 1])
def test_inventory_power_of_the_wrong_type_is_refused(tmp_path: Path, power: Any) -> None:
    path = tmp_path / "inv.yaml"
    inv = {"hosts": [{"name": "h"}], "vms": [{"name": "v", "host": "h", "power": power}]}
    path.write_text(yaml.safe_dump(inv))
    with pytest.raises(ConfigError, match=r"vms\[0\]\.power") as caught:
        load_inventory(path, "inv")
    assert_clean(caught.value)


def test_inventory_bytes_that_are_not_utf8_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_bytes(b"hosts: [\xff\xfe]\n")
    with pytest.raises(ConfigError) as caught:
        load_inventory(path, "inv")
    assert_clean(caught.value)


# ---- lldpd JSON --------------------------------------------------------------------------


SAMPLES = sorted(p.read_text(encoding="utf-8") for p in DATA.glob("*.json"))


@FUZZ
@given(JSONISH.map(json.dumps) | st.sampled_from(SAMPLES).flatmap(mutated))
def test_lldpd_json_parses_or_is_refused_in_one_line(text: str) -> None:
    for parse in (parse_neighbors, parse_switch_side):
        result = outcome(parse, text)
        assert result is None or isinstance(result, dict)


@FUZZ
@given(st.binary(max_size=64))
def test_lldpd_bytes_parse_or_are_refused_in_one_line(raw: bytes) -> None:
    outcome(parse_neighbors, raw)


def test_recorded_lldpd_samples_still_parse() -> None:
    assert SAMPLES and all(isinstance(parse_neighbors(t), dict) for t in SAMPLES)


# ---- neighbour names (QueryNetworkHint, lldpd) through topology resolution ---------------


SWITCHES = [
    SwitchConfig(name="leaf1", driver="fake", edge_ports=["Ethernet1", "Ethernet2", "p1"],
                 aliases=["leaf1.dc1.example.com"], mgmt_address="192.0.2.11"),
    SwitchConfig(name="leaf2", driver="fake", edge_ports=["Gi1/0/1"]),
]  # fmt: skip
RESOLVER = Resolver(SWITCHES, [LinkConfig(host="esx9", nic="vmnic0", switch="leaf2", port="x")])
NEIGHBOR = st.builds(
    Neighbor, protocol=st.sampled_from(["cdp", "lldp"]), system_name=ODD_TEXT,
    port_id=ODD_TEXT, chassis_id=ODD_TEXT, mgmt_addr=ODD_TEXT, port_descr=ODD_TEXT,
)  # fmt: skip


@FUZZ
@given(st.lists(st.tuples(ODD_TEXT, st.none() | NEIGHBOR), max_size=4), ODD_TEXT)
def test_odd_neighbour_names_resolve_without_errors(
    nics: list[tuple[str, Neighbor | None]], host_name: str
) -> None:
    host = Host("lab", host_name, tuple(Nic(n, nb) for n, nb in nics))
    resolved = RESOLVER.resolve(host)
    edge = {s.name: s.edge_ports for s in SWITCHES}
    for up in resolved.uplinks:
        assert up.switch in edge
        heard = {p for n in host.nics if n.name == up.nic and n.neighbor
                 for p in (n.neighbor.port_id, n.neighbor.port_descr)}  # fmt: skip
        static = up.source == "static"
        assert static or up.port in edge[up.switch] or up.port in heard, "a port was invented"


@FUZZ
@given(ODD_TEXT)
def test_canonical_names_accept_any_text(text: str) -> None:
    assert isinstance(canonical_name(text), str) and isinstance(canonical_port(text), str)


def test_a_known_neighbour_with_odd_spelling_still_resolves() -> None:
    nb = Neighbor("lldp", "LEAF1.DC1.EXAMPLE.COM", "Et1")
    host = RESOLVER.resolve(Host("lab", "esx1", (Nic("vmnic0", nb),)))
    assert [(u.switch, u.port) for u in host.uplinks] == [("leaf1", "Ethernet1")]

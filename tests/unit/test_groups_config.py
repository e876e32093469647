"""groups:, policies: and firewalls: in vmfabric.yaml: the schema, and bad input as one
line naming the entry (exit 2 in the CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmfabric.config import load_config, parse_config
from vmfabric.config.groups import NftablesFirewall, PanosFirewall, parse_service
from vmfabric.core.errors import ConfigError
from vmfabric.runtime.groups import build, compile_groups

GOOD = """\
sessions:
  - {name: inv, kind: static, path: inventory.yaml}
switches: []
groups:
  - {name: web, match: {tag: "tier:web"}}
  - {name: app, match: {any: [{tag: app}, {name: "app-*"}]}}
  - {name: db, match: {name: "db-*"}, addresses: [10.9.0.0/24]}
  - {name: prod-web, match: {all: [{group: web}, {tag: "env:prod"}]}}
  - {name: legacy, match: {not: {guest_os: "ubuntu*"}, session: inv}}
  - {name: owned, match: {attribute: {owner: "team-*"}}}
policies:
  - {name: web-to-app, source: web, destination: app, service: tcp/8080, action: allow}
  - {name: app-to-db, source: app, destination: db, service: [tcp/5432, "tcp/6000-6010"],
     action: allow}
  - {name: default, source: any, destination: [web, app, db], action: drop,
     applied_to: [fw1]}
firewalls:
  - {name: fw1, kind: nftables, netns: null, table: vmfabric}
  - {name: pa1, kind: panos, host: 192.0.2.50, api_key: env:PA1_KEY, tag_prefix: vmf-}
  - {name: edl, kind: edl, token: env:EDL_TOKEN}
"""


def config_error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(__import__("yaml").safe_load(text), "vmfabric.yaml")
    return str(info.value)


def test_design_example_with_no_switches_is_valid() -> None:
    cfg = parse_config(__import__("yaml").safe_load(GOOD), "vmfabric.yaml")
    assert [g.name for g in cfg.groups] == ["web", "app", "db", "prod-web", "legacy", "owned"]
    assert isinstance(cfg.firewalls[0], NftablesFirewall)
    assert isinstance(cfg.firewalls[1], PanosFirewall)
    assert cfg.firewalls[1].tag_prefix == "vmf-"
    assert [str(s) for s in cfg.policies[1].service] == ["tcp/5432", "tcp/6000-6010"]
    assert cfg.switches == []


def test_build_returns_none_without_groups_or_firewalls() -> None:
    cfg = parse_config({"sessions": [], "switches": []}, "x")
    assert build(cfg) is None


def test_a_match_with_several_keys_needs_all_of_them() -> None:
    cfg = parse_config(__import__("yaml").safe_load(GOOD), "vmfabric.yaml")
    legacy = next(g for g in compile_groups(cfg.groups) if g.name == "legacy")
    assert type(legacy.match).__name__ == "AllOf"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "destination: db, service: [tcp/5432",
            "destination: dbx, service: [tcp/5432",
            "vmfabric.yaml: policies[1] (app-to-db): destination: unknown group 'dbx'",
        ),
        (
            '{name: web, match: {tag: "tier:web"}}',
            "{name: web, match: {group: prod-web}}",
            "vmfabric.yaml: groups: nested groups form a cycle: prod-web -> web -> prod-web",
        ),
        (
            "addresses: [10.9.0.0/24]",
            "addresses: [10.9.0.300/24]",
            "vmfabric.yaml: groups[2].addresses: '10.9.0.300/24' is not an IP address or CIDR",
        ),
        (
            "tcp/6000-6010",
            "tcp/6010-6000",
            "vmfabric.yaml: policies[1].service: service 'tcp/6010-6000': port range "
            "'6010-6000' is not within 1-65535",
        ),
        (
            "service: tcp/8080",
            "service: tcp/0",
            "vmfabric.yaml: policies[0].service: service 'tcp/0': port range '0' is not "
            "within 1-65535",
        ),
        (
            "kind: nftables",
            "kind: iptables",
            "vmfabric.yaml: firewalls[0]: unknown firewall kind 'iptables' (known: nftables, "
            "ovs-dfw, panos, edl)",
        ),
        (
            "api_key: env:PA1_KEY",
            "api_key: s3cret",
            "vmfabric.yaml: firewalls[1].api_key: literal API keys are refused: write "
            "env:VARIABLE or file:/path",
        ),
        (
            "table: vmfabric}",
            "table: vmfabric, tabel: x}",
            "vmfabric.yaml: firewalls[0].tabel: unknown key",
        ),
        (
            "applied_to: [fw1]",
            "applied_to: [fw9]",
            "vmfabric.yaml: policies[2] (default): applied_to: 'fw9' is neither a group nor "
            "a firewall",
        ),
        (
            "session: inv}",
            "session: nope}",
            "vmfabric.yaml: groups[4] (legacy): unknown session 'nope'",
        ),
        (
            "action: drop,",
            "action: deny,",
            "vmfabric.yaml: policies[2].action: Input should be 'allow', 'drop' or 'reject'",
        ),
    ],
)
def test_bad_input_is_one_line_naming_the_entry(old: str, new: str, expected: str) -> None:
    assert old in GOOD
    message = config_error(GOOD.replace(old, new, 1))
    assert message == expected
    assert "\n" not in message


def test_services_parse() -> None:
    assert parse_service("TCP/80,443").ports == ((80, 80), (443, 443))
    assert parse_service("icmp").ports == ()
    with pytest.raises(ValueError, match="icmp has no ports"):
        parse_service("icmp/8")


def test_load_config_reads_groups_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "vmfabric.yaml"
    path.write_text(GOOD)
    assert load_config(path).firewalls[2].kind == "edl"

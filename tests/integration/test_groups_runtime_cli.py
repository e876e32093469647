"""Security groups through the real command line: ``vmfabric config schema`` documents
every firewall kind's options, and bad ``groups:``/``policies:``/``firewalls:`` are one
line on stderr with exit 2 from ``config check``, ``sync`` and ``run``, with nothing
applied to the firewall."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.controller import wait_for
from vmfabric.lab import netns as nsx

pytestmark = pytest.mark.integration
VMFABRIC = str(Path(sys.executable).parent / "vmfabric")

GOOD: dict[str, Any] = {
    "store": "sqlite:///vf.db",
    "sessions": [{"name": "inv", "kind": "static", "path": "inv.yaml"}],
    "switches": [],
    "groups": [
        {"name": "web", "match": {"tag": "tier:web"}},
        {"name": "db", "match": {"name": "db-*"}, "addresses": ["10.9.0.0/24"]},
        {"name": "prod-web", "match": {"all": [{"group": "web"}, {"tag": "env:prod"}]}},
    ],
    "policies": [
        {
            "name": "web-to-db",
            "source": "web",
            "destination": "db",
            "service": "tcp/5432",
            "action": "allow",
        },
    ],
    "firewalls": [
        {"name": "fw1", "kind": "nftables", "netns": "NETNS"},
        {"name": "pa1", "kind": "panos", "host": "192.0.2.50", "api_key": "env:PA1_KEY"},
    ],
}


def vmfabric(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    argv = [VMFABRIC, *args, *(["-c", str(config)] if config else [])]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def write(tmp: Path, doc: dict[str, Any]) -> Path:
    inventory = {"hosts": [{"name": "hv1"}], "vms": [{"name": "db-1", "host": "hv1"}]}
    (tmp / "inv.yaml").write_text(yaml.safe_dump(inventory))
    path = tmp / "vmfabric.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def one_line_exit_2(done: subprocess.CompletedProcess[str], text: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmfabric: error: "), done.stderr
    assert text in lines[0], lines[0]


def bad(edit: str) -> dict[str, Any]:
    """GOOD with one mistake (``edit`` names it)."""
    doc: dict[str, Any] = json.loads(json.dumps(GOOD))
    g, p, f = doc["groups"], doc["policies"], doc["firewalls"]
    match edit:
        case "unknown group":
            p[0]["destination"] = "dbx"
        case "cycle":
            g[0]["match"] = {"group": "prod-web"}
        case "cidr":
            g[1]["addresses"] = ["10.9.0.300/24"]
        case "port range":
            p[0]["service"] = "tcp/6010-6000"
        case "firewall kind":
            f[0]["kind"] = "iptables"
        case "firewall option":
            f[0]["tabel"] = "x"
        case "missing option":
            del f[1]["host"]
        case "literal secret":
            f[1]["api_key"] = "s3cret"
    return doc


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ("unknown group", "policies[0] (web-to-db): destination: unknown group 'dbx'"),
        ("cycle", "groups: nested groups form a cycle: prod-web -> web -> prod-web"),
        ("cidr", "groups[1].addresses: '10.9.0.300/24' is not an IP address or CIDR"),
        ("port range", "policies[0].service: service 'tcp/6010-6000': port range '6010-6000'"),
        ("firewall kind", "firewalls[0]: unknown firewall kind 'iptables' (known: nftables"),
        ("firewall option", "firewalls[0].tabel: unknown key"),
        ("missing option", "firewalls[1].host: required key is missing"),
        ("literal secret", "firewalls[1].api_key: literal API keys are refused"),
    ],
)
def test_config_check_refuses_bad_security_config_in_one_line(
    tmp_path: Path, edit: str, message: str
) -> None:
    path = write(tmp_path, bad(edit))
    done = vmfabric("config", "check", config=path)
    one_line_exit_2(done, f"{path}: {message}")
    assert "PA1_KEY" not in done.stderr or edit == "literal secret"
    assert "s3cret" not in done.stderr


def test_config_check_accepts_the_good_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PA1_KEY", "a-key-for-the-check")  # config check resolves secrets
    done = vmfabric("config", "check", config=write(tmp_path, GOOD))
    assert done.returncode == 0, done.stderr
    assert "config OK" in done.stdout


def test_config_schema_shows_every_firewall_kinds_options() -> None:
    done = vmfabric("config", "schema")
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    items = schema["properties"]["firewalls"]["items"]
    assert items["discriminator"]["propertyName"] == "kind"
    assert set(items["discriminator"]["mapping"]) == {"nftables", "ovs-dfw", "panos", "edl"}
    defs = schema["$defs"]
    for model, option in (
        ("NftablesFirewall", "netns"),
        ("OvsDfwFirewall", "hosts"),
        ("PanosFirewall", "api_key"),
        ("EdlFirewall", "listen"),
    ):
        props = defs[model]["properties"]
        assert option in props, model
        assert all("description" in v for v in props.values()), model
    assert {"groups", "policies"} <= set(schema["properties"])
    assert "applied_to" in defs["PolicyConfig"]["properties"]


@pytest.fixture
def router() -> Iterator[str]:
    if shutil.which("nft") is None:
        pytest.skip("nftables is not installed")
    ns = nsx.add_netns(f"vfgc{uuid.uuid4().hex[:6]}")
    try:
        yield ns
    finally:
        nsx.delete_netns(ns)


@pytest.mark.parametrize("command", [("sync",), ("run",)])
def test_a_bad_policy_stops_sync_and_run_before_anything_is_applied(
    tmp_path: Path, router: str, command: tuple[str, ...]
) -> None:
    doc = bad("unknown group")
    doc["firewalls"] = [{"name": "fw1", "kind": "nftables", "netns": router}]
    path = write(tmp_path, doc)
    done = vmfabric(*command, config=path)
    one_line_exit_2(done, "unknown group 'dbx'")
    assert tables(router) == "", "nothing may be applied"


def test_the_fixed_file_is_applied_by_run(tmp_path: Path, router: str) -> None:
    """The control of the test above: with the policy fixed, run writes the table."""
    doc = bad("unknown group")
    doc["firewalls"] = [{"name": "fw1", "kind": "nftables", "netns": router}]
    doc["policies"][0]["destination"] = "db"
    path = write(tmp_path, doc)
    proc = subprocess.Popen([VMFABRIC, "run", "-c", str(path)], stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: "inet vmfabric" in tables(router), 30, "the table")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


def tables(netns: str) -> str:
    return nsx.run(["nft", "list", "tables"], netns).stdout.strip()

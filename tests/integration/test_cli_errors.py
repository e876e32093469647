"""Bad input through the real command: one line on stderr, exit 2 (1 for an unreachable
switch), and nothing applied to the switch."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from support.ovs_fixtures import MakeSwitch, OvsSwitch

pytestmark = pytest.mark.integration
VMFABRIC = str(Path(sys.executable).parent / "vmfabric")
INVENTORY = {
    "hosts": [{"name": "esx1", "nics": ["vmnic0"]}],
    "portgroups": [{"name": "web", "vlan": 110}],
    "vms": [{"name": "web-01", "host": "esx1", "portgroups": ["web"]}],
}


def setup(tmp: Path, switch: Mapping[str, object], inventory: object = INVENTORY) -> Path:
    (tmp / "inv.yaml").write_text(yaml.safe_dump(inventory))
    cfg = {
        "store": "sqlite:///vf.db",
        "sessions": [{"name": "inv", "kind": "static", "path": "inv.yaml"}],
        "switches": [switch],
        "links": [{"host": "esx1", "nic": "vmnic0", "switch": "leaf1", "port": "e1"}],
    }
    path = tmp / "vmfabric.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def vmfabric(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [VMFABRIC, *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def trunks(sw: OvsSwitch, port: str) -> set[int]:
    return {int(v) for v in re.findall(r"\d+", sw.ovs.vsctl("get", "Port", port, "trunks"))}


def switch_dict(sw: OvsSwitch, **over: object) -> dict[str, object]:
    return {**sw.config.model_dump(mode="json", exclude_none=True), **over}


def assert_one_line_error(done: subprocess.CompletedProcess[str], code: int, text: str) -> None:
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmfabric: error: "), done.stderr
    assert text in lines[0], lines[0]
    assert "Traceback" not in done.stderr


def test_edge_port_missing_from_bridge_is_bad_input_and_nothing_is_applied(
    ovs_switch: MakeSwitch, tmp_path: Path
) -> None:
    sw = ovs_switch(n=1, trunks=frozenset({4095}))
    path = setup(tmp_path, switch_dict(sw, edge_ports=["e1", "e9"]))
    done = vmfabric("sync", "-c", str(path))
    assert_one_line_error(done, 2, "switch leaf1: edge port e9 does not exist (OVSDB ")
    assert trunks(sw, "e1") == {4095}, "nothing may be applied when one port is missing"


def test_unreachable_ovsdb_is_a_runtime_failure(tmp_path: Path) -> None:
    switch = {"name": "leaf1", "driver": "ovs", "ovsdb": f"unix:{tmp_path}/none.sock",
              "bridge": "sw", "edge_ports": ["e1"], "timeout": 1}  # fmt: skip
    done = vmfabric("sync", "-c", str(setup(tmp_path, switch)))
    assert_one_line_error(done, 1, "leaf1")


def test_unknown_driver_is_bad_input(tmp_path: Path) -> None:
    switch = {"name": "leaf1", "driver": "junos-telnet", "edge_ports": ["e1"]}
    done = vmfabric("sync", "-c", str(setup(tmp_path, switch)))
    assert_one_line_error(done, 2, "unknown driver 'junos-telnet'")


def test_bad_inventory_file_is_bad_input(ovs_switch: MakeSwitch, tmp_path: Path) -> None:
    sw = ovs_switch(n=1, trunks=frozenset({4095}))
    bad = {**INVENTORY, "vms": [{"name": "web-01", "host": "esx9", "portgroups": ["web"]}]}
    done = vmfabric("sync", "-c", str(setup(tmp_path, switch_dict(sw), bad)))
    assert_one_line_error(done, 2, "vms[0].host: host 'esx9' is not in hosts")
    assert trunks(sw, "e1") == {4095}


def test_invalid_config_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "vmfabric.yaml"
    path.write_text("sessions: [{name: a, kind: static, path: x, allowed_vlans: 4095}]\n")
    done = vmfabric("show", "vm", "-c", str(path))
    assert_one_line_error(done, 2, "sessions[0].allowed_vlans: VLAN 4095 is outside 1-4094")


def test_show_json_works_and_unknown_vm_is_bad_input(
    ovs_switch: MakeSwitch, tmp_path: Path
) -> None:
    sw = ovs_switch(n=1, trunks=frozenset({4095}))
    path = setup(tmp_path, switch_dict(sw))
    assert vmfabric("sync", "-c", str(path)).returncode == 0
    assert trunks(sw, "e1") == {110}
    done = vmfabric("show", "vm", "web-01", "--json", "-c", str(path))
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout)[0]["attachments"] == [{"switch": "leaf1", "port": "e1"}]
    assert_one_line_error(vmfabric("show", "vm", "nope", "-c", str(path)), 2, "no VM named")


def test_sync_refuses_while_a_controller_runs_and_dry_run_still_works(
    ovs_switch: MakeSwitch, tmp_path: Path
) -> None:
    sw = ovs_switch(n=1, trunks=frozenset({4095}))
    path = setup(tmp_path, switch_dict(sw))
    run = subprocess.Popen([VMFABRIC, "run", "-c", str(path)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while 110 not in trunks(sw, "e1") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert 110 in trunks(sw, "e1"), "the controller never converged"
        done = vmfabric("sync", "-c", str(path))
        assert_one_line_error(done, 1, f"a vmfabric controller (pid {run.pid}) already writes")
        assert vmfabric("sync", "--dry-run", "-c", str(path)).returncode == 0
        second = vmfabric("run", "-c", str(path))
        assert_one_line_error(second, 1, "already writes this fabric")
    finally:
        run.terminate()
        run.wait(20)
    assert vmfabric("sync", "-c", str(path)).returncode == 0, "the lock must go with its holder"


def test_readable_secret_file_is_bad_input_for_a_vcenter_session(tmp_path: Path) -> None:
    secret = tmp_path / "vc.secret"
    secret.write_text("s3cret-value\n")
    secret.chmod(0o644)
    path = tmp_path / "vmfabric.yaml"
    path.write_text(
        yaml.safe_dump({
            "sessions": [{"name": "vc", "kind": "vcenter", "url": "http://127.0.0.1:9/sdk",
                          "username": "ro", "password": "file:vc.secret"}],
        })
    )  # fmt: skip
    done = vmfabric("sync", "--timeout", "5", "-c", str(path))
    assert_one_line_error(done, 2, "has mode 0644; make it 0600 or stricter")
    assert "s3cret-value" not in done.stderr + done.stdout


def test_version_is_the_package_version() -> None:
    from importlib.metadata import version

    done = vmfabric("--version")
    assert (done.returncode, done.stdout.strip()) == (0, f"vmfabric {version('vmfabric')}")


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["show", "vm", "--bogus"], "show vm: No such option: --bogus"),
        (["show", "vm", "--jsn"], "show vm: No such option: --jsn"),
        (["approve"], "approve: Missing argument"),
        (["approve", "seven"], "approve: Invalid value for"),
        (["show", "audit", "--limit", "x"], "show audit: Invalid value for '--limit'"),
        (["show", "vlan", "5000"], "show vlan: Invalid value for 'ID'"),
        (["show", "plan", "--status", "maybe"], "'maybe' is not one of applied, applying"),
        (["show", "session", "--autovlan"], "--autovlan needs a session NAME"),
        (["frobnicate"], "No such command 'frobnicate'"),
    ],
)
def test_argument_errors_are_one_line_and_exit_2(args: list[str], text: str) -> None:
    done = vmfabric(*args)
    assert_one_line_error(done, 2, text)
    assert "╭" not in done.stderr + done.stdout, "no framed box"


def test_two_entries_for_one_bridge_are_bad_input_and_nothing_is_applied(
    ovs_switch: MakeSwitch, tmp_path: Path
) -> None:
    sw = ovs_switch(n=2, trunks=frozenset({4095}))
    path = setup(tmp_path, switch_dict(sw))
    cfg = yaml.safe_load(path.read_text())
    cfg["switches"].append(switch_dict(sw, name="leaf2", edge_ports=["e2"]))
    path.write_text(yaml.safe_dump(cfg))
    for command in (("sync",), ("run",), ("config", "check")):
        done = vmfabric(*command, "-c", str(path))
        assert_one_line_error(done, 2, "switches[1]: leaf2 writes the same device as leaf1")
    assert trunks(sw, "e1") == {4095}, "nothing may be applied"
    assert not (tmp_path / "vf.db").exists(), "a refused config must not create the store"


def test_a_link_outside_the_edge_ports_is_bad_input_and_nothing_is_applied(
    ovs_switch: MakeSwitch, tmp_path: Path
) -> None:
    sw = ovs_switch(n=2, trunks=frozenset({4095}))
    path = setup(tmp_path, switch_dict(sw, edge_ports=["e2"]))
    done = vmfabric("sync", "-c", str(path))
    assert_one_line_error(done, 2, "links[0].port: 'e1' is not an edge port of switch leaf1")
    assert trunks(sw, "e1") == {4095} and trunks(sw, "e2") == {4095}


def test_config_check_says_what_it_checked(tmp_path: Path) -> None:
    secret = tmp_path / "vc.secret"
    secret.write_text("s3cret-value\n")
    secret.chmod(0o600)
    path = setup(tmp_path, {"name": "leaf1", "driver": "fake", "edge_ports": ["e1", "e2"]})
    cfg = yaml.safe_load(path.read_text())
    cfg["sessions"].append({"name": "vc", "kind": "vcenter", "url": "https://vc.example/sdk",
                            "username": "ro", "password": "file:vc.secret"})  # fmt: skip
    path.write_text(yaml.safe_dump(cfg))
    done = vmfabric("config", "check", "-c", str(path))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":", 1)[0] for line in lines] == [
        "store", "engine", "sessions", "secrets", "inventories", "switches", "links", "config OK",
    ]  # fmt: skip
    assert "sessions: 2 ok (inv static, vc vcenter)" in lines
    assert "inventories: 1 ok (inv: 1 hosts, 1 port groups, 1 VMs)" in lines
    assert f"store: sqlite {tmp_path}/vf.db (folder writable)" in lines
    assert "s3cret-value" not in done.stdout + done.stderr


def test_show_does_not_need_the_secrets_that_run_needs(tmp_path: Path) -> None:
    from vmfabric.store import Store

    path = tmp_path / "vmfabric.yaml"
    path.write_text(
        yaml.safe_dump({
            "store": "sqlite:///vf.db",
            "sessions": [{"name": "vc", "kind": "vcenter", "url": "https://vc.example/sdk",
                          "username": "ro", "password": "env:VMF_CLI_UNSET_PASSWORD"}],
        })
    )  # fmt: skip
    Store(f"sqlite:///{tmp_path}/vf.db").close()
    shown = vmfabric("show", "session", "--json", "-c", str(path))
    assert shown.returncode == 0, shown.stderr
    refused = vmfabric("sync", "--dry-run", "-c", str(path))
    assert_one_line_error(refused, 2, "VMF_CLI_UNSET_PASSWORD (from env:VMF_CLI_UNSET_PASSWORD)")

"""Issue 11 done-when for ``driver: eos``, through the real ``vmfabric`` command against a
simulated Arista switch (fake-switches' arista_generic over eAPI, extended in
``support/peers/fakeswitches_eos.py``; not a real EOS).

``vmfabric sync`` with a static inventory puts exactly the wanted VLANs on the trunks and
creates the missing ones in the VLAN database; a moved VM's VLAN follows it (edit the
inventory, sync again) and the VLAN vmfabric created is deleted once no port uses it;
static VLANs, access ports and non-edge ports stay as people left them; ``show interface``
tells static from dynamic. Bad input and faults each end in one line with the right exit
code, nothing applied, and the password printed nowhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from support.peers.eos import PASSWORD, PASSWORD_ENV, EosPeer, make_tls, require_fakeswitches

pytestmark = pytest.mark.integration
VMFABRIC = str(Path(sys.executable).parent / "vmfabric")
EDGE = ["Ethernet1", "Ethernet2", "Port-Channel10"]
VMS: list[dict[str, Any]] = [
    {"name": "web-01", "host": "esx1", "power": "on", "portgroups": ["web"]},
    {"name": "app-01", "host": "esx3", "power": "on", "portgroups": ["app"]},
]
INVENTORY: dict[str, Any] = {
    "hosts": [{"name": n, "nics": ["vmnic0"]} for n in ("esx1", "esx2", "esx3")],
    "portgroups": [{"name": "web", "vlan": 110}, {"name": "app", "vlan": "120-121"}],
    "vms": VMS,
}
LINKS = [
    {"host": "esx1", "nic": "vmnic0", "switch": "leaf1", "port": "Ethernet1"},
    {"host": "esx2", "nic": "vmnic0", "switch": "leaf1", "port": "Ethernet2"},
    {"host": "esx3", "nic": "vmnic0", "switch": "leaf1", "port": "Port-Channel10"},
]


@pytest.fixture
def peer() -> Iterator[EosPeer]:
    require_fakeswitches()
    running = EosPeer().start()
    try:
        for port in EDGE:
            running.set_trunk(port, ())
        yield running
    finally:
        running.stop()


def write(tmp: Path, switch: Mapping[str, Any], inventory: object = INVENTORY) -> Path:
    (tmp / "inv.yaml").write_text(yaml.safe_dump(inventory))
    cfg = {
        "store": "sqlite:///vf.db",
        "sessions": [{"name": "inv", "kind": "static", "path": "inv.yaml"}],
        "switches": [{"name": "leaf1", "driver": "eos", "edge_ports": EDGE, **switch}],
        "links": LINKS,
    }
    path = tmp / "vmfabric.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def vmfabric(*args: str, password: str = PASSWORD) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, PASSWORD_ENV: password}
    return subprocess.run(
        [VMFABRIC, *args], capture_output=True, text=True, timeout=120, check=False, env=env
    )


def trunk(peer: EosPeer, port: str) -> list[int] | None:
    vlans: list[int] | None = peer.state()["ports"][port]["trunk_vlans"]
    return vlans


def one_line(done: subprocess.CompletedProcess[str], code: int, text: str) -> str:
    assert done.returncode == code, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmfabric: error: "), done.stderr
    assert text in lines[0], lines[0]
    assert PASSWORD not in done.stdout + done.stderr
    return lines[0]


def test_sync_puts_the_wanted_vlans_creates_them_and_a_moved_vm_follows(
    peer: EosPeer, tmp_path: Path
) -> None:
    peer.set_trunk("Ethernet1", {50})  # a VLAN a person configured
    peer.configure(["vlan 50", "name prod-50"])
    peer.set_trunk("Ethernet5", {99})  # not an edge port
    path = write(tmp_path, peer.options())

    done = vmfabric("sync", "-c", str(path))

    assert done.returncode == 0, done.stderr
    assert trunk(peer, "Ethernet1") == [50, 110]
    assert trunk(peer, "Ethernet2") == []
    assert trunk(peer, "Port-Channel10") == [120, 121]
    assert trunk(peer, "Ethernet5") == [99]
    vlans = peer.state()["vlans"]
    assert vlans["110"] == "vmfabric-110" and vlans["120"] == "vmfabric-120"
    assert vlans["50"] == "prod-50"
    shown = json.loads(vmfabric("show", "interface", "--json", "-c", str(path)).stdout)
    by_port = {row["port"]: row for row in shown}
    assert by_port["Ethernet1"]["static_vlans"] == [50]
    assert by_port["Ethernet1"]["dynamic_vlans"] == [110]
    table = vmfabric("show", "interface", "-c", str(path)).stdout
    assert "110*" in table and "50*" not in table

    moved = {**INVENTORY, "vms": [{**VMS[0], "host": "esx2"}, VMS[1]]}
    write(tmp_path, peer.options(), moved)
    again = vmfabric("sync", "-c", str(path))

    assert again.returncode == 0, again.stderr
    assert trunk(peer, "Ethernet1") == [50], "the old port lost only vmfabric's VLAN"
    assert trunk(peer, "Ethernet2") == [110], "the VLAN followed the VM"
    assert peer.state()["vlans"]["110"] == "vmfabric-110", "still used on Ethernet2"
    assert trunk(peer, "Ethernet5") == [99]
    stats = peer.stats()
    third = vmfabric("sync", "-c", str(path))
    assert third.returncode == 0 and "nothing to change" in third.stdout
    assert peer.stats()["config_requests"] == stats["config_requests"], "a no-op sync wrote"


def test_a_vlan_vmfabric_created_is_deleted_once_no_port_uses_it(
    peer: EosPeer, tmp_path: Path
) -> None:
    path = write(tmp_path, peer.options())
    assert vmfabric("sync", "-c", str(path)).returncode == 0
    assert "110" in peer.state()["vlans"]
    gone = {**INVENTORY, "vms": [{**VMS[0], "power": "off"}, VMS[1]]}
    write(tmp_path, peer.options(), gone)
    assert vmfabric("sync", "-c", str(path)).returncode == 0
    assert trunk(peer, "Ethernet1") == []
    assert "110" not in peer.state()["vlans"]
    assert "120" in peer.state()["vlans"]


def test_an_edge_port_the_switch_lacks_is_bad_input_and_nothing_is_applied(
    peer: EosPeer, tmp_path: Path
) -> None:
    switch = {**peer.options(), "edge_ports": [*EDGE, "Ethernet9"]}
    line = one_line(vmfabric("sync", "-c", str(write(tmp_path, switch))), 2, "Ethernet9")
    assert "edge port Ethernet9 does not exist (eAPI http://127.0.0.1:" in line
    assert trunk(peer, "Ethernet1") == []
    assert peer.stats()["config_requests"] == len(EDGE), "only the fixture's own setup"


def test_wrong_credentials_are_one_line_exit_1_and_the_password_is_printed_nowhere(
    peer: EosPeer, tmp_path: Path
) -> None:
    path = write(tmp_path, peer.options())
    done = vmfabric("sync", "-vv", "-c", str(path), password="wrong-" + PASSWORD)
    assert done.returncode == 1, done.stderr
    assert "refused the credentials of user 'vmfabric' (HTTP 401)" in done.stderr
    assert "wrong-" + PASSWORD not in done.stdout + done.stderr
    assert trunk(peer, "Ethernet1") == []


def test_an_unreachable_switch_is_one_line_exit_1(tmp_path: Path) -> None:
    switch = {"host": "127.0.0.1", "port": 9, "transport": "http", "username": "vmfabric",
              "password": f"env:{PASSWORD_ENV}", "timeout": 2}  # fmt: skip
    one_line(vmfabric("sync", "-c", str(write(tmp_path, switch))), 1, "cannot reach the switch")


def test_a_missing_password_variable_is_bad_input(peer: EosPeer, tmp_path: Path) -> None:
    switch = {**peer.options(), "password": "env:VMF_NOT_SET_ANYWHERE"}
    one_line(vmfabric("sync", "-c", str(write(tmp_path, switch))), 2, "VMF_NOT_SET_ANYWHERE")


def test_bad_options_are_refused_by_config_check_with_one_line(tmp_path: Path) -> None:
    base = {"host": "192.0.2.1", "username": "u", "password": "env:VMF_X"}
    for bad, text in (
        ({**base, "password": "hunter2"}, "literal passwords are refused"),
        ({**base, "transport": "telnet"}, "transport"),
        ({**base, "colour": "red"}, "colour: unknown key"),
        ({"host": "192.0.2.1", "password": "env:VMF_X"}, "username: required key is missing"),
        ({**base, "host": "https://192.0.2.1/"}, "not a host name"),
        ({**base, "vlan_name": "vmf"}, "must contain {vlan}"),
    ):
        done = vmfabric("config", "check", "-c", str(write(tmp_path, bad)), password="x")
        line = one_line(done, 2, text)
        assert "hunter2" not in line


def test_tls_is_verified_by_default_and_a_private_ca_is_accepted_with_ca_file(
    tmp_path: Path,
) -> None:
    require_fakeswitches()
    tls = make_tls(tmp_path)
    peer = EosPeer(tls=tls).start()
    try:
        for port in EDGE:
            peer.set_trunk(port, ())
        untrusted = {k: v for k, v in peer.options().items() if k != "ca_file"}
        line = one_line(
            vmfabric("sync", "-c", str(write(tmp_path, untrusted))), 1, "TLS certificate"
        )
        assert "https://127.0.0.1:" in line and "not trusted" in line
        assert peer.stats()["requests"] == len(EDGE), "only the setup: none over an unverified TLS"
        assert vmfabric("sync", "-c", str(write(tmp_path, peer.options()))).returncode == 0
        assert trunk(peer, "Ethernet1") == [110]
    finally:
        peer.stop()


def test_a_refused_command_is_one_line_with_the_switchs_words_and_nothing_applied(
    peer: EosPeer, tmp_path: Path
) -> None:
    path = write(tmp_path, peer.options())
    before = peer.state()
    peer.fail_at_interface(2)
    line = one_line(vmfabric("sync", "-c", str(path)), 1, "EOS refused 'interface ")
    assert "Invalid input (eAPI error 1002)" in line
    after = peer.state()
    assert after == before, "the session was aborted: nothing of the plan applied"
    assert after["sessions"] == []

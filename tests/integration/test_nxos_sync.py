"""Issue 11 done-when for ``driver: nxos``, through the real ``vmfabric`` command against
the NX-API peer written here from Cisco's published shapes (``support/peers/nxapi.py``;
no stateful NX-OS simulator exists and this is not a real NX-OS).

``vmfabric sync`` puts exactly the wanted VLANs on the trunks (creating missing ones), a
moved VM's VLAN follows it, static VLANs and non-edge ports stay untouched, ``show
interface`` tells static from dynamic; faults and bad input end in one line, nothing
applied, the password printed nowhere."""

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

from support.peers.eos import make_tls
from support.peers.nxos import PASSWORD, PASSWORD_ENV, NxosPeer

pytestmark = pytest.mark.integration
VMFABRIC = str(Path(sys.executable).parent / "vmfabric")
EDGE = ["Ethernet1/1", "Ethernet1/2", "port-channel10"]
VMS: list[dict[str, Any]] = [
    {"name": "web-01", "host": "esx1", "power": "on", "portgroups": ["web"]},
    {"name": "app-01", "host": "esx3", "power": "on", "portgroups": ["app"]},
]
INVENTORY: dict[str, Any] = {
    "hosts": [{"name": n, "nics": ["vmnic0"]} for n in ("esx1", "esx2", "esx3")],
    "portgroups": [{"name": "web", "vlan": 110}, {"name": "app", "vlan": "120-121"}],
    "vms": VMS,
}
LINKS = [{"host": h, "nic": "vmnic0", "switch": "leaf1", "port": p}
         for h, p in zip(("esx1", "esx2", "esx3"), EDGE, strict=True)]  # fmt: skip


@pytest.fixture
def peer() -> Iterator[NxosPeer]:
    running = NxosPeer().start()
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
        "switches": [{"name": "leaf1", "driver": "nxos", "edge_ports": EDGE, **switch}],
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


def allowed(peer: NxosPeer, port: str) -> list[int] | None:
    vlans: list[int] | None = peer.state()["ifaces"][port]["allowed"]
    return vlans


def one_line(done: subprocess.CompletedProcess[str], code: int, text: str) -> str:
    assert done.returncode == code, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vmfabric: error: "), done.stderr
    assert text in lines[0], lines[0]
    assert PASSWORD not in done.stdout + done.stderr
    return lines[0]


def test_sync_puts_the_wanted_vlans_and_a_moved_vm_follows(peer: NxosPeer, tmp_path: Path) -> None:
    peer.set_trunk("Ethernet1/1", {50})
    peer.set_trunk("Ethernet1/5", {99})  # not an edge port
    path = write(tmp_path, peer.options())

    done = vmfabric("sync", "-c", str(path))

    assert done.returncode == 0, done.stderr
    assert allowed(peer, "Ethernet1/1") == [50, 110]
    assert allowed(peer, "port-channel10") == [120, 121]
    assert allowed(peer, "Ethernet1/5") == [99]
    assert peer.state()["vlans"]["110"] == "vmfabric-110"
    assert peer.state()["checkpoints"] == [], "each plan's checkpoint is deleted after it"
    shown = {r["port"]: r for r in json.loads(
        vmfabric("show", "interface", "--json", "-c", str(path)).stdout)}  # fmt: skip
    assert shown["Ethernet1/1"]["static_vlans"] == [50]
    assert shown["Ethernet1/1"]["dynamic_vlans"] == [110]

    write(tmp_path, peer.options(), {**INVENTORY, "vms": [{**VMS[0], "host": "esx2"}, VMS[1]]})
    again = vmfabric("sync", "-c", str(path))

    assert again.returncode == 0, again.stderr
    assert allowed(peer, "Ethernet1/1") == [50]
    assert allowed(peer, "Ethernet1/2") == [110]
    assert allowed(peer, "Ethernet1/5") == [99]


def test_faults_are_one_line_and_nothing_is_applied(peer: NxosPeer, tmp_path: Path) -> None:
    path = write(tmp_path, peer.options())
    before = peer.state()
    line = one_line(vmfabric("sync", "-c", str(path), password="wrong"), 1, "HTTP 401")
    assert "refused the credentials of user 'vmfabric'" in line
    peer.fail_at_interface(2)
    line = one_line(vmfabric("sync", "-c", str(path)), 1, "NX-OS refused 'interface ")
    assert "% Invalid command at '^' marker. (NX-API error -32602)" in line
    assert peer.state() == before, "rolled back to the checkpoint, which is gone too"
    missing = write(tmp_path, {**peer.options(), "edge_ports": [*EDGE, "Ethernet1/9"]})
    one_line(vmfabric("sync", "-c", str(missing)), 2, "edge port Ethernet1/9 does not exist")
    assert peer.state() == before
    closed = {**peer.options(), "port": 9, "timeout": 2}
    one_line(vmfabric("sync", "-c", str(write(tmp_path, closed))), 1, "cannot reach the switch")


def test_tls_is_verified_by_default(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)
    peer = NxosPeer(tls=tls).start()
    try:
        for port in EDGE:
            peer.set_trunk(port, ())
        untrusted = {k: v for k, v in peer.options().items() if k != "ca_file"}
        line = one_line(vmfabric("sync", "-c", str(write(tmp_path, untrusted))), 1, "TLS")
        assert "certificate not trusted" in line
        assert vmfabric("sync", "-c", str(write(tmp_path, peer.options()))).returncode == 0
        assert allowed(peer, "Ethernet1/1") == [110]
    finally:
        peer.stop()

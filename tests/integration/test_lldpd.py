"""Real lldpd in network namespaces: a hypervisor, an LLDP switch and a CDP-only switch.

    hv  --h1-- e1  leaf (LLDP, port ids are interface names, mgmt 192.0.2.11)
        --h3-- e2  leaf
        --h2-- g0  cdpsw (CDPv1 only)

Each lldpd runs in its namespace with its own ``-u`` socket in a private folder; all
names carry a per-test prefix; namespaces and daemons are removed by name and PID even when
a test fails. ``VMFABRIC_RECORD_LLDPD=1`` rewrites the samples in ``tests/data/lldpd/``.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vmfabric.config import LibvirtSession
from vmfabric.core.errors import TransientError
from vmfabric.core.model import Snapshot, SourceEvent
from vmfabric.inventory.topology.lldpd import (
    lldpcli_argv,
    read_neighbors,
    run_lldpcli,
    switch_side_neighbors,
)

pytestmark = pytest.mark.integration
DATA = Path(__file__).parent.parent / "data" / "lldpd"
# Waits end as soon as their condition holds; the deadline only bounds a failure, and is
# sized for daemons starved on a loaded 2-core machine (frames every second, see NUDGE).
WAIT = 90.0
NUDGE = 2.0
NODE = (
    "<node><cpu><nodes>1</nodes><sockets>1</sockets><cores>1</cores><threads>1</threads>"
    "<active>1</active><mhz>1000</mhz><model>i686</model></cpu><memory>1048576</memory></node>"
)


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass
class Lab:
    """The namespaces, links and lldpd daemons of one test."""

    prefix: str
    folder: Path
    namespaces: list[str] = field(default_factory=list)
    daemons: list[subprocess.Popen[bytes]] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)

    def ns(self, role: str) -> str:
        return f"{self.prefix}{role}"

    def sock(self, role: str) -> str:
        return str(self.folder / f"{self.ns(role)}.sock")

    def add_ns(self, role: str) -> str:
        name = self.ns(role)
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")
        return name

    def wire(self, a: str, a_if: str, b: str, b_if: str) -> None:
        ip("link", "add", a_if, "netns", self.ns(a), "type", "veth",
           "peer", "name", b_if, "netns", self.ns(b))  # fmt: skip
        ip("-n", self.ns(a), "link", "set", a_if, "up")
        ip("-n", self.ns(b), "link", "set", b_if, "up")

    def lldpd(self, role: str, hostname: str, *flags: str, portid_ifname: bool = False) -> None:
        conf = self.folder / f"{role}.d"
        conf.mkdir()
        lines = [f'configure system hostname "{hostname}"', "configure lldp tx-interval 1"]
        if portid_ifname:
            lines.append("configure lldp portidsubtype ifname")
        (conf / "lab.conf").write_text("\n".join(lines) + "\n", encoding="utf-8")
        pidfile = str(self.folder / f"{role}.pid")
        argv = ["ip", "netns", "exec", self.ns(role), "lldpd", "-d", *flags,
                "-u", self.sock(role), "-p", pidfile, "-O", str(conf)]  # fmt: skip
        log = (self.folder / f"{role}.log").open("wb")
        self.daemons.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
        self.roles.append(role)

    def cli(self, role: str, fmt: str = "json") -> str:
        return run_lldpcli(lldpcli_argv(netns=self.ns(role), socket=self.sock(role), fmt=fmt))

    def wait_neighbors(self, role: str, count: int, timeout: float = WAIT) -> None:
        """Wait until ``role``'s lldpd knows ``count`` neighbours. Every ``NUDGE`` seconds
        without them, every daemon is asked to send its frames now (``lldpcli update``): a
        frame sent while its peer was still starting is lost, and the next one would wait
        for the tx interval (30 s until the daemon has read its configuration)."""
        deadline = time.monotonic() + timeout
        nudge = time.monotonic() + NUDGE
        while True:
            try:
                known = len(read_neighbors(netns=self.ns(role), socket=self.sock(role)))
            except TransientError:
                known = -1  # lldpd still starting
            if known >= count:
                return
            now = time.monotonic()
            assert now < deadline, f"{role}: {known} of {count} neighbours after {timeout}s"
            if now >= nudge:
                self.send_now()
                nudge = now + NUDGE
            time.sleep(0.2)

    def send_now(self) -> None:
        """Ask every daemon to send its LLDP/CDP frames at once (failures: still starting)."""
        for role in self.roles:
            argv = ["ip", "netns", "exec", self.ns(role), "lldpcli", "-u", self.sock(role)]
            subprocess.run([*argv, "update"], capture_output=True, timeout=30, check=False)

    def cleanup(self) -> None:
        for proc in self.daemons:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.daemons:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for name in self.namespaces:
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture
def lab() -> Iterator[Lab]:
    if shutil.which("lldpd") is None:
        pytest.skip("lldpd (apt lldpd) is not installed")
    prefix = f"vl{uuid.uuid4().hex[:5]}"  # + role (1 char) + iface (2): 8 <= 15
    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    os.chmod(folder, 0o755)  # noqa: S103 - lldpcli is setuid _lldpd: it must reach the sockets
    built = Lab(prefix, folder)
    try:
        yield built
    finally:
        built.cleanup()


@pytest.fixture
def three_nodes(lab: Lab) -> Lab:
    for role in ("h", "s", "c"):
        lab.add_ns(role)
    p = lab.prefix
    lab.wire("h", f"{p}h1", "s", f"{p}e1")
    lab.wire("h", f"{p}h2", "c", f"{p}g0")
    lab.wire("h", f"{p}h3", "s", f"{p}e2")
    ip("-n", lab.ns("s"), "addr", "add", "192.0.2.11/24", "dev", f"{p}e1")
    lab.lldpd("h", "hv-ünï.example", "-c")
    lab.lldpd("s", "leaf1", "-m", "192.0.2.11", portid_ifname=True)
    lab.lldpd("c", "cdp-sw1.lab", "-ll", "-cc")  # CDPv1 only, no LLDP
    # Every side the tests read. The hypervisor speaks CDP on h2 only once it has heard
    # cdpsw's CDP, so cdpsw hears it last: waiting for the hypervisor alone left a race.
    lab.wait_neighbors("h", 3)
    lab.wait_neighbors("s", 2)
    lab.wait_neighbors("c", 1)
    return lab


def test_hypervisor_hears_switch_names_and_ports(three_nodes: Lab) -> None:
    lab, p = three_nodes, three_nodes.prefix
    found = read_neighbors(netns=lab.ns("h"), socket=lab.sock("h"))
    assert {i: (n.protocol, n.system_name, n.port_id) for i, n in found.items()} == {
        f"{p}h1": ("lldp", "leaf1", f"{p}e1"),
        f"{p}h2": ("cdp", "cdp-sw1.lab", f"{p}g0"),
        f"{p}h3": ("lldp", "leaf1", f"{p}e2"),
    }
    assert found[f"{p}h1"].mgmt_addr == "192.0.2.11"
    assert found[f"{p}h1"].chassis_id == found[f"{p}h3"].chassis_id != ""


def test_switch_side_sees_which_host_nic_is_on_each_port(three_nodes: Lab) -> None:
    lab, p = three_nodes, three_nodes.prefix
    seen = switch_side_neighbors(netns=lab.ns("s"), socket=lab.sock("s"))
    assert {port: (s.host, s.nic) for port, s in seen.items()} == {
        f"{p}e1": ("hv-ünï.example", f"{p}h1"),
        f"{p}e2": ("hv-ünï.example", f"{p}h3"),
    }
    cdp_side = switch_side_neighbors(netns=lab.ns("c"), socket=lab.sock("c"))
    assert cdp_side[f"{p}g0"].host == "hv-ünï.example"
    assert cdp_side[f"{p}g0"].neighbor.protocol == "cdp"


def test_configured_command_with_host_placeholder(three_nodes: Lab) -> None:
    lab = three_nodes
    command = (
        f"ip netns exec {lab.prefix}{{host}} lldpcli -u {lab.folder}/{lab.prefix}{{host}}.sock"
        " -f json0 show neighbors"
    )
    assert len(read_neighbors(command=command, host="s")) == 2


def test_lldpd_not_running_is_a_transient_one_liner(lab: Lab) -> None:
    lab.add_ns("x")
    with pytest.raises(TransientError) as info:
        read_neighbors(netns=lab.ns("x"), socket=lab.sock("x"), timeout=5)
    message = str(info.value)
    assert "\n" not in message and lab.sock("x") in message
    assert "exit" in message


def test_libvirt_hosts_carry_their_lldp_neighbours(three_nodes: Lab) -> None:
    from vmfabric.sources.libvirt import LibvirtSource

    lab = three_nodes
    node = lab.folder / "h.xml"
    node.write_text(NODE, encoding="utf-8")
    command = (
        f"ip netns exec {lab.prefix}{{host}} lldpcli -u {lab.folder}/{lab.prefix}{{host}}.sock"
        " -f json show neighbors"
    )
    config = LibvirtSession(kind="libvirt", name="kvm", uris={"h": f"test://{node}"},
                            lldp_command=command)  # fmt: skip
    source = LibvirtSource(config, lab.folder)
    events: queue.Queue[SourceEvent] = queue.Queue()
    stop = threading.Event()
    thread = threading.Thread(target=source.run, args=(events.put, stop), daemon=True)
    thread.start()
    try:
        snapshot = next(e for e in iter(lambda: events.get(timeout=20), None)
                        if isinstance(e, Snapshot))  # fmt: skip
    finally:
        stop.set()
        thread.join(timeout=10)
    (host,) = snapshot.hosts
    heard = {nic.name: nic.neighbor.system_name for nic in host.nics if nic.neighbor}
    assert heard == {f"{lab.prefix}h1": "leaf1", f"{lab.prefix}h2": "cdp-sw1.lab",
                     f"{lab.prefix}h3": "leaf1"}  # fmt: skip
    assert not thread.is_alive()


@pytest.mark.skipif(not os.environ.get("VMFABRIC_RECORD_LLDPD"), reason="recording only")
def test_record_samples(three_nodes: Lab) -> None:
    lab = three_nodes
    lab.add_ns("x")
    lab.lldpd("x", "lonely")
    lab.wait_neighbors("x", 0)  # its socket answers
    for role, stem in (("h", "hv_lldp_and_cdp"), ("s", "switch_two_ports"),
                       ("c", "cdp_switch_one_port"), ("x", "empty")):  # fmt: skip
        for fmt, suffix in (("json", ".json"), ("json0", ".json0.json")):
            text = lab.cli(role, fmt)
            assert text.strip().startswith("{")
            (DATA / f"{stem}{suffix}").write_text(text, encoding="utf-8")

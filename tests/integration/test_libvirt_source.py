"""LibvirtSource against libvirt's real test driver: events, not polling, move VMs.

Each hypervisor is a ``test:///ABS/PATH.xml`` node file written by the test. The test
driver keeps its state inside the connection, so tests define, start, stop and undefine
domains through ``source.connection(host)`` and watch the events the source emits.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from vmfabric.config import LibvirtSession
from vmfabric.core.model import (
    PortGroup,
    PortGroupUpsert,
    Power,
    SessionStatus,
    Snapshot,
    SourceEvent,
    VmRemoved,
    VmUpsert,
)
from vmfabric.sources.base import create_source
from vmfabric.sources.libvirt import LibvirtSource

pytestmark = pytest.mark.integration
T = TypeVar("T")

NODE = """<node>
  <cpu><nodes>1</nodes><sockets>1</sockets><cores>2</cores><threads>1</threads>
       <active>2</active><mhz>2000</mhz><model>i686</model></cpu>
  <memory>2097152</memory>
  {extra}
</node>
"""
NETWORK = """<network><name>prod</name><bridge name='br-prod'/>
  <virtualport type='openvswitch'/>
  <portgroup name='web' default='yes'><vlan><tag id='130'/></vlan></portgroup>
  <portgroup name='db'><vlan><tag id='140'/></vlan></portgroup>
  <portgroup name='plain'/>
</network>
<network><name>edge</name><vlan><tag id='190'/></vlan><portgroup name='x'/></network>"""
TRUNK_NIC = """<interface type='bridge'><source bridge='br-int'/>
  <virtualport type='openvswitch'/>
  <vlan trunk='yes'><tag id='120'/><tag id='110'/></vlan></interface>"""


def domain_xml(name: str, uid: str, nics: str = "") -> str:
    return (
        f"<domain type='test'><name>{name}</name><uuid>{uid}</uuid><memory>1024</memory>"
        f"<os><type>hvm</type></os><devices>{nics}</devices></domain>"
    )


def access_nic(vlan: int, bridge: str = "br-int") -> str:
    return (
        f"<interface type='bridge'><source bridge='{bridge}'/>"
        f"<virtualport type='openvswitch'/><vlan><tag id='{vlan}'/></vlan></interface>"
    )


def network_nic(network: str, portgroup: str = "") -> str:
    attr = f" portgroup='{portgroup}'" if portgroup else ""
    return f"<interface type='network'><source network='{network}'{attr}/></interface>"


@dataclass
class Running:
    """A LibvirtSource running in its thread, with everything it emitted."""

    source: LibvirtSource
    inbox: queue.Queue[tuple[float, SourceEvent]]
    seen: list[SourceEvent] = field(default_factory=list)

    def wait_for(self, kind: type[T], match: Callable[[T], bool], timeout: float = 10) -> T:
        """The next emitted ``kind`` event for which ``match`` holds (others are kept)."""
        return self.wait_timed(kind, match, timeout)[1]

    def wait_timed(
        self, kind: type[T], match: Callable[[T], bool], timeout: float = 10
    ) -> tuple[float, T]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                at, event = self.inbox.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(event)
            if isinstance(event, kind) and match(event):
                return at, event
        raise AssertionError(f"no matching {kind.__name__} within {timeout}s; saw {self.seen}")

    def count(self, kind: type[Any]) -> int:
        return sum(isinstance(e, kind) for e in self.seen)

    def conn(self, host: str) -> Any:
        return self.source.connection(host)


def settled(status: SessionStatus) -> bool:
    return status.state != "connecting"


def node_file(tmp_path: Path, name: str, extra: str = "") -> str:
    path = tmp_path / f"{name}.xml"
    path.write_text(NODE.format(extra=extra), encoding="utf-8")
    return f"test://{path}"


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Start LibvirtSources on the given URIs; stop and join them at teardown."""
    started: list[tuple[threading.Event, threading.Thread]] = []

    def _start(uris: dict[str, str], lldp_command: str | None = None) -> Running:
        config = LibvirtSession(kind="libvirt", name="kvm", uris=uris, lldp_command=lldp_command)
        source = create_source(config, tmp_path)
        assert isinstance(source, LibvirtSource)
        inbox: queue.Queue[tuple[float, SourceEvent]] = queue.Queue()
        stop = threading.Event()
        thread = threading.Thread(
            target=source.run, args=(lambda e: inbox.put((time.monotonic(), e)), stop), daemon=True
        )
        thread.start()
        started.append((stop, thread))
        return Running(source, inbox)

    try:
        yield _start
    finally:
        for stop, thread in started:
            stop.set()
            thread.join(timeout=10)
        assert not any(t.is_alive() for _, t in started), "a LibvirtSource did not stop"


class Libvirtd:
    """A private libvirtd, run as ``nobody`` in session mode so that it touches nothing
    outside its own folder; its test driver is reached as ``test+unix:///default``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.proc: subprocess.Popen[bytes] | None = None
        (folder / "libvirtd.conf").write_text(
            f'unix_sock_dir = "{folder}"\nauth_unix_rw = "none"\nauth_unix_ro = "none"\n'
            f'log_outputs = "3:file:{folder}/libvirtd.log"\n',
            encoding="utf-8",
        )

    @property
    def uri(self) -> str:
        return f"test+unix:///default?socket={self.folder}/libvirt-sock"

    def start(self) -> None:
        env = {"PATH": "/usr/sbin:/usr/bin:/bin", "HOME": str(self.folder)}
        env |= {f"XDG_{k}": f"{self.folder}/{k.lower()}" for k in ("RUNTIME_DIR", "CONFIG_HOME")}
        env["XDG_CACHE_HOME"] = f"{self.folder}/cache"
        argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "env", "-i"]
        argv += [f"{k}={v}" for k, v in env.items()]
        argv += ["libvirtd", "-f", f"{self.folder}/libvirtd.conf", "-p", f"{self.folder}/pid"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while not (self.folder / "libvirt-sock").exists():
            assert self.proc.poll() is None, "libvirtd exited at start"
            assert time.monotonic() < deadline, "libvirtd made no socket within 15 s"
            time.sleep(0.05)

    def stop(self, how: signal.Signals = signal.SIGTERM) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(how)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        (self.folder / "libvirt-sock").unlink(missing_ok=True)


@pytest.fixture
def libvirtd() -> Iterator[Libvirtd]:
    if shutil.which("libvirtd") is None or shutil.which("setpriv") is None:
        pytest.skip("libvirtd (apt libvirt-daemon) is not installed")
    folder = Path(tempfile.mkdtemp(prefix=f"vfl-lvd{os.getpid()}-"))
    os.chmod(folder, 0o777)  # noqa: S103 - libvirtd runs as nobody in this private folder
    daemon = Libvirtd(folder)
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_snapshot_reads_domains_trunks_and_network_portgroups(
    tmp_path: Path, start: Callable[..., Running]
) -> None:
    uid = str(uuid.uuid4())
    nics = TRUNK_NIC + network_nic("prod") + network_nic("prod", "db")
    nics += network_nic("prod", "plain") + network_nic("edge", "x")
    hv1 = node_file(tmp_path, "hv1", NETWORK + domain_xml("web-01", uid, nics))
    run = start({"hv1": hv1})
    status = run.wait_for(SessionStatus, settled)
    snap = run.wait_for(Snapshot, lambda s: True)
    assert status.state == "connected" and status.warnings == ()
    assert run.seen[0] == SessionStatus("kvm", "connecting")
    assert status.version.startswith("libvirt ")
    assert [h.name for h in snap.hosts] == ["hv1"]
    (vm,) = snap.vms
    assert (vm.id, vm.name, vm.host) == (uid, "web-01", "hv1")
    assert vm.power is Power.ON  # domains in a node file start running
    assert set(vm.networks) == {"vlan110,120", "prod/web", "prod/db", "edge"}  # plain: untagged
    assert set(snap.portgroups) == {
        PortGroup("kvm", "vlan110,120", frozenset({110, 120}), "br-int"),
        PortGroup("kvm", "prod/web", frozenset({130}), "br-prod"),
        PortGroup("kvm", "prod/db", frozenset({140}), "br-prod"),
        PortGroup("kvm", "edge", frozenset({190}), ""),  # x has no VLAN: the network's
    }


def test_events_alone_move_a_vm_between_hypervisors(
    tmp_path: Path, start: Callable[..., Running]
) -> None:
    run = start({"hv1": node_file(tmp_path, "hv1"), "hv2": node_file(tmp_path, "hv2")})
    snap = run.wait_for(Snapshot, lambda s: True)
    assert snap.vms == () and {h.name for h in snap.hosts} == {"hv1", "hv2"}
    uid = str(uuid.uuid4())
    xml = domain_xml("app-01", uid, access_nic(110))

    run.conn("hv1").defineXML(xml).create()
    on_hv1 = run.wait_for(VmUpsert, lambda e: e.vm.power is Power.ON)
    assert (on_hv1.vm.host, on_hv1.vm.networks) == ("hv1", ("vlan110",))
    assert run.count(PortGroupUpsert) == 1

    dom = run.conn("hv1").lookupByUUIDString(uid)  # "migrate": leave hv1, start on hv2
    dom.destroy()
    dom.undefine()
    run.wait_for(VmRemoved, lambda e: e.id == uid)
    run.conn("hv2").defineXML(xml).create()
    on_hv2 = run.wait_for(VmUpsert, lambda e: e.vm.power is Power.ON)
    assert on_hv2.vm.host == "hv2" and on_hv2.vm.id == uid

    dom2 = run.conn("hv2").lookupByUUIDString(uid)
    dom2.destroy()
    # the next upsert of the VM that says it is off (an upsert with what the running
    # domain reported later, its addresses, may come first)
    off = run.wait_for(VmUpsert, lambda e: e.vm.id == uid and e.vm.power is not Power.ON)
    assert (off.vm.power, off.vm.host) == (Power.OFF, "hv2")
    dom2.undefine()
    run.wait_for(VmRemoved, lambda e: e.id == uid)
    assert run.count(Snapshot) == 1  # only the first: every move came from events


def test_live_migration_order_never_removes_the_moved_vm(
    tmp_path: Path, start: Callable[..., Running]
) -> None:
    run = start({"hv1": node_file(tmp_path, "hv1"), "hv2": node_file(tmp_path, "hv2")})
    run.wait_for(Snapshot, lambda s: True)
    uid = str(uuid.uuid4())
    xml = domain_xml("db-01", uid, access_nic(140))
    run.conn("hv1").defineXML(xml).create()
    run.wait_for(VmUpsert, lambda e: e.vm.power is Power.ON and e.vm.host == "hv1")

    run.conn("hv2").defineXML(xml).create()  # the destination runs before the source stops
    run.wait_for(VmUpsert, lambda e: e.vm.power is Power.ON and e.vm.host == "hv2")
    old = run.conn("hv1").lookupByUUIDString(uid)
    old.destroy()
    old.undefine()
    marker = str(uuid.uuid4())  # a later event proves the source handled the two above
    run.conn("hv1").defineXML(domain_xml("marker", marker))
    run.wait_for(VmUpsert, lambda e: e.vm.id == marker)
    moved = [e for e in run.seen if isinstance(e, VmUpsert | VmRemoved) and _id(e) == uid]
    assert not any(isinstance(e, VmRemoved) for e in moved), moved
    last = moved[-1]
    assert isinstance(last, VmUpsert) and (last.vm.host, last.vm.power) == ("hv2", Power.ON)


def _id(event: VmUpsert | VmRemoved) -> str:
    return event.vm.id if isinstance(event, VmUpsert) else event.id


def test_bad_uri_names_the_host_and_the_other_host_keeps_working(
    tmp_path: Path, start: Callable[..., Running]
) -> None:
    missing = f"test://{tmp_path}/absent.xml"
    run = start({"hv1": node_file(tmp_path, "hv1"), "bad": missing})
    status = run.wait_for(SessionStatus, settled)
    assert status.state == "connected"
    assert len(status.warnings) == 1 and "hypervisor bad unreadable" in status.warnings[0]
    assert "its VMs are unknown" in status.warnings[0]
    snap = run.wait_for(Snapshot, lambda s: True)
    assert {h.name for h in snap.hosts} == {"hv1", "bad"}
    uid = str(uuid.uuid4())
    run.conn("hv1").defineXML(domain_xml("ok-01", uid, access_nic(150))).create()
    assert run.wait_for(VmUpsert, lambda e: e.vm.power is Power.ON).vm.host == "hv1"


def test_no_readable_hypervisor_is_disconnected_with_each_host_named(
    tmp_path: Path, start: Callable[..., Running]
) -> None:
    run = start({"a": f"test://{tmp_path}/a.xml", "b": f"test://{tmp_path}/b.xml"})
    status = run.wait_for(SessionStatus, settled)
    assert status.state == "disconnected"
    assert status.error.startswith("a: ") and "; b: " in status.error
    assert "\n" not in status.error
    with pytest.raises(AssertionError):
        run.wait_for(Snapshot, lambda s: True, timeout=1.5)


def test_unplaceable_interfaces_warn_without_crashing(
    tmp_path: Path, start: Callable[..., Running]
) -> None:
    run = start({"hv1": node_file(tmp_path, "hv1", NETWORK)})
    run.wait_for(Snapshot, lambda s: True)
    uid = str(uuid.uuid4())
    nics = network_nic("nowhere") + network_nic("prod", "nosuch") + access_nic(160)
    nics += access_nic(4095)
    run.conn("hv1").defineXML(domain_xml("odd-01", uid, nics))
    status = run.wait_for(SessionStatus, lambda s: len(s.warnings) == 3)
    assert status.state == "connected"
    assert "hv1: VM odd-01 interface 0: network 'nowhere' is not defined" in status.warnings[0]
    assert "network 'prod' has no portgroup 'nosuch'" in status.warnings[1]
    assert status.warnings[2] == "hv1: VM odd-01 interface 3: VLAN 4095 is outside 1-4094"
    vm = run.wait_for(VmUpsert, lambda e: e.vm.id == uid).vm
    assert vm.networks == ("vlan160",) and vm.power is Power.OFF


def test_lldp_command_fills_host_nics(tmp_path: Path, start: Callable[..., Running]) -> None:
    data = Path(__file__).parent.parent / "data" / "lldpd"
    (tmp_path / "hv1.lldp").write_bytes((data / "hv_lldp_and_cdp.json").read_bytes())
    command = f"cat {tmp_path}/{{host}}.lldp"
    run = start({"hv1": node_file(tmp_path, "hv1"), "hv2": node_file(tmp_path, "hv2")}, command)
    status = run.wait_for(SessionStatus, settled)
    snap = run.wait_for(Snapshot, lambda s: True)
    hosts = {h.name: h for h in snap.hosts}
    nics = {n.name: n.neighbor for n in hosts["hv1"].nics}
    assert len(nics) == 3
    heard = [(n.system_name, n.port_id[-2:], n.protocol) for n in nics.values() if n]
    assert heard == [("leaf1", "e1", "lldp"), ("cdp-sw1.lab", "g0", "cdp"), ("leaf1", "e2", "lldp")]
    assert hosts["hv2"].nics == ()
    assert any("hv2: LLDP neighbours unknown" in w for w in status.warnings)


def _is_vm(uid: str, power: Power) -> Callable[[VmUpsert], bool]:
    return lambda e: e.vm.id == uid and e.vm.power is power


def test_create_to_vmupsert_latency(
    tmp_path: Path, start: Callable[..., Running], record_property: Callable[[str, object], None]
) -> None:
    run = start({"hv1": node_file(tmp_path, "hv1")})
    run.wait_for(Snapshot, lambda s: True)
    conn = run.conn("hv1")
    delays: list[float] = []
    for i in range(20):
        uid = str(uuid.uuid4())
        dom = conn.defineXML(domain_xml(f"lat-{i:02d}", uid, access_nic(200 + i)))
        run.wait_for(VmUpsert, _is_vm(uid, Power.OFF))
        began = time.monotonic()
        dom.create()
        at, _ = run.wait_timed(VmUpsert, _is_vm(uid, Power.ON))
        delays.append(at - began)
    median_ms = statistics.median(delays) * 1000
    record_property("create_to_vmupsert_median_ms", round(median_ms, 2))
    print(f"create() -> VmUpsert: median {median_ms:.2f} ms, max {max(delays) * 1000:.2f} ms")
    assert median_ms < 500


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])  # KILL: close callback only
def test_dropped_connection_keeps_vms_then_reconnects_with_a_fresh_snapshot(
    tmp_path: Path, start: Callable[..., Running], libvirtd: Libvirtd, how: signal.Signals
) -> None:
    run = start({"hv1": node_file(tmp_path, "hv1"), "remote": libvirtd.uri})
    first = run.wait_for(Snapshot, lambda s: True)
    builtin = {vm.id for vm in first.vms if vm.host == "remote"}
    assert builtin  # test:///default comes with one running domain
    uid = str(uuid.uuid4())
    run.conn("remote").defineXML(domain_xml("r-01", uid, access_nic(170))).create()
    run.wait_for(VmUpsert, lambda e: e.vm.id == uid and e.vm.power is Power.ON)

    libvirtd.stop(how)  # a real drop
    down = run.wait_for(SessionStatus, lambda s: bool(s.warnings))
    assert down.state == "connected"
    assert down.warnings[0].startswith("hypervisor remote unreadable (")
    assert down.warnings[0].endswith("its last known VMs are kept")
    other = str(uuid.uuid4())
    run.conn("hv1").defineXML(domain_xml("h-01", other)).create()
    run.wait_for(VmUpsert, lambda e: e.vm.id == other and e.vm.power is Power.ON)
    assert not any(isinstance(e, VmRemoved | Snapshot) for e in run.seen[run.seen.index(down) :])

    libvirtd.start()  # back: Backoff retries, then one fresh snapshot of both hosts
    fresh = run.wait_for(Snapshot, lambda s: True, timeout=20)
    ids = {vm.id for vm in fresh.vms}
    assert builtin | {other} <= ids
    assert uid not in ids  # the new daemon's test driver never saw r-01
    back = run.seen[-2]
    assert isinstance(back, SessionStatus) and (back.state, back.warnings) == ("connected", ())
    assert run.count(Snapshot) == 2


def test_unreadable_hypervisor_is_retried_until_readable(
    tmp_path: Path, start: Callable[..., Running]
) -> None:
    late = tmp_path / "late.xml"
    run = start({"hv1": node_file(tmp_path, "hv1"), "late": f"test://{late}"})
    run.wait_for(Snapshot, lambda s: True)
    node_file(tmp_path, "late", domain_xml("born-late", str(uuid.uuid4())))
    fresh = run.wait_for(Snapshot, lambda s: True, timeout=10)
    assert [vm.name for vm in fresh.vms] == ["born-late"]
    assert run.seen[-2] == SessionStatus("kvm", "connected", version=fresh_version(run))


def fresh_version(run: Running) -> str:
    statuses = [e for e in run.seen if isinstance(e, SessionStatus) and e.version]
    return statuses[-1].version


def test_undefining_a_running_domain_keeps_it_until_it_stops(
    tmp_path: Path, start: Callable[..., Running]
) -> None:
    run = start({"hv1": node_file(tmp_path, "hv1")})
    run.wait_for(Snapshot, lambda s: True)
    uid = str(uuid.uuid4())
    dom = run.conn("hv1").defineXML(domain_xml("tr-01", uid, access_nic(180)))
    dom.create()
    run.wait_for(VmUpsert, _is_vm(uid, Power.ON))
    dom.undefine()  # still running, now transient
    marker = str(uuid.uuid4())
    run.conn("hv1").defineXML(domain_xml("marker", marker))
    run.wait_for(VmUpsert, lambda e: e.vm.id == marker)
    assert not any(isinstance(e, VmRemoved) for e in run.seen)
    dom.destroy()  # a stopped transient domain is gone
    run.wait_for(VmRemoved, lambda e: e.id == uid)


def test_redefined_network_portgroup_vlan_reaches_the_engine(
    tmp_path: Path, start: Callable[..., Running]
) -> None:
    network = (
        "<network><name>lab</name><uuid>{u}</uuid><bridge name='br-lab'/>"
        "<portgroup name='app'><vlan><tag id='{v}'/></vlan></portgroup></network>"
    )
    net_uuid = str(uuid.uuid4())
    run = start({"hv1": node_file(tmp_path, "hv1")})
    run.wait_for(Snapshot, lambda s: True)
    conn = run.conn("hv1")
    conn.networkDefineXML(network.format(u=net_uuid, v=300))  # defined, not started
    uid = str(uuid.uuid4())
    conn.defineXML(domain_xml("app-01", uid, network_nic("lab", "app")))
    first = run.wait_for(PortGroupUpsert, lambda e: e.portgroup.name == "lab/app")
    assert first.portgroup == PortGroup("kvm", "lab/app", frozenset({300}), "br-lab")
    conn.networkDefineXML(network.format(u=net_uuid, v=301))  # a network event, no VM event
    changed = run.wait_for(PortGroupUpsert, lambda e: e.portgroup.name == "lab/app")
    assert changed.portgroup.vlans == frozenset({301})
    assert run.count(Snapshot) == 1


def test_hosts_disagreeing_on_a_portgroup_get_the_union_and_a_warning(
    tmp_path: Path, start: Callable[..., Running]
) -> None:
    other = NETWORK.replace("<tag id='130'/>", "<tag id='131'/>")
    uris = {"hv1": node_file(tmp_path, "hv1", NETWORK), "hv2": node_file(tmp_path, "hv2", other)}
    run = start(uris)
    run.wait_for(Snapshot, lambda s: True)
    for host in ("hv1", "hv2"):
        run.conn(host).defineXML(domain_xml(f"w-{host}", str(uuid.uuid4()), network_nic("prod")))
    merged = run.wait_for(PortGroupUpsert, lambda e: e.portgroup.vlans == frozenset({130, 131}))
    assert merged.portgroup.vswitch == "br-prod"
    statuses = [e for e in run.seen if isinstance(e, SessionStatus)]
    assert statuses[-1].warnings == (
        "port group prod/web differs between hosts; using VLANs 130-131",
    )


# ---- what the intents beyond autovlan read -------------------------------------------------

METADATA = """<metadata>
  <vmfabric:vm xmlns:vmfabric="urn:vmfabric:domain:1">
    <vmfabric:tag>tier:web</vmfabric:tag><vmfabric:tag>env:prod</vmfabric:tag>
    <vmfabric:attribute name="owner">team-a</vmfabric:attribute>
  </vmfabric:vm>
  <libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0">
    <libosinfo:os id="http://ubuntu.com/ubuntu/22.04"/>
  </libosinfo:libosinfo>
</metadata>"""


def test_macs_addresses_and_metadata_are_read_from_the_domain(
    tmp_path: Path, start: Callable[..., Running]
) -> None:
    uid = str(uuid.uuid4())
    nic = ("<interface type='bridge'><mac address='52:54:00:AB:CD:01'/>"
           "<source bridge='br-int'/><target dev='vnet0'/><virtualport type='openvswitch'/>"
           "<vlan><tag id='110'/></vlan></interface>")  # fmt: skip
    xml = domain_xml("web-01", uid, nic).replace("<os>", METADATA + "<os>")
    run = start({"hv1": node_file(tmp_path, "hv1", xml)})
    (vm,) = run.wait_for(Snapshot, lambda s: True).vms
    assert vm.macs == ("52:54:00:ab:cd:01",)
    assert vm.tags == ("env:prod", "tier:web")
    assert vm.attributes == (("owner", "team-a"),)
    assert vm.guest_os == "http://ubuntu.com/ubuntu/22.04"  # libosinfo's, none of ours
    dom = run.conn("hv1").lookupByUUIDString(uid)
    reported = dom.interfaceAddresses(libvirt_const("VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT"))
    expected = {a["addr"] for i in reported.values() for a in i["addrs"]}
    assert expected and set(vm.ips) == expected  # what the test driver's agent answers
    dom.destroy()
    off = run.wait_for(VmUpsert, lambda e: e.vm.id == uid and e.vm.power is Power.OFF).vm
    assert off.ips == () and off.macs == vm.macs  # a stopped VM has no address


def test_a_metadata_change_reaches_the_source_as_an_event(
    tmp_path: Path, start: Callable[..., Running]
) -> None:
    uid = str(uuid.uuid4())
    run = start({"hv1": node_file(tmp_path, "hv1", domain_xml("db-01", uid, access_nic(140)))})
    (vm,) = run.wait_for(Snapshot, lambda s: True).vms
    assert vm.tags == () and vm.guest_os == ""
    ours = ("<vm><tag>tier:db</tag><attribute name='backup'>daily</attribute>"
            "<guest-os>debian12</guest-os></vm>")  # fmt: skip
    dom = run.conn("hv1").lookupByUUIDString(uid)
    element = libvirt_const("VIR_DOMAIN_METADATA_ELEMENT")
    dom.setMetadata(element, ours, "vmfabric", "urn:vmfabric:domain:1", 0)
    changed = run.wait_for(VmUpsert, lambda e: e.vm.id == uid and e.vm.tags == ("tier:db",)).vm
    assert changed.attributes == (("backup", "daily"),) and changed.guest_os == "debian12"


def libvirt_const(name: str) -> int:
    import libvirt

    value: int = getattr(libvirt, name)
    return value

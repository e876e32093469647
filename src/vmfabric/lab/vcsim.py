"""vCenter simulator for tests, the demo and benchmarks: build it, run it, drive it.

Owns three things:

- ``build_vcsim``: compiles ``tests/support/vcsim/main.go`` (GOPATH mode against Debian's
  govmomi sources) into ``build/vcsim`` when the binary is missing or older than main.go;
- ``Vcsim``: one simulator process, started with credentials in its environment, stopped by
  its PID (also a context manager);
- ``VcsimControl``: a small pyVmomi client playing the vSphere admin: distributed port
  groups (VLAN, trunk, PVLAN), VMs on a host and port group, power, vMotion, destroy, host
  renames, and the CDP/LLDP hints file the simulator re-reads on every QueryNetworkHint.

Run ``python -m vmfabric.lab.vcsim build`` to build the binary.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import select
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.error import HTTPError
from urllib.parse import urlencode, urlsplit, urlunsplit
from urllib.request import Request, urlopen

from pyVim import connect as _connect
from pyVmomi import vim as _vim
from pyVmomi import vmodl as _vmodl

from vmfabric.core.errors import ConfigError, PermanentError, TransientError

log = logging.getLogger(__name__)

# pyVmomi's stubs leave its data-object constructors untyped: treat the binding as dynamic.
vim: Any = _vim
vmodl: Any = _vmodl
SmartConnect: Any = _connect.SmartConnect
Disconnect: Any = _connect.Disconnect

REPO_ROOT = Path(__file__).resolve().parents[3]
SOURCE = REPO_ROOT / "tests" / "support" / "vcsim" / "main.go"
BINARY = REPO_ROOT / "build" / "vcsim"
GOPATH = Path("/usr/share/gocode")
GOVMOMI = GOPATH / "src" / "github.com" / "vmware" / "govmomi" / "simulator"

Hints = Mapping[str, Mapping[str, Mapping[str, Mapping[str, str]]]]


# ---- build ------------------------------------------------------------------------------


def _needs_build(dest: Path, source: Path) -> bool:
    return not dest.exists() or dest.stat().st_mtime < source.stat().st_mtime


def _go_env() -> dict[str, str]:
    env = dict(os.environ, GO111MODULE="off", GOPATH=str(GOPATH), GOFLAGS="")
    if "HOME" not in env and "GOCACHE" not in env:
        env["GOCACHE"] = str(Path(tempfile.gettempdir()) / "vmfabric-gocache")
    return env


def build_vcsim(dest: Path = BINARY, source: Path = SOURCE) -> Path:
    """Build the simulator binary at ``dest`` unless it is newer than ``source``."""
    if not source.exists():
        raise ConfigError("vcsim harness source not found", str(source))
    if not _needs_build(dest, source):
        return dest
    go = shutil.which("go")
    if go is None:
        raise ConfigError("the go compiler is not installed (apt-get install golang-go)")
    if not GOVMOMI.is_dir():
        raise ConfigError(
            f"govmomi sources not found at {GOVMOMI} "
            "(apt-get install golang-github-vmware-govmomi-dev)"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    result = subprocess.run(
        [go, "build", "-o", str(tmp), str(source)],
        env=_go_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        tmp.unlink(missing_ok=True)
        first = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise PermanentError(f"go build of {source} failed: {first}")
    os.replace(tmp, dest)
    return dest


# ---- the process ------------------------------------------------------------------------


class Vcsim:
    """One simulator process. ``start()`` (or ``with``) runs it; ``stop()`` ends it by PID.

    ``hosts=0`` means one per ``host_names`` (3 without names). ``port=0`` picks a free
    port; pass a previous instance's ``port`` to restart on it. ``tls=True`` serves https
    with a self-signed certificate for 127.0.0.1, written to ``ca_file``.
    """

    def __init__(
        self,
        *,
        hosts: int = 0,
        vms: int = 2,
        host_names: Sequence[str] = (),
        nics: int = 2,
        hints_file: Path | None = None,
        port: int = 0,
        username: str = "vmfabric",
        password: str | None = None,
        binary: Path | None = None,
        tls: bool = False,
    ) -> None:
        self.hosts = max(hosts, len(host_names)) or 3
        self.vms = vms
        self.host_names = tuple(host_names)
        self.nics = nics
        self._workdir = Path(tempfile.mkdtemp(prefix="vmfabric-vcsim-"))
        self.hints_file = hints_file or self._workdir / "hints.json"
        if not self.hints_file.exists():
            write_hints(self.hints_file, {})
        self.port = port
        self.username = username
        self._password = password or secrets.token_urlsafe(12)
        self.binary = binary
        self.url = ""
        self._proc: subprocess.Popen[str] | None = None
        self.log_path = self._workdir / "vcsim.log"
        self.ca_file: Path | None = self._workdir / "ca.pem" if tls else None

    def __repr__(self) -> str:
        return f"Vcsim(url={self.url!r}, username={self.username!r}, pid={self.pid})"

    @property
    def password(self) -> str:
        return self._password

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _argv(self, binary: Path) -> list[str]:
        argv = [str(binary), "-host-count", str(self.hosts), "-vms", str(self.vms)]
        argv += ["-nics", str(self.nics), "-listen", f"127.0.0.1:{self.port}"]
        if self.host_names:
            argv += ["-hosts", ",".join(self.host_names)]
        argv += ["-hints", str(self.hints_file)]
        if self.ca_file is not None:
            argv += ["-tls-cert", str(self.ca_file)]
        return argv

    def start(self, timeout: float = 120.0) -> Vcsim:
        """Start the process and wait for its URL (line 1 of its stdout)."""
        binary = self.binary or build_vcsim()
        env = dict(os.environ, VCSIM_USERNAME=self.username, VCSIM_PASSWORD=self._password)
        env["TMPDIR"] = str(self._workdir)  # its datastore folders go away with cleanup()
        with self.log_path.open("a", encoding="utf-8") as err:
            self._proc = subprocess.Popen(
                self._argv(binary),
                stdout=subprocess.PIPE,
                stderr=err,
                env=env,
                text=True,
            )
        try:
            self.url = self._read_url(timeout)
        except BaseException:
            self.stop()
            raise
        self.port = urlsplit(self.url).port or 0
        return self

    def _read_url(self, timeout: float) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        out: IO[str] = self._proc.stdout
        ready, _, _ = select.select([out], [], [], timeout)
        line = out.readline().strip() if ready else ""
        if not line.startswith("http"):
            tail = self.log_path.read_text(encoding="utf-8").strip().splitlines()[-1:]
            raise TransientError(f"vcsim did not start within {timeout:.0f}s: {tail}")
        return line

    def kill(self) -> None:
        """Kill the process at once (SIGKILL), as a crash would."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait(10)

    def stop(self) -> None:
        """SIGTERM the process (SIGKILL after 10 s). Safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()

    def set_hints(self, hints: Hints) -> None:
        """Rewire CDP/LLDP: the simulator re-reads this on every QueryNetworkHint."""
        write_hints(self.hints_file, hints)

    def hint_queries(self) -> dict[str, int]:
        """How many QueryNetworkHint calls each host has answered so far."""
        counts: dict[str, int] = {}
        for line in self.log_path.read_text(encoding="utf-8").splitlines():
            if line.startswith("hint-query "):
                host = line.split(" ", 1)[1]
                counts[host] = counts.get(host, 0) + 1
        return counts

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> Vcsim:
        return self if self._proc is not None else self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.cleanup()


def write_hints(path: Path, hints: Hints) -> None:
    """Write the hints file atomically: {host: {nic: {"cdp"|"lldp": {...}}}}."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(hints, indent=1), encoding="utf-8")
    os.replace(tmp, path)


# ---- the control client -----------------------------------------------------------------


class VcsimControl:
    """pyVmomi client doing what a vSphere admin would, for tests, the demo and benchmarks."""

    def __init__(self, url: str, username: str, password: str) -> None:
        parts = urlsplit(url)
        self._url = parts
        self._tls = ssl.create_default_context()
        self._tls.check_hostname = False  # a test tool talking to its own simulator
        self._tls.verify_mode = ssl.CERT_NONE
        self._username = username
        self._password = password
        self._si: Any = SmartConnect(
            protocol=parts.scheme,
            host=parts.hostname,
            port=parts.port,
            path=parts.path or "/sdk",
            user=username,
            pwd=password,
            disableSslCertValidation=parts.scheme == "https",
        )
        self._content: Any = self._si.RetrieveContent()

    @classmethod
    def of(cls, sim: Vcsim) -> VcsimControl:
        return cls(sim.url, sim.username, sim.password)

    def close(self) -> None:
        try:
            Disconnect(self._si)
        except Exception as exc:  # the simulator may be gone already
            log.debug("vcsim logout failed: %s", exc)

    def __enter__(self) -> VcsimControl:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- lookups

    def _all(self, kind: Any) -> list[Any]:
        view = self._content.viewManager.CreateContainerView(self._content.rootFolder, [kind], True)
        try:
            return list(view.view)
        finally:
            view.DestroyView()

    def _named(self, kind: Any) -> dict[str, Any]:
        """Objects of ``kind`` by name. The simulator's views may briefly list a destroyed
        object; it is skipped."""
        out: dict[str, Any] = {}
        for obj in self._all(kind):
            try:
                out[str(obj.name)] = obj
            except vmodl.fault.ManagedObjectNotFound:
                continue
        return out

    def _find(self, kind: Any, name: str) -> Any:
        found = self._named(kind).get(name)
        if found is None:
            raise ConfigError(f"no {kind.__name__} named {name!r} in the simulator")
        return found

    def host_names(self) -> list[str]:
        return sorted(self._named(vim.HostSystem))

    def vm_names(self) -> list[str]:
        return sorted(self._named(vim.VirtualMachine))

    def vm_id(self, name: str) -> str:
        return str(self._find(vim.VirtualMachine, name)._moId)

    def _dvs(self) -> Any:
        switches = self._all(vim.DistributedVirtualSwitch)
        if not switches:
            raise ConfigError("the simulator has no distributed switch")
        return switches[0]

    def dvs_uuid(self) -> str:
        return str(self._dvs().uuid)

    # -- changes

    def _host_control(self, path: str, params: dict[str, str]) -> None:
        """POST to one of the harness's host endpoints (see tests/support/vcsim/README.md)."""
        url = urlunsplit((self._url.scheme, self._url.netloc, path, urlencode(params), ""))
        token = base64.b64encode(f"{self._username}:{self._password}".encode()).decode()
        auth = {"Authorization": f"Basic {token}"}
        request = Request(url, method="POST", headers=auth)  # noqa: S310 (the harness URL)
        try:
            with urlopen(request, timeout=10, context=self._tls) as answer:  # noqa: S310
                answer.read()
        except HTTPError as exc:
            raise ConfigError(f"{path} {params}: {exc.reason}") from None

    def rename_host(self, old: str, new: str) -> None:
        """Rename a host; watchers see an ordinary ``name`` property change."""
        self._host_control("/vmfabric/rename", {"host": old, "name": new})

    def set_host_connection(self, host: str, state: str) -> None:
        """Set ``runtime.connectionState``: connected, disconnected or notResponding."""
        self._host_control("/vmfabric/connection", {"host": host, "state": state})

    def add_dvportgroup(
        self,
        name: str,
        vlan: int | None = None,
        trunk: Sequence[tuple[int, int]] = (),
        pvlan: int | None = None,
    ) -> None:
        """A distributed port group with one VLAN, a trunk of ranges, or a private VLAN."""
        dvs_ns = vim.dvs.VmwareDistributedVirtualSwitch
        if trunk:
            ranges = [vim.NumericRange(start=lo, end=hi) for lo, hi in trunk]
            spec: Any = dvs_ns.TrunkVlanSpec(vlanId=ranges, inherited=False)
        elif pvlan is not None:
            spec = dvs_ns.PvlanSpec(pvlanId=pvlan, inherited=False)
        else:
            spec = dvs_ns.VlanIdSpec(vlanId=vlan or 0, inherited=False)
        config = vim.dvs.DistributedVirtualPortgroup.ConfigSpec(
            name=name,
            type="earlyBinding",
            numPorts=16,
            defaultPortConfig=dvs_ns.VmwarePortConfigPolicy(vlan=spec),
        )
        _wait(self._dvs().AddDVPortgroup_Task([config]))

    def set_portgroup_vlan(self, name: str, vlan: int) -> None:
        """Reconfigure a distributed port group to carry one VLAN. (vcsim sends no property
        update for this: a session sees it at its next full audit.)"""
        pg = self._find(vim.dvs.DistributedVirtualPortgroup, name)
        dvs_ns = vim.dvs.VmwareDistributedVirtualSwitch
        spec = vim.dvs.DistributedVirtualPortgroup.ConfigSpec(
            name=name,
            type="earlyBinding",
            numPorts=16,
            configVersion=pg.config.configVersion,
            defaultPortConfig=dvs_ns.VmwarePortConfigPolicy(
                vlan=dvs_ns.VlanIdSpec(vlanId=vlan, inherited=False)
            ),
        )
        _wait(pg.ReconfigureDVPortgroup_Task(spec))

    def _nic_spec(self, portgroup: str) -> Any:
        pg = self._find(vim.Network, portgroup)
        card = vim.vm.device.VirtualEthernetCard
        if isinstance(pg, vim.dvs.DistributedVirtualPortgroup):
            port = vim.dvs.PortConnection(
                portgroupKey=pg.key, switchUuid=pg.config.distributedVirtualSwitch.uuid
            )
            backing: Any = card.DistributedVirtualPortBackingInfo(port=port)
        else:
            backing = card.NetworkBackingInfo(deviceName=pg.name, network=pg)
        nic = vim.vm.device.VirtualVmxnet3(key=-1, backing=backing)
        return vim.vm.device.VirtualDeviceSpec(operation="add", device=nic)

    def create_vm(self, name: str, host: str, portgroup: str, power_on: bool = True) -> str:
        """Create a VM on ``host`` with one NIC on ``portgroup``; returns its moref."""
        target = self._find(vim.HostSystem, host)
        datacenter = self._all(vim.Datacenter)[0]
        config = vim.vm.ConfigSpec(
            name=name,
            guestId="otherGuest",
            numCPUs=1,
            memoryMB=64,
            files=vim.vm.FileInfo(vmPathName="[LocalDS_0]"),
            deviceChange=[self._nic_spec(portgroup)],
        )
        pool = target.parent.resourcePool
        vm = _wait(datacenter.vmFolder.CreateVM_Task(config, pool, target))
        if power_on:
            _wait(vm.PowerOnVM_Task())
        return str(vm._moId)

    def power_on(self, vm: str) -> None:
        _wait(self._find(vim.VirtualMachine, vm).PowerOnVM_Task())

    def power_off(self, vm: str) -> None:
        _wait(self._find(vim.VirtualMachine, vm).PowerOffVM_Task())

    def relocate(self, vm: str, host: str) -> None:
        """vMotion ``vm`` to ``host``; returns when the task has completed."""
        target = self._find(vim.HostSystem, host)
        spec = vim.vm.RelocateSpec(host=target, pool=target.parent.resourcePool)
        _wait(self._find(vim.VirtualMachine, vm).RelocateVM_Task(spec))

    def destroy(self, vm: str) -> None:
        """Power off (if on) and delete the VM."""
        obj = self._find(vim.VirtualMachine, vm)
        if obj.runtime.powerState == "poweredOn":
            _wait(obj.PowerOffVM_Task())
        _wait(obj.Destroy_Task())

    # -- what the intents beyond autovlan read: guest addresses, folders, attributes, tags

    def set_guest_ip(self, vm: str, address: str) -> None:
        """Report ``address`` as the guest's address on its first NIC (what VMware Tools
        would report; vcsim takes it from the extraConfig key ``SET.guest.ipAddress``)."""
        option = vim.option.OptionValue(key="SET.guest.ipAddress", value=address)
        spec = vim.vm.ConfigSpec(extraConfig=[option])
        _wait(self._find(vim.VirtualMachine, vm).ReconfigVM_Task(spec))

    def move_to_folder(self, vm: str, folder: str) -> None:
        """Move ``vm`` into VM folder ``folder`` under the datacenter's VM folder (created
        when missing)."""
        root = self._all(vim.Datacenter)[0].vmFolder
        found = {str(f.name): f for f in root.childEntity if isinstance(f, vim.Folder)}
        target = found.get(folder) or root.CreateFolder(folder)
        _wait(target.MoveIntoFolder_Task([self._find(vim.VirtualMachine, vm)]))

    def set_custom_value(self, vm: str, key: str, value: str) -> None:
        """Set custom attribute ``key`` of ``vm`` (the field is defined when missing).
        vcsim sends no property update for this: a session sees it at its next full read."""
        manager = self._content.customFieldsManager
        field = next((f for f in manager.field or () if f.name == key), None)
        if field is None:
            field = manager.AddCustomFieldDef(name=key, moType=vim.VirtualMachine)
        manager.SetField(entity=self._find(vim.VirtualMachine, vm), key=field.key, value=value)

    def tag(self, vm: str, category: str, name: str) -> None:
        """Attach tag ``category:name`` to ``vm`` through the tagging REST API (the category
        and tag are created when missing)."""
        rest = _Rest(self._url, self._username, self._password, self._tls)
        cat_id = rest.find_or_create("category", category, {
            "name": category, "description": "", "cardinality": "MULTIPLE",
            "associable_types": []})  # fmt: skip
        tag_id = rest.find_or_create("tag", name, {
            "name": name, "description": "", "category_id": cat_id}, category=cat_id)  # fmt: skip
        obj = {"object_id": {"id": self.vm_id(vm), "type": "VirtualMachine"}}
        rest.call("POST", f"/tagging/tag-association/id:{tag_id}?~action=attach", obj)

    def untag(self, vm: str, category: str, name: str) -> None:
        """Detach tag ``category:name`` from ``vm``."""
        rest = _Rest(self._url, self._username, self._password, self._tls)
        cat_id = rest.find("category", category)
        tag_id = rest.find("tag", name, category=cat_id) if cat_id else ""
        if not tag_id:
            raise ConfigError(f"no tag {category}:{name} in the simulator")
        obj = {"object_id": {"id": self.vm_id(vm), "type": "VirtualMachine"}}
        rest.call("POST", f"/tagging/tag-association/id:{tag_id}?~action=detach", obj)


class _Rest:
    """The simulator's tagging REST API (``/rest/com/vmware/cis``), logged in per use."""

    def __init__(self, url: Any, username: str, password: str, tls: ssl.SSLContext) -> None:
        self.url = url
        self.tls = tls
        token = base64.b64encode(f"{username}:{password}".encode()).decode()
        self.session = str(
            self._send("POST", "/session", None, {"Authorization": f"Basic {token}"})
        )

    def _send(self, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
        url = urlunsplit((self.url.scheme, self.url.netloc, "/rest/com/vmware/cis" + path, "", ""))
        data = json.dumps(body).encode() if body is not None else None
        request = Request(url, data=data, method=method,  # noqa: S310 (the harness URL)
                          headers={"Content-Type": "application/json", **headers})  # fmt: skip
        try:
            with urlopen(request, timeout=10, context=self.tls) as answer:  # noqa: S310
                raw = answer.read()
        except HTTPError as exc:
            raise ConfigError(f"tagging API {method} {path}: {exc.code} {exc.reason}") from None
        return json.loads(raw).get("value") if raw else None

    def call(self, method: str, path: str, body: Any = None) -> Any:
        return self._send(method, path, body, {"vmware-api-session-id": self.session})

    def find(self, kind: str, name: str, category: str = "") -> str:
        for item_id in self.call("GET", f"/tagging/{kind}") or ():
            item = self.call("GET", f"/tagging/{kind}/id:{item_id}") or {}
            if item.get("name") == name and item.get("category_id", category) == category:
                return str(item_id)
        return ""

    def find_or_create(self, kind: str, name: str, spec: dict[str, Any], category: str = "") -> str:
        found = self.find(kind, name, category)
        if found:
            return found
        return str(self.call("POST", f"/tagging/{kind}", {"create_spec": spec}))


def _wait(task: Any, timeout: float = 60.0) -> Any:
    """Wait for a vSphere task; return its result or raise PermanentError with its fault."""
    deadline = time.monotonic() + timeout
    while True:
        info = task.info
        if info.state == "success":
            return info.result
        if info.state == "error":
            fault = info.error
            raise PermanentError(f"task {info.descriptionId}: {getattr(fault, 'msg', fault)}")
        if time.monotonic() > deadline:
            raise TransientError(f"task {info.descriptionId} still running after {timeout:.0f}s")
        time.sleep(0.005)


def main(argv: Sequence[str]) -> int:
    """``python -m vmfabric.lab.vcsim build [DEST]``: build the simulator if needed."""
    if not argv or argv[0] != "build":
        print("usage: python -m vmfabric.lab.vcsim build [DEST]", file=sys.stderr)
        return 2
    try:
        path = build_vcsim(Path(argv[1]) if len(argv) > 1 else BINARY)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PermanentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
